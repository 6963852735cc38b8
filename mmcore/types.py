"""The data types that cross the boundary between the core and its plugins.

The names are the contract (DESIGN.md section 4); fields may grow, never change meaning.
"""
from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any, Callable, Literal

import torch
from attrs import define, evolve, field
from torch import Tensor

from mmcore.distributed import mean_over_ranks

if TYPE_CHECKING:
    from mmcore.control import TrainControl
    from mmcore.model import MultimodalModel

ScoreFn = Callable[[Tensor, Tensor], Tensor]


@define
class Batch:
    """One collated batch. Every modality is present as a tensor; `present` says which are real."""

    inputs: dict[str, Tensor]
    present: Tensor  # bool [B, M], columns in the config's modality order
    label: Tensor
    index: Tensor  # long [B]: dataset row
    masks: dict[str, Tensor] = field(factory=dict)  # sequence modalities: bool [B, T], True = real step
    extras: dict[str, Tensor] = field(factory=dict)

    @property
    def size(self) -> int:
        return int(self.label.shape[0])

    def map(self, fn: Callable[[Tensor], Tensor]) -> Batch:
        """The batch with `fn` applied to every tensor."""
        return Batch(
            inputs={k: fn(v) for k, v in self.inputs.items()},
            present=fn(self.present),
            label=fn(self.label),
            index=fn(self.index),
            masks={k: fn(v) for k, v in self.masks.items()},
            extras={k: fn(v) for k, v in self.extras.items()},
        )

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Batch:
        return self.map(lambda t: t.to(device, non_blocking=non_blocking))

    def pin_memory(self) -> Batch:
        """Page-locked copies (the loader calls this when it pins memory for a GPU), so that
        `to(cuda, non_blocking=True)` copies run asynchronously instead of stalling the step."""
        return self.map(torch.Tensor.pin_memory)

    def replace(self, **changes: Any) -> Batch:
        return evolve(self, **changes)


@define
class AttentionRecord:
    """One attention block's view, enough for a supervisor to re-score corrupted keys."""

    name: str
    kind: Literal["intra", "inter"]
    query_modality: str
    key_modality: str
    queries: Tensor  # [B, Tq, D] block inputs
    keys: Tensor  # [B, Tk, D]
    scores: Tensor  # [B, Tq, Tk] pre-softmax (mean over heads)
    score_fn: ScoreFn  # (queries, keys) -> [B, Tq, Tk] with the block's own projections and scaling
    query_mask: Tensor | None = None  # bool [B, Tq]
    key_mask: Tensor | None = None  # bool [B, Tk]


@define
class FusionOutput:
    logits: Tensor
    unimodal_logits: dict[str, Tensor] | None = None
    attention: list[AttentionRecord] = field(factory=list)
    aux_losses: dict[str, Tensor] = field(factory=dict)
    predictor: Callable[[Tensor], Tensor] | None = None  # the final head on fused-space features
    fused: Tensor | None = None  # the fused representation the predictor consumes


@define
class ModelOutput:
    features: dict[str, Tensor]  # encoder outputs, kept so probes re-run only the fusion
    fusion: FusionOutput
    present: Tensor  # bool [B, M]: the presence mask the fusion saw (batch mask AND drops)

    @property
    def logits(self) -> Tensor:
        return self.fusion.logits


@define
class ModalityValues:
    """Shapley values of the modalities: [M] per batch, [B, M] per sample, or [M, B, C] logit attributions."""

    values: Tensor
    modalities: tuple[str, ...]
    coalitions: dict[tuple[str, ...], Tensor] = field(factory=dict)

    def of(self, modality: str) -> Tensor:
        i = self.modalities.index(modality)
        return self.values[i] if self.values.dim() != 2 else self.values[:, i]

    def batch_mean(self) -> Tensor:
        """[M]: each modality's value for the step's whole batch — per-batch values as they are (the
        trainer has averaged them over DDP ranks), per-sample ones averaged over the samples of
        every rank, detached (a batch statistic, DESIGN.md section 8)."""
        if self.values.dim() == 1:
            return self.values
        if self.values.dim() != 2:
            raise ValueError("logit attributions [M, B, C] have no one value per modality")
        mean = self.values.detach().mean(0)
        mean_over_ranks([mean])
        return mean

    def shares(self) -> Tensor:
        """Per-batch values normalised to sum to one (clamped at zero first)."""
        v = self.batch_mean().clamp_min(0)
        total = v.sum()
        uniform = torch.full_like(v, 1.0 / v.numel())
        return torch.where(total > 0, v / total.clamp_min(torch.finfo(v.dtype).tiny), uniform)  # no host sync


@define
class StepState:
    """Everything one training step knows, handed to balancers, supervisors and valuators."""

    batch: Batch
    model: MultimodalModel
    control: TrainControl | None
    task_loss: Callable[..., Tensor]  # task_loss(logits, y, reduction="mean" | "none")
    generator: Callable[..., torch.Generator]  # generator(name, shared=False, device=None)
    autocast: Callable[[], Any] = lambda: contextlib.nullcontext()  # the run's precision context, for extra passes
    epoch: int = 0
    step: int = 0
    training: bool = True
    pass_index: int = 0
    output: ModelOutput | None = None  # always pass 0's
    pass_outputs: list[ModelOutput] = field(factory=list)  # every pass, in order
    losses: dict[str, Tensor] = field(factory=dict)
    sample_losses: dict[str, Tensor] = field(factory=dict)
    values: dict[str, ModalityValues] = field(factory=dict)
    active_modalities: tuple[str, ...] | None = None  # None = all
    stash: dict[str, dict[str, Any]] = field(factory=dict)
    metrics: dict[str, Tensor | float] = field(factory=dict)  # read back at the logging point only

    def private(self, namespace: str) -> dict[str, Any]:
        """A plugin's own corner of `stash`, created on first use."""
        return self.stash.setdefault(namespace, {})
