"""Recording components: balancers, a step owner, a supervisor, a valuator and observer hooks that
write every call into one shared list, so tests can pin the order of a step."""
from __future__ import annotations

from typing import Any, Callable

import torch
from attrs import field, frozen
from torch import Tensor

from mmcore.hookspecs import hookimpl
from mmcore.interfaces import Balancer
from mmcore.registry import ComponentRegistry
from mmcore.types import ModalityValues, StepState


@frozen(kw_only=True)
class RecordingConfig:
    name: str = field(default="rec", metadata={"help": "label used in the recorded calls"})
    owns_step: bool = field(default=False, metadata={"help": "own the step: two closure passes, one finish"})


class RecordingBalancer(Balancer):
    def __init__(self, config: RecordingConfig, calls: list[str]) -> None:
        self.name, self.calls, self.owns_step = config.name, calls, config.owns_step
        self.handle: Any = None

    def _record(self, event: str, state: StepState | None = None) -> None:
        self.calls.append(f"{self.name}.{event}" + (f"[{state.pass_index}]" if state is not None else ""))

    def attach(self, model: Any) -> None:
        self._record("attach")

    def detach(self) -> None:
        self._record("detach")

    def on_epoch_start(self, epoch: int, control: Any) -> None:
        self._record("on_epoch_start")

    def before_forward(self, state: StepState) -> None:
        self._record("before_forward", state)

    def before_backward(self, state: StepState) -> None:
        self._record("before_backward", state)

    def after_backward(self, state: StepState) -> None:
        self._record("after_backward", state)

    def on_epoch_end(self, epoch: int, metrics: dict[str, float], control: Any) -> None:
        self._record("on_epoch_end")

    def step(self, closure: Callable[[], StepState], finish: Callable[[], None], state: StepState) -> None:
        self._record("step")
        closure()
        self._record("between_passes")
        closure()
        finish()


class RecordingSupervisor:
    requires: frozenset[str] = frozenset()

    def __init__(self, calls: list[str]) -> None:
        self.calls = calls

    def attach(self, model: Any) -> None:
        self.calls.append("supervisor.attach")
        model.register_forward_hook(lambda *_: self.calls.append("model.forward"))

    def losses(self, state: StepState) -> dict[str, Tensor]:
        self.calls.append(f"supervisor.losses[{state.pass_index}]")
        return {"zero": state.pass_outputs[-1].logits.sum() * 0.0}


class RecordingValuator:
    def __init__(self, calls: list[str], modalities: tuple[str, ...]) -> None:
        self.calls, self.modalities = calls, modalities

    def value(self, state: StepState) -> ModalityValues:
        self.calls.append(f"valuator.value[{state.pass_index}]")
        return ModalityValues(torch.zeros(len(self.modalities)), self.modalities)


@frozen(kw_only=True)
class NoOptions:
    pass


class RecordingPlugin:
    """Register with `PluginHost(modules=[plugin])`; read `plugin.calls` afterwards."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    @hookimpl
    def mmcore_register_components(self, registry: ComponentRegistry) -> None:
        calls = self.calls
        registry.balancer("recording", RecordingConfig, lambda c, ctx: RecordingBalancer(c, calls),
                          owns_step=lambda c: c.owns_step, help="records every call (tests)")
        registry.attention_supervisor("recording", NoOptions, lambda c, ctx: RecordingSupervisor(calls),
                                      help="records every call (tests)")
        registry.valuator("recording", NoOptions, lambda c, ctx: RecordingValuator(calls, ctx.modalities),
                          help="records every call (tests)")

    @hookimpl
    def mmcore_after_backward(self, trainer: Any, state: StepState) -> None:
        self.calls.append(f"hook.after_backward[{state.pass_index}]")

    @hookimpl
    def mmcore_before_optimizer_step(self, trainer: Any, state: StepState) -> None:
        self.calls.append("hook.before_optimizer_step")


def record_optimizer_steps(trainer: Any, calls: list[str]) -> None:
    """Also record `optimizer.step` (wraps the trainer's optimizer in place)."""
    step = trainer.optimizer.step

    def recorded(*args: Any, **kwargs: Any) -> Any:
        calls.append("optimizer.step")
        return step(*args, **kwargs)

    trainer.optimizer.step = recorded
