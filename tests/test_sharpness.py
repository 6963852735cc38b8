"""The core's sharpness-aware pieces, on hand-computed inputs."""
import torch
from torch import nn

import mmcore


def _params_with_grads():
    a = nn.Parameter(torch.tensor([3.0, 0.0]))
    b = nn.Parameter(torch.tensor([[0.0, 4.0]]))
    a.grad, b.grad = torch.tensor([3.0, 0.0]), torch.tensor([[0.0, 4.0]])  # one global norm: 5
    return [a, b]


def test_ascent_uses_one_global_norm_over_all_parameters():
    params = _params_with_grads()
    ascent = mmcore.ascent_step(params, rho=0.5)
    assert torch.allclose(ascent.grad_norm, torch.tensor(5.0))
    assert torch.allclose(ascent.offsets[0], torch.tensor([0.3, 0.0]))  # 0.5 * 3 / 5
    assert torch.allclose(ascent.offsets[1], torch.tensor([[0.0, 0.4]]))


def test_rho_zero_gives_exactly_zero_offsets_and_adaptive_scales_by_weight():
    params = _params_with_grads()
    assert all(torch.equal(o, torch.zeros_like(o)) for o in mmcore.ascent_step(params, rho=0.0).offsets)
    # ASAM: T = |w| + eta; T g = [9, 0] and [0, 16]; norm = sqrt(81 + 256); eps = rho T^2 g / norm
    ascent = mmcore.ascent_step(params, rho=1.0, adaptive=True, eta=0.0)
    norm = (81 + 256) ** 0.5
    assert torch.allclose(ascent.offsets[0], torch.tensor([27.0 / norm, 0.0]))
    assert torch.allclose(ascent.offsets[1], torch.tensor([[0.0, 64.0 / norm]]))


def test_perturbed_restores_the_saved_weights_exactly():
    params = _params_with_grads()
    before = [p.detach().clone() for p in params]
    offsets = [torch.full_like(p, 1e-3) for p in params]
    with mmcore.perturbed(params, offsets):
        assert torch.allclose(params[0], before[0] + 1e-3)
    assert all(torch.equal(p, b) for p, b in zip(params, before))  # copied back, not w + e - e


def test_frozen_batchnorm_statistics_leave_running_stats_untouched():
    bn = nn.BatchNorm1d(3).train()
    bn(torch.randn(8, 3))
    saved = {k: v.clone() for k, v in bn.state_dict().items()}
    with mmcore.frozen_batchnorm_statistics(bn):
        out = bn(torch.randn(8, 3) * 5 + 2)
    assert torch.allclose(out.mean(0), torch.zeros(3), atol=1e-5)  # still normalised with batch stats
    assert all(torch.equal(bn.state_dict()[k], v) for k, v in saved.items())
