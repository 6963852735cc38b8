"""Which parameters OGM-GE modulates, and the modulated update g <- k * g + GE noise (spec §2.2 item 5)."""
from __future__ import annotations

import torch
from torch import Tensor, nn

import mmcore
from mmcore_ogm_ge.coefficients import noise_scales

CONVOLUTIONS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


def scope_params(model: mmcore.MultimodalModel, modality: str, scope: str) -> list[nn.Parameter]:
    """One modality's modulated parameters, by module identity (the official code matches names,
    which silently modulates nothing without DataParallel's `module.` prefix, spec §2.6)."""
    if scope == "encoder":
        return model.encoder_params(modality)
    if scope == "modality":
        return model.modality_params(modality)
    if scope == "conv":  # the official scope: conv weights (4-D gradients) of the encoder
        return [m.weight for m in model.encoders[modality].modules() if isinstance(m, CONVOLUTIONS)]
    raise ValueError(f"unknown scope {scope!r}")


class GradientModulator:
    """Applies k_m to modality m's parameter group and, with GE, adds N(0, sigma_P^2) noise to each
    tensor P, sigma_P taken from P's gradient before scaling.

    Each group is scaled by one multi-tensor (`torch._foreach_*`) call, and the noise of the whole
    step is one draw into a reused flat buffer whose per-tensor views are made once: the cost is a
    few passes over the gradients' memory, not a few kernels per tensor."""

    def __init__(self, groups: dict[str, list[nn.Parameter]], ge: bool) -> None:
        self.groups = groups
        self.ge = ge
        self._noise: NoiseBuffer | None = None

    def apply(self, coefficients: Tensor, generator: torch.Generator | None) -> None:
        grads = [[p.grad for p in params if p.grad is not None] for params in self.groups.values()]
        flat = [g for group in grads for g in group]
        if not flat:
            return
        sigma = None
        if self.ge:
            if self._noise is None or not self._noise.fits(flat):
                self._noise = NoiseBuffer(flat)
            sigma = noise_scales(flat, self._noise.numels)  # from the unscaled gradients
        for k, group in zip(coefficients.unbind(0), grads):
            if group:
                torch._foreach_mul_(group, k.to(group[0].dtype))
        if sigma is not None:
            self._noise.add_to(flat, sigma, generator)


class NoiseBuffer:
    """A flat noise buffer with one view per gradient tensor, kept while the set of gradients does
    not change (it changes only if a parameter gets no gradient). `gather`: scale the flat draw per
    entry (the GPU's way, the default off the CPU) rather than tensor by tensor."""

    def __init__(self, grads: list[Tensor], gather: bool | None = None) -> None:
        self.layout = [(g.shape, g.dtype) for g in grads]
        self.device = grads[0].device
        dtype = grads[0].dtype
        for g in grads:  # mixed dtypes: the widest
            dtype = torch.promote_types(dtype, g.dtype)
        self.flat = torch.empty(sum(g.numel() for g in grads), dtype=dtype, device=self.device)
        self.views = [view.view(g.shape) for view, g in zip(self.flat.split([g.numel() for g in grads]), grads)]
        counts = torch.tensor([g.numel() for g in grads], device=self.device)
        self.numels = counts.double()
        gather = self.device.type != "cpu" if gather is None else gather
        self.owner = (torch.repeat_interleave(torch.arange(len(grads), dtype=torch.int32, device=self.device), counts)
                      if gather else None)  # each entry's tensor

    def fits(self, grads: list[Tensor]) -> bool:
        return grads[0].device == self.device and [(g.shape, g.dtype) for g in grads] == self.layout

    def add_to(self, grads: list[Tensor], sigma: Tensor, generator: torch.Generator | None) -> None:
        """grads += sigma_P * N(0, 1), from one normal draw for the whole step (one RNG call, in a
        fixed order: group by group, tensor by tensor). On a GPU the draw is scaled per entry (one
        gather, one multiply) and added by one multi-tensor add; on the CPU, where that gather costs
        more than the rest, each tensor adds its noise times its own sigma (one pass)."""
        self.flat.normal_(generator=generator)
        if self.owner is None:
            torch._foreach_addcmul_(grads, self.views, list(sigma.unbind()))
        else:
            self.flat.mul_(sigma.index_select(0, self.owner))
            torch._foreach_add_(grads, self.views)
