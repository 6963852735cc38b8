"""Trainer behaviour: gradient accumulation, mixed precision, schedulers, tasks, model selection,
the once-only test split, non-finite losses and what a run writes.

References come from a second path: one big batch for accumulation, the schedulers' formulas
written out here, scripted validation numbers for selection, parameters snapshotted per epoch.
"""
from __future__ import annotations

import json
import math
import sys
import types

import pytest
import torch
from attrs import field, frozen

from mmcore import Balancer, ConfigError, NonFiniteLossError, hookimpl
from mmcore.checkpoint import load_checkpoint
from mmcore.cli import main
from mmcore.evaluation import Evaluator
from mmcore.testing import make_trainer, run_steps, toy_config


# -- test components ------------------------------------------------------------------------
@frozen(kw_only=True)
class NanAtConfig:
    step: int = field(default=0, metadata={"help": "the step whose loss becomes nan"})


class NanAt(Balancer):
    """Multiplies the task loss by nan at one step, the way a diverging balancer would."""

    def __init__(self, config: NanAtConfig) -> None:
        self.at = config.step

    def before_backward(self, state):
        if state.step == self.at:
            state.losses["task"] = state.losses["task"] * float("nan")


class InfGradAt(Balancer):
    """Leaves the loss finite but puts an inf into one gradient at one step (an fp32 overflow)."""

    def __init__(self, config: NanAtConfig) -> None:
        self.at = config.step

    def after_backward(self, state):
        if state.step == self.at:
            next(state.model.parameters()).grad[0, 0] = float("inf")


@frozen(kw_only=True)
class NoConfig:
    pass


class GradProbe(Balancer):
    """Records the gradients a modulator sees in after_backward."""

    def __init__(self) -> None:
        self.grads: list[list[torch.Tensor]] = []

    def after_backward(self, state):
        self.grads.append([p.grad.detach().clone() for p in state.model.parameters()])


class Harness:
    """Registers the test balancers and records the lr every optimizer step uses."""

    def __init__(self) -> None:
        self.probes: list[GradProbe] = []
        self.lrs: list[float] = []

    def _probe(self, config, ctx):
        self.probes.append(GradProbe())
        return self.probes[-1]

    @hookimpl
    def mmcore_register_components(self, registry):
        registry.balancer("nan_at", NanAtConfig, lambda c, ctx: NanAt(c), help="nan loss at one step (tests)")
        registry.balancer("inf_grad_at", NanAtConfig, lambda c, ctx: InfGradAt(c), help="inf gradient (tests)")
        registry.balancer("grad_probe", NoConfig, self._probe, help="records gradients (tests)")

    @hookimpl
    def mmcore_before_optimizer_step(self, trainer, state):
        self.lrs.append(trainer.optimizer.param_groups[0]["lr"])


def _params(trainer):
    return [p.detach().clone() for p in trainer.model.parameters()]


# -- gradient accumulation ------------------------------------------------------------------
@pytest.mark.parametrize("rows, micro, accum", [(16, 8, 2), (20, 8, 3)])
def test_accumulated_micro_batches_give_the_big_batch_update(rows, micro, accum):
    """One epoch of `rows` rows is one step either way; the loader's order does not depend on the
    batch size, so both see the same samples. (20, 8, 3) has a short last micro-batch of 4 rows."""
    def one_epoch(batch_size, grad_accum):
        config = toy_config(data={"train_size": rows, "batch_size": batch_size}, run={"grad_accum": grad_accum},
                            optimizer={"kind": "sgd", "lr": 0.5, "momentum": 0.9, "weight_decay": 0.01})
        trainer = make_trainer(config)
        before = _params(trainer)
        trainer.train_epoch()
        assert trainer.step == 1 and trainer.steps_per_epoch == 1
        return before, _params(trainer)

    before, accumulated = one_epoch(micro, accum)
    _, big = one_epoch(rows, 1)
    assert any(not torch.equal(a, b) for a, b in zip(before, accumulated))
    for a, b in zip(accumulated, big):
        torch.testing.assert_close(a, b)


# -- mixed precision ------------------------------------------------------------------------
def _autocast_dtypes(trainer):
    seen = set()
    trainer.model.encoders["a"].register_forward_hook(lambda m, args, out: seen.add(out.dtype))
    return seen


def _mean(values):
    return sum(values) / len(values)


def test_bf16_mixed_trains_under_bf16_autocast_on_cpu():
    trainer = make_trainer(toy_config(run={"precision": "bf16-mixed"}))
    dtypes = _autocast_dtypes(trainer)
    _, states = run_steps(trainer, 16)
    losses = [float(s.losses["task"].detach()) for s in states]
    assert dtypes == {torch.bfloat16} and trainer.scaler is None
    assert all(math.isfinite(v) for v in losses)
    assert _mean(losses[-4:]) < _mean(losses[:4]) - 0.1


def test_16_mixed_scales_the_loss_and_unscales_before_modulators():
    """fp16 autocast and a GradScaler work on CPU in this torch, so "16-mixed" is supported there.
    The gradients a modulator reads are unscaled: they match the fp32 run's, not 65536 times them."""
    runs = {}
    for precision in ("32", "16-mixed"):
        plugin = Harness()
        trainer = make_trainer(toy_config(run={"precision": precision}, balancers=[{"kind": "grad_probe"}]),
                               modules=[plugin])
        dtypes = _autocast_dtypes(trainer)
        _, states = run_steps(trainer, 16)
        runs[precision] = (trainer, plugin.probes[0].grads[0], [float(s.losses["task"].detach()) for s in states], dtypes)
    trainer, grads, losses, dtypes = runs["16-mixed"]
    assert isinstance(trainer.scaler, torch.amp.GradScaler) and trainer.scaler.get_scale() > 1.0
    assert dtypes == {torch.float16}
    assert all(math.isfinite(v) for v in losses) and _mean(losses[-4:]) < _mean(losses[:4]) - 0.1
    fp32_grads = runs["32"][1]
    ratio = torch.cat([g.flatten() for g in grads]).norm() / torch.cat([g.flatten() for g in fp32_grads]).norm()
    assert abs(float(ratio) - 1.0) < 0.01  # fp16 rounding only; a missing unscale would give 65536


# -- schedulers -------------------------------------------------------------------------------
def test_step_scheduler_decays_every_step_epochs_after_warmup():
    plugin = Harness()
    config = toy_config(run={"epochs": 3}, optimizer={"kind": "sgd", "lr": 0.2},
                        scheduler={"kind": "step", "step_epochs": 1, "gamma": 0.5, "warmup_steps": 3})
    trainer, _ = run_steps(make_trainer(config, modules=[plugin]), 10)
    assert trainer.steps_per_epoch == 4
    expected = [0.2 * min(1.0, (s + 1) / 3) * 0.5 ** (s // 4) for s in range(10)]
    assert plugin.lrs == pytest.approx(expected, rel=1e-12)


def test_cosine_scheduler_follows_the_formula_and_ends_at_the_last_step():
    """72 rows in batches of 16 are 5 steps per epoch (the short fifth batch still steps), so the
    cosine spans 10 steps over 2 epochs and the last optimizer step leaves the lr at its floor."""
    plugin = Harness()
    config = toy_config(run={"epochs": 2}, data={"train_size": 72}, optimizer={"kind": "sgd", "lr": 0.2},
                        scheduler={"kind": "cosine", "min_lr_ratio": 0.1})
    trainer = make_trainer(config, modules=[plugin])
    for _ in range(2):
        trainer.train_epoch()
        trainer.epoch += 1
    assert trainer.steps_per_epoch == 5 and trainer.step == 10
    expected = [0.2 * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * s / 10))) for s in range(10)]
    assert plugin.lrs == pytest.approx(expected, rel=1e-12)
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(0.2 * 0.1, rel=1e-12)


# -- tasks and devices ------------------------------------------------------------------------
REGRESSION_METRICS = {"mae", "corr", "acc2_has0", "acc2_non0", "f1_has0", "f1_non0", "acc5", "acc7", "loss"}


@pytest.mark.parametrize("task", ["binary", "regression"])
def test_binary_and_regression_tasks_train_end_to_end(task):
    trainer = make_trainer(toy_config(data={"task": task, "signal": [3.0, 0.5]}, run={"epochs": 6, "probe": True}))
    summary = trainer.fit()
    per_modality = {f"{p}/{m}" for m in "ab" for p in ("value", "probe_acc" if task == "binary" else "probe_mae")}
    if task == "binary":
        expected = {"acc", "macro_f1", "loss", "acc/a", "acc/b"} | per_modality
    else:
        expected = REGRESSION_METRICS | {"mae/a", "mae/b"} | per_modality
    assert set(summary["val"]) == expected and set(summary["test"]) == expected
    labels = trainer.data.splits["test"].label
    if task == "binary":
        assert summary["test"]["acc"] > 0.8  # chance is about 0.5
    else:  # better than the best constant prediction (the median) by a margin
        assert summary["test"]["mae"] < 0.7 * float((labels - labels.median()).abs().mean())


def test_device_auto_resolves_to_cpu_without_cuda():
    assert not torch.cuda.is_available()
    trainer = make_trainer(toy_config(run={"device": "auto"}))
    assert trainer.device == torch.device("cpu")
    assert {p.device for p in trainer.model.parameters()} == {torch.device("cpu")}


# -- model selection and the test split --------------------------------------------------------
def test_selection_follows_validation_and_test_is_evaluated_only_at_the_end(monkeypatch):
    """Scripted validation accuracies make epoch 1 the best; the real test numbers disagree. The
    reported `test` comes from epoch 1's weights, `test_last` from the last epoch's."""
    scripted_val = [0.5, 0.9, 0.7]
    trainer = make_trainer(toy_config(run={"epochs": 3}))
    calls, snapshots = [], []
    real_evaluate = Evaluator.evaluate

    def evaluate(self, split, values=False, corruption=None):
        calls.append((split, trainer.step, _params(trainer)))
        metrics = real_evaluate(self, split, values=values, corruption=corruption)
        if split == "val" and len(snapshots) < len(scripted_val):  # the per-epoch validations
            snapshots.append(_params(trainer))
            metrics["acc"] = scripted_val[len(snapshots) - 1]
        return metrics

    touched = []  # every access to a split's data, with the epoch it happened in
    real_split = Evaluator.split

    def split(self, name, corruption=None):
        touched.append((name, trainer.epoch))
        return real_split(self, name, corruption)

    monkeypatch.setattr(Evaluator, "evaluate", evaluate)
    monkeypatch.setattr(Evaluator, "split", split)
    summary = trainer.fit()
    assert summary["best_epoch"] == 1 and summary["selected_on"] == "val/acc"
    assert {epoch for name, epoch in touched if name == "test"} == {3}  # after the last epoch only
    assert [(split, step) for split, step, _ in calls] == [
        ("val", 4), ("val", 8), ("val", 12), ("test", 12), ("val", 12), ("test", 12)]
    (_, _, last_weights), (_, _, best_weights) = [c for c in calls if c[0] == "test"]
    assert all(torch.equal(a, b) for a, b in zip(last_weights, snapshots[2]))  # test_last
    assert all(torch.equal(a, b) for a, b in zip(best_weights, snapshots[1]))  # test: best on validation
    assert all(torch.equal(a, b) for a, b in zip(_params(trainer), snapshots[2]))  # the last weights stay


def test_run_directory_metrics_and_summary(tmp_path):
    config = toy_config(run={"epochs": 2, "log_every_steps": 3, "probe": True})
    trainer = make_trainer(config, run_dir=tmp_path)
    summary = trainer.fit()
    trainer.close()
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    train = [line for line in lines if line["split"] == "train"]
    val = [line for line in lines if line["split"] == "val"]
    assert [line["step"] for line in train] == [3, 6]  # 8 steps, a line every third
    assert all({"loss/task", "lr"} <= set(line) for line in train)
    assert [(line["step"], line["epoch"]) for line in val] == [(4, 0), (8, 1)]
    assert all({"acc", "acc/a", "value/a", "value/b"} <= set(line) for line in val)
    written = json.loads((tmp_path / "summary.json").read_text())
    assert set(written) >= {"best_epoch", "val", "test", "test_last", "timing", "versions"}
    assert written["test"] == summary["test"] and written["timing"]["train_s"] > 0
    assert written["versions"]["torch"] == torch.__version__
    for split in ("val", "test"):
        metrics = written[split]
        assert metrics["value/a"] + metrics["value/b"] == pytest.approx(1.0)
        assert 0.0 <= metrics["probe_acc/a"] <= 1.0 and 0.0 <= metrics["probe_acc/b"] <= 1.0
    # modality a carries the stronger signal (2.0 against 0.5): its probe and its value say so
    assert written["test"]["probe_acc/a"] > written["test"]["probe_acc/b"]
    assert written["val"]["value/a"] > written["val"]["value/b"]


# -- non-finite losses ---------------------------------------------------------------------------
def test_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path):
    """nan at step index 4 (the first step of epoch 1); a checkpoint is due at step 6 and the next
    log at step 8, so the checkpoint write itself must refuse: the last one on disk is step 4's."""
    config = toy_config(run={"epochs": 3, "log_every_steps": 8, "checkpoint_every_steps": 2},
                        balancers=[{"kind": "nan_at", "step": 4}])
    trainer = make_trainer(config, modules=[Harness()], run_dir=tmp_path)
    with pytest.raises(NonFiniteLossError, match="non-finite loss"):
        trainer.fit()
    trainer.close()
    assert trainer.step == 6
    checkpoint = load_checkpoint(tmp_path / "checkpoints" / "last")
    assert checkpoint.state["trainer"]["step"] == 4
    assert all(torch.isfinite(t).all() for t in checkpoint.model_state.values())
    assert not all(torch.isfinite(p).all() for p in trainer.model.parameters())  # it did diverge


def test_an_inf_gradient_is_not_checkpointed_even_before_the_loss_shows_it(tmp_path):
    """The step at index 2 applies an inf gradient with a finite loss; the checkpoint due right
    after it (step 3) must refuse the diverged parameters, keeping step 2's."""
    config = toy_config(run={"log_every_steps": 8, "checkpoint_every_steps": 1},
                        balancers=[{"kind": "inf_grad_at", "step": 2}])
    trainer = make_trainer(config, modules=[Harness()], run_dir=tmp_path)
    with pytest.raises(NonFiniteLossError, match="non-finite parameters at epoch 0, step 3"):
        trainer.fit()
    trainer.close()
    checkpoint = load_checkpoint(tmp_path / "checkpoints" / "last")
    assert checkpoint.state["trainer"]["step"] == 2
    assert all(torch.isfinite(t).all() for t in checkpoint.model_state.values())


def test_cli_exits_1_without_traceback_on_a_nan_loss(tmp_path, monkeypatch, capsys):
    plugin = Harness()
    module = types.ModuleType("mmcore_test_nan_plugin")
    module.mmcore_register_components = hookimpl(lambda registry: plugin.mmcore_register_components(registry))
    monkeypatch.setitem(sys.modules, module.__name__, module)
    monkeypatch.setenv("MMCORE_DISABLE_PLUGIN_AUTOLOAD", "1")
    config = tmp_path / "nan.toml"
    config.write_text(
        '[run]\nname = "nan"\nepochs = 2\ndevice = "cpu"\nlog_every_steps = 1\nprobe = false\n'
        '[data]\nkind = "synthetic"\nmodalities = ["a", "b"]\nbatch_size = 16\ntrain_size = 64\n'
        'val_size = 16\ntest_size = 16\nnum_classes = 3\ndim = 8\n'
        '[encoders.a]\nkind = "mlp"\nhidden = [8]\n[encoders.b]\nkind = "mlp"\nhidden = [8]\n'
        '[fusion]\nkind = "concat"\n[optimizer]\nkind = "sgd"\n[[balancers]]\nkind = "nan_at"\nstep = 2\n'
    )
    code = main(["-p", module.__name__, "run", str(config), "--out", str(tmp_path / "run"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 1
    assert "error: non-finite loss at epoch 0, step 3" in err and "Traceback" not in err


def test_selection_minimises_errors_skips_nan_and_names_an_unknown_metric():
    state = make_trainer(toy_config(data={"task": "regression"}, run={"select_metric": "mae/a"})).state
    assert [state.observe({"mae/a": v}) for v in (0.5, 0.7, 0.3)] == [True, False, True]  # per-modality mae
    state = make_trainer(toy_config(run={"select_metric": "macro_f1"})).state
    nan = float("nan")
    assert [state.observe({"macro_f1": v}) for v in (nan, 0.4, nan, 0.3, 0.6)] == [True, True, False, False, True]
    assert state.best_value == 0.6
    state = make_trainer(toy_config(run={"select_metric": "f1"})).state
    with pytest.raises(ConfigError, match=r"\$\.run\.select_metric: 'f1' is not a validation metric; available: acc"):
        state.observe({"acc": 0.5})


def test_step_times_divide_by_the_steps_actually_timed(monkeypatch):
    """A fake clock where a step costs 10 ms and each epoch boundary (validation) 100 s. Logging
    every 3rd step of 4-step epochs, the interval ending at step 6 covers only steps 5 and 6."""
    import mmcore.trainer

    trainer = make_trainer(toy_config(run={"epochs": 2, "log_every_steps": 3}))
    clock = types.SimpleNamespace(perf_counter=lambda: 0.01 * trainer.step + 100.0 * trainer.epoch)
    monkeypatch.setattr(mmcore.trainer, "time", clock)
    summary = trainer.fit()
    assert trainer.step_times == pytest.approx([0.01, 0.01], rel=1e-9)
    assert summary["timing"]["step_ms_median"] == pytest.approx(10.0, rel=1e-9)
