"""MIE's flat gradient modification (paper §3.2, Eqs. 5–8).

At a stage switch the previous modality k's head sees one pass over the training split; for each of
its Linear layers the uncentred "cumulative variance" of batch-mean inputs is summed,
Ȳ = Σ_t z̄_t z̄_tᵀ (Eq. 5, batch size 12 in the paper). With Ȳ = V Λ Vᵀ,

    T = V · exp(−τ (Λ − λ_min I) / (λ_max − λ_min)) · Vᵀ          (Eq. 7)

and while modality l trains, the gradient of each Linear weight of l's head is replaced by G·T
(Eq. 8 writes T·∇W for W ∈ R^{d×c}; PyTorch stores W as [out, in], so T acts on the input side
from the right). T is symmetric, its eigenvalues lie in [e^−τ, 1], and it damps the direction of
largest input energy by e^−τ while leaving the least-used direction untouched. Layers pair by
position in the head (specs §5.8; the official code pairs by weight shape, which can pair the
wrong layers); a pair whose input sizes differ is skipped.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor, nn

import mmcore


def head_linears(model: mmcore.MultimodalModel, modality: str) -> list[nn.Linear]:
    """The Linear layers of a modality's head, in module order (the position used for pairing)."""
    return [module for module in model.heads[modality].modules() if isinstance(module, nn.Linear)]


def modification_matrix(covariance: Tensor, tau: float) -> Tensor:
    """T = V diag(exp(−τ(λ − λ_min)/(λ_max − λ_min))) Vᵀ for a symmetric PSD Ȳ (identity when its
    spectrum is flat: no direction is preferred). Computed in float64."""
    eigenvalues, vectors = torch.linalg.eigh(covariance.double())
    spread = eigenvalues.max() - eigenvalues.min()
    scaled = (eigenvalues - eigenvalues.min()) / spread.clamp_min(torch.finfo(torch.float64).tiny)
    damping = torch.where(spread > 0, torch.exp(-tau * scaled), torch.ones_like(scaled))
    return (vectors * damping) @ vectors.T


def input_covariances(control: mmcore.TrainControl, model: mmcore.MultimodalModel, modality: str,
                      batch_size: int) -> list[Tensor]:
    """Ȳ per Linear layer of the modality's head: one no-grad eval pass over the training split
    with only that modality active, summing z̄ z̄ᵀ of each full batch's mean input (the official
    code drops the last, short batch)."""
    linears = head_linears(model, modality)
    device = linears[0].weight.device
    sums = [torch.zeros(layer.in_features, layer.in_features, dtype=torch.float64, device=device) for layer in linears]

    def accumulate(index: int) -> Callable[[nn.Module, tuple[Tensor, ...]], None]:
        def hook(module: nn.Module, inputs: tuple[Tensor, ...]) -> None:
            mean = inputs[0].reshape(-1, inputs[0].shape[-1]).double().mean(0)
            sums[index].add_(torch.outer(mean, mean))
        return hook

    def forward_full_batches(batch: mmcore.Batch, model: mmcore.MultimodalModel) -> None:
        if batch.size == batch_size:  # a shape, not a host sync
            model(batch, active=(modality,))

    handles = [layer.register_forward_pre_hook(accumulate(i)) for i, layer in enumerate(linears)]
    try:
        control.evaluate("train", forward_full_batches, batch_size=batch_size)
    finally:
        for handle in handles:
            handle.remove()
    return sums


def paired_layers(model: mmcore.MultimodalModel, source: str, target: str) -> list[tuple[int, nn.Linear]]:
    """(position, target layer) for every position where both heads have a Linear of the same input size."""
    sources, targets = head_linears(model, source), head_linears(model, target)
    return [(i, t) for i, (s, t) in enumerate(zip(sources, targets)) if s.in_features == t.in_features]


@torch.no_grad()
def modify_gradients(layers: list[tuple[int, nn.Linear]], matrices: list[Tensor]) -> None:
    """G ← G·T on each paired Linear weight (biases untouched, as in the official code)."""
    for position, layer in layers:
        grad = layer.weight.grad
        if grad is not None:
            grad.copy_(grad @ matrices[position].to(grad.dtype))
