"""Test helpers: an observer that snapshots weights and gradients at every backward and just
before the optimizer step, and toy configs for the SAM family."""
from __future__ import annotations

from typing import Any

import torch

import mmcore
from mmcore.testing import toy_config

PLAIN_SGD = {"kind": "sgd", "lr": 0.1, "momentum": 0.0}


def sam_toy(*balancers: dict[str, Any], **tables: Any) -> dict[str, Any]:
    """The core's toy run (two synthetic modalities, MLP encoders, concat), plain SGD."""
    tables.setdefault("optimizer", PLAIN_SGD)
    return toy_config(balancers=list(balancers), **tables)


class Snapshots:
    """Weights and gradients at each backward (`after_backward[pass]`) and at `before_step`."""

    def __init__(self) -> None:
        self.events: list[tuple[str, int, list[torch.Tensor], list[torch.Tensor | None]]] = []
        self.states: list[mmcore.StepState] = []

    def _take(self, name: str, trainer: Any, state: mmcore.StepState) -> None:
        params = list(trainer.model.parameters())
        weights = [p.detach().clone() for p in params]
        grads = [None if p.grad is None else p.grad.detach().clone() for p in params]
        self.events.append((name, state.pass_index, weights, grads))

    @mmcore.hookimpl
    def mmcore_after_backward(self, trainer: Any, state: mmcore.StepState) -> None:
        self._take("backward", trainer, state)

    @mmcore.hookimpl
    def mmcore_before_optimizer_step(self, trainer: Any, state: mmcore.StepState) -> None:
        self._take("step", trainer, state)
        self.states.append(state)

    def get(self, name: str, pass_index: int = 0, occurrence: int = 0) -> tuple[list[torch.Tensor], list[Any]]:
        found = [(w, g) for n, i, w, g in self.events if n == name and (name == "step" or i == pass_index)]
        return found[occurrence]


def global_norm(tensors: list[torch.Tensor]) -> torch.Tensor:
    return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(t) for t in tensors]))
