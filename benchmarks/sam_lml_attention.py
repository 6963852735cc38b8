"""SAM-LML's Figure 3 claim, measured: supervised attention gives noisy keys less weight.

For each seed, the same config (configs/sam_lml_synthetic.toml: three sequence modalities with
unequal signal, 20% of the real input steps pure noise) is trained twice with mmcore.Trainer: with
the `sam_lml` supervisor and without it (the same `sam_lml` fusion). The best-on-validation weights
are then probed on the test split, two ways:

- feature: 20% of each sequence's encoder outputs replaced by N(0, 1) just before the fusion, as the
  paper's Figure 3 replaces "the features of specific time slices" (FeatureNoiseProbe);
- input:   the dataset's own noisy input steps (`noise_positions/<m>`), which pass through the
  Conv1d + Transformer encoders first.

Reported per record kind: mean weight of a noisy key / mean weight of a clean key (1 = noise not
told apart, < 1 = suppressed), mean ± std over seeds, and in how many seeds (paired) the supervised
ratio is lower.

    python benchmarks/sam_lml_attention.py --out plugins/sam_lml/results/attention.json
    python benchmarks/sam_lml_attention.py --smoke
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any, Sequence

import torch

import mmcore
from mmcore_sam_lml.noise_attention import FeatureNoiseProbe, input_noise_weights, noise_attention_ratios

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "sam_lml_synthetic.toml"
VARIANTS = {"supervised": [], "unsupervised": ["attention_supervisors=[]"]}
SMOKE = ["run.epochs=1", "data.train_size=64", "data.val_size=32", "data.test_size=32"]
PROBES = ("feature", "input")
KINDS = ("intra", "inter", "all")


def train_and_probe(overrides: list[str], host: mmcore.PluginHost, seed: int) -> dict[str, Any]:
    config = mmcore.load_config(CONFIG, host.registry, overrides=[*overrides, f"run.seed={seed}"])
    trainer = mmcore.Trainer(config, host.registry)
    summary = trainer.fit()
    trainer.control.restore("best")  # model selection on validation only
    probes = {"feature": FeatureNoiseProbe(fraction=0.2, seed=seed), "input": input_noise_weights}
    ratios = {name: noise_attention_ratios(trainer.control.evaluate("test", probe)) for name, probe in probes.items()}
    return {"test_acc": summary["test"]["acc"], "best_epoch": summary["best_epoch"], "ratios": ratios}


def summarize(runs: dict[str, dict[int, dict[str, Any]]]) -> list[dict[str, Any]]:
    rows = []
    for probe in PROBES:
        for kind in KINDS:
            values = {v: {s: r["ratios"][probe][kind]["ratio"] for s, r in by_seed.items()} for v, by_seed in runs.items()}
            seeds = sorted(set(values["supervised"]) & set(values["unsupervised"]))
            rows.append({"probe": probe, "records": kind,
                         **{v: _stats(list(values[v].values())) for v in VARIANTS},
                         "supervised_lower": sum(values["supervised"][s] < values["unsupervised"][s] for s in seeds),
                         "seeds": len(seeds)})
    accuracy = {v: _stats([r["test_acc"] for r in by_seed.values()]) for v, by_seed in runs.items()}
    rows.append({"probe": "test acc", "records": "", **accuracy, "supervised_lower": None, "seeds": len(runs["supervised"])})
    return rows


def _stats(values: list[float]) -> dict[str, Any]:
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0, "values": values}


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = ["| probe | records | supervised | unsupervised | seeds supervised lower |", "|---|---|---|---|---|"]
    for row in rows:
        cells = [f"{row[v]['mean']:.3f} ± {row[v]['std']:.3f}" for v in VARIANTS]
        lower = "–" if row["supervised_lower"] is None else f"{row['supervised_lower']}/{row['seeds']}"
        lines.append(f"| {row['probe']} | {row['records']} | {cells[0]} | {cells[1]} | {lower} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--smoke", action="store_true", help="one seed, one tiny epoch (seconds)")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (tiny models: 1)")
    parser.add_argument("--out", type=Path, help="JSON results file")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    seeds = args.seeds[:1] if args.smoke else args.seeds
    base = [*(SMOKE if args.smoke else []), *args.overrides]
    host = mmcore.PluginHost(load_only=["mmcore-sam-lml"])
    runs: dict[str, dict[int, dict[str, Any]]] = {v: {} for v in VARIANTS}
    started = time.perf_counter()
    for seed in seeds:
        for variant, extra in VARIANTS.items():
            runs[variant][seed] = train_and_probe([*base, *extra], host, seed)
    rows = summarize(runs)
    result = {"config": str(CONFIG.relative_to(ROOT)), "overrides": base, "seeds": seeds, "rows": rows, "runs": runs,
              "seconds": time.perf_counter() - started}
    print(markdown(rows))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
