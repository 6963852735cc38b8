"""`cross_attention` fusion: intra-modal and directed inter-modal attention over sequences.

Every block is written by hand so that attention supervisors can read its pre-softmax scores and
re-score other keys with its own projections (AttentionRecord.score_fn). Per layer and query
modality m there is one block per key modality n: n = m is the intra-modal block "intra/m", n != m
the inter-modal block "inter/m->n". The new state of m is the mean of its blocks' outputs; after
the last layer each modality is mean-pooled over its real steps, the pooled vectors are
concatenated and a Linear head gives the logits.

Masks: a key is visible when it is a real step (padding mask) of a present modality; queries of
padded steps or absent modalities are computed but never pooled, so an absent modality adds
nothing but zeros to the head's input. A query row whose keys are all masked gets all-zero
attention weights (never NaN).
"""
from __future__ import annotations

import math
from typing import Any

import attrs
import torch
from attrs import validators as v
from torch import Tensor, nn

from mmcore.builtin.fusions import pool_steps
from mmcore.interfaces import Fusion
from mmcore.registry import BuildContext, ComponentRegistry
from mmcore.types import AttentionRecord, FusionOutput

positive_int = [v.instance_of(int), v.gt(0)]


def _divisible_by_heads(instance: Any, attribute: attrs.Attribute, heads: int) -> None:
    if instance.d_model % heads:
        raise ValueError(f"d_model ({instance.d_model}) must be divisible by heads ({heads})")


@attrs.frozen(kw_only=True)
class CrossAttentionConfig:
    d_model: int = attrs.field(default=64, validator=positive_int, metadata={"help": "attention width"})
    heads: int = attrs.field(
        default=4,
        validator=[*positive_int, _divisible_by_heads],
        metadata={"help": "attention heads (records hold scores averaged over heads)"},
    )
    layers: int = attrs.field(default=1, validator=positive_int, metadata={"help": "stacked attention layers"})
    ff_multiplier: int = attrs.field(
        default=2, validator=positive_int, metadata={"help": "feed-forward width as a multiple of d_model"}
    )
    dropout: float = attrs.field(
        default=0.1,
        validator=[v.instance_of(float), v.ge(0.0), v.lt(1.0)],
        metadata={"help": "dropout on attention weights, block outputs and feed-forward"},
    )


def masked_softmax(scores: Tensor, key_mask: Tensor) -> Tensor:
    """Softmax over the last axis restricted to visible keys (`key_mask` broadcasts to `scores`).

    Masked keys are filled with the dtype's lowest value rather than -inf, so a row without any
    visible key becomes uniform instead of NaN; multiplying by the mask then zeroes it (and zeroes
    masked keys exactly, which the exp already underflows to 0 in any row with a visible key)."""
    filled = scores.masked_fill(~key_mask, torch.finfo(scores.dtype).min)
    return torch.softmax(filled, dim=-1) * key_mask.to(scores.dtype)


class AttentionBlock(nn.Module):
    """Multi-head attention of queries over keys, then residual + LayerNorm, FFN, residual + LayerNorm."""

    def __init__(self, d_model: int, heads: int, ff_multiplier: int, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.d_head = d_model // heads
        self.scale = 1.0 / math.sqrt(self.d_head)
        self.query = nn.Linear(d_model, d_model)
        # No key bias: it adds q . b_k to every score of a row, which the softmax cancels, so the
        # task loss could never train it.
        self.key = nn.Linear(d_model, d_model, bias=False)
        self.value = nn.Linear(d_model, d_model)
        self.output = nn.Linear(d_model, d_model)
        self.norm_attention = nn.LayerNorm(d_model)
        self.feed_forward = nn.Sequential(
            nn.Linear(d_model, ff_multiplier * d_model),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(ff_multiplier * d_model, d_model),
        )
        self.norm_feed_forward = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)

    def split_heads(self, x: Tensor) -> Tensor:
        """[B, T, D] -> [B, H, T, D / H]."""
        return x.view(x.shape[0], x.shape[1], self.heads, self.d_head).transpose(1, 2)

    def head_scores(self, queries: Tensor, keys: Tensor) -> Tensor:
        """Pre-softmax scores per head, [B, H, Tq, Tk]: (q W_q)(k W_k)^T / sqrt(d_head)."""
        q = self.split_heads(self.query(queries))
        k = self.split_heads(self.key(keys))
        return torch.matmul(q, k.transpose(-1, -2)) * self.scale

    def score(self, queries: Tensor, keys: Tensor) -> Tensor:
        """The record's score function: pre-softmax scores averaged over heads, [B, Tq, Tk]."""
        return self.head_scores(queries, keys).mean(dim=1)

    def forward(self, queries: Tensor, keys: Tensor, key_mask: Tensor) -> tuple[Tensor, Tensor]:
        """Returns the block output [B, Tq, D] and the head-averaged pre-softmax scores [B, Tq, Tk]."""
        scores = self.head_scores(queries, keys)
        weights = masked_softmax(scores, key_mask[:, None, None, :])
        attended = torch.matmul(self.dropout(weights), self.split_heads(self.value(keys)))
        merged = attended.transpose(1, 2).reshape(queries.shape)
        hidden = self.norm_attention(queries + self.dropout(self.output(merged)))
        hidden = self.norm_feed_forward(hidden + self.dropout(self.feed_forward(hidden)))
        return hidden, scores.mean(dim=1)


class CrossAttentionFusion(Fusion):
    provides = frozenset({"attention"})

    def __init__(
        self, modalities: tuple[str, ...], feature_dims: dict[str, int], num_outputs: int, config: CrossAttentionConfig
    ) -> None:
        super().__init__()
        self.modalities = tuple(modalities)
        self.input_projections = nn.ModuleDict({m: nn.Linear(feature_dims[m], config.d_model) for m in self.modalities})

        def block() -> AttentionBlock:
            return AttentionBlock(config.d_model, config.heads, config.ff_multiplier, config.dropout)

        # layers[i][query modality][key modality]
        self.layers = nn.ModuleList(
            nn.ModuleDict({q: nn.ModuleDict({k: block() for k in self.modalities}) for q in self.modalities})
            for _ in range(config.layers)
        )
        self.head = nn.Linear(len(self.modalities) * config.d_model, num_outputs)

    def modality_modules(self, modality: str) -> list[nn.Module]:
        """The input projection and the blocks whose queries come from this modality."""
        return [self.input_projections[modality], *(layer[modality] for layer in self.layers)]

    def embed(
        self, features: dict[str, Tensor], present: Tensor, masks: dict[str, Tensor] | None
    ) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """Per modality: the projected sequence [B, T, d_model] (vectors become length-1 sequences)
        and its visibility mask [B, T] (real step AND modality present)."""
        masks = masks or {}
        states, visible = {}, {}
        for i, m in enumerate(self.modalities):
            x = features[m] if features[m].dim() == 3 else features[m].unsqueeze(1)
            real = masks.get(m) if features[m].dim() == 3 else None
            if real is None:
                real = torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
            states[m] = self.input_projections[m](x)
            visible[m] = real & present[:, i : i + 1]
        return states, visible

    def record_name(self, layer_index: int, query: str, key: str) -> str:
        block = f"intra/{query}" if query == key else f"inter/{query}->{key}"
        return f"layer{layer_index}/{block}" if len(self.layers) > 1 else block

    def attend(
        self, layer_index: int, states: dict[str, Tensor], visible: dict[str, Tensor]
    ) -> tuple[dict[str, Tensor], list[AttentionRecord]]:
        """One layer: every ordered (query, key) block; a modality's new state is its blocks' mean."""
        layer = self.layers[layer_index]
        new_states: dict[str, Tensor] = {}
        records: list[AttentionRecord] = []
        for q in self.modalities:
            outputs = []
            for k in self.modalities:
                block = layer[q][k]
                output, scores = block(states[q], states[k], visible[k])
                outputs.append(output)
                records.append(
                    AttentionRecord(
                        name=self.record_name(layer_index, q, k),
                        kind="intra" if q == k else "inter",
                        query_modality=q,
                        key_modality=k,
                        queries=states[q],
                        keys=states[k],
                        scores=scores,
                        score_fn=block.score,
                        query_mask=visible[q],
                        key_mask=visible[k],
                    )
                )
            new_states[q] = torch.stack(outputs).mean(dim=0)
        return new_states, records

    def forward(self, features, present, masks=None, labels=None, probe=False) -> FusionOutput:
        states, visible = self.embed(features, present, masks)
        records: list[AttentionRecord] = []
        for layer_index in range(len(self.layers)):
            states, layer_records = self.attend(layer_index, states, visible)
            records += layer_records
        fused = torch.cat([pool_steps(states[m], visible[m]) for m in self.modalities], dim=-1)
        return FusionOutput(logits=self.head(fused), attention=records, predictor=self.head, fused=fused)


def build_cross_attention(config: CrossAttentionConfig, ctx: BuildContext) -> CrossAttentionFusion:
    return CrossAttentionFusion(ctx.modalities, ctx.feature_dims, ctx.num_outputs, config)


def register(registry: ComponentRegistry) -> None:
    registry.fusion(
        "cross_attention",
        CrossAttentionConfig,
        build_cross_attention,
        provides={"attention"},
        help="intra- and inter-modal attention blocks (exposing scores), pooled, Linear head",
    )
