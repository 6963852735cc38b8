"""Method plugins composed in one config: `ogm_ge` and `agm` together (when both are installed).

AGM replaces the task loss with recomposed Shapley logits under its backward hooks; OGM-GE then
modulates the encoder gradients in `finish`. Each must still do its own job, in either order.
"""
import pytest
import torch

import mmcore
from mmcore.testing import check_id, contract_checks, run_steps, toy_config

pytest.importorskip("mmcore_ogm_ge")
pytest.importorskip("mmcore_agm")
if not all(mmcore.PluginHost().registry.has("balancer", kind) for kind in ("ogm_ge", "agm")):
    pytest.skip("ogm_ge and agm are installed but not both loaded (MMCORE_LOAD_PLUGINS / MMCORE_BLOCK_PLUGINS)",
                allow_module_level=True)

BOTH = [{"kind": "agm", "alpha": 1.5}, {"kind": "ogm_ge", "alpha": 0.8}]


@pytest.mark.parametrize("balancers", [BOTH, BOTH[::-1]], ids=["agm-then-ogm_ge", "ogm_ge-then-agm"])
def test_ogm_ge_and_agm_train_together(balancers):
    trainer, states = run_steps(toy_config(balancers=balancers), 4)
    for state in states:
        assert torch.isfinite(state.losses["task"])
        assert {"balancer/agm/kappa/a", "balancer/ogm_ge/coef/a", "balancer/agm/clipped"} <= set(state.metrics)
        values = state.private("agm")["shapley_logits"].values
        assert torch.allclose(values.sum(0), state.output.logits, atol=1e-5)
    assert trainer.balancers[[b["kind"] for b in balancers].index("agm")].reference.count == 4


def test_ogm_ge_scales_what_agm_leaves_when_agm_is_neutral():
    """With AGM outside its window (kappa = 1, plain loss) and no clipping, the pair trains exactly
    like OGM-GE alone."""
    neutral_agm = {"kind": "agm", "start_epoch": 5, "clip": False}
    alone, _ = run_steps(toy_config(balancers=[{"kind": "ogm_ge"}]), 3)
    paired, _ = run_steps(toy_config(balancers=[neutral_agm, {"kind": "ogm_ge"}]), 3)
    for p, q in zip(alone.model.parameters(), paired.model.parameters()):
        assert torch.equal(p, q)


# check_detach_removes_hooks detaches only the last balancer; each plugin checks its own detach
PAIR_CHECKS = [c for c in contract_checks("balancer", BOTH[1], toy_config(balancers=[BOTH[0]]))
               if check_id(c) != "check_detach_removes_hooks"]


@pytest.mark.parametrize("check", PAIR_CHECKS, ids=check_id)
def test_contract_of_the_pair(check):
    check()
