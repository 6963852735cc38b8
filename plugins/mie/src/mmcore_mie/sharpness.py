"""The SAM step of `sam_mode = "full"` (paper Eqs. 2–4 on the active branch θ^(k)): the gradient at
θ, the ascent step ε = ρ·g/‖g‖ with one global norm over the branch, the gradient at θ + ε with
BatchNorm statistics frozen, then the saved weights copied back exactly — from the core's shared
sharpness pieces.
"""
from __future__ import annotations

import contextlib
from typing import Callable

import mmcore


def sam_step(closure: Callable[[], mmcore.StepState], state: mmcore.StepState, rho: float) -> None:
    """Pass 0 (under `no_sync`: m-sharpness), ascent, pass 1 at θ + ε, exact restore. The gradient
    left on the parameters is ∇L(θ + ε)."""
    no_sync = state.control.no_sync() if state.control is not None else contextlib.nullcontext()
    with no_sync:
        closure()
    params = mmcore.gradient_params(state.model)  # the active branch: what the last backward reached
    ascent = mmcore.ascent_step(params, rho)
    with mmcore.perturbed(params, ascent.offsets), mmcore.frozen_batchnorm_statistics(state.model):
        closure()
