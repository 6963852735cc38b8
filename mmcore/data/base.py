"""What a dataset kind returns, and the sample/batch format every loader shares."""
from __future__ import annotations

from typing import Any

from attrs import define, field
from torch.utils.data import Dataset


@define
class DataInfo:
    modalities: tuple[str, ...]
    task: str  # "classification" | "binary" | "regression"
    num_outputs: int  # classes for classification; 1 for binary and regression
    input_shapes: dict[str, tuple[int, ...]]  # per sample, without the batch dimension
    sequence: dict[str, bool]  # True: input is [T, D] and samples carry a padding mask
    citation: str = ""


@define
class DataBundle:
    """A dataset kind's build result: the three splits and the facts the model needs.

    Each split is a map-style torch Dataset whose items are dicts:
      {"inputs": {m: Tensor}, "present": BoolTensor[M], "label": Tensor, "index": int,
       "masks": {m: BoolTensor[T]} (sequence modalities), "extras": {name: Tensor}}
    `index` is the row within its split, stable across runs (per-sample state and seeds key on it).
    """

    info: DataInfo
    splits: dict[str, Dataset[Any]] = field(factory=dict)  # "train", "val", "test"
