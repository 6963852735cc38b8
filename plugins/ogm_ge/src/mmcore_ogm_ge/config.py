"""The `ogm_ge` balancer's configuration: the keys of its [[balancers]] table."""
from __future__ import annotations

from attrs import field, frozen
from attrs import validators as v

VARIANTS = ("paper", "shifted")
SCOPES = ("encoder", "conv", "modality")
LOGIT_SOURCES = ("auto", "unimodal", "probe")
RATIO_RULES = ("pairwise_mean", "weakest")


@frozen(kw_only=True)
class OGMGEConfig:
    alpha: float = field(
        default=0.8, validator=[v.instance_of(float), v.ge(0.0)],
        metadata={"help": "modulation strength alpha (official README: 0.8 CREMA-D, 0.1 VGGSound)"},
    )
    variant: str = field(
        default="paper", validator=v.in_(VARIANTS),
        metadata={"help": "paper: k = 1 - tanh(alpha*rho) for rho > 1 (Eq. 10); "
                          "shifted: k = 1 - tanh(alpha*max(rho - 1, 0)) (code before Apr 2022)"},
    )
    ge: bool = field(
        default=True, validator=v.instance_of(bool),
        metadata={"help": "add GE noise N(0, std(g)^2) to every modulated tensor in the window; false = plain OGM"},
    )
    start_epoch: int = field(
        default=0, validator=[v.instance_of(int), v.ge(0)],
        metadata={"help": "first modulated epoch (0-based, inclusive)"},
    )
    end_epoch: int | None = field(
        default=50, validator=v.optional([v.instance_of(int), v.ge(0)]),
        metadata={"help": "last modulated epoch (inclusive; official default 50); unset = to the end"},
    )
    scope: str = field(
        default="encoder", validator=v.in_(SCOPES),
        metadata={"help": "encoder: all encoder parameters; conv: conv weights only (official); "
                          "modality: encoder plus the fusion's per-modality parts"},
    )
    logits: str = field(
        default="auto", validator=v.in_(LOGIT_SOURCES),
        metadata={"help": "per-modality logits: unimodal (the fusion's split heads), probe (fusion with only m "
                          "present, on cached features), auto (unimodal where the fusion has them, else probe)"},
    )
    ratio: str = field(
        default="pairwise_mean", validator=v.in_(RATIO_RULES),
        metadata={"help": "M > 2: pairwise_mean rho_m = mean_k S_m/S_k (maintainer, issue #16); "
                          "weakest rho_m = S_m / min_k S_k (BalanceBenchmark); both give the same k for M = 2"},
    )

    def in_window(self, epoch: int) -> bool:
        return self.start_epoch <= epoch and (self.end_epoch is None or epoch <= self.end_epoch)
