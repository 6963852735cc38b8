"""The `agm` balancer's configuration: the keys of its [[balancers]] table."""
from __future__ import annotations

from attrs import field, frozen
from attrs import validators as v

REFERENCES = ("cumulative", "ema")
DROP_LEVELS = ("input", "feature")
METHODS = ("auto", "exact", "permutation")
EXACT_UP_TO = 3  # "auto": exact Shapley for M = 2, 3 (the official code's cases), Monte-Carlo beyond


@frozen(kw_only=True)
class AGMConfig:
    alpha: float = field(
        default=1.0, validator=[v.instance_of(float), v.ge(0.0)],
        metadata={"help": "kappa = exp(alpha * min(rbar - r, cap)) (code default 1.0; authors: 1.5 CREMA-D, "
                          "2.5 AV-MNIST, 4.0 UR-Funny)"},
    )
    cap: float = field(
        default=10.0, validator=[v.instance_of(float), v.gt(0.0)],
        metadata={"help": "upper cap on rbar - r (official CREMA-D: 10; inf = no cap, as AVE/AV-MNIST/MOSEI)"},
    )
    start_epoch: int = field(
        default=0, validator=[v.instance_of(int), v.ge(0)],
        metadata={"help": "first modulated epoch (0-based, inclusive); kappa = 1 outside the window"},
    )
    end_epoch: int | None = field(
        default=None, validator=v.optional([v.instance_of(int), v.ge(0)]),
        metadata={"help": "last modulated epoch (inclusive); unset = the whole run, as the authors ran it"},
    )
    reference: str = field(
        default="cumulative", validator=v.in_(REFERENCES),
        metadata={"help": "cumulative: the official 1/t running mean of the scores; ema: an exponential "
                          "moving average (not official)"},
    )
    ema_decay: float = field(
        default=0.99, validator=[v.instance_of(float), v.gt(0.0), v.lt(1.0)],
        metadata={"help": "reference = 'ema' only: Sbar <- decay * Sbar + (1 - decay) * s"},
    )
    drop_at: str = field(
        default="input", validator=v.in_(DROP_LEVELS),
        metadata={"help": "how a coalition mutes a modality: input (zero input, the official code) or "
                          "feature (zeroed encoder features)"},
    )
    method: str = field(
        default="auto", validator=v.in_(METHODS),
        metadata={"help": "Shapley over coalitions: exact (2^M - 1 passes), permutation (Monte-Carlo), "
                          "auto (exact for M <= 3)"},
    )
    samples: int = field(
        default=8, validator=[v.instance_of(int), v.ge(1)],
        metadata={"help": "random modality orderings per step (permutation)"},
    )
    clip: bool = field(
        default=True, validator=v.instance_of(bool),
        metadata={"help": "official conditional clipping: if a fusion weight gradient entry leaves "
                          "[-clip_threshold, clip_threshold], clip the total gradient norm to clip_max_norm"},
    )
    clip_threshold: float = field(
        default=1.0, validator=[v.instance_of(float), v.gt(0.0)],
        metadata={"help": "entry bound that triggers clipping (official CREMA-D: 1.0)"},
    )
    clip_max_norm: float = field(
        default=1.0, validator=[v.instance_of(float), v.gt(0.0)],
        metadata={"help": "max total gradient norm when triggered (official CREMA-D: 1.0; UR-Funny: 5.0)"},
    )

    def in_window(self, epoch: int) -> bool:
        return self.start_epoch <= epoch and (self.end_epoch is None or epoch <= self.end_epoch)

    def shapley_method(self, num_modalities: int) -> str:
        if self.method == "auto":
            return "exact" if num_modalities <= EXACT_UP_TO else "permutation"
        return self.method
