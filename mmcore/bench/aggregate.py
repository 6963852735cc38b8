"""Per (dataset, method, metric): mean ± std over seeds and the gain over the baseline method.

- std is the sample standard deviation (ddof = 1) over seeds; with one seed it is undefined and
  left empty (None), never reported as 0.
- gain is paired by seed: d_s = method_s - baseline_s over the seeds both finished; the row holds
  mean(d), its sample std, the number of pairs and the wins (seeds where the method is better:
  higher, or lower for errors and losses; none for Shapley shares, which are not better or worse).
  With the same seeds finished, mean(d) equals mean(method) - mean(baseline).
- Non-finite values (a metric that is nan for a seed) are left out of that metric's statistics.
Rows come in grid order: datasets, then methods, then metrics (fused, per modality, robustness,
time), so the CSV and Markdown tables are deterministic.
"""
from __future__ import annotations

import math
import statistics
from typing import Any, Iterable, Mapping, Sequence

from attrs import frozen

from mmcore.logging import ordered_metric_names

LOWER_IS_BETTER = ("mae", "loss", "probe_mae", "time")
NO_DIRECTION = ("value",)  # Shapley shares
ROBUSTNESS_PREFIXES = ("rel_robust", "eff_robust")  # scored in the dataset's primary metric


@frozen
class Row:
    dataset: str
    method: str
    metric: str
    n: int
    mean: float | None
    std: float | None
    gain: float | None = None
    gain_std: float | None = None
    pairs: int = 0
    wins: int | None = None


def mean_std(values: Sequence[float]) -> tuple[float | None, float | None]:
    """(mean, sample std with ddof = 1); std is None for one value, both None for none."""
    if not values:
        return None, None
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else None


def direction(metric: str, primary: str = "acc") -> int | None:
    """+1 when higher is better, -1 when lower is, None when neither (Shapley shares)."""
    prefix = metric.split("/")[0]
    if prefix in ROBUSTNESS_PREFIXES:
        prefix = primary
    if prefix in NO_DIRECTION:
        return None
    return -1 if prefix in LOWER_IS_BETTER else 1


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def aggregate(records: Iterable[Mapping[str, Any]], baseline: str, datasets: Sequence[str], methods: Sequence[str],
              primary: Mapping[str, str] | None = None) -> list[Row]:
    """Rows from per-seed records {"dataset", "method", "seed", "metrics": {name: value}}.

    `primary` maps a dataset to its primary metric (default acc), which the robustness metrics share."""
    by_cell: dict[tuple[str, str], dict[int, Mapping[str, Any]]] = {}
    for record in records:
        by_cell.setdefault((record["dataset"], record["method"]), {})[record["seed"]] = record["metrics"]
    rows = []
    for dataset in datasets:
        reference = by_cell.get((dataset, baseline), {})
        for method in methods:
            seeds = by_cell.get((dataset, method))
            if not seeds:
                continue
            ordered = [seeds[s] for s in sorted(seeds)]
            for name in ordered_metric_names(ordered):
                values = [m[name] for m in ordered if _finite(m.get(name))]
                mean, std = mean_std(values)
                row = Row(dataset, method, name, len(values), mean, std)
                if method != baseline:
                    row = _with_gain(row, seeds, reference, direction(name, (primary or {}).get(dataset, "acc")))
                rows.append(row)
    return rows


def _with_gain(row: Row, seeds: Mapping[int, Mapping[str, Any]], reference: Mapping[int, Mapping[str, Any]],
               better: int | None) -> Row:
    name = row.metric
    diffs = [seeds[s][name] - reference[s][name] for s in sorted(seeds)
             if s in reference and _finite(seeds[s].get(name)) and _finite(reference[s].get(name))]
    gain, gain_std = mean_std(diffs)
    wins = None if better is None or not diffs else sum(1 for d in diffs if d * better > 0)
    return Row(row.dataset, row.method, name, row.n, row.mean, row.std, gain, gain_std, len(diffs), wins)


def cost_rows(dataset: str, cost: Mapping[str, Any], methods: Sequence[str]) -> list[Row]:
    """One-shot measurements (no seeds): step ms and its ratio to the baseline, parameters, peak MiB."""
    rows = []
    for method in methods:
        measured = cost["methods"].get(method)
        if measured is None:
            continue
        for key in ("step_ms", "step_ratio", "params", "peak_mib"):
            value = measured.get(key)
            if _finite(value):
                rows.append(Row(dataset, method, f"cost/{key}", 1, float(value), None))
    return rows
