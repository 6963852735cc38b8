"""Tests of mmcore-weak-boost: installed, the contract checks, the formulas by hand, behaviour, and
that it uses nothing of mmcore but the public API."""
import ast
from pathlib import Path

import pytest
import torch

import mmcore
from mmcore.testing import check_id, contract_checks, make_trainer, run_steps, toy_config

pytest_plugins = ["mmcore.testing"]  # the mmcore_* fixtures

SOURCES = Path(__file__).parents[1] / "src" / "mmcore_weak_boost"
CHECKS = [*contract_checks("valuator", {"kind": "leave_one_out"}),
          *contract_checks("valuator", {"kind": "leave_one_out", "per": "sample", "value": "accuracy"}),
          *contract_checks("balancer", {"kind": "weak_boost"})]


def test_installed_with_both_kinds():
    (entry,) = mmcore.PluginHost(load_only=["mmcore-weak-boost"]).plugins_info()
    assert (entry["name"], entry["version"]) == ("mmcore-weak-boost", "0.1.0")
    assert entry["kinds"] == ["balancer:weak_boost", "valuator:leave_one_out"]


@pytest.mark.parametrize("check", CHECKS, ids=check_id)
def test_contract(check):
    check()


def test_leave_one_out_values_by_hand():
    trainer = make_trainer(toy_config(valuators={"loo": {"kind": "leave_one_out", "per": "sample"}}))
    head = trainer.model.fusion.head  # concat: logits = W [z_a; z_b] + b; a missing modality's z is zero
    weight, bias = head.weight.detach().clone(), head.bias.detach().clone()  # as the step's probes see them
    _, (state,) = run_steps(trainer, 1)
    features, label = state.output.features, state.batch.label
    with torch.no_grad():
        w_a, w_b = weight.split([features["a"].shape[1], features["b"].shape[1]], dim=1)
        both = features["a"] @ w_a.T + features["b"] @ w_b.T + bias
        only_a, only_b = features["a"] @ w_a.T + bias, features["b"] @ w_b.T + bias

    def p(logits):
        return logits.softmax(-1).gather(1, label[:, None])[:, 0]

    expected = torch.stack([p(both) - p(only_b), p(both) - p(only_a)], dim=1)
    assert torch.allclose(state.values["loo"].values, expected, atol=1e-6)


def test_strong_modality_gets_no_boost_and_the_weak_one_does(mmcore_toy_config):
    # The toy data give modality "a" signal 2.0 and "b" 0.5: after a few steps "a" carries the prediction.
    mmcore_toy_config["balancers"] = [{"kind": "weak_boost", "beta": 2.0}]
    _, states = run_steps(mmcore_toy_config, 8)
    last = states[-1]
    assert last.metrics["balancer/weak_boost/weight/a"] == 0
    assert last.metrics["balancer/weak_boost/weight/b"] > 0


def test_added_terms_are_the_weighted_unimodal_losses():
    _, states = run_steps(toy_config(balancers=[{"kind": "weak_boost", "beta": 1.5}]), 8)
    state = states[-1]
    (values,) = state.values.values()  # the balancer's default valuator
    positive = values.values.clamp_min(0)
    shares = positive / positive.sum() if positive.sum() > 0 else torch.full((2,), 0.5)
    assert state.losses["weak_boost/b"] > 0  # a real term, not a zero weight
    unimodal = state.output.fusion.unimodal_logits
    for m, share in zip(("a", "b"), shares):
        weight = 1.5 * (1 - 2 * share).clamp_min(0)
        ce = torch.nn.functional.cross_entropy(unimodal[m], state.batch.label)
        assert torch.allclose(state.losses[f"weak_boost/{m}"], weight * ce)


def test_beta_zero_is_joint_training():
    joint, _ = run_steps(toy_config(), 3)
    boosted, _ = run_steps(toy_config(balancers=[{"kind": "weak_boost", "beta": 0.0}]), 3)
    for p, q in zip(joint.model.parameters(), boosted.model.parameters()):
        assert torch.equal(p, q)


def test_fusion_without_unimodal_logits_is_rejected():
    config = toy_config(fusion={"kind": "gated"}, balancers=[{"kind": "weak_boost"}])
    with pytest.raises(mmcore.ConfigError, match="requires 'unimodal_logits'.*fusions that do: .*concat"):
        mmcore.parse_config(config, mmcore.PluginHost().registry)


def test_imports_only_the_public_api():
    for path in SOURCES.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            private = [n for n in names if n.startswith("mmcore.")]
            assert not private, f"{path.name} imports {private}: plugins use `import mmcore` only"
