"""What the audio-visual formats (CREMA-D, Kinetics-Sounds, AVE) share: list files of clips, a
dataset that reads each clip's files on access, and the checks run before any training starts."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Protocol, Sequence

import torch
from attrs import field
from attrs.validators import and_, ge, instance_of
from torch import Tensor
from torch.utils.data import Dataset

from mmcore.data.base import DataBundle, DataInfo, DeviceTransform
from mmcore.data.splits import carve_validation
from mmcore.errors import ConfigError, DataError

log = logging.getLogger(__name__)


def image_size_field() -> Any:
    """The `image_size` field of every frame format's config."""
    return field(default=224, validator=and_(instance_of(int), ge(8)), metadata={"help": "frame side after crop/resize"})


def skip_missing_field(rows: str = "clips", note: str = "") -> Any:
    """The `skip_missing` field of every list-based format's config."""
    return field(
        default=False,
        validator=instance_of(bool),
        metadata={"help": f"leave out listed {rows} whose files are missing{note} instead of failing"},
    )


class ClipReader(Protocol):
    """Reads one modality of a clip: `reader(clip, train)` -> a tensor that `reader.on_device`
    finishes on the device into the model's input of `reader.shape` (None: it already is one)."""

    on_device: DeviceTransform | None

    @property
    def shape(self) -> tuple[int, ...]: ...

    def path_of(self, clip: str) -> Path: ...

    def __call__(self, clip: str, train: bool) -> Tensor: ...


class ClipSplit(Dataset[dict[str, Any]]):
    """One split: row i is clip `clips[i]` with label `labels[i]`, its modalities read on access.

    `train` selects the readers' training transforms (random crops and flips of frames)."""

    def __init__(self, clips: Sequence[str], labels: Tensor, readers: dict[str, ClipReader], train: bool) -> None:
        if len(clips) != int(labels.shape[0]):
            raise ValueError(f"ClipSplit: {len(clips)} clips but {labels.shape[0]} labels")
        self.clips = list(clips)
        self.labels = labels
        self.readers = dict(readers)
        self.train = train

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, index: int) -> dict[str, Any]:
        clip = self.clips[index]
        return {
            "inputs": {m: read(clip, self.train) for m, read in self.readers.items()},
            "present": torch.ones(len(self.readers), dtype=torch.bool),
            "label": self.labels[index],
            "index": int(index),
            "masks": {},
            "extras": {},
        }


def check_modalities(kind: str, modalities: Sequence[str], available: Sequence[str]) -> None:
    problems = [
        f"$.data.modalities: {kind!r} has no modality {m!r}; it has {', '.join(available)}"
        for m in modalities
        if m not in available
    ]
    if problems:
        raise ConfigError(problems)


def existing_folder(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise DataError(path, f"no such folder ({what})")
    return path


def list_lines(path: Path) -> list[tuple[int, str]]:
    """(line number, text) of every non-blank line of a list file; DataError if it cannot be read."""
    if not path.is_file():
        raise DataError(path, "no such list file")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as error:
        raise DataError(path, f"not a readable text file ({error})") from error
    return [(number, line.strip()) for number, line in enumerate(text.splitlines(), 1) if line.strip()]


def keep_complete(
    clips: list[str], labels: list[int], readers: dict[str, ClipReader], list_path: Path, skip_missing: bool
) -> tuple[list[str], list[int]]:
    """The listed clips whose every modality has its file. A missing file is a DataError naming it,
    unless `skip_missing`, which drops such clips (as the official loaders do, silently) and logs how many."""
    complete = [all(r.path_of(c).exists() for r in readers.values()) for c in clips]
    dropped = complete.count(False)
    if dropped and not skip_missing:
        clip = clips[complete.index(False)]
        missing = next(r.path_of(clip) for r in readers.values() if not r.path_of(clip).exists())
        raise DataError(
            missing,
            f"missing ({dropped} of {len(clips)} clips listed in {list_path} lack a file; "
            "set skip_missing = true in [data] to leave them out)",
        )
    if dropped == len(clips):
        raise DataError(list_path, "lists no clips" if not clips else "no listed clip has all its files")
    if dropped:
        log.warning("%s: %d of %d listed clips lack a file and are left out", list_path, dropped, len(clips))
    return [c for c, ok in zip(clips, complete, strict=True) if ok], [
        y for y, ok in zip(labels, complete, strict=True) if ok
    ]


def clip_bundle(
    splits: dict[str, tuple[list[str], list[int], bool]],
    readers: dict[str, ClipReader],
    num_classes: int,
    citation: str,
) -> DataBundle:
    """A classification DataBundle from (clips, labels, train transforms) per split, in `readers` order."""
    modalities = tuple(readers)
    info = DataInfo(
        modalities=modalities,
        task="classification",
        num_outputs=num_classes,
        input_shapes={m: tuple(r.shape) for m, r in readers.items()},
        sequence={m: False for m in modalities},
        citation=citation,
    )
    datasets = {
        name: ClipSplit(clips, torch.tensor(labels, dtype=torch.long), readers, train)
        for name, (clips, labels, train) in splits.items()
    }
    first = next((clips[0] for clips, _, _ in splits.values() if clips), None)
    for read in readers.values() if first is not None else ():
        read(first, False)  # fail now, not mid-epoch: an untrusted pickle, an array of the wrong shape
    on_device = {m: r.on_device for m, r in readers.items() if r.on_device is not None}
    augments = any(train for _, _, train in splits.values())  # frames: random crops, flips and picks
    return DataBundle(info=info, splits=datasets, on_device=on_device, augments=augments)


def carve(clips: list[str], labels: list[int], fraction: float, seed: int) -> tuple[tuple[list[str], list[int]], ...]:
    """((train clips, labels), (validation clips, labels)): a seeded stratified `fraction` of each class."""

    def pick(rows: Tensor) -> tuple[list[str], list[int]]:
        return [clips[i] for i in rows.tolist()], [labels[i] for i in rows.tolist()]

    label_tensor = torch.tensor(labels, dtype=torch.long)
    train_rows, val_rows = carve_validation(label_tensor, fraction, seed)
    for rows, left in ((val_rows, "validation"), (train_rows, "training")):
        if rows.numel() == 0:
            raise ConfigError(
                f"$.data.val_fraction: {fraction} of each class of the {len(clips)} listed training "
                f"clips leaves no {left} clip (it takes round(class size x fraction) per class)"
            )
    listed = torch.bincount(label_tensor)
    kept = torch.bincount(label_tensor[train_rows], minlength=len(listed))
    emptied = ((listed > 0) & (kept == 0)).nonzero().flatten().tolist()
    if emptied:
        raise ConfigError(
            f"$.data.val_fraction: {fraction} takes every listed training clip of class(es) {emptied} "
            "for validation, so they would never be trained on; lower it"
        )
    return pick(train_rows), pick(val_rows)
