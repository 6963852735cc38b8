"""What PaSE costs per training step on the av-resnet workload (DESIGN.md section 9), against joint training.

Variants, each its own Trainer built from the workload's config as `mmcore run` builds it, timed on
real `Trainer.train_step` calls with the same batches:

- joint:       concat fusion, no balancer;
- pase:        `pase` fusion (PCL + CAL: one batched Sinkhorn for all modality pairs, both directions,
               200 iterations, implicit gradient) + `pase_sgm` in its second phase (SGM every step,
               Shapley values from the core valuator: 2^M − 1 head-only probes);
- pase-proxy:  the same with the official prototype-geometry utility instead of the valuator.

Variants alternate in rounds within one process (each round starts with a different variant),
after warm-up steps; we report median step times, their ratio and the median of per-round ratios.
On a shared CPU a step of seconds varies by more than PaSE adds, so each added piece is also timed
on its own, a few times in every round: the fusion's forward + backward over the concat fusion's on
the same encoder features (gates, PCL, CAL with its Sinkhorn solve, the prototype update), the
valuator call and SGM's `after_backward`. The estimated ratio is 1 + (their medians' sum) / (joint
step median): the target is checked on it.

    python benchmarks/pase_cost.py --out runs/pase_cost.json
    python benchmarks/pase_cost.py --smoke       # tiny shapes, seconds
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
from _workloads import WORKLOADS  # noqa: E402

from mmcore import PluginHost  # noqa: E402
from mmcore.testing import make_trainer  # noqa: E402

TARGET = 1.15  # the bound on pase/joint at M = 2
SGM_ON = {"kind": "pase_sgm", "switch_epoch": 0}
VARIANTS: dict[str, dict[str, Any]] = {
    "joint": {},
    "pase": {"fusion": {"kind": "pase"}, "balancers": [SGM_ON]},
    "pase-proxy": {"fusion": {"kind": "pase"}, "balancers": [SGM_ON | {"utility": "proto_proxy"}]},
}


def build_trainers(num_modalities: int, smoke: bool) -> dict[str, Any]:
    workload = WORKLOADS["av-resnet"]
    host = PluginHost(modules=list(workload.modules))  # entry points too: the pase kinds
    trainers = {}
    for variant, tables in VARIANTS.items():
        config = workload.config(num_modalities, device="cpu", smoke=smoke) | tables
        trainers[variant] = make_trainer(config, host=host)  # same seed: same encoder weights
        trainers[variant].model.train()
    return trainers


def fused_and_backward(trainer: Any, batch: Any) -> Callable[[], None]:
    """Fusion forward + backward (task loss and aux losses: gates, PCL, CAL, prototype update) on
    the batch's encoder features, the encoders not included."""
    model = trainer.model
    with torch.no_grad():
        features = model.encode(batch)
    labels = batch.label if trainer.labels_in_fusion else None

    def run() -> None:
        detached = {m: f.detach().requires_grad_(True) for m, f in features.items()}
        out = model.fuse(detached, batch.present, labels=labels)
        sum([trainer.task_loss(out.logits, batch.label), *out.aux_losses.values()]).backward()

    return run


def pieces(trainers: dict[str, Any], batch: Any) -> dict[str, Callable[[], Any]]:
    """PaSE's added work per step as callables: each variant's fusion forward + backward (joint's
    concat included, to subtract), its valuator call and SGM's after_backward on a real step's state."""
    work = {"joint/fusion": fused_and_backward(trainers["joint"], batch)}
    for variant in VARIANTS:
        if variant == "joint":
            continue
        trainer = trainers[variant]
        state = trainer.train_step([batch])  # a real step: its values and gradients
        valuators, sgm = list(trainer.valuators.all().values()), trainer.balancers[0]
        work[f"{variant}/fusion"] = fused_and_backward(trainer, batch)
        work[f"{variant}/valuator"] = lambda valuators=valuators, state=state: [v.value(state) for v in valuators]
        work[f"{variant}/sgm"] = lambda sgm=sgm, state=state: sgm.after_backward(state)
    return work


def seconds(fn: Callable[[], Any]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def measure(trainers: dict[str, Any], batches: list[Any], rounds: int, warmup: int,
            inner: int) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Step seconds per variant, and seconds of each added piece, both sampled in every round, so a
    burst of load from other jobs on a shared machine hits every variant and every piece alike."""
    work = pieces(trainers, batches[0])
    for i in range(warmup):
        for trainer in trainers.values():
            seconds(lambda: trainer.train_step([batches[i % len(batches)]]))
        for fn in work.values():
            fn()
    steps: dict[str, list[float]] = {v: [] for v in trainers}
    parts: dict[str, list[float]] = {k: [] for k in work}
    order = list(trainers)
    for r in range(rounds):
        for variant in order[r % len(order):] + order[: r % len(order)]:  # rotate who goes first
            steps[variant].append(seconds(lambda: trainers[variant].train_step([batches[r % len(batches)]])))
        for _ in range(inner):
            for name, fn in work.items():
                parts[name].append(seconds(fn))
    return steps, parts


def added_ms(parts: dict[str, list[float]]) -> dict[str, dict[str, float]]:
    median = {name: 1e3 * statistics.median(times) for name, times in parts.items()}
    return {
        variant: {"fusion (PCL + CAL + gates) over concat": median[f"{variant}/fusion"] - median["joint/fusion"],
                  "valuator": median[f"{variant}/valuator"], "SGM after_backward": median[f"{variant}/sgm"]}
        for variant in VARIANTS if variant != "joint"
    }


def machine() -> dict[str, Any]:
    names = []
    if Path("/proc/cpuinfo").exists():
        names = [line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                 if line.startswith("model name")]
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {"cpu": names[0] if names else platform.machine(), "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "torch": torch.__version__, "load_average": load}


def run(num_modalities: int, smoke: bool, rounds: int, warmup: int) -> dict[str, Any]:
    trainers = build_trainers(num_modalities, smoke)
    loader = trainers["joint"].evaluator.train_loader(0, None)
    batches = [batch for batch, _ in zip(loader, range(2))]
    times, parts = measure(trainers, batches, rounds, warmup, inner=1 if smoke else 5)
    step_ms = {v: 1e3 * statistics.median(t) for v, t in times.items()}
    added = added_ms(parts)
    others = [v for v in VARIANTS if v != "joint"]
    return {"workload": "av-resnet", "modalities": num_modalities, "batch_size": batches[0].size,
            "step_ms": step_ms, "added_ms": added,
            "ratios": {v: step_ms[v] / step_ms["joint"] for v in others},
            "paired_ratios": {v: statistics.median(a / b for a, b in zip(times[v], times["joint"])) for v in others},
            "estimated_ratios": {v: 1 + sum(added[v].values()) / step_ms["joint"] for v in others},
            "samples_ms": {v: [1e3 * t for t in ts] for v, ts in times.items()}}


def markdown(cells: list[dict[str, Any]]) -> str:
    lines = ["| M | batch | variant | joint step ms | variant step ms | step ratio (medians) | step ratio (paired) | "
             "added: fusion ms | added: valuator ms | added: SGM ms | estimated ratio |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for c in cells:
        for v, parts in c["added_ms"].items():
            fusion, valuator, sgm = parts.values()
            lines.append(f"| {c['modalities']} | {c['batch_size']} | {v} | {c['step_ms']['joint']:.0f} | "
                         f"{c['step_ms'][v]:.0f} | {c['ratios'][v]:.3f} | {c['paired_ratios'][v]:.3f} | {fusion:.1f} | "
                         f"{valuator:.1f} | {sgm:.1f} | {c['estimated_ratios'][v]:.3f} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--modalities", type=int, nargs="+", default=[2], help="values of M (av-resnet: 2 encoders)")
    parser.add_argument("--rounds", type=int, default=None, help="alternation rounds (default 8; smoke 1)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--smoke", action="store_true", help="tiny shapes, one round")
    parser.add_argument("--out", type=Path, default=None, help="write the result as JSON here")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    rounds = args.rounds or (1 if args.smoke else 8)
    cells = [run(m, args.smoke, rounds, warmup=1 if args.smoke else 2) for m in args.modalities]
    pase_m2 = next((c["estimated_ratios"]["pase"] for c in cells if c["modalities"] == 2), None)
    result = {"machine": machine(), "rounds": rounds, "cells": cells,
              "target": f"pase/joint <= {TARGET} at M = 2 (estimated ratio)",
              "met": None if pase_m2 is None else pase_m2 <= TARGET, "markdown": markdown(cells)}
    print(json.dumps(result["machine"]))
    print(result["markdown"])
    print(f"target {result['target']}: {'met' if result['met'] else 'NOT met'}")
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
