"""The data-mask strategy in the step: zero random input elements of each tagged row's strong modality.

The draws are made once per micro-batch on pass 0 and reused by later passes (a step owner's
second closure sees the same masked inputs), from a generator the trainer owns and checkpoints.
"""
from __future__ import annotations

from typing import Iterable

import torch
from torch import Tensor

import mmcore
from mmcore_modality_valuation.plans import MASK_TAG

NAMESPACE = "modality_valuation"


def _draw_masks(state: mmcore.StepState, tags: Tensor, modalities: Iterable[str], indices: dict[str, int],
                ratio: float) -> dict[str, Tensor]:
    """bool masks (True = zero this element) for the modalities some row of the plan masks."""
    generator = state.generator(f"{NAMESPACE}/mask")
    masks = {}
    for m in modalities:
        x = state.batch.inputs[m]
        rows = (tags == indices[m]).view(-1, *([1] * (x.dim() - 1)))
        draws = torch.rand(x.shape, generator=generator, device=generator.device).to(x.device)
        masks[m] = rows & (draws < ratio)
    return masks


def mask_strong_inputs(state: mmcore.StepState, masked: Iterable[str], ratio: float) -> None:
    """Replace `state.batch` by one whose tagged rows have part of their strong modality zeroed."""
    tags = state.batch.extras.get(MASK_TAG)
    if tags is None:  # a plain epoch (warm-up): no tags, nothing to mask
        return
    cache = state.private(NAMESPACE)
    key = ("masks", id(state.batch.index))  # the micro-batch, whichever balancer rebuilt its inputs
    if key not in cache:
        indices = {m: i for i, m in enumerate(state.model.modalities)}
        cache[key] = _draw_masks(state, tags, masked, indices, ratio)
    inputs = dict(state.batch.inputs)
    for m, mask in cache[key].items():
        inputs[m] = inputs[m].masked_fill(mask, 0)
    state.batch = state.batch.replace(inputs=inputs)
