"""`mmcore report RUN_DIR | BENCH_DIR`: figures (PNG) and one page that embeds them, as Markdown
and as standalone HTML."""
from __future__ import annotations

import json
import os
import tomllib
from pathlib import Path

from mmcore.bench.results import BENCH_FILE, cell_dir, collect, read_info, result_rows
from mmcore.bench.tables import Formatter, results_document
from mmcore.errors import UsageError
from mmcore.logging import METRICS_FILE, summary_table, write_text_atomic
from mmcore.report import plots
from mmcore.report.curves import validation_curves
from mmcore.report.document import Document


def write_report(path: Path, out: Path | None = None, page: Path | None = None, command: str = "") -> list[Path]:
    """The page for a bench directory or a run directory: `page` ending in .md or .html is written in
    that format only; by default OUT/index.md and OUT/index.html. Returns the pages written."""
    path = Path(path)
    out = out or path / "report"
    pages = [page] if page is not None else [out / "index.md", out / "index.html"]
    if any(p.suffix not in (".md", ".html") for p in pages):
        raise UsageError(f"--page {page}: name a .md or an .html file")
    page = pages[0]
    if (path / BENCH_FILE).is_file():
        doc = bench_page(path, out, page.parent, command)
    elif (path / METRICS_FILE).is_file() and (path / "config.toml").is_file():
        doc = run_page(path, out, page.parent)
    else:
        raise UsageError(f"{path}: neither a run directory (metrics.jsonl, config.toml) nor a bench directory ({BENCH_FILE})")
    for written in pages:
        write_text_atomic(written, doc.to_markdown() if written.suffix == ".md" else doc.to_html())
    return pages


def _link(image: Path, page_dir: Path) -> str:
    return Path(os.path.relpath(image, page_dir)).as_posix()


def bench_page(bench_dir: Path, out: Path, page_dir: Path, command: str) -> Document:
    info = read_info(bench_dir)
    collected = collect(bench_dir, info)
    rows = result_rows(info, collected)
    baseline, methods = info["baseline"], info["methods"]
    figures: dict[str, list[tuple[str, str]]] = {}
    gains, units = {}, {}
    for dataset, modalities in info["datasets"].items():
        primary = info["primary"].get(dataset, "acc")
        runs = {m: [validation_curves(cell_dir(bench_dir, dataset, m, r["seed"])) for r in collected.records
                    if r["dataset"] == dataset and r["method"] == m] for m in methods}
        runs = {m: curves for m, curves in runs.items() if curves}
        shown = figures.setdefault(dataset, [])
        if runs:
            image = plots.training_curves(runs, modalities, out / f"curves_{dataset}.png", baseline=baseline,
                                          title=f"{dataset}: validation curves (mean ± std over seeds)", primary=primary)
            shown.append((_link(image, page_dir), f"{dataset}: validation accuracy and Shapley shares per epoch"))
        sweeps = {m: [s for (d, method, _), s in sorted(collected.sweeps.items()) if d == dataset and method == m]
                  for m in methods}
        sweeps = {m: s for m, s in sweeps.items() if s}
        if sweeps:
            names = list(next(iter(sweeps.values()))[0]["curves"])
            image = plots.robustness_curves(sweeps, names, out / f"robustness_{dataset}.png", baseline=baseline,
                                            title=f"{dataset}: test {primary} under corruption (mean over seeds)")
            shown.append((_link(image, page_dir), f"{dataset}: robustness curves"))
        gains[dataset] = {r.method: {} for r in rows if r.dataset == dataset and r.gain is not None}
        factor = Formatter(primary).scale(primary)[0]  # points for 0-1 metrics; an error such as MAE as it is
        units[dataset] = "points" if factor == 100.0 else primary
        for r in rows:
            if r.dataset == dataset and r.gain is not None and r.metric in (primary, *(f"{primary}/{m}" for m in modalities)):
                gains[dataset][r.method][r.metric] = (factor * r.gain, factor * (r.gain_std or 0.0))
    if any(gains.values()):
        image = plots.gain_bars({d: g for d, g in gains.items() if g}, methods, out / "gains.png", baseline=baseline,
                                title="gain over the baseline, paired by seed (mean ± std)", units=units)
        figures[""] = [(_link(image, page_dir), "gains over the baseline per dataset")]
    command = " && ".join(c for c in (info.get("command", ""), command) if c)
    return results_document(info, rows, collected.missing, collected.failed, collected.costs, figures, command)


def run_page(run_dir: Path, out: Path, page_dir: Path) -> Document:
    config = tomllib.loads((run_dir / "config.toml").read_text(encoding="utf-8"))
    name, modalities = config["run"]["name"], config["data"]["modalities"]
    doc = Document(f"Run: {name}")
    doc.paragraph(f"Run directory `{run_dir}`; modalities {', '.join(modalities)}.")
    summary_path = run_dir / "summary.json"
    if summary_path.is_file():
        doc.code(summary_table(json.loads(summary_path.read_text(encoding="utf-8"))))
    else:
        doc.paragraph("No summary.json: the run has not finished; the curves show what it logged.")
    curves = validation_curves(run_dir)
    primary = "mae" if "mae" in curves else "acc"
    image = plots.training_curves({name: [curves]}, modalities, out / "curves.png", primary=primary,
                                  title=f"{name}: validation curves")
    doc.image(_link(image, page_dir), "validation accuracy and Shapley shares per epoch")
    evaluations = sorted((run_dir / "eval").glob("*.json")) if (run_dir / "eval").is_dir() else []
    if evaluations:
        doc.heading("Corrupted evaluations (`mmcore eval`)")
        rows = []
        for path in evaluations:
            result = json.loads(path.read_text(encoding="utf-8"))
            c = result["corruption"]
            rows.append([path.stem, result["split"], f"{c['missing_rate']:g}", f"{c['noise_rate']:g} {c['noise']}",
                         c["level"], ",".join(c.get("modalities") or ()) or "all", f"{result['metrics'].get(primary, float('nan')):.4f}"])
        doc.table(["file", "split", "missing", "noise", "level", "modalities", primary], rows)
    return doc
