"""Behaviour tests: what the `pase` fusion and the `pase_sgm` balancer change, and what they leave alone."""
from __future__ import annotations

import json

import pytest
import torch

from mmcore import PluginHost, Trainer, parse_config
from mmcore.testing import make_trainer, run_steps, toy_config

PASE = {"kind": "pase"}
SGM_ON = {"kind": "pase_sgm", "switch_epoch": 0}


def first_batch(trainer):
    return next(iter(trainer.evaluator.train_loader(0, None)))


def buffers(trainer):
    fusion = trainer.model.fusion
    return fusion.prototypes.clone(), fusion.initialised.clone()


# -- the fusion ----------------------------------------------------------------------------------
def test_training_forward_updates_prototypes_and_emits_both_losses():
    trainer = make_trainer(toy_config(fusion=PASE))
    batch, model = first_batch(trainer), trainer.model
    model.train()
    output = model(batch, labels=batch.label)
    assert set(output.fusion.aux_losses) == {"pase/pcl", "pase/cal"}
    assert model.fusion.initialised.all()  # 16 samples of 3 classes: every class seen
    assert model.fusion.prototypes.abs().sum() > 0


@pytest.mark.parametrize("how", ["probe", "eval", "no labels"])
def test_probes_evaluation_and_unlabelled_calls_have_no_side_effects(how):
    trainer, _ = run_steps(toy_config(fusion=PASE), 2)
    batch, model = first_batch(trainer), trainer.model
    before = buffers(trainer)
    model.train()
    if how == "probe":
        features = model.encode(batch)
        output = model.fuse(features, batch.present, labels=batch.label, probe=True)
    elif how == "eval":
        model.eval()
        output = model(batch, labels=batch.label).fusion
    else:
        output = model(batch).fusion
    assert output.aux_losses == {}
    after = buffers(trainer)
    assert torch.equal(before[0], after[0]) and torch.equal(before[1], after[1])


def test_labels_do_not_change_the_prediction():
    """The gate and the weights use label-free similarities: the same logits with or without labels."""
    trainer, _ = run_steps(toy_config(fusion=PASE), 2)
    batch, model = first_batch(trainer), trainer.model
    model.eval()
    without = model(batch).logits
    model.train()
    with_labels = model(batch, labels=batch.label).logits
    assert torch.allclose(without, with_labels)


def test_the_trainer_passes_labels_in_training_only():
    trainer, states = run_steps(toy_config(fusion=PASE), 1)
    assert {"pase/pcl", "pase/cal"} <= set(states[0].losses)
    metrics = trainer.evaluator.evaluate("val")  # evaluation must not touch the prototypes
    assert metrics["acc"] >= 0
    before = buffers(trainer)
    trainer.evaluator.evaluate("val", values=True)
    assert torch.equal(before[0], buffers(trainer)[0])


def test_absent_modality_is_left_out_of_the_fusion():
    trainer, _ = run_steps(toy_config(fusion=PASE), 2)
    batch, model = first_batch(trainer), trainer.model
    model.eval()
    features = model.encode(batch)
    only_a = model.coalition_presence(batch.present, ("a",))
    noisy = dict(features, b=torch.randn_like(features["b"]))  # whatever b holds, it is masked
    assert torch.allclose(model.fuse(features, only_a, probe=True).logits, model.fuse(noisy, only_a, probe=True).logits)


def test_weights_zero_for_a_sample_without_modalities():
    trainer, _ = run_steps(toy_config(fusion=PASE), 1)
    batch, model = first_batch(trainer), trainer.model
    model.eval()
    nothing = torch.zeros_like(batch.present)
    out = model.fuse(model.encode(batch), nothing, probe=True)
    assert torch.allclose(out.logits, model.fusion.head.bias.expand_as(out.logits))


@pytest.mark.parametrize("options", [{"pcl_weight": 0.0}, {"cal_weight": 0.0}])
def test_ablations_drop_their_loss(options):
    _, states = run_steps(toy_config(fusion=PASE | options), 1)
    dropped = "pase/pcl" if "pcl_weight" in options else "pase/cal"
    assert dropped not in states[0].losses


OPTIONS = [
    {"pcl_loss": "mse"},
    {"plan_gradient": "unrolled", "sinkhorn_iterations": 20},
    {"plan_gradient": "envelope", "normalise_cost": False, "structure_target": "identity"},
    {"gate_similarity": "soft", "entropy_weights": False, "cal_prototypes": "batch"},
]


@pytest.mark.parametrize("options", OPTIONS)
def test_options_train(options):
    _, states = run_steps(toy_config(fusion=PASE | options), 2)
    assert all(torch.isfinite(v).all() for v in states[-1].losses.values())


def test_regression_discretises_labels_for_the_prototypes():
    config = toy_config(data={"task": "regression"}, fusion=PASE | {"regression_classes": 7})
    trainer, states = run_steps(config, 2)
    assert trainer.model.fusion.prototypes.shape[1] == 7
    assert torch.isfinite(states[-1].losses["pase/pcl"])


def test_four_modalities_align_all_six_pairs_in_one_solve():
    trainer, states = run_steps(toy_config(("a", "b", "c", "d"), fusion=PASE, balancers=[SGM_ON]), 1)
    inter, variance = trainer.model.fusion.prototype_geometry()
    assert inter.shape == (6,) and variance.shape == (4,)
    assert len([k for k in states[0].metrics if "/phi/" in k]) == 4


# -- the balancer --------------------------------------------------------------------------------
def test_first_phase_leaves_gradients_alone():
    plain, (plain_state,) = run_steps(toy_config(fusion=PASE), 1)
    warm, (state,) = run_steps(toy_config(fusion=PASE, balancers=[{"kind": "pase_sgm"}]), 1)
    assert state.metrics["balancer/pase_sgm/phase"] == 1.0
    for p, q in zip(plain.model.parameters(), warm.model.parameters()):
        assert torch.equal(p.grad, q.grad)


def test_second_phase_scales_encoder_gradients_by_phi_and_nothing_else():
    plain, _ = run_steps(toy_config(fusion=PASE), 1)
    scaled, (state,) = run_steps(toy_config(fusion=PASE, balancers=[SGM_ON]), 1)
    (values,) = state.values.values()  # value_ema has no history yet: this step's values
    shares = values.values.clamp_min(1e-9) / values.values.clamp_min(1e-9).sum()
    expected_phi = torch.exp(shares.min() / shares - 1).clamp_min(0.1)
    for i, m in enumerate(("a", "b")):
        assert torch.allclose(state.metrics[f"balancer/pase_sgm/phi/{m}"], expected_phi[i])
        for p, q in zip(plain.model.encoder_params(m), scaled.model.encoder_params(m)):
            assert torch.allclose(q.grad, expected_phi[i] * p.grad)
    encoders = {id(p) for m in ("a", "b") for p in scaled.model.encoder_params(m)}
    for (name, p), q in zip(plain.model.named_parameters(), scaled.model.parameters()):
        if id(q) not in encoders:
            assert torch.equal(p.grad, q.grad), name


def test_default_valuator_is_true_class_probability_and_neg_loss_for_regression():
    classification = make_trainer(toy_config(fusion=PASE, balancers=[SGM_ON]))
    assert list(classification.valuators.all()) == ["default:shapley(value=true_class_prob)"]
    regression = make_trainer(toy_config(data={"task": "regression"}, fusion=PASE, balancers=[SGM_ON]))
    assert list(regression.valuators.all()) == ["default:shapley(empty=evaluate,value=neg_loss)"]


def test_proto_proxy_needs_no_valuator_and_needs_the_pase_fusion():
    trainer, (state,) = run_steps(toy_config(fusion=PASE, balancers=[SGM_ON | {"utility": "proto_proxy"}]), 1)
    assert not trainer.valuators.all() and state.metrics["balancer/pase_sgm/phase"] == 2.0
    host = PluginHost()
    config = parse_config(toy_config(balancers=[{"kind": "pase_sgm", "utility": "proto_proxy"}]), host.registry)
    problems = [p for found in host.hook.mmcore_validate_config(config=config) for p in found or []]
    assert problems == [
        "$.balancers[0].utility: 'proto_proxy' reads prototypes and needs fusion kind 'pase' (got 'concat')"]


def test_masked_perf_works_with_any_fusion():
    _, (state,) = run_steps(toy_config(balancers=[SGM_ON]), 1)
    assert state.metrics["balancer/pase_sgm/phase"] == 2.0


def test_plateau_switch_through_on_epoch_end_and_restored_on_resume():
    trainer = make_trainer(toy_config(fusion=PASE, balancers=[{"kind": "pase_sgm", "patience": 2, "min_epochs": 0}]))
    sgm = trainer.balancers[0]
    for epoch, acc in enumerate([0.5, 0.6, 0.6, 0.6]):
        sgm.on_epoch_end(epoch, {"acc": acc}, trainer.control)
    assert sgm.switch.second_phase_from == 4
    fresh = make_trainer(toy_config(fusion=PASE, balancers=[{"kind": "pase_sgm", "patience": 2, "min_epochs": 0}]))
    fresh.balancers[0].load_state_dict(sgm.state_dict())
    assert fresh.balancers[0].switch.in_second_phase(4) and not fresh.balancers[0].switch.in_second_phase(3)


def test_regression_monitors_mae_downwards():
    trainer = make_trainer(toy_config(data={"task": "regression"}, fusion=PASE, balancers=[{"kind": "pase_sgm"}]))
    sgm = trainer.balancers[0]
    assert sgm.monitor == "mae" and not sgm.switch.maximise
    with pytest.raises(Exception, match="monitors 'mae'"):
        sgm.on_epoch_end(0, {"acc": 1.0}, trainer.control)


def test_fit_logs_the_switch_and_resume_keeps_it(tmp_path):
    """A real fit: nothing counts as an improvement, so the plateau fires after epoch 2 (patience 2)
    and phase 2 starts at epoch 3; a resumed run continues in phase 2."""
    sgm = {"kind": "pase_sgm", "patience": 2, "min_epochs": 0, "min_delta": 10.0}
    config = toy_config(fusion=PASE, balancers=[sgm], run={"epochs": 3, "probe": False, "value_every_epoch": False})
    host = PluginHost()
    first = Trainer(parse_config(config, host.registry), host.registry, run_dir=tmp_path, hook=host.hook)
    first.fit()
    first.close()
    assert first.balancers[0].switch.second_phase_from == 3
    config["run"]["epochs"] = 5
    resumed = Trainer(parse_config(config, host.registry), host.registry, run_dir=tmp_path, hook=host.hook, resume=True)
    assert resumed.balancers[0].switch.second_phase_from == 3
    resumed.fit()
    resumed.close()
    logged = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    phases = {row["epoch"]: row["balancer/pase_sgm/phase"] for row in logged if row["split"] == "train"}
    assert phases == {0: 1.0, 1: 1.0, 2: 1.0, 3: 2.0, 4: 2.0}
