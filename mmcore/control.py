"""TrainControl: the small surface epoch-level methods use to steer training (DESIGN.md section 4)."""
from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

import torch
from torch import Tensor

from mmcore.types import Batch

if TYPE_CHECKING:
    from mmcore.model import MultimodalModel
    from mmcore.trainer import Trainer

#: One entry of an epoch plan: (dataset row, modalities it keeps or None for all, per-entry extras).
PlanEntry = tuple[int, "tuple[str, ...] | None", "dict[str, Tensor]"]


class TrainControl:
    """Not the whole Trainer: only what resampling, staging and valuation methods need."""

    def __init__(self, trainer: Trainer) -> None:
        self._trainer = trainer

    @property
    def modalities(self) -> tuple[str, ...]:
        return self._trainer.model.modalities

    @property
    def epoch(self) -> int:
        return self._trainer.epoch

    @property
    def task_loss(self) -> Callable[..., Tensor]:
        """The run's task loss, `task_loss(logits, y, reduction="mean" | "none")` (value functions take it)."""
        return self._trainer.task_loss

    def num_samples(self, split: str = "train") -> int:
        return len(self._trainer.data.splits[split])

    def plan_epoch(self, entries: Sequence[PlanEntry] | None) -> None:
        """Set the rows of the next training epoch (or the current one, from `on_epoch_start`).

        None returns to the plain dataset. The plan is checkpointed and restored before the loader.
        """
        self._trainer.set_plan(None if entries is None else [_normalise(e) for e in entries])

    def evaluate(
        self,
        split: str,
        fn: Callable[[Batch, MultimodalModel], Any],
        subset: Sequence[int] | Tensor | None = None,
        batch_size: int | None = None,
    ) -> list[Any]:
        """`fn(batch, model)` on every batch of `split` (or of its rows `subset`), in eval mode
        under no_grad; the model's training flags are restored afterwards."""
        return self._trainer.map_split(split, fn, subset=subset, batch_size=batch_size)

    def freeze(self, modality: str) -> None:
        self._trainer.set_frozen(modality, True)

    def unfreeze(self, modality: str) -> None:
        self._trainer.set_frozen(modality, False)

    def reset_optimizer(self) -> None:
        """Fresh optimizer state and scheduler (MIE resets both at each stage switch)."""
        self._trainer.reset_optimizer()

    def restore(self, tag: str = "best") -> None:
        """Load model weights only from checkpoints/<tag>; callers keep their own state."""
        self._trainer.restore_weights(tag)

    def no_sync(self) -> contextlib.AbstractContextManager[None]:
        """For step owners under DDP: the first backward skips the gradient all-reduce."""
        return self._trainer.no_sync()


def _normalise(entry: Sequence[Any]) -> PlanEntry:
    index, keep, *rest = entry
    extras = rest[0] if rest else {}
    return int(index), (None if keep is None else tuple(keep)), dict(extras)


def plan_to_state(plan: list[PlanEntry] | None) -> dict[str, Any] | None:
    """A plan as checkpointable state: rows and keeps as JSON, extras as stacked tensors."""
    if plan is None:
        return None
    names = sorted({k for _, _, extras in plan for k in extras})
    return {
        "index": [i for i, _, _ in plan],
        "keep": [None if k is None else list(k) for _, k, _ in plan],
        "extras": {n: torch.stack([extras[n] for _, _, extras in plan]) for n in names},
    }


def plan_from_state(state: dict[str, Any] | None) -> list[PlanEntry] | None:
    if state is None:
        return None
    extras: dict[str, Tensor] = state["extras"]
    return [
        (int(i), None if k is None else tuple(k), {n: t[j] for n, t in extras.items()})
        for j, (i, k) in enumerate(zip(state["index"], state["keep"]))
    ]


@contextlib.contextmanager
def no_op() -> Iterator[None]:
    yield
