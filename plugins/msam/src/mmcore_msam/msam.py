"""`msam`: Modality-Aware SAM (Nowdeh/Rajoli, Ji, Ma, Afghah; NeurIPS 2025, arXiv 2510.24919).

Every step: the Shapley contributions Φ_m of the batch (the core valuator, accuracy value, v(∅) = 0;
appendix Eq. 14–15), the shares ν_m = Φ_m / Σ Φ (Eq. 17) and the dominant modality d. The loss
splits as ℓ = L_d + L_s (Eq. 4); only the dominant share is evaluated at the adversarial point:

    ε = ρ·∇L_d(θ)/‖∇L_d(θ)‖,    update gradient G = ∇L_d(θ + ε) + ∇L_s(θ).

With the default `scalar` decomposition L_d = ν_d·ℓ, so ε is SAM's ascent step (ν_d cancels) and
G = ν_d·∇ℓ(θ + ε) + (1 − ν_d)·∇ℓ(θ): SAM's two backward passes plus one kept gradient, no third
backward. `per_sample` and `logit_attribution` (decomposition.py) need ∇L_s(θ) separately: one
extra backward on pass 0.
"""
from __future__ import annotations

from typing import Any, Callable

import torch
from attrs import field, frozen
from attrs.validators import ge, in_, instance_of, lt

import mmcore
from mmcore_msam.decomposition import DECOMPOSITIONS, dominant_loss, pick, sample_shares
from mmcore_msam.dominance import dominant_modality, normalised_shares
from mmcore_msam.sam import adaptive_field, eta_field, first_pass, rho_field
from mmcore import ascent_step, frozen_batchnorm_statistics, gradient_params, mean_over_ranks, perturbed


@frozen(kw_only=True)
class MSAMConfig:
    rho: float = rho_field()
    adaptive: bool = adaptive_field()
    eta: float = eta_field()
    valuator: str = field(default="", validator=instance_of(str), metadata={
        "help": "a [valuators.<name>] table giving Phi; "
                "empty = Shapley values of `value` (exact for M <= 4) every step"})
    value: str = field(default="accuracy", validator=instance_of(str), metadata={
        "help": "value function of the default valuator (paper: accuracy); ignored when `valuator` names one"})
    decomposition: str = field(default="scalar", validator=in_(DECOMPOSITIONS), metadata={
        "help": "L_d = nu_d * loss (scalar, paper) | mean_i nu_d^i * loss_i (per_sample) | "
                "loss of modality d's Shapley logit attribution (logit_attribution)"})
    nu_momentum: float = field(default=0.0, validator=[instance_of(float), ge(0.0), lt(1.0)], metadata={
        "help": "EMA momentum of nu across steps against quantised accuracy values; 0 = each step's own (paper)"})


class MSAM(mmcore.Balancer):
    owns_step = True

    def __init__(self, config: MSAMConfig, values_key: str, modalities: tuple[str, ...]) -> None:
        self.config, self.values_key, self.modalities = config, values_key, modalities
        self.previous = torch.zeros((), dtype=torch.long)  # last dominant index: it wins ties
        self.nu_average = torch.full((len(modalities),), 1.0 / len(modalities))
        self.averaged_steps = 0

    # -- the loss decomposition, on every pass ---------------------------------------------------
    def before_backward(self, state: mmcore.StepState) -> None:
        stash = state.private("msam")
        if state.pass_index == 0:
            self._weigh(state, stash)
        if self.config.decomposition != "scalar":
            self._split(state, stash)

    def _weigh(self, state: mmcore.StepState, stash: dict[str, Any]) -> None:
        """ν, the dominant modality d and ν_d from this batch's Shapley values (pass 0 only)."""
        valued = state.values[self.values_key]
        values = valued.values
        if values.dim() == 3:
            raise ValueError("msam needs one value per modality (per batch or per sample), not logit attributions")
        nu, fallback = normalised_shares(valued.batch_mean().detach().float())  # the global batch's, on every rank
        nu = self._smoothed(nu)
        dominant = dominant_modality(nu, self.previous)
        self.previous = dominant
        stash["dominant"], stash["nu_dominant"] = dominant, pick(nu, dominant, 0)
        if self.config.decomposition == "per_sample":
            if values.dim() != 2:
                raise ValueError("msam decomposition 'per_sample' needs a per-sample valuator (per = \"sample\")")
            stash["sample_weights"] = sample_shares(values.detach(), dominant)
        for m, share in zip(self.modalities, nu):
            state.metrics[f"balancer/msam/nu/{m}"] = share
        state.metrics["balancer/msam/dominant"] = dominant.float()
        state.metrics["balancer/msam/fallback"] = fallback

    def _smoothed(self, nu: torch.Tensor) -> torch.Tensor:
        momentum = self.config.nu_momentum
        if momentum == 0.0:
            return nu
        average = self.nu_average.to(nu.device)
        self.nu_average = nu if self.averaged_steps == 0 else momentum * average + (1 - momentum) * nu
        self.averaged_steps += 1
        return self.nu_average

    def _split(self, state: mmcore.StepState, stash: dict[str, Any]) -> None:
        """The pass's backward gets L_d only; on pass 0, ∇L_s(θ) is taken here (one extra backward)."""
        loss_d = dominant_loss(state, self.config.decomposition, stash["dominant"], stash["nu_dominant"],
                               stash.get("sample_weights"))
        total = sum(state.losses.values())
        if state.pass_index == 0:
            params = [p for p in state.model.parameters() if p.requires_grad]
            rest = torch.autograd.grad(total - loss_d, params, retain_graph=True, allow_unused=True)
            stash["rest"] = (params, rest)
        state.metrics["balancer/msam/loss"] = total.detach()
        state.losses = {"msam/dominant": loss_d}

    # -- the step --------------------------------------------------------------------------------
    def step(self, closure: Callable[[], mmcore.StepState], finish: Callable[[], None],
             state: mmcore.StepState) -> None:
        first_pass(closure, state)  # the raw gradient of ℓ (scalar) or of L_d at θ
        stash = state.private("msam")
        params = gradient_params(state.model)
        ascent = ascent_step(params, self.config.rho, self.config.adaptive, self.config.eta)
        kept = [p.grad.clone() for p in params] if self.config.decomposition == "scalar" else None
        with perturbed(params, ascent.offsets), frozen_batchnorm_statistics(state.model):
            closure()  # ∇ℓ(θ + ε) (scalar) or ∇L_d(θ + ε)
        if kept is not None:
            mix_gradients(params, kept, stash["nu_dominant"])
        else:
            add_gradients(*stash["rest"])
        state.metrics["balancer/msam/grad_norm"] = ascent.grad_norm
        finish()

    def state_dict(self) -> dict[str, Any]:
        return {"previous": self.previous, "nu_average": self.nu_average, "averaged_steps": self.averaged_steps}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.previous, self.nu_average = state["previous"], state["nu_average"]
        self.averaged_steps = int(state["averaged_steps"])


@torch.no_grad()
def mix_gradients(params: list[torch.Tensor], kept: list[torch.Tensor], nu_dominant: torch.Tensor) -> None:
    """p.grad ← g₀ + ν_d·(g₁ − g₀) = ν_d·g₁ + (1 − ν_d)·g₀, with g₀ averaged over ranks (it enters the
    update; the trainer averages g₁ in `finish`). Written as g₀ + ν_d·(g₁ − g₀) so that g₁ = g₀
    (ρ = 0) gives g₀ bit for bit."""
    mean_over_ranks(kept)
    current = [p.grad if p.grad is not None else torch.zeros_like(g) for p, g in zip(params, kept)]
    differences = torch._foreach_sub(current, kept)
    torch._foreach_mul_(differences, nu_dominant)
    torch._foreach_add_(kept, differences)
    for p, g in zip(params, kept):
        p.grad = g


@torch.no_grad()
def add_gradients(params: list[torch.Tensor], rest: tuple[torch.Tensor | None, ...]) -> None:
    """p.grad ← ∇L_d(θ + ε) + ∇L_s(θ), with ∇L_s(θ) averaged over ranks."""
    present = [(p, g) for p, g in zip(params, rest) if g is not None]
    mean_over_ranks([g for _, g in present])
    for p, g in present:
        p.grad = g if p.grad is None else p.grad.add_(g)


def build_msam(config: MSAMConfig, ctx: mmcore.BuildContext) -> MSAM:
    per_sample = config.decomposition == "per_sample"
    if config.valuator:
        named = ctx.valuators.get(config.valuator)
        if per_sample and getattr(getattr(named, "config", None), "per", "sample") != "sample":
            raise mmcore.ConfigError(f"$.valuators.{config.valuator}.per: msam decomposition 'per_sample' "
                                     "needs per-sample values (per = \"sample\")")
    options = {"value": config.value, **({"per": "sample"} if per_sample else {})}
    values_key = ctx.make_valuator(config.valuator, kind="shapley", **options)
    return MSAM(config, values_key, tuple(ctx.modalities))
