"""Training crops are a function of the epoch and the item's position (SeededItems): the same with
or without loader workers, the same after a mid-epoch resume (of a loader, and of a whole run killed
with SIGKILL), and they leave the global generator where it was."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import tomli_w
import torch
from format_helpers import fixtures, host, run_config
from safetensors.torch import load_file

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


def test_a_run_with_loader_workers_killed_mid_epoch_resumes_exactly(crema_root, tmp_path):
    """End to end through `mmcore run`: random crops from 2 workers, SIGKILL mid-epoch, --resume."""
    data = {"kind": "crema_d", "modalities": ["audio", "visual"], "root": str(crema_root), "image_size": 16,
            "frames": 1, "val_fraction": 0.25, "batch_size": 3, "num_workers": 2}
    config = run_config(data, seed=4, epochs=2, checkpoint_every_steps=4)  # 6 steps an epoch
    path = tmp_path / "run.toml"
    path.write_text(tomli_w.dumps(config))
    tests = Path(__file__).resolve().parents[1]  # resume_killer.py lives there

    def mmcore(*args, kill_at=None):
        env = {**os.environ, "PYTHONPATH": str(tests)}
        if kill_at is not None:
            env["MMCORE_TEST_KILL_AT_STEP"] = str(kill_at)
        return subprocess.run([sys.executable, "-m", "mmcore", *args], capture_output=True, text=True, env=env,
                              timeout=300)

    whole, killed = tmp_path / "whole", tmp_path / "killed"
    assert mmcore("run", str(path), "--out", str(whole), "--no-progress").returncode == 0
    crash = mmcore("-p", "resume_killer", "run", str(path), "--out", str(killed), "--no-progress", kill_at=10)
    assert crash.returncode == -signal.SIGKILL, crash.stderr[-2000:]
    state = json.loads((killed / "checkpoints" / "last" / "state.json").read_text())["state"]["trainer"]
    assert (state["step"], state["epoch"]) == (8, 1)  # two steps into the second epoch
    resumed = mmcore("run", str(path), "--out", str(killed), "--resume", "--no-progress")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    for name in ("model.safetensors", "state.safetensors"):
        a, b = (load_file(run / "checkpoints" / "last" / name) for run in (whole, killed))
        assert a.keys() == b.keys() and all(a[k].equal(b[k]) for k in a), name
