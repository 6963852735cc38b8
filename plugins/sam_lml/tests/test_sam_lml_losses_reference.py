"""Reference tests: every SAM-LML loss term on hand-built scores and features, values worked out by hand."""
import math

import pytest
import torch

from mmcore_sam_lml import losses as L

T, F = True, False


def mask(*rows):
    return torch.tensor(rows, dtype=torch.bool)


def test_ranking_hinge_eq4_mean_over_valid_pairs():
    lower = torch.tensor([[[0.5, 2.0]]])  # A^n
    higher = torch.tensor([[[1.0, 1.0]]])  # A
    # max(0.5 - 1 + 1, 0) = 0.5 and max(2 - 1 + 1, 0) = 2
    assert L.ranking_hinge(lower, higher, 1.0, mask([[T, T]])).item() == pytest.approx(1.25)
    assert L.ranking_hinge(lower, higher, 1.0, mask([[T, F]])).item() == pytest.approx(0.5)
    assert L.ranking_hinge(lower, higher, 0.0, mask([[T, T]])).item() == pytest.approx(0.5)  # only 2 - 1


def test_pair_mask_needs_both_query_and_key():
    pairs = L.pair_mask(mask([T, F]), mask([T, T, F]))
    assert pairs.tolist() == [[[T, T, F], [F, F, F]]]


def test_mixing_eq28_uses_the_diagonal_only():
    scores = torch.tensor([[[1.0, 9.0], [9.0, 2.0]]])  # off-diagonal 9s must not matter
    mixed = torch.tensor([[[1.5, 0.0], [0.0, 4.0]]])
    # diagonal: max(1 - 1.5 + 1, 0) = 0.5, max(2 - 4 + 1, 0) = 0
    assert L.mixing_loss(scores, mixed, 1.0, mask([T, T])).item() == pytest.approx(0.25)
    assert L.mixing_loss(scores, mixed, 1.0, mask([T, F])).item() == pytest.approx(0.5)


def test_variance_eq14_population_std_of_softmax_rows():
    # row 0: softmax(ln 3, 0) = (0.75, 0.25), std 0.25 -> max(0.3 - 0.25, 0) = 0.05
    # row 1: softmax(0, 0) = (0.5, 0.5), std 0 -> 0.3; the third key is padding and row 2 is a padded query
    scores = torch.tensor([[[math.log(3.0), 0.0, 100.0], [0.0, 0.0, -5.0], [7.0, 0.0, 0.0]]])
    value = L.variance_loss(scores, mask([T, T, F]), mask([T, T, F]), beta=0.3)
    assert value.item() == pytest.approx((0.05 + 0.3) / 2, abs=1e-5)  # sqrt(var + 1e-12) at var = 0
    assert L.variance_loss(scores, mask([T, T, F]), mask([T, T, F]), beta=0.1).item() == pytest.approx(0.1 / 2, abs=1e-5)


def test_variance_skips_rows_with_a_single_visible_key():
    scores = torch.tensor([[[1.0, 2.0]]])
    assert L.variance_loss(scores, mask([T]), mask([T, F]), beta=0.3).item() == 0.0


def test_context_band_holds_rho_keys_around_the_diagonal():
    band5 = L.context_band(7, 7, rho=5)
    assert band5[3].nonzero().flatten().tolist() == [1, 2, 3, 4, 5]  # offsets -2 .. 2
    assert band5[0].nonzero().flatten().tolist() == [0, 1, 2]  # clipped at the start
    band6 = L.context_band(7, 7, rho=6)
    assert band6[3].nonzero().flatten().tolist() == [1, 2, 3, 4, 5, 6]  # offsets -2 .. 3
    assert L.context_band(4, 4, rho=1).equal(torch.eye(4, dtype=torch.bool))
    assert L.context_band(2, 4, rho=3).tolist() == [[T, T, F, F], [T, T, T, F]]  # query i, key j: |j - i| <= 1


def test_context_eq15_row_mean_plus_margin_against_band_mean():
    scores = torch.tensor([[[2.0, 0.0, 0.0, 2.0], [1.0, 1.0, 1.0, 5.0], [0.0] * 4, [0.0] * 4]])
    queries = mask([T, T, F, F])
    # rho = 1 (the diagonal): row 0 max(1 + 0.5 - 2, 0) = 0, row 1 max(2 + 0.5 - 1, 0) = 1.5
    assert L.context_loss(scores, queries, mask([T, T, T, T]), 0.5, 1).item() == pytest.approx(0.75)
    # key 3 is padding: row 1's mean drops to 1 -> 0.5; row 0 mean 2/3 -> 0
    assert L.context_loss(scores, queries, mask([T, T, T, F]), 0.5, 1).item() == pytest.approx(0.25)
    # rho = 3 on row 1: band (keys 0, 1, 2) mean 1 -> the same 1.5 with every key visible
    assert L.context_loss(scores, mask([F, T, F, F]), mask([T, T, T, T]), 0.5, 3).item() == pytest.approx(1.5)


def test_orthogonality_is_the_rms_of_the_cross_product():
    relevant = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])  # U^de
    irrelevant = torch.tensor([[[1.0, 0.0], [1.0, 1.0]]])  # K^de
    # U^de (K^de)^T = [[1, 1], [0, 1]]: RMS sqrt(3 / 4)
    assert L.orthogonality_loss(relevant, irrelevant, mask([T, T])).item() == pytest.approx(math.sqrt(0.75))
    assert L.orthogonality_loss(relevant, irrelevant, mask([T, F])).item() == pytest.approx(1.0)


def test_distance_eq10_hinges_the_mean_squared_distance():
    keys = torch.tensor([[[1.0, 1.0], [0.0, 0.0]]])
    irrelevant = torch.tensor([[[0.0, 1.0], [0.0, 2.0]]])
    # squared differences 1, 0, 0, 4: mean 1.25 -> max(1.25 - 0.5, 0)
    assert L.distance_loss(keys, irrelevant, mask([T, T]), 0.5).item() == pytest.approx(0.75)
    assert L.distance_loss(keys, irrelevant, mask([T, F]), 0.5).item() == pytest.approx(0.0)  # mean 0.5


def test_reconstruction_is_the_rms_error():
    keys = torch.tensor([[[3.0, 4.0], [1.0, 1.0]]])
    reconstructed = torch.tensor([[[0.0, 0.0], [1.0, 1.0]]])
    assert L.reconstruction_loss(keys, reconstructed, mask([T, T])).item() == pytest.approx(2.5)  # sqrt(25 / 4)
    assert L.reconstruction_loss(keys, reconstructed, mask([T, F])).item() == pytest.approx(math.sqrt(12.5))


def test_prediction_gap_eq12_squared_distance_per_step():
    irrelevant_logits = torch.tensor([[[1.0, 2.0], [0.0, 0.0]]])
    noise_logits = torch.tensor([[[0.0, 0.0], [1.0, 1.0]]])
    assert L.prediction_gap_loss(irrelevant_logits, noise_logits, mask([T, T])).item() == pytest.approx(3.5)
    assert L.prediction_gap_loss(irrelevant_logits, noise_logits, mask([F, T])).item() == pytest.approx(2.0)


def test_samples_without_valid_steps_do_not_count():
    keys = torch.tensor([[[3.0, 4.0]], [[100.0, 100.0]]])
    zeros = torch.zeros_like(keys)
    assert L.reconstruction_loss(keys, zeros, mask([T], [F])).item() == pytest.approx(math.sqrt(12.5))


def test_masked_softmax_rows_without_keys_are_zero():
    weights = L.masked_softmax(torch.tensor([[[1.0, 2.0]], [[1.0, 2.0]]]), mask([F, F], [T, F]))
    assert weights[0].tolist() == [[0.0, 0.0]] and weights[1].tolist() == [[1.0, 0.0]]
