"""Behaviour: what each level and strategy changes in the epoch and the step, and what it leaves alone."""
from collections import Counter

import pytest
import torch

import mmcore

from mmcore.testing import make_trainer, run_steps, toy_config
from mmcore_modality_valuation.masking import mask_strong_inputs
from mmcore_modality_valuation.plans import MASK_TAG
from mmcore_modality_valuation.shapes import copy_counts
from mmcore_modality_valuation.value import valuate


def _config(modalities=("a", "b"), **options):
    table = {"kind": "modality_valuation", "warmup_epochs": 1, **options}
    return toy_config(modalities, balancers=[table])


def _planned(config, epochs=2):
    """A trainer whose balancer has planned `epochs` epochs (the last plan is current), and the
    Shapley table it planned the last one from."""
    trainer, _ = run_steps(config, 4 * (epochs - 1))  # 64 rows, batch 16: four steps per plain epoch
    balancer, control = trainer.balancers[0], trainer.control
    trainer.epoch = epochs - 1
    rows, phi = valuate(control)
    table = torch.zeros(control.num_samples(), phi.shape[1])
    table[rows] = phi
    balancer.on_epoch_start(epochs - 1, control)
    return trainer, balancer, table


def test_warm_up_epochs_are_plain_joint_training():
    joint, _ = run_steps(toy_config(), 8)
    warm, _ = run_steps(toy_config(balancers=[{"kind": "modality_valuation", "warmup_epochs": 2}]), 8)
    assert warm.plan is None
    for p, q in zip(joint.model.parameters(), warm.model.parameters()):
        assert torch.equal(p, q)


def test_sample_level_adds_copies_that_keep_only_the_low_contributing_modality():
    trainer, _, phi = _planned(_config())
    rows, counts = trainer.control.num_samples(), copy_counts(phi)
    assert trainer.plan[:rows] == [(i, None, {}) for i in range(rows)]  # every row once, whole
    copies = Counter((i, keep) for i, keep, _ in trainer.plan[rows:])
    expected = {(i, (m,)): int(counts[i, k]) for i in range(rows) for k, m in enumerate("ab") if counts[i, k]}
    assert copies == expected
    assert all((phi[i, "ab".index(m)] < 1).item() for (i, (m,)) in copies)


def test_copies_reach_the_step_with_only_their_modality_present():
    trainer, _ = run_steps(_config(), 8)
    batches = [b for b in trainer.evaluator.train_loader(trainer.epoch, trainer.plan)]
    present = torch.cat([b.present for b in batches])
    assert present.sum(1).eq(1).any() and present.sum(1).eq(2).any()  # copies and originals


def test_sample_level_drop_removes_the_strong_modality_in_place():
    trainer, balancer, phi = _planned(_config(strategy="drop"))
    assert len(trainer.plan) == trainer.control.num_samples()
    dropped = [(i, keep) for i, keep, _ in trainer.plan if keep is not None]
    assert dropped, "no row was altered"
    for i, keep in dropped:
        strong = "ab"[int(phi[i].argmax())]
        assert keep == tuple(m for m in "ab" if m != strong) and phi[i].max() > phi[i].min()
    assert sum(balancer.diagnostics[f"altered/{m}"] for m in "ab") == len(dropped)


def test_mask_zeroes_part_of_the_tagged_rows_strong_modality_only():
    trainer, balancer, _ = _planned(_config(strategy="mask", mask_ratio=0.5))
    loader = trainer.evaluator.train_loader(trainer.epoch, trainer.plan)
    batch = next(iter(loader))
    state = mmcore.StepState(batch=batch, model=trainer.model, control=trainer.control, task_loss=trainer.task_loss,
                             generator=trainer.generators.get)
    mask_strong_inputs(state, balancer.masked, 0.5)
    tags = batch.extras[MASK_TAG]
    for k, m in enumerate(("a", "b")):
        changed = state.batch.inputs[m] != batch.inputs[m]
        assert not changed[tags != k].any()  # untagged rows and other modalities stay as they were
        if (tags == k).any():
            zeroed = (state.batch.inputs[m][tags == k] == 0).double().mean()
            assert 0.2 < zeroed < 0.8
    masked = state.batch
    state.batch, state.pass_index = batch, 1  # a step owner's second pass sees the same masks
    mask_strong_inputs(state, balancer.masked, 0.5)
    assert all(torch.equal(masked.inputs[m], state.batch.inputs[m]) for m in "ab")


def test_modality_level_adds_int_p_n_rows_that_train_the_weak_modality():
    trainer, balancer, _ = _planned(_config(level="modality", part_ratio=0.5))
    rows, d = trainer.control.num_samples(), balancer.diagnostics
    extra = trainer.plan[rows:]
    assert len(extra) == int(d["p"] * rows) > 0 and abs(d["p"] - 2 / 3 * d["d"]) < 1e-9
    weak = "a" if d["weak/a"] else "b"
    assert {keep for _, keep, _ in extra} == {(weak,)}


@pytest.mark.parametrize("strategy", ["drop", "mask"])
def test_modality_level_alternatives_alter_distinct_rows_of_the_strong_modality(strategy):
    trainer, balancer, _ = _planned(_config(level="modality", part_ratio=0.5, strategy=strategy))
    d = balancer.diagnostics
    strong = "b" if d["weak/a"] else "a"
    if strategy == "drop":
        altered = [keep for _, keep, _ in trainer.plan if keep is not None]
        assert set(altered) == {tuple(m for m in "ab" if m != strong)}
    else:
        tags = torch.stack([extras[MASK_TAG] for _, _, extras in trainer.plan])
        altered = tags[tags >= 0].tolist()
        assert set(altered) == {"ab".index(strong)} and balancer.masked == [strong]
    assert len(trainer.plan) == trainer.control.num_samples() and len(altered) == int(d["p"] * len(trainer.plan))


def test_three_modalities_value_and_plan_every_modality():
    trainer, balancer, phi = _planned(_config(("a", "b", "c")))
    assert phi.shape[1] == 3
    assert torch.allclose(phi.sum(1), 3 * phi.sum(1).div(3).round(), atol=1e-5)  # efficiency: sum = |M| * 1[correct]
    keeps = {keep for _, keep, _ in trainer.plan if keep is not None}
    assert keeps <= {("a",), ("b",), ("c",)}
    assert balancer.diagnostics["epoch_rows"] == len(trainer.plan) / trainer.control.num_samples()


def test_diagnostics_reach_the_step_metrics():
    _, states = run_steps(_config(level="modality"), 6)
    names = set(states[-1].metrics)
    assert {"balancer/modality_valuation/p", "balancer/modality_valuation/phi/a", "balancer/modality_valuation/evaluated",
            "balancer/modality_valuation/epoch_rows"} <= names
    assert not any(k.startswith("balancer/modality_valuation") for k in states[0].metrics)  # warm-up


def test_the_value_function_is_registered():
    trainer = make_trainer(toy_config(valuators={"v": {"kind": "shapley", "value": "coalition_size_accuracy", "per": "sample"}}))
    _, (state,) = run_steps(trainer, 1)
    values = state.values["v"].values
    assert values.shape == (16, 2) and set(values.sum(1).tolist()) <= {0.0, 2.0}
