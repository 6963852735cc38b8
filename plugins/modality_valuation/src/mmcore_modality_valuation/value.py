"""The characteristic function v(S) = |S|·1[correct] and per-sample Shapley values of a split.

Valuation probes the fusion on cached encoder features (`mmcore.value_modalities`): one encoder
pass per batch, then one head pass per coalition, in eval mode under `no_grad` (via
`TrainControl.evaluate`). Absent modalities are zeroed at the feature level, as in the official code.
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import Tensor

import mmcore

VALUE_FUNCTION = "coalition_size_accuracy"


def coalition_size_accuracy(logits: Tensor, label: Tensor, *, coalition: tuple[str, ...],
                            task_loss: Callable[..., Tensor]) -> Tensor:
    """|S| where the coalition's prediction is right, else 0: with it the Shapley values of a
    correctly classified sample sum to M, so each modality's fair share is 1."""
    correct = mmcore.VALUE_FUNCTIONS["accuracy"](logits, label, coalition=coalition, task_loss=task_loss)
    return correct * len(coalition)


def valuate(control: mmcore.TrainControl, subset: Sequence[int] | Tensor | None = None, batch_size: int | None = None,
            method: str = "exact", samples: int = 64, generator: torch.Generator | None = None,
            split: str = "train") -> tuple[Tensor, Tensor]:
    """Per-sample Shapley values of the rows `subset` of `split` (all rows when None).

    Returns (rows [n], φ [n, M]) on the CPU, one entry per evaluated row in `subset` order
    (a row drawn twice is evaluated and returned twice).
    """

    def per_batch(batch: mmcore.Batch, model: mmcore.MultimodalModel) -> tuple[Tensor, Tensor]:
        features = model.encode(batch)  # once; every coalition is a head pass on these
        values = mmcore.value_modalities(
            model, features, batch.present, batch.masks, batch.label, coalition_size_accuracy, control.task_loss,
            per="sample", method=method, samples=samples, generator=generator,
        )
        return batch.index, values.values

    results = control.evaluate(split, per_batch, subset=subset, batch_size=batch_size)
    rows = torch.cat([index.cpu() for index, _ in results])
    phi = torch.cat([values.float().cpu() for _, values in results])
    return rows, phi
