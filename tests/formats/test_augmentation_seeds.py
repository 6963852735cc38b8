"""Training crops are a function of the epoch and the item's position (SeededItems): the same with
or without loader workers, the same after a mid-epoch resume, and they leave the global generator
where it was."""

from __future__ import annotations

import pytest
import torch
from format_helpers import fixtures, host, run_config

from mmcore.data.loading import SeededItems
from mmcore.testing import make_trainer


class Draws(torch.utils.data.Dataset):
    def __len__(self) -> int:
        return 4

    def __getitem__(self, j: int) -> torch.Tensor:
        return torch.rand(3)


def test_an_items_draws_depend_on_the_seed_and_position_only_and_the_generator_is_restored():
    items = SeededItems(Draws(), seed=11)
    torch.manual_seed(0)
    before = torch.get_rng_state()
    forward = [items[j] for j in range(4)]
    backward = [items[j] for j in reversed(range(4))][::-1]
    assert torch.equal(torch.get_rng_state(), before)  # the trainer's own stream did not move
    assert all(torch.equal(a, b) for a, b in zip(forward, backward))
    assert not torch.equal(forward[0], forward[1])
    assert not torch.equal(forward[0], SeededItems(Draws(), seed=12)[0])


@pytest.fixture
def crema_root(tmp_path):
    fixtures().write_crema_d(tmp_path, train_per_class=4, test_per_class=1, frames=2, frame_size=(40, 30))
    return tmp_path


def crema_trainer(root, workers):
    data = {"kind": "crema_d", "modalities": ["audio", "visual"], "root": str(root), "image_size": 16,
            "frames": 2, "val_fraction": 0.25, "batch_size": 3, "num_workers": workers}
    trainer = make_trainer(run_config(data, seed=5), host())
    assert trainer.data.augments
    return trainer


def epoch_frames(loader):
    return [(batch.index.tolist(), batch.inputs["visual"]) for batch in loader]


def test_training_crops_do_not_depend_on_workers_and_repeat_after_a_mid_epoch_resume(crema_root):
    alone = crema_trainer(crema_root, 0)
    pooled = crema_trainer(crema_root, 2)
    first = epoch_frames(alone.evaluator.train_loader(1, None))
    assert len(first) == 6
    with_workers = epoch_frames(pooled.evaluator.train_loader(1, None))
    assert [rows for rows, _ in first] == [rows for rows, _ in with_workers]
    assert all(torch.equal(a, b) for (_, a), (_, b) in zip(first, with_workers))
    assert not torch.equal(first[0][1], epoch_frames(alone.evaluator.train_loader(2, None))[0][1])

    loader = pooled.evaluator.train_loader(1, None)
    batches = iter(loader)
    next(batches), next(batches)
    state = loader.state_dict()
    resumed = pooled.evaluator.train_loader(1, None)
    resumed.load_state_dict(state)
    rest = epoch_frames(resumed)
    assert [rows for rows, _ in rest] == [rows for rows, _ in first[2:]]
    assert all(torch.equal(a, b) for (_, a), (_, b) in zip(rest, first[2:]))
