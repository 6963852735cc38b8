"""Does valuation-guided re-training help the weak view? Sample- and modality-level vs joint training.

Real runs through the public API (mmcore.Trainer, exactly what `mmcore run` builds) on the embedded
UCI Multiple Features digits: the two-view set pix + mor (pix strong, mor weak: the quickstart) and
the three-view set pix + fou + mor, over seeds 0, 1, 2. Each run selects its epoch on validation
accuracy; every number is from summary["test"] (the best-on-validation weights). Per data set and
method the table gives mean ± std over seeds and, for each metric, the number of seeds in which the
method beats joint training on the same seed.

Metrics: acc (fused), acc/<weak> (the fusion with only the weak view present), probe_acc/<weak>
(a linear probe on the weak encoder's frozen features), acc/<strong>.

    python benchmarks/modality_valuation_effect.py --jobs 2 --out modality_valuation_effect.json
    python benchmarks/modality_valuation_effect.py --smoke     # one seed, two epochs (CI)
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
from concurrent.futures import ProcessPoolExecutor
from typing import Any, Sequence

import torch

import mmcore

DISTRIBUTION = "mmcore-modality-valuation"
DATASETS = {"pix+mor": ("pix", "mor"), "pix+fou+mor": ("pix", "fou", "mor")}
WEAK, STRONG = "mor", "pix"
METHODS: dict[str, dict[str, Any] | None] = {
    "joint": None,
    "sample": {"kind": "modality_valuation", "level": "sample"},
    "modality": {"kind": "modality_valuation", "level": "modality"},
    # supplement Table 7's alternatives (opt-in: --methods joint sample_drop sample_mask)
    "sample_drop": {"kind": "modality_valuation", "level": "sample", "strategy": "drop"},
    "sample_mask": {"kind": "modality_valuation", "level": "sample", "strategy": "mask"},
}
METRICS = ("acc", f"acc/{WEAK}", f"probe_acc/{WEAK}", f"acc/{STRONG}")


def run_config(views: Sequence[str], method: str, seed: int, smoke: bool) -> dict[str, Any]:
    """configs/quickstart.toml (MLP encoders [128, 64], concat fusion, SGD 0.05 momentum 0.9, 30
    epochs) with the views, the seed and the method's balancer."""
    balancer = METHODS[method]
    if balancer is not None and smoke:
        balancer = {**balancer, "warmup_epochs": 1}
    return {
        "run": {"name": f"mv-{method}-{seed}", "seed": seed, "epochs": 2 if smoke else 30, "device": "cpu",
                "log_every_steps": 1_000_000, "probe": not smoke},
        "data": {"kind": "mfeat", "modalities": list(views), "batch_size": 64},
        "encoders": {m: {"kind": "mlp", "hidden": [128, 64]} for m in views},
        "fusion": {"kind": "concat"},
        "optimizer": {"kind": "sgd", "lr": 0.05, "momentum": 0.9},
        "balancers": [] if balancer is None else [balancer],
    }


def train(job: tuple[str, str, int, bool]) -> dict[str, Any]:
    dataset, method, seed, smoke = job
    torch.set_num_threads(1)  # tiny MLPs: a second thread only spins on a shared machine
    host = mmcore.PluginHost(load_only=[DISTRIBUTION])
    config = mmcore.parse_config(run_config(DATASETS[dataset], method, seed, smoke), host.registry)
    trainer = mmcore.Trainer(config, host.registry, hook=host.hook)
    summary = trainer.fit()
    test = summary["test"]
    return {"dataset": dataset, "method": method, "seed": seed, "best_epoch": summary["best_epoch"],
            "train_s": summary["timing"]["train_s"], "test": {k: test[k] for k in METRICS if k in test}}


def _mean_std(values: list[float]) -> str:
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{100 * statistics.mean(values):.2f} ± {100 * std:.2f}"


def table(runs: list[dict[str, Any]], methods: Sequence[str], seeds: Sequence[int]) -> list[dict[str, Any]]:
    """One row per (data set, method): mean ± std (percent) and seeds won against joint, paired."""
    by = {(r["dataset"], r["method"], r["seed"]): r["test"] for r in runs}
    rows = []
    for dataset in DATASETS:
        for method in methods:
            if (dataset, method, seeds[0]) not in by:
                continue
            row: dict[str, Any] = {"dataset": dataset, "method": method, "seeds": len(seeds)}
            for metric in METRICS:
                values = [by[dataset, method, s].get(metric) for s in seeds]
                if any(v is None for v in values):
                    continue
                row[metric] = _mean_std(values)
                if method != "joint" and (dataset, "joint", seeds[0]) in by:
                    wins = sum(by[dataset, method, s][metric] > by[dataset, "joint", s][metric] for s in seeds)
                    row[f"{metric} wins"] = f"{wins}/{len(seeds)}"
            rows.append(row)
    return rows


def markdown(rows: list[dict[str, Any]]) -> str:
    head = ["data set", "method", *[m for m in METRICS if any(m in r for r in rows)]]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["dataset"], r["method"]]
        for metric in head[2:]:
            wins = r.get(f"{metric} wins")
            cells.append(r.get(metric, "-") + (f" ({wins})" if wins else ""))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="one seed, two epochs, pix+mor only")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--methods", nargs="+", default=["joint", "sample", "modality"], choices=list(METHODS))
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    parser.add_argument("--jobs", type=int, default=1, help="runs in parallel processes (one thread each)")
    parser.add_argument("--out", default="modality_valuation_effect.json")
    args = parser.parse_args(argv)
    seeds = args.seeds[:1] if args.smoke else args.seeds
    datasets = ["pix+mor"] if args.smoke else args.datasets
    jobs = [(d, m, s, args.smoke) for d in datasets for m in args.methods for s in seeds]
    if args.jobs > 1:
        with ProcessPoolExecutor(args.jobs) as pool:
            runs = list(pool.map(train, jobs))
    else:
        runs = [train(job) for job in jobs]
    rows = table(runs, args.methods, seeds)
    print(markdown(rows))
    result = {"rows": rows, "runs": runs, "smoke": args.smoke,
              "machine": {"platform": platform.platform(), "torch": torch.__version__, "threads_per_run": 1}}
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
