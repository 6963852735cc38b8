"""Behaviour tests: AGM's masked passes (eval mode, autograd on, input zeroing), its window, its
hooks, its clipping rule, and what it leaves alone."""
import ast
from pathlib import Path

import pytest
import torch
from torch import nn

import mmcore
from mmcore.testing import RecordingPlugin, check_id, contract_checks, make_trainer, run_steps, toy_config
from mmcore_agm.clipping import conditional_clip

SGD = {"kind": "sgd", "lr": 0.1, "momentum": 0.0}
PACKAGE = Path(__file__).resolve().parents[1] / "src" / "mmcore_agm"

TABLES = [
    ({"kind": "agm"}, None),
    ({"kind": "agm", "drop_at": "feature", "reference": "ema", "alpha": 1.5}, None),
    ({"kind": "agm"}, toy_config(("a", "b", "c"), fusion={"kind": "gated"})),
    ({"kind": "agm", "method": "permutation", "samples": 3}, toy_config(("a", "b", "c", "d"))),
    ({"kind": "agm"}, toy_config(data={"task": "binary"})),
]


@pytest.mark.parametrize("check", [c for t, base in TABLES for c in contract_checks("balancer", t, base)],
                         ids=check_id)
def test_contract(check):
    check()


def test_only_this_distribution_is_loaded():
    (entry,) = mmcore.PluginHost().plugins_info()  # MMCORE_LOAD_PLUGINS=mmcore-agm (conftest.py)
    assert entry["name"] == "mmcore-agm" and entry["kinds"] == ["balancer:agm"]


def test_the_package_imports_no_other_plugin():
    for path in PACKAGE.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            for name in names:
                top = name.split(".")[0]
                assert top in {"mmcore", "mmcore_agm", "torch", "attrs", "__future__", "typing", "math",
                               "contextlib"}, (path, name)


# -- the masked passes ------------------------------------------------------------------------------------
def record_encoder_calls(trainer, modality):
    calls = []

    def pre_hook(module, args):
        x = args[0]
        calls.append((module.training, torch.is_grad_enabled(), x.shape[0], bool((x == 0).all())))

    trainer.model.encoders[modality].register_forward_pre_hook(pre_hook)
    return calls


@pytest.mark.parametrize("drop_at", ["input", "feature"])
def test_masked_passes_run_in_eval_mode_with_autograd(drop_at):
    trainer = make_trainer(toy_config(balancers=[{"kind": "agm", "drop_at": drop_at}]))
    calls = record_encoder_calls(trainer, "b")
    _, (state,) = run_steps(trainer, 1)
    batch = state.batch.size
    train_pass, present_pass = (True, True, batch, False), (False, True, batch, False)
    assert calls[0] == train_pass
    if drop_at == "input":  # b's encoder runs once on its input and once, at batch size 1, on zeros
        assert sorted(calls[1:]) == sorted([(False, True, 1, True), present_pass])
    else:  # feature level: a muted encoder is not run at all
        assert calls[1:] == [present_pass]
    assert all(m.training for m in trainer.model.modules())  # every flag restored


def test_masked_passes_leave_batchnorm_statistics_alone():
    encoders = {m: {"kind": "mlp", "hidden": [16], "batchnorm": True} for m in ("a", "b")}
    joint, _ = run_steps(toy_config(encoders=encoders, optimizer=SGD), 1)
    agm, _ = run_steps(toy_config(encoders=encoders, optimizer=SGD, balancers=[{"kind": "agm"}]), 1)
    for (name, p), q in zip(joint.model.named_buffers(), agm.model.buffers()):
        assert torch.equal(p, q), name


def test_kappa_scales_each_modality_differently():
    _, states = run_steps(toy_config(balancers=[{"kind": "agm", "alpha": 1.5}]), 4)
    kappas = [(s.metrics["balancer/agm/kappa/a"].item(), s.metrics["balancer/agm/kappa/b"].item()) for s in states]
    assert any(abs(a - b) > 1e-3 for a, b in kappas)


# -- the window ----------------------------------------------------------------------------------------------
def test_outside_the_window_training_is_joint_training():
    joint, _ = run_steps(toy_config(optimizer=SGD), 3)
    agm, states = run_steps(toy_config(optimizer=SGD, balancers=[{"kind": "agm", "start_epoch": 1, "clip": False}]), 3)
    for p, q in zip(joint.model.parameters(), agm.model.parameters()):
        assert torch.equal(p, q)
    assert all(s.metrics["balancer/agm/kappa/a"] == 1.0 for s in states)
    assert agm.balancers[0].reference.count == 3  # the reference still follows every step (official)


def test_kappa_resets_to_one_after_the_window():
    _, states = run_steps(toy_config(balancers=[{"kind": "agm", "end_epoch": 0, "alpha": 2.0}]), 6)
    inside = [s.metrics["balancer/agm/kappa/a"].item() for s in states[:4]]  # 4 steps per toy epoch
    after = [(s.metrics["balancer/agm/kappa/a"].item(), s.metrics["balancer/agm/kappa/b"].item()) for s in states[4:]]
    assert any(k != 1.0 for k in inside) and after == [(1.0, 1.0)] * 2


# -- hooks ----------------------------------------------------------------------------------------------------
def test_detach_removes_the_hooks():
    trainer = make_trainer(toy_config(balancers=[{"kind": "agm"}]))
    balancer = trainer.balancers[0]
    scale = balancer.scales["a"]
    balancer.kappa = torch.tensor([4.0, 1.0])
    x = torch.ones(2, requires_grad=True)
    scale(x).sum().backward()
    assert x.grad.tolist() == [4.0, 4.0]
    balancer.detach()
    assert "agm" not in trainer.model.extras and not scale._backward_hooks
    x.grad = None
    scale(x).sum().backward()
    assert x.grad.tolist() == [1.0, 1.0]


# -- clipping --------------------------------------------------------------------------------------------------
def test_clipping_fires_only_when_a_fusion_weight_gradient_leaves_the_bound():
    model = nn.ModuleDict({"encoder": nn.Linear(3, 2), "fusion": nn.Linear(2, 2)})
    for p in model.parameters():
        p.grad = torch.full_like(p, 0.9)
    fired = conditional_clip(model, model["fusion"], threshold=1.0, max_norm=1.0)
    assert not fired and all(torch.all(p.grad == 0.9) for p in model.parameters())
    model["fusion"].weight.grad[0, 0] = -1.5
    assert conditional_clip(model, model["fusion"], threshold=1.0, max_norm=1.0)
    total = torch.linalg.vector_norm(torch.cat([p.grad.flatten() for p in model.parameters()]))
    assert total.item() == pytest.approx(1.0, rel=1e-5)


def test_clipping_bounds_the_step():
    _, states = run_steps(toy_config(optimizer={"kind": "sgd", "lr": 5.0}, balancers=[{"kind": "agm", "alpha": 3.0}]), 4)
    assert any(s.metrics["balancer/agm/clipped"] == 1.0 for s in states)


# -- determinism and combination ------------------------------------------------------------------------------
def test_seeded_runs_repeat_and_seeds_differ():
    def final(seed):
        trainer, _ = run_steps(toy_config(("a", "b", "c", "d"), run={"seed": seed},
                                          balancers=[{"kind": "agm", "samples": 2}]), 3)
        return [p.detach().clone() for p in trainer.model.parameters()]

    first, again, other = final(0), final(0), final(1)
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert not all(torch.equal(a, b) for a, b in zip(first, other))


def test_runs_with_a_recording_balancer():
    recorder = RecordingPlugin()
    config = toy_config(balancers=[{"kind": "agm"}, {"kind": "recording"}])
    _, (state,) = run_steps(config, 1, modules=[recorder])
    assert [c for c in recorder.calls if c.startswith("rec.")] == [
        "rec.attach", "rec.on_epoch_start", "rec.before_forward[0]", "rec.before_backward[0]", "rec.after_backward[0]"]
    alone, _ = run_steps(toy_config(balancers=[{"kind": "agm"}]), 1)
    together, _ = run_steps(config, 1, modules=[RecordingPlugin()])
    for p, q in zip(alone.model.parameters(), together.model.parameters()):
        assert torch.equal(p, q)


def test_runs_under_a_step_owner():
    config = toy_config(balancers=[{"kind": "recording", "owns_step": True}, {"kind": "agm"}])
    trainer, states = run_steps(config, 2, modules=[RecordingPlugin()])
    assert all(s.pass_index == 1 for s in states)
    assert trainer.balancers[1].reference.count == 2  # state moves on pass 0 only
    for state in states:  # both passes train on recomposed logits (the same kappa)
        assert torch.isfinite(state.losses["task"])
