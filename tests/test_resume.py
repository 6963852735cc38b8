"""A run killed with SIGKILL mid-epoch and resumed with --resume ends exactly where an
uninterrupted run ends: same parameters, same optimizer state, same test metrics."""
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from safetensors.torch import load_file

CONFIG = """
[run]
name = "resume"
seed = 3
epochs = 3
device = "cpu"
log_every_steps = 2
checkpoint_every_steps = 5
probe = false

[data]
kind = "synthetic"
modalities = ["a", "b"]
batch_size = 16
train_size = 128
val_size = 32
test_size = 32
num_classes = 3
dim = 8
signal = [2.0, 0.5]

[encoders.a]
kind = "mlp"
hidden = [16]
dropout = 0.2          # draws from the global generator: its state must be restored too

[encoders.b]
kind = "mlp"
hidden = [16]
dropout = 0.2

[fusion]
kind = "concat"

[optimizer]
kind = "adam"
lr = 0.01

[scheduler]
kind = "cosine"

[valuators.mc]         # a permutation valuator owns a generator of its own
kind = "shapley"
method = "permutation"
samples = 4
"""

HERE = Path(__file__).parent


def _mmcore(*args, env=None):
    env = {**os.environ, "PYTHONPATH": str(HERE), **(env or {})}
    return subprocess.run([sys.executable, "-m", "mmcore", *args], capture_output=True, text=True, env=env, timeout=300)


def test_sigkill_mid_epoch_then_resume_matches_an_uninterrupted_run(tmp_path):
    config = tmp_path / "resume.toml"
    config.write_text(CONFIG)
    whole, killed = tmp_path / "whole", tmp_path / "killed"

    done = _mmcore("run", str(config), "--out", str(whole), "--no-progress")
    assert done.returncode == 0, done.stderr

    # 8 steps per epoch: step 13 is in the middle of the second epoch, 3 steps after the step-10 checkpoint
    crash = _mmcore("-p", "resume_killer", "run", str(config), "--out", str(killed), "--no-progress",
                    env={"MMCORE_TEST_KILL_AT_STEP": "13"})
    assert crash.returncode == -signal.SIGKILL, crash.stderr
    state = json.loads((killed / "checkpoints" / "last" / "state.json").read_text())
    assert state["state"]["trainer"]["step"] == 10 and state["state"]["trainer"]["epoch"] == 1  # mid-epoch

    resumed = _mmcore("run", str(config), "--out", str(killed), "--resume", "--no-progress")
    assert resumed.returncode == 0, resumed.stderr

    for name in ("model.safetensors", "state.safetensors"):
        a = load_file(whole / "checkpoints" / "last" / name)
        b = load_file(killed / "checkpoints" / "last" / name)
        assert a.keys() == b.keys()
        for key in a:
            assert a[key].equal(b[key]), f"{name}:{key} differs after resume"
    summary_a = json.loads((whole / "summary.json").read_text())
    summary_b = json.loads((killed / "summary.json").read_text())
    assert summary_a["test"] == summary_b["test"] and summary_a["best_epoch"] == summary_b["best_epoch"]
    steps = [json.loads(line)["step"] for line in (killed / "metrics.jsonl").read_text().splitlines()]
    assert steps == [json.loads(line)["step"] for line in (whole / "metrics.jsonl").read_text().splitlines()]
