"""Reference tests: PaSE's formulas on hand-computed inputs."""
from __future__ import annotations

import math

import pytest
import torch

from mmcore.testing import make_trainer, toy_config
from mmcore_pase import alignment, prototypes
from mmcore_pase.classes import class_ids
from mmcore_pase.phase import PhaseSwitch
from mmcore_pase.sgm import SGMConfig, modulation, proxy_values
from mmcore_pase.sinkhorn import SinkhornOptions, sinkhorn


# -- SGM ---------------------------------------------------------------------------------------------
def test_phi_matches_the_spec_example():
    shares, phi = modulation(torch.tensor([0.6, 0.3, 0.1]), floor=0.1)
    assert torch.allclose(shares, torch.tensor([0.6, 0.3, 0.1]))
    expected = [math.exp(0.1 / 0.6 - 1), math.exp(0.1 / 0.3 - 1), 1.0]  # ≈ (0.43, 0.51, 1.0)
    assert torch.allclose(phi, torch.tensor(expected))
    assert [round(x, 2) for x in phi.tolist()] == [0.43, 0.51, 1.0]


def test_phi_normalises_values_and_clamps_non_positive_ones():
    shares, phi = modulation(torch.tensor([3.0, -1.0]), floor=0.5)
    assert torch.allclose(shares, torch.tensor([1.0, 0.0]), atol=1e-8)
    assert torch.allclose(phi, torch.tensor([0.5, 1.0]))  # exp(~0 - 1) = 0.37, floored at 0.5


def test_proto_proxy_shapley_of_two_modalities_by_hand():
    class Geometry:
        def prototype_geometry(self):
            return torch.tensor([0.5]), torch.tensor([1.0, 3.0])  # L_inter(a, b); Var(c^a), Var(c^b)

    rho = 0.6
    u_a, u_b = rho + (1 - rho) / 2, rho + (1 - rho) / 4
    u_ab = rho / 1.5 + (1 - rho) / 5
    expected = torch.tensor([0.5 * (u_ab + u_a - u_b), 0.5 * (u_ab + u_b - u_a)])
    values = proxy_values(Geometry(), ("a", "b"), SGMConfig(utility="proto_proxy"), torch.Generator())
    assert torch.allclose(values, expected)


# -- PCL ---------------------------------------------------------------------------------------------
def test_ema_update_initialises_blends_and_skips_absent_classes():
    protos = torch.tensor([[[1.0, 0.0], [0.0, 0.0], [5.0, 5.0]]])  # M = 1, K = 3
    initialised = torch.tensor([[True, False, True]])
    features = torch.tensor([[[3.0, 2.0], [1.0, 2.0], [4.0, 0.0]]])  # B = 3
    classes = torch.tensor([0, 0, 1])
    means, counts = prototypes.class_statistics(features, torch.ones(3, 1, dtype=torch.bool), classes, 3)
    new, now = prototypes.ema_prototypes(protos, initialised, means, counts, momentum=0.98)
    assert torch.allclose(new[0, 0], 0.98 * torch.tensor([1.0, 0.0]) + 0.02 * torch.tensor([2.0, 2.0]))
    assert torch.equal(new[0, 1], torch.tensor([4.0, 0.0]))  # first sighting: the batch mean
    assert torch.equal(new[0, 2], torch.tensor([5.0, 5.0]))  # absent from the batch: unchanged
    assert now.all()


def test_absent_modalities_do_not_move_their_prototypes():
    features = torch.tensor([[[2.0], [4.0]], [[6.0], [8.0]]])  # M = 2, B = 2, D = 1
    present = torch.tensor([[True, False], [True, True]])  # sample 0 lacks modality b
    means, counts = prototypes.class_statistics(features, present, torch.tensor([0, 0]), 1)
    assert torch.equal(counts, torch.tensor([[2.0], [1.0]]))
    assert torch.equal(means[:, 0, 0], torch.tensor([3.0, 8.0]))


def test_infonce_by_hand_with_an_uninitialised_class_masked():
    cosines = torch.tensor([[[0.5, -0.5, 0.9], [0.2, 0.1, 0.0]]])  # M = 1, B = 2, K = 3
    initialised = torch.tensor([[True, True, False]])
    logits = prototypes.prototype_logits(cosines, initialised, temperature=0.5)
    loss = prototypes.infonce_loss(logits, torch.tensor([0, 2]), torch.ones(2, 1, dtype=torch.bool), initialised)
    # sample 1's class has no prototype: only sample 0 counts, and class 2 is not in its denominator
    expected = -math.log(math.exp(1.0) / (math.exp(1.0) + math.exp(-1.0)))
    assert loss.shape == (1,) and loss.item() == pytest.approx(expected, rel=1e-6)


def test_mse_variant_is_feature_to_prototype_mean_squared_error():
    features = torch.tensor([[[1.0, 3.0]]])
    protos = torch.tensor([[[0.0, 1.0]]])
    loss = prototypes.mse_loss(features, protos, torch.tensor([0]), torch.ones(1, 1, dtype=torch.bool),
                               torch.ones(1, 1, dtype=torch.bool))
    assert loss.item() == pytest.approx((1 + 4) / 2)


def test_regression_labels_are_discretised():
    scores = torch.tensor([-2.6, -0.2, 0.0, 0.4, 3.9])
    assert class_ids(scores, "regression", 2).tolist() == [0, 0, 1, 1, 1]
    assert class_ids(scores, "regression", 7).tolist() == [0, 3, 3, 3, 6]
    assert class_ids(torch.tensor([0.0, 1.0]), "binary", 2).tolist() == [0, 1]


# -- CAL ---------------------------------------------------------------------------------------------
def test_sinkhorn_plans_have_the_prescribed_marginals():
    generator = torch.Generator().manual_seed(0)
    costs = torch.rand(4, 5, 5, generator=generator)  # unit-scale costs, as normalised prototypes give
    valid = torch.ones(4, 5, dtype=torch.bool)
    valid[1, 3] = False  # a class without a prototype carries no mass
    log_a = alignment.log_marginals(valid)
    log_b = alignment.log_marginals(torch.ones(4, 5, dtype=torch.bool))
    plans = sinkhorn(costs, log_a, log_b, SinkhornOptions(epsilon=0.2, iterations=100))
    assert torch.allclose(plans.sum(2), log_a.exp(), atol=1e-6)
    assert torch.allclose(plans.sum(1), log_b.exp(), atol=1e-6)
    assert torch.allclose(plans.sum((1, 2)), torch.ones(4))
    assert plans[1, 3].abs().max() < 1e-12


def test_scaling_and_log_domains_give_the_same_plans():
    costs = torch.rand(3, 4, 4, generator=torch.Generator().manual_seed(2)) * 4
    valid = torch.tensor([[True, True, False, True], [True] * 4, [True] * 4])
    log_a, log_b = alignment.log_marginals(valid), alignment.log_marginals(valid.flip(0))
    in_logs = sinkhorn(costs, log_a, log_b, SinkhornOptions(epsilon=0.05, iterations=300))
    scaled = sinkhorn(costs, log_a, log_b, SinkhornOptions(epsilon=0.05, iterations=300, max_cost=4.0))
    assert SinkhornOptions(epsilon=0.05, max_cost=4.0).scaling_is_safe and not SinkhornOptions().scaling_is_safe
    assert torch.allclose(in_logs, scaled, atol=1e-6)


def test_sinkhorn_matches_identical_prototype_sets_class_to_class():
    protos = torch.randn(1, 4, 8, generator=torch.Generator().manual_seed(1)).expand(2, 4, 8)
    terms = alignment.alignment_terms(protos, torch.ones(2, 4, dtype=torch.bool), SinkhornOptions())
    assert terms["match"].item() < 1e-3 and terms["structure"].item() < 1e-4 and terms["consistency"].item() < 1e-6


def test_implicit_gradient_equals_the_unrolled_one():
    generator = torch.Generator().manual_seed(0)
    base = torch.randn(5, 8, generator=generator)
    start = torch.stack([base + 1.5 * torch.randn(5, 8, generator=generator) for _ in range(3)])
    valid = torch.ones(3, 5, dtype=torch.bool)
    valid[2, 1] = False
    grads = []
    for rule in ("implicit", "unrolled"):
        protos = start.clone().requires_grad_(True)
        terms = alignment.alignment_terms(protos, valid, SinkhornOptions(0.2, 200, rule))  # converged at this ε
        alignment.inter_losses(terms, alpha=0.1, beta=0.05).sum().backward()
        grads.append(protos.grad)
    assert torch.allclose(grads[0], grads[1], atol=1e-4 * grads[1].abs().max().item())


def test_cal_gradient_reaches_the_encoders():
    config = toy_config(("a", "b", "c"), fusion={"kind": "pase", "pcl_weight": 0.0})
    trainer = make_trainer(config)
    batch = next(iter(trainer.evaluator.train_loader(0, None)))
    trainer.model.train()
    output = trainer.model(batch, labels=batch.label)
    output.fusion.aux_losses["pase/cal"].backward()  # CAL alone, no task loss
    for m in ("a", "b", "c"):
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in trainer.model.encoder_params(m)), m


# -- dual phase --------------------------------------------------------------------------------------
def test_phase_switch_fires_on_a_plateau_and_not_before():
    switch = PhaseSwitch(patience=2, min_delta=0.01, min_epochs=5, maximise=True)
    history = [0.50, 0.60, 0.605, 0.607, 0.70, 0.705, 0.708]  # epochs 2-3 stall, but before min_epochs
    fired = [switch.observe(epoch, value) for epoch, value in enumerate(history)]
    assert fired == [False, False, False, False, False, False, True]
    assert switch.second_phase_from == 7 and switch.best == 0.70
    assert not switch.in_second_phase(6) and switch.in_second_phase(7)
    assert not switch.observe(7, 0.1)  # fires once


def test_phase_switch_minimising_nan_never_improves_and_fixed_epoch():
    switch = PhaseSwitch(patience=1, min_delta=0.0, min_epochs=0, maximise=False)
    assert not switch.observe(0, 1.0) and switch.observe(1, float("nan"))
    fixed = PhaseSwitch(patience=5, min_delta=0.0, min_epochs=0, maximise=True, switch_epoch=3)
    assert fixed.in_second_phase(3) and not fixed.in_second_phase(2) and not fixed.observe(0, 0.1)
