"""What a run remembers: model selection, checkpoints, resume and the closing summary."""
from __future__ import annotations

import math
import platform
import time
import statistics
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from mmcore import distributed
from mmcore.checkpoint import load_checkpoint, save_checkpoint
from mmcore.control import plan_from_state, plan_to_state
from mmcore.errors import ConfigError, NonFiniteLossError, UsageError
from mmcore.logging import write_json_atomic
from mmcore.probe import linear_probe_accuracy

if TYPE_CHECKING:
    from mmcore.trainer import Trainer


class RunState:
    def __init__(self, trainer: Trainer) -> None:
        self.trainer = trainer
        run = trainer.config.run
        self.metric = run.select_metric or trainer.evaluator.primary
        # lower is better for errors and losses, per modality too (mae/<m>); every other metric is higher-is-better
        self.maximise = self.metric.split("/")[0] not in ("mae", "loss", "probe_mae")
        self.best_value: float | None = None
        self.best_epoch = -1
        self.best_metrics: dict[str, float] = {}
        self.train_seconds = 0.0  # training time of earlier sessions of this run (resume)
        self._clock: float | None = None
        self._memory: dict[str, dict[str, Tensor]] = {}  # best weights when the run has no directory

    def start_clock(self) -> None:
        self._clock = time.perf_counter()

    def elapsed(self) -> float:
        return self.train_seconds + (time.perf_counter() - self._clock if self._clock is not None else 0.0)

    # -- selection on validation only ---------------------------------------------------------
    def observe(self, metrics: dict[str, float]) -> bool:
        if self.metric not in metrics:
            raise ConfigError(f"$.run.select_metric: {self.metric!r} is not a validation metric; "
                              f"available: {', '.join(sorted(metrics))}")
        value, best = metrics[self.metric], self.best_value
        if best is None or math.isnan(best):  # a nan best (e.g. corr of constant outputs) never blocks a real one
            better = True
        elif math.isnan(value):
            better = False
        else:
            better = value > best if self.maximise else value < best
        if better:
            self.best_value, self.best_epoch, self.best_metrics = value, self.trainer.epoch, dict(metrics)
        return better

    # -- checkpoints ---------------------------------------------------------------------------
    def directory(self, tag: str) -> Path | None:
        run_dir = self.trainer.run_dir
        return None if run_dir is None else run_dir / "checkpoints" / tag

    def save(self, tag: str) -> None:
        t = self.trainer
        t.check_finite()  # never checkpoint a diverged model: no non-finite loss so far ...
        self._check_finite_parameters()  # ... and no inf/nan update since the last loss was seen
        weights = {k: v.detach() for k, v in t.model.state_dict().items()}
        path = self.directory(tag)
        if path is None:
            if tag == "best":  # no directory: keep the best weights in memory for the final test
                self._memory[tag] = {k: v.clone() for k, v in weights.items()}
            return
        generators = distributed.gather_to_main(t.generators.state_dict(), t.dist)  # each rank's own draws
        if t.dist.is_main:  # rank 0 writes; the barrier keeps the others from reading a half-written one
            state = self.training_state() | {"generators": generators}
            t.hook.mmcore_save_checkpoint(trainer=t, checkpoint=state["plugins"])
            save_checkpoint(path, weights, state, t.config_toml)
        distributed.barrier(t.dist)

    def _check_finite_parameters(self) -> None:
        t = self.trainer
        finite = torch.stack([torch.isfinite(p).all() for p in t.model.parameters()]).all()
        if not bool(finite):  # one host sync per checkpoint
            raise NonFiniteLossError(f"non-finite parameters at epoch {t.epoch}, step {t.step} (an inf or nan "
                                     "gradient reached the optimizer); the last good checkpoint is kept")

    def weights(self, tag: str) -> dict[str, Tensor]:
        if tag in self._memory:
            return self._memory[tag]
        path = self.directory(tag)
        if path is None:
            raise KeyError(f"no {tag!r} weights: the run has no directory and kept none in memory")
        return load_checkpoint(path, device=self.trainer.device).model_state

    def training_state(self) -> dict[str, Any]:
        t = self.trainer
        return {
            "trainer": {
                "epoch": t.epoch, "step": t.step, "frozen": sorted(t.frozen),
                "epoch_batches": t.epoch_batches, "progress": t.progress, "schedule_origin": t.schedule_origin,
                "best_value": self.best_value, "best_epoch": self.best_epoch, "best_metrics": self.best_metrics,
                "train_seconds": self.elapsed(), "step_times": list(t.step_times),
            },
            "optimizer": t.optimizer.state_dict(),
            "scheduler": t.scheduler.state_dict() if t.scheduler is not None else None,
            "scaler": t.scaler.state_dict() if t.scaler is not None else None,
            "generators": [t.generators.state_dict()],  # one entry per rank (save gathers them)
            "plan": plan_to_state(t.plan),
            "loader": t.loader_state,
            "balancers": [b.state_dict() for b in t.balancers],
            "supervisors": [getattr(s, "state_dict", dict)() for s in t.supervisors],
            "valuators": {n: getattr(v, "state_dict", dict)() for n, v in t.valuators.all().items()},
            "plugins": {},
        }

    def resume(self) -> None:
        """Continue from checkpoints/last exactly where the interrupted run was."""
        t = self.trainer
        checkpoint = load_checkpoint(self.directory("last"), device=t.device)
        t.model.load_state_dict(checkpoint.model_state)
        s = checkpoint.state
        counters = s["trainer"]
        t.epoch, t.step, t.step_times = counters["epoch"], counters["step"], list(counters["step_times"])
        t.epoch_batches, t.progress = counters["epoch_batches"], counters["progress"]
        t.schedule_origin = counters["schedule_origin"]
        for m in counters["frozen"]:
            t.set_frozen(m, True)
        self.best_value, self.best_epoch = counters["best_value"], counters["best_epoch"]
        self.best_metrics, self.train_seconds = counters["best_metrics"], counters["train_seconds"]
        t.optimizer.load_state_dict(s["optimizer"])
        if t.scheduler is not None:
            t.scheduler.load_state_dict(s["scheduler"])
        if t.scaler is not None:
            t.scaler.load_state_dict(s["scaler"])
        if len(s["generators"]) != t.dist.world_size:
            raise UsageError(f"{self.directory('last')}: saved by a run on {len(s['generators'])} rank(s); resume it "
                             f"on as many (torchrun --nproc-per-node {len(s['generators'])}), not {t.dist.world_size}")
        t.generators.load_state_dict(s["generators"][t.dist.rank])
        t.plan, t.loader_state = plan_from_state(s["plan"]), s["loader"]
        for b, state in zip(t.balancers, s["balancers"]):
            b.load_state_dict(state)
        for sup, state in zip(t.supervisors, s["supervisors"]):
            getattr(sup, "load_state_dict", lambda _: None)(state)
        for name, v in t.valuators.all().items():
            getattr(v, "load_state_dict", lambda _: None)(s["valuators"].get(name, {}))
        t.hook.mmcore_load_checkpoint(trainer=t, checkpoint=s["plugins"])

    # -- the end of a run ----------------------------------------------------------------------
    def finish(self) -> dict[str, Any]:
        """Test once with the best-on-validation weights (and once with the last), probes, summary."""
        t, ev = self.trainer, self.trainer.evaluator
        train_seconds = self.elapsed()
        last = {k: v.detach().clone() for k, v in t.model.state_dict().items()}
        test_last = ev.evaluate("test")
        t.model.load_state_dict(self.weights("best"))
        val, test = ev.evaluate("val", values=True), ev.evaluate("test", values=True)
        if t.config.run.probe:
            self._add_probes(val, test)
        t.model.load_state_dict(last)
        steps = t.step_times
        summary = {
            "best_epoch": self.best_epoch,
            "selected_on": f"val/{self.metric}",
            "val": val, "test": test, "test_last": test_last,
            "timing": {"train_s": train_seconds, "step_ms_median": 1000 * statistics.median(steps) if steps else None},
            "versions": versions(),
        }
        ev.log(test, "test")
        if t.run_dir is not None and t.dist.is_main:
            write_json_atomic(t.run_dir / "summary.json", summary)
        t.hook.mmcore_train_end(trainer=t, summary=summary)
        return summary

    def _add_probes(self, val: dict[str, float], test: dict[str, float]) -> None:
        """probe_acc/<m>: a linear probe on the best weights' frozen train features of m. A
        regression probe is scored by MAE (lower is better), so it is named probe_mae/<m>."""
        t, ev = self.trainer, self.trainer.evaluator
        name = "probe_mae" if t.task == "regression" else "probe_acc"
        train_x, train_y = ev.features("train")
        for split, metrics in (("val", val), ("test", test)):
            x, y = ev.features(split)
            for m in t.model.modalities:
                metrics[f"{name}/{m}"] = linear_probe_accuracy(
                    train_x[m], train_y, x[m], y, t.ctx.num_outputs, t.task, seed=t.config.run.seed
                )


def versions() -> dict[str, str]:
    import mmcore

    return {"mmcore": mmcore.__version__, "torch": torch.__version__, "python": sys.version.split()[0],
            "platform": platform.platform()}
