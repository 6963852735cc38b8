"""Reading a bench directory back: the finished cells' metrics, robustness curves and costs, and the
results files written from them (results.csv, results.md). Needs no plugins: `mmcore report` and
`mmcore bench` both read a bench directory through here.

A bench directory:

    bench.json                  what the grid holds (datasets and their modalities, methods, seeds, ...)
    grid.toml                   the grid file as it was given
    cells/<dataset>/<method>/seed<k>/   one run directory per cell (DESIGN §6), plus robustness.json
    cost/<dataset>.json         side-by-side step times, parameters, peak memory
    results.csv  results.md     every aggregated row; per-dataset tables
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Mapping

from attrs import define, field

from mmcore.bench.aggregate import Row, aggregate, cost_rows
from mmcore.bench.robustness import ROBUSTNESS_FILE, robustness_metrics
from mmcore.bench.tables import results_csv, results_document
from mmcore.errors import DataError, UsageError
from mmcore.logging import write_text_atomic

BENCH_FILE = "bench.json"
FAILED_FILE = "failed.json"


def cell_dir(bench_dir: Path, dataset: str, method: str, seed: int) -> Path:
    return bench_dir / "cells" / dataset / method / f"seed{seed}"


def cost_file(bench_dir: Path, dataset: str) -> Path:
    return bench_dir / "cost" / f"{dataset}.json"


def config_digest(config_toml: str) -> str:
    """SHA-256 of a cell's resolved config text: bench.json records the grid's, each cell keeps its own."""
    return hashlib.sha256(config_toml.encode("utf-8")).hexdigest()


def read_info(bench_dir: Path) -> dict[str, Any]:
    path = Path(bench_dir) / BENCH_FILE
    if not path.is_file():
        raise UsageError(f"{bench_dir}: not a bench directory ({BENCH_FILE} is missing)")
    return json.loads(path.read_text(encoding="utf-8"))


def _read_json(path: Path) -> Any:
    """The file's JSON, None if it does not exist; a damaged file is a DataError naming it."""
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise DataError(path, f"not readable JSON ({error}); delete it to have the cell run again") from None


@define
class Collected:
    records: list[dict[str, Any]] = field(factory=list)  # {"dataset", "method", "seed", "metrics"}
    sweeps: dict[tuple[str, str, int], dict[str, Any]] = field(factory=dict)  # robustness.json per cell
    costs: dict[str, dict[str, Any]] = field(factory=dict)  # per dataset
    missing: list[str] = field(factory=list)
    failed: dict[str, str] = field(factory=dict)


def collect(bench_dir: Path, info: Mapping[str, Any]) -> Collected:
    """Every finished cell of the grid, whichever command or selection ran it."""
    out = Collected()
    split, baseline = info["split"], info["baseline"]
    for dataset in info["datasets"]:
        for seed in info["seeds"]:
            for method in info["methods"]:
                directory = cell_dir(bench_dir, dataset, method, seed)
                key = f"{dataset}/{method}/seed{seed}"
                if not _configured(directory, info, key):
                    out.missing.append(key)
                    continue
                failure = _read_json(directory / FAILED_FILE)
                summary = None if failure else _read_json(directory / "summary.json")
                if summary is None:
                    if failure:
                        out.failed[key] = failure["error"]
                    else:
                        out.missing.append(key)
                    continue
                metrics = dict(summary[split])
                if summary["timing"].get("train_s") is not None:
                    metrics["time/train_s"] = summary["timing"]["train_s"]
                out.records.append({"dataset": dataset, "method": method, "seed": seed, "metrics": metrics})
                sweep = _read_json(directory / ROBUSTNESS_FILE)
                if sweep is not None and _current(sweep, info.get("robustness")):
                    out.sweeps[dataset, method, seed] = sweep
        cost = _read_json(cost_file(bench_dir, dataset))
        if cost is not None:
            out.costs[dataset] = cost
    for record in out.records:  # robustness metrics need the baseline's curves of the same seed
        sweep = out.sweeps.get((record["dataset"], record["method"], record["seed"]))
        if sweep is not None:
            reference = out.sweeps.get((record["dataset"], baseline, record["seed"]))
            record["metrics"] |= robustness_metrics(sweep, reference)
    return out


def _configured(directory: Path, info: Mapping[str, Any], key: str) -> bool:
    """Whether the cell was trained from the config the grid gives now (bench.json); a cell outside the
    last selection may hold a run of an older config, which counts as not run yet."""
    wanted = info.get("configs", {}).get(key)
    saved = directory / "config.toml"
    return wanted is None or not saved.is_file() or config_digest(saved.read_text(encoding="utf-8")) == wanted


def _current(sweep: Mapping[str, Any], wanted: Mapping[str, Any] | None) -> bool:
    """A sweep counts when the grid's robustness settings computed it: a cell left out of the last
    selection keeps a sweep of older settings (other rates), which must not be averaged with new ones."""
    return not wanted or not wanted["rates"] or sweep.get("settings") == wanted


def result_rows(info: Mapping[str, Any], collected: Collected) -> list[Row]:
    rows = aggregate(collected.records, info["baseline"], list(info["datasets"]), info["methods"], info["primary"])
    for dataset, cost in collected.costs.items():
        rows += cost_rows(dataset, cost, info["methods"])
    order = {(d, m): i for i, (d, m) in enumerate((d, m) for d in info["datasets"] for m in info["methods"])}
    return sorted(rows, key=lambda r: order[r.dataset, r.method])  # stable: metric order kept


def write_results(bench_dir: Path) -> tuple[list[Row], Collected]:
    """results.csv and results.md from everything finished so far."""
    info = read_info(bench_dir)
    collected = collect(bench_dir, info)
    rows = result_rows(info, collected)
    write_text_atomic(bench_dir / "results.csv", results_csv(rows))
    document = results_document(info, rows, collected.missing, collected.failed, collected.costs)
    write_text_atomic(bench_dir / "results.md", document.to_markdown())
    return rows, collected
