"""PCL: per-modality class prototypes, their EMA update and the calibration losses (spec §3.2).

Everything works on all modalities at once: features are stacked [M, B, D] (the fusion projects
every modality to one common size D, so the prototype sets of different modalities can be compared
by CAL), prototypes are [M, K, D] and `initialised` is bool [M, K]. A sample contributes to
modality m only where m is present, so missing data never drags a prototype towards zero.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

import mmcore

# Logit for classes without a prototype: far below any cos / tau, but finite, so a modality
# without any prototype yet gives a uniform distribution instead of NaN.
MASKED = -1e4


def class_statistics(features: Tensor, present: Tensor, classes: Tensor, num_classes: int) -> tuple[Tensor, Tensor]:
    """Per-modality class means of the batch [M, K, D] and the counts behind them [M, K]."""
    onehot = F.one_hot(classes, num_classes).to(features.dtype)  # [B, K]
    weights = present.t().to(features.dtype).unsqueeze(-1) * onehot  # [M, B, K]
    counts = weights.sum(1)
    sums = torch.einsum("mbk,mbd->mkd", weights, features)
    return sums / counts.clamp_min(1).unsqueeze(-1), counts


def global_statistics(features: Tensor, present: Tensor, classes: Tensor, num_classes: int) -> tuple[Tensor, Tensor]:
    """Per-modality class means [M, K, D] of the global batch — every DDP rank's samples, with
    gradients to this rank's — and the counts behind them [M, K]; `class_statistics` on one process.
    Both the fresh prototypes CAL aligns and the EMA update use them, as one rank with the global
    batch would."""
    means, counts = class_statistics(features, present, classes, num_classes)
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return means, counts
    sums = mmcore.global_sum(means * counts.unsqueeze(-1))
    counts = counts.clone()
    mmcore.sum_over_ranks([counts])
    return sums / counts.clamp_min(1).unsqueeze(-1), counts


def ema_prototypes(prototypes: Tensor, initialised: Tensor, means: Tensor, counts: Tensor,
                   momentum: float) -> tuple[Tensor, Tensor]:
    """c_k <- γ c_k + (1 − γ) mean_k for classes in the batch; a class seen for the first time starts
    at its batch mean (the official code's initialisation); absent classes keep their prototype.
    Returns new tensors (the old buffers may still be saved for this step's backward)."""
    seen = (counts > 0).unsqueeze(-1)
    first = ~initialised.unsqueeze(-1)
    updated = torch.where(first, means, momentum * prototypes + (1 - momentum) * means)
    return torch.where(seen, updated, prototypes), initialised | seen.squeeze(-1)


def cosine_table(features: Tensor, prototypes: Tensor) -> Tensor:
    """cos(h_i^m, c_k^m) as [M, B, K] (a zero vector has cosine 0 with everything)."""
    return torch.einsum("mbd,mkd->mbk", F.normalize(features, dim=-1), F.normalize(prototypes, dim=-1))


def prototype_logits(cosines: Tensor, initialised: Tensor, temperature: float) -> Tensor:
    """cos / τ with uninitialised prototypes masked out of every softmax."""
    return torch.where(initialised.unsqueeze(1), cosines / temperature, torch.full_like(cosines, MASKED))


def infonce_loss(logits: Tensor, classes: Tensor, present: Tensor, initialised: Tensor) -> Tensor:
    """Prototype InfoNCE per modality [M]: −log softmax_k(cos/τ) at the sample's class, averaged
    over the samples that have the modality and whose class already has a prototype."""
    num_modalities, batch, num_classes = logits.shape
    targets = classes.expand(num_modalities, batch)
    nll = F.cross_entropy(logits.reshape(-1, num_classes), targets.reshape(-1), reduction="none")
    return _masked_mean(nll.view(num_modalities, batch), _usable(classes, present, initialised))


def mse_loss(features: Tensor, prototypes: Tensor, classes: Tensor, present: Tensor, initialised: Tensor) -> Tensor:
    """The official code's calibration loss per modality [M]: mean squared error between each
    feature and its class prototype (the mean runs over samples and feature dimensions)."""
    own = prototypes[:, classes]  # [M, B, D]
    squared = (features - own).pow(2).mean(-1)
    return _masked_mean(squared, _usable(classes, present, initialised))


def _usable(classes: Tensor, present: Tensor, initialised: Tensor) -> Tensor:
    return present.t() & initialised[:, classes]  # [M, B]


def _masked_mean(values: Tensor, mask: Tensor) -> Tensor:
    """[M]: the mean over each modality's usable samples of the global batch (DDP ranks included)."""
    weights = mask.to(values.dtype)
    return mmcore.global_mean((values * weights).sum(1), weights.sum(1))


def gate_similarity(logits: Tensor, cosines: Tensor, initialised: Tensor, mode: str) -> Tensor:
    """The similarity the gate reads, [M, B], label-free so training and test agree:
    "max" = max_k cos over initialised prototypes (the official code's test-time rule), "soft" =
    the cosine expected under softmax(cos/τ). 0 while a modality has no prototype yet."""
    any_prototype = initialised.any(-1, keepdim=True)  # [M, 1]
    if mode == "max":
        best = torch.where(initialised.unsqueeze(1), cosines, torch.full_like(cosines, -2.0)).amax(-1)
        return torch.where(any_prototype, best, torch.zeros_like(best))
    soft = (logits.softmax(-1) * cosines).sum(-1)
    return torch.where(any_prototype, soft, torch.zeros_like(soft))


def prediction_entropy(logits: Tensor) -> Tensor:
    """Entropy [M, B] of the prototype classifier softmax(cos/τ) of each modality."""
    log_p = logits.log_softmax(-1)
    return -(log_p.exp() * log_p).sum(-1)


def prototype_variance(prototypes: Tensor, initialised: Tensor) -> Tensor:
    """Var(c^m) [M] of the official utility proxy: the variance of all entries of modality m's
    prototype matrix (over the initialised classes)."""
    weights = initialised.to(prototypes.dtype).unsqueeze(-1).expand_as(prototypes)
    count = weights.sum((1, 2))
    mean = (prototypes * weights).sum((1, 2)) / count.clamp_min(1)
    centred = (prototypes - mean.view(-1, 1, 1)).pow(2) * weights
    return centred.sum((1, 2)) / (count - 1).clamp_min(1)
