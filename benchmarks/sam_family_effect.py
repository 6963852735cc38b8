"""Effect study of the SAM family: joint training, sam, msam and mie (sam_mode paper and full).

Two datasets, each with a strong and a weak modality:
- mfeat: the embedded UCI digits, views pix (strong) + mor (weak), the quickstart architecture
  (MLP encoders [128, 64], concat fusion, SGD lr 0.05 momentum 0.9, batch 64, 30 epochs);
- synthetic: 4 classes, 32 features per modality, class-mean norms 3.0 (strong) and 1.5 (weak),
  1024 / 512 / 1024 rows, same architecture and schedule.

none, sam and msam use the concat fusion. mie needs per-modality heads averaged in probability
space, so it uses the `late` fusion with the paper's head widths (256, 64); `none_late` is joint
training on that same architecture, the baseline mie is compared with. mie alternates stages of
[5, 10] epochs starting from the strong modality (the official CREMA-D schedule is [25, 50] from the
dominant audio).

Every method runs the same seeds (paired: same initialisation and data order). Selection is on
validation only; every number is from summary["test"] (best-on-validation weights): fused
accuracy, acc/<m> (the fusion with only m present) and probe_acc/<m> (a linear probe on m's frozen
features). "wins" counts the seeds in which a method beats its joint-training baseline on the same
seed. For msam the study also records the training-time shares ν and how often each modality was
dominant. `--methods msam_per_sample msam_logit` adds msam's other two loss decompositions.

    python benchmarks/sam_family_effect.py --out runs/sam_family_effect.json
    python benchmarks/sam_family_effect.py --smoke          # 1 seed, 2 epochs, small data (tests)
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import torch

import mmcore
from mmcore.testing import make_trainer

SEEDS = (0, 1, 2, 3, 4)
DATASETS: dict[str, dict[str, Any]] = {
    "mfeat": {"kind": "mfeat", "modalities": ["pix", "mor"], "batch_size": 64},
    "synthetic": {"kind": "synthetic", "modalities": ["strong", "weak"], "batch_size": 64, "num_classes": 4,
                  "dim": 32, "signal": [3.0, 1.5], "train_size": 1024, "val_size": 512, "test_size": 1024},
}
SMOKE_DATA = {"synthetic": {"train_size": 128, "val_size": 64, "test_size": 64}}
CONCAT = {"kind": "concat"}
LATE = {"kind": "late", "hidden": [256, 64], "activate_last": False}  # the paper's head exactly
MIE_STAGES = [5, 10]
METHODS: dict[str, tuple[dict[str, Any], list[dict[str, Any]], str]] = {  # fusion, balancers, baseline
    "none": (CONCAT, [], "none"),
    "sam": (CONCAT, [{"kind": "sam"}], "none"),
    "msam": (CONCAT, [{"kind": "msam"}], "none"),
    "none_late": (LATE, [], "none_late"),
    "mie_paper": (LATE, [{"kind": "mie", "sam_mode": "paper", "epoch_list": MIE_STAGES}], "none_late"),
    "mie_full": (LATE, [{"kind": "mie", "sam_mode": "full", "epoch_list": MIE_STAGES}], "none_late"),
    # supplementary (not run by default): msam's other loss decompositions
    "msam_per_sample": (CONCAT, [{"kind": "msam", "decomposition": "per_sample"}], "none"),
    "msam_logit": (CONCAT, [{"kind": "msam", "decomposition": "logit_attribution"}], "none"),
}
DEFAULT_METHODS = ["none", "sam", "msam", "none_late", "mie_paper", "mie_full"]


def run_config(dataset: str, method: str, seed: int, smoke: bool) -> dict[str, Any]:
    fusion, balancers, _ = METHODS[method]
    data = dict(DATASETS[dataset]) | (SMOKE_DATA.get(dataset, {}) if smoke else {})
    if smoke:
        balancers = [b | {"epoch_list": [1]} if b["kind"] == "mie" else b for b in balancers]
    return {
        "run": {"name": f"{dataset}-{method}-{seed}", "seed": seed, "epochs": 2 if smoke else 30, "device": "cpu",
                "log_every_steps": 5, "probe": not smoke, "value_every_epoch": False},
        "data": data,
        "encoders": {m: {"kind": "mlp", "hidden": [128, 64]} for m in data["modalities"]},
        "fusion": fusion,
        "optimizer": {"kind": "sgd", "lr": 0.05, "momentum": 0.9},
        "balancers": balancers,
    }


class TrainLog:
    """Collects msam's logged shares ν and dominant modality from the training log points."""

    def __init__(self) -> None:
        self.points: list[dict[str, float]] = []

    @mmcore.hookimpl
    def mmcore_log_metrics(self, metrics: dict[str, float], split: str) -> None:
        if split == "train":
            self.points.append({k: v for k, v in metrics.items() if k.startswith("balancer/msam/")})

    def summary(self, modalities: Sequence[str]) -> dict[str, float]:
        points = [p for p in self.points if p]
        if not points:
            return {}
        out = {f"nu/{m}": statistics.fmean(p[f"balancer/msam/nu/{m}"] for p in points) for m in modalities}
        out |= {f"dominant/{m}": statistics.fmean(p["balancer/msam/dominant"] == i for p in points)
                for i, m in enumerate(modalities)}
        out["fallback"] = statistics.fmean(p["balancer/msam/fallback"] for p in points)
        return out


def train(dataset: str, method: str, seed: int, smoke: bool, verbose: bool = False) -> dict[str, Any]:
    log = TrainLog()
    start = time.perf_counter()
    trainer = make_trainer(run_config(dataset, method, seed, smoke), modules=[log])
    summary = trainer.fit()
    modalities = DATASETS[dataset]["modalities"]
    test = {k: v for k, v in summary["test"].items() if k == "acc" or k.startswith(("acc/", "probe_acc/"))}
    seconds = time.perf_counter() - start
    if verbose:
        print(f"{dataset} seed {seed} {method}: {test} ({seconds:.1f} s)", file=sys.stderr, flush=True)
    return {"dataset": dataset, "method": method, "seed": seed, "test": test, "best_epoch": summary["best_epoch"],
            "msam": log.summary(modalities), "seconds": seconds}


def aggregate(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean, std and paired wins over the baseline (msam's variants: also over sam) per (dataset, method)."""
    by_key = {(r["dataset"], r["method"], r["seed"]): r for r in runs}
    rows = []
    for dataset in dict.fromkeys(r["dataset"] for r in runs):
        for method in dict.fromkeys(r["method"] for r in runs if r["dataset"] == dataset):
            mine = [r for r in runs if r["dataset"] == dataset and r["method"] == method]
            baseline = METHODS[method][2]
            row: dict[str, Any] = {"dataset": dataset, "method": method, "baseline": baseline, "seeds": len(mine)}
            for metric in mine[0]["test"]:
                values = [r["test"][metric] for r in mine]
                spread = statistics.stdev(values) if len(values) > 1 else 0.0
                row[metric] = {"mean": statistics.fmean(values), "std": spread}
                for key, other in (("wins", baseline), ("wins_vs_sam", "sam" if method.startswith("msam") else None)):
                    paired = [(r["test"][metric], by_key[(dataset, other, r["seed"])]["test"][metric])
                              for r in mine if (dataset, other, r["seed"]) in by_key]
                    if other is not None and other != method and paired:
                        row[metric][key] = sum(a > b for a, b in paired)
            msam = [r["msam"] for r in mine if r["msam"]]
            if msam:
                row["msam"] = {k: statistics.fmean(s[k] for s in msam) for k in msam[0]}
            rows.append(row)
    return rows


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = []
    for dataset in dict.fromkeys(r["dataset"] for r in rows):
        mine = [r for r in rows if r["dataset"] == dataset]
        metrics = [k for k in mine[0] if isinstance(mine[0][k], dict) and "mean" in mine[0][k]]
        lines += [f"\n{dataset} (test, mean ± std over {mine[0]['seeds']} seeds; wins = seeds beating the baseline)\n",
                  "| method | baseline | " + " | ".join(metrics) + " |", "|---" * (len(metrics) + 2) + "|"]
        for row in mine:
            cells = []
            for metric in metrics:
                cell = row[metric]
                wins = [f"{cell[k]}/{row['seeds']}" + (" vs sam" if k == "wins_vs_sam" else "")
                        for k in ("wins", "wins_vs_sam") if k in cell]
                paired = f" ({'; '.join(wins)})" if wins else ""
                cells.append(f"{100 * cell['mean']:.1f} ± {100 * cell['std']:.1f}{paired}")
            lines.append(f"| {row['method']} | {row['baseline']} | " + " | ".join(cells) + " |")
        for row in mine:
            if "msam" in row:
                shares = ", ".join(f"{k} {v:.2f}" for k, v in row["msam"].items())
                lines.append(f"\n{row['method']} during training ({dataset}): {shares}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="1 seed, 2 epochs, small synthetic data")
    parser.add_argument("--datasets", nargs="+", choices=list(DATASETS), default=list(DATASETS))
    parser.add_argument("--methods", nargs="+", choices=list(METHODS), default=DEFAULT_METHODS)
    parser.add_argument("--seeds", nargs="+", type=int, default=None)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 avoids spinning on a shared CPU)")
    parser.add_argument("--out", type=Path, default=None, help="write the runs and the table as JSON")
    parser.add_argument("--tabulate", type=Path, nargs="+", default=None,
                        help="no training: print the table of the runs in these JSON results (earlier --out files)")
    args = parser.parse_args(argv)
    if args.tabulate:
        runs = {(r["dataset"], r["method"], r["seed"]): r for path in args.tabulate
                for r in json.loads(path.read_text())["runs"]}  # a run in several files counts once
        rows = aggregate(list(runs.values()))
        print(markdown(rows))
        return {"runs": list(runs.values()), "table": rows}
    seeds = args.seeds or ([0] if args.smoke else list(SEEDS))
    methods = list(dict.fromkeys([*args.methods, *(METHODS[m][2] for m in args.methods)]))  # baselines run too
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        runs = [train(dataset, method, seed, args.smoke, verbose=True)
                for dataset in args.datasets for seed in seeds for method in methods]
    finally:
        torch.set_num_threads(threads)  # when called in-process (tests), leave the caller's setting
    rows = aggregate(runs)
    print(markdown(rows))
    results = {"runs": runs, "table": rows, "smoke": args.smoke, "seeds": seeds, "threads": args.threads}
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
