"""Robustness: a finished run's checkpoint scored over corruption rates, and MultiBench's summaries.

For each protocol (missing rate, noise rate) and target (all modalities, and each modality alone)
the run's primary metric is evaluated at every rate, giving one curve per (protocol, target). Every
method sees the same corrupted samples: the corruption is seeded by sample index (DESIGN §5).

MultiBench (specs/toolkit-anchors.md; its eval_scripts/robustness.py) summarises a curve f over
noise levels by
- relative robustness: the area under f (trapezoids, levels 0.1 apart). We divide that area by the
  span of the rates, so it is the curve's average score, on the metric's own scale for any grid of
  rates;
- effective robustness: sum over levels of f_i - beta_i, where beta = b + (f_0 - b_0) is a
  reference method's curve b (MultiBench: late fusion) shifted to f's clean score. We take the
  mean over the levels instead of the sum (again the metric's scale) and the grid's baseline
  method on the same dataset and seed as the reference. Positive: f loses less than b does.
MultiBench then min-max normalises both across the methods of a task; we report them unnormalised,
because a normalised number changes whenever the set of compared methods does.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from mmcore.bench.grid import RobustnessSettings
from mmcore.data.corruption import CorruptionConfig
from mmcore.evaluate_run import load_finished_run

ROBUSTNESS_FILE = "robustness.json"


def settings_record(settings: RobustnessSettings) -> dict[str, Any]:
    """What a stored sweep was computed with; a sweep with other settings is recomputed."""
    return {"rates": list(settings.rates), "protocols": list(settings.protocols), "per_modality": settings.per_modality,
            "noise": settings.noise, "level": settings.level, "split": settings.split,
            "checkpoint": settings.checkpoint, "seed": settings.seed}


def corruption_for(protocol: str, target: str, rate: float, settings: RobustnessSettings) -> CorruptionConfig:
    """One point of a curve: `target` is "all" or a modality name."""
    return CorruptionConfig(missing_rate=rate if protocol == "missing" else 0.0,
                            noise_rate=rate if protocol == "noise" else 0.0,
                            noise=settings.noise, level=settings.level, seed=settings.seed,
                            modalities=() if target == "all" else (target,))


def sweep(run_dir: Path, registry: Any, settings: RobustnessSettings) -> dict[str, Any]:
    """Curves {"<protocol>/<target>": [score at each rate]} of the run's primary metric."""
    trainer = load_finished_run(run_dir, registry, settings.checkpoint)
    evaluate, metric = trainer.evaluator.evaluate, trainer.evaluator.primary
    clean = evaluate(settings.split, corruption=CorruptionConfig())[metric]  # no corruption at all
    targets = ["all", *(trainer.model.modalities if settings.per_modality else ())]
    curves = {}
    for protocol in settings.protocols:
        for target in targets:
            curves[f"{protocol}/{target}"] = [
                clean if rate == 0.0 else evaluate(settings.split, corruption=corruption_for(protocol, target, rate, settings))[metric]
                for rate in settings.rates
            ]
    return {"metric": metric, "settings": settings_record(settings), "curves": curves}


def relative_robustness(rates: Sequence[float], scores: Sequence[float]) -> float:
    """Area under the score-vs-rate curve divided by the rate span: the curve's average score."""
    rates_, scores_ = np.asarray(rates, dtype=float), np.asarray(scores, dtype=float)
    if len(rates_) < 2:
        return float(scores_[0])
    return float(np.trapezoid(scores_, rates_) / (rates_[-1] - rates_[0]))


def effective_robustness(scores: Sequence[float], reference: Sequence[float]) -> float:
    """Mean over the levels of f_i - (b_i + f_0 - b_0): the score kept beyond the reference's drop."""
    f, b = np.asarray(scores, dtype=float), np.asarray(reference, dtype=float)
    return float(np.mean(f - (b + f[0] - b[0])))


def robustness_metrics(sweep_result: dict[str, Any], reference: dict[str, Any] | None) -> dict[str, float]:
    """`rel_robust/<curve>` for every curve, and `eff_robust/<curve>` against the reference's same curve."""
    rates = sweep_result["settings"]["rates"]
    metrics = {f"rel_robust/{name}": relative_robustness(rates, scores) for name, scores in sweep_result["curves"].items()}
    if reference is not None and reference["settings"] == sweep_result["settings"]:
        metrics |= {f"eff_robust/{name}": effective_robustness(scores, reference["curves"][name])
                    for name, scores in sweep_result["curves"].items() if name in reference["curves"]}
    return metrics
