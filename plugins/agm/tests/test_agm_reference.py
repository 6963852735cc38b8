"""Reference tests: AGM's formulas on hand-computed inputs (spec §3.2)."""
import math

import pytest
import torch

import mmcore
import mmcore_agm.balancer
from mmcore.testing import make_trainer, run_steps, toy_config
from mmcore_agm.coefficients import RunningReference, kappa, ratios, unimodal_scores

SGD = {"kind": "sgd", "lr": 0.1, "momentum": 0.0}


def agm_step(modalities=("a", "b"), **agm):
    trainer = make_trainer(toy_config(modalities, optimizer=SGD, balancers=[{"kind": "agm", **agm}]))
    trainer.optimizer.step = lambda *args, **kwargs: None  # keep the weights the logits came from
    _, (state,) = run_steps(trainer, 1)
    return trainer, state


# -- Shapley logits -------------------------------------------------------------------------------------
@pytest.mark.parametrize("modalities", [("a", "b"), ("a", "b", "c"), ("a", "b", "c", "d")])
def test_shapley_logits_sum_to_the_full_logits(modalities):
    trainer, state = agm_step(modalities)
    values = state.private("agm")["shapley_logits"]
    assert values.values.shape == (len(modalities), *state.output.logits.shape)
    assert torch.allclose(values.values.sum(0), state.output.logits, atol=1e-5)
    exact = len(modalities) <= 3  # exact for M = 2, 3; Monte-Carlo (permutations) beyond
    assert trainer.balancers[0].method == ("exact" if exact else "permutation")
    if exact:
        assert len(values.coalitions) == 2 ** len(modalities) - 1
    assert () not in values.coalitions  # v(empty) = 0: the all-muted pass is never run


def test_two_modality_closed_form():
    _, state = agm_step()
    f = state.private("agm")["shapley_logits"].coalitions
    mtilde = state.private("agm")["shapley_logits"].values
    assert torch.allclose(f[("a", "b")], state.output.logits)
    assert torch.allclose(mtilde[0], 0.5 * (f[("a", "b")] - f[("b",)] + f[("a",)]), atol=1e-6)
    assert torch.allclose(mtilde[1], 0.5 * (f[("a", "b")] - f[("a",)] + f[("b",)]), atol=1e-6)


def test_three_modality_closed_form():
    _, state = agm_step(("t", "a", "v"))
    f = state.private("agm")["shapley_logits"].coalitions
    mtilde = state.private("agm")["shapley_logits"].values[0]
    expected = (f[("t", "a", "v")] - f[("a", "v")] + f[("t",)]) / 3 + (
        f[("t", "a")] - f[("a",)] + f[("t", "v")] - f[("v",)]) / 6  # spec §3.2 item 1 (UR-Funny)
    assert torch.allclose(mtilde, expected, atol=1e-6)


# -- gradients through the recomposed logits ---------------------------------------------------------------
def test_per_pass_gradient_factors():
    """Spec §3.2 item 3: F(a,v) gets (ka+kv)/2 of the gradient, F(a,.) (ka-kv)/2, F(.,v) (kv-ka)/2."""
    trainer, _ = agm_step()
    balancer = trainer.balancers[0]
    balancer.kappa = torch.tensor([3.0, 0.5])
    passes = {c: torch.randn(4, 3, requires_grad=True) for c in [("a",), ("b",), ("a", "b")]}
    values = mmcore.shapley(lambda c: passes[c], ("a", "b"), empty="zero")
    recomposed = balancer.scales["a"](values.values[0]) + balancer.scales["b"](values.values[1])
    g = torch.randn(4, 3)
    (recomposed * g).sum().backward()
    assert torch.allclose(recomposed, passes[("a", "b")], atol=1e-6)
    assert torch.allclose(passes[("a", "b")].grad, (3.0 + 0.5) / 2 * g)
    assert torch.allclose(passes[("a",)].grad, (3.0 - 0.5) / 2 * g)
    assert torch.allclose(passes[("b",)].grad, (0.5 - 3.0) / 2 * g)


def test_equal_kappa_scales_every_gradient_by_kappa(monkeypatch):
    joint, _ = run_steps(toy_config(optimizer=SGD), 1)
    monkeypatch.setattr(mmcore_agm.balancer, "kappa", lambda scores, *args: torch.full_like(scores, 2.5))
    scaled, (state,) = run_steps(toy_config(optimizer=SGD, balancers=[{"kind": "agm", "clip": False}]), 1)
    assert state.metrics["balancer/agm/kappa/a"] == 2.5
    for (name, p), q in zip(joint.model.named_parameters(), scaled.model.parameters()):
        assert torch.allclose(q.grad, 2.5 * p.grad, rtol=1e-5, atol=1e-7), name


# -- scores, ratios, kappa, the reference ------------------------------------------------------------------
def test_scores_are_floored_cross_entropies():
    logits = torch.tensor([[[2.0, 0.0], [0.0, 40.0]], [[0.0, 0.0], [1.0, 1.0]]])  # [M=2, B=2, C=2]
    label = torch.tensor([0, 0])
    first = -(math.log(math.exp(2) / (math.exp(2) + 1)) + math.log(1e-8)) / 2  # p ~ e^-40 floored to 1e-8
    assert unimodal_scores(logits, label, "classification", None).tolist() == pytest.approx([first, math.log(2)])
    binary = unimodal_scores(torch.tensor([[[0.0]], [[3.0]]]), torch.tensor([1.0]), "binary", None)
    assert binary.tolist() == pytest.approx([math.log(2), math.log(1 + math.exp(-3))], rel=1e-6)


def test_ratios_and_kappa_by_hand():
    scores, reference = torch.tensor([1.0, 2.0]), torch.tensor([1.5, 1.5])
    assert ratios(scores).tolist() == pytest.approx([math.e, 1 / math.e])  # M=2: r_a = exp(s_v - s_a)
    k = kappa(scores, reference, alpha=1.5, cap=10.0)
    # a is ahead of its history (r_a > rbar_a = 1): damped; b behind it: boosted (not the toolkit's flip)
    assert k.tolist() == pytest.approx([math.exp(1.5 * (1 - math.e)), math.exp(1.5 * (1 - 1 / math.e))])
    assert k[0] < 1 < k[1]
    three = torch.tensor([1.0, 2.0, 3.0])
    assert ratios(three).tolist() == pytest.approx([math.exp(1.5 * (2 - s)) for s in (1, 2, 3)])


def test_cap_bounds_only_the_upside():
    scores, reference = torch.tensor([10.0, 0.0]), torch.tensor([0.0, 10.0])  # rbar - r = e^10 - e^-10
    assert kappa(scores, reference, alpha=1.0, cap=2.0)[0].item() == pytest.approx(math.exp(2.0))
    assert kappa(scores, reference, alpha=1.0, cap=2.0)[1].item() == pytest.approx(
        math.exp(math.exp(-10) - math.exp(10)), abs=1e-30)


def test_reference_is_the_cumulative_mean():
    reference = RunningReference(2)
    history = torch.tensor([[1.0, 4.0], [3.0, 2.0], [5.0, 0.0], [0.5, 0.5]])
    for t, scores in enumerate(history, start=1):
        reference.update(scores)
        assert torch.allclose(reference.mean, history[:t].mean(0))  # Sbar (t-1)/t + s/t
    assert reference.count == 4


def test_ema_reference_is_optional():
    reference = RunningReference(1, "ema", decay=0.9)
    for s in (1.0, 3.0, 2.0):
        reference.update(torch.tensor([s]))
    assert reference.mean.item() == pytest.approx((1.0 * 0.9 + 0.3) * 0.9 + 0.2)


def test_kappa_uses_the_reference_before_this_batch():
    trainer, state = agm_step(alpha=1.0)
    scores = torch.stack([state.metrics[f"balancer/agm/score/{m}"] for m in ("a", "b")])
    assert state.metrics["balancer/agm/reference/a"] == 0.0  # first step: Sbar = 0, so rbar = 1
    expected = torch.exp((1 - ratios(scores)).clamp_max(10.0))
    assert torch.allclose(trainer.balancers[0].kappa, expected)
    assert torch.allclose(trainer.balancers[0].reference.mean, scores)  # then Sbar = s (t = 1)
