"""AGM's conditional gradient clipping (spec §3.2 item 8), with no host sync.

Official CREMA-D rule: if any entry of the fusion head's weight gradient lies outside [-1, 1],
clip the norm of ALL parameters' gradients to 1. kappa is unbounded below the cap, so this is
load-bearing. We read "the fusion head's weight" as every weight (>= 2-D) of the fusion, which for
`concat` is exactly its head; the branch is taken on the device (a clip factor of 1 when the rule
does not fire), so the step never waits for the GPU.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn


def conditional_clip(model: nn.Module, fusion: nn.Module, threshold: float, max_norm: float) -> Tensor:
    """Clips in place when the rule fires; returns whether it fired (a bool tensor)."""
    watched = [p.grad for p in fusion.parameters() if p.grad is not None and p.dim() >= 2]
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    if not watched or not grads:
        return torch.zeros((), dtype=torch.bool)
    fired = torch.stack([g.detach().abs().amax() for g in watched]).amax() > threshold
    norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g.detach().float()) for g in grads]))
    factor = torch.where(fired, (max_norm / (norm + 1e-6)).clamp_max(1.0), torch.ones_like(norm))
    for g in grads:
        g.mul_(factor.to(g.dtype))
    return fired
