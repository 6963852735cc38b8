"""OGM-GE's formulas (spec §2.2), as pure tensor functions with no host sync.

Confidence scores S_m = sum_i p(y_i | o_i^m), discrepancy ratios rho_m and modulation
coefficients k_m. Everything stays on the device, so the step never waits for the GPU.
"""
from __future__ import annotations

import torch
from torch import Tensor


def true_class_confidence(logits: Tensor, label: Tensor, task: str) -> Tensor:
    """[B]: the probability a modality's logits give the true class (softmax; sigmoid for a binary
    task's single logit). Vectorised: the official per-sample Python loop recomputes the softmax B times."""
    logits = logits.detach().float()
    if task == "binary":
        p = torch.sigmoid(logits.reshape(-1))
        return torch.where(label.reshape(-1) > 0.5, p, 1 - p)
    return torch.softmax(logits, dim=-1).gather(1, label.view(-1, 1)).squeeze(1)


def discrepancy_ratios(scores: Tensor, rule: str = "pairwise_mean") -> Tensor:
    """[M] ratios rho_m from the batch scores S [M].

    M = 2 (official): rho_a = S_a / S_v, rho_v = 1 / rho_a; `weakest` gives the weaker 1 instead of
    1 / rho, hence the same coefficients. M > 2:
    - pairwise_mean: rho_m = mean over k != m of S_m / S_k (the maintainer's suggestion, issue #16);
    - weakest: rho_m = S_m / min_k S_k (BalanceBenchmark's OGM_GE).
    """
    scores = scores.float().clamp_min(torch.finfo(torch.float32).tiny)  # a zero score would give inf
    if rule == "weakest":
        return scores / scores.min()
    if rule != "pairwise_mean":
        raise ValueError(f"unknown ratio rule {rule!r}")
    m = scores.numel()
    pairwise = scores.unsqueeze(1) / scores.unsqueeze(0)  # [m, k] = S_m / S_k; the diagonal is 1
    return (pairwise.sum(dim=1) - 1) / (m - 1)


def modulation_coefficients(ratios: Tensor, alpha: float, variant: str = "paper") -> Tensor:
    """[M] coefficients k_m.

    paper (Eq. 10, official code since Apr 2022): k = 1 - tanh(alpha * rho) where rho > 1, else 1.
    Only leaders are damped, and k jumps from 1 to 1 - tanh(alpha) at rho = 1 (intentional).
    shifted (official code of Mar 2022): k = 1 - tanh(alpha * max(rho - 1, 0)), continuous.
    """
    if variant == "paper":
        return torch.where(ratios > 1, 1 - torch.tanh(alpha * ratios), torch.ones_like(ratios))
    if variant == "shifted":
        return 1 - torch.tanh(alpha * (ratios - 1).clamp_min(0))
    raise ValueError(f"unknown variant {variant!r}")


def noise_scales(grads: list[Tensor], numels: Tensor | None = None) -> Tensor:
    """[T]: GE's per-tensor noise standard deviations, std of each unmodulated gradient's entries
    + 1e-8 (the official code after the May 2022 "bug fixed" commit; before it, std of the scaled
    gradient).

    The unbiased std of every tensor from its sum of squares (one multi-tensor reduction) and its
    sum: var = (sum g^2 - (sum g)^2 / n) / (n - 1), combined in float64; equal to `Tensor.std`
    within 1e-4 relative for gradients (whose mean is small next to their spread), far below what
    the noise's own sampling error resolves. `numels`: the tensors' entry counts as a float64
    tensor on their device, if the caller keeps one."""
    n = numels if numels is not None else torch.tensor([g.numel() for g in grads], dtype=torch.float64,
                                                       device=grads[0].device)
    squares = torch.stack(torch._foreach_powsum(grads, 2)).double()
    total = tensor_sums(grads)
    variance = ((squares - total * total / n) / (n - 1).clamp_min(1)).clamp_min(0)
    variance = torch.where(n > 1, variance, 0.0)  # the unbiased std of one entry is nan: noise 1e-8
    return (variance.sqrt() + 1e-8).to(grads[0].dtype)


def tensor_sums(grads: list[Tensor], multi_tensor: bool | None = None) -> Tensor:
    """[T] float64: each tensor's plain sum. On a GPU from two multi-tensor reductions of absolute
    values, sum g = 2 sum max(g, 0) - sum |g| (a few kernels, not one per tensor: a per-tensor loop
    of small kernels costs more than the whole modulation there); on the CPU, where the multi-tensor
    sum of absolute values has no fast kernel (about 30x slower than `Tensor.sum`), one sum per tensor.
    `multi_tensor` overrides the choice (tests run both on the CPU)."""
    if not (grads[0].device.type != "cpu" if multi_tensor is None else multi_tensor):
        return torch.stack([g.sum() for g in grads]).double()
    absolute = torch.stack(torch._foreach_powsum(grads, 1)).double()
    positive = torch.stack(torch._foreach_powsum(torch._foreach_clamp_min(grads, 0.0), 1)).double()
    return 2 * positive - absolute
