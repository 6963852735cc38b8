"""Built-in encoder kinds `mlp` (vectors) and `sequence` (Conv1d + Transformer); `resnet18` is in resnet.py."""
from __future__ import annotations

import math
from typing import Any

import attrs
import torch
from attrs import validators as v
from torch import Tensor, nn

from mmcore.errors import ConfigError
from mmcore.interfaces import Encoder
from mmcore.registry import BuildContext, ComponentRegistry

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "tanh": nn.Tanh,
    "leaky_relu": nn.LeakyReLU,
}

positive_int = [v.instance_of(int), v.gt(0)]
probability = [v.instance_of(float), v.ge(0.0), v.lt(1.0)]


def _divisible_by_heads(instance: Any, attribute: attrs.Attribute, heads: int) -> None:
    if instance.d_model % heads:
        raise ValueError(f"d_model ({instance.d_model}) must be divisible by heads ({heads})")


# -- mlp -----------------------------------------------------------------------------------------
@attrs.frozen(kw_only=True)
class MLPConfig:
    hidden: tuple[int, ...] = attrs.field(
        default=(128, 64),
        converter=tuple,
        validator=[v.min_len(1), v.deep_iterable(member_validator=positive_int)],
        metadata={"help": "hidden layer sizes; the last one is the feature size"},
    )
    activation: str = attrs.field(
        default="relu", validator=v.in_(tuple(ACTIVATIONS)), metadata={"help": "activation after every layer"}
    )
    dropout: float = attrs.field(default=0.0, validator=probability, metadata={"help": "dropout after every layer"})
    batchnorm: bool = attrs.field(
        default=False, validator=v.instance_of(bool), metadata={"help": "BatchNorm1d before each activation"}
    )


class MLPEncoder(Encoder):
    """Flattens each sample to a vector and applies Linear -> [BatchNorm] -> activation -> [Dropout]
    per hidden layer; the features are the last layer's activations, [B, hidden[-1]]."""

    sequence = False

    def __init__(self, in_dim: int, config: MLPConfig) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width_in = in_dim
        for width in config.hidden:
            layers.append(nn.Linear(width_in, width))
            if config.batchnorm:
                layers.append(nn.BatchNorm1d(width))
            layers.append(ACTIVATIONS[config.activation]())
            if config.dropout > 0:
                layers.append(nn.Dropout(config.dropout))
            width_in = width
        self.layers = nn.Sequential(*layers)
        self.out_dim = config.hidden[-1]

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        return self.layers(x.flatten(1))


def build_mlp(config: MLPConfig, ctx: BuildContext) -> MLPEncoder:
    shape = input_shape_of(ctx)
    return MLPEncoder(math.prod(shape), config)


# -- sequence ------------------------------------------------------------------------------------
@attrs.frozen(kw_only=True)
class SequenceConfig:
    d_model: int = attrs.field(default=64, validator=positive_int, metadata={"help": "feature size per time step"})
    layers: int = attrs.field(default=2, validator=positive_int, metadata={"help": "Transformer encoder layers"})
    heads: int = attrs.field(
        default=4, validator=[*positive_int, _divisible_by_heads], metadata={"help": "attention heads"}
    )
    ff_multiplier: int = attrs.field(
        default=2, validator=positive_int, metadata={"help": "feed-forward width as a multiple of d_model"}
    )
    dropout: float = attrs.field(default=0.1, validator=probability, metadata={"help": "Transformer dropout"})
    kernel_size: int = attrs.field(
        default=3, validator=positive_int, metadata={"help": "temporal Conv1d kernel (odd, so T is preserved)"}
    )
    positional: bool = attrs.field(
        default=True,
        validator=v.instance_of(bool),
        metadata={"help": "add sinusoidal position encodings after the Conv1d (as MulT does)"},
    )

    def __attrs_post_init__(self) -> None:
        if self.kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd to preserve T, got {self.kernel_size}")


def sinusoidal_positions(steps: int, dim: int, device: torch.device, dtype: torch.dtype) -> Tensor:
    """[steps, dim] sine/cosine position encodings (Vaswani et al., 2017)."""
    position = torch.arange(steps, device=device, dtype=torch.float32).unsqueeze(1)
    frequency = torch.exp(torch.arange(0, dim, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / dim))
    table = torch.zeros(steps, dim, device=device, dtype=torch.float32)
    table[:, 0::2] = torch.sin(position * frequency)
    table[:, 1::2] = torch.cos(position * frequency[: dim // 2])
    return table.to(dtype)


class SequenceEncoder(Encoder):
    """[B, T, D] with mask [B, T] -> [B, T, d_model]; T preserved, padded steps zero.

    Padded steps are zeroed before the Conv1d (its zero padding then treats the sequence exactly
    like a shorter one) and excluded as attention keys, so padded content never reaches a real
    step. A sample with no real step is run with every key visible (to avoid a NaN softmax) and
    its output is zeroed like any padding."""

    sequence = True

    def __init__(self, in_dim: int, config: SequenceConfig) -> None:
        super().__init__()
        self.out_dim = config.d_model
        self.positional = config.positional
        self.conv = nn.Conv1d(in_dim, config.d_model, config.kernel_size, padding=config.kernel_size // 2)
        layer = nn.TransformerEncoderLayer(
            config.d_model,
            config.heads,
            dim_feedforward=config.ff_multiplier * config.d_model,
            dropout=config.dropout,
            batch_first=True,
        )
        self.transformer = nn.TransformerEncoder(layer, config.layers, enable_nested_tensor=False)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        if x.dim() != 3:
            raise ValueError(f"sequence encoder expects [B, T, D], got shape {tuple(x.shape)}")
        if mask is None:
            mask = torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
        real = mask.to(x.dtype).unsqueeze(-1)
        hidden = self.conv((x * real).transpose(1, 2)).transpose(1, 2)
        if self.positional:
            hidden = hidden + sinusoidal_positions(x.shape[1], self.out_dim, x.device, hidden.dtype)
        has_real_step = mask.any(dim=1, keepdim=True)
        padding = ~mask & has_real_step  # empty samples: attend everywhere, output zeroed below
        hidden = self.transformer(hidden, src_key_padding_mask=padding)
        return hidden * real


def build_sequence(config: SequenceConfig, ctx: BuildContext) -> SequenceEncoder:
    shape = input_shape_of(ctx)
    if len(shape) != 2:
        raise ConfigError(
            f"$.encoders.{ctx.modality}.kind: 'sequence' needs per-sample inputs [T, D], "
            f"modality {ctx.modality!r} has shape {list(shape)}"
        )
    return SequenceEncoder(shape[-1], config)


def input_shape_of(ctx: BuildContext) -> tuple[int, ...]:
    if ctx.modality not in ctx.input_shapes:
        raise ConfigError(f"$.encoders.{ctx.modality}: the dataset reports no input shape for this modality")
    return tuple(ctx.input_shapes[ctx.modality])


def register(registry: ComponentRegistry) -> None:
    registry.encoder("mlp", MLPConfig, build_mlp, help="MLP on flattened vectors -> [B, hidden[-1]]")
    registry.encoder(
        "sequence", SequenceConfig, build_sequence, help="Conv1d + Transformer on [B, T, D] -> [B, T, d_model]"
    )
