"""Reference tests: the method's formulas on hand-computed inputs (spec §4.2, supplement Eq. 7-8)."""
import math

import pytest
import torch

import mmcore
from mmcore.testing import make_trainer, run_steps, toy_config
from mmcore_modality_valuation.shapes import copy_counts, modality_gap, resample_probability, shaped
from mmcore_modality_valuation.value import coalition_size_accuracy, valuate

RIGHT, WRONG = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]])  # label 0

# (audio-visual correct, audio alone correct, visual alone correct) -> (phi_a, phi_v), by hand from
# phi_a = 1/2 [v(a) - v()] + 1/2 [v(av) - v(v)] with v(S) = |S| * 1[correct]
PHI_TABLE = [
    ((1, 1, 1), (1.0, 1.0)),
    ((1, 1, 0), (1.5, 0.5)),
    ((1, 0, 1), (0.5, 1.5)),
    ((1, 0, 0), (1.0, 1.0)),
    ((0, 1, 1), (0.0, 0.0)),
    ((0, 1, 0), (0.5, -0.5)),
    ((0, 0, 1), (-0.5, 0.5)),
    ((0, 0, 0), (0.0, 0.0)),
]


def _phi(pattern):
    full, a, v = pattern
    logits = {("a", "v"): full, ("a",): a, ("v",): v}

    def value_of(coalition):
        chosen = RIGHT if logits[coalition] else WRONG
        return coalition_size_accuracy(chosen, torch.tensor([0]), coalition=coalition, task_loss=None)

    return mmcore.shapley(value_of, ("a", "v")).values[0]  # per-sample values [1, M]


@pytest.mark.parametrize("pattern, expected", PHI_TABLE)
def test_phi_over_the_eight_correctness_patterns(pattern, expected):
    assert torch.allclose(_phi(pattern), torch.tensor(expected))


def test_phi_sums_to_the_full_coalitions_value():
    for (full, _, _), _ in PHI_TABLE:
        assert math.isclose(float(sum(_phi((full, 1, 0)))), 2.0 * full)


def test_copy_counts_match_the_official_thresholds():
    phi = torch.tensor([[1.5, -0.5], [1.0, 1.0], [0.5, 1.5], [0.0, 0.0], [-0.5, 0.5]])
    assert copy_counts(phi).tolist() == [[0, 3], [0, 0], [1, 0], [2, 2], [3, 1]]
    # float error from the Shapley weights must not change a count
    assert copy_counts(phi + 1e-6).equal(copy_counts(phi)) and copy_counts(phi - 1e-6).equal(copy_counts(phi))


def test_other_copy_shapes_by_hand():
    phi = torch.tensor([[0.0, 0.5]])  # x = 1 - phi = 1, 0.5
    assert copy_counts(phi, "tanh", 3.0).tolist() == [[round(3 * math.tanh(1.0)), round(3 * math.tanh(0.5))]]  # 2, 1
    assert copy_counts(phi, "power", 2.0).tolist() == [[2, round(2 * 0.5**1.5)]]  # 2, 1
    assert torch.allclose(shaped("power", torch.tensor([-1.0, 4.0])), torch.tensor([0.0, 8.0]))


def test_stochastic_rounding_keeps_the_expected_count():
    phi = torch.full((20_000, 1), 0.75)  # f_s = 2 * 0.25 = 0.5 copies on average
    counts = copy_counts(phi, rounding="stochastic", generator=torch.Generator().manual_seed(0))
    assert set(counts.unique().tolist()) == {0, 1}
    assert abs(counts.double().mean().item() - 0.5) < 0.02


def test_modality_gap_is_the_unimodal_accuracy_difference_on_the_subset():
    g = torch.Generator().manual_seed(1)
    correct = torch.rand(50, 3, generator=g) < torch.tensor([0.8, 0.7, 0.3])  # (av, a, v) per row
    phi = torch.stack([_phi(tuple(int(c) for c in row)) for row in correct])
    gap = modality_gap(phi)
    acc_a, acc_v = correct[:, 1].double().mean(), correct[:, 2].double().mean()
    assert math.isclose(gap.d, abs(float(acc_v - acc_a)), abs_tol=1e-6)
    assert (gap.weak, gap.strong) == (1, 0)  # visual alone is worse: it is re-trained


def test_modality_gap_for_three_modalities_averages_over_the_others():
    phi = torch.tensor([[1.2, 0.9, 0.3], [1.4, 0.7, 0.5]])  # means 1.3, 0.8, 0.4
    gap = modality_gap(phi)
    assert (gap.weak, gap.strong) == (2, 0) and math.isclose(gap.d, ((1.3 - 0.4) + (0.8 - 0.4)) / 2, rel_tol=1e-6)


def test_resample_probability_by_hand():
    assert math.isclose(resample_probability(0.6), 0.4)  # (2/3) * 0.6
    assert math.isclose(resample_probability(0.6, "tanh", 2.0), math.tanh(0.8))
    assert math.isclose(resample_probability(0.6, "power", 1.0), 0.4**1.5)
    assert resample_probability(1.0, "linear", 3.0) == 1.0  # f_m is kept in [0, 1]


def test_valuation_of_a_trained_model_matches_the_closed_form():
    trainer, _ = run_steps(toy_config(), 6)
    rows, phi = valuate(trainer.control)
    assert sorted(rows.tolist()) == list(range(trainer.control.num_samples()))
    model, split = trainer.model, trainer.evaluator.split("train")
    batch = mmcore.collate([split[i] for i in rows.tolist()])
    with torch.no_grad(), mmcore.eval_mode(model):
        features = model.encode(batch)
        correct = {c: model.fuse(features, model.coalition_presence(batch.present, c)).logits.argmax(-1) == batch.label
                   for c in [("a", "b"), ("a",), ("b",)]}
    full, a, b = (correct[c].double() for c in [("a", "b"), ("a",), ("b",)])
    assert torch.allclose(phi.double(), torch.stack([(a - b) / 2 + full, (b - a) / 2 + full], 1))


@pytest.mark.parametrize("level, part_ratio, expected", [("modality", 0.2, 12), ("modality", 0.5, 32), ("sample", 0.2, 64)])
def test_rows_valuated_per_epoch(level, part_ratio, expected):
    config = toy_config(balancers=[{"kind": "modality_valuation", "level": level, "part_ratio": part_ratio,
                                    "warmup_epochs": 1}])
    trainer = make_trainer(config)
    evaluated = []
    evaluate = trainer.control.evaluate

    def counting(split, fn, subset=None, batch_size=None):
        results = evaluate(split, fn, subset=subset, batch_size=batch_size)
        evaluated.append(sum(int(index.numel()) for index, _ in results))
        return results

    trainer.control.evaluate = counting
    balancer = trainer.balancers[0]
    for epoch in range(3):  # a warm-up epoch, then two valuated ones
        balancer.on_epoch_start(epoch, trainer.control)
    assert evaluated == [expected, expected]  # int(part_ratio * N) at the modality level, N at the sample level
    assert balancer.diagnostics["evaluated"] == expected
