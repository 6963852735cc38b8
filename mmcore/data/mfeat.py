"""`mfeat`: the UCI Multiple Features handwritten digits, six views, shipped inside the package."""
from __future__ import annotations

import contextlib
import zipfile
from importlib import resources
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from attrs import field, frozen
from attrs.validators import and_, ge, instance_of, lt
from torch import Tensor

from mmcore.data.base import DataBundle, DataInfo
from mmcore.data.loading import TensorSplit
from mmcore.data.splits import stratified_split  # kept importable from here
from mmcore.errors import ConfigError, DataError
from mmcore.registry import BuildContext

VIEWS = ("fac", "fou", "kar", "mor", "pix", "zer")
NUM_CLASSES = 10
# Floors the per-feature std so a column that is constant on the training rows stays finite.
STD_FLOOR = 1e-3
CITATION = (
    "M. van Breukelen, R. P. W. Duin, D. M. J. Tax, J. E. den Hartog, 'Handwritten digit recognition "
    "by combined classifiers', Kybernetika 34(4):381-386, 1998. Data: UCI Machine Learning Repository, "
    "'Multiple Features' (CC BY 4.0)."
)


def _fractions_leave_training_rows(instance: MfeatConfig, attribute: object, value: float) -> None:
    if instance.val_fraction + instance.test_fraction >= 1.0:
        raise ValueError(
            f"val_fraction + test_fraction must be below 1, got {instance.val_fraction} + {instance.test_fraction}"
        )


@frozen(kw_only=True)
class MfeatConfig:
    path: str = field(
        default="",
        validator=instance_of(str),
        metadata={"help": "an .npz with the six views and `label`; empty = the copy shipped with mmcore"},
    )
    split_seed: int = field(
        default=0, validator=instance_of(int), metadata={"help": "seed of the stratified train/val/test split"}
    )
    val_fraction: float = field(
        default=0.2, validator=and_(ge(0.0), lt(1.0)), metadata={"help": "fraction of each class in validation"}
    )
    test_fraction: float = field(
        default=0.2,
        validator=and_(ge(0.0), lt(1.0), _fractions_leave_training_rows),
        metadata={"help": "fraction of each class in test"},
    )
    standardize: bool = field(
        default=True,
        validator=instance_of(bool),
        metadata={"help": "zero mean, unit std per feature, fitted on the training split only"},
    )


@contextlib.contextmanager
def _data_file(path: str) -> Iterator[Path]:
    if path:
        yield Path(path)
        return
    with resources.as_file(resources.files("mmcore.data") / "_data" / "mfeat.npz") as packaged:
        yield packaged


def _check_views(modalities: tuple[str, ...]) -> None:
    if not modalities:
        raise ConfigError(f"$.data.modalities: mfeat needs at least one view; views: {', '.join(VIEWS)}")
    problems = [
        f"$.data.modalities: unknown mfeat view {m!r}; views: {', '.join(VIEWS)}" for m in modalities if m not in VIEWS
    ]
    if problems:
        raise ConfigError(problems)


def load_arrays(path: Path, views: tuple[str, ...]) -> tuple[dict[str, Tensor], Tensor]:
    """The requested views (float32 [N, D]) and labels (long [N]) from an .npz; DataError if unusable."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            missing = [key for key in (*views, "label") if key not in archive.files]
            if missing:
                raise DataError(path, f"missing arrays {missing}; it has {sorted(archive.files)}")
            arrays = {key: archive[key] for key in (*views, "label")}
    except DataError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise DataError(path, f"not a readable .npz file ({error})") from error
    labels = arrays.pop("label")
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise DataError(path, f"`label` must be a 1-D integer array, got {labels.dtype} {labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() >= NUM_CLASSES):
        raise DataError(path, f"labels must lie in 0..{NUM_CLASSES - 1}")
    for view, values in arrays.items():
        if values.ndim != 2 or values.shape[0] != labels.shape[0]:
            raise DataError(path, f"view {view!r} has shape {values.shape}; expected ({labels.shape[0]}, D)")
    inputs = {view: torch.from_numpy(np.ascontiguousarray(values, dtype=np.float32)) for view, values in arrays.items()}
    return inputs, torch.from_numpy(labels.astype(np.int64))


def build_mfeat(config: MfeatConfig, ctx: BuildContext) -> DataBundle:
    modalities = tuple(ctx.modalities)
    _check_views(modalities)
    with _data_file(config.path) as path:
        inputs, labels = load_arrays(path, modalities)
    rows = stratified_split(labels, config.val_fraction, config.test_fraction, config.split_seed)
    if config.standardize:
        train = rows["train"]
        for view, values in inputs.items():
            mean = values[train].mean(0)
            std = values[train].std(0).clamp_min(STD_FLOOR)
            inputs[view] = (values - mean) / std
    splits = {
        name: TensorSplit({m: inputs[m][chosen] for m in modalities}, labels[chosen], modalities)
        for name, chosen in rows.items()
    }
    info = DataInfo(
        modalities=modalities,
        task="classification",
        num_outputs=NUM_CLASSES,
        input_shapes={m: (int(inputs[m].shape[1]),) for m in modalities},
        sequence={m: False for m in modalities},
        citation=CITATION,
    )
    return DataBundle(info=info, splits=splits)
