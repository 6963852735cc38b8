"""Which parameters OGM-GE modulates, and the modulated update g <- k * g + GE noise (spec §2.2 item 5)."""
from __future__ import annotations

import torch
from torch import Tensor, nn

import mmcore
from mmcore_ogm_ge.coefficients import noise_scale

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
    tensor P, sigma_P taken from P's gradient before scaling."""

    def __init__(self, groups: dict[str, list[nn.Parameter]], ge: bool) -> None:
        self.groups = groups
        self.ge = ge
        self._noise: Tensor | None = None  # reused draw buffer: one allocation, not one per step

    def apply(self, coefficients: Tensor, generator: torch.Generator | None) -> None:
        grads = [[p.grad for p in params if p.grad is not None] for params in self.groups.values()]
        noise = self._draw(sum(g.numel() for group in grads for g in group), generator) if self.ge else None
        offset = 0
        for k, group in zip(coefficients.unbind(0), grads):
            for g in group:
                sigma = noise_scale(g) if noise is not None else None  # before scaling
                g.mul_(k.to(g.dtype))
                if noise is not None:
                    g.addcmul_(noise[offset: offset + g.numel()].view_as(g), sigma)
                    offset += g.numel()

    def _draw(self, count: int, generator: torch.Generator | None) -> Tensor:
        """One normal draw for every modulated entry of the step (one RNG call, in a fixed order)."""
        device = generator.device if generator is not None else torch.device("cpu")
        if self._noise is None or self._noise.numel() != count or self._noise.device != device:
            self._noise = torch.empty(count, device=device)
        return self._noise.normal_(generator=generator)
