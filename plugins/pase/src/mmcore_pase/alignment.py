"""CAL: entropic optimal transport between every pair of modalities' prototype sets (spec §3.3).

All M(M−1)/2 pairs, in both directions, are solved by ONE batched Sinkhorn on a
[2P, K, K] stack of costs (`sinkhorn.py`), so CAL costs one solve whatever the number of pairs.

L_inter(m, n) = L_match + α L_reg + β Ω, with
  L_match = ½(⟨Q^{m→n}, C⟩ + ⟨Q^{n→m}, Cᵀ⟩),  L_reg = ‖Q^{m→n} − (Q^{n→m})ᵀ‖²_F,
  Ω = ½(‖Q^{m→n} − T‖²_F + ‖Q^{n→m} − T‖²_F), T = diag(a) (class-to-class matching with the plan's
  own mass; the official code compares with I, which a plan summing to 1 can never approach).
"""
from __future__ import annotations

from functools import lru_cache

import attrs
import torch
import torch.nn.functional as F
from torch import Tensor

from mmcore_pase.sinkhorn import SinkhornOptions, sinkhorn

# log-mass of a class without a prototype: it carries no mass in any plan
NO_MASS = -1e9


@lru_cache(maxsize=16)
def modality_pairs(num_modalities: int) -> tuple[tuple[int, int], ...]:
    return tuple((m, n) for m in range(num_modalities) for n in range(m + 1, num_modalities))


def fresh_prototypes(prototypes: Tensor, initialised: Tensor, means: Tensor, counts: Tensor,
                     momentum: float, mode: str) -> tuple[Tensor, Tensor]:
    """Differentiable prototypes for CAL, [M, K, D], and which classes have one, [M, K].

    The EMA buffers are detached, so a loss on them alone has no gradient (the official code's
    bug). "fresh": p_k = γ sg(c_k) + (1 − γ) mean_k for classes in the batch (the batch mean alone
    for a class seen for the first time); "batch": the batch class means. Classes not in the batch
    keep sg(c_k) in both modes."""
    seen = counts > 0
    stale = prototypes.detach()
    if mode == "fresh":
        blended = torch.where(initialised.unsqueeze(-1), momentum * stale + (1 - momentum) * means, means)
    else:
        blended = means
    return torch.where(seen.unsqueeze(-1), blended, stale), initialised | seen


def pair_costs(prototypes: Tensor, pairs: tuple[tuple[int, int], ...], normalise: bool) -> Tensor:
    """C_kl = ‖c_k^m − c_l^n‖² for every pair, [P, K, K]. With `normalise`, on L2-normalised
    prototypes (C in [0, 4]), so ε = 0.05 means the same thing whatever the feature scale."""
    if normalise:
        prototypes = F.normalize(prototypes, dim=-1)
    first = prototypes[[m for m, _ in pairs]]
    second = prototypes[[n for _, n in pairs]]
    squared = first.pow(2).sum(-1).unsqueeze(-1) + second.pow(2).sum(-1).unsqueeze(-2)
    return (squared - 2 * first @ second.transpose(1, 2)).clamp_min(0)


def log_marginals(valid: Tensor) -> Tensor:
    """Uniform mass over the classes that have a prototype (log domain), [N, K]."""
    count = valid.sum(-1, keepdim=True).clamp_min(1).to(torch.float32)
    return torch.where(valid, -count.log(), torch.full_like(count.expand_as(valid), NO_MASS))


def alignment_terms(prototypes: Tensor, valid: Tensor, options: SinkhornOptions, normalise: bool = True,
                    structure_target: str = "scaled") -> dict[str, Tensor]:
    """L_match, L_reg, Ω per modality pair ([P] each) and `weight` [P]: 1 where both modalities
    have at least one prototype (otherwise the pair's terms are meaningless and count 0)."""
    pairs = modality_pairs(prototypes.shape[0])
    cost = pair_costs(prototypes.float(), pairs, normalise)
    if normalise:  # unit vectors: C ≤ 4, which lets the solver use the faster scaling domain
        options = attrs.evolve(options, max_cost=4.0)
    first, second = valid[[m for m, _ in pairs]], valid[[n for _, n in pairs]]
    usable = first.any(-1) & second.any(-1)
    first, second = _fallback_uniform(first, usable), _fallback_uniform(second, usable)
    log_first, log_second = log_marginals(first), log_marginals(second)
    plans = sinkhorn(torch.cat([cost, cost.transpose(1, 2)]), torch.cat([log_first, log_second]),
                     torch.cat([log_second, log_first]), options)
    forward, backward = plans.split(len(pairs))
    match = 0.5 * ((forward * cost).sum((1, 2)) + (backward * cost.transpose(1, 2)).sum((1, 2)))
    consistency = (forward - backward.transpose(1, 2)).pow(2).sum((1, 2))
    targets = _structure_targets(log_first.exp(), log_second.exp(), structure_target)
    structure = 0.5 * ((forward - targets[0]).pow(2).sum((1, 2)) + (backward - targets[1]).pow(2).sum((1, 2)))
    return {"match": match, "consistency": consistency, "structure": structure, "weight": usable.to(cost.dtype)}


def _fallback_uniform(valid: Tensor, usable: Tensor) -> Tensor:
    # A pair whose side has no prototype gets uniform marginals, so its (zero-weighted) solve stays finite.
    return valid | ~usable.unsqueeze(-1)


def _structure_targets(mass_first: Tensor, mass_second: Tensor, mode: str) -> tuple[Tensor, Tensor]:
    if mode == "identity":  # the official code: I, although every plan sums to 1
        eye = torch.eye(mass_first.shape[-1], device=mass_first.device, dtype=mass_first.dtype)
        return eye.expand(mass_first.shape[0], -1, -1), eye.expand(mass_first.shape[0], -1, -1)
    return torch.diag_embed(mass_first), torch.diag_embed(mass_second)


def inter_losses(terms: dict[str, Tensor], alpha: float, beta: float) -> Tensor:
    """L_inter per pair [P], zero for unusable pairs."""
    return (terms["match"] + alpha * terms["consistency"] + beta * terms["structure"]) * terms["weight"]
