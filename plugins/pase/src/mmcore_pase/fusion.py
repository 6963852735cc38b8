"""The `pase` fusion: prototype-gated fusion (PGF) with entropy-guided modality weights, and the
prototype losses PCL and CAL as auxiliary losses (spec §3.2–3.4).

Per modality m (features pooled over real time steps for sequences):
  u^m = P_m h^m                         projection to a common size D (prototypes live here)
  s^m = similarity(u^m, prototypes^m)   label-free, the same rule in training and test
  g^m = σ(MLP_m(s^m))                   the prototype gate (MLP 1 → 16 → 1, as in the official code)
  ω_m ∝ exp(−H(p^m)/T) over present m   p^m = softmax_k(cos(u^m, c_k^m)/τ), the prototype classifier
  z = Σ_m ω_m g^m u^m,  logits = W z + b
In training (labels given, not a probe) it returns λ·L_PCL and μ·L_CAL in `aux_losses`, computed
against the prototypes as they were before this batch, then EMA-updates the prototype buffers under
no_grad. In evaluation and as a probe it updates nothing and returns no losses.
"""
from __future__ import annotations

import attrs
import torch
from attrs import validators as v
from torch import Tensor, nn

import mmcore
from mmcore_pase import alignment, prototypes
from mmcore_pase.sinkhorn import GRADIENTS, SinkhornOptions
from mmcore_pase.classes import REGRESSION_CLASSES, class_ids, num_prototype_classes

_positive = [v.instance_of(int), v.gt(0)]
_fraction = [v.instance_of(float), v.ge(0.0), v.lt(1.0)]
_nonnegative = [v.instance_of(float), v.ge(0.0)]
_strictly_positive = [v.instance_of(float), v.gt(0.0)]


@attrs.frozen(kw_only=True)
class PaSEFusionConfig:
    dim: int | None = attrs.field(
        default=None, validator=v.optional(_positive),
        metadata={"help": "common size of u^m and the prototypes; default: the largest feature size"})
    momentum: float = attrs.field(
        default=0.98, validator=_fraction, metadata={"help": "prototype EMA gamma (paper, code)"})
    temperature: float = attrs.field(
        default=0.1, validator=_strictly_positive,
        metadata={"help": "tau of cos/tau in the InfoNCE, the gate and the entropy weights (spec; not in the paper)"})
    pcl_weight: float = attrs.field(
        default=0.01, validator=_nonnegative, metadata={"help": "lambda on L_PCL (supplement); 0 = without PCL"})
    pcl_loss: str = attrs.field(
        default="infonce", validator=v.in_(("infonce", "mse")),
        metadata={"help": "infonce (paper) | mse (official code: feature to class prototype)"})
    cal_weight: float = attrs.field(
        default=0.1, validator=_nonnegative, metadata={"help": "mu on L_CAL (supplement); 0 = without CAL"})
    cal_alpha: float = attrs.field(
        default=0.1, validator=_nonnegative, metadata={"help": "alpha on the consistency term L_reg (paper, code)"})
    cal_beta: float = attrs.field(
        default=0.05, validator=_nonnegative, metadata={"help": "beta on the structure term Omega (paper, code)"})
    cal_prototypes: str = attrs.field(
        default="fresh", validator=v.in_(("fresh", "batch")),
        metadata={"help": "what CAL differentiates: fresh = gamma sg(c) + (1 - gamma) batch mean (spec) | "
                          "batch = the batch class means"})
    plan_gradient: str = attrs.field(
        default="implicit", validator=v.in_(GRADIENTS),
        metadata={"help": "implicit = exact gradient at the OT solution (ours) | unrolled = autograd through "
                          "the iterations | envelope = plans detached, only L_match trains"})
    normalise_cost: bool = attrs.field(
        default=True, validator=v.instance_of(bool),
        metadata={"help": "OT cost on L2-normalised prototypes (spec) | false = raw squared distance (code)"})
    structure_target: str = attrs.field(
        default="scaled", validator=v.in_(("scaled", "identity")),
        metadata={"help": "Omega's target plan: scaled = diag(marginal) (spec) | identity = I (code)"})
    sinkhorn_epsilon: float = attrs.field(
        default=0.05, validator=_strictly_positive, metadata={"help": "entropic regulariser (code)"})
    sinkhorn_iterations: int = attrs.field(
        default=200, validator=_positive, metadata={"help": "Sinkhorn iterations (code)"})
    gate_similarity: str = attrs.field(
        default="max", validator=v.in_(("max", "soft")),
        metadata={"help": "max = max_k cos (the code's label-free rule) | soft = cos expected under softmax(cos/tau)"})
    gate_hidden: int = attrs.field(
        default=16, validator=_positive, metadata={"help": "hidden units of the gate MLP 1 -> h -> 1 (code)"})
    entropy_weights: bool = attrs.field(
        default=True, validator=v.instance_of(bool),
        metadata={"help": "weight modalities by exp(-H/T) (spec), H of their prototype classifier (ours) | "
                          "false = mean over the present ones"})
    entropy_temperature: float = attrs.field(
        default=1.0, validator=_strictly_positive, metadata={"help": "T of the entropy weights (spec)"})
    regression_classes: int = attrs.field(
        default=2, validator=v.in_(REGRESSION_CLASSES),
        metadata={"help": "regression: 2 = negative / non-negative, 7 = rounded score in [-3, 3] (spec)"})


class PaSEFusion(mmcore.Fusion):
    provides = frozenset({"labels_in_fusion"})

    def __init__(self, config: PaSEFusionConfig, modalities: tuple[str, ...], feature_dims: dict[str, int],
                 num_outputs: int, task: str) -> None:
        super().__init__()
        self.config, self.task, self.modalities = config, task, tuple(modalities)
        dim = config.dim if config.dim is not None else max(feature_dims.values())
        self.num_classes = num_prototype_classes(task, num_outputs, config.regression_classes)
        self.projections = nn.ModuleDict({m: nn.Linear(feature_dims[m], dim) for m in self.modalities})
        self.gates = nn.ModuleDict({m: _gate(config.gate_hidden) for m in self.modalities})
        self.head = nn.Linear(dim, num_outputs)
        self.register_buffer("prototypes", torch.zeros(len(self.modalities), self.num_classes, dim))
        self.register_buffer("initialised", torch.zeros(len(self.modalities), self.num_classes, dtype=torch.bool))
        self.sinkhorn = SinkhornOptions(config.sinkhorn_epsilon, config.sinkhorn_iterations, config.plan_gradient)

    def modality_modules(self, modality: str) -> list[nn.Module]:
        return [self.projections[modality], self.gates[modality]]

    def forward(self, features, present, masks=None, labels=None, probe=False) -> mmcore.FusionOutput:
        masks = masks or {}
        projected = torch.stack([self.projections[m](_pooled(features[m], masks.get(m))) for m in self.modalities])
        u = projected.float()  # prototype geometry in float32, also under autocast
        cosines = prototypes.cosine_table(u, self.prototypes)
        logits_k = prototypes.prototype_logits(cosines, self.initialised, self.config.temperature)
        similarity = prototypes.gate_similarity(logits_k, cosines, self.initialised, self.config.gate_similarity)
        gates = torch.stack([self.gates[m](similarity[i].unsqueeze(-1)) for i, m in enumerate(self.modalities)])
        weights = self._modality_weights(logits_k, present)
        fused = (weights.unsqueeze(-1) * gates * u).sum(0).to(projected.dtype)
        aux: dict[str, Tensor] = {}
        if self.training and not probe and labels is not None:
            classes = class_ids(labels, self.task, self.config.regression_classes)
            aux = self._learn_prototypes(u, present, classes, logits_k)
        return mmcore.FusionOutput(logits=self.head(fused), aux_losses=aux, predictor=self.head, fused=fused)

    def _modality_weights(self, logits_k: Tensor, present: Tensor) -> Tensor:
        """ω [M, B]: a softmax over the present modalities of −H/T (or uniform over them); zero for
        absent ones, and zero everywhere for a sample without any modality."""
        mask = present.t()
        if self.config.entropy_weights:
            scores = -prototypes.prediction_entropy(logits_k) / self.config.entropy_temperature
        else:
            scores = torch.zeros(mask.shape, device=logits_k.device)
        scores = torch.where(mask, scores, torch.full_like(scores, prototypes.MASKED))
        return scores.softmax(0) * mask

    def _learn_prototypes(self, u: Tensor, present: Tensor, classes: Tensor, logits_k: Tensor) -> dict[str, Tensor]:
        cfg = self.config
        means, counts = prototypes.global_statistics(u, present, classes, self.num_classes)
        aux = {}
        if cfg.pcl_weight > 0:
            aux["pase/pcl"] = cfg.pcl_weight * self._calibration(u, present, classes, logits_k).sum()
        if cfg.cal_weight > 0 and len(self.modalities) > 1:
            fresh, valid = alignment.fresh_prototypes(self.prototypes, self.initialised, means, counts,
                                                      cfg.momentum, cfg.cal_prototypes)
            aux["pase/cal"] = cfg.cal_weight * self._inter_losses(fresh, valid).sum()
        with torch.no_grad():  # new tensors, not in-place: the old buffers are saved for backward
            self.prototypes, self.initialised = prototypes.ema_prototypes(
                self.prototypes, self.initialised, means.detach(), counts, cfg.momentum)
        return aux

    def _calibration(self, u: Tensor, present: Tensor, classes: Tensor, logits_k: Tensor) -> Tensor:
        if self.config.pcl_loss == "mse":
            return prototypes.mse_loss(u, self.prototypes, classes, present, self.initialised)
        return prototypes.infonce_loss(logits_k, classes, present, self.initialised)

    def _inter_losses(self, protos: Tensor, valid: Tensor) -> Tensor:
        cfg = self.config
        terms = alignment.alignment_terms(protos, valid, self.sinkhorn, cfg.normalise_cost, cfg.structure_target)
        return alignment.inter_losses(terms, cfg.cal_alpha, cfg.cal_beta)

    @torch.no_grad()
    def prototype_geometry(self) -> tuple[Tensor, Tensor]:
        """From the buffers only: L_inter per modality pair [P] (pairs in `alignment.modality_pairs`
        order) and Var(c^m) [M] — the inputs of the official SGM utility proxy."""
        if len(self.modalities) < 2:
            return self.prototypes.new_zeros(0), prototypes.prototype_variance(self.prototypes, self.initialised)
        inter = self._inter_losses(self.prototypes, self.initialised)
        return inter, prototypes.prototype_variance(self.prototypes, self.initialised)


def _gate(hidden: int) -> nn.Module:
    return nn.Sequential(nn.Linear(1, hidden), nn.ReLU(), nn.Linear(hidden, 1), nn.Sigmoid())


def _pooled(features: Tensor, mask: Tensor | None) -> Tensor:
    """[B, T, D] -> [B, D] mean over real steps; vectors pass through."""
    if features.dim() == 2:
        return features
    if mask is None:
        return features.mean(1)
    weights = mask.to(features.dtype).unsqueeze(-1)
    return (features * weights).sum(1) / weights.sum(1).clamp_min(1.0)


def build_pase_fusion(config: PaSEFusionConfig, ctx: mmcore.BuildContext) -> PaSEFusion:
    return PaSEFusion(config, ctx.modalities, ctx.feature_dims, ctx.num_outputs, ctx.task)
