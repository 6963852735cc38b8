"""Video frames as the audio-visual codes prepare them: a folder of JPEGs per clip, decoded with Pillow.

Training frames get the ImageNet recipe every official code uses (torchvision's RandomResizedCrop
to `size`, scale (0.08, 1), ratio (3/4, 4/3), then a horizontal flip with probability 1/2);
evaluation frames are resized to `size` x `size`. The crop and the resize are one Pillow call
(`resize(..., box=crop)`). Frames leave the loader as uint8 pixels; `normalize_frames`, the
bundle's device transform, ImageNet-normalises them where the batch lands (a GPU), so workers,
shared memory, pinning and the host-to-device copy move a quarter of float32's bytes.

Random draws come from torch's global generator in the process that loads the sample. The trainer
seeds it for each training item from the epoch and the item's position (`SeededItems`), so the
augmentation does not depend on the number of loader workers and a mid-epoch resume repeats it.

`count` frames are taken evenly from the folder's frames in natural order (frame_2 before
frame_10): the folder is cut into `count` equal segments and one frame is taken from each — a
random one in training, the middle one in evaluation (the Kinetics-Sounds rule of the official
codes; with fewer frames than `count`, frames repeat).
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import torch
from attrs import frozen
from PIL import Image
from torch import Tensor

from mmcore.errors import DataError

IMAGENET_MEAN = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
IMAGENET_STD = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
FRAME_SUFFIXES = (".jpg", ".jpeg", ".png")
CROP_SCALE = (0.08, 1.0)
CROP_RATIO = (3 / 4, 4 / 3)
CROP_ATTEMPTS = 10


def natural_key(name: str) -> tuple[object, ...]:
    """Sort key that orders the digit runs of a name by value: frame_2 < frame_10."""
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name))


def list_frames(folder: Path) -> list[Path]:
    """The folder's image files in natural order; DataError when it is missing or holds none."""
    if not folder.is_dir():
        raise DataError(folder, "no such frame folder")
    frames = [p for p in folder.iterdir() if p.suffix.lower() in FRAME_SUFFIXES]
    if not frames:
        raise DataError(folder, f"no frames ({', '.join(FRAME_SUFFIXES)}) in this folder")
    return sorted(frames, key=lambda p: natural_key(p.name))


def pick_frames(available: int, count: int, train: bool) -> list[int]:
    """One index per equal segment of `available` frames: random within it (train) or its middle."""
    picked = []
    for k in range(count):
        start = k * available // count
        stop = max((k + 1) * available // count, start + 1)  # a segment holds at least one frame
        offset = int(torch.randint(stop - start, ())) if train else (stop - start) // 2
        picked.append(min(start + offset, available - 1))
    return picked


def random_resized_crop(width: int, height: int) -> tuple[int, int, int, int]:
    """A (left, top, right, bottom) box drawn as torchvision's RandomResizedCrop draws it."""
    area = width * height
    log_ratio = (math.log(CROP_RATIO[0]), math.log(CROP_RATIO[1]))
    for _ in range(CROP_ATTEMPTS):
        target_area = area * float(torch.empty(()).uniform_(*CROP_SCALE))
        aspect = math.exp(float(torch.empty(()).uniform_(*log_ratio)))
        w = round(math.sqrt(target_area * aspect))
        h = round(math.sqrt(target_area / aspect))
        if 0 < w <= width and 0 < h <= height:
            top = int(torch.randint(height - h + 1, ()))
            left = int(torch.randint(width - w + 1, ()))
            return left, top, left + w, top + h
    # Fallback: the largest centred crop whose aspect ratio lies within CROP_RATIO.
    in_ratio = width / height
    if in_ratio < CROP_RATIO[0]:
        w, h = width, round(width / CROP_RATIO[0])
    elif in_ratio > CROP_RATIO[1]:
        w, h = round(height * CROP_RATIO[1]), height
    else:
        w, h = width, height
    left, top = (width - w) // 2, (height - h) // 2
    return left, top, left + w, top + h


def normalize_frames(pixels: Tensor) -> Tensor:
    """uint8 RGB pixels [..., 3, H, W] -> ImageNet-normalised float32, on the pixels' device.
    Floating-point input is taken as already normalised and returned as it is."""
    if pixels.is_floating_point():
        return pixels
    mean = IMAGENET_MEAN.to(pixels.device)
    std = IMAGENET_STD.to(pixels.device)
    return (pixels.float().div_(255.0) - mean) / std


def read_frame(path: Path, size: int, train: bool) -> Tensor:
    """One frame as uint8 RGB pixels [3, size, size] (see `normalize_frames`)."""
    try:
        with Image.open(path) as opened:
            image = opened.convert("RGB")  # decodes the whole file: a truncated one fails here
    except (OSError, ValueError, Image.DecompressionBombError) as error:
        raise DataError(path, f"not a readable image ({error})") from error
    if train:
        box = random_resized_crop(*image.size)
        image = image.resize((size, size), Image.Resampling.BILINEAR, box=box)
        if float(torch.rand(())) < 0.5:
            image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    else:
        image = image.resize((size, size), Image.Resampling.BILINEAR)
    return torch.from_numpy(np.asarray(image, dtype=np.uint8).copy()).permute(2, 0, 1)


@frozen
class FrameStackReader:
    """`count` frames of a clip from `folder/<clip>/`, as uint8 [count, 3, size, size]."""

    folder: Path
    count: int
    size: int = 224
    on_device = staticmethod(normalize_frames)

    @property
    def shape(self) -> tuple[int, ...]:
        return (self.count, 3, self.size, self.size)

    def path_of(self, clip: str) -> Path:
        return self.folder / clip

    def __call__(self, clip: str, train: bool) -> Tensor:
        frames = list_frames(self.path_of(clip))
        chosen = pick_frames(len(frames), self.count, train)
        return torch.stack([read_frame(frames[i], self.size, train) for i in chosen])
