"""The `sam_lml` attention supervisor's config. Defaults: paper Table 7 (CMU-MOSI) unless marked ours."""
from __future__ import annotations

import attrs
from attrs import validators as v

switch = v.instance_of(bool)
non_negative = [v.instance_of(float), v.ge(0.0)]


def _on(help_text: str) -> attrs.Attribute:
    return attrs.field(default=True, validator=switch, metadata={"help": help_text})


def _weight(default: float, help_text: str) -> attrs.Attribute:
    return attrs.field(default=default, validator=non_negative, metadata={"help": help_text})


@attrs.frozen(kw_only=True)
class SamLmlConfig:
    # which attention blocks and which terms (the Table 4 ablations are these switches)
    intra: bool = _on("supervise intra-modal records (Table 4 'Unsupervised Intra-Modal Attention' = false)")
    inter: bool = _on("supervise inter-modal records (Table 4 'Unsupervised Inter-Modal Attention' = false)")
    noise: bool = _on("noise addition: clean keys outscore N(0, 1) keys by gamma1, Eq. 3-4 (intra and inter)")
    augmented_noise: bool = _on("augmented noise: lambda U + (1 - lambda) N outscores N by gamma1, Eq. 5-6")
    decomposition: bool = _on("modality decomposition replacement with its networks and terms, Eq. 7-13 (intra)")
    mi: bool = _on("Eq. 12's Predictor(K^de) vs Predictor(N) term; needs a predictor on the key width (sam_lml fusion)")
    variance: bool = _on("variance constraint on each softmax row, Eq. 14 (intra and inter)")
    context: bool = _on("context constraint: the rho keys nearest the diagonal outscore the row mean, Eq. 15 (intra)")
    mixing: bool = _on("modality mixing on the diagonal, Eq. 26-28 (inter; records with Tq = Tk)")
    # Eq. 29 weights
    alpha: float = _weight(0.005, "weight of noise addition + decomposition replacement, Eq. 29")
    alpha_de: float = _weight(0.01, "weight of the decomposition terms L_or + L_MI + L_re, Eq. 13")
    alpha_mix: float = _weight(0.01, "weight of modality mixing, Eq. 29")
    alpha_c: float = _weight(0.005, "weight of the variance + context constraints, Eq. 29")
    distance_weight: float = _weight(0.005, "alpha inside L_MI, Eq. 10 (the paper reuses Eq. 29's alpha)")
    # margins
    gamma1: float = _weight(1.0, "ranking margin on pre-softmax scores, Eq. 4, 6, 8, 28")
    gamma: float = _weight(0.5, "context margin, Eq. 15")
    beta: float = _weight(0.1, "minimum std of each softmax row, Eq. 14")
    rho: int = attrs.field(default=5, validator=[v.instance_of(int), v.gt(0)],
                           metadata={"help": "keys nearest the diagonal in the context band, Eq. 15"})
    epsilon: float = _weight(0.5, "max mean squared distance between U and K^de, Eq. 10 (ours: not in Table 7)")
    # draws
    noise_std: float = attrs.field(default=1.0, validator=[v.instance_of(float), v.gt(0.0)],
                                   metadata={"help": "std of the Gaussian noise keys N (paper: N(0, 1))"})
    mix_lambda: float = attrs.field(default=0.0, validator=[v.instance_of(float), v.ge(0.0), v.le(1.0)],
                                    metadata={"help": "lambda of Eq. 26; 0 = drawn from U(0, 1) per sample (paper)"})
    decomposition_hidden: int = attrs.field(default=0, validator=[v.instance_of(int), v.ge(0)],
                                            metadata={"help": "hidden width of the Fig. 5 MLPs; 0 = the key width (ours)"})
