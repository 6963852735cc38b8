"""The `modality_valuation` balancer's options (the README's table says where each default comes from)."""
from __future__ import annotations

from attrs import field, frozen
from attrs.validators import and_, ge, gt, in_, instance_of, le

LEVELS = ("sample", "modality")
STRATEGIES = ("resample", "drop", "mask")
SHAPES = ("linear", "tanh", "power")
ROUNDINGS = ("nearest", "stochastic")
SHAPLEY_METHODS = ("auto", "exact", "permutation")


@frozen(kw_only=True)
class ModalityValuationConfig:
    level: str = field(
        default="sample", validator=in_(LEVELS),
        metadata={"help": "sample: per-sample Shapley values decide each row's copies; modality: one "
                          "discrepancy from a random subset decides how many rows train the weak modality"},
    )
    strategy: str = field(
        default="resample", validator=in_(STRATEGIES),
        metadata={"help": "resample: append copies that keep only the weak modality (paper); drop: the "
                          "selected rows lose the strong modality in place; mask: random parts of the strong "
                          "modality's input are zeroed for them (supplement Table 7)"},
    )
    warmup_epochs: int = field(
        default=5, validator=and_(instance_of(int), ge(0)),
        metadata={"help": "epochs of plain joint training before the first valuation"},
    )
    copy_shape: str = field(
        default="linear", validator=in_(SHAPES),
        metadata={"help": "sample level, f_s: linear = scale*x, tanh = scale*tanh(x), power = scale*x^1.5, "
                          "x = 1 - phi (supplement Eq. 7)"},
    )
    copy_scale: float = field(
        default=2.0, validator=and_(instance_of(float), ge(0.0)),
        metadata={"help": "sample level: the scale of f_s; 2 reproduces the official thresholds"},
    )
    rounding: str = field(
        default="nearest", validator=in_(ROUNDINGS),
        metadata={"help": "sample level: copies = f_s rounded to the nearest integer, or stochastically "
                          "(floor plus a Bernoulli draw of the fraction: expected copies = f_s)"},
    )
    part_ratio: float = field(
        default=0.2, validator=and_(instance_of(float), gt(0.0), le(1.0)),
        metadata={"help": "modality level: rows valuated per epoch, as a fraction of the train split, "
                          "drawn with replacement"},
    )
    probability_shape: str = field(
        default="linear", validator=in_(SHAPES),
        metadata={"help": "modality level, f_m: linear = alpha*x, tanh = tanh(alpha*x), power = alpha*x^1.5, "
                          "x = norm_scale * d (supplement Eq. 8)"},
    )
    alpha: float = field(
        default=1.0, validator=and_(instance_of(float), ge(0.0)),
        metadata={"help": "modality level: the strength of f_m"},
    )
    norm_scale: float = field(
        default=2.0 / 3.0, validator=and_(instance_of(float), gt(0.0)),
        metadata={"help": "modality level: Norm(d) = norm_scale * d (the official code's 2/3)"},
    )
    mask_ratio: float = field(
        default=0.5, validator=and_(instance_of(float), gt(0.0), le(1.0)),
        metadata={"help": "strategy mask: the fraction of the strong modality's input elements zeroed"},
    )
    shapley_method: str = field(
        default="auto", validator=in_(SHAPLEY_METHODS),
        metadata={"help": "exact (2^M - 1 head passes per batch), permutation (Monte-Carlo), auto (exact for M <= 4)"},
    )
    shapley_samples: int = field(
        default=64, validator=and_(instance_of(int), ge(1)),
        metadata={"help": "random orderings per batch for the permutation method"},
    )
    batch_size: int = field(
        default=0, validator=and_(instance_of(int), ge(0)),
        metadata={"help": "rows per valuation batch; 0 = the data table's evaluation batch size"},
    )
