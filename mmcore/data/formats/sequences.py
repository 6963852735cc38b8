"""What the affect pickles share (MMSA, MulT, MultiBench: specs/toolkit-anchors.md §c): a dict of
splits, each a dict of per-modality feature sequences (N, T, D) and labels, loaded once into
tensors with a padding mask per modality.

Non-finite feature values (the -inf in the MOSI/MOSEI audio) become 0, as every loader does.
MulT and MultiBench pad sequences with zero steps at the front; `left_align` moves the real steps
to the start and masks the rest. Aligned data (one T for every modality) starts where the text
starts; unaligned data starts each modality at its own first non-zero step (MultiBench's rule).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from mmcore.data.base import DataBundle, DataInfo
from mmcore.data.formats.clips import check_modalities
from mmcore.data.loading import TensorSplit
from mmcore.errors import DataError

SPLITS = {"train": "train", "val": "valid", "test": "test"}  # ours -> the pickles' key
MODALITIES = ("text", "audio", "vision")


def split_tables(path: Path, data: Any) -> dict[str, Mapping[str, Any]]:
    """The train / valid / test tables of an unpickled file, or a DataError naming what is missing."""
    if not isinstance(data, Mapping):
        raise DataError(path, f"holds a {type(data).__name__}; expected a dict of splits {sorted(SPLITS.values())}")
    missing = [key for key in SPLITS.values() if not isinstance(data.get(key), Mapping)]
    if missing:
        raise DataError(path, f"has no split table {missing}; it has {sorted(map(str, data))}")
    return {ours: data[theirs] for ours, theirs in SPLITS.items()}


def array_of(path: Path, table: Mapping[str, Any], split: str, key: str, ndim: int) -> np.ndarray:
    """`table[key]` as a numeric array of `ndim` dimensions, or a DataError naming file, split and key."""
    if key not in table:
        raise DataError(path, f"split {split!r} has no {key!r}; it has {sorted(map(str, table))}")
    try:
        array = np.asarray(table[key])
    except ValueError as error:
        raise DataError(path, f"{split}/{key} is not an array ({error})") from error
    if array.ndim != ndim or not np.issubdtype(array.dtype, np.number):
        raise DataError(
            path, f"{split}/{key} is a {array.dtype} array of shape {array.shape}; expected {ndim} numeric dimensions"
        )
    return array


def scores_of(path: Path, table: Mapping[str, Any], split: str, key: str, count: int) -> np.ndarray:
    """`table[key]` as `count` float32 labels, whether stored as (N,), (N, 1) or (N, 1, 1)."""
    if key not in table:
        raise DataError(path, f"split {split!r} has no {key!r}; it has {sorted(map(str, table))}")
    labels = np.asarray(table[key])
    if labels.size != count or (labels.ndim and labels.shape[0] != count) or not np.issubdtype(labels.dtype, np.number):
        raise DataError(
            path, f"{split}/{key} is a {labels.dtype} array of shape {labels.shape}; expected {count} numbers"
        )
    return labels.reshape(-1).astype(np.float32)


def feature_sequences(
    path: Path, table: Mapping[str, Any], split: str, modalities: tuple[str, ...]
) -> dict[str, np.ndarray]:
    """float32 (N, T, D) per modality, non-finite values zeroed; every modality with the same N."""
    arrays = {
        m: np.nan_to_num(array_of(path, table, split, m, 3).astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)
        for m in modalities
    }
    counts = {m: a.shape[0] for m, a in arrays.items()}
    if len(set(counts.values())) > 1:
        raise DataError(path, f"split {split!r} has different sample counts per modality: {counts}")
    return arrays


def check_feature_dims(path: Path, split_arrays: dict[str, dict[str, np.ndarray]]) -> None:
    """Every split must give a modality the same (T, D): the model is built for one input shape."""
    for m in next(iter(split_arrays.values())):
        shapes = {split: arrays[m].shape[1:] for split, arrays in split_arrays.items()}
        if len(set(shapes.values())) > 1:
            raise DataError(path, f"{m!r} has per-sample shapes {shapes} across splits; expected one (T, D)")


def left_align(arrays: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Front-padded sequences moved to the start: (arrays, bool masks [N, T]). See the module docstring."""
    lengths = {a.shape[1] for a in arrays.values()}
    aligned = len(lengths) == 1 and "text" in arrays
    starts = {m: _first_nonzero_step(arrays["text" if aligned else m]) for m in arrays}
    out, masks = {}, {}
    for m, values in arrays.items():
        steps = values.shape[1]
        source = starts[m][:, None] + np.arange(steps)[None, :]
        masks[m] = source < steps
        gathered = np.take_along_axis(values, np.minimum(source, steps - 1)[:, :, None], axis=1)
        out[m] = np.where(masks[m][:, :, None], gathered, 0.0).astype(np.float32)
    return out, masks


def _first_nonzero_step(values: np.ndarray) -> np.ndarray:
    """Per row, the first step with a non-zero feature (T when there is none: an empty sequence)."""
    nonzero = np.any(values != 0, axis=2)
    return np.where(nonzero.any(axis=1), nonzero.argmax(axis=1), values.shape[1])


def sequence_bundle(
    modalities: tuple[str, ...],
    splits: dict[str, tuple[dict[str, np.ndarray], dict[str, np.ndarray], np.ndarray]],
    task: str,
    citation: str,
    kind: str,
) -> DataBundle:
    """A DataBundle from (features, masks, labels) per split: float labels (scores or binary 0/1), one output."""
    check_modalities(kind, modalities, MODALITIES)
    datasets = {}
    for name, (features, masks, labels) in splits.items():
        label = torch.from_numpy(labels.astype(np.float32))
        datasets[name] = TensorSplit(
            {m: torch.from_numpy(features[m]) for m in modalities},
            label,
            modalities,
            masks={m: torch.from_numpy(masks[m]) for m in modalities},
        )
    first = splits["train"][0]
    info = DataInfo(
        modalities=modalities,
        task=task,
        num_outputs=1,
        input_shapes={m: tuple(int(s) for s in first[m].shape[1:]) for m in modalities},
        sequence={m: True for m in modalities},
        citation=citation,
    )
    return DataBundle(info=info, splits=datasets)


def full_masks(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {m: np.ones(a.shape[:2], dtype=bool) for m, a in arrays.items()}


def lengths_mask(path: Path, lengths: np.ndarray, steps: int, what: str) -> np.ndarray:
    """bool [N, steps] from per-sample lengths (MMSA's audio_lengths / vision_lengths)."""
    lengths = np.asarray(lengths).reshape(-1)
    if lengths.size and (lengths.min() < 0 or lengths.max() > steps):
        raise DataError(path, f"{what} must lie in 0..{steps}, got {lengths.min()}..{lengths.max()}")
    return np.arange(steps)[None, :] < lengths[:, None]
