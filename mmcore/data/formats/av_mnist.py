"""`av_mnist`: AV-MNIST in the MultiBench layout (`datasets/avmnist/get_data.py`).

    <root>/image/{train,test}_data.npy   (N, 784) or (N, 28, 28), values 0-255
    <root>/audio/{train,test}_data.npy   (N, 112, 112) or (N, 12544) spectrograms, values 0-255
    <root>/{train,test}_labels.npy       (N,) digits 0-9

Samples are `image` [1, 28, 28] and `audio` [1, 112, 112], divided by 255 (`normalize`). Validation
is the last `val_size` (5,000) training rows, as MultiBench splits it: 55,000 / 5,000 / 10,000.
The arrays are memory-mapped (no pickles: allow_pickle is off) and each process opens its own map.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from attrs import field, frozen
from attrs.validators import and_, ge, in_, instance_of, min_len
from torch import Tensor
from torch.utils.data import Dataset

from mmcore.data.base import DataBundle, DataInfo
from mmcore.data.formats.clips import check_modalities, existing_folder
from mmcore.errors import ConfigError, DataError
from mmcore.registry import BuildContext

FORMATS = ("multibench-npy",)
SHAPES = {"image": (1, 28, 28), "audio": (1, 112, 112)}
NUM_CLASSES = 10
CITATION = (
    "V. Vielzeuf, A. Lechervy, S. Pateux, F. Jurie, 'CentralNet: a Multilayer Approach for Multimodal "
    "Fusion', ECCV Workshops 2018; layout of P. P. Liang et al., 'MultiBench', NeurIPS 2021 Datasets and Benchmarks."
)


@frozen(kw_only=True)
class AVMnistConfig:
    root: str = field(validator=min_len(1), metadata={"help": "the avmnist folder (image/, audio/, *_labels.npy)"})
    format: str = field(default="multibench-npy", validator=in_(FORMATS), metadata={"help": " | ".join(FORMATS)})
    val_size: int = field(
        default=5000,
        validator=and_(instance_of(int), ge(1)),
        metadata={"help": "the last training rows held out for validation (MultiBench: 5000)"},
    )
    normalize: bool = field(
        default=True, validator=instance_of(bool), metadata={"help": "divide the 0-255 values by 255 (MultiBench)"}
    )


def open_rows(path: Path) -> np.ndarray:
    """A memory map of a numeric .npy file; DataError if it is missing or unreadable."""
    if not path.is_file():
        raise DataError(path, "no such file")
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, EOFError) as error:
        raise DataError(path, f"not a readable .npy file ({error})") from error
    if not np.issubdtype(array.dtype, np.number):
        raise DataError(path, f"holds {array.dtype} values; expected numbers")
    return array


def check_rows(path: Path, rows: int, sample_shape: tuple[int, ...]) -> None:
    """DataError unless the file holds `rows` samples stored as (rows, *sample) or flat (rows, prod(sample))."""
    shape = open_rows(path).shape
    accepted = ((rows, *sample_shape[1:]), (rows, math.prod(sample_shape)))
    if tuple(shape) not in accepted:
        raise DataError(path, f"array of shape {shape}; expected {accepted[0]} or {accepted[1]}")


def read_labels(path: Path) -> Tensor:
    labels = np.asarray(open_rows(path))
    if labels.ndim != 1 or labels.size == 0 or np.any(labels != np.round(labels)) or labels.min() < 0 \
            or labels.max() >= NUM_CLASSES:
        raise DataError(path, f"expected a 1-D array of digits 0..{NUM_CLASSES - 1}, got {labels.dtype} {labels.shape}")
    return torch.from_numpy(labels.astype(np.int64))


class NpyRowsSplit(Dataset[dict[str, Any]]):
    """Rows `rows` of one .npy file per modality, reshaped to SHAPES and scaled by `scale`."""

    def __init__(self, files: dict[str, Path], labels: Tensor, rows: range, scale: float) -> None:
        self.files, self.labels, self.rows, self.scale = dict(files), labels, rows, scale
        self._maps: dict[str, np.ndarray] | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_maps": None}  # worker processes open their own memory maps

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict[str, Any]:
        if self._maps is None:
            self._maps = {m: open_rows(path) for m, path in self.files.items()}
        row = self.rows[index]
        inputs = {
            m: torch.from_numpy(np.array(array[row], dtype=np.float32).reshape(SHAPES[m])) * self.scale
            for m, array in self._maps.items()
        }
        return {
            "inputs": inputs,
            "present": torch.ones(len(inputs), dtype=torch.bool),
            "label": self.labels[row],
            "index": int(index),
            "masks": {},
            "extras": {},
        }


def build_av_mnist(config: AVMnistConfig, ctx: BuildContext) -> DataBundle:
    check_modalities("av_mnist", ctx.modalities, tuple(SHAPES))
    root = existing_folder(Path(config.root).expanduser(), "$.data.root")
    files, labels = {}, {}
    for part in ("train", "test"):
        labels[part] = read_labels(root / f"{part}_labels.npy")
        files[part] = {m: root / m / f"{part}_data.npy" for m in ctx.modalities}
        for m, path in files[part].items():
            check_rows(path, int(labels[part].shape[0]), SHAPES[m])
    train_rows = int(labels["train"].shape[0])
    if config.val_size >= train_rows:
        raise ConfigError(f"$.data.val_size: {config.val_size} leaves no training rows of {train_rows}")
    scale = 1 / 255 if config.normalize else 1.0
    cut = train_rows - config.val_size
    splits = {
        "train": NpyRowsSplit(files["train"], labels["train"], range(0, cut), scale),
        "val": NpyRowsSplit(files["train"], labels["train"], range(cut, train_rows), scale),
        "test": NpyRowsSplit(files["test"], labels["test"], range(int(labels["test"].shape[0])), scale),
    }
    info = DataInfo(
        modalities=tuple(ctx.modalities),
        task="classification",
        num_outputs=NUM_CLASSES,
        input_shapes={m: SHAPES[m] for m in ctx.modalities},
        sequence={m: False for m in ctx.modalities},
        citation=CITATION,
    )
    return DataBundle(info=info, splits=splits)
