"""The SAM-LML robustness protocols as sweeps (paper Appendix A.5 (2)-(3), §A.14).

- `train_sweep`, the paper's protocol: for each rate, train and test with the same corruption in
  train, validation and test: missing rate (Eq. 34) or feature-level noise rate (Eq. 35; Gaussian,
  Laplace, random erasing or a per-sample mix). It runs `mmcore.Trainer` per (rate, seed, variant),
  with the rates set through `[data.corruption.<split>]` overrides, and keeps each run directory,
  so an interrupted sweep picks up where it stopped.
- `eval_sweep`: finished runs' checkpoints scored under corruption at test time only, in process,
  as the core's `mmcore eval` scores them.

Both return records {variant, protocol, noise, rate, seed, metrics, run_dir}; `report` turns them
into tables and a plot.
"""
from __future__ import annotations

import json
import shutil
import tomllib
from pathlib import Path
from typing import Any, Iterable, Sequence

import mmcore

SPLITS = ("train", "val", "test")
PAPER_RATES = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7)  # Tables 5, 6 and 13


def corruption_overrides(protocol: str, rate: float, noise: str = "gaussian", level: str = "feature") -> list[str]:
    """`--set` items that put the same corruption on every split (rate 0: none)."""
    if rate == 0:
        return []
    if protocol == "missing":
        return [f"data.corruption.{s}.missing_rate={rate}" for s in SPLITS]
    if protocol == "noise":
        return [item for s in SPLITS for item in (f"data.corruption.{s}.noise_rate={rate}",
                                                  f'data.corruption.{s}.noise="{noise}"',
                                                  f'data.corruption.{s}.level="{level}"')]
    raise mmcore.ConfigError(f"unknown protocol {protocol!r}; protocols: missing, noise")


def run_name(label: str, protocol: str, noise: str, rate: float, seed: int) -> str:
    setting = "clean" if rate == 0 else (f"missing_r{rate:g}" if protocol == "missing" else f"{noise}_r{rate:g}")
    return f"{setting}/{label}_s{seed}"


def record(label: str, protocol: str, noise: str, rate: float, seed: int, metrics: dict[str, float],
           run_dir: Path | str) -> dict[str, Any]:
    return {"variant": label, "protocol": protocol, "noise": noise if protocol == "noise" else "",
            "rate": rate, "seed": seed, "metrics": metrics, "run_dir": str(run_dir)}


def train_one(config_path: Path, overrides: list[str], run_dir: Path, host: mmcore.PluginHost) -> dict[str, Any]:
    """One run's summary: read back when the run directory already finished, else trained."""
    summary_path = run_dir / "summary.json"
    if summary_path.exists():
        return json.loads(summary_path.read_text())
    config = mmcore.load_config(config_path, host.registry, overrides=overrides)
    problems = host.validate_config(config)
    if problems:
        raise mmcore.ConfigError(problems)
    if (run_dir / "config.toml").exists():  # an unfinished run of an earlier sweep: start it again
        shutil.rmtree(run_dir)
    trainer = mmcore.Trainer(config, host.registry, run_dir=run_dir, hook=host.hook)
    try:
        return trainer.fit()
    finally:
        trainer.close()


def train_sweep(config_path: Path, variants: dict[str, list[str]], groups: Sequence[tuple[str, str]],
                rates: Iterable[float], seeds: Iterable[int], out_dir: Path, host: mmcore.PluginHost,
                base_overrides: Sequence[str] = (), level: str = "feature") -> list[dict[str, Any]]:
    """The paper's protocol for every (protocol, noise) group x rate x seed x variant."""
    records = []
    for protocol, noise in groups:
        for rate in rates:
            for seed in seeds:
                for label, extra in variants.items():
                    run_dir = out_dir / run_name(label, protocol, noise, rate, seed)
                    overrides = [*base_overrides, *extra, f"run.seed={seed}",
                                 *corruption_overrides(protocol, rate, noise, level)]
                    summary = train_one(Path(config_path), overrides, run_dir, host)
                    records.append(record(label, protocol, noise, rate, seed, summary["test"], run_dir))
    return records


def run_seed(run_dir: Path) -> int:
    return int(tomllib.loads((run_dir / "config.toml").read_text()).get("run", {}).get("seed", 0))


def eval_sweep(runs: dict[str, list[Path]], groups: Sequence[tuple[str, str]], rates: Iterable[float],
               registry: mmcore.ComponentRegistry, level: str = "feature", split: str = "test",
               checkpoint: str = "best") -> list[dict[str, Any]]:
    """Every run of every variant, scored at every (protocol, noise) group x rate: each checkpoint is
    loaded once (`mmcore.load_finished_run`, what `mmcore eval` does) and evaluated in this process."""
    for label, dirs in runs.items():
        for run_dir in dirs:
            if not (run_dir / "checkpoints" / checkpoint).exists():
                raise mmcore.ConfigError(f"--run {label}={run_dir}: no checkpoints/{checkpoint} (not a finished run?)")
    records = []
    for label, dirs in runs.items():
        for run_dir in dirs:
            evaluator = mmcore.load_finished_run(run_dir, registry, checkpoint).evaluator
            for protocol, noise in groups:
                for rate in rates:
                    corruption = mmcore.CorruptionConfig(
                        missing_rate=rate if protocol == "missing" else 0.0,
                        noise_rate=rate if protocol != "missing" else 0.0,
                        noise=noise or "gaussian", level=level)  # seed 0, as `mmcore eval`
                    metrics = evaluator.evaluate(split, values=True, corruption=corruption)
                    records.append(record(label, protocol, noise, rate, run_seed(run_dir), metrics, run_dir))
    order = {(p, n): i for i, (p, n) in enumerate(groups)}
    return sorted(records, key=lambda r: (order[(r["protocol"], r["noise"])], r["rate"]))  # the old sweep order
