"""mmcore.testing's contract checks, run on the built-in kinds (they must pass) and on deliberately
broken toy components (the matching check must fail), so the checks themselves are tested."""
from __future__ import annotations

import random

import pytest
import torch
from attrs import frozen
from torch import nn

from mmcore import Balancer, ModalityValues, hookimpl
from mmcore.testing import check_id, contract_checks
from mmcore.testing.contracts import (
    check_deterministic,
    check_detach_removes_hooks,
    check_modules_on_device,
    check_state_round_trip,
    check_valuator_has_no_side_effects,
)


@pytest.mark.parametrize("check", contract_checks("balancer", {"kind": "none"}), ids=check_id)
def test_builtin_none_balancer_meets_the_contract(check):
    check()


@pytest.mark.parametrize("method", ["exact", "permutation"])
def test_builtin_shapley_valuator_meets_the_contract(method):
    checks = contract_checks("valuator", {"kind": "shapley", "method": method, "samples": 4})
    assert [check_id(c) for c in checks][-1] == "check_valuator_has_no_side_effects"
    for check in checks:
        check()


# -- toy components, one flaw each -----------------------------------------------------------------
@frozen(kw_only=True)
class NoConfig:
    pass


class NoisyLoss(Balancer):
    """Scales the task loss by a random factor from the generator it is given."""

    def __init__(self, draw) -> None:
        self.draw = draw

    def before_backward(self, state):
        state.losses["task"] = state.losses["task"] * (1.0 + self.draw(state))


class ForgetfulCounter(Balancer):
    """Counts its steps, but load_state_dict ignores what it is given."""

    def __init__(self) -> None:
        self.steps = 0

    def before_forward(self, state):
        self.steps += 1

    def state_dict(self):
        return {"steps": self.steps, "history": torch.full((2,), float(self.steps))}

    def load_state_dict(self, state):
        pass


class CountingCounter(ForgetfulCounter):
    def load_state_dict(self, state):
        self.steps = state["steps"]


class HookLeaver(Balancer):
    """Installs a forward hook in attach and forgets it in detach."""

    def attach(self, model):
        model.encoders["a"].register_forward_hook(lambda *args: None)


class LateModule(Balancer):
    """Creates its trainable module only at the first forward, after the optimizer was built."""

    def before_forward(self, state):
        if "late" not in state.model.extras:
            state.model.extras["late"] = nn.Linear(2, 2)


class RetrainingValuator:
    """Values the modalities, but leaves the model in training mode and nudges a parameter."""

    def __init__(self, modalities) -> None:
        self.modalities = modalities

    def value(self, state):
        state.model.eval()
        with torch.no_grad():
            next(state.model.parameters()).add_(1e-3)
        return ModalityValues(torch.zeros(len(self.modalities)), self.modalities)


def _unowned_draw(state):
    return torch.rand((), generator=torch.Generator().manual_seed(random.getrandbits(62)))


def _owned_draw(state):
    return torch.rand((), generator=state.generator("noisy_loss"))


class ToyPlugin:
    @hookimpl
    def mmcore_register_components(self, registry):
        kinds = {
            "noisy_unowned": lambda c, ctx: NoisyLoss(_unowned_draw),
            "noisy_owned": lambda c, ctx: NoisyLoss(_owned_draw),
            "forgetful": lambda c, ctx: ForgetfulCounter(),
            "counting": lambda c, ctx: CountingCounter(),
            "hook_leaver": lambda c, ctx: HookLeaver(),
            "late_module": lambda c, ctx: LateModule(),
        }
        for kind, build in kinds.items():
            registry.balancer(kind, NoConfig, build, help="a contract-check fixture")
        registry.valuator("retraining", NoConfig, lambda c, ctx: RetrainingValuator(ctx.modalities), help="fixture")


def _checks(slot, kind):
    return {check_id(c): c for c in contract_checks(slot, {"kind": kind}, modules=[ToyPlugin()])}


def test_randomness_from_an_unowned_source_fails_the_determinism_check():
    with pytest.raises(AssertionError, match="seeded runs differ"):
        _checks("balancer", "noisy_unowned")[check_deterministic.__name__]()
    _checks("balancer", "noisy_owned")[check_deterministic.__name__]()  # the trainer's generator passes


def test_a_state_dict_that_does_not_restore_fails_the_round_trip_check():
    with pytest.raises(AssertionError, match="does not restore"):
        _checks("balancer", "forgetful")[check_state_round_trip.__name__]()
    _checks("balancer", "counting")[check_state_round_trip.__name__]()


def test_a_hook_left_behind_fails_the_detach_check():
    with pytest.raises(AssertionError, match="left hooks"):
        _checks("balancer", "hook_leaver")[check_detach_removes_hooks.__name__]()


def test_a_module_created_after_the_optimizer_fails_the_module_check():
    with pytest.raises(AssertionError, match="outside the optimizer"):
        _checks("balancer", "late_module")[check_modules_on_device.__name__]()


def test_a_valuator_with_side_effects_fails_its_check():
    with pytest.raises(AssertionError):
        _checks("valuator", "retraining")[check_valuator_has_no_side_effects.__name__]()
