"""Reference tests: OGM-GE's formulas on hand-computed inputs (spec §2.2)."""
import math

import pytest
import torch
from torch import nn

from mmcore_ogm_ge.coefficients import (
    discrepancy_ratios, modulation_coefficients, noise_scales, tensor_sums, true_class_confidence,
)
from mmcore_ogm_ge.modulation import GradientModulator, NoiseBuffer

JUST_ABOVE_ONE = 1 + 1e-6


@pytest.mark.parametrize(("alpha", "rho", "k", "tolerance"), [
    (0.1, JUST_ABOVE_ONE, 0.90, 5e-3),  # spec §2.2 item 4: the table for rho just above 1
    (0.3, JUST_ABOVE_ONE, 0.71, 5e-3),
    (0.8, JUST_ABOVE_ONE, 0.34, 5e-3),
    (2.6, JUST_ABOVE_ONE, 0.011, 5e-4),
    (0.8, 1.5, 0.166, 5e-4),
    (0.8, 2.0, 0.078, 5e-4),
])
def test_coefficient_table_of_the_spec(alpha, rho, k, tolerance):
    ratios = torch.tensor([rho, 1 / rho])
    leader, other = modulation_coefficients(ratios, alpha).tolist()
    assert leader == pytest.approx(k, abs=tolerance)
    assert leader == pytest.approx(1 - math.tanh(alpha * rho), rel=1e-5)  # float32
    assert other == 1.0  # only the leader is damped


def test_paper_coefficient_jumps_at_one_and_shifted_is_continuous():
    ratios = torch.tensor([1.0, JUST_ABOVE_ONE, 1.5, 0.5])
    paper = modulation_coefficients(ratios, 0.8, "paper")
    assert paper[0] == 1.0 and paper[1] == pytest.approx(1 - math.tanh(0.8), rel=1e-5) and paper[3] == 1.0
    shifted = modulation_coefficients(ratios, 0.8, "shifted")
    assert shifted[0] == 1.0 and shifted[1] == pytest.approx(1.0, abs=1e-5)
    assert shifted[2] == pytest.approx(1 - math.tanh(0.4), rel=1e-6) and shifted[3] == 1.0


def test_two_modality_rules_give_the_same_coefficients():
    scores = torch.tensor([6.0, 4.0])
    assert discrepancy_ratios(scores, "pairwise_mean").tolist() == pytest.approx([1.5, 1 / 1.5])  # official
    assert discrepancy_ratios(scores, "weakest").tolist() == pytest.approx([1.5, 1.0])
    for rule in ("pairwise_mean", "weakest"):
        k = modulation_coefficients(discrepancy_ratios(scores, rule), 0.8)
        assert k.tolist() == pytest.approx([1 - math.tanh(1.2), 1.0])


def test_three_modality_ratios_by_hand():
    scores = torch.tensor([6.0, 3.0, 2.0])
    pairwise = [(6 / 3 + 6 / 2) / 2, (3 / 6 + 3 / 2) / 2, (2 / 6 + 2 / 3) / 2]  # mean_k S_m / S_k
    assert discrepancy_ratios(scores, "pairwise_mean").tolist() == pytest.approx(pairwise)
    assert discrepancy_ratios(scores, "weakest").tolist() == pytest.approx([3.0, 1.5, 1.0])
    # pairwise_mean gives rho = [2.5, 1.0, 0.5]: only rho > 1 is damped (rho = 1 exactly is not)
    k = modulation_coefficients(discrepancy_ratios(scores), 0.8)
    assert k[0] == pytest.approx(1 - math.tanh(0.8 * 2.5)) and k[1:].tolist() == [1.0, 1.0]


def test_confidence_is_the_true_class_probability():
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.0, 0.0, 0.0]])
    label = torch.tensor([0, 2])
    expected = [math.exp(2) / (math.exp(2) + 1 + math.exp(-1)), 1 / 3]
    assert true_class_confidence(logits, label, "classification").tolist() == pytest.approx(expected)
    binary = true_class_confidence(torch.tensor([[0.0], [2.0]]), torch.tensor([1.0, 0.0]), "binary")
    assert binary.tolist() == pytest.approx([0.5, 1 - 1 / (1 + math.exp(-2))])


def _parameter(grad: torch.Tensor) -> nn.Parameter:
    p = nn.Parameter(torch.zeros_like(grad))
    p.grad = grad.clone()
    return p


def test_ge_noise_has_the_std_of_the_unmodulated_gradient():
    g = torch.Generator().manual_seed(0)
    grads = [torch.randn(200, 300, generator=g) * 3 + 1, torch.randn(50, generator=g) * 0.01]
    params = {"a": [_parameter(grads[0])], "b": [_parameter(grads[1])]}
    k = torch.tensor([0.25, 1.0])
    GradientModulator(params, ge=True).apply(k, torch.Generator().manual_seed(7))
    # by hand: one draw for all entries in group order, scaled per tensor by std(g) + 1e-8
    noise = torch.empty(200 * 300 + 50).normal_(generator=torch.Generator().manual_seed(7))
    expected_a = 0.25 * grads[0] + noise[:60000].view(200, 300) * (grads[0].std() + 1e-8)
    expected_b = grads[1] + noise[60000:] * (grads[1].std() + 1e-8)
    assert torch.allclose(params["a"][0].grad, expected_a, atol=1e-5)
    assert torch.allclose(params["b"][0].grad, expected_b, atol=1e-7)
    added = params["a"][0].grad - 0.25 * grads[0]
    assert added.std().item() == pytest.approx(grads[0].std().item(), rel=0.02)  # not 0.25 * std
    assert abs(added.mean().item()) < 0.05


def test_plain_ogm_only_scales():
    grad = torch.randn(4, 5)
    params = {"a": [_parameter(grad)], "b": [_parameter(grad)]}
    GradientModulator(params, ge=False).apply(torch.tensor([0.3, 1.0]), None)
    assert torch.equal(params["a"][0].grad, grad * 0.3) and torch.equal(params["b"][0].grad, grad)


def test_noise_scale_is_the_unbiased_std():
    one_entry, pair = noise_scales([torch.tensor([5.0]), torch.tensor([1.0, 3.0])])
    assert one_entry.item() == pytest.approx(1e-8)  # one entry: finite
    assert pair.item() == pytest.approx(math.sqrt(2) + 1e-8)
    g = torch.Generator().manual_seed(3)
    grads = [torch.randn(64, 32, 3, 3, generator=g) * 1e-3, torch.randn(1000, generator=g) * 5 + 2,
             torch.randn(7, generator=g) - 3]  # a large mean next to its spread
    for grad, sigma in zip(grads, noise_scales(grads)):
        assert sigma.item() == pytest.approx(grad.std().item() + 1e-8, rel=1e-4)


def test_noise_follows_the_gradients_present_at_each_step():
    """The reused noise buffer is rebuilt when a parameter has no gradient at a step."""
    params = {"a": [_parameter(torch.ones(3, 4) * 2), _parameter(torch.ones(5))], "b": [_parameter(torch.ones(2))]}
    modulator = GradientModulator(params, ge=True)
    modulator.apply(torch.tensor([0.5, 1.0]), torch.Generator().manual_seed(0))
    params["a"][0].grad = None
    params["a"][1].grad = torch.arange(5.0)
    modulator.apply(torch.tensor([0.5, 1.0]), torch.Generator().manual_seed(1))
    noise = torch.empty(5 + 2).normal_(generator=torch.Generator().manual_seed(1))
    expected = 0.5 * torch.arange(5.0) + noise[:5] * (torch.arange(5.0).std() + 1e-8)
    assert params["a"][0].grad is None
    assert torch.allclose(params["a"][1].grad, expected, atol=1e-6)


def test_noise_is_the_same_added_per_tensor_or_gathered_per_entry():
    """The CPU adds each tensor's noise times its sigma; a GPU scales the flat draw per entry."""
    g = torch.Generator().manual_seed(4)
    grads = [torch.randn(6, 5, generator=g), torch.randn(7, generator=g) * 3]
    sigma = noise_scales(grads)
    results = []
    for gather in (False, True):
        copies = [t.clone() for t in grads]
        NoiseBuffer(copies, gather=gather).add_to(copies, sigma, torch.Generator().manual_seed(9))
        results.append(copies)
    for per_tensor, gathered in zip(*results):
        assert torch.allclose(per_tensor, gathered, atol=1e-6)
    noise = torch.empty(30 + 7).normal_(generator=torch.Generator().manual_seed(9))
    assert torch.allclose(results[0][1], grads[1] + noise[30:] * sigma[1], atol=1e-6)


def test_tensor_sums_per_tensor_and_from_absolute_values_agree():
    g = torch.Generator().manual_seed(5)
    grads = [torch.randn(64, 3, 3, generator=g) * 1e-3 + 2e-4, torch.randn(11, generator=g) - 4]
    exact = torch.stack([t.double().sum() for t in grads])
    for multi_tensor in (False, True):
        assert torch.allclose(tensor_sums(grads, multi_tensor), exact, rtol=1e-5, atol=1e-9)
