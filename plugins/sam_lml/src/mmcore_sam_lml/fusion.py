"""`sam_lml` fusion: SAM-LML's attention stack (paper Eq. 1-2 and 16-25).

Per modality m: U_m is the encoder's output f_m when it is d wide (as in the paper, Eq. 30-31), else
LN(f_m W_in); then intra-modal
self-attention X_m = LN(Softmax(U_m W_q (U_m W_k)^T / sqrt(d)) U_m W_v) (Eq. 1-2). For each ordered
pair m1 != m2, directed inter-modal attention with m1's projections, X_{m1,m2} = LN(Softmax(A_{m1,m2})
X_{m2} W_{m1,v}) (Eq. 16-17); X_{m1,M} is the mean of every row of every X_{m1,m2} (Eq. 18-19); a
learnable query pools the X_{m1,M} over modalities, X = LN(Softmax(A_M) X_hat W_v) (Eq. 20-22); the
predictor gives p from X (Eq. 23) and p_{m1,M} from each X_{m1,M}, whose losses join the task loss
weighted alpha_p / |M| (Eq. 24-25, the aux loss "sam_lml/cross_modal").

Masks: keys are real steps of present modalities. An absent modality's features arrive zeroed, so
its queries are a constant learned vector: its rows of X_{m1,m2} still gather the present
modalities' values (the paper feeds noise for a missing modality instead; README "Missing
modalities"). A row counts in Eq. 19 when its query step is real and the key modality has a visible
key; an X_{m1,M} with no such row is masked out of the pooling and of its predictive loss.
"""
from __future__ import annotations

import functools
import math
from typing import Callable

import attrs
import torch
import torch.nn.functional as F
from attrs import validators as v
from torch import Tensor, nn

import mmcore
from mmcore_sam_lml.losses import masked_softmax

positive_int = [v.instance_of(int), v.gt(0)]


def _divisible_by_heads(instance: object, attribute: attrs.Attribute, heads: int) -> None:
    if instance.d_model % heads:  # type: ignore[attr-defined]
        raise ValueError(f"d_model ({instance.d_model}) must be divisible by heads ({heads})")  # type: ignore[attr-defined]


@attrs.frozen(kw_only=True)
class SamLmlFusionConfig:
    d_model: int = attrs.field(default=120, validator=positive_int,
                               metadata={"help": "shared width d (paper Table 7: 120 on CMU-MOSI)"})
    heads: int = attrs.field(default=1, validator=[*positive_int, _divisible_by_heads],
                             metadata={"help": "attention heads (Eq. 1 is single-head); records average heads"})
    dropout: float = attrs.field(default=0.0, validator=[v.instance_of(float), v.ge(0.0), v.lt(1.0)],
                                 metadata={"help": "dropout on attention weights (not in the paper)"})
    input_projection: str = attrs.field(
        default="auto", validator=v.in_(("auto", "always")),
        metadata={"help": "auto: Linear + LayerNorm only for features not d_model wide (U_m is the unimodal "
                          "network's output, Eq. 30-31); always: every modality"})
    alpha_p: float = attrs.field(default=1.0, validator=[v.instance_of(float), v.ge(0.0)],
                                 metadata={"help": "weight of the cross-modal predictive losses, Eq. 25 (Table 7 MOSI: 1)"})


class ScaledAttention(nn.Module):
    """LN(Softmax(q W_q (k W_k)^T / sqrt(d_head)) k W_v): Eq. 1-2 and 16-17 (no biases, as written)."""

    def __init__(self, d_model: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads, self.d_head = heads, d_model // heads
        self.query = nn.Linear(d_model, d_model, bias=False)
        self.key = nn.Linear(d_model, d_model, bias=False)
        self.value = nn.Linear(d_model, d_model, bias=False)
        self.norm = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)

    def split(self, x: Tensor) -> Tensor:
        return x.view(x.shape[0], x.shape[1], self.heads, self.d_head).transpose(1, 2)

    def head_scores(self, queries: Tensor, keys: Tensor) -> Tensor:
        q, k = self.split(self.query(queries)), self.split(self.key(keys))
        return q @ k.transpose(-1, -2) / math.sqrt(self.d_head)

    def score(self, queries: Tensor, keys: Tensor) -> Tensor:
        """The records' score_fn: pre-softmax scores averaged over heads, [B, Tq, Tk]."""
        return self.head_scores(queries, keys).mean(1)

    def forward(self, queries: Tensor, keys: Tensor, key_mask: Tensor) -> tuple[Tensor, Tensor]:
        scores = self.head_scores(queries, keys)
        weights = masked_softmax(scores.flatten(0, 1), key_mask.repeat_interleave(self.heads, 0))
        weights = self.dropout(weights.view_as(scores))
        attended = (weights @ self.split(self.value(keys))).transpose(1, 2).reshape(queries.shape)
        return self.norm(attended), scores.mean(1)


class SamLmlFusion(mmcore.Fusion):
    provides = frozenset({"attention", "labels_in_fusion"})

    def __init__(self, modalities: tuple[str, ...], feature_dims: dict[str, int], num_outputs: int,
                 task_loss: Callable[..., Tensor], config: SamLmlFusionConfig) -> None:
        super().__init__()
        self.modalities = tuple(modalities)
        self.alpha_p = config.alpha_p
        self.task_loss = functools.partial(task_loss, reduction="none")  # the run's task loss, per sample (Eq. 25)
        d = config.d_model

        def projection(m: str) -> nn.Module:
            if config.input_projection == "auto" and feature_dims[m] == d:
                return nn.Identity()  # feature-level noise (Eq. 35) then lands on U_m itself
            # the LayerNorm gives U_m the unit scale of the N(0, 1) keys the supervisor ranks it against
            return nn.Sequential(nn.Linear(feature_dims[m], d), nn.LayerNorm(d))

        self.input_projections = nn.ModuleDict({m: projection(m) for m in self.modalities})
        self.intra = nn.ModuleDict({m: ScaledAttention(d, config.heads, config.dropout) for m in self.modalities})
        # W_{m1,qM}, W_{m1,kM}, W_{m1,vM}: one inter-modal block per query modality, shared over its keys
        self.inter = nn.ModuleDict({m: ScaledAttention(d, config.heads, config.dropout) for m in self.modalities})
        self.pool_query = nn.Parameter(torch.randn(1, 1, d) / math.sqrt(d))  # Q of Eq. 21
        self.pool = ScaledAttention(d, 1, 0.0)  # W_{M,q}, W_{M,k}, W_{M,v} and the LN of Eq. 22
        self.predictor = nn.Linear(d, num_outputs)  # theta_pre, shared by Eq. 23 and 24

    def modality_modules(self, modality: str) -> list[nn.Module]:
        return [self.input_projections[modality], self.intra[modality], self.inter[modality]]

    def embed(self, features, present, masks):
        """U_m [B, T, d] (vectors become one-step sequences), real steps and visible keys, bool [B, T]."""
        masks = masks or {}
        units, real, visible = {}, {}, {}
        for i, m in enumerate(self.modalities):
            x = features[m] if features[m].dim() == 3 else features[m].unsqueeze(1)
            steps = masks.get(m) if features[m].dim() == 3 else None
            real[m] = steps if steps is not None else torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
            units[m] = self.input_projections[m](x)
            visible[m] = real[m] & present[:, i : i + 1]
        return units, real, visible

    def forward(self, features, present, masks=None, labels=None, probe=False) -> mmcore.FusionOutput:
        units, real, visible = self.embed(features, present, masks)
        records: list[mmcore.AttentionRecord] = []
        states = {}
        for m in self.modalities:  # Eq. 1-2
            states[m], scores = self.intra[m](units[m], units[m], visible[m])
            records.append(self.record(f"intra/{m}", "intra", m, m, units[m], units[m], scores, self.intra[m], visible))
        cross, valid = self.cross_modal(states, real, visible, records)
        fused = self.pool_modalities(cross, valid)
        output = mmcore.FusionOutput(logits=self.predictor(fused), attention=records,
                                     predictor=self.predictor, fused=fused)
        if labels is not None and not probe and self.alpha_p > 0:
            output.aux_losses["sam_lml/cross_modal"] = self.cross_modal_loss(cross, valid, labels)
        return output

    def cross_modal(self, states, real, visible, records):
        """Eq. 16-19: X_{m1,M} [B, M, d] and whether each has a counted row, bool [B, M]."""
        pooled, valid = [], []
        for m1 in self.modalities:
            total, rows = 0.0, 0.0
            for m2 in self.modalities:
                if m2 == m1:
                    continue
                out, scores = self.inter[m1](states[m1], states[m2], visible[m2])
                records.append(self.record(f"inter/{m1}->{m2}", "inter", m1, m2, states[m1], states[m2], scores,
                                           self.inter[m1], visible))
                counted = (real[m1] & visible[m2].any(-1, keepdim=True)).to(out.dtype)[..., None]
                total, rows = total + (out * counted).sum(1), rows + counted.sum(1)
            pooled.append(total / rows.clamp_min(1.0))
            valid.append(rows[:, 0] > 0)
        return torch.stack(pooled, 1), torch.stack(valid, 1)

    def pool_modalities(self, cross: Tensor, valid: Tensor) -> Tensor:
        """Eq. 20-22: learnable-query attention over the X_{m1,M}, [B, d]."""
        query = self.pool_query.expand(cross.shape[0], 1, -1)
        fused, _ = self.pool(query, cross, valid)
        return fused[:, 0]

    def cross_modal_loss(self, cross: Tensor, valid: Tensor, labels: Tensor) -> Tensor:
        """Eq. 25's second term: alpha_p / |M| * sum over m1 of Loss(Predictor(X_{m1,M}), y)."""
        total = cross.new_zeros(())
        for i in range(len(self.modalities)):
            losses = self.task_loss(self.predictor(cross[:, i]), labels)
            weights = valid[:, i].to(losses.dtype)
            total = total + (losses * weights).sum() / weights.sum().clamp_min(1.0)
        return self.alpha_p / len(self.modalities) * total

    @staticmethod
    def record(name, kind, query, key, queries, keys, scores, block, visible) -> mmcore.AttentionRecord:
        return mmcore.AttentionRecord(name=name, kind=kind, query_modality=query, key_modality=key,
                                      queries=queries, keys=keys, scores=scores, score_fn=block.score,
                                      query_mask=visible[query], key_mask=visible[key])


def build_sam_lml_fusion(config: SamLmlFusionConfig, ctx: mmcore.BuildContext) -> SamLmlFusion:
    if ctx.task_loss is None:
        raise RuntimeError("sam_lml's fusion needs the run's task loss (BuildContext.task_loss), which the Trainer sets")
    if len(ctx.modalities) < 2:
        raise mmcore.ConfigError(f"$.fusion.kind: sam_lml needs at least two modalities, got {list(ctx.modalities)}")
    return SamLmlFusion(tuple(ctx.modalities), ctx.feature_dims, ctx.num_outputs, ctx.task_loss, config)
