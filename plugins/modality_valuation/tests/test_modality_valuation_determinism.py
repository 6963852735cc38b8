"""Determinism: seeded runs repeat, and a run interrupted inside a resampled epoch and resumed from
its checkpoint trains the same resampled epochs as an uninterrupted one."""
import pytest
import torch

import mmcore
from mmcore.testing import contract_checks, check_id, run_steps, toy_config

DISTRIBUTION = "mmcore-modality-valuation"


def _config(**options):
    table = {"kind": "modality_valuation", "warmup_epochs": 1, **options}
    return toy_config(balancers=[table], run={"epochs": 3, "checkpoint_every_steps": 3})


class _Interrupt(Exception):
    pass


class _StopAt:
    """An observer that stops the run just before optimizer step `step` (a crash, as far as the
    run directory can tell: the last checkpoint is the one before it)."""

    __name__ = "modality_valuation_test_stop"

    def __init__(self, step: int) -> None:
        self.step = step

    @mmcore.hookimpl
    def mmcore_before_optimizer_step(self, trainer, state):
        if trainer.step == self.step:
            raise _Interrupt


def _trainer(config, run_dir, modules=(), resume=False):
    host = mmcore.PluginHost(load_only=[DISTRIBUTION], modules=list(modules))
    return mmcore.Trainer(mmcore.parse_config(config, host.registry), host.registry, run_dir=run_dir,
                          hook=host.hook, resume=resume)


@pytest.mark.parametrize("options, stop, mid_epoch", [
    ({"level": "sample"}, 7, True),  # step 6's checkpoint is inside epoch 1, the first resampled one
    ({"level": "modality", "strategy": "mask"}, 5, False),  # step 4's ends the warm-up: epoch 1 is planned anew
])
def test_a_resumed_run_trains_the_same_resampled_epochs(tmp_path, options, stop, mid_epoch):
    config = _config(**options)
    whole = _trainer(config, tmp_path / "whole")
    whole.fit()
    whole.close()
    interrupted = _trainer(config, tmp_path / "cut", modules=[_StopAt(stop)])
    with pytest.raises(_Interrupt):
        interrupted.fit()
    interrupted.close()
    resumed = _trainer(config, tmp_path / "cut", resume=True)
    assert resumed.step < stop and (resumed.loader_state is not None) == mid_epoch
    assert (resumed.plan is not None) == mid_epoch  # restored with the checkpoint, or planned again
    resumed.fit()
    resumed.close()
    assert resumed.plan == whole.plan and resumed.plan is not None
    for p, q in zip(whole.model.parameters(), resumed.model.parameters()):
        assert torch.equal(p, q)


@pytest.mark.parametrize("options", [{"level": "sample", "rounding": "stochastic"}, {"level": "modality"}])
def test_seeded_runs_repeat_their_plans(options):
    first, _ = run_steps(_config(**options), 10)
    second, _ = run_steps(_config(**options), 10)
    assert first.plan == second.plan and first.plan is not None


def test_the_run_seed_changes_the_modality_level_draws():
    plans = [run_steps(toy_config(balancers=[{"kind": "modality_valuation", "level": "modality", "warmup_epochs": 1}],
                                  run={"seed": seed}), 5)[0].plan for seed in (0, 1)]
    assert plans[0] != plans[1]


TABLES = [
    {"kind": "modality_valuation", "warmup_epochs": 0},
    {"kind": "modality_valuation", "warmup_epochs": 0, "level": "modality", "strategy": "mask"},
]


@pytest.mark.parametrize("check", [c for table in TABLES for c in contract_checks("balancer", table)], ids=check_id)
def test_contract(check):
    check()
