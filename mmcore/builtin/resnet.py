"""ResNet-18 written from scratch (He et al., 2016), the backbone of the av-resnet workload.

Layout of the standard ImageNet ResNet-18 without its classifier: a 7x7 stride-2 stem with
max-pooling, four stages of two BasicBlocks (widths 64, 128, 256, 512; stages 2-4 halve the
resolution) and global average pooling. For in_channels=3 it has 11,176,512 parameters.

Frame stacks [B, T, C, H, W] run through the 2D net as one batch of B*T images and the per-frame
features are averaged over the frames, which is what OGM-GE's official visual branch does (its
3D average pool over time and space equals a spatial pool per frame followed by a frame mean).
"""
from __future__ import annotations

import attrs
from attrs import validators as v
from torch import Tensor, nn

from mmcore.errors import ConfigError
from mmcore.interfaces import Encoder
from mmcore.registry import BuildContext, ComponentRegistry

STAGE_WIDTHS = (64, 128, 256, 512)
BLOCKS_PER_STAGE = 2


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a residual connection (1x1 projection when the shape changes)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class ResNet18Core(nn.Module):
    """Images [N, C, H, W] -> features [N, 512] (global average pooled)."""

    out_dim = STAGE_WIDTHS[-1]

    def __init__(self, in_channels: int = 3) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, STAGE_WIDTHS[0], 7, stride=2, padding=3, bias=False),
            nn.BatchNorm2d(STAGE_WIDTHS[0]),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, stride=2, padding=1),
        )
        stages = []
        width_in = STAGE_WIDTHS[0]
        for index, width in enumerate(STAGE_WIDTHS):
            first_stride = 1 if index == 0 else 2
            blocks = [BasicBlock(width_in, width, first_stride)]
            blocks += [BasicBlock(width, width, 1) for _ in range(BLOCKS_PER_STAGE - 1)]
            stages.append(nn.Sequential(*blocks))
            width_in = width
        self.stages = nn.Sequential(*stages)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # He initialisation for ReLU networks; BatchNorm starts as the identity.
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, images: Tensor) -> Tensor:
        return self.stages(self.stem(images)).mean(dim=(2, 3))


class ResNet18Encoder(Encoder):
    """ResNet-18 encoder for spectrograms [B, C, H, W] (or [B, H, W], one channel), single frames
    [B, C, H, W] and frame stacks [B, T, C, H, W]; output [B, 512].

    For frame stacks an optional mask [B, T] (True = real frame) restricts the frame mean."""

    sequence = False

    def __init__(self, in_channels: int = 3) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.core = ResNet18Core(in_channels)
        self.out_dim = self.core.out_dim

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        if x.dim() == 3:  # [B, H, W]: single-channel image without its channel axis
            x = x.unsqueeze(1)
        if x.dim() == 4:
            return self.core(x)
        if x.dim() != 5:
            raise ValueError(f"resnet18 expects [B, C, H, W] or [B, T, C, H, W], got shape {tuple(x.shape)}")
        batch, frames = x.shape[:2]
        per_frame = self.core(x.flatten(0, 1)).view(batch, frames, self.out_dim)
        if mask is None:
            return per_frame.mean(dim=1)
        weights = mask.to(per_frame.dtype).unsqueeze(-1)
        return (per_frame * weights).sum(dim=1) / weights.sum(dim=1).clamp_min(1.0)


def channels_of(input_shape: tuple[int, ...]) -> int:
    """The channel count implied by a per-sample shape: [H, W] -> 1, [C, H, W] -> C, [T, C, H, W] -> C."""
    if len(input_shape) == 2:
        return 1
    if len(input_shape) in (3, 4):
        return int(input_shape[-3])
    raise ValueError(f"resnet18 needs a per-sample shape [H, W], [C, H, W] or [T, C, H, W], got {input_shape}")


@attrs.frozen(kw_only=True)
class ResNet18Config:
    in_channels: int | None = attrs.field(
        default=None,
        validator=v.optional([v.instance_of(int), v.gt(0)]),
        metadata={"help": "input channels; default: read from the modality's input shape"},
    )


def build_resnet18(config: ResNet18Config, ctx: BuildContext) -> ResNet18Encoder:
    if config.in_channels is not None:
        return ResNet18Encoder(config.in_channels)
    shape = ctx.input_shapes.get(ctx.modality)  # type: ignore[arg-type]
    if shape is None:
        raise ConfigError(f"$.encoders.{ctx.modality}: the dataset reports no input shape for this modality")
    try:
        return ResNet18Encoder(channels_of(tuple(shape)))
    except ValueError as error:
        raise ConfigError(f"$.encoders.{ctx.modality}.kind: {error}") from None


def register(registry: ComponentRegistry) -> None:
    registry.encoder(
        "resnet18", ResNet18Config, build_resnet18, help="ResNet-18 from scratch on images or frame stacks -> [B, 512]"
    )
