"""What a dataset kind returns, and the sample/batch format every loader shares."""
from __future__ import annotations

from typing import Any, Callable

from attrs import define, field
from torch import Tensor
from torch.utils.data import Dataset

from mmcore.types import Batch

DeviceTransform = Callable[[Tensor], Tensor]


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

    `on_device[m]` finishes modality m's inputs once a batch is on the run's device: loaders then
    carry a compact form (video frames as uint8 pixels, a quarter of float32's bytes) and the device
    does the elementwise work. A transform maps any leading shape, returns the model's input
    (float), and passes an input it already returned unchanged, so the host may apply it first
    (input-level corruption noises decoded values).

    `augments`: training items draw random augmentation from torch's global generator. The trainer
    then seeds each item from the epoch and its position (`mmcore.data.loading.SeededItems`).
    """

    info: DataInfo
    splits: dict[str, Dataset[Any]] = field(factory=dict)  # "train", "val", "test"
    on_device: dict[str, DeviceTransform] = field(factory=dict)
    augments: bool = False

    def prepare(self, batch: Batch) -> Batch:
        """`batch` with each modality's device transform applied (where the batch now is)."""
        if not self.on_device:
            return batch
        inputs = {m: self.on_device[m](x) if m in self.on_device else x for m, x in batch.inputs.items()}
        return batch.replace(inputs=inputs)
