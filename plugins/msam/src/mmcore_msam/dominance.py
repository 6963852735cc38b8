"""M-SAM's modality weights: ν_m = Φ_m / Σ_i Φ_i (appendix Eq. 17) and the dominant modality
m_d = argmax_m ν_m, with the guards the paper leaves open (specs §2.8):

- a non-positive contribution (a modality that lowers the batch accuracy) counts as 0;
- when no modality contributes (Σ ≤ 0, e.g. every coalition is wrong), ν is uniform;
- a tie for the largest ν (accuracy on a small batch is quantised) keeps the previous step's
  dominant modality when it is among the tied ones, so the choice does not flicker.

Everything stays on the device: no host sync inside the step.
"""
from __future__ import annotations

import torch
from torch import Tensor

TIE_TOLERANCE = 1e-6  # Shapley weights are computed in float64 and cast: exact ties may differ by an ulp


def normalised_shares(values: Tensor) -> tuple[Tensor, Tensor]:
    """(ν, fallback): ν over the last dimension (values [M] or [B, M]) from the contributions
    clamped at 0, uniform where they sum to 0; `fallback` is 1.0 where the uniform ν was used."""
    positive = values.float().clamp_min(0)
    total = positive.sum(-1, keepdim=True)
    fallback = total <= 0
    uniform = torch.full_like(positive, 1.0 / positive.shape[-1])
    nu = torch.where(fallback, uniform, positive / total.clamp_min(torch.finfo(positive.dtype).tiny))
    return nu, fallback.squeeze(-1).float()


def dominant_modality(nu: Tensor, previous: Tensor) -> Tensor:
    """argmax ν as a 0-dim long tensor; the previous dominant index wins a tie for the maximum."""
    previous = previous.to(nu.device).view(1)
    kept = nu.gather(0, previous) >= nu.max() - TIE_TOLERANCE  # gather, not nu[previous]: no host sync
    return torch.where(kept, previous, nu.argmax()).squeeze(0)
