"""Shared runner of the balancer cost benchmarks (ogm_ge_cost.py, agm_cost.py): joint training and
balancer variants on the av-resnet workload (M = 2), each a real `Trainer.train_step`, alternating in
rounds within one process; medians, ratios against joint, and the targets' verdicts."""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from time import perf_counter, process_time
from pathlib import Path
from typing import Any, Sequence

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # _workloads, as a script
from _workloads import WORKLOADS  # noqa: E402

from mmcore.bench.timing import machine_description, measure_steps, prepared_batches  # noqa: E402
from mmcore.plugins import PluginHost  # noqa: E402
from mmcore.testing import make_trainer  # noqa: E402

def build_trainers(variants: dict[str, list[dict[str, Any]]], device: str, smoke: bool) -> dict[str, Any]:
    workload = WORKLOADS["av-resnet"]
    host = PluginHost(modules=list(workload.modules))
    trainers = {}
    for variant, balancers in variants.items():
        config = workload.config(2, device=device, smoke=smoke) | {"balancers": balancers}
        trainers[variant] = make_trainer(config, host=host)  # same seed: same initial weights
        trainers[variant].model.train()
    return trainers


# wall clock, and this process's CPU time (robust to other processes on a shared machine when torch
# runs one thread, since nothing spin-waits)
BOTH_CLOCKS = {"wall": perf_counter, "cpu": process_time}


def measure(trainers: dict[str, Any], batches: list[Any], settings: dict[str, int]) -> dict[str, dict[str, list[float]]]:
    """Per-step times of each variant, `steps` consecutive steps per variant per round, the
    variant that goes first rotating from round to round, after `warmup` steps each."""
    return measure_steps(trainers, batches, settings["rounds"], settings["steps"], settings["warmup"], BOTH_CLOCKS)


def settings_for(device: str, smoke: bool, rounds: int | None) -> dict[str, int]:
    if smoke:
        chosen = {"rounds": 1, "steps": 1, "warmup": 1}
    elif device.startswith("cuda"):
        chosen = {"rounds": 10, "steps": 3, "warmup": 3}
    else:  # a CPU av-resnet step takes seconds
        chosen = {"rounds": 10, "steps": 1, "warmup": 2}
    return chosen | ({"rounds": rounds} if rounds else {})


def parse_args(description: str, argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description.split("\n\n")[0])
    parser.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N (GPU mode uses batch 64)")
    parser.add_argument("--rounds", type=int, default=None, help="alternation rounds (default: per device)")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--smoke", action="store_true", help="tiny shapes and one round: checks the script runs")
    parser.add_argument("--out", type=Path, default=None, help="write the JSON results here")
    return parser.parse_args(argv)


def main(variants: dict[str, list[dict[str, Any]]], targets: dict[str, float], description: str,
         argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Time joint training against each balancer variant on av-resnet (M = 2), alternating in rounds."""
    args = parse_args(description, argv)
    threads = torch.get_num_threads()
    used_threads = args.threads or threads
    torch.set_num_threads(used_threads)
    try:
        settings = settings_for(args.device, args.smoke, args.rounds)
        load_before, started = os.getloadavg(), time.perf_counter()
        trainers = build_trainers(variants, args.device, args.smoke)
        batches = prepared_batches(trainers["joint"], 2)
        steps = measure(trainers, batches, settings)
        machine = machine_description(torch.device(args.device))  # while our thread setting holds
    finally:
        torch.set_num_threads(threads)
    clocks = ["wall"] if args.device.startswith("cuda") else ["wall", "cpu"]
    step_ms = {c: {v: 1e3 * statistics.median(t[c]) for v, t in steps.items()} for c in clocks}
    ratios = {c: {f"{v}/joint": step_ms[c][v] / step_ms[c]["joint"] for v in variants if v != "joint"} for c in clocks}
    primary = "cpu" if "cpu" in clocks and used_threads == 1 else "wall"
    results = {
        "workload": "av-resnet", "modalities": 2, "batch_size": batches[0].size, "settings": settings,
        "smoke": args.smoke, "threads": used_threads, "primary_clock": primary, "step_ms": step_ms, "ratios": ratios,
        "samples_ms": {v: {c: [1e3 * x for x in t[c]] for c in clocks} for v, t in steps.items()},
        "targets": {name: {"value": ratios[primary][name], "bound": bound, "met": ratios[primary][name] <= bound}
                    for name, bound in targets.items()},
        "machine": machine | {"loadavg_before": load_before, "loadavg_after": os.getloadavg()},
        "wall_s": time.perf_counter() - started,
    }
    print(report(results))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2))
    return results


def report(results: dict[str, Any]) -> str:
    clocks = list(results["step_ms"])
    lines = ["| variant | " + " | ".join(f"{c} ms | {c} ratio" for c in clocks) + " |", "|---|" + "---|---|" * len(clocks)]
    for variant in results["step_ms"][clocks[0]]:
        cells = []
        for c in clocks:
            ratio = 1.0 if variant == "joint" else results["ratios"][c][f"{variant}/joint"]
            cells.append(f"{results['step_ms'][c][variant]:.0f} | {ratio:.3f}")
        lines.append(f"| {variant} | " + " | ".join(cells) + " |")
    for name, target in results["targets"].items():
        verdict = "met" if target["met"] else "NOT met"
        lines.append(f"target {name} <= {target['bound']} ({results['primary_clock']} clock): {target['value']:.3f} ({verdict})")
    return "\n".join(lines)

