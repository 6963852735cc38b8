"""Every per-step method on 2 ranks (torchrun, gloo) equals 1 rank with the same global batch; the
SAM family perturbs per rank (documented exception, DESIGN.md section 8); a 2-rank run killed
mid-epoch resumes on 2 ranks exactly where an uninterrupted one ends."""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import mmcore
from mmcore.testing import make_trainer

HERE = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("ddp_methods", HERE / "ddp_methods.py")
ddp_methods = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ddp_methods)

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="torchrun with gloo")


def torchrun(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """2 ranks on this machine; `--standalone` rendezvous on a free port, so runs never collide."""
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    return subprocess.run([*launcher, *args],
                          capture_output=True, text=True, timeout=600,
                          env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})})


@pytest.fixture(scope="module")
def two_rank_weights(tmp_path_factory) -> dict[str, list[dict[str, torch.Tensor]]]:
    out = tmp_path_factory.mktemp("ddp")
    done = torchrun(str(HERE / "ddp_methods.py"), str(out), *ddp_methods.METHODS)
    assert done.returncode == 0, done.stderr[-4000:]
    return {m: [load_file(out / f"{m}.rank{r}.safetensors") for r in (0, 1)] for m in ddp_methods.METHODS}


def assert_close(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], what: str) -> None:
    assert a.keys() == b.keys(), what
    for key in a:
        assert torch.allclose(a[key], b[key], atol=2e-5, rtol=1e-4), f"{what}: {key} differs by {(a[key] - b[key]).abs().max()}"


@pytest.mark.parametrize("method", [m for m in ddp_methods.METHODS if m not in ddp_methods.SAM_FAMILY])
def test_two_ranks_equal_one_rank_with_the_global_batch(method, two_rank_weights):
    rank0, rank1 = two_rank_weights[method]
    assert_close(rank0, rank1, f"{method}: ranks disagree")
    one = ddp_methods.train(method, ddp_methods.GLOBAL_BATCH)
    assert_close(one, rank0, f"{method}: 2 ranks vs 1 rank")


def test_sam_perturbs_each_rank_with_its_own_gradient(two_rank_weights):
    """One SAM step on 2 ranks = w − lr · mean_r ∇L_r(w + ρ g_r / ‖g_r‖), g_r = ∇L_r(w), each rank's
    own half of the global batch (m-sharpness); not the step one rank takes on the whole batch."""
    config = ddp_methods.config("sam", ddp_methods.GLOBAL_BATCH)
    trainer = make_trainer(config)
    model, rho, lr = trainer.model, config["balancers"][0]["rho"], config["optimizer"]["lr"]
    batch = next(iter(trainer.evaluator.train_loader(0, None)))
    params = [p for p in model.parameters() if p.requires_grad]
    perturbed_grads = []
    for rank in (0, 1):  # rank r's batch: positions r, r + 2, ... of the shared order
        rows = torch.arange(rank, batch.size, 2)
        half = batch.replace(inputs={m: x[rows] for m, x in batch.inputs.items()}, present=batch.present[rows],
                             label=batch.label[rows], index=batch.index[rows])
        model.zero_grad(set_to_none=True)
        trainer.task_loss(model(half).logits, half.label).backward()
        ascent = mmcore.ascent_step(params, rho)
        with mmcore.perturbed(params, ascent.offsets):
            model.zero_grad(set_to_none=True)
            trainer.task_loss(model(half).logits, half.label).backward()
            perturbed_grads.append([p.grad.clone() for p in params])
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    expected = {n: (p - lr * (g0 + g1) / 2).detach() for n, p, g0, g1 in zip(names, params, *perturbed_grads)}
    rank0, rank1 = two_rank_weights["sam"]
    assert_close(rank0, rank1, "sam: ranks disagree")
    assert_close({n: rank0[n] for n in names}, expected, "sam: 2 ranks vs the per-rank step by hand")
    one = ddp_methods.train("sam", ddp_methods.GLOBAL_BATCH)
    assert any(not torch.allclose(one[n], rank0[n], atol=1e-5) for n in names)  # not the global-batch step


RESUME_CONFIG = """
[run]
name = "ddp-resume"
seed = 5
epochs = 2
device = "cpu"
probe = false
log_every_steps = 2
checkpoint_every_steps = 3

[data]
kind = "synthetic"
modalities = ["a", "b"]
batch_size = 8
train_size = 64
val_size = 16
test_size = 16
num_classes = 3
dim = 6

[encoders.a]
kind = "mlp"
hidden = [16, 8]
dropout = 0.2

[encoders.b]
kind = "mlp"
hidden = [16, 8]
dropout = 0.2

[fusion]
kind = "late"
hidden = [8]

[[balancers]]
kind = "mie"

[optimizer]
kind = "adam"
lr = 0.01
"""


def test_a_two_rank_run_killed_mid_epoch_resumes_on_two_ranks_exactly(tmp_path):
    """MIE's mixup and dropout draw from each rank's own generators (a private one, and the global
    one reseeded per rank): a checkpoint keeps every rank's, so the resumed ranks continue their own
    streams."""
    config = tmp_path / "c.toml"
    config.write_text(RESUME_CONFIG)
    run = ["-m", "mmcore", "run", str(config), "--no-progress", "--out"]
    whole = torchrun(*run, str(tmp_path / "whole"))
    assert whole.returncode == 0, whole.stderr[-3000:]
    killed = torchrun("-m", "mmcore", "-p", "resume_killer", "run", str(config), "--no-progress",
                      "--out", str(tmp_path / "killed"),
                      env={"MMCORE_TEST_KILL_AT_STEP": "6", "PYTHONPATH": str(HERE)})
    assert killed.returncode != 0, killed.stderr[-3000:]
    assert not (tmp_path / "killed" / "summary.json").exists()
    alone = subprocess.run([sys.executable, *run, str(tmp_path / "killed"), "--resume"],
                           capture_output=True, text=True, timeout=300)
    assert alone.returncode == 2 and "saved by a run on 2 rank(s)" in alone.stderr, alone.stderr[-2000:]
    resumed = torchrun(*run, str(tmp_path / "killed"), "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    for name in ("model.safetensors", "state.safetensors"):
        a = load_file(tmp_path / "whole" / "checkpoints" / "last" / name)
        b = load_file(tmp_path / "killed" / "checkpoints" / "last" / name)
        assert a.keys() == b.keys()
        for key in a:
            assert torch.equal(a[key], b[key]), f"{name}: {key}"


def test_mean_over_ranks_refuses_integer_counts():
    with pytest.raises(TypeError, match="sum_over_ranks"):
        mmcore.mean_over_ranks([torch.ones(2, dtype=torch.int64)])


def test_gradient_averaging_when_ranks_disagree_on_which_parameters_have_gradients(tmp_path):
    """Agreed through the host group: a gradient on one rank is averaged with zeros for the other;
    a parameter no rank touched keeps no gradient (an optimizer must still skip it)."""
    done = torchrun(str(HERE / "ddp_gradients.py"), str(tmp_path))
    assert done.returncode == 0, done.stderr[-4000:]
    for rank in (0, 1):
        grads = load_file(tmp_path / f"rank{rank}.safetensors")
        assert set(grads) == {"a", "b"}
        assert grads["a"].tolist() == [1.0] * 3 and grads["b"].tolist() == [1.5] * 3  # (2 + 0) / 2, (0 + 3) / 2
