"""Which attention records a model emits, found by one dry forward pass at build time.

The supervisor owns one decomposition network per intra-modal record, and its modules must exist
before the optimizer is built; any attention fusion is allowed, so the record names and key widths
are read from the fusion's own output on a one-sample batch of zeros (eval mode, no_grad, CPU).
"""
from __future__ import annotations

import attrs
import torch

import mmcore


@attrs.frozen
class RecordShape:
    name: str
    kind: str
    key_dim: int
    predictor_dim: int | None  # the width FusionOutput.predictor takes (that of `fused`), if any


def dummy_batch(ctx: mmcore.BuildContext) -> mmcore.Batch:
    inputs = {m: torch.zeros(1, *ctx.input_shapes[m]) for m in ctx.modalities}
    masks = {m: torch.ones(1, ctx.input_shapes[m][0], dtype=torch.bool) for m in ctx.modalities if ctx.sequence.get(m)}
    label = torch.zeros(1, dtype=torch.long if ctx.task == "classification" else torch.float32)
    return mmcore.Batch(inputs=inputs, present=torch.ones(1, len(ctx.modalities), dtype=torch.bool),
                        label=label, index=torch.zeros(1, dtype=torch.long), masks=masks)


def discover_records(ctx: mmcore.BuildContext) -> list[RecordShape]:
    model = ctx.model
    flags = [m.training for m in model.modules()]
    model.eval()  # no dropout draws, no BatchNorm statistics moved
    try:
        with torch.no_grad():
            fusion = model(dummy_batch(ctx)).fusion
    finally:
        for module, flag in zip(model.modules(), flags):
            module.train(flag)
    width = None if fusion.predictor is None or fusion.fused is None else int(fusion.fused.shape[-1])
    return [RecordShape(r.name, r.kind, int(r.keys.shape[-1]), width) for r in fusion.attention]
