"""Reference tests: the SAM and M-SAM formulas against hand computations and explicit autograd."""
import copy

import pytest
import torch

from mmcore.testing import make_trainer, run_steps
from mmcore_msam.dominance import dominant_modality, normalised_shares
from mmcore import ascent_step
from msam_recording import Snapshots, global_norm, sam_toy

BATCHNORM_ENCODERS = {m: {"kind": "mlp", "hidden": [16], "batchnorm": True} for m in ("a", "b")}
MOMENTUM_SGD = {"kind": "sgd", "lr": 0.1, "momentum": 0.9, "weight_decay": 1e-3}


@pytest.mark.parametrize("encoders", [None, BATCHNORM_ENCODERS], ids=["mlp", "batchnorm"])
@pytest.mark.parametrize("kind", ["sam", "msam"])
def test_rho_zero_ends_with_exactly_the_parameters_of_joint_training(kind, encoders):
    tables = {"optimizer": MOMENTUM_SGD, **({"encoders": encoders} if encoders else {})}
    joint, _ = run_steps(sam_toy(**tables), 4)
    owner, _ = run_steps(sam_toy({"kind": kind, "rho": 0.0}, **tables), 4)
    for (name, a), b in zip(joint.model.state_dict().items(), owner.model.state_dict().values()):
        assert torch.equal(a, b), name  # weights and BatchNorm statistics, bit for bit


def test_the_second_pass_sees_perturbed_weights_and_the_step_the_restored_ones():
    snapshots = Snapshots()
    run_steps(make_trainer(sam_toy({"kind": "sam", "rho": 0.2}), modules=[snapshots]), 1)
    w0, g0 = snapshots.get("backward", 0)
    w1, g1 = snapshots.get("backward", 1)
    w_step, g_step = snapshots.get("step")
    norm = global_norm([g for g in g0 if g is not None])  # ONE norm over all parameters
    for before, grad, perturbed in zip(w0, g0, w1):
        assert torch.allclose(perturbed, before + 0.2 * grad / norm, atol=1e-7)
    assert torch.isclose(global_norm([b - a for a, b in zip(w0, w1)]), torch.tensor(0.2), atol=1e-6)
    assert all(torch.equal(a, b) for a, b in zip(w0, w_step))  # restored exactly, not w + e - e
    assert all(torch.equal(a, b) for a, b in zip(g1, g_step))  # the update gradient is pass 1's


def test_ascent_step_by_hand_for_sam_and_asam():
    w = [torch.tensor([1.0, -2.0]), torch.tensor([3.0])]
    for p, g in zip(w, [torch.tensor([0.5, 1.0]), torch.tensor([-1.0])]):
        p.grad = g
    sam = ascent_step(w, rho=0.3)
    norm = torch.tensor(0.25 + 1.0 + 1.0).sqrt()  # |g| over both tensors
    assert torch.allclose(sam.offsets[0], 0.3 * torch.tensor([0.5, 1.0]) / norm)
    assert torch.allclose(sam.offsets[1], 0.3 * torch.tensor([-1.0]) / norm)
    asam = ascent_step(w, rho=0.3, adaptive=True)
    norm = torch.tensor(0.25 + 4.0 + 9.0).sqrt()  # |T g| with T g = |w| g = (0.5, -2; -3)
    assert torch.allclose(asam.offsets[0], 0.3 * torch.tensor([0.5, 4.0]) / norm)  # rho * w^2 g / |T g|
    assert torch.allclose(asam.offsets[1], 0.3 * torch.tensor([-9.0]) / norm)
    assert torch.isclose(asam.grad_norm, norm)


def test_batchnorm_statistics_move_once_per_step():
    tables = {"encoders": BATCHNORM_ENCODERS}
    joint, _ = run_steps(sam_toy(**tables), 1)
    owner, _ = run_steps(sam_toy({"kind": "sam", "rho": 0.5}, **tables), 1)
    buffers = dict(owner.model.named_buffers())
    for name, value in joint.model.named_buffers():  # pass 0 is the same forward in both runs
        assert torch.equal(value, buffers[name]), name


def test_shares_and_dominant_modality_by_hand():
    nu, fallback = normalised_shares(torch.tensor([0.6, 0.2]))
    assert torch.allclose(nu, torch.tensor([0.75, 0.25])) and fallback == 0
    nu, _ = normalised_shares(torch.tensor([-0.1, 0.3]))  # a harmful modality counts as 0
    assert torch.equal(nu, torch.tensor([0.0, 1.0]))
    nu, fallback = normalised_shares(torch.tensor([-0.2, 0.0]))  # nobody contributes: uniform
    assert torch.equal(nu, torch.tensor([0.5, 0.5])) and fallback == 1
    nu, fallback = normalised_shares(torch.tensor([[0.5, 0.5], [1.0, -0.5], [-0.5, -0.5]]))
    assert torch.equal(nu, torch.tensor([[0.5, 0.5], [1.0, 0.0], [0.5, 0.5]]))
    assert torch.equal(fallback, torch.tensor([0.0, 0.0, 1.0]))
    tied = torch.tensor([0.4, 0.4, 0.2])
    assert dominant_modality(tied, torch.tensor(1)) == 1  # a tie keeps the previous dominant
    assert dominant_modality(tied, torch.tensor(2)) == 0  # ... only when it is among the tied
    assert dominant_modality(torch.tensor([0.3, 0.7]), torch.tensor(0)) == 1


def test_nu_comes_from_the_accuracy_shapley_values_of_the_batch():
    snapshots = Snapshots()
    run_steps(make_trainer(sam_toy({"kind": "msam"}), modules=[snapshots]), 1)
    state = snapshots.states[0]
    (values,) = state.values.values()
    v = {k: float(t) for k, t in values.coalitions.items()}  # batch accuracy of each coalition
    phi_a = 0.5 * (v[("a", "b")] + v[("a",)] - v[("b",)])  # appendix Eq. 16, v(empty) = 0
    phi_b = 0.5 * (v[("a", "b")] + v[("b",)] - v[("a",)])
    phi = torch.tensor([phi_a, phi_b]).clamp_min(0)
    assert torch.allclose(torch.stack([state.metrics["balancer/msam/nu/a"], state.metrics["balancer/msam/nu/b"]]),
                          phi / phi.sum())
    assert int(state.metrics["balancer/msam/dominant"]) == int(phi.argmax())


def test_scalar_update_mixes_the_two_passes_by_nu():
    snapshots = Snapshots()
    run_steps(make_trainer(sam_toy({"kind": "msam", "rho": 0.1}), modules=[snapshots]), 1)
    state = snapshots.states[0]
    nu = state.metrics[f"balancer/msam/nu/{'ab'[int(state.metrics['balancer/msam/dominant'])]}"]
    (_, g0), (_, g1), (_, g) = snapshots.get("backward", 0), snapshots.get("backward", 1), snapshots.get("step")
    for a, b, mixed in zip(g0, g1, g):
        assert torch.allclose(mixed, nu * b + (1 - nu) * a, atol=1e-7)


def _explicit_update(model, state, loss_d, loss_s, rho):
    """G = ∇L_d(θ + ε) + ∇L_s(θ) with ε = ρ∇L_d(θ)/|∇L_d(θ)|: three separate backward passes."""
    params = list(model.parameters())
    grad_d = torch.autograd.grad(loss_d(model), params)
    offsets = [rho * g / global_norm(list(grad_d)) for g in grad_d]
    saved = [p.detach().clone() for p in params]
    with torch.no_grad():
        for p, e in zip(params, offsets):
            p.add_(e)
    grad_d_adversarial = torch.autograd.grad(loss_d(model), params)
    with torch.no_grad():
        for p, s in zip(params, saved):
            p.copy_(s)
    grad_s = torch.autograd.grad(loss_s(model), params)
    return [a + b for a, b in zip(grad_d_adversarial, grad_s)]


def _run_one_step(table):
    snapshots = Snapshots()
    trainer = make_trainer(sam_toy(table), modules=[snapshots])
    start = copy.deepcopy(trainer.model)
    run_steps(trainer, 1)
    state = snapshots.states[0]
    dominant = int(state.metrics["balancer/msam/dominant"])
    return start, state, dominant, snapshots.get("step")[1]


def _task(model, state):
    return state.task_loss(model(state.batch).logits, state.batch.label, reduction="none")


def test_scalar_update_equals_the_explicit_computation_with_a_third_backward():
    start, state, d, update = _run_one_step({"kind": "msam", "rho": 0.1})
    nu = state.metrics[f"balancer/msam/nu/{'ab'[d]}"]
    expected = _explicit_update(start, state, lambda m: nu * _task(m, state).mean(),
                                lambda m: (1 - nu) * _task(m, state).mean(), rho=0.1)
    for e, g in zip(expected, update):
        assert torch.allclose(e, g, atol=1e-6)


def test_per_sample_update_equals_the_explicit_computation():
    start, state, d, update = _run_one_step({"kind": "msam", "rho": 0.1, "decomposition": "per_sample"})
    (values,) = state.values.values()
    positive = values.values.clamp_min(0)  # [B, M] per-sample Shapley values
    total = positive.sum(1, keepdim=True)
    shares = torch.where(total > 0, positive / total.clamp_min(1e-30), torch.full_like(positive, 0.5))
    w = shares[:, d]
    expected = _explicit_update(start, state, lambda m: (w * _task(m, state)).mean(),
                                lambda m: ((1 - w) * _task(m, state)).mean(), rho=0.1)
    for e, g in zip(expected, update):
        assert torch.allclose(e, g, atol=1e-6)


def test_logit_attribution_update_equals_the_explicit_computation():
    start, state, d, update = _run_one_step({"kind": "msam", "rho": 0.1, "decomposition": "logit_attribution"})
    names, other = ("a", "b")[d], ("a", "b")[1 - d]

    def dominant_loss(model):
        out = model(state.batch)
        f = {s: model.fuse(out.features, model.coalition_presence(out.present, s)).logits
             for s in [("a", "b"), (names,), (other,)]}
        z_d = 0.5 * (f[("a", "b")] + f[(names,)] - f[(other,)])  # two-player Shapley attribution
        return state.task_loss(z_d, state.batch.label)

    expected = _explicit_update(start, state, dominant_loss,
                                lambda m: _task(m, state).mean() - dominant_loss(m), rho=0.1)
    for e, g in zip(expected, update):
        assert torch.allclose(e, g, atol=1e-6)
