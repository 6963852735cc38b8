"""Robustness records -> a table per (protocol, noise) group, as JSON, Markdown and a plot.

Each row is one rate: per variant the mean ± sample std over seeds and the number of seeds; the
first two variants are compared seed by seed (same seed = same data, corruption and initial
weights): the mean difference and the number of seeds in which the first is better. "Avg" averages
the corrupted rates (rate > 0), as the paper's tables average 0.1-0.7.
"""
from __future__ import annotations

import json
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

LOWER_IS_BETTER = ("mae", "loss", "probe_mae")


def lower_is_better(metric: str) -> bool:
    return metric.split("/")[0] in LOWER_IS_BETTER


def display_scale(metric: str) -> float:
    """Percent for accuracies and F1 scores; errors and correlations as they are."""
    return 1.0 if lower_is_better(metric) or metric.startswith("corr") else 100.0


def group_title(protocol: str, noise: str) -> str:
    return "missing rate (Eq. 34)" if protocol == "missing" else f"{noise} noise rate (Eq. 35)"


def _stats(values: list[float]) -> dict[str, Any]:
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "n": len(values), "values": values}


def _paired(first: dict[int, float], second: dict[int, float], metric: str) -> dict[str, Any]:
    seeds = sorted(set(first) & set(second))
    sign = -1.0 if lower_is_better(metric) else 1.0
    diffs = [first[s] - second[s] for s in seeds]
    return {"diff": statistics.fmean(diffs) if diffs else float("nan"), "seeds": len(seeds),
            "wins": sum(1 for d in diffs if sign * d > 0)}


def summarize(records: list[dict[str, Any]], metric: str) -> dict[str, Any]:
    """{"metric", "variants", "groups": [{protocol, noise, title, rows: [{rate, variants, paired}]}]}."""
    variants = list(dict.fromkeys(r["variant"] for r in records))
    by_cell: dict[tuple, dict[str, dict[int, float]]] = defaultdict(lambda: defaultdict(dict))
    for r in records:
        by_cell[(r["protocol"], r["noise"], r["rate"])][r["variant"]][r["seed"]] = float(r["metrics"][metric])
    groups = []
    for protocol, noise in dict.fromkeys((p, n) for p, n, _ in by_cell):
        rates = sorted(rate for p, n, rate in by_cell if (p, n) == (protocol, noise))
        cells = [by_cell[(protocol, noise, rate)] for rate in rates]
        rows = [_row(rate, cell, variants, metric) for rate, cell in zip(rates, cells)]
        corrupted = [c for rate, c in zip(rates, cells) if rate > 0] or cells  # the paper's Avg: rates 0.1-0.7
        rows.append(_row("Avg", _per_seed_average(corrupted, variants), variants, metric))
        groups.append({"protocol": protocol, "noise": noise, "title": group_title(protocol, noise), "rows": rows})
    return {"metric": metric, "variants": variants, "groups": groups}


def _per_seed_average(cells: list[dict[str, dict[int, float]]], variants: list[str]) -> dict[str, dict[int, float]]:
    """Each variant's metric averaged over the given rates, per seed (seeds present at every rate)."""
    average = {}
    for v in variants:
        if all(v in c for c in cells):
            seeds = set.intersection(*(set(c[v]) for c in cells))
            average[v] = {s: statistics.fmean(c[v][s] for c in cells) for s in sorted(seeds)}
    return average


def _row(rate: float | str, cell: dict[str, dict[int, float]], variants: list[str], metric: str) -> dict[str, Any]:
    row: dict[str, Any] = {"rate": rate, "variants": {v: _stats(list(cell[v].values())) for v in variants if v in cell}}
    if len(variants) >= 2 and all(v in cell for v in variants[:2]):
        row["paired"] = _paired(cell[variants[0]], cell[variants[1]], metric)
    return row


def markdown(table: dict[str, Any]) -> str:
    """One Markdown table per group (accuracies in percent)."""
    variants, metric = table["variants"], table["metric"]
    scale, digits = display_scale(metric), 1 if display_scale(metric) > 1 else 3
    paired = len(variants) >= 2
    lines = []
    for group in table["groups"]:
        head = ["rate", *(f"{v} {metric}" for v in variants)]
        if paired:
            head += [f"{variants[0]} − {variants[1]}", f"seeds {variants[0]} better"]
        lines += [f"**{group['title']}**", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for row in group["rows"]:
            cells = [str(row["rate"])]
            for v in variants:
                s = row["variants"].get(v)
                cells.append(f"{scale * s['mean']:.{digits}f} ± {scale * s['std']:.{digits}f} (n={s['n']})" if s else "–")
            if paired and "paired" in row:
                p = row["paired"]
                cells += [f"{scale * p['diff']:+.{digits}f}", f"{p['wins']}/{p['seeds']}"]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def plot(table: dict[str, Any], path: Path) -> None:
    """Metric against rate, one panel per group, one line (mean ± std over seeds) per variant."""
    scale = display_scale(table["metric"])
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed
    import matplotlib.pyplot as plt

    groups = table["groups"]
    figure, axes = plt.subplots(1, len(groups), figsize=(4.5 * len(groups), 3.6), squeeze=False)
    for axis, group in zip(axes[0], groups):
        rows = [r for r in group["rows"] if r["rate"] != "Avg"]
        for v in table["variants"]:
            points = [(r["rate"], r["variants"][v]) for r in rows if v in r["variants"]]
            axis.errorbar([x for x, _ in points], [scale * s["mean"] for _, s in points],
                          yerr=[scale * s["std"] for _, s in points], marker="o", capsize=3, label=v)
        axis.set_title(group["title"])
        axis.set_xlabel("rate")
        axis.set_ylabel(table["metric"])
        axis.grid(alpha=0.3)
        axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def write_report(records: list[dict[str, Any]], metric: str, out_dir: Path, name: str = "robustness") -> dict[str, Any]:
    """Writes <name>.json (records and table), <name>.md and <name>.png under `out_dir`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    table = summarize(records, metric)
    text = markdown(table)
    (out_dir / f"{name}.json").write_text(json.dumps({"table": table, "records": records}, indent=2))
    (out_dir / f"{name}.md").write_text(text)
    plot(table, out_dir / f"{name}.png")
    return {"table": table, "markdown": text, "files": [str(out_dir / f"{name}.{e}") for e in ("json", "md", "png")]}
