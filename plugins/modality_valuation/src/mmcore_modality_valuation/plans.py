"""Epoch plans (TrainControl.plan_epoch entries) for the three enhancement strategies.

- resample (the paper): every row once with all modalities, plus the extra rows, each keeping only
  the modality it re-trains (the model zeroes the others' features via `present`).
- drop (supplement Table 7, our reading): no extra rows; each selected row loses its strong
  modality in place for this epoch.
- mask (supplement Table 7, our reading): no extra rows; each selected row carries a tag naming its
  strong modality, and the balancer zeroes random elements of that modality's input in the step.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

#: per-entry extra under which the mask strategy tags a row with the modality to mask (-1: none)
MASK_TAG = "modality_valuation_mask"

Entry = tuple[int, "tuple[str, ...] | None", "dict[str, Tensor]"]


def originals(rows: int) -> list[Entry]:
    return [(i, None, {}) for i in range(rows)]


def copies_plan(counts: Tensor, modalities: Sequence[str]) -> list[Entry]:
    """Resample (sample level): counts [N, M] copies of row i that keep only modality m."""
    rows = counts.shape[0]
    plan = originals(rows)
    for k, m in enumerate(modalities):
        repeated = torch.repeat_interleave(torch.arange(rows), counts[:, k].clamp_min(0))
        plan += [(i, (m,), {}) for i in repeated.tolist()]
    return plan


def extra_rows_plan(rows: int, drawn: Tensor, keep: str) -> list[Entry]:
    """Resample (modality level): the drawn rows once more, keeping only the weak modality."""
    return originals(rows) + [(i, (keep,), {}) for i in drawn.tolist()]


def selected_strong(phi: Tensor, counts: Tensor) -> tuple[Tensor, Tensor]:
    """Sample level, drop and mask: (selected [N] bool, strong [N] long). A row is selected when
    its weakest modality would get copies and some other modality contributes strictly more; the
    strong modality is the one with the largest value (ties: the first)."""
    weak, strong = phi.argmin(1), phi.argmax(1)
    wants_copies = counts.gather(1, weak.view(-1, 1)).view(-1) > 0
    return wants_copies & (phi.max(1).values > phi.min(1).values), strong


def altered_plan(strategy: str, selected: Tensor, strong: Tensor, modalities: Sequence[str]) -> list[Entry]:
    """Drop or mask: one entry per row; selected rows lose (drop) or are tagged with (mask) their
    strong modality."""
    if strategy == "drop":
        keeps = [tuple(m for m in modalities if m != dropped) for dropped in modalities]
        return [(i, keeps[s] if chosen else None, {})
                for i, (chosen, s) in enumerate(zip(selected.tolist(), strong.tolist()))]
    if strategy == "mask":
        tags = torch.where(selected, strong, torch.full_like(strong, -1))
        return [(i, None, {MASK_TAG: tag}) for i, tag in enumerate(tags.unbind(0))]
    raise ValueError(f"altered_plan handles drop and mask, not {strategy!r}")

