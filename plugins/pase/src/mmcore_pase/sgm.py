"""`pase_sgm`: Shapley-based gradient modulation with dual-phase training (spec §3.5–3.6).

Every step (in `finish`, on the gradient the update uses) the modalities' Shapley values ψ are
smoothed by an EMA, normalised to shares ψ̃_m = max(ψ_m, 1e-9) / Σ_i max(ψ_i, 1e-9), and turned into
φ_m = max(floor, exp(ψ̃_min / ψ̃_m − 1)): the weakest modality keeps φ = 1, stronger ones are damped.
From the second phase on, the gradients of modality m's encoder are multiplied by φ_m; fusion, head
and gate parameters are left alone (official code).

The utility u(S) behind ψ:
- "masked_perf" (default): the core Shapley valuator on the fused head with the modalities outside S
  zeroed — true-class probability for classification, −loss (with u(∅) evaluated) for regression.
- "proto_proxy" (official code): u(S) = ρ/(1 + Σ_{pairs ⊂ S} L_inter) + (1 − ρ)/(1 + Σ_{m∈S} Var(c^m)),
  u(∅) = 0, from the `pase` fusion's prototype buffers; it never looks at task performance.
"""
from __future__ import annotations

from typing import Any

import attrs
import torch
from attrs import validators as v
from torch import Tensor

import mmcore
from mmcore_pase.alignment import modality_pairs
from mmcore_pase.phase import PhaseSwitch

KIND = "pase_sgm"
LOWER_IS_BETTER = ("mae", "loss", "probe_mae")


@attrs.frozen(kw_only=True)
class SGMConfig:
    utility: str = attrs.field(
        default="masked_perf", validator=v.in_(("masked_perf", "proto_proxy")),
        metadata={"help": "masked_perf = core Shapley valuator on the masked fused head (paper's 'contribution', "
                          "spec) | proto_proxy = prototype geometry (official code)"})
    valuator: str = attrs.field(
        default="", validator=v.instance_of(str),
        metadata={"help": "masked_perf: a [valuators.<name>] table; empty = exact Shapley values on `value`"})
    value: str = attrs.field(
        default="auto", validator=v.instance_of(str),
        metadata={"help": "the default valuator's value function; auto = true_class_prob, neg_loss for regression"})
    value_ema: float = attrs.field(
        default=0.9, validator=[v.instance_of(float), v.ge(0.0), v.lt(1.0)],
        metadata={"help": "EMA of psi across steps (spec); 0 = this batch only"})
    floor: float = attrs.field(
        default=0.1, validator=[v.instance_of(float), v.ge(0.0), v.le(1.0)],
        metadata={"help": "lower bound on phi (spec; the formula itself never goes below 1/e)"})
    proxy_rho: float = attrs.field(
        default=0.6, validator=[v.instance_of(float), v.ge(0.0), v.le(1.0)],
        metadata={"help": "proto_proxy: weight of the alignment part (code)"})
    proxy_method: str = attrs.field(
        default="auto", validator=v.in_(("auto", "exact", "permutation")),
        metadata={"help": "proto_proxy Shapley estimator; auto = exact for M <= 4 (the code samples permutations)"})
    proxy_samples: int = attrs.field(
        default=200, validator=[v.instance_of(int), v.ge(1)],
        metadata={"help": "proto_proxy: permutations when sampling (code)"})
    monitor: str = attrs.field(
        default="", validator=v.instance_of(str),
        metadata={"help": "validation metric whose plateau starts phase 2; empty = the task's primary"})
    patience: int = attrs.field(
        default=5, validator=[v.instance_of(int), v.ge(1)],
        metadata={"help": "epochs without improvement before phase 2 (spec; the paper says 'several')"})
    min_delta: float = attrs.field(
        default=0.001, validator=[v.instance_of(float), v.ge(0.0)],
        metadata={"help": "smallest change that counts as an improvement (spec: 0.1 pt)"})
    min_epochs: int = attrs.field(
        default=10, validator=[v.instance_of(int), v.ge(0)],
        metadata={"help": "warm-up epochs before a plateau may switch (spec)"})
    switch_epoch: int = attrs.field(
        default=-1, validator=[v.instance_of(int), v.ge(-1)],
        metadata={"help": ">= 0: phase 2 from this epoch, no plateau detection (official code: 100) | -1 = plateau"})


class ShapleyGradientModulation(mmcore.Balancer):
    def __init__(self, config: SGMConfig, modalities: tuple[str, ...], values_key: str | None, task: str) -> None:
        self.config, self.modalities, self.values_key = config, modalities, values_key
        self.monitor = config.monitor or mmcore.primary_metric(task)[0]
        maximise = self.monitor.split("/")[0] not in LOWER_IS_BETTER
        self.switch = PhaseSwitch(config.patience, config.min_delta, config.min_epochs, maximise=maximise,
                                  switch_epoch=config.switch_epoch)
        self.ema: Tensor | None = None

    def after_backward(self, state: mmcore.StepState) -> None:
        values = self._values(state).detach().float()
        if self.ema is None or self.config.value_ema == 0:
            self.ema = values
        else:
            self.ema = self.config.value_ema * self.ema.to(values.device) + (1 - self.config.value_ema) * values
        shares, phi = modulation(self.ema, self.config.floor)
        second_phase = self.switch.in_second_phase(state.epoch)
        if second_phase:
            for m, factor in zip(self.modalities, phi):
                for p in state.model.encoder_params(m):
                    if p.grad is not None:
                        p.grad.mul_(factor)
        self._log(state, shares, phi, second_phase)

    def _values(self, state: mmcore.StepState) -> Tensor:
        if self.values_key is not None:
            values = state.values[self.values_key]
            if values.values.dim() == 3:
                raise mmcore.ConfigError(f"$.balancers: {KIND} needs a scalar value function (one value per "
                                         "modality and sample), not logit attributions")
            return values.batch_mean()  # the global batch's under DDP
        # the same orderings on every rank, drawn on the host, where the Monte-Carlo plan is read
        # (drawn on a GPU, reading it back would wait for the device every step)
        generator = state.generator(KIND, shared=True, device="cpu")
        return proxy_values(state.model.fusion, self.modalities, self.config, generator)

    def _log(self, state: mmcore.StepState, shares: Tensor, phi: Tensor, second_phase: bool) -> None:
        for m, share, factor in zip(self.modalities, shares, phi):
            state.metrics[f"balancer/{KIND}/share/{m}"] = share
            state.metrics[f"balancer/{KIND}/phi/{m}"] = factor
        state.metrics[f"balancer/{KIND}/phase"] = 2.0 if second_phase else 1.0
        if self.switch.second_phase_from is not None:
            state.metrics[f"balancer/{KIND}/second_phase_from"] = float(self.switch.second_phase_from)

    def on_epoch_end(self, epoch: int, metrics: dict[str, float], control: mmcore.TrainControl) -> None:
        if self.monitor not in metrics:
            raise mmcore.ConfigError(f"$.balancers: {KIND} monitors {self.monitor!r}, which validation does not "
                                     f"report; reported: {', '.join(sorted(metrics))}")
        self.switch.observe(epoch, metrics[self.monitor])

    def state_dict(self) -> dict[str, Any]:
        return {"switch": self.switch.state_dict(), "ema": self.ema}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.switch.load_state_dict(state["switch"])
        self.ema = state["ema"]


def modulation(values: Tensor, floor: float) -> tuple[Tensor, Tensor]:
    """Shares ψ̃ and factors φ = max(floor, exp(ψ̃_min / ψ̃ − 1)) from Shapley values ψ [M]."""
    clamped = values.clamp_min(1e-9)
    shares = clamped / clamped.sum()
    phi = torch.exp(shares.min() / shares - 1).clamp_min(floor)
    return shares, phi


def proxy_values(fusion: Any, modalities: tuple[str, ...], config: SGMConfig, generator: torch.Generator) -> Tensor:
    """Shapley values of the official prototype-geometry utility, from the fusion's buffers."""
    inter, variance = fusion.prototype_geometry()
    pairs = modality_pairs(len(modalities))
    index = {m: i for i, m in enumerate(modalities)}
    rho = config.proxy_rho

    def utility(coalition: tuple[str, ...]) -> Tensor:
        members = {index[m] for m in coalition}
        inside = [p for p, (a, b) in enumerate(pairs) if a in members and b in members]
        alignment = inter[inside].sum()
        spread = variance[sorted(members)].sum()
        return rho / (1 + alignment) + (1 - rho) / (1 + spread)

    return mmcore.shapley(utility, modalities, empty="zero", method=config.proxy_method,
                          samples=config.proxy_samples, generator=generator).values


def build_sgm(config: SGMConfig, ctx: mmcore.BuildContext) -> ShapleyGradientModulation:
    values_key = None
    if config.utility == "masked_perf":
        regression = ctx.task == "regression"
        value = config.value if config.value != "auto" else ("neg_loss" if regression else "true_class_prob")
        # −loss is negative for every coalition, so v(∅) must be evaluated, not set to 0
        extra = {"empty": "evaluate"} if value == "neg_loss" else {}
        values_key = ctx.make_valuator(config.valuator, kind="shapley", value=value, **extra)
    elif not hasattr(ctx.model.fusion, "prototype_geometry"):
        raise mmcore.ConfigError(f"$.balancers: {KIND} utility 'proto_proxy' reads prototypes; it needs fusion 'pase'")
    return ShapleyGradientModulation(config, tuple(ctx.modalities), values_key, ctx.task)
