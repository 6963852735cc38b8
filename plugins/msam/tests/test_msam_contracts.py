"""The core's contract checks for every kind mmcore-msam registers (finite steps, determinism,
checkpointable state, modules on the device, detach)."""
import pytest

from mmcore.testing import check_id, contract_checks

TABLES = [
    {"kind": "sam"},
    {"kind": "msam"},
    {"kind": "msam", "decomposition": "per_sample", "nu_momentum": 0.9},
    {"kind": "msam", "decomposition": "logit_attribution"},
]


@pytest.mark.parametrize("table", TABLES, ids=lambda t: "-".join(str(v) for v in t.values()))
@pytest.mark.parametrize("make_check", range(5))
def test_contract(table, make_check):
    checks = contract_checks("balancer", table)
    check = checks[make_check]
    check()
