"""Synthetic files in every real-dataset layout mmcore reads (mmcore/data/formats), written from a
seeded generator: the format tests build tiny ones, data_throughput.py realistic ones. Nothing is
downloaded. Each writer returns what it wrote (clip ids and labels, or the pickled dict), so a
test can compare what a loader returns with what is on disk.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
import soundfile
import torch
from PIL import Image

CREMA_D_LABELS = ("NEU", "HAP", "SAD", "FEA", "DIS", "ANG")


def write_jpeg(
    path: Path, size: tuple[int, int], rng: np.random.Generator, color: tuple[int, int, int] | None = None
) -> None:
    """A size = (width, height) JPEG: a solid colour, or smooth noise that compresses like a video frame."""
    width, height = size
    if color is not None:
        pixels = np.broadcast_to(np.array(color, dtype=np.uint8), (height, width, 3))
    else:
        coarse = rng.integers(0, 256, (max(1, height // 16), max(1, width // 16), 3), dtype=np.uint8)
        pixels = np.asarray(Image.fromarray(coarse).resize((width, height), Image.Resampling.BILINEAR))
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.ascontiguousarray(pixels)).save(path, quality=90)


def write_frames(
    folder: Path,
    count: int,
    size: tuple[int, int],
    rng: np.random.Generator,
    pattern: str = "{:05d}.jpg",
    colors: list[tuple[int, int, int]] | None = None,
) -> None:
    for t in range(count):
        write_jpeg(folder / pattern.format(t + 1), size, rng, colors[t] if colors else None)


def write_wav(path: Path, seconds: float, rate: int, rng: np.random.Generator) -> np.ndarray:
    samples = (0.1 * rng.standard_normal(int(seconds * rate))).astype(np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(path, samples, rate, subtype="PCM_16")
    return samples


def write_array(path: Path, array: np.ndarray) -> None:
    """`array` as .npy, .pt (torch.save of a tensor) or .pkl (a pickled ndarray), by suffix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".npy":
        np.save(path, array)
    elif path.suffix == ".pt":
        torch.save(torch.from_numpy(array), path)
    else:
        with open(path, "wb") as file:
            pickle.dump(array, file)


AUDIO_FILE = {  # format id -> (folder, suffix, per-clip array shape or None for a wav)
    "ogm-wav": ("AudioWAV", ".wav", None),
    "pmr-pkl1004": ("Audio-1004", ".pkl", (257, 1004)),
    "fbank-pt": ("audio", ".pt", None),
    "fbank-npy": ("audio", ".npy", None),
}


def write_audio(
    folder: Path,
    clip: str,
    audio_format: str,
    rng: np.random.Generator,
    seconds: float = 1.0,
    rate: int = 16000,
    fbank_frames: int = 64,
) -> None:
    _, suffix, shape = AUDIO_FILE[audio_format]
    if audio_format == "ogm-wav":
        write_wav(folder / f"{clip}.wav", seconds, rate, rng)
        return
    shape = shape or (fbank_frames, 128)
    write_array(folder / f"{clip}{suffix}", rng.standard_normal(shape).astype(np.float32))


def write_crema_d(
    root: Path,
    train_per_class: int,
    test_per_class: int,
    audio_format: str = "ogm-wav",
    frame_size: tuple[int, int] = (48, 36),
    frames: int = 2,
    seconds: float = 1.0,
    fbank_frames: int = 64,
    seed: int = 0,
) -> dict[str, list[tuple[str, str]]]:
    """The OGM-GE CREMA-D layout: train.csv / test.csv, Image-01-FPS/<id>/, audio per format."""
    rng = np.random.default_rng(seed)
    listed: dict[str, list[tuple[str, str]]] = {"train": [], "test": []}
    audio_dir = root / AUDIO_FILE[audio_format][0]
    number = 1001
    for split, per_class in (("train", train_per_class), ("test", test_per_class)):
        for label in CREMA_D_LABELS:
            for _ in range(per_class):
                clip = f"{number}_IEO_{label}_XX"
                number += 1
                listed[split].append((clip, label))
                write_frames(root / "Image-01-FPS" / clip, frames, frame_size, rng)
                write_audio(audio_dir, clip, audio_format, rng, seconds, fbank_frames=fbank_frames)
        (root / f"{split}.csv").write_text("".join(f"{c},{y}\n" for c, y in listed[split]))
    return listed


def write_kinetics_sounds(
    root: Path,
    train_per_class: int,
    test_per_class: int,
    num_classes: int = 31,
    frame_size: tuple[int, int] = (40, 30),
    frames: int = 4,
    fbank_frames: int = 1024,
    list_style: str = "ogm",
    seed: int = 0,
) -> dict[str, list[tuple[str, int]]]:
    """OGM-GE lists (`name,10,label`; list_style "balancemm": `name label`), audio/<name>.npy and
    visual/<name>/frame_0000t.jpg."""
    rng = np.random.default_rng(seed)
    listed: dict[str, list[tuple[str, int]]] = {"train": [], "test": []}
    for split, per_class in (("train", train_per_class), ("test", test_per_class)):
        for label in range(num_classes):
            for k in range(per_class):
                name = f"vid{label:02d}x{k}{split[:2]}_{10 * k}"
                listed[split].append((name, label))
                write_frames(root / "visual" / name, frames, frame_size, rng, pattern="frame_0000{}.jpg")
                write_array(root / "audio" / f"{name}.npy", rng.standard_normal((fbank_frames, 128)).astype(np.float32))
        line = "{},10,{}\n" if list_style == "ogm" else "{} {}\n"
        (root / f"my_{split}.txt").write_text("".join(line.format(n, y) for n, y in listed[split]))
    return listed


def write_ave(
    root: Path,
    per_class: dict[str, int],
    categories: tuple[str, ...] = ("Church bell", "Male speech", "Dog"),
    audio_format: str = "pmr-pkl1004",
    frame_size: tuple[int, int] = (40, 30),
    frames: int = 4,
    fbank_frames: int = 64,
    seed: int = 0,
) -> dict[str, list[tuple[str, str]]]:
    """Official AVE split files (`Category&VideoID&Quality&Start&End`), Image-01-FPS-SE/<vid>/, audio per format."""
    rng = np.random.default_rng(seed)
    folder = {"pmr-pkl1004": "Audio-1004-SE"}.get(audio_format, "audio")
    listed: dict[str, list[tuple[str, str]]] = {}
    for split, count in per_class.items():
        listed[split] = []
        for c, category in enumerate(categories):
            for k in range(count):
                video = f"{split[:2]}c{c:02d}v{k:03d}"
                listed[split].append((category, video))
                write_frames(root / "Image-01-FPS-SE" / video, frames, frame_size, rng)
                write_audio(root / folder, video, audio_format, rng, fbank_frames=fbank_frames)
        name = {"train": "trainSet.txt", "val": "valSet.txt", "test": "testSet.txt"}[split]
        (root / name).write_text("".join(f"{c}&{v}&good&0&10\n" for c, v in listed[split]))
    return listed


def write_av_mnist(
    root: Path, train_rows: int, test_rows: int, flat_images: bool = True, seed: int = 0
) -> dict[str, np.ndarray]:
    """The MultiBench avmnist layout; pixel (0, 0) of every image and audio row holds row % 256."""
    rng = np.random.default_rng(seed)
    written = {}
    for split, rows in (("train", train_rows), ("test", test_rows)):
        image = rng.integers(0, 256, (rows, 28, 28)).astype(np.float32)
        audio = rng.integers(0, 256, (rows, 112, 112)).astype(np.float32)
        image[:, 0, 0] = audio[:, 0, 0] = np.arange(rows) % 256
        labels = rng.integers(0, 10, rows)
        write_array(root / "image" / f"{split}_data.npy", image.reshape(rows, 784) if flat_images else image)
        write_array(root / "audio" / f"{split}_data.npy", audio)
        write_array(root / f"{split}_labels.npy", labels)
        written[f"{split}_labels"] = labels
    return written


def _front_padded(rng: np.random.Generator, rows: int, steps: int, dim: int, lengths: np.ndarray) -> np.ndarray:
    values = rng.standard_normal((rows, steps, dim)).astype(np.float32)
    values[np.arange(steps)[None, :] < (steps - lengths)[:, None]] = 0.0
    return values


def mmsa_tables(
    counts: dict[str, int],
    steps: tuple[int, int, int] = (50, 50, 50),
    dims: tuple[int, int, int] = (768, 5, 20),
    seed: int = 0,
) -> dict[str, dict[str, Any]]:
    """MMSA-style splits: end-padded sequences with lengths, text_bert masks, -inf in audio, scores in [-3, 3]."""
    rng = np.random.default_rng(seed)
    data = {}
    for split, rows in counts.items():
        table: dict[str, Any] = {"id": np.array([f"v{i}$_${i}" for i in range(rows)], dtype=object)}
        for m, t, d in zip(("text", "audio", "vision"), steps, dims):
            lengths = rng.integers(1, t + 1, rows)
            values = rng.standard_normal((rows, t, d)).astype(np.float32)
            values[np.arange(t)[None, :] >= lengths[:, None]] = 0.0
            table[m] = values
            if m == "text":
                bert = np.zeros((rows, 3, t), dtype=np.float32)
                bert[:, 1] = np.arange(t)[None, :] < lengths[:, None]
                table["text_bert"] = bert
            else:
                table[f"{m}_lengths"] = lengths.tolist()
        table["audio"][:, 0, 0] = -np.inf
        table["regression_labels"] = np.round(rng.uniform(-3, 3, rows) * 3) / 3
        table["regression_labels"][0] = 0.0
        data[split] = table
    return data


def front_padded_tables(
    counts: dict[str, int],
    steps: tuple[int, int, int],
    dims: tuple[int, int, int],
    label_values: tuple[float, ...] | None = None,
    empty_text_rows: int = 0,
    seed: int = 0,
) -> dict[str, dict[str, Any]]:
    """MulT / MultiBench-style splits: front-padded sequences (aligned: one length per sample), labels (N, 1, 1)."""
    rng = np.random.default_rng(seed)
    aligned = len(set(steps)) == 1
    data = {}
    for split, rows in counts.items():
        table: dict[str, Any] = {"id": np.arange(rows)}
        shared = rng.integers(1, steps[0] + 1, rows)
        for m, t, d in zip(("text", "audio", "vision"), steps, dims):
            lengths = shared if aligned else rng.integers(1, t + 1, rows)
            table[m] = _front_padded(rng, rows, t, d, lengths)
        table["text"][:empty_text_rows] = 0.0
        table["audio"][:, -1, 0] = -np.inf
        scores = rng.choice(label_values, rows) if label_values else np.round(rng.uniform(-3, 3, rows), 1)
        table["labels"] = scores.reshape(rows, 1, 1).astype(np.float32)
        data[split] = table
    return data


def write_pickle(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as file:
        pickle.dump(data, file, protocol=4)
