"""Behaviour tests: what OGM-GE changes (the leader's group, GE noise in the window) and what it
leaves alone (the other modalities without GE, the fusion, other parameters, steps outside the window)."""
import ast
from pathlib import Path

import attrs
import pytest
import torch
from torch import nn

import mmcore
from mmcore.testing import check_id, contract_checks, make_trainer, run_steps, toy_config
from mmcore_ogm_ge.balancer import OGMGE
from mmcore_ogm_ge.coefficients import discrepancy_ratios, modulation_coefficients, true_class_confidence

SGD = {"kind": "sgd", "lr": 0.1, "momentum": 0.0}
PACKAGE = Path(__file__).resolve().parents[1] / "src" / "mmcore_ogm_ge"


# -- a tiny conv encoder, to check scope = "conv" -----------------------------------------------------
@attrs.frozen(kw_only=True)
class TinyConvConfig:
    pass


class TinyConv(mmcore.Encoder):
    """[B, D] -> Conv1d + BatchNorm + Linear: conv weights, conv bias, BN and a Linear to tell apart."""

    out_dim = 8

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv1d(1, 4, 3, padding=1)
        self.norm = nn.BatchNorm1d(4)
        self.proj = nn.Linear(4, self.out_dim)

    def forward(self, x, mask=None):
        return self.proj(torch.relu(self.norm(self.conv(x.unsqueeze(1)))).mean(-1))


class TinyConvPlugin:
    __name__ = "tests.tiny_conv"

    @mmcore.hookimpl
    def mmcore_register_components(self, registry):
        registry.encoder("tiny_conv", TinyConvConfig, lambda config, ctx: TinyConv(), help="test only")


def one_step(config, modules=()):
    """One training step whose optimizer step is skipped: the parameters stay at their initial
    values, so scores and gradients can be recomputed by hand afterwards."""
    trainer = make_trainer(config, modules=modules)
    trainer.optimizer.step = lambda *args, **kwargs: None
    _, (state,) = run_steps(trainer, 1)
    return trainer, state


def grads(trainer):
    return {name: p.grad.clone() for name, p in trainer.model.named_parameters() if p.grad is not None}


# -- contract ------------------------------------------------------------------------------------------
TABLES = [{"kind": "ogm_ge"}, {"kind": "ogm_ge", "ge": False, "variant": "shifted", "scope": "modality"}]


@pytest.mark.parametrize("check", [c for t in TABLES for c in contract_checks("balancer", t)], ids=check_id)
def test_contract(check):
    check()


@pytest.mark.parametrize("check", contract_checks("balancer", {"kind": "ogm_ge"}, toy_config(fusion={"kind": "gated"})),
                         ids=check_id)
def test_contract_with_probe_logits(check):
    check()


def test_only_this_distribution_is_loaded():
    (entry,) = mmcore.PluginHost().plugins_info()  # MMCORE_LOAD_PLUGINS=mmcore-ogm-ge (conftest.py)
    assert entry["name"] == "mmcore-ogm-ge" and entry["kinds"] == ["balancer:ogm_ge"]


def test_the_package_imports_no_other_plugin():
    for path in PACKAGE.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            for name in names:
                top = name.split(".")[0]
                assert top in {"mmcore", "mmcore_ogm_ge", "torch", "attrs", "__future__", "typing", "math"}, (path, name)


# -- what it changes and what it leaves alone -----------------------------------------------------------
def test_only_the_leader_is_scaled_without_ge():
    joint, _ = one_step(toy_config(optimizer=SGD))
    ogm, state = one_step(toy_config(optimizer=SGD, balancers=[{"kind": "ogm_ge", "ge": False}]))
    k = {m: state.metrics[f"balancer/ogm_ge/coef/{m}"] for m in ("a", "b")}
    assert k["a"] < 1 and k["b"] == 1  # the toy's "a" carries the strong signal
    plain, scaled = grads(joint), grads(ogm)
    for name, g in plain.items():
        if name.startswith("encoders.a."):
            assert torch.allclose(scaled[name], k["a"] * g, rtol=1e-6, atol=0)
        else:  # the non-leader's encoder and the fusion head: bit for bit untouched
            assert torch.equal(scaled[name], g), name


def test_coefficient_comes_from_the_split_head_logits():
    trainer, state = one_step(toy_config(optimizer=SGD, balancers=[{"kind": "ogm_ge", "alpha": 0.5}]))
    unimodal, y = state.output.fusion.unimodal_logits, state.batch.label
    scores = torch.stack([true_class_confidence(unimodal[m], y, "classification").sum() for m in ("a", "b")])
    rho = scores[0] / scores[1]
    expected = [1 - torch.tanh(0.5 * rho), 1.0] if rho > 1 else [1.0, 1 - torch.tanh(0.5 / rho)]
    assert state.metrics["balancer/ogm_ge/score/a"] == pytest.approx(scores[0].item())
    assert state.metrics["balancer/ogm_ge/coef/a"].item() == pytest.approx(float(expected[0]), rel=1e-6)
    assert state.metrics["balancer/ogm_ge/coef/b"].item() == pytest.approx(float(expected[1]), rel=1e-6)
    assert state.metrics["balancer/ogm_ge/leader"].item() == (0.0 if rho > 1 else 1.0)


def test_fusions_without_split_heads_use_drop_probe_logits():
    config = toy_config(optimizer=SGD, fusion={"kind": "gated"}, balancers=[{"kind": "ogm_ge"}])
    trainer, state = one_step(config)
    model, out = trainer.model, state.output
    assert out.fusion.unimodal_logits is None
    with torch.no_grad():
        probes = {m: model.fuse(out.features, model.coalition_presence(out.present, (m,)), probe=True).logits
                  for m in ("a", "b")}
    scores = torch.stack([true_class_confidence(probes[m], state.batch.label, "classification").sum()
                          for m in ("a", "b")])
    k = modulation_coefficients(discrepancy_ratios(scores), 0.8)
    assert torch.allclose(torch.stack([state.metrics[f"balancer/ogm_ge/coef/{m}"] for m in ("a", "b")]), k)


def test_ge_touches_only_the_modality_groups():
    joint, _ = one_step(toy_config(optimizer=SGD))
    ogm, _ = one_step(toy_config(optimizer=SGD, balancers=[{"kind": "ogm_ge", "ge": True}]))
    plain, modulated = grads(joint), grads(ogm)
    for name, g in plain.items():
        changed = not torch.equal(modulated[name], g)
        assert changed == name.startswith("encoders."), name  # GE noise on both encoders, none on the head


def test_conv_scope_touches_only_conv_weights():
    encoders = {"a": {"kind": "tiny_conv"}, "b": {"kind": "tiny_conv"}}
    base = dict(optimizer=SGD, encoders=encoders)
    joint, _ = one_step(toy_config(**base), modules=[TinyConvPlugin()])
    ogm, _ = one_step(toy_config(**base, balancers=[{"kind": "ogm_ge", "scope": "conv"}]), modules=[TinyConvPlugin()])
    plain, modulated = grads(joint), grads(ogm)
    for name, g in plain.items():
        changed = not torch.equal(modulated[name], g)
        assert changed == name.endswith("conv.weight"), name


def test_conv_scope_without_convolutions_is_a_config_error():
    with pytest.raises(mmcore.ConfigError, match="no convolutions"):
        make_trainer(toy_config(balancers=[{"kind": "ogm_ge", "scope": "conv"}]))


def test_one_modality_is_a_config_error():
    with pytest.raises(mmcore.ConfigError, match="at least two"):
        make_trainer(toy_config(modalities=("a",), balancers=[{"kind": "ogm_ge"}]))


def test_nothing_is_modulated_before_the_window():
    joint, _ = run_steps(toy_config(optimizer=SGD), 3)
    ogm, states = run_steps(toy_config(optimizer=SGD, balancers=[{"kind": "ogm_ge", "start_epoch": 1}]), 3)
    for p, q in zip(joint.model.parameters(), ogm.model.parameters()):
        assert torch.equal(p, q)
    assert all(s.metrics["balancer/ogm_ge/coef/a"] == 1.0 and "balancer/ogm_ge/ratio/a" not in s.metrics
               for s in states)


def test_nothing_is_modulated_after_the_window(monkeypatch):
    applied = []
    original = OGMGE.after_backward

    def spy(self, state):
        calls = []
        monkeypatch.setattr(self.modulator, "apply", lambda *a: calls.append(a))
        original(self, state)
        applied.append((state.epoch, bool(calls)))

    monkeypatch.setattr(OGMGE, "after_backward", spy)
    run_steps(toy_config(balancers=[{"kind": "ogm_ge", "end_epoch": 0}]), 6)  # 4 steps per toy epoch
    assert applied == [(0, True)] * 4 + [(1, False)] * 2


# -- determinism and combination ------------------------------------------------------------------------
def test_seeded_runs_repeat_and_seeds_differ():
    def final(seed):
        trainer, _ = run_steps(toy_config(run={"seed": seed}, balancers=[{"kind": "ogm_ge"}]), 3)
        return [p.detach().clone() for p in trainer.model.parameters()]

    first, again, other = final(0), final(0), final(1)
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert not all(torch.equal(a, b) for a, b in zip(first, other))


def test_runs_with_a_recording_balancer():
    recorder = mmcore.testing.RecordingPlugin()
    config = toy_config(balancers=[{"kind": "recording"}, {"kind": "ogm_ge", "ge": False}], optimizer=SGD)
    _, (state,) = run_steps(config, 1, modules=[recorder])
    assert [c for c in recorder.calls if c.startswith("rec.")] == [
        "rec.attach", "rec.on_epoch_start", "rec.before_forward[0]", "rec.before_backward[0]", "rec.after_backward[0]"]
    alone, _ = one_step(toy_config(optimizer=SGD, balancers=[{"kind": "ogm_ge", "ge": False}]))
    together, _ = one_step(config, modules=[mmcore.testing.RecordingPlugin()])
    assert all(torch.equal(g, grads(together)[n]) for n, g in grads(alone).items())


def test_runs_under_a_step_owner():
    recorder = mmcore.testing.RecordingPlugin()
    config = toy_config(balancers=[{"kind": "recording", "owns_step": True}, {"kind": "ogm_ge"}])
    _, states = run_steps(config, 2, modules=[recorder])
    for state in states:  # two passes, one modulation, from pass 0's scores
        assert state.pass_index == 1 and len(state.pass_outputs) == 2
        unimodal = state.pass_outputs[0].fusion.unimodal_logits
        for m in ("a", "b"):
            score = true_class_confidence(unimodal[m], state.batch.label, "classification").sum()
            assert state.metrics[f"balancer/ogm_ge/score/{m}"] == score
