"""Built-in encoders: shapes, hand-computed references, masking, parameter counts, gradients."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from mmcore.builtin import encoders, resnet
from mmcore.builtin.encoders import MLPConfig, SequenceConfig
from mmcore.builtin.resnet import ResNet18Config, ResNet18Core
from mmcore.errors import ConfigError
from mmcore.registry import BuildContext, ComponentRegistry


def build(kind: str, shape: tuple[int, ...], sequence: bool = False, **config):
    registry = ComponentRegistry()
    encoders.register(registry)
    resnet.register(registry)
    spec = registry.get("encoder", kind)
    ctx = BuildContext(modalities=("m",), modality="m", input_shapes={"m": shape}, sequence={"m": sequence})
    return spec.build(spec.config_cls(**config), ctx)


def assert_every_parameter_gets_gradient(module: nn.Module) -> None:
    for name, p in module.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_register_adds_the_three_encoders_with_help():
    registry = ComponentRegistry()
    encoders.register(registry)
    resnet.register(registry)
    assert registry.kinds("encoder") == ["mlp", "resnet18", "sequence"]
    assert all(spec.help for spec in registry.specs("encoder"))


# -- mlp -----------------------------------------------------------------------------------------
def test_mlp_default_is_128_then_64_on_flattened_input():
    torch.manual_seed(0)
    encoder = build("mlp", (4, 6))
    assert encoder.out_dim == 64 and encoder.sequence is False
    x = torch.randn(5, 4, 6)
    first, second = [m for m in encoder.layers if isinstance(m, nn.Linear)]
    assert first.in_features == 24 and first.out_features == 128 and second.out_features == 64
    expected = torch.relu(torch.relu(x.reshape(5, 24) @ first.weight.T + first.bias) @ second.weight.T + second.bias)
    torch.testing.assert_close(encoder(x), expected)


def test_mlp_options_add_batchnorm_dropout_and_activation():
    encoder = build("mlp", (10,), hidden=[8], activation="tanh", dropout=0.5, batchnorm=True)
    kinds = [type(m) for m in encoder.layers]
    assert kinds == [nn.Linear, nn.BatchNorm1d, nn.Tanh, nn.Dropout]
    assert encoder.out_dim == 8


@pytest.mark.parametrize("bad", [{"hidden": []}, {"hidden": [0]}, {"activation": "swish"}, {"dropout": 1.0}])
def test_mlp_config_rejects_bad_values(bad):
    with pytest.raises((ValueError, TypeError)):
        MLPConfig(**bad)


# -- sequence ------------------------------------------------------------------------------------
def test_sequence_shapes_and_zeroed_padding():
    torch.manual_seed(0)
    encoder = build("sequence", (7, 5), sequence=True).eval()
    assert encoder.sequence is True and encoder.out_dim == 64
    x = torch.randn(3, 7, 5)
    mask = torch.tensor([[True] * 7, [True] * 4 + [False] * 3, [True] * 2 + [False] * 5])
    out = encoder(x, mask)
    assert out.shape == (3, 7, 64)
    assert torch.all(out[~mask] == 0)
    assert torch.all(out[mask].abs().sum(-1) > 0)


def test_sequence_real_steps_ignore_padded_content_and_match_the_unpadded_sequence():
    torch.manual_seed(0)
    encoder = build("sequence", (6, 3), sequence=True, dropout=0.0).eval()
    x = torch.randn(2, 6, 3)
    mask = torch.tensor([[True] * 6, [True] * 4 + [False] * 2])
    garbage = x.clone()
    garbage[1, 4:] = 100.0 * torch.randn(2, 3)
    out, out_garbage = encoder(x, mask), encoder(garbage, mask)
    torch.testing.assert_close(out, out_garbage)
    alone = encoder(x[1:, :4], torch.ones(1, 4, dtype=torch.bool))  # the same sample without padding
    torch.testing.assert_close(out[1:, :4], alone)


def test_sequence_without_mask_treats_every_step_as_real_and_empty_sample_gives_zeros():
    torch.manual_seed(0)
    encoder = build("sequence", (5, 3), sequence=True).eval()
    x = torch.randn(2, 5, 3)
    torch.testing.assert_close(encoder(x), encoder(x, torch.ones(2, 5, dtype=torch.bool)))
    mask = torch.tensor([[True] * 5, [False] * 5])
    out = encoder(x, mask)
    assert torch.isfinite(out).all() and torch.all(out[1] == 0)


def test_sequence_gradients_reach_every_parameter():
    torch.manual_seed(0)
    encoder = build("sequence", (5, 3), sequence=True, layers=1)
    mask = torch.tensor([[True] * 5, [True] * 3 + [False] * 2])
    encoder(torch.randn(2, 5, 3), mask).sum().backward()
    assert_every_parameter_gets_gradient(encoder)


def test_sequence_build_rejects_vector_inputs_and_config_checks_heads():
    with pytest.raises(ConfigError, match=r"\$\.encoders\.m"):
        build("sequence", (12,))
    with pytest.raises(ValueError, match="divisible"):
        SequenceConfig(d_model=10, heads=4)
    with pytest.raises(ValueError, match="odd"):
        SequenceConfig(kernel_size=2)


# -- resnet18 ------------------------------------------------------------------------------------
def test_resnet18_core_has_the_standard_parameter_count():
    # torchvision's resnet18 has 11,689,512 parameters, of which the fc layer holds 512*1000 + 1000.
    assert sum(p.numel() for p in ResNet18Core(3).parameters()) == 11_689_512 - 513_000
    # A 1-channel stem only changes the first conv: 64*7*7*(3-1) fewer weights.
    assert sum(p.numel() for p in ResNet18Core(1).parameters()) == 11_176_512 - 64 * 49 * 2


def test_resnet18_on_a_spectrogram_reads_channels_from_the_shape():
    torch.manual_seed(0)
    encoder = build("resnet18", (1, 257, 188))
    assert encoder.in_channels == 1 and encoder.out_dim == 512
    out = encoder(torch.randn(2, 1, 257, 188))
    assert out.shape == (2, 512) and torch.isfinite(out).all()


def test_resnet18_frame_stack_is_the_mean_of_per_frame_features():
    torch.manual_seed(0)
    encoder = build("resnet18", (2, 3, 64, 64)).eval()
    assert encoder.in_channels == 3
    frames = torch.randn(2, 2, 3, 64, 64)
    out = encoder(frames)
    assert out.shape == (2, 512)
    per_frame = torch.stack([encoder.core(frames[:, t]) for t in range(2)], dim=1)
    torch.testing.assert_close(out, per_frame.mean(dim=1))
    only_first = encoder(frames, torch.tensor([[True, False], [True, True]]))
    torch.testing.assert_close(only_first[0], per_frame[0, 0])
    torch.testing.assert_close(only_first[1], per_frame[1].mean(dim=0))


def test_resnet18_config_channels_override_and_unchannelled_input():
    encoder = build("resnet18", (32, 32), in_channels=1).eval()
    x = torch.randn(2, 32, 32)
    torch.testing.assert_close(encoder(x), encoder(x.unsqueeze(1)))
    assert build("resnet18", (32, 32)).in_channels == 1
    assert ResNet18Config().in_channels is None


def test_resnet18_gradients_reach_every_parameter():
    torch.manual_seed(0)
    encoder = build("resnet18", (3, 32, 32))
    encoder(torch.randn(3, 3, 32, 32)).pow(2).sum().backward()
    assert_every_parameter_gets_gradient(encoder)


def test_resnet18_rejects_shapes_it_cannot_read():
    with pytest.raises(ConfigError, match="resnet18"):
        build("resnet18", (10,))
