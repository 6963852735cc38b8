"""What SAM-LML's attention supervision costs: training step and inference against the unsupervised fusion.

Two variants of the same run, each its own Trainer built from a raw config exactly as `mmcore run`
builds it: the `sam_lml` fusion alone (unsupervised) and the same fusion with the `sam_lml`
attention supervisor. Real `Trainer.train_step` calls alternate between the variants in rounds
(each round starts with the other variant), after warm-up; inference is the eval-mode forward of
the model under no_grad (the supervisor and its decomposition networks do not run there). Median
milliseconds and their ratios, plus parameter counts (the decomposition networks are training-only).

Workloads:
- av-resnet (DESIGN §9, benchmarks/_workloads.py): two ResNet-18 encoders on CREMA-D-shaped
  tensors, batch 8 on CPU. Their features are vectors, so every attention block sees one step.
- mosi-seq: the paper's CMU-MOSI shape (Table 7): three sequence modalities of 50 steps, d = 120,
  batch 48, Conv1d + one-layer Transformer encoders, synthetic data; here the attention blocks
  dominate, as in the paper (its Table 8: 144.5 s vs 109.8 s per epoch, x1.32; testing 6.7 s both).

    python benchmarks/sam_lml_cost.py --out plugins/sam_lml/results/cost.json
    python benchmarks/sam_lml_cost.py --smoke
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
from typing import Any, Sequence

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # _workloads, when run as a script
from _workloads import BENCHMARK_DATA, av_resnet_config  # noqa: E402

import mmcore  # noqa: E402
from mmcore.bench.timing import prepared_batches  # noqa: E402
from mmcore.testing import make_trainer  # noqa: E402

VARIANTS = ("unsupervised", "supervised")


def mosi_seq_config(smoke: bool) -> dict[str, Any]:
    steps, width, batch = (6, 16, 4) if smoke else (50, 120, 48)
    encoder = {"kind": "sequence", "d_model": width, "layers": 1, "heads": 4 if not smoke else 2}
    return {
        "run": {"name": "mosi-seq", "seed": 0, "epochs": 1, "device": "cpu", "log_every_steps": 1_000_000, "probe": False},
        "data": {"kind": "synthetic", "modalities": ["l", "a", "v"], "batch_size": batch, "train_size": 4 * batch,
                 "val_size": batch, "test_size": batch, "seq_len": steps, "dim": 32, "signal": [1.0, 0.5, 0.3]},
        "encoders": {m: dict(encoder) for m in ("l", "a", "v")},
        "fusion": {"kind": "sam_lml", "d_model": width},
        "optimizer": {"kind": "adamw", "lr": 1e-4},
    }


def av_resnet(smoke: bool) -> dict[str, Any]:
    config = av_resnet_config(2, device="cpu", smoke=smoke)
    config["fusion"] = {"kind": "sam_lml", "d_model": 120}
    return config


WORKLOADS = {"av-resnet": av_resnet, "mosi-seq": mosi_seq_config}


def build(config: dict[str, Any], host: mmcore.PluginHost) -> dict[str, Any]:
    trainers = {"unsupervised": make_trainer(config, host=host),
                "supervised": make_trainer({**config, "attention_supervisors": [{"kind": "sam_lml"}]}, host=host)}
    for trainer in trainers.values():
        trainer.model.train()
    return trainers



def timed(fn: Any) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def train_step(trainer: Any, batch: mmcore.Batch) -> None:
    trainer.train_step([batch])
    trainer.step += 1


def inference(trainer: Any, batch: mmcore.Batch) -> None:
    trainer.model.eval()
    with torch.no_grad():
        trainer.model(batch)
    trainer.model.train()


def measure(trainers: dict[str, Any], batches: list[mmcore.Batch], rounds: int, steps: int, warmup: int) -> dict[str, Any]:
    for trainer in trainers.values():
        for i in range(warmup):
            train_step(trainer, batches[i % len(batches)])
            inference(trainer, batches[i % len(batches)])
    times: dict[str, dict[str, list[float]]] = {v: {"train": [], "inference": []} for v in trainers}
    for r in range(rounds):
        for variant in (VARIANTS if r % 2 == 0 else VARIANTS[::-1]):  # alternate who goes first
            for i in range(steps):
                batch = batches[(r * steps + i) % len(batches)]
                times[variant]["train"].append(timed(lambda: train_step(trainers[variant], batch)))
                times[variant]["inference"].append(timed(lambda: inference(trainers[variant], batch)))
    return times


def parameters(trainer: Any) -> dict[str, int]:
    model = trainer.model
    extras = sum(p.numel() for p in model.extras.parameters())
    return {"total": sum(p.numel() for p in model.parameters()), "training_only": extras}


def run_workload(name: str, smoke: bool, settings: dict[str, int], host: mmcore.PluginHost) -> dict[str, Any]:
    trainers = build(WORKLOADS[name](smoke), host)
    batches = prepared_batches(trainers["unsupervised"], 2)
    times = measure(trainers, batches, settings["rounds"], settings["steps"], settings["warmup"])
    ms = {v: {k: 1e3 * statistics.median(t) for k, t in kinds.items()} for v, kinds in times.items()}
    return {"workload": name, "batch_size": batches[0].size, "ms": ms,
            "ratios": {k: ms["supervised"][k] / ms["unsupervised"][k] for k in ("train", "inference")},
            "parameters": {v: parameters(t) for v, t in trainers.items()},
            "samples_ms": {v: {k: [1e3 * x for x in t] for k, t in kinds.items()} for v, kinds in times.items()}}


def settings_for(name: str, smoke: bool) -> dict[str, int]:
    if smoke:
        return {"rounds": 2, "steps": 1, "warmup": 1}
    return {"rounds": 6, "steps": 2, "warmup": 2} if name == "av-resnet" else {"rounds": 10, "steps": 5, "warmup": 3}


def markdown(cells: list[dict[str, Any]]) -> str:
    lines = ["| workload | B | train ms unsup. | train ms sup. | train ratio | infer ms unsup. | infer ms sup. | infer ratio |",
             "|---|---|---|---|---|---|---|---|"]
    for c in cells:
        u, s = c["ms"]["unsupervised"], c["ms"]["supervised"]
        r = c["ratios"]
        lines.append(f"| {c['workload']} | {c['batch_size']} | {u['train']:.1f} | {s['train']:.1f} | {r['train']:.2f} | "
                     f"{u['inference']:.1f} | {s['inference']:.1f} | {r['inference']:.2f} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workload", nargs="+", default=list(WORKLOADS), choices=list(WORKLOADS))
    parser.add_argument("--smoke", action="store_true", help="tiny shapes, two rounds (seconds)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch intra-op threads")
    parser.add_argument("--out", type=Path, help="JSON results file")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    host = mmcore.PluginHost(load_only=["mmcore-sam-lml"], modules=[BENCHMARK_DATA])
    load_before = os.getloadavg()
    cells = [run_workload(name, args.smoke, settings_for(name, args.smoke), host) for name in args.workload]
    machine = {"device": "cpu", "processor": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
               "threads": args.threads, "torch": torch.__version__, "loadavg_before": load_before,
               "loadavg_after": os.getloadavg()}
    result = {"cells": cells, "machine": machine, "paper_table8": {"train": 144.5 / 109.8, "inference": 6.7 / 6.7}}
    print(markdown(cells))
    print(f"machine: {machine}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
