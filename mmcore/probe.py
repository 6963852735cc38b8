"""Linear probes on frozen encoder features: `probe_acc/<m>` in DESIGN.md section 6.

A probe asks how much task information one modality's encoder carries on its own, independent of
the fusion head: fit a linear model on the train split's features, score it on another split.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from mmcore.metrics import TASKS

PROBE_WEIGHT_DECAY = 1e-4


@torch.no_grad()
def linear_probe_accuracy(
    train_features: Tensor,
    train_labels: Tensor,
    eval_features: Tensor,
    eval_labels: Tensor,
    num_classes: int,
    task: str,
    steps: int = 100,
    seed: int = 0,
) -> float:
    """Fit a linear probe on train features and return its score on the eval features.

    Classification and binary tasks: multinomial logistic regression (full-batch L-BFGS, L2 weight
    decay 1e-4), scored by accuracy. Regression: ridge regression (closed form, same penalty),
    scored by MAE. Features are flattened per sample and standardised with train statistics.

    The objective is convex and solved from a zero start with full batches, so the result is
    deterministic and `seed` has no effect; it is kept so that a stochastic solver can be added
    without changing callers.
    """
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; expected one of {', '.join(TASKS)}")
    dtype = torch.float64 if train_features.device.type == "cpu" else torch.float32
    train_x, eval_x = _standardised(train_features, eval_features, dtype)
    if task == "regression":
        return _ridge_mae(train_x, train_labels, eval_x, eval_labels)
    classes = max(num_classes, 2)  # a binary task's single logit becomes two classes
    weight, bias = _fit_logistic(train_x, train_labels.reshape(-1).long(), classes, steps)
    predicted = (eval_x @ weight + bias).argmax(dim=1)
    correct = predicted == eval_labels.reshape(-1).long().to(predicted.device)
    return float(correct.to(torch.float64).mean())


def _standardised(train: Tensor, other: Tensor, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    train = train.detach().reshape(train.shape[0], -1).to(dtype)
    other = other.detach().reshape(other.shape[0], -1).to(device=train.device, dtype=dtype)
    mean = train.mean(dim=0)
    std = train.std(dim=0, unbiased=False)
    std = torch.where(std > 1e-8, std, torch.ones_like(std))  # constant features stay at zero
    return (train - mean) / std, (other - mean) / std


def _fit_logistic(x: Tensor, y: Tensor, classes: int, steps: int) -> tuple[Tensor, Tensor]:
    y = y.to(x.device)
    weight = torch.zeros(x.shape[1], classes, dtype=x.dtype, device=x.device, requires_grad=True)
    bias = torch.zeros(classes, dtype=x.dtype, device=x.device, requires_grad=True)
    optimizer = torch.optim.LBFGS(
        [weight, bias],
        lr=1.0,
        max_iter=steps,
        tolerance_grad=1e-9,
        tolerance_change=1e-12,
        history_size=20,
        line_search_fn="strong_wolfe",
    )

    def closure() -> Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(x @ weight + bias, y)
        loss = loss + 0.5 * PROBE_WEIGHT_DECAY * weight.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
    return weight.detach(), bias.detach()


def _ridge_mae(train_x: Tensor, train_y: Tensor, eval_x: Tensor, eval_y: Tensor) -> float:
    # Minimises mean((x w + b - y)^2) / 2 + decay / 2 * |w|^2. Standardised features have zero
    # mean, so the bias is the mean label and w solves (X'X / N + decay I) w = X'(y - mean) / N.
    y = train_y.reshape(-1).to(train_x)
    n, d = train_x.shape
    bias = y.mean()
    identity = torch.eye(d, dtype=train_x.dtype, device=train_x.device)
    gram = train_x.T @ train_x / n + PROBE_WEIGHT_DECAY * identity
    weight = torch.linalg.solve(gram, train_x.T @ (y - bias) / n)
    predicted = eval_x @ weight + bias
    return float((predicted - eval_y.reshape(-1).to(predicted)).abs().mean())
