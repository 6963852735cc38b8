"""Mixup on the active modality (official MIE code, not in the paper): x̃ = λx + (1 − λ)x_π with
λ ~ Beta(a, a) and a random permutation π, trained on λ·ℓ(o, y) + (1 − λ)·ℓ(o, y_π).

λ comes from the trainer's generator. torch.distributions cannot take a generator, so the Beta
draw is X/(X + Y) with X, Y ~ Gamma(a) from Marsaglia & Tsang's squeeze method (2000), evaluated on
a fixed batch of candidates so it stays on the device without a data-dependent loop.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

import mmcore

CANDIDATES = 16  # acceptance ≥ 0.95 per candidate for shape ≥ 1: all 16 rejected has probability < 1e-20


def gamma_sample(shape: float, generator: torch.Generator, device: torch.device) -> Tensor:
    """One Gamma(shape, 1) draw as a 0-dim tensor (shape < 1 via Gamma(shape + 1)·U^{1/shape})."""
    boosted = shape < 1.0
    a = shape + 1.0 if boosted else shape
    d = a - 1.0 / 3.0
    c = 1.0 / math.sqrt(9.0 * d)
    z = torch.randn(CANDIDATES, generator=generator, device=device)
    u = torch.rand(CANDIDATES, generator=generator, device=device)
    v = (1.0 + c * z).pow(3).clamp_min(torch.finfo(torch.float32).tiny)
    accepted = (1.0 + c * z > 0) & (torch.log(u) < 0.5 * z * z + d - d * v + d * torch.log(v))
    first = accepted.float().argmax().view(1)  # the first accepted candidate
    draw = d * v.gather(0, first).squeeze(0)
    if boosted:
        draw = draw * torch.rand((), generator=generator, device=device).pow(1.0 / shape)
    return draw


def beta_sample(alpha: float, generator: torch.Generator, device: torch.device) -> Tensor:
    x, y = gamma_sample(alpha, generator, device), gamma_sample(alpha, generator, device)
    return x / (x + y)


def draw_mix(alpha: float, batch_size: int, generator: torch.Generator, device: torch.device) -> tuple[Tensor, Tensor]:
    """(λ, π). alpha = 0 turns mixup off: λ = 1 and π the identity."""
    if alpha == 0.0:
        return torch.ones((), device=device), torch.arange(batch_size, device=device)
    return beta_sample(alpha, generator, device), torch.randperm(batch_size, generator=generator, device=device)


def mixed_batch(batch: mmcore.Batch, modality: str, lam: Tensor, permutation: Tensor) -> mmcore.Batch:
    x = batch.inputs[modality]
    if not x.is_floating_point():
        raise TypeError(f"mie mixup needs floating-point inputs for {modality!r}; set mixup_alpha = 0")
    mixed = lam.to(x.dtype) * x + (1 - lam.to(x.dtype)) * x[permutation]
    return batch.replace(inputs={**batch.inputs, modality: mixed})


def mixup_loss(state: mmcore.StepState, logits: Tensor, lam: Tensor, permutation: Tensor) -> Tensor:
    y = state.batch.label
    return lam * state.task_loss(logits, y) + (1 - lam) * state.task_loss(logits, y[permutation])
