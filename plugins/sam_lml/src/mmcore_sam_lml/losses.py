"""SAM-LML's loss terms on plain tensors (paper Eq. 4, 6, 8, 10, 12-15, 28), so each can be checked by hand.

Conventions (README, "Reductions"): every ranking term is a hinge on *pre-softmax* scores, averaged
over the valid (query, key) pairs, i.e. real steps of present modalities in both dimensions (the
paper's T x T mean with padding masked). Row terms (variance, context) average over valid query
rows. Terms are summed over attention records by the caller (Eq. 29: "L^n is the sum of all intra-
and inter-modal noise addition losses").
"""
from __future__ import annotations

import torch
from torch import Tensor

import mmcore


def masked_mean(values: Tensor, mask: Tensor) -> Tensor:
    """Mean of `values` where `mask` is True, over the global batch under DDP (ranks may hold
    different numbers of valid steps); 0 (with a gradient path) when nothing is selected."""
    weights = mask.to(values.dtype)
    return mmcore.global_mean((values * weights).sum(), weights.sum())


def pair_mask(query_mask: Tensor, key_mask: Tensor) -> Tensor:
    """bool [B, Tq, Tk]: both the query step and the key step are valid."""
    return query_mask[:, :, None] & key_mask[:, None, :]


def ranking_hinge(lower: Tensor, higher: Tensor, margin: float, mask: Tensor) -> Tensor:
    """mean over `mask` of max(lower - higher + margin, 0): `higher` must beat `lower` by `margin`.

    Eq. 4 (lower = A^n, higher = A), Eq. 6 (A^n vs A^n'), Eq. 8 (A^de vs A); Eq. 28 passes diagonals."""
    return masked_mean(torch.relu(lower - higher + margin), mask)


def diagonal(scores: Tensor) -> Tensor:
    """[B, T, T] -> [B, T]: the aligned (t, t) scores that Eq. 28's identity matrix selects."""
    return torch.diagonal(scores, dim1=-2, dim2=-1)


def mixing_loss(scores: Tensor, mixed_scores: Tensor, margin: float, step_mask: Tensor) -> Tensor:
    """Eq. 28 on the diagonal: max(A_{t,t} - A^mix_{t,t} + margin, 0), mean over steps valid in both
    modalities (`step_mask` [B, T]). Off the diagonal Eq. 28 is the constant margin: no gradient."""
    return ranking_hinge(diagonal(scores), diagonal(mixed_scores), margin, step_mask)


def masked_softmax(scores: Tensor, key_mask: Tensor) -> Tensor:
    """Softmax over visible keys; a row without any visible key is all zeros (never NaN)."""
    visible = key_mask[:, None, :].expand_as(scores)
    filled = scores.masked_fill(~visible, torch.finfo(scores.dtype).min)
    return torch.softmax(filled, dim=-1) * visible.to(scores.dtype)


def variance_loss(scores: Tensor, query_mask: Tensor, key_mask: Tensor, beta: float) -> Tensor:
    """Eq. 14: max(0, beta - Std(Softmax(A))) per row, mean over valid rows.

    Std is the population standard deviation over the row's visible keys; rows with fewer than two
    visible keys have no spread to constrain and are left out."""
    weights = masked_softmax(scores, key_mask)
    visible = key_mask[:, None, :].to(scores.dtype)
    count = visible.sum(-1).clamp_min(1.0)
    mean = weights.sum(-1, keepdim=True) / count[..., None]
    variance = (((weights - mean) ** 2) * visible).sum(-1) / count
    std = variance.clamp_min(1e-12).sqrt()  # clamp: sqrt has no finite gradient at 0
    rows = query_mask & (key_mask.sum(-1, keepdim=True) >= 2)
    return masked_mean(torch.relu(beta - std), rows)


def context_band(queries: int, keys: int, rho: int, device: torch.device | None = None) -> Tensor:
    """bool [Tq, Tk]: the rho keys nearest the diagonal of each row, offsets -floor((rho-1)/2) .. floor(rho/2)
    (rho = 5: the diagonal and two steps either side), clipped at the sequence ends."""
    offset = torch.arange(keys, device=device)[None, :] - torch.arange(queries, device=device)[:, None]
    return (offset >= -((rho - 1) // 2)) & (offset <= rho // 2)


def context_loss(scores: Tensor, query_mask: Tensor, key_mask: Tensor, gamma: float, rho: int) -> Tensor:
    """Eq. 15: max(0, mean(A_i) + gamma - mean_band(A_i)) per row i, mean over valid rows.

    Both means run over the row's visible keys; a row needs a visible key inside its band."""
    visible = key_mask[:, None, :].expand_as(scores)
    band = context_band(scores.shape[-2], scores.shape[-1], rho, scores.device)[None] & visible
    row_mean = masked_row_mean(scores, visible)
    band_mean = masked_row_mean(scores, band)
    rows = query_mask & band.any(-1)
    return masked_mean(torch.relu(row_mean + gamma - band_mean), rows)


def masked_row_mean(scores: Tensor, mask: Tensor) -> Tensor:
    weights = mask.to(scores.dtype)
    return (scores * weights).sum(-1) / weights.sum(-1).clamp_min(1.0)


def per_sample_rms(values: Tensor, mask: Tensor) -> Tensor:
    """[B]: root mean square of each sample's entries where `mask` (broadcast to `values`) is True."""
    weights = mask.to(values.dtype).expand_as(values).reshape(values.shape[0], -1)
    squares = (values.reshape(values.shape[0], -1) ** 2 * weights).sum(-1) / weights.sum(-1).clamp_min(1.0)
    return squares.clamp_min(1e-12).sqrt()


def orthogonality_loss(relevant: Tensor, irrelevant: Tensor, step_mask: Tensor) -> Tensor:
    """L_or = ||U^de (K^de)^T||_2 (Eq. 9), as the RMS over valid (t, t') entries per sample, batch mean."""
    products = relevant @ irrelevant.transpose(-1, -2)
    return masked_mean(per_sample_rms(products, pair_mask(step_mask, step_mask)), step_mask.any(-1))


def distance_loss(keys: Tensor, irrelevant: Tensor, step_mask: Tensor, epsilon: float) -> Tensor:
    """The second part of Eq. 10: max(||U - K^de||^2 - epsilon, 0), the squared distance taken as the
    mean over each sample's valid entries (so epsilon does not scale with T or d), batch mean."""
    entries = step_mask[..., None].to(keys.dtype)
    squared = (((keys - irrelevant) ** 2) * entries).sum((1, 2)) / (entries.sum((1, 2)) * keys.shape[-1]).clamp_min(1.0)
    return masked_mean(torch.relu(squared - epsilon), step_mask.any(-1))


def prediction_gap_loss(irrelevant_logits: Tensor, noise_logits: Tensor, step_mask: Tensor) -> Tensor:
    """Eq. 12: ||Predictor(K^de) - Predictor(N)||^2 per valid step (squared L2 over outputs), mean."""
    return masked_mean(((irrelevant_logits - noise_logits) ** 2).sum(-1), step_mask)


def reconstruction_loss(keys: Tensor, reconstructed: Tensor, step_mask: Tensor) -> Tensor:
    """L_re = ||U - Compo(K^de, U^de)||_2 (Eq. 11), as the RMS over valid entries per sample, batch mean."""
    return masked_mean(per_sample_rms(keys - reconstructed, step_mask[..., None]), step_mask.any(-1))
