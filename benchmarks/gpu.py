"""Steps per second and peak memory of every installed method on a CREMA-D-shaped workload.

The av-resnet workload (benchmarks/_workloads.py): two ResNet-18 encoders (audio spectrogram
1x257x188, one frame 3x224x224), 6 classes, batch 64, in fp32 and bf16 autocast. Each method is
its own Trainer built as `mmcore run` builds it, timed on real `Trainer.train_step` calls; the
methods alternate in rounds within one process (who goes first rotates), and each method's ratio is
taken against its baseline (joint training with the same fusion) in the same run.
`joint_channels_last` is joint training with `run.channels_last = true` (NHWC conv weights).

Peak memory is measured per method in its own phase: the peak allocated during three steps above
what was resident before them, plus the method's own resident state (parameters, gradients,
optimizer state, buffers) — what the method would hold on a GPU alone, without the CUDA context.

Methods whose plugin is not installed, or whose config does not apply to this workload (sam_lml
needs sequence encoders), are listed as skipped with the reason.

    python benchmarks/gpu.py --device cuda --out docs/results/gpu.json     # a CUDA machine
    python benchmarks/gpu.py --device cpu --tiny                            # small shapes (its test)
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any, NamedTuple, Sequence

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the shared workloads and helpers, as scripts
from _workloads import WORKLOADS  # noqa: E402

from mmcore.bench.timing import machine_description, measure_steps, prepared_batches, synchronize, timed_step  # noqa: E402
from mmcore.errors import MMCoreError  # noqa: E402
from mmcore.plugins import PluginHost  # noqa: E402
from mmcore.testing import make_trainer  # noqa: E402

LATE = {"kind": "late", "hidden": [256, 64]}


class Method(NamedTuple):
    fusion: dict[str, Any] | None  # None: the workload's concat
    balancers: list[dict[str, Any]]
    supervisors: list[dict[str, Any]]
    baseline: str  # the variant its ratio is taken against
    run: dict[str, Any] = {}  # [run] settings on top of the workload's


METHODS: dict[str, Method] = {
    "joint": Method(None, [], [], "joint"),
    "joint_channels_last": Method(None, [], [], "joint", {"channels_last": True}),
    "ogm_ge": Method(None, [{"kind": "ogm_ge"}], [], "joint"),
    "agm": Method(None, [{"kind": "agm"}], [], "joint"),
    "sam": Method(None, [{"kind": "sam"}], [], "joint"),
    "msam": Method(None, [{"kind": "msam"}], [], "joint"),
    "modality_valuation": Method(None, [{"kind": "modality_valuation", "level": "sample"}], [], "joint"),
    "joint_late": Method(LATE, [], [], "joint_late"),
    "mie": Method(LATE, [{"kind": "mie"}], [], "joint_late"),
    "pase": Method({"kind": "pase"}, [{"kind": "pase_sgm", "switch_epoch": 0}], [], "joint"),
    "sam_lml": Method({"kind": "sam_lml"}, [], [{"kind": "sam_lml"}], "joint"),
}
PRECISIONS = ("32", "bf16-mixed")


def build_trainers(
    device: str, tiny: bool, precision: str, names: Sequence[str] = tuple(METHODS)
) -> tuple[dict[str, Any], dict[str, str]]:
    """Every applicable method's Trainer (same seed: same initial encoders), and why others are skipped."""
    workload = WORKLOADS["av-resnet"]
    host = PluginHost(modules=list(workload.modules))
    trainers, skipped = {}, {}
    for name in names:
        fusion, balancers, supervisors, _, run = METHODS[name]
        config = workload.config(2, device=device, smoke=tiny)
        config["run"] |= {"precision": precision, **run}
        config |= {"balancers": balancers, "attention_supervisors": supervisors}
        if fusion is not None:
            config["fusion"] = fusion
        wanted = [("balancer", t["kind"]) for t in balancers] + [("attention_supervisor", t["kind"]) for t in supervisors]
        missing = [kind for slot, kind in wanted + [("fusion", (fusion or {"kind": "concat"})["kind"])]
                   if not host.registry.has(slot, kind)]
        if missing:
            skipped[name] = f"not installed: {', '.join(missing)}"
            continue
        try:
            trainers[name] = make_trainer(config, host=host)
        except MMCoreError as error:
            skipped[name] = f"not applicable to this workload: {str(error).splitlines()[0]}"
            continue
        trainers[name].model.train()
    return trainers, skipped


def resident_bytes(trainer: Any) -> int:
    tensors = [*trainer.model.parameters(), *trainer.model.buffers()]
    tensors += [p.grad for p in trainer.model.parameters() if p.grad is not None]
    tensors += [v for s in trainer.optimizer.state.values() for v in s.values() if isinstance(v, torch.Tensor)]
    return sum(t.numel() * t.element_size() for t in tensors)


def peak_memory_mb(trainer: Any, batches: list[Any], steps: int = 3) -> float | None:
    """The method's peak GPU memory on its own (see the module docstring); None off CUDA."""
    if trainer.device.type != "cuda":
        return None
    synchronize(trainer.device)
    torch.cuda.reset_peak_memory_stats(trainer.device)
    before = torch.cuda.memory_allocated(trainer.device)
    for i in range(steps):
        timed_step(trainer, batches[i % len(batches)])
    above = torch.cuda.max_memory_allocated(trainer.device) - before
    return (above + resident_bytes(trainer)) / 2**20


def parameter_count(trainer: Any) -> int:
    return sum(p.numel() for p in trainer.model.parameters())


def run_precision(
    device: str, tiny: bool, precision: str, rounds: int, steps: int, warmup: int, names: Sequence[str] = tuple(METHODS)
) -> dict[str, Any]:
    trainers, skipped = build_trainers(device, tiny, precision, names)
    batches = prepared_batches(trainers["joint"], 2)
    times = {name: t["wall"] for name, t in measure_steps(trainers, batches, rounds, steps, warmup).items()}
    rows = {}
    for name, trainer in trainers.items():
        median = statistics.median(times[name])
        baseline = METHODS[name].baseline
        rows[name] = {
            "step_ms": 1e3 * median, "steps_per_s": 1 / median, "baseline": baseline,
            "ratio": median / statistics.median(times[baseline]) if baseline in times else None,
            "peak_memory_mb": peak_memory_mb(trainer, batches), "parameters": parameter_count(trainer),
            "samples_ms": [1e3 * t for t in times[name]],
        }
    return {"batch_size": batches[0].size, "methods": rows, "skipped": skipped}


def report(results: dict[str, Any]) -> str:
    lines = [f"{results['machine'].get('gpu', results['machine']['cpu'])}, torch {results['machine']['torch']}, "
             f"batch {results['batch_size']}, medians of {results['settings']['rounds'] * results['settings']['steps']} steps"]
    for precision, block in results["precisions"].items():
        lines += ["", f"precision {precision}", "| method | steps/s | step ms | ratio | vs | peak MiB | params |",
                  "|---|---|---|---|---|---|---|"]
        for name, row in block["methods"].items():
            peak = "-" if row["peak_memory_mb"] is None else f"{row['peak_memory_mb']:.0f}"
            ratio = "-" if row["ratio"] is None else f"{row['ratio']:.3f}"
            lines.append(f"| {name} | {row['steps_per_s']:.2f} | {row['step_ms']:.1f} | {ratio} | {row['baseline']} "
                         f"| {peak} | {row['parameters']:,} |")
        lines += [f"skipped {name}: {why}" for name, why in block["skipped"].items()]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda", help="cuda | cuda:N | cpu")
    parser.add_argument("--tiny", action="store_true", help="small shapes, batch 2, one round (its own test)")
    parser.add_argument("--rounds", type=int, default=None, help="alternation rounds (default 10; 1 with --tiny)")
    parser.add_argument("--precision", action="append", choices=PRECISIONS, help="repeatable; default both")
    parser.add_argument("--methods", nargs="+", choices=list(METHODS), help="these rows only (joint is always run)")
    parser.add_argument("--out", type=Path, help="write the JSON results here")
    args = parser.parse_args(argv)
    names = [m for m in METHODS if m == "joint" or m in (args.methods or METHODS)]
    settings = {"rounds": args.rounds or (1 if args.tiny else 10), "steps": 1 if args.tiny else 3,
                "warmup": 1 if args.tiny else 3}
    started = time.perf_counter()
    precisions = {p: run_precision(args.device, args.tiny, p, **settings, names=names) for p in args.precision or PRECISIONS}
    results = {"workload": "av-resnet", "modalities": 2, "tiny": args.tiny, "settings": settings,
               "batch_size": next(iter(precisions.values()))["batch_size"], "precisions": precisions,
               "machine": machine_description(torch.device(args.device)), "wall_s": time.perf_counter() - started}
    print(report(results))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
