"""The five component interfaces. Base classes carry only no-op defaults (composition over inheritance).

The Trainer calls these directly; pluggy is used only to register kinds and to let observers watch.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, ClassVar, Protocol, runtime_checkable

from torch import Tensor, nn

from mmcore.types import FusionOutput, ModalityValues, StepState

if TYPE_CHECKING:
    from mmcore.control import TrainControl
    from mmcore.model import MultimodalModel

#: What a fusion can provide and a balancer or supervisor can require (`mmcore kinds` prints this).
CAPABILITIES: dict[str, str] = {
    "unimodal_logits": "FusionOutput.unimodal_logits holds per-modality logits (decomposable or per-modality heads)",
    "attention": "FusionOutput.attention holds AttentionRecords with pre-softmax scores and score functions",
    "aligned_sequences": "the fusion consumes time-aligned sequences of equal length across modalities",
    "per_modality_heads": "model.heads returns one head module per modality",
    "labels_in_fusion": "the fusion receives the labels during training (e.g. prototype updates)",
}


class Encoder(nn.Module):
    """Maps one modality's input to features.

    Vector encoders return [B, out_dim]; sequence encoders (`sequence = True`) return [B, T, out_dim]
    with the input's T preserved, so the batch's padding mask still applies.
    """

    out_dim: int
    sequence: bool = False

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:  # pragma: no cover - interface
        raise NotImplementedError


class Fusion(nn.Module):
    """Combines per-modality features into logits.

    `present` is bool [B, M] in `modalities` order; absent modalities' features arrive zeroed, and
    attention fusions also mask their keys. With `probe=True` the call must have no side effects:
    no buffer updates and no aux losses (valuators call it once per coalition).
    """

    provides: ClassVar[frozenset[str]] = frozenset()
    modalities: tuple[str, ...]

    def forward(
        self,
        features: dict[str, Tensor],
        present: Tensor,
        masks: dict[str, Tensor] | None = None,
        labels: Tensor | None = None,
        probe: bool = False,
    ) -> FusionOutput:  # pragma: no cover - interface
        raise NotImplementedError

    def modality_modules(self, modality: str) -> list[nn.Module]:
        """The fusion's parts that belong to one modality (per-modality heads, projections)."""
        return []

    @property
    def heads(self) -> nn.ModuleDict | None:
        """Per-modality heads, for fusions that provide `per_modality_heads`."""
        return None


@runtime_checkable
class Stateful(Protocol):
    def state_dict(self) -> dict[str, Any]: ...
    def load_state_dict(self, state: dict[str, Any]) -> None: ...


@runtime_checkable
class Valuator(Protocol):
    """Values each modality once per step (pass 0) by probing the fusion on cached features."""

    def value(self, state: StepState) -> ModalityValues: ...


@runtime_checkable
class AttentionSupervisor(Protocol):
    """Adds loss terms computed from a fusion's attention records. Keys are namespaced by the caller."""

    requires: ClassVar[frozenset[str]]

    def attach(self, model: MultimodalModel) -> None: ...
    def losses(self, state: StepState) -> dict[str, Tensor]: ...


class Balancer:
    """No-op defaults for every balancer hook. Subclass for the defaults only, or implement the
    methods you need on any class: the trainer looks them up by name.

    `owns_step = True` makes the balancer the step owner: its `step(closure, finish, state)` runs
    `closure()` one or more times and `finish()` exactly once. At most one balancer owns the step.
    """

    owns_step: ClassVar[bool] = False
    requires: ClassVar[frozenset[str]] = frozenset()

    def attach(self, model: MultimodalModel) -> None: ...
    def detach(self) -> None: ...
    def on_epoch_start(self, epoch: int, control: TrainControl) -> None: ...
    def before_forward(self, state: StepState) -> None: ...
    def before_backward(self, state: StepState) -> None: ...
    def after_backward(self, state: StepState) -> None: ...
    def on_epoch_end(self, epoch: int, metrics: dict[str, float], control: TrainControl) -> None: ...

    def step(self, closure: Callable[[], StepState], finish: Callable[[], None], state: StepState) -> None:
        closure()
        finish()

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None: ...
