"""How much attention noisy keys get: the measurement behind the paper's Figure 3.

For every attention record whose key modality has known noise positions (the `synthetic` dataset's
`batch.extras["noise_positions/<m>"]`), the post-softmax weights of valid query rows are split
between noisy and clean visible keys. The ratio "mean weight of a noisy key / mean weight of a clean
key" is 1 when attention ignores the noise and below 1 when it suppresses it.

Two probes: `input_noise_weights` reads the dataset's noisy input steps (they pass through the
encoder), `FeatureNoiseProbe` replaces a fraction of each sequence's encoder outputs by N(0, 1)
just before the fusion, as the paper's Figure 3 replaces "the features of specific time slices".
"""
from __future__ import annotations

from collections import defaultdict
from typing import Any

import torch
from torch import Tensor

import mmcore
from mmcore_sam_lml.losses import masked_softmax


def noise_weight_sums(record: mmcore.AttentionRecord, noisy_keys: Tensor) -> Tensor:
    """[4]: summed weight on noisy keys, noisy (query, key) pairs, weight on clean keys, clean pairs."""
    every = lambda steps: torch.ones(record.scores.shape[0], steps, dtype=torch.bool, device=noisy_keys.device)  # noqa: E731
    keys_ok = record.key_mask if record.key_mask is not None else every(record.scores.shape[2])
    queries_ok = record.query_mask if record.query_mask is not None else every(record.scores.shape[1])
    weights = masked_softmax(record.scores.float(), keys_ok) * queries_ok[..., None]
    rows = queries_ok.sum(-1).to(weights.dtype)  # valid query rows per sample
    noisy, clean = (noisy_keys & keys_ok).to(weights.dtype), (~noisy_keys & keys_ok).to(weights.dtype)
    received = weights.sum(1)  # [B, Tk]: weight each key receives, summed over query rows
    return torch.stack([(received * noisy).sum(), (noisy.sum(-1) * rows).sum(),
                        (received * clean).sum(), (clean.sum(-1) * rows).sum()])


def record_sums(fusion: mmcore.FusionOutput, positions: dict[str, Tensor]) -> dict[str, Tensor]:
    """noise_weight_sums of every record whose key modality has noise positions."""
    return {r.name: noise_weight_sums(r, positions[r.key_modality]).cpu()
            for r in fusion.attention if r.key_modality in positions}


def input_noise_weights(batch: mmcore.Batch, model: mmcore.MultimodalModel) -> dict[str, Tensor]:
    """A `TrainControl.evaluate` callback: the dataset's noisy input steps (`noise_positions/<m>`)."""
    positions = {k.split("/", 1)[1]: v.bool() for k, v in batch.extras.items() if k.startswith("noise_positions/")}
    return record_sums(model(batch).fusion, positions)


def replaced_steps(mask: Tensor, fraction: float, generator: torch.Generator) -> Tensor:
    """bool [B, T]: round(fraction * length) real steps of each row, chosen uniformly."""
    draws = torch.rand(mask.shape, generator=generator).to(mask.device).masked_fill(~mask, 2.0)
    rank = draws.argsort(dim=1).argsort(dim=1)
    return rank < torch.round(fraction * mask.sum(dim=1, keepdim=True).float())


class FeatureNoiseProbe:
    """A `TrainControl.evaluate` callback: a fraction of the real steps of every sequence modality's
    encoder output replaced by N(0, 1), then the fusion; draws from its own seeded generator."""

    def __init__(self, fraction: float = 0.2, seed: int = 0) -> None:
        self.fraction = fraction
        self.generator = torch.Generator().manual_seed(seed)

    def __call__(self, batch: mmcore.Batch, model: mmcore.MultimodalModel) -> dict[str, Tensor]:
        features = model.encode(batch)
        positions = {}
        for m, mask in batch.masks.items():
            positions[m] = replaced_steps(mask, self.fraction, self.generator)
            noise = torch.randn(features[m].shape, generator=self.generator).to(features[m])
            features[m] = torch.where(positions[m][..., None], noise, features[m])
        fusion = model.fuse(features, model.presence(batch.present), batch.masks)
        return record_sums(fusion, positions)


def noise_attention_ratios(per_batch: list[dict[str, Tensor]]) -> dict[str, Any]:
    """Ratios (noisy-key weight / clean-key weight) per record, and pooled per kind ("intra", "inter", "all")."""
    totals: dict[str, Tensor] = defaultdict(lambda: torch.zeros(4, dtype=torch.float64))
    for sums in per_batch:
        for name, values in sums.items():
            totals[name] += values.double()
            totals[_kind(name)] += values.double()
            totals["all"] += values.double()
    return {name: _ratio(t) for name, t in sorted(totals.items())}


def _kind(name: str) -> str:
    return "inter" if "inter/" in name else "intra"


def _ratio(t: Tensor) -> dict[str, float]:
    noisy = float(t[0] / t[1].clamp_min(1))
    clean = float(t[2] / t[3].clamp_min(1))
    return {"noisy_key_weight": noisy, "clean_key_weight": clean, "ratio": noisy / clean if clean > 0 else float("nan")}
