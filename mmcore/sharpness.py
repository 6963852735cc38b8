"""Sharpness-aware steps, shared by every step owner that perturbs weights (`sam`, `msam`, MIE's
`full` mode; Foret et al. 2021, davda54/sam's conventions):

- the ascent step ε = ρ·T²g / ‖T·g‖ from the raw pass-0 gradient, with ONE global norm over all
  parameters (T = 1 for SAM; T = |w| + η for ASAM);
- the perturbed pass runs at w + ε and the saved weights are copied back exactly (not w + ε − ε,
  which rounds), so the optimizer steps from the original weights;
- BatchNorm running statistics stay frozen in the perturbed pass (it sees the same batch again);
"""
from __future__ import annotations

import contextlib
from typing import Iterator, NamedTuple, Sequence

import torch
from torch import Tensor, nn

SAM_EPSILON = 1e-12  # davda54: rho / (norm + 1e-12)


class Ascent(NamedTuple):
    offsets: list[Tensor]  # ε per parameter
    grad_norm: Tensor  # ‖T·g‖, 0-dim, on the device (a diagnostic; never read back in the step)


def gradient_params(model: nn.Module) -> list[nn.Parameter]:
    """The parameters the last backward reached."""
    return [p for p in model.parameters() if p.grad is not None]


@torch.no_grad()
def ascent_step(params: Sequence[Tensor], rho: float, adaptive: bool = False, eta: float = 0.0) -> Ascent:
    """ε = ρ·T²g / (‖T·g‖ + 1e-12) from the parameters' current gradients, one norm over all of them
    (a per-group or per-tensor norm would change the direction). ρ = 0 gives ε = 0 exactly."""
    grads = [p.grad for p in params]
    if adaptive:
        scales = [p.abs().add(eta) for p in params]
        scaled = torch._foreach_mul(grads, scales)  # T·g
    else:
        scaled = grads
    norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(scaled))) if grads else torch.zeros(())
    factor = rho / (norm + SAM_EPSILON)
    offsets = torch._foreach_mul(scaled, scales) if adaptive else [g.clone() for g in grads]  # T²g
    torch._foreach_mul_(offsets, factor)  # a 0-dim tensor: no host sync
    return Ascent(offsets, norm)


@contextlib.contextmanager
def perturbed(params: Sequence[Tensor], offsets: Sequence[Tensor]) -> Iterator[None]:
    """The weights are w + ε inside the block and exactly w again afterwards."""
    saved = [p.detach().clone() for p in params]
    with torch.no_grad():
        torch._foreach_add_(list(params), list(offsets))
    try:
        yield
    finally:
        with torch.no_grad():
            torch._foreach_copy_(list(params), saved)


_NORMS = (nn.modules.batchnorm._BatchNorm,)


@contextlib.contextmanager
def frozen_batchnorm_statistics(model: nn.Module) -> Iterator[None]:
    """A second pass over the same batch normalises with that batch's statistics, as the first did,
    but must not move the running statistics (nor their counter) again. davda54 sets momentum 0;
    copying the buffers back has the same effect and also covers momentum=None (cumulative means)."""
    buffers = [
        b for m in model.modules() if isinstance(m, _NORMS) and m.training and m.track_running_stats
        for b in (m.running_mean, m.running_var, m.num_batches_tracked) if b is not None
    ]
    saved = [b.clone() for b in buffers]
    try:
        yield
    finally:
        for b, s in zip(buffers, saved):
            b.copy_(s)
