"""The classes prototypes are kept for: the labels themselves, or discretised regression scores.

Prototypes need discrete classes. For regression (MOSI/MOSEI scores in [-3, 3]) the official code
sets one class, so only samples labelled exactly 0 ever update the bank (spec §3.2, a bug we do not
port); we discretise instead: K = 2 splits negative from non-negative scores (the Acc-2 has-zero
convention), K = 7 rounds the clamped score to the seven sentiment levels (the Acc-7 convention).
"""
from __future__ import annotations

import torch
from torch import Tensor

REGRESSION_CLASSES = (2, 7)


def num_prototype_classes(task: str, num_outputs: int, regression_classes: int) -> int:
    if task == "regression":
        return regression_classes
    if task == "binary":
        return 2
    return num_outputs


def class_ids(labels: Tensor, task: str, regression_classes: int) -> Tensor:
    """Long [B] class index of every sample's prototype."""
    labels = labels.reshape(labels.shape[0])
    if task == "classification":
        return labels.long()
    if task == "binary":
        return (labels > 0.5).long()
    if regression_classes == 2:
        return (labels >= 0).long()
    return torch.round(labels.float().clamp(-3.0, 3.0)).long() + 3
