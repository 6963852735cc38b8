"""DDP on torchrun (gloo on CPU): two ranks with batch 8 match one rank with batch 16."""
import os
import subprocess
import sys

import pytest
from safetensors.torch import load_file

CONFIG = """
[run]
name = "ddp"
seed = 1
epochs = 2
device = "cpu"
probe = false

[data]
kind = "synthetic"
modalities = ["a", "b"]
batch_size = {batch}
train_size = 128
val_size = 32
test_size = 32
num_classes = 3
dim = 8

[encoders.a]
kind = "mlp"
hidden = [16]

[encoders.b]
kind = "mlp"
hidden = [16]

[fusion]
kind = "concat"

[optimizer]
kind = "sgd"
lr = 0.1
"""


def _run(args, env=None):
    env = {**os.environ, **(env or {})}
    done = subprocess.run(args, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.mark.skipif(sys.platform == "win32", reason="torchrun with gloo")
def test_two_ranks_match_one_rank_with_the_same_global_batch(tmp_path):
    single, double = tmp_path / "single.toml", tmp_path / "double.toml"
    single.write_text(CONFIG.replace("{batch}", "16"))
    double.write_text(CONFIG.replace("{batch}", "8"))
    _run([sys.executable, "-m", "mmcore", "run", str(single), "--out", str(tmp_path / "one"), "--no-progress"])
    _run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", "29531",
          "-m", "mmcore", "run", str(double), "--out", str(tmp_path / "two"), "--no-progress"],
         env={"OMP_NUM_THREADS": "1"})
    one = load_file(tmp_path / "one" / "checkpoints" / "last" / "model.safetensors")
    two = load_file(tmp_path / "two" / "checkpoints" / "last" / "model.safetensors")
    assert one.keys() == two.keys()
    for key in one:
        assert one[key].allclose(two[key], atol=1e-5, rtol=1e-5), key
    assert (tmp_path / "two" / "summary.json").exists()
