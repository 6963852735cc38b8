"""Metrics against hand-computed references."""
from __future__ import annotations

import math
import statistics

import pytest
import torch
import torch.nn.functional as F

from mmcore.metrics import MetricAccumulator, primary_metric


def one_hot_logits(predicted, classes):
    return F.one_hot(torch.tensor(predicted), classes).float() * 3.0


def test_classification_macro_f1_leaves_out_a_class_absent_everywhere():
    # truth [0,0,1,1,1,2], prediction [0,1,1,1,0,2]; class 3 never occurs.
    # class 0: TP1 FP1 FN1 -> 1/2; class 1: TP2 FP1 FN1 -> 2/3; class 2: TP1 -> 1.
    accumulator = MetricAccumulator("classification", 4)
    accumulator.update(one_hot_logits([0, 1, 1], 4), torch.tensor([0, 0, 1]), torch.tensor(1.5))
    accumulator.update(one_hot_logits([1, 0, 2], 4), torch.tensor([1, 1, 2]), torch.tensor(3.0))
    metrics = accumulator.compute()
    assert metrics["acc"] == pytest.approx(4 / 6, abs=1e-12)
    assert metrics["macro_f1"] == pytest.approx((1 / 2 + 2 / 3 + 1) / 3, abs=1e-12)
    assert metrics["loss"] == pytest.approx(4.5 / 6, abs=1e-12)
    assert all(type(v) is float for v in metrics.values())


def test_classification_counts_a_predicted_but_absent_class_as_zero_f1():
    # truth [0,0,1], prediction [0,2,1]: class 0 -> 2/3, class 1 -> 1, class 2 (never true) -> 0.
    accumulator = MetricAccumulator("classification", 3)
    accumulator.update(one_hot_logits([0, 2, 1], 3), torch.tensor([0, 0, 1]))
    metrics = accumulator.compute()
    assert metrics["macro_f1"] == pytest.approx((2 / 3 + 1 + 0) / 3, abs=1e-12)
    assert metrics["acc"] == pytest.approx(2 / 3, abs=1e-12)


def test_default_classification_loss_is_mean_cross_entropy():
    logits = torch.tensor([[2.0, -1.0, 0.5], [0.1, 0.2, 0.3], [-1.0, 3.0, 0.0]])
    labels = torch.tensor([0, 2, 2])
    accumulator = MetricAccumulator("classification", 3)
    accumulator.update(logits[:2], labels[:2])
    accumulator.update(logits[2:], labels[2:])
    expected = F.cross_entropy(logits.double(), labels).item()
    assert accumulator.compute()["loss"] == pytest.approx(expected, rel=1e-6)


def test_binary_single_logit():
    # prediction = logit > 0 -> [1,0,0,1] against truth [1,0,1,0].
    # class 0: TP1 FP1 FN1 -> 1/2; class 1: TP1 FP1 FN1 -> 1/2.
    logits = torch.tensor([[2.0], [-1.0], [0.0], [0.5]])
    labels = torch.tensor([1.0, 0.0, 1.0, 0.0])
    accumulator = MetricAccumulator("binary", 1)
    accumulator.update(logits, labels)
    metrics = accumulator.compute()
    assert metrics["acc"] == pytest.approx(0.5, abs=1e-12)
    assert metrics["macro_f1"] == pytest.approx(0.5, abs=1e-12)
    bce = F.binary_cross_entropy_with_logits(logits.view(-1).double(), labels.double()).item()
    assert metrics["loss"] == pytest.approx(bce, rel=1e-6)


TRUTH = [-2.4, -0.6, 0.0, 0.0, 1.2, 2.6]
PREDICTION = [-1.6, 0.0, -0.3, 0.2, 0.9, 2.2]


def test_regression_mmsa_metrics_by_hand():
    accumulator = MetricAccumulator("regression", 1)
    accumulator.update(torch.tensor(PREDICTION[:4]).view(-1, 1), torch.tensor(TRUTH[:4]))
    accumulator.update(torch.tensor(PREDICTION[4:]).view(-1, 1), torch.tensor(TRUTH[4:]))
    metrics = accumulator.compute()
    # |errors| = 0.8, 0.6, 0.3, 0.2, 0.3, 0.4
    assert metrics["mae"] == pytest.approx(2.6 / 6, abs=1e-6)
    assert metrics["loss"] == pytest.approx(2.6 / 6, abs=1e-6)  # default regression loss is L1
    # Has0: truth >= 0 [F,F,T,T,T,T]; prediction >= 0 [F,T,F,T,T,T] (0.0 counts as positive).
    # negative: TP1 FP1 FN1 -> 1/2 (support 2); positive: TP3 FP1 FN1 -> 3/4 (support 4).
    assert metrics["acc2_has0"] == pytest.approx(4 / 6, abs=1e-12)
    assert metrics["f1_has0"] == pytest.approx((2 * 0.5 + 4 * 0.75) / 6, abs=1e-12)
    # Non0: the two zero truths dropped; prediction > 0 [F,F,T,T] matches truth exactly
    # (the prediction 0.0 counts as negative here, unlike Has0).
    assert metrics["acc2_non0"] == pytest.approx(1.0, abs=1e-12)
    assert metrics["f1_non0"] == pytest.approx(1.0, abs=1e-12)
    # acc5: rounded clipped truth [-2,-1,0,0,1,2] vs prediction [-2,0,0,0,1,2] -> 5/6.
    assert metrics["acc5"] == pytest.approx(5 / 6, abs=1e-12)
    # acc7: truth [-2,-1,0,0,1,3] vs prediction [-2,0,0,0,1,2] -> 4/6.
    assert metrics["acc7"] == pytest.approx(4 / 6, abs=1e-12)
    assert metrics["corr"] == pytest.approx(statistics.correlation(PREDICTION, TRUTH), rel=1e-6)


def test_regression_non0_with_mixed_predictions():
    # Non0 on truth [-1, 2, -3, 1] vs prediction [0.5, 1, -1, -2]: truth > 0 [F,T,F,T],
    # prediction > 0 [T,T,F,F]. negative: TP1 FP1 FN1 -> 1/2; positive: TP1 FP1 FN1 -> 1/2.
    accumulator = MetricAccumulator("regression", 1)
    predictions = torch.tensor([0.5, 1.0, -1.0, -2.0, 4.0])
    accumulator.update(predictions, torch.tensor([-1.0, 2.0, -3.0, 1.0, 0.0]))
    metrics = accumulator.compute()
    assert metrics["acc2_non0"] == pytest.approx(0.5, abs=1e-12)
    assert metrics["f1_non0"] == pytest.approx(0.5, abs=1e-12)
    # Has0 keeps the zero truth as positive (prediction 4.0 positive): 3 of 5 right.
    assert metrics["acc2_has0"] == pytest.approx(3 / 5, abs=1e-12)


def test_acc7_rounds_half_to_even_like_numpy():
    # round(0.5) = 0, round(1.5) = 2, round(-0.5) = -0: all equal their truths.
    accumulator = MetricAccumulator("regression", 1)
    accumulator.update(torch.tensor([0.5, 1.5, -0.5]), torch.tensor([0.0, 2.0, 0.0]))
    assert accumulator.compute()["acc7"] == 1.0


def test_constant_prediction_gives_nan_correlation():
    accumulator = MetricAccumulator("regression", 1)
    accumulator.update(torch.zeros(4), torch.tensor([1.0, -1.0, 2.0, 0.0]))
    assert math.isnan(accumulator.compute()["corr"])


def test_empty_accumulator_and_reset():
    accumulator = MetricAccumulator("classification", 3)
    with pytest.raises(ValueError, match="no samples"):
        accumulator.compute()
    accumulator.update(one_hot_logits([0], 3), torch.tensor([1]))
    accumulator.reset()
    accumulator.update(one_hot_logits([1], 3), torch.tensor([1]))
    assert accumulator.compute()["acc"] == 1.0


def test_rejects_unknown_task_and_bad_shapes():
    with pytest.raises(ValueError, match="unknown task"):
        MetricAccumulator("ranking", 2)
    with pytest.raises(ValueError, match="predictions"):
        MetricAccumulator("classification", 3).update(torch.zeros(2, 3), torch.zeros(3, dtype=torch.long))


def test_primary_metric():
    assert primary_metric("classification") == ("acc", "max")
    assert primary_metric("binary") == ("acc", "max")
    assert primary_metric("regression") == ("mae", "min")


# ---------------------------------------------------------------- linear probe

from mmcore.probe import linear_probe_accuracy  # noqa: E402


def clustered_features(generator, labels, means, spread):
    return means[labels] + spread * torch.randn(labels.shape[0], means.shape[1], generator=generator)


def probe_data(seed=0, classes=10, dim=64):
    generator = torch.Generator().manual_seed(seed)
    means = torch.randn(classes, dim, generator=generator)
    train_y = torch.randint(0, classes, (1200,), generator=generator)
    eval_y = torch.randint(0, classes, (1000,), generator=generator)
    train_x = clustered_features(generator, train_y, means, 1.0)
    eval_x = clustered_features(generator, eval_y, means, 1.0)
    return generator, train_x, train_y, eval_x, eval_y


def test_probe_is_accurate_on_separable_features_and_deterministic():
    _, train_x, train_y, eval_x, eval_y = probe_data()
    accuracy = linear_probe_accuracy(train_x, train_y, eval_x, eval_y, 10, "classification")
    assert accuracy > 0.95
    again = linear_probe_accuracy(train_x, train_y, eval_x, eval_y, 10, "classification", seed=0)
    assert again == accuracy


def test_probe_is_near_chance_on_noise():
    generator, _, train_y, _, eval_y = probe_data()
    noise_train = torch.randn(1200, 64, generator=generator)
    noise_eval = torch.randn(1000, 64, generator=generator)
    accuracy = linear_probe_accuracy(noise_train, train_y, noise_eval, eval_y, 10, "classification")
    assert 0.04 < accuracy < 0.17  # chance is 0.1; the standard error on 1000 samples is ~0.01


def test_probe_binary_single_logit_and_sequence_features():
    generator = torch.Generator().manual_seed(3)
    train_y = torch.randint(0, 2, (400,), generator=generator).float()
    eval_y = torch.randint(0, 2, (200,), generator=generator).float()
    # [N, T, D] features are flattened per sample; the signal sits in one time step.
    train_x = torch.randn(400, 4, 8, generator=generator)
    eval_x = torch.randn(200, 4, 8, generator=generator)
    train_x[:, 2, 0] += 4 * (2 * train_y - 1)
    eval_x[:, 2, 0] += 4 * (2 * eval_y - 1)
    assert linear_probe_accuracy(train_x, train_y, eval_x, eval_y, 1, "binary") > 0.97


def test_probe_regression_reports_mae_of_ridge_fit():
    generator, train_x, _, eval_x, _ = probe_data()
    weight = torch.randn(64, generator=generator)
    train_y = train_x @ weight + 0.05 * torch.randn(1200, generator=generator)
    eval_y = eval_x @ weight + 0.05 * torch.randn(1000, generator=generator)
    mae = linear_probe_accuracy(train_x, train_y, eval_x, eval_y, 1, "regression")
    # Noise N(0, 0.05^2) alone gives an expected MAE of 0.05 * sqrt(2 / pi) ~= 0.040.
    assert 0.03 < mae < 0.05
    noise_train = torch.randn(1200, 64, generator=generator)
    noise_eval = torch.randn(1000, 64, generator=generator)
    noise_mae = linear_probe_accuracy(noise_train, train_y, noise_eval, eval_y, 1, "regression")
    assert noise_mae > 0.9 * (eval_y - train_y.mean()).abs().mean().item()
