"""Effect of PaSE on real data: mfeat with three views (pix, fou, mor), against joint training.

Every variant is a real run through the public API (mmcore.testing.make_trainer + Trainer.fit) with
the quickstart architecture (MLP encoders [128, 64], SGD lr 0.05 momentum 0.9, batch 64, 30 epochs).
The best epoch is chosen on validation accuracy; the numbers are the test metrics of that epoch
(summary["test"]). Variants:

- joint:          concat fusion, no balancer (plain joint training, the baseline);
- pase:           `pase` fusion (PCL + CAL + prototype gates) and the `pase_sgm` balancer;
- pase w/o SGM:   the `pase` fusion without the balancer;
- pase w/o CAL:   `cal_weight = 0`;
- pase w/o PCL:   `pcl_weight = 0` (prototypes are still tracked: gates and CAL need them);
- pase fusion only:        the gated fusion without PCL, CAL and SGM (what the architecture alone does);
- pase, SGM from epoch 0:  SGM on from the start instead of after the plateau (the official code's
                           fixed switch, at epoch 0);
- joint + SGM from epoch 0: the concat fusion of joint training with SGM from the start.

The weak view is the one with the lowest mean validation accuracy alone (`acc/<m>`: the fused head
with only that view present) under joint training; we report its test `acc/<m>` and its linear-probe
accuracy (`probe_acc/<m>`), and for each variant the number of seeds in which it beats joint
training on the same seed.

    python benchmarks/pase_effect.py --out runs/pase_effect.json
    python benchmarks/pase_effect.py --smoke     # one seed, two epochs, seconds (tests)
"""
from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
from pathlib import Path
from typing import Any, Sequence

import torch

import mmcore
from mmcore.testing import make_trainer

VIEWS = ["pix", "fou", "mor"]
SEEDS = (0, 1, 2)
BASE: dict[str, Any] = {
    "run": {"name": "pase_effect", "seed": 0, "epochs": 30, "device": "cpu", "log_every_steps": 5,
            "value_every_epoch": False},
    "data": {"kind": "mfeat", "modalities": VIEWS, "batch_size": 64},
    "encoders": {m: {"kind": "mlp", "hidden": [128, 64]} for m in VIEWS},
    "fusion": {"kind": "concat"},
    "optimizer": {"kind": "sgd", "lr": 0.05, "momentum": 0.9},
}
PASE_FUSION = {"kind": "pase"}
SGM = {"kind": "pase_sgm"}
VARIANTS: dict[str, dict[str, Any]] = {
    "joint": {},
    "pase": {"fusion": PASE_FUSION, "balancers": [SGM]},
    "pase w/o SGM": {"fusion": PASE_FUSION},
    "pase w/o CAL": {"fusion": PASE_FUSION | {"cal_weight": 0.0}, "balancers": [SGM]},
    "pase w/o PCL": {"fusion": PASE_FUSION | {"pcl_weight": 0.0}, "balancers": [SGM]},
    "pase fusion only": {"fusion": PASE_FUSION | {"pcl_weight": 0.0, "cal_weight": 0.0}},
    "pase, SGM from epoch 0": {"fusion": PASE_FUSION, "balancers": [SGM | {"switch_epoch": 0}]},
    "joint + SGM from epoch 0": {"balancers": [SGM | {"switch_epoch": 0}]},
}
SMOKE_VARIANTS = ("joint", "pase")


def run_config(variant: str, seed: int, smoke: bool) -> dict[str, Any]:
    config = copy.deepcopy(BASE) | copy.deepcopy(VARIANTS[variant])
    config["run"]["seed"] = seed
    if smoke:  # two epochs, SGM on from the second so the smoke run exercises phase 2
        config["run"] |= {"epochs": 2, "probe": False}
        config["balancers"] = [b | {"switch_epoch": 1} for b in config.get("balancers", [])]
    return config


class TrainLog:
    """Observer: the training metrics of every logging point (task loss, SGM's shares and φ)."""

    __name__ = "pase_effect.train_log"

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []

        self.val_acc: list[float] = []

    @mmcore.hookimpl
    def mmcore_log_metrics(self, metrics: dict[str, float], epoch: int, split: str) -> None:
        if split == "train":
            self.rows.append({"epoch": epoch, **metrics})
        elif split == "val":
            self.val_acc.append(metrics["acc"])


def train(variant: str, seed: int, smoke: bool) -> dict[str, Any]:
    log = TrainLog()
    trainer = make_trainer(run_config(variant, seed, smoke), modules=[log])
    try:
        summary = trainer.fit()
    finally:
        trainer.close()
    sgm = [b for b in trainer.balancers if hasattr(b, "switch")]
    losses: dict[int, list[float]] = {}
    for row in log.rows:
        losses.setdefault(row["epoch"], []).append(row["loss/task"])
    final_phi = {k.rsplit("/", 1)[1]: v for k, v in log.rows[-1].items() if "/phi/" in k} if log.rows else {}
    return {"variant": variant, "seed": seed, "best_epoch": summary["best_epoch"], "val": summary["val"],
            "test": summary["test"], "second_phase_from": sgm[0].switch.second_phase_from if sgm else None,
            "train_task_loss": {e: statistics.mean(v) for e, v in losses.items()}, "final_phi": final_phi,
            "val_acc_by_epoch": log.val_acc}


def weakest_view(runs: list[dict[str, Any]]) -> str:
    """Lowest mean validation accuracy alone under joint training: no test split involved."""
    joint = [r for r in runs if r["variant"] == "joint"]
    return min(VIEWS, key=lambda m: statistics.mean(r["val"][f"acc/{m}"] for r in joint))


def summarise(runs: list[dict[str, Any]], weak: str) -> list[dict[str, Any]]:
    metrics = {"acc": "fused acc", f"acc/{weak}": f"{weak} alone acc", f"probe_acc/{weak}": f"{weak} probe acc"}
    joint = {r["seed"]: r["test"] for r in runs if r["variant"] == "joint"}
    rows = []
    for variant in dict.fromkeys(r["variant"] for r in runs):
        mine = [r for r in runs if r["variant"] == variant]
        row: dict[str, Any] = {"variant": variant, "seeds": len(mine),
                               "second_phase_from": [r["second_phase_from"] for r in mine]}
        for key, label in metrics.items():
            values = [r["test"][key] for r in mine if key in r["test"]]
            if not values:
                continue
            row[label] = {"mean": statistics.mean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0,
                          "beats_joint": sum(r["test"][key] > joint[r["seed"]][key] for r in mine)}
        rows.append(row)
    return rows


def sgm_diagnostics(runs: list[dict[str, Any]]) -> str:
    """When SGM switched on, the training loss then (logged in that epoch, or the closest before),
    and φ at the end of training."""
    lines = ["| variant | seed | SGM from epoch | train task loss: epoch 0 | at the switch | final φ (" +
             ", ".join(VIEWS) + ") |", "|---|---|---|---|---|---|"]
    for r in runs:
        start = r["second_phase_from"]
        if start is None:
            continue
        losses = r["train_task_loss"]
        logged = [e for e in losses if e <= start] or list(losses)
        phi = ", ".join(f"{r['final_phi'].get(m, float('nan')):.2f}" for m in VIEWS)
        lines.append(f"| {r['variant']} | {r['seed']} | {start} | {losses[min(losses)]:.3f} | "
                     f"{losses[max(logged)]:.4f} | {phi} |")
    return "\n".join(lines)


def early_epochs(runs: list[dict[str, Any]], epochs: Sequence[int] = (1, 2, 3, 5)) -> str:
    """Mean validation accuracy after the first few epochs: how fast each variant starts."""
    lines = ["| variant | " + " | ".join(f"val acc after epoch {e}" for e in epochs) + " |",
             "|---|" + "---|" * len(epochs)]
    for variant in dict.fromkeys(r["variant"] for r in runs):
        curves = [r["val_acc_by_epoch"] for r in runs if r["variant"] == variant]
        cells = [f"{100 * statistics.mean(c[e - 1] for c in curves):.1f}" if all(len(c) >= e for c in curves) else "—"
                 for e in epochs]
        lines.append(f"| {variant} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def markdown(rows: list[dict[str, Any]]) -> str:
    labels = [k for k in rows[0] if isinstance(rows[0][k], dict)]
    header = ["variant", *[f"{label} (test)" for label in labels], "wins vs joint (" + " / ".join(labels) + ")",
              "SGM from epoch"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [f"{100 * row[k]['mean']:.2f} ± {100 * row[k]['std']:.2f}" for k in labels]
        wins = " / ".join(f"{row[k]['beats_joint']}/{row['seeds']}" for k in labels)
        wins = "—" if row["variant"] == "joint" else wins
        phase = ", ".join("—" if e is None else str(e) for e in row["second_phase_from"])
        lines.append("| " + " | ".join([row["variant"], *cells, wins, phase]) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="one seed, two epochs, joint and pase only")
    parser.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    parser.add_argument("--out", type=Path, default=None, help="write the runs and the table as JSON here")
    args = parser.parse_args(argv)
    seeds = args.seeds[:1] if args.smoke else args.seeds
    variants = SMOKE_VARIANTS if args.smoke else tuple(VARIANTS)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a shared 2-core machine: one thread is faster than two at these sizes
    try:
        runs = [train(v, s, args.smoke) for s in seeds for v in variants]
    finally:
        torch.set_num_threads(threads)  # the smoke test runs inside pytest's process
    weak = weakest_view(runs)
    rows = summarise(runs, weak)
    table, diagnostics, start = markdown(rows), sgm_diagnostics(runs), early_epochs(runs)
    print(f"mfeat {'+'.join(VIEWS)}, seeds {list(seeds)}; weak view (joint, validation): {weak}\n{table}\n\n"
          f"{diagnostics}\n\n{start}")
    result = {"views": VIEWS, "seeds": list(seeds), "weak_view": weak, "rows": rows, "runs": runs, "markdown": table,
              "sgm_markdown": diagnostics, "early_markdown": start}
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
