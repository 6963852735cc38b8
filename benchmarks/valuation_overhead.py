"""What per-step Shapley valuation costs: joint training vs joint + our valuation vs joint + a naive one.

Three variants of the same run, each its own Trainer built from the workload's config exactly as
`mmcore run` builds it, timed on real `Trainer.train_step` calls:

- joint:   no valuator;
- shapley: `[valuators.v] kind = "shapley", value = "accuracy"` — exact Shapley values every step
           from head-only probes on the step's cached features (mmcore.valuation.value_modalities);
- naive:   the same values, but re-running the encoders for every coalition, as existing toolkits
           do (mmcore.valuation.naive_value_modalities, via the benchmark-only kind `naive_shapley`).

Variants alternate in rounds within one process (each round starts with a different variant), after
warm-up steps; we report median step times and their ratios. The valuator's added cost is also
timed on its own (its `value(state)` call on a pass-0 StepState), because on a workload whose step
takes seconds the difference of two step medians is mostly noise.

    python benchmarks/valuation_overhead.py --workload all --modalities 2 3 4 --out valuation_overhead.json
    python benchmarks/valuation_overhead.py --smoke          # tiny shapes and rounds, seconds (CI)
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # _workloads, when run as a script
from _workloads import WORKLOADS, Workload  # noqa: E402

from mmcore.bench.timing import CLOCKS, machine_description, measure_steps, prepared_batches, synchronize, timed_step  # noqa: E402
from mmcore.hookspecs import hookimpl  # noqa: E402
from mmcore.plugins import PluginHost  # noqa: E402
from mmcore.registry import BuildContext, ComponentRegistry  # noqa: E402
from mmcore.testing.toy import make_trainer  # noqa: E402
from mmcore.trainer import Trainer  # noqa: E402
from mmcore.types import Batch, ModalityValues, StepState  # noqa: E402
from mmcore.valuation import naive_value_modalities  # noqa: E402
from mmcore.valuator import ShapleyValuatorConfig, lookup_value_function  # noqa: E402

VARIANTS = ("joint", "shapley", "naive")
VALUATOR_KIND = {"shapley": "shapley", "naive": "naive_shapley"}
# (workload, M, what, bound): the targets, checked at M = 3.
TARGETS = (
    ("av-resnet", 3, "shapley/joint", "<=", 1.10),
    ("mfeat", 3, "shapley/joint", "<=", 1.5),
    ("av-resnet", 3, "naive/shapley added", ">=", 3.0),
    ("av-resnet", 3, "naive/shapley step", ">=", 3.0),
)


# -- the naive baseline as a valuator kind, so it runs inside the real step -------------------------
class NaiveShapleyValuator:
    """Shapley values by re-running the whole model per coalition (the baseline being beaten)."""

    def __init__(self, config: ShapleyValuatorConfig, value_fn: Any) -> None:
        self.config, self.value_fn = config, value_fn
        self.generator = torch.Generator().manual_seed(config.seed)

    def value(self, state: StepState) -> ModalityValues:
        cfg = self.config
        return naive_value_modalities(state.model, state.batch, self.value_fn, state.task_loss, per=cfg.per,
                                      empty=cfg.empty, method=cfg.method, samples=cfg.samples, generator=self.generator)

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])


class _NaiveValuatorPlugin:
    __name__ = "benchmarks.naive_shapley"

    @hookimpl
    def mmcore_register_components(self, registry: ComponentRegistry) -> None:
        def build(config: ShapleyValuatorConfig, ctx: BuildContext) -> NaiveShapleyValuator:
            return NaiveShapleyValuator(config, lookup_value_function(config.value, ctx.registry))

        registry.valuator("naive_shapley", ShapleyValuatorConfig, build,
                          help="benchmark only: Shapley values re-running the encoders for every coalition")


NAIVE_PLUGIN = _NaiveValuatorPlugin()


# -- building and timing ---------------------------------------------------------------------------
def build_trainers(workload: Workload, num_modalities: int, device: str, smoke: bool) -> dict[str, Trainer]:
    host = PluginHost(autoload=False, modules=[*workload.modules, NAIVE_PLUGIN])
    trainers = {}
    for variant in VARIANTS:
        config = workload.config(num_modalities, device=device, smoke=smoke)
        if variant in VALUATOR_KIND:
            config["valuators"] = {"v": {"kind": VALUATOR_KIND[variant], "value": "accuracy"}}
        trainers[variant] = make_trainer(config, host=host)  # same seed: same initial weights
        trainers[variant].model.train()
    return trainers


def measure_valuator_calls(trainers: dict[str, Trainer], batch: Batch, repeats: int,
                           clock: Callable[[], float] = time.perf_counter) -> dict[str, list[float]]:
    """Seconds of one `valuator.value(state)` call (the valuator's whole added cost in the step)."""
    calls: dict[str, list[float]] = {}
    for variant in VALUATOR_KIND:
        trainer = trainers[variant]
        _, state = timed_step(trainer, batch)
        valuator = trainer.valuators.all()["v"]
        valuator.value(state)  # warm
        calls[variant] = []
        for _ in range(repeats):
            synchronize(trainer.device)
            started = clock()
            valuator.value(state)
            synchronize(trainer.device)
            calls[variant].append(clock() - started)
    return calls


# -- one (workload, M) cell -------------------------------------------------------------------------
def settings_for(workload: str, device: str, smoke: bool, rounds: int | None) -> dict[str, int]:
    """Rounds x steps per round, warm-up steps and isolated valuator calls, per workload: an
    av-resnet step takes about a second per modality on a 2-core CPU, an mfeat step milliseconds."""
    if smoke:
        chosen = {"rounds": 1, "steps": 1, "warmup": 1, "calls": 1}
    elif workload == "av-resnet" and not device.startswith("cuda"):
        chosen = {"rounds": 4, "steps": 1, "warmup": 2, "calls": 2}
    elif workload == "av-resnet":
        chosen = {"rounds": 10, "steps": 3, "warmup": 3, "calls": 5}
    else:
        chosen = {"rounds": 15, "steps": 20, "warmup": 20, "calls": 100}
    return chosen | ({"rounds": rounds} if rounds else {})


def run_cell(workload: Workload, num_modalities: int, device: str, smoke: bool, settings: dict[str, int],
             clock: Callable[[], float] = time.perf_counter) -> dict[str, Any]:
    trainers = build_trainers(workload, num_modalities, device, smoke)
    batches = prepared_batches(trainers["joint"], 2)
    per_clock = measure_steps(trainers, batches, settings["rounds"], settings["steps"], settings["warmup"], {"t": clock})
    steps = {variant: times["t"] for variant, times in per_clock.items()}
    calls = measure_valuator_calls(trainers, batches[0], settings["calls"], clock)
    step_ms = {v: 1e3 * statistics.median(t) for v, t in steps.items()}
    call_ms = {v: 1e3 * statistics.median(t) for v, t in calls.items()}
    step_added = {v: step_ms[v] - step_ms["joint"] for v in VALUATOR_KIND}
    return {
        "workload": workload.name, "modalities": num_modalities, "batch_size": batches[0].size,
        "step_ms": step_ms, "valuator_call_ms": call_ms, "step_added_ms": step_added,
        "ratios": {
            "shapley/joint": step_ms["shapley"] / step_ms["joint"],
            "naive/joint": step_ms["naive"] / step_ms["joint"],
            "naive/shapley step": step_ms["naive"] / step_ms["shapley"],
            "naive/shapley added": call_ms["naive"] / call_ms["shapley"],
        },
        "samples_ms": {"steps": {v: [1e3 * t for t in ts] for v, ts in steps.items()},
                       "valuator_calls": {v: [1e3 * t for t in ts] for v, ts in calls.items()}},
    }


# -- reporting -------------------------------------------------------------------------------------
COLUMNS = ("workload", "M", "B", "joint step ms", "shapley step ms", "naive step ms", "shapley/joint", "naive/joint",
           "naive/shapley step", "shapley call ms", "naive call ms", "naive/shapley added")


def table_rows(cells: Sequence[dict[str, Any]]) -> list[list[str]]:
    rows = []
    for c in cells:
        s, k, r = c["step_ms"], c["valuator_call_ms"], c["ratios"]
        rows.append([c["workload"], str(c["modalities"]), str(c["batch_size"]), f"{s['joint']:.1f}",
                     f"{s['shapley']:.1f}", f"{s['naive']:.1f}", f"{r['shapley/joint']:.3f}", f"{r['naive/joint']:.2f}",
                     f"{r['naive/shapley step']:.2f}", f"{k['shapley']:.2f}", f"{k['naive']:.1f}",
                     f"{r['naive/shapley added']:.0f}"])
    return rows


def markdown_table(cells: Sequence[dict[str, Any]]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in table_rows(cells)])


def check_targets(cells: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    by_key = {(c["workload"], c["modalities"]): c for c in cells}
    verdicts = []
    for workload, m, ratio, op, bound in TARGETS:
        cell = by_key.get((workload, m))
        if cell is None:
            continue
        value = cell["ratios"][ratio]
        met = value <= bound if op == "<=" else value >= bound
        verdicts.append({"workload": workload, "modalities": m, "ratio": ratio, "value": value,
                         "target": f"{op} {bound}", "met": met})
    return verdicts


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workload", choices=[*WORKLOADS, "all"], default="all")
    parser.add_argument("--modalities", type=int, nargs="+", default=[2, 3, 4], help="values of M")
    parser.add_argument("--rounds", type=int, default=None, help="alternation rounds (default: per workload)")
    parser.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N (GPU mode uses batch 64 on av-resnet)")
    parser.add_argument("--smoke", action="store_true", help="tiny shapes and rounds: checks the script runs")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--clock", choices=list(CLOCKS), default="wall",
                        help="wall: elapsed time; process: this process's CPU time (CPU only; for a shared machine)")
    parser.add_argument("--out", type=Path, default=None, help="write the JSON results here")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    if args.clock == "process" and not args.device.startswith("cpu"):
        raise SystemExit("--clock process measures CPU time: use it with --device cpu")
    names = list(WORKLOADS) if args.workload == "all" else [args.workload]
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads or threads)
    try:
        return run_all(args, names)
    finally:
        torch.set_num_threads(threads)


def run_all(args: argparse.Namespace, names: list[str]) -> dict[str, Any]:
    cells = []
    load_before = os.getloadavg()  # other processes on the machine skew CPU timings: keep the evidence
    started = time.perf_counter()
    for name in names:
        workload = WORKLOADS[name]
        settings = settings_for(name, args.device, args.smoke, args.rounds)
        for m in args.modalities:
            if not 2 <= m <= workload.max_modalities:
                raise SystemExit(f"--modalities: {name} supports M = 2..{workload.max_modalities}, got {m}")
            load = os.getloadavg()[0]
            cell = run_cell(workload, m, args.device, args.smoke, settings, CLOCKS[args.clock])
            cells.append(cell | {"settings": settings, "loadavg_1min": [load, os.getloadavg()[0]]})
            print(f"# {name} M={m} done ({time.perf_counter() - started:.0f} s)", file=sys.stderr, flush=True)
    machine = machine_description(torch.device(args.device)) | {"loadavg_before": load_before,
                                                                 "loadavg_after": os.getloadavg()}
    results = {"machine": machine, "smoke": args.smoke, "clock": args.clock, "wall_s": time.perf_counter() - started,
               "cells": cells, "targets": check_targets(cells)}
    print(markdown_table(cells))
    for t in results["targets"]:
        status = "met" if t["met"] else "NOT met"
        print(f"target {t['workload']} M={t['modalities']} {t['ratio']} {t['target']}: {t['value']:.3f} ({status})")
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
