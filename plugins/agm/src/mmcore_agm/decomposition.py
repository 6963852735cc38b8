"""Shapley-decomposed logits (spec §3.2 items 1-3) and the identity modules that scale their backward.

mtilde_m is the Shapley value of modality m in the game v(S) = the model's logits with the
modalities outside S muted, v(empty) = 0 — exactly the official mono-modal responses
phi_m + F(empty)/M. The coalitions other than the full one are evaluated by extra passes through
the model in eval mode with autograd on (the official semantics), muting at the input (official)
or at the features. The core's `mmcore.shapley` does the combination.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor, nn

import mmcore

Coalition = tuple[str, ...]


def coalition_logits(state: mmcore.StepState, drop_at: str) -> Callable[[Coalition], Tensor]:
    """value_of(S) = the [B, C] logits with the modalities outside S muted. The full coalition is
    this micro-batch's own train-mode forward; the others come from the core's coalition fuser:
    each encoder runs once on its real input and once muted (on zeros, at batch size 1, for an
    input-level drop), and each coalition is one fusion pass — the same values as a full masked
    pass per coalition (the official code) at a fraction of the cost."""
    output, model, batch = state.pass_outputs[-1], state.model, state.batch
    everyone = tuple(model.modalities)
    fuse_coalition = model.coalition_fuser(batch, drop_at=drop_at, active=state.active_modalities)

    def value_of(coalition: Coalition) -> Tensor:
        if coalition == everyone:
            return output.logits
        return fuse_coalition(coalition).logits

    return value_of


def shapley_logits(state: mmcore.StepState, drop_at: str, method: str, samples: int,
                   generator: torch.Generator | None) -> mmcore.ModalityValues:
    """Values [M, B, C] with sum_m values[m] = the full logits (efficiency; also for permutation
    sampling, whose orderings each telescope to v(all) - v(empty)). Masked passes run in eval mode
    (BatchNorm running statistics, no dropout) under the run's precision; whether they carry
    gradients is the caller's `torch.no_grad()` choice."""
    model = state.model
    with mmcore.eval_mode(model), state.autocast():
        return mmcore.shapley(coalition_logits(state, drop_at), model.modalities, empty="zero",
                              method=method, samples=samples, generator=generator)


class GradientScale(nn.Module):
    """Identity in the forward pass. The balancer registers a full backward hook on it that
    multiplies the gradient flowing back into modality m's component by kappa_m."""

    def forward(self, x: Tensor) -> Tensor:
        return x


def scale_hook(kappa: Callable[[], Tensor], index: int) -> Callable[..., tuple[Tensor]]:
    """A full backward hook: grad_input = kappa[index] * grad_output (kappa read at backward time)."""

    def hook(module: nn.Module, grad_input: tuple[Tensor, ...], grad_output: tuple[Tensor, ...]) -> tuple[Tensor]:
        grad = grad_output[0]
        return (grad * kappa()[index].to(device=grad.device, dtype=grad.dtype),)

    return hook
