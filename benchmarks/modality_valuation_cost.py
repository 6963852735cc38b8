"""What an epoch of modality_valuation costs against an epoch of joint training.

Three Trainers built from one named workload (benchmarks/_workloads.py) exactly as `mmcore run`
builds them — joint, `level = "sample"`, `level = "modality"` — share the seed, so they start from
the same weights and train the same warm-up epochs (untimed). Then they alternate in rounds (each
round starts with a different variant), one whole training epoch each: `Trainer.train_epoch`, which
includes the balancer's `on_epoch_start` (the valuation pass and the epoch plan) and the longer,
resampled epoch. Validation is not timed (it is the same for all three). We report median epoch
seconds, the ratios against joint, the median valuation seconds, and the epoch length in rows / N,
which is what drives the ratio and depends on the data and the model (random labels give the most
copies).

    python benchmarks/modality_valuation_cost.py --workload mfeat --modalities 2 3 --out cost.json
    python benchmarks/modality_valuation_cost.py --workload av-resnet --modalities 2 --rounds 3
    python benchmarks/modality_valuation_cost.py --smoke
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # _workloads, when run as a script
from _workloads import WORKLOADS, Workload  # noqa: E402

import mmcore  # noqa: E402
from mmcore.testing import make_trainer  # noqa: E402

DISTRIBUTION = "mmcore-modality-valuation"
VARIANTS = ("joint", "sample", "modality")


def build_trainers(workload: Workload, num_modalities: int, warmup: int, smoke: bool) -> dict[str, mmcore.Trainer]:
    host = mmcore.PluginHost(load_only=[DISTRIBUTION], modules=list(workload.modules))
    trainers = {}
    for variant in VARIANTS:
        config = workload.config(num_modalities, device="cpu", smoke=smoke)
        if variant != "joint":
            config["balancers"] = [{"kind": "modality_valuation", "level": variant, "warmup_epochs": warmup}]
        trainers[variant] = make_trainer(config, host=host)
    return trainers


def timed(record: list[float], fn: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            record.append(time.perf_counter() - started)

    return wrapper


def epoch(trainer: mmcore.Trainer) -> float:
    started = time.perf_counter()
    trainer.train_epoch()
    seconds = time.perf_counter() - started
    trainer.epoch += 1
    return seconds


def run_cell(workload: Workload, num_modalities: int, warmup: int, rounds: int, smoke: bool) -> dict[str, Any]:
    trainers = build_trainers(workload, num_modalities, warmup, smoke)
    for trainer in trainers.values():
        for _ in range(warmup):
            epoch(trainer)
    valuation: dict[str, list[float]] = {v: [] for v in VARIANTS[1:]}
    for variant in VARIANTS[1:]:
        balancer = trainers[variant].balancers[0]
        balancer.on_epoch_start = timed(valuation[variant], balancer.on_epoch_start)
    seconds: dict[str, list[float]] = {v: [] for v in VARIANTS}
    rows: dict[str, list[float]] = {v: [] for v in VARIANTS}
    for r in range(rounds):
        for variant in VARIANTS[r % 3:] + VARIANTS[: r % 3]:  # rotate who goes first
            trainer = trainers[variant]
            seconds[variant].append(epoch(trainer))
            planned = len(trainer.plan) if trainer.plan is not None else trainer.control.num_samples()
            rows[variant].append(planned / trainer.control.num_samples())
    median = {v: statistics.median(s) for v, s in seconds.items()}
    return {
        "workload": workload.name, "modalities": num_modalities, "rows": trainers["joint"].control.num_samples(),
        "batch_size": trainers["joint"].config.data.batch_size, "warmup_epochs": warmup, "rounds": rounds,
        "epoch_s": median, "ratios": {f"{v}/joint": median[v] / median["joint"] for v in VARIANTS[1:]},
        "valuation_s": {v: statistics.median(s) for v, s in valuation.items()},
        "epoch_rows": {v: statistics.mean(r) for v, r in rows.items()},
        "samples_s": seconds,
    }


def markdown(cells: Sequence[dict[str, Any]]) -> str:
    head = ["workload", "M", "N", "joint s", "sample s", "modality s", "sample/joint", "modality/joint",
            "valuation s (sample, modality)", "rows/N (sample, modality)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for c in cells:
        s, r, v, n = c["epoch_s"], c["ratios"], c["valuation_s"], c["epoch_rows"]
        lines.append(f"| {c['workload']} | {c['modalities']} | {c['rows']} | {s['joint']:.3f} | {s['sample']:.3f} | "
                     f"{s['modality']:.3f} | {r['sample/joint']:.2f} | {r['modality/joint']:.2f} | "
                     f"{v['sample']:.3f}, {v['modality']:.3f} | {n['sample']:.2f}, {n['modality']:.2f} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workload", choices=list(WORKLOADS), default="mfeat")
    parser.add_argument("--modalities", type=int, nargs="+", default=[2, 3])
    parser.add_argument("--rounds", type=int, default=None, help="timed epochs per variant (default 9 mfeat, 3 av-resnet)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed joint epochs first (default 5 mfeat, 1 av-resnet)")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--smoke", action="store_true", help="tiny shapes, one warm-up epoch, one round")
    parser.add_argument("--out", type=Path, default=None, help="write the JSON results here")
    args = parser.parse_args(argv)
    heavy = args.workload == "av-resnet"
    rounds = 1 if args.smoke else args.rounds or (3 if heavy else 9)
    warmup = 1 if args.smoke else (args.warmup if args.warmup is not None else (1 if heavy else 5))
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    load_before, started = os.getloadavg(), time.perf_counter()
    try:
        cells = [run_cell(WORKLOADS[args.workload], m, warmup, rounds, args.smoke) for m in args.modalities]
    finally:
        torch.set_num_threads(threads)
    machine = {"cpu": _cpu_name(), "cpu_count": os.cpu_count(), "torch_threads": args.threads, "torch": torch.__version__,
               "loadavg_before": load_before, "loadavg_after": os.getloadavg()}
    results = {"machine": machine, "smoke": args.smoke, "wall_s": time.perf_counter() - started, "cells": cells}
    print(markdown(cells))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2))
    return results


def _cpu_name() -> str:
    info = Path("/proc/cpuinfo")
    names = [line.split(":", 1)[1].strip() for line in info.read_text().splitlines()
             if line.startswith("model name")] if info.exists() else []
    return names[0] if names else platform.processor() or platform.machine()


if __name__ == "__main__":
    main()
