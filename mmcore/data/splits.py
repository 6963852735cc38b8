"""Seeded stratified splits: the mfeat train/val/test split and the validation carve of datasets
that ship only train and test lists (CREMA-D, Kinetics-Sounds)."""

from __future__ import annotations

import torch
from torch import Tensor


def stratified_split(labels: Tensor, val_fraction: float, test_fraction: float, seed: int) -> dict[str, Tensor]:
    """Row indices (sorted) of train / val / test, taking the fractions of every class separately.

    A class of n rows gives round(n * test_fraction) test rows and round(n * val_fraction) val rows
    (half to even, as torch rounds); the rows are drawn from one permutation seeded by `seed`."""
    order = torch.randperm(labels.numel(), generator=torch.Generator().manual_seed(seed))
    # A stable sort by class keeps the random order inside each class: a shuffled class-by-class list.
    by_class = order[torch.sort(labels[order], stable=True).indices]
    class_sizes = torch.bincount(labels)
    class_start = torch.cumsum(class_sizes, 0) - class_sizes
    sorted_labels = labels[by_class]
    rank_in_class = torch.arange(labels.numel()) - class_start[sorted_labels]
    num_test = torch.round(class_sizes.double() * test_fraction).long()[sorted_labels]
    num_val = torch.round(class_sizes.double() * val_fraction).long()[sorted_labels]
    is_test = rank_in_class < num_test
    is_val = ~is_test & (rank_in_class < num_test + num_val)
    is_train = ~is_test & ~is_val
    return {
        name: torch.sort(by_class[chosen]).values
        for name, chosen in (("train", is_train), ("val", is_val), ("test", is_test))
    }


def carve_validation(labels: Tensor, fraction: float, seed: int) -> tuple[Tensor, Tensor]:
    """(train rows, validation rows) of a training list: `fraction` of every class, seeded."""
    rows = stratified_split(labels, fraction, 0.0, seed)
    return rows["train"], rows["val"]
