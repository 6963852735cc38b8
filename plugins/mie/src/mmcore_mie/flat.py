"""The flat term of `sam_mode = "paper"` and `"head_only"` (official MIE code, §5.5 of the specs):

    L = (1 − β)·L_ori + β·L_flat,   L_flat = ℓ(H_m(z; θ_H + ε), y),   ε = ρ·g/‖g‖,  g = ∇_θH L_ori

with z the active head's input from the same forward (so L_flat's gradient also reaches the
encoder through z) and y the un-mixed labels (the code's choice; `flat_targets = "mixed"` uses the
mixup targets). The head is evaluated at θ_H + ε functionally: the weights are never changed, so
there is nothing to revert (the official code adds ε in place and never removes it). The official
code also perturbs the encoder, which has no effect because z is reused; we skip that.

At the paper's ρ (1e-10, 1e-15) ε is below float32 resolution of the weights: θ_H + ε == θ_H for
(almost) every entry, and `perturbed_fraction` measures that each step.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

SAM_EPSILON = 1e-12


class FlatTerm(NamedTuple):
    logits: Tensor  # the head's output at θ_H + ε
    perturbed_fraction: Tensor  # share of head weight entries that θ_H + ε actually changes (0-dim)


def head_ascent(grads: list[Tensor], rho: float, per_tensor: bool) -> list[Tensor]:
    """ε = ρ·g/‖g‖ with one norm over the head (paper Eq. 3) or one per tensor (official code)."""
    norms = torch._foreach_norm(grads)
    if per_tensor:
        return [g * (rho / (n + SAM_EPSILON)) for g, n in zip(grads, norms)]
    total = torch.linalg.vector_norm(torch.stack(norms))
    return [g * (rho / (total + SAM_EPSILON)) for g in grads]


def flat_logits(head: nn.Module, head_input: Tensor, loss_ori: Tensor, rho: float, per_tensor: bool) -> FlatTerm:
    names, params = zip(*head.named_parameters())
    grads = torch.autograd.grad(loss_ori, params, retain_graph=True, allow_unused=True)
    grads = [torch.zeros_like(p) if g is None else g.detach() for p, g in zip(params, grads)]
    offsets = head_ascent(grads, rho, per_tensor)
    moved = {name: p + e for name, p, e in zip(names, params, offsets)}
    with torch.no_grad():
        changed = sum(((moved[n] != p).sum() for n, p in zip(names, params)), torch.zeros((), device=head_input.device))
        fraction = changed.float() / sum(p.numel() for p in params)
    logits = torch.func.functional_call(head, moved, (head_input,))
    return FlatTerm(logits, fraction)


def float32_resolution(head: nn.Module) -> float:
    """Half an ulp of the median |weight| of a head: a perturbation entry below this is rounded
    away when added to a typical weight (ε's entries are at most ρ). Read once, at attach."""
    weights = torch.cat([p.detach().abs().flatten().float() for p in head.parameters()])
    return float(weights.median()) * 2.0 ** -24
