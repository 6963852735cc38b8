"""The SAM-LML robustness protocols as sweeps (paper Appendix A.5 (2)-(3), §A.14).

- `train_sweep`, the paper's protocol: for each rate, train and test with the same corruption in
  train, validation and test: missing rate (Eq. 34) or feature-level noise rate (Eq. 35; Gaussian,
  Laplace, random erasing or a per-sample mix). It runs `mmcore.Trainer` per (rate, seed, variant),
  with the rates set through `[data.corruption.<split>]` overrides, and keeps each run directory,
  so an interrupted sweep picks up where it stopped.
- `eval_sweep`: finished runs' checkpoints scored under corruption at test time only, through the
  core's `mmcore eval` command.

Both return records {variant, protocol, noise, rate, seed, metrics, run_dir}; `report` turns them
into tables and a plot.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
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


def evaluate_corrupted(run_dir: Path, protocol: str, rate: float, noise: str, level: str, split: str,
                       checkpoint: str, plugin_modules: Sequence[str] = ()) -> dict[str, float]:
    """`mmcore eval` on one checkpoint under one corruption (in a subprocess: the core has no Python
    counterpart of the command); its metrics. `plugin_modules` are passed on as `-p`."""
    rate_option = "--missing-rate" if protocol == "missing" else "--noise-rate"
    command = [sys.executable, "-m", "mmcore", *(f"-p{m}" for m in plugin_modules), "eval", str(run_dir),
               "--split", split, "--checkpoint", checkpoint, rate_option, str(rate), "--noise", noise or "gaussian",
               "--level", level]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise mmcore.MMCoreError(f"mmcore eval {run_dir} failed ({done.returncode}): {done.stderr.strip()[-500:]}")
    return json.loads(done.stdout)["metrics"]


def run_seed(run_dir: Path) -> int:
    return int(tomllib.loads((run_dir / "config.toml").read_text()).get("run", {}).get("seed", 0))


def eval_sweep(runs: dict[str, list[Path]], groups: Sequence[tuple[str, str]], rates: Iterable[float],
               level: str = "feature", split: str = "test", checkpoint: str = "best",
               plugin_modules: Sequence[str] = ()) -> list[dict[str, Any]]:
    """Every run of every variant, scored at every (protocol, noise) group x rate."""
    for label, dirs in runs.items():
        for run_dir in dirs:
            if not (run_dir / "checkpoints" / checkpoint).exists():
                raise mmcore.ConfigError(f"--run {label}={run_dir}: no checkpoints/{checkpoint} (not a finished run?)")
    return [record(label, protocol, noise, rate, run_seed(run_dir),
                   evaluate_corrupted(run_dir, protocol, rate, noise, level, split, checkpoint, plugin_modules), run_dir)
            for protocol, noise in groups for rate in rates
            for label, dirs in runs.items() for run_dir in dirs]
