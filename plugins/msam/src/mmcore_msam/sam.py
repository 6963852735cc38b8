"""`sam`: sharpness-aware minimisation (Foret et al., ICLR 2021) as a step owner.

One step: the gradient g at w (pass 0), the ascent step ε = ρ·g/‖g‖, the gradient at w + ε (pass 1,
BatchNorm statistics frozen), the exact original weights back, then `finish()`: the other
balancers' modulation, clipping and the trainer's optimizer step (weight decay included) on the
gradient from w + ε. `adaptive = true` is ASAM (Kwon et al., 2021).
"""
from __future__ import annotations

import contextlib
from typing import Any, Callable

from attrs import field, frozen
from attrs.validators import ge, instance_of

import mmcore
from mmcore import ascent_step, frozen_batchnorm_statistics, gradient_params, perturbed


def rho_field(default: float = 0.05) -> Any:
    return field(default=default, validator=[instance_of(float), ge(0.0)], metadata={
        "help": "radius of the ascent step, |eps| = rho (SAM paper and davda54: 0.05; ASAM ~ 0.5-2)"})


def adaptive_field() -> Any:
    return field(default=False, validator=instance_of(bool),
                 metadata={"help": "ASAM: eps = rho * T^2 g / |T g| with T = |w| + eta (scale-invariant sharpness)"})


def eta_field() -> Any:
    return field(default=0.0, validator=[instance_of(float), ge(0.0)],
                 metadata={"help": "ASAM's eta in T = |w| + eta (davda54: 0; the ASAM authors' code: 0.01)"})


@frozen(kw_only=True)
class SAMConfig:
    rho: float = rho_field()
    adaptive: bool = adaptive_field()
    eta: float = eta_field()


def first_pass(closure: Callable[[], mmcore.StepState], state: mmcore.StepState) -> None:
    """Pass 0 under `no_sync`: under DDP each rank perturbs with its own gradient (m-sharpness)."""
    no_sync = state.control.no_sync() if state.control is not None else contextlib.nullcontext()
    with no_sync:
        closure()


class SAM(mmcore.Balancer):
    owns_step = True

    def __init__(self, config: SAMConfig) -> None:
        self.config = config

    def step(self, closure: Callable[[], mmcore.StepState], finish: Callable[[], None],
             state: mmcore.StepState) -> None:
        first_pass(closure, state)
        params = gradient_params(state.model)
        ascent = ascent_step(params, self.config.rho, self.config.adaptive, self.config.eta)
        with perturbed(params, ascent.offsets), frozen_batchnorm_statistics(state.model):
            closure()  # pass 1: the gradient at w + eps is the update gradient
        state.metrics["balancer/sam/grad_norm"] = ascent.grad_norm
        finish()


def build_sam(config: SAMConfig, ctx: mmcore.BuildContext) -> SAM:
    return SAM(config)
