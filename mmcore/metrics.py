"""Evaluation metrics, accumulated on device over a pass and computed once at its end.

Classification keeps a confusion matrix on the device (one `bincount` per batch); regression keeps
its flat predictions and truths. Nothing is read back to the host until `compute()`.

Regression follows the MMSA conventions (specs/toolkit-anchors.md, "Label and metric conventions"):
- `acc2_has0` / `f1_has0`: truth >= 0 is positive, prediction >= 0 is positive; weighted F1.
- `acc2_non0` / `f1_non0`: samples with truth == 0 dropped, then truth > 0 versus prediction > 0;
  weighted F1.
- `acc5` / `acc7`: predictions and truths clipped to [-2, 2] / [-3, 3], rounded half to even (as
  numpy does), exact match.
- `mae` and `corr` (Pearson) on the raw predictions.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

TASKS = ("classification", "binary", "regression")


def primary_metric(task: str) -> tuple[str, str]:
    """The validation metric for model selection, and whether higher ("max") or lower is better."""
    _check_task(task)
    return ("mae", "min") if task == "regression" else ("acc", "max")


def default_loss_sum(task: str, logits: Tensor, labels: Tensor) -> Tensor:
    """Summed task loss when the caller passes none: cross-entropy, BCE-with-logits or L1 (MMSA)."""
    if task == "classification":
        return F.cross_entropy(logits.float(), labels.reshape(-1).long(), reduction="sum")
    if task == "binary":
        return F.binary_cross_entropy_with_logits(
            logits.reshape(-1).float(), labels.reshape(-1).float(), reduction="sum"
        )
    return F.l1_loss(logits.reshape(-1).float(), labels.reshape(-1).float(), reduction="sum")


class MetricAccumulator:
    """Collects one evaluation pass. `update` per batch (no host sync); `compute` once at the end.

    `loss_sum` is the batch's summed task loss; when omitted, `default_loss_sum` supplies it, so
    pass it whenever the configured loss differs from the default.
    """

    def __init__(self, task: str, num_outputs: int) -> None:
        _check_task(task)
        if task == "classification" and num_outputs < 2:
            raise ValueError(f"classification needs at least 2 outputs, got {num_outputs}")
        self.task = task
        self.num_outputs = num_outputs
        self.reset()

    def reset(self) -> None:
        self._count = 0
        self._loss_total: Tensor | None = None
        self._confusion: Tensor | None = None  # [C, C]: rows are truths, columns predictions
        self._predictions: list[Tensor] = []
        self._truths: list[Tensor] = []

    @property
    def num_classes(self) -> int:
        return 2 if self.task == "binary" else self.num_outputs

    @torch.no_grad()
    def update(self, logits: Tensor, labels: Tensor, loss_sum: Tensor | None = None) -> None:
        logits, labels = logits.detach(), labels.detach()
        batch = labels.reshape(-1).shape[0]
        if logits.shape[0] != batch:
            raise ValueError(f"{logits.shape[0]} predictions for {batch} labels")
        if loss_sum is None:
            loss_sum = default_loss_sum(self.task, logits, labels)
        loss_sum = loss_sum.detach().to(torch.float64)
        self._loss_total = loss_sum if self._loss_total is None else self._loss_total + loss_sum
        self._count += batch
        if self.task == "regression":
            self._predictions.append(logits.reshape(-1).to(torch.float64))
            self._truths.append(labels.reshape(-1).to(torch.float64))
            return
        if self.task == "binary":
            predicted = (logits.reshape(-1) > 0).long()
        else:
            predicted = logits.argmax(dim=-1)
        self._add_confusion(labels.reshape(-1).long(), predicted)

    def _add_confusion(self, truth: Tensor, predicted: Tensor) -> None:
        classes = self.num_classes
        counts = torch.bincount(truth * classes + predicted, minlength=classes * classes)
        counts = counts.reshape(classes, classes)
        self._confusion = counts if self._confusion is None else self._confusion + counts

    def compute(self) -> dict[str, float]:
        """The task's metrics as floats (nan where undefined, e.g. constant predictions)."""
        if self._count == 0 or self._loss_total is None:
            raise ValueError("no samples were accumulated")
        loss = self._loss_total / self._count
        if self.task == "regression":
            predictions, truths = torch.cat(self._predictions), torch.cat(self._truths)
            named = regression_metrics(predictions, truths)
        else:
            named = classification_metrics(self._confusion)
        named["loss"] = loss
        names = list(named)
        values = torch.stack([named[n].to(torch.float64) for n in names]).tolist()  # one host sync
        return dict(zip(names, values))


def classification_metrics(confusion: Tensor) -> dict[str, Tensor]:
    """Accuracy and macro F1 from a [C, C] confusion matrix (rows truth, columns prediction).

    Macro F1 averages over the classes that occur in the truths or the predictions (as sklearn
    does): a class absent from both has no defined F1 and is left out, not counted as 0.
    """
    confusion = confusion.to(torch.float64)
    accuracy = confusion.diagonal().sum() / confusion.sum()
    f1 = _per_class_f1(confusion)
    occurs = (confusion.sum(0) + confusion.sum(1)) > 0
    macro_f1 = (f1 * occurs).sum() / occurs.sum()
    return {"acc": accuracy, "macro_f1": macro_f1}


def regression_metrics(predictions: Tensor, truths: Tensor) -> dict[str, Tensor]:
    """MMSA regression metrics on flat float tensors (see the module docstring)."""
    mae = (predictions - truths).abs().mean()
    has0 = _binary_metrics(truths >= 0, predictions >= 0)
    nonzero = truths != 0
    non0 = _binary_metrics(truths[nonzero] > 0, predictions[nonzero] > 0)
    return {
        "mae": mae,
        "corr": pearson_correlation(predictions, truths),
        "acc2_has0": has0[0],
        "acc2_non0": non0[0],
        "f1_has0": has0[1],
        "f1_non0": non0[1],
        "acc5": _clipped_rounded_accuracy(predictions, truths, 2.0),
        "acc7": _clipped_rounded_accuracy(predictions, truths, 3.0),
    }


def pearson_correlation(x: Tensor, y: Tensor) -> Tensor:
    """Pearson's r; nan when either input is constant (as numpy's corrcoef)."""
    x, y = x.to(torch.float64), y.to(torch.float64)
    dx, dy = x - x.mean(), y - y.mean()
    return (dx * dy).sum() / torch.sqrt((dx * dx).sum() * (dy * dy).sum())


def _binary_metrics(truth: Tensor, predicted: Tensor) -> tuple[Tensor, Tensor]:
    """Accuracy and support-weighted F1 of boolean truths and predictions (nan when empty)."""
    index = truth.long() * 2 + predicted.long()
    confusion = torch.bincount(index, minlength=4).reshape(2, 2).to(torch.float64)
    total = confusion.sum()
    accuracy = confusion.diagonal().sum() / total
    support = confusion.sum(1)
    weighted_f1 = (_per_class_f1(confusion) * support).sum() / total
    return accuracy, weighted_f1


def _per_class_f1(confusion: Tensor) -> Tensor:
    """F1 = 2TP / (2TP + FP + FN) per class; 0 where the class never occurs (sklearn's default)."""
    true_positive = confusion.diagonal()
    denominator = confusion.sum(0) + confusion.sum(1)  # (TP + FP) + (TP + FN)
    return torch.where(denominator > 0, 2 * true_positive / denominator.clamp_min(1), 0.0)


def _clipped_rounded_accuracy(predictions: Tensor, truths: Tensor, bound: float) -> Tensor:
    rounded_predictions = torch.round(predictions.clamp(-bound, bound))
    rounded_truths = torch.round(truths.clamp(-bound, bound))
    return (rounded_predictions == rounded_truths).to(torch.float64).mean()


def _check_task(task: str) -> None:
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; expected one of {', '.join(TASKS)}")
