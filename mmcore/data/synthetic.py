"""`synthetic`: M modalities with controllable per-modality signal strength.

Each modality m carries the label through class mean vectors of norm `signal[m]` plus unit
Gaussian noise: x = signal[m] * mu_m[y] + eps, with mu_m[c] random unit vectors (regression: the
label z ~ N(0, 1) itself scales one unit direction). A signal of 0 makes a modality pure noise; a
larger one makes it more separable. Sequences repeat that draw at every real step with fresh noise;
`noise_steps` replaces a fraction of the real steps by pure noise and returns their positions.
"""
from __future__ import annotations

import torch
from attrs import field, frozen
from attrs.validators import and_, deep_iterable, ge, in_, instance_of, le
from torch import Tensor

from mmcore.data.base import DataBundle, DataInfo
from mmcore.data.loading import TensorSplit
from mmcore.errors import ConfigError
from mmcore.registry import BuildContext

TASKS = ("classification", "binary", "regression")
SPLIT_STREAMS = {"train": 1, "val": 2, "test": 3}  # stream 0 draws the class means


@frozen(kw_only=True)
class SyntheticConfig:
    num_classes: int = field(
        default=4, validator=and_(instance_of(int), ge(2)), metadata={"help": "classes (classification task)"}
    )
    train_size: int = field(default=512, validator=and_(instance_of(int), ge(1)), metadata={"help": "training rows"})
    val_size: int = field(default=128, validator=and_(instance_of(int), ge(0)), metadata={"help": "validation rows"})
    test_size: int = field(default=128, validator=and_(instance_of(int), ge(0)), metadata={"help": "test rows"})
    dim: int = field(default=16, validator=and_(instance_of(int), ge(1)), metadata={"help": "features per step"})
    signal: tuple[float, ...] = field(
        default=(),
        converter=tuple,
        validator=deep_iterable(and_(instance_of((int, float)), ge(0.0))),
        metadata={"help": "per-modality class-mean norm (the label information it carries); empty = 1.0 each"},
    )
    seq_len: int = field(
        default=0, validator=and_(instance_of(int), ge(0)), metadata={"help": "0: vectors [dim]; >0: sequences [T, dim]"}
    )
    ragged: bool = field(
        default=False,
        validator=instance_of(bool),
        metadata={"help": "sequence lengths vary per sample in [seq_len // 2, seq_len]; padding is zero and masked"},
    )
    noise_steps: float = field(
        default=0.0,
        validator=and_(ge(0.0), le(1.0)),
        metadata={"help": "fraction of real steps replaced by pure noise; positions in extras noise_positions/<m>"},
    )
    task: str = field(default="classification", validator=in_(TASKS), metadata={"help": " | ".join(TASKS)})
    seed: int = field(
        default=0, validator=instance_of(int), metadata={"help": "data generation seed (independent of the run seed)"}
    )


def _generator(seed: int, stream: int) -> torch.Generator:
    # Distinct streams per split: resizing one split leaves the others' rows unchanged.
    return torch.Generator().manual_seed(seed * 7919 + stream)


def _unit_directions(count: int, dim: int, generator: torch.Generator) -> Tensor:
    directions = torch.randn(count, dim, generator=generator)
    return directions / directions.norm(dim=1, keepdim=True).clamp_min(1e-12)


def _labels(config: SyntheticConfig, size: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """(label as the dataset returns it, the row's latent code: a class id or a regression value)."""
    if config.task == "regression":
        latent = torch.randn(size, generator=generator)
        return latent, latent
    classes = 2 if config.task == "binary" else config.num_classes
    ids = torch.randint(classes, (size,), generator=generator)
    return (ids.float() if config.task == "binary" else ids), ids


def _sequence_masks(config: SyntheticConfig, size: int, generator: torch.Generator) -> Tensor:
    if not config.ragged:
        return torch.ones(size, config.seq_len, dtype=torch.bool)
    shortest = max(1, config.seq_len // 2)
    lengths = torch.randint(shortest, config.seq_len + 1, (size,), generator=generator)
    return torch.arange(config.seq_len)[None, :] < lengths[:, None]


def _noise_positions(mask: Tensor, fraction: float, generator: torch.Generator) -> Tensor:
    """bool [N, T]: round(fraction * length) real steps of each row, chosen uniformly."""
    draws = torch.rand(mask.shape, generator=generator).masked_fill(~mask, 2.0)  # padding ranks last
    rank = draws.argsort(dim=1).argsort(dim=1)
    return rank < torch.round(fraction * mask.sum(dim=1, keepdim=True).float())


def _modality_values(
    config: SyntheticConfig, means: Tensor, latent: Tensor, signal: float, generator: torch.Generator
) -> Tensor:
    """[N, dim] or [N, T, dim]: signal * mean of the row's latent code + unit Gaussian noise."""
    clean = latent[:, None] * means[0] if config.task == "regression" else means[latent]
    steps = (config.seq_len,) if config.seq_len else ()
    noise = torch.randn(latent.shape[0], *steps, config.dim, generator=generator)
    return signal * (clean[:, None, :] if steps else clean) + noise


def _make_split(config: SyntheticConfig, modalities: tuple[str, ...], means: dict[str, Tensor],
                signal: list[float], size: int, stream: int) -> TensorSplit:
    generator = _generator(config.seed, stream)
    label, latent = _labels(config, size, generator)
    inputs, masks, extras = {}, {}, {}
    # One length per sample, shared by its modalities: the steps stay aligned across modalities.
    mask = _sequence_masks(config, size, generator) if config.seq_len else None
    for m, strength in zip(modalities, signal):
        values = _modality_values(config, means[m], latent, strength, generator)
        if mask is not None:
            if config.noise_steps > 0:
                replaced = _noise_positions(mask, config.noise_steps, generator)
                pure_noise = torch.randn(values.shape, generator=generator)
                values = torch.where(replaced[..., None], pure_noise, values)
                extras[f"noise_positions/{m}"] = replaced
            values = values.masked_fill(~mask[..., None], 0.0)  # padding is exactly zero
            masks[m] = mask
        inputs[m] = values
    return TensorSplit(inputs, label, modalities, masks=masks, extras=extras)


def _check(config: SyntheticConfig, modalities: tuple[str, ...]) -> list[float]:
    problems = []
    if not modalities:
        problems.append("$.data.modalities: synthetic needs at least one modality")
    if config.signal and len(config.signal) != len(modalities):
        problems.append(
            f"$.data.signal: {len(config.signal)} values for {len(modalities)} modalities {list(modalities)}"
        )
    if config.noise_steps > 0 and config.seq_len == 0:
        problems.append(f"$.data.noise_steps: {config.noise_steps} needs sequences (seq_len > 0)")
    if config.ragged and config.seq_len == 0:
        problems.append("$.data.ragged: true needs sequences (seq_len > 0)")
    if problems:
        raise ConfigError(problems)
    return [float(s) for s in config.signal] if config.signal else [1.0] * len(modalities)


def build_synthetic(config: SyntheticConfig, ctx: BuildContext) -> DataBundle:
    modalities = tuple(ctx.modalities)
    signal = _check(config, modalities)
    classes = {"classification": config.num_classes, "binary": 2, "regression": 1}[config.task]
    mean_generator = _generator(config.seed, 0)
    means = {m: _unit_directions(classes, config.dim, mean_generator) for m in modalities}
    sizes = {"train": config.train_size, "val": config.val_size, "test": config.test_size}
    splits = {
        name: _make_split(config, modalities, means, signal, sizes[name], SPLIT_STREAMS[name]) for name in sizes
    }
    shape = (config.seq_len, config.dim) if config.seq_len else (config.dim,)
    info = DataInfo(
        modalities=modalities,
        task=config.task,
        num_outputs=config.num_classes if config.task == "classification" else 1,
        input_shapes={m: shape for m in modalities},
        sequence={m: config.seq_len > 0 for m in modalities},
        citation="",
    )
    return DataBundle(info=info, splits=splits)
