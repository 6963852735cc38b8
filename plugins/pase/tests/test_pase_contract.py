"""Contract checks for `pase_sgm` (with either utility, on the `pase` fusion) and determinism."""
from __future__ import annotations

import pytest
import torch

from mmcore.testing import check_id, contract_checks, run_steps, toy_config

PASE_TOY = toy_config(("a", "b", "c"), fusion={"kind": "pase"})


@pytest.mark.parametrize("check", contract_checks("balancer", {"kind": "pase_sgm", "switch_epoch": 0}, config=PASE_TOY),
                         ids=check_id)
def test_contract_masked_perf(check):
    check()


@pytest.mark.parametrize("check", contract_checks("balancer", {"kind": "pase_sgm", "switch_epoch": 0,
                                                               "utility": "proto_proxy", "proxy_method": "permutation",
                                                               "proxy_samples": 8}, config=PASE_TOY), ids=check_id)
def test_contract_proto_proxy(check):
    check()


def test_seeded_runs_repeat_exactly_prototypes_included():
    config = toy_config(fusion={"kind": "pase"}, balancers=[{"kind": "pase_sgm", "switch_epoch": 0}])
    first, _ = run_steps(config, 3)
    second, _ = run_steps(config, 3)
    for (name, a), b in zip(first.model.state_dict().items(), second.model.state_dict().values()):
        assert torch.equal(a, b), name
    assert torch.equal(first.balancers[0].ema, second.balancers[0].ema)
