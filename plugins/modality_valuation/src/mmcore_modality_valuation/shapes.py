"""The method's formulas on Shapley tables, as pure functions (the reference tests pin each one).

Notation (supplement §7): φ_m(i) is modality m's Shapley value on sample i under
v(S) = |S|·1[correct], so a correctly classified sample's fair share is 1.

- Sample level (Eq. 7): sample i gets s_m(i) = f_s(1 − φ_m(i)) copies that keep only m where
  φ_m(i) < 1, none otherwise. f_s(x) = 2x reproduces the official code's thresholds exactly on
  the M = 2 support {−½, 0, ½, 1, 3/2} → {3, 2, 1, 0, 0} copies.
- Modality level (Eq. 8): over a subset, φ̄_m is the mean value; the weak modality i has the
  smallest, d = mean_{j≠i}(φ̄_j − φ̄_i) (for M = 2, |gap_a − gap_v| = |acc_v − acc_a| on the subset),
  and p = f_m(Norm(d)) with Norm(d) = norm_scale·d.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor


def shaped(shape: str, x: Tensor) -> Tensor:
    """The monotone shapes the supplement names for f_s and f_m (Table 5): x, tanh(x), x^1.5."""
    if shape == "linear":
        return x
    if shape == "tanh":
        return torch.tanh(x)
    if shape == "power":
        return x.clamp_min(0) ** 1.5
    raise ValueError(f"unknown shape {shape!r}; shapes: linear, tanh, power")


def copy_counts(phi: Tensor, shape: str = "linear", scale: float = 2.0, rounding: str = "nearest",
                generator: torch.Generator | None = None) -> Tensor:
    """Copies of each sample that keep only modality m: [N, M] long from φ [N, M] (Eq. 7)."""
    gap = (1 - phi.double()).clamp_min(0)  # φ ≥ 1 (at least the fair share): no copies
    wanted = scale * shaped(shape, gap)
    if rounding == "nearest":
        # Shapley weights carry float error (0.5 may come back as 0.4999999): round, never floor
        return torch.floor(wanted + 0.5).long()
    if rounding == "stochastic":
        whole = torch.floor(wanted)
        draws = torch.rand(wanted.shape, generator=generator, dtype=wanted.dtype)
        return (whole + (draws < wanted - whole).double()).long()
    raise ValueError(f"unknown rounding {rounding!r}; roundings: nearest, stochastic")


class ModalityGap(NamedTuple):
    weak: int  # the modality with the smallest mean value: it is re-trained
    strong: int  # the one with the largest: dropped or masked by the alternative strategies
    d: float  # mean over the others of (their mean value − the weak one's)


def modality_gap(phi: Tensor) -> ModalityGap:
    """The discrepancy of Eq. 8 from the subset's values φ [n, M] (rows repeat when drawn twice)."""
    mean = phi.double().mean(0)
    weak, strong = int(mean.argmin()), int(mean.argmax())
    others = torch.cat([mean[:weak], mean[weak + 1:]])
    d = float((others - mean[weak]).mean()) if others.numel() else 0.0
    return ModalityGap(weak, strong, d)


def resample_probability(d: float, shape: str = "linear", alpha: float = 1.0, norm_scale: float = 2.0 / 3.0) -> float:
    """p = f_m(Norm(d)), the official code's three functions, kept in [0, 1] as the paper states."""
    x = torch.tensor(norm_scale * d, dtype=torch.float64)
    if shape == "tanh":
        p = torch.tanh(alpha * x)
    else:
        p = alpha * shaped(shape, x)
    return float(p.clamp(0.0, 1.0))
