"""Missing-rate and noise-rate corruption (SAM-LML Eq. 34-35), seeded by sample index.

Missing masks are drawn once per split (Eq. 34) and shared by both levels: a missing modality has
`present` False, so the model zeroes its features. Noise follows Eq. 35, u' = (1 - r) u + r n, with
Gaussian or unit-variance Laplace n, or random erasing (a fraction r of the entries zeroed);
"mixed" picks one of the three per sample (appendix A.14). Every noise draw comes from a
counter-based hash of (seed, sample index, modality, element position), so a sample is corrupted
identically whatever batch it is in, at either level, for every method.
"""
from __future__ import annotations

import math
import zlib
from typing import Any, Callable, Mapping, Sequence

import torch
from attrs import field, frozen
from attrs.validators import and_, deep_iterable, ge, in_, instance_of, le
from torch import Tensor
from torch.utils.data import Dataset

NOISE_KINDS = ("gaussian", "laplace", "erasing", "mixed")


@frozen(kw_only=True)
class CorruptionConfig:
    missing_rate: float = field(
        default=0.0,
        validator=and_(ge(0.0), le(1.0)),
        metadata={"help": "fraction of (sample, modality) slots missing, Eq. 34; every sample keeps one"},
    )
    noise_rate: float = field(
        default=0.0,
        validator=and_(ge(0.0), le(1.0)),
        metadata={"help": "r in u' = (1 - r) u + r n, Eq. 35"},
    )
    noise: str = field(
        default="gaussian",
        validator=in_(NOISE_KINDS),
        metadata={"help": "gaussian | laplace | erasing (zero a fraction r of entries) | mixed (one per sample, A.14)"},
    )
    level: str = field(
        default="feature",
        validator=in_(("input", "feature")),
        metadata={"help": "input: a data transform; feature: encoder outputs before fusion (the paper's protocol)"},
    )
    seed: int = field(default=0, metadata={"help": "corruption seed; with the sample index it fixes every draw"})
    modalities: tuple[str, ...] = field(
        default=(),
        converter=tuple,
        validator=deep_iterable(instance_of(str)),
        metadata={"help": "corrupt only these modalities (missing and noise); empty = all"},
    )

    @property
    def active(self) -> bool:
        return self.missing_rate > 0 or self.noise_rate > 0


# -- missing modalities (Eq. 34) -------------------------------------------------------------------


def missing_masks(num_samples: int, num_modalities: int, rate: float, seed: int) -> Tensor:
    """Bool [N, M], True = kept, with a missing rate of `rate` over all (sample, modality) slots.

    Every sample keeps one random modality. When 1 - rate <= 1/M that is all it keeps (the paper's
    MR = 0.7 with M = 3: the rate saturates at (M - 1)/M). Otherwise the remaining kept slots are
    drawn uniformly among the non-guaranteed ones in exactly the number the target needs, which is
    the calibrated-Bernoulli-and-redraw protocol conditioned on the closest attainable rate.
    """
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"missing rate must lie in [0, 1], got {rate}")
    if num_samples < 0 or num_modalities < 1:
        raise ValueError(f"need num_samples >= 0 and num_modalities >= 1, got {num_samples}, {num_modalities}")
    if rate == 0.0:
        return torch.ones(num_samples, num_modalities, dtype=torch.bool)
    generator = torch.Generator().manual_seed(seed)
    guaranteed = torch.randint(num_modalities, (num_samples,), generator=generator)
    kept = torch.nn.functional.one_hot(guaranteed, num_modalities).bool()
    target_kept = round(num_samples * num_modalities * (1.0 - rate))
    extra = target_kept - num_samples
    if 1.0 - rate <= 1.0 / num_modalities or extra <= 0:
        return kept
    free_slots = (~kept).flatten().nonzero().squeeze(1)
    chosen = free_slots[torch.randperm(free_slots.numel(), generator=generator)[:extra]]
    kept.view(-1)[chosen] = True
    return kept


def _name_key(text: str) -> int:
    return zlib.crc32(text.encode())


def split_missing_masks(
    num_samples: int, config: CorruptionConfig, num_modalities: int, split: str = "",
    names: Sequence[str] = (),
) -> Tensor:
    """The split's missing masks (bool [N, M], True = kept) used by both corruption levels.

    `split` salts the seed so that equally sized splits (val and test) get different masks. When
    `config.modalities` names some of the modalities (`names`, in column order), only their columns
    lose entries, exactly round(rate * N * k) of the N * k slots, drawn uniformly: the untouched
    modalities keep every sample non-empty, so the keep-one rule of `missing_masks` is not needed."""
    seed = config.seed if not split else config.seed ^ _name_key(split)
    targeted = targeted_columns(config, names, num_modalities)
    if len(targeted) == num_modalities:
        return missing_masks(num_samples, num_modalities, config.missing_rate, seed)
    kept = torch.ones(num_samples, num_modalities, dtype=torch.bool)
    slots = num_samples * len(targeted)
    generator = torch.Generator().manual_seed(seed)
    dropped = torch.randperm(slots, generator=generator)[: round(slots * config.missing_rate)]
    columns = kept[:, targeted].flatten()
    columns[dropped] = False
    kept[:, targeted] = columns.view(num_samples, len(targeted))
    return kept


def targeted_columns(config: CorruptionConfig, names: Sequence[str], num_modalities: int) -> list[int]:
    """Columns the corruption touches: every one, or those of `config.modalities` (which must be in `names`)."""
    if not config.modalities:
        return list(range(num_modalities))
    unknown = [m for m in config.modalities if m not in names]
    if unknown:
        raise ValueError(f"corruption modalities {unknown} are not among the data's modalities {list(names)}")
    return [names.index(m) for m in config.modalities]


# -- counter-based random numbers --------------------------------------------------------------------

_MASK64 = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15  # splitmix64's increment (odd, so it mixes every counter bit)
_MIX1 = 0xBF58476D1CE4E5B9
_MIX2 = 0x94D049BB133111EB


def _signed(value: int) -> int:
    """An unsigned 64-bit pattern as the int64 torch stores it."""
    value &= _MASK64
    return value - (1 << 64) if value >= 1 << 63 else value


def _shift_right(z: Tensor, bits: int) -> Tensor:
    # Torch shifts int64 arithmetically; masking the sign-extended bits makes it a logical shift.
    return (z >> bits) & ((1 << (64 - bits)) - 1)


def splitmix64(z: Tensor) -> Tensor:
    """The splitmix64 finaliser on int64 tensors (multiplication wraps modulo 2^64)."""
    z = (z ^ _shift_right(z, 30)) * _signed(_MIX1)
    z = (z ^ _shift_right(z, 27)) * _signed(_MIX2)
    return z ^ _shift_right(z, 31)


def hash_uniform(seed: int, stream: int, index: Tensor, num_positions: int) -> Tensor:
    """float64 [B, P] in (0, 1): one uniform per (seed, stream, sample index, element position)."""
    key = splitmix64(torch.tensor(_signed(seed * _GOLDEN + stream), dtype=torch.long, device=index.device))
    per_sample = splitmix64(key + index.long() * _signed(_GOLDEN))
    positions = torch.arange(1, num_positions + 1, dtype=torch.long, device=index.device)
    bits = splitmix64(per_sample[:, None] + positions * _signed(_GOLDEN))
    return (_shift_right(bits, 11).double() + 0.5) * 2.0**-53


# Streams: one per use, so the draws of different noise kinds and modalities never coincide.
_GAUSS_RADIUS, _GAUSS_ANGLE, _LAPLACE, _ERASE, _KIND = range(5)


def _stream(modality: str, use: int) -> int:
    return (_name_key(modality) << 3) | use


def _gaussian(seed: int, modality: str, index: Tensor, positions: int) -> Tensor:
    radius = hash_uniform(seed, _stream(modality, _GAUSS_RADIUS), index, positions)
    angle = hash_uniform(seed, _stream(modality, _GAUSS_ANGLE), index, positions)
    return torch.sqrt(-2.0 * torch.log(radius)) * torch.cos(2.0 * math.pi * angle)  # Box-Muller


def _laplace(seed: int, modality: str, index: Tensor, positions: int) -> Tensor:
    centred = hash_uniform(seed, _stream(modality, _LAPLACE), index, positions) - 0.5
    scale = 1.0 / math.sqrt(2.0)  # variance 2 b^2 = 1
    return -scale * torch.sign(centred) * torch.log1p(-2.0 * centred.abs())  # inverse CDF


def _erase_mask(seed: int, modality: str, index: Tensor, valid: Tensor, rate: float) -> Tensor:
    """bool [B, P]: exactly round(rate * real entries) real entries of each sample, chosen at random."""
    draws = hash_uniform(seed, _stream(modality, _ERASE), index, valid.shape[1])
    draws = draws.masked_fill(~valid, 2.0)  # padding ranks last, so it is never chosen
    rank = draws.argsort(dim=1).argsort(dim=1)
    count = torch.round(rate * valid.sum(dim=1, keepdim=True).double())
    return rank < count


def _noise_kind_per_sample(seed: int, index: Tensor) -> Tensor:
    """long [B] in {0: gaussian, 1: laplace, 2: erasing}, shared by every modality of a sample."""
    draw = hash_uniform(seed, _stream("", _KIND), index, 1)[:, 0]
    return (draw * 3).long().clamp_max(2)


def add_noise(
    values: Tensor, index: Tensor, config: CorruptionConfig, modality: str, mask: Tensor | None = None
) -> Tensor:
    """Eq. 35 on a batch: values [B, ...] (e.g. [B, D] or [B, T, D]), index long [B] (dataset rows).

    `mask` (bool [B, T], True = real step) keeps padding untouched. Vectorised over the batch; a
    sample's result depends only on (config.seed, its index, modality, element position)."""
    rate = config.noise_rate
    if rate == 0.0 or values.numel() == 0:
        return values
    batch = values.shape[0]
    flat = values.reshape(batch, -1).double()
    valid = torch.ones_like(flat, dtype=torch.bool)
    if mask is not None:
        trailing = math.prod(values.shape[2:])  # entries per time step
        valid = mask.to(values.device).repeat_interleave(trailing, dim=1).reshape(batch, -1)
    index = index.to(values.device)
    positions = flat.shape[1]
    kind = config.noise
    noisy = flat
    if kind == "mixed":
        choice = _noise_kind_per_sample(config.seed, index)[:, None]
        gauss = (1 - rate) * flat + rate * _gaussian(config.seed, modality, index, positions)
        laplace = (1 - rate) * flat + rate * _laplace(config.seed, modality, index, positions)
        erased = flat.masked_fill(_erase_mask(config.seed, modality, index, valid, rate), 0.0)
        noisy = torch.where(choice == 0, gauss, torch.where(choice == 1, laplace, erased))
    elif kind == "gaussian":
        noisy = (1 - rate) * flat + rate * _gaussian(config.seed, modality, index, positions)
    elif kind == "laplace":
        noisy = (1 - rate) * flat + rate * _laplace(config.seed, modality, index, positions)
    elif kind == "erasing":
        noisy = flat.masked_fill(_erase_mask(config.seed, modality, index, valid, rate), 0.0)
    noisy = torch.where(valid, noisy, flat)
    return noisy.to(values.dtype).reshape(values.shape)


def corrupt_features(
    features: dict[str, Tensor],
    index: Tensor,
    config: CorruptionConfig,
    modalities: Sequence[str],
    masks: dict[str, Tensor] | None = None,
) -> dict[str, Tensor]:
    """Feature-level noise (Eq. 35) on encoder outputs [B, D] or [B, T, D] of the listed modalities.

    Missingness at this level is the split's `present` mask (see `split_missing_masks`); features of
    modalities outside `modalities` (or outside `config.modalities` when it names some) pass through. `masks` keeps sequence padding untouched."""
    masks = masks or {}
    targets = [m for m in modalities if not config.modalities or m in config.modalities]
    return {m: add_noise(x, index, config, m, masks.get(m)) if m in targets else x for m, x in features.items()}


class CorruptedDataset(Dataset[dict[str, Any]]):
    """A split with the corruption applied: missing masks (present AND kept; a missing modality's
    input is zeroed) and, when `config.level == "input"`, noise on the present inputs."""

    def __init__(
        self,
        base: Dataset[dict[str, Any]],
        config: CorruptionConfig,
        modalities: Sequence[str],
        split: str = "",
        decode: Mapping[str, Callable[[Tensor], Tensor]] | None = None,
    ) -> None:
        self.base = base
        self.config = config
        self.modalities = tuple(modalities)
        self.kept = split_missing_masks(len(base), config, len(self.modalities), split,  # type: ignore[arg-type]
                                        names=self.modalities)
        self.noisy = {m: config.level == "input" and config.noise_rate > 0
                      and (not config.modalities or m in config.modalities) for m in self.modalities}
        # Corruption acts on model inputs: a modality it touches in any row is decoded (the data's
        # device transforms) in every row, so that the rows of a batch still stack.
        touched = {m for column, m in enumerate(self.modalities) if self.noisy[m] or not self.kept[:, column].all()}
        self.decode = {m: fn for m, fn in (decode or {}).items() if m in touched}

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = dict(self.base[index])
        kept = self.kept[index]
        present = item["present"] & kept
        row = torch.tensor([item["index"]], dtype=torch.long)
        inputs = {}
        for column, m in enumerate(self.modalities):
            x = item["inputs"][m]
            if m in self.decode:
                x = self.decode[m](x)  # e.g. uint8 pixels -> normalised floats; the device then passes them
            if not bool(kept[column]):
                x = torch.zeros_like(x)  # a missing modality carries no data (spec 4.6)
            elif self.noisy[m]:
                mask = item["masks"].get(m)
                x = add_noise(x[None], row, self.config, m, None if mask is None else mask[None])[0]
            inputs[m] = x
        item["inputs"] = inputs
        item["present"] = present
        return item


def corrupt_split(
    base: Dataset[dict[str, Any]],
    config: CorruptionConfig,
    modalities: Sequence[str],
    split: str = "",
    decode: Mapping[str, Callable[[Tensor], Tensor]] | None = None,
) -> Dataset[dict[str, Any]]:
    """`base` wrapped in a CorruptedDataset when the config corrupts anything at the data level.
    `decode` (the bundle's `on_device` transforms) turns a modality's stored form into model inputs
    before it is zeroed or noised."""
    touches_data = config.missing_rate > 0 or (config.level == "input" and config.noise_rate > 0)
    return CorruptedDataset(base, config, modalities, split, decode) if touches_data else base
