"""AGM's formulas (spec §3.2 items 4-7), as tensor functions with no host sync.

Scores s_m are the cross-entropies of the Shapley logits; ratios r_m compare each score with the
modalities' mean; kappa_m compares the current ratio with the one of the running reference.
"""
from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

PROBABILITY_FLOOR = 1e-8  # the official -log(max(p, 1e-8)); vectorised as a clamp of log p


def unimodal_scores(shapley_logits: Tensor, label: Tensor, task: str, task_loss: Any) -> Tensor:
    """[M] scores s_m = -(1/B) sum_i log max(p(y_i | mtilde_m,i), 1e-8) from the detached Shapley
    logits [M, B, C]. Binary: the probability of the true class under a sigmoid. Regression (not in
    the paper): the task loss of the Shapley logits."""
    logits = shapley_logits.detach().float()
    floor = math.log(PROBABILITY_FLOOR)
    if task == "classification":
        index = label.view(1, -1, 1).expand(logits.shape[0], -1, 1)
        return -torch.log_softmax(logits, dim=-1).gather(2, index).squeeze(2).clamp_min(floor).mean(1)
    if task == "binary":
        sign = torch.where(label.reshape(1, -1) > 0.5, 1.0, -1.0)
        return -torch.nn.functional.logsigmoid(sign * logits.flatten(1)).clamp_min(floor).mean(1)
    return torch.stack([task_loss(m, label) for m in logits.unbind(0)])


def ratios(scores: Tensor) -> Tensor:
    """r_m = exp(M/(M-1) * (mean_k s_k - s_m)); M = 2: r_a = exp(s_v - s_a). r_m > 1: modality m's
    loss is lower than the modalities' average (it leads)."""
    m = scores.numel()
    return torch.exp(m / (m - 1) * (scores.mean() - scores))


def kappa(current: Tensor, reference: Tensor, alpha: float, cap: float) -> Tensor:
    """kappa_m = exp(alpha * min(rbar_m - r_m, cap)): a modality ahead of its historical ratio is
    damped (< 1), one behind it boosted (> 1). The cap bounds only the upside (official)."""
    return torch.exp(alpha * (ratios(reference) - ratios(current)).clamp_max(cap))


class RunningReference:
    """The reference scores Sbar. Official: the arithmetic (1/t) mean of every score since the
    start of training, Sbar <- Sbar (t-1)/t + s/t from Sbar = 0 — not an EMA, so it grows sticky
    late in training. `ema` (not official) uses Sbar <- decay Sbar + (1 - decay) s from the first s."""

    def __init__(self, num_modalities: int, mode: str = "cumulative", decay: float = 0.99) -> None:
        if mode not in ("cumulative", "ema"):
            raise ValueError(f"unknown reference {mode!r}")
        self.mode, self.decay = mode, decay
        self.mean = torch.zeros(num_modalities)
        self.count = 0  # t: updates so far (global, across epochs)

    def update(self, scores: Tensor) -> None:
        mean = self.mean.to(scores.device)
        self.count += 1
        t = self.count
        if self.mode == "cumulative":
            self.mean = mean * ((t - 1) / t) + scores / t
        else:
            self.mean = scores.clone() if t == 1 else mean * self.decay + scores * (1 - self.decay)

    def state_dict(self) -> dict[str, Any]:
        return {"mean": self.mean, "count": self.count}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.mean, self.count = state["mean"].clone(), int(state["count"])
