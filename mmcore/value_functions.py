"""Built-in value functions for Shapley valuation of modality coalitions.

A value function scores the fusion's output for one coalition:
``fn(logits, label, *, coalition, task_loss) -> Tensor`` returning a per-sample ``[B]`` tensor
(or ``[B, C]`` for logit attributions). ``coalition`` is the tuple of modalities present in this
evaluation (so a plugin can define e.g. v(S) = |S|·1[correct]); ``task_loss(logits, y,
reduction="none")`` is the run's configured loss. Plugins add their own with
``registry.value_function(name, fn)``.

Single-output models (binary classification with one logit, regression) are recognised by the
logits' shape (``[B]`` or ``[B, 1]``): a prediction counts as correct when its sign agrees with the
label's, ``(pred > 0) == (label > 0)``; for binary labels in {0, 1} that is thresholding the
sigmoid at ½.
"""
from __future__ import annotations

from typing import Callable

from torch import Tensor

ValueFunction = Callable[..., Tensor]


def _is_single_output(logits: Tensor) -> bool:
    return logits.dim() == 1 or (logits.dim() == 2 and logits.shape[-1] == 1)


def _flat(t: Tensor, batch: int) -> Tensor:
    return t.reshape(batch)


def accuracy(logits: Tensor, label: Tensor, *, coalition: tuple[str, ...], task_loss: Callable[..., Tensor]) -> Tensor:
    """1.0 where the prediction is right: argmax == label, or sign agreement for one output."""
    batch = logits.shape[0]
    if _is_single_output(logits):
        correct = (_flat(logits, batch) > 0) == (_flat(label, batch) > 0)
    else:
        correct = logits.argmax(-1) == label
    return correct.float()


def true_class_prob(
    logits: Tensor, label: Tensor, *, coalition: tuple[str, ...], task_loss: Callable[..., Tensor]
) -> Tensor:
    """Probability of the true class: softmax gathered at the label; one output: sigmoid of the
    logit for positive labels, one minus it otherwise."""
    batch = logits.shape[0]
    if _is_single_output(logits):
        prob_positive = _flat(logits, batch).float().sigmoid()
        positive = _flat(label, batch) > 0
        return positive.float() * prob_positive + (~positive).float() * (1 - prob_positive)
    probs = logits.float().softmax(-1)
    return probs.gather(-1, label.long().view(batch, 1)).view(batch)


def neg_loss(logits: Tensor, label: Tensor, *, coalition: tuple[str, ...], task_loss: Callable[..., Tensor]) -> Tensor:
    """Minus the run's task loss per sample (losses with extra dims are averaged to one per sample)."""
    per_sample = task_loss(logits, label, reduction="none")
    if per_sample.dim() > 1:
        per_sample = per_sample.reshape(per_sample.shape[0], -1).mean(1)
    return -per_sample


def logits(logits: Tensor, label: Tensor, *, coalition: tuple[str, ...], task_loss: Callable[..., Tensor]) -> Tensor:
    """The logits themselves, [B, C]: Shapley values become per-modality logit attributions (AGM)."""
    return logits if logits.dim() == 2 else logits.reshape(logits.shape[0], 1)


VALUE_FUNCTIONS: dict[str, ValueFunction] = {
    "accuracy": accuracy,
    "true_class_prob": true_class_prob,
    "neg_loss": neg_loss,
    "logits": logits,
}
