"""The results table: every row as CSV (long form, full precision), and per dataset three Markdown
tables (quality, robustness, cost) with mean ± std cells and gains over the baseline."""
from __future__ import annotations

import csv
import io
from typing import Any, Mapping, Sequence

from mmcore.bench.aggregate import Row
from mmcore.report.document import Document

CSV_COLUMNS = ("dataset", "method", "metric", "n", "mean", "std", "gain", "gain_std", "pairs", "wins")
# metrics on a 0-1 scale, shown in percent (points for differences)
PERCENT = ("acc", "macro_f1", "probe_acc", "value", "acc2_has0", "acc2_non0", "f1_has0", "f1_non0", "acc5", "acc7")


def results_csv(rows: Sequence[Row]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for row in rows:
        writer.writerow(["" if (v := getattr(row, c)) is None else v for c in CSV_COLUMNS])
    return out.getvalue()


class Formatter:
    """Numbers as the tables show them: percent for 0-1 metrics, robustness in its metric's scale."""

    def __init__(self, primary: str) -> None:
        self.primary = primary

    def scale(self, metric: str) -> tuple[float, int]:
        prefix = metric.split("/")[0]
        if prefix in ("rel_robust", "eff_robust"):
            prefix = self.primary
        if prefix in PERCENT:
            return 100.0, 2
        return {"cost": (1.0, 3), "time": (1.0, 1)}.get(prefix, (1.0, 4))

    def value(self, metric: str, mean: float | None, std: float | None = None, signed: bool = False) -> str:
        if mean is None:
            return "–"
        factor, digits = self.scale(metric)
        text = f"{factor * mean:{'+' if signed else ''}.{digits}f}"
        return text if std is None else f"{text} ± {factor * std:.{digits}f}"

    def gain(self, row: Row | None) -> str:
        if row is None or row.gain is None:
            return ""
        wins = f" ({row.wins}/{row.pairs})" if row.wins is not None else ""
        return self.value(row.metric, row.gain, row.gain_std, signed=True) + wins


def dataset_tables(doc: Document, dataset: str, rows: Sequence[Row], methods: Sequence[str], modalities: Sequence[str],
                   baseline: str, primary: str) -> None:
    """The three tables of one dataset, each only when it has data."""
    at = {(r.method, r.metric): r for r in rows if r.dataset == dataset}
    fmt = Formatter(primary)
    present = [m for m in methods if (m, primary) in at]

    def cell(method: str, metric: str) -> str:
        row = at.get((method, metric))
        return fmt.value(metric, row.mean, row.std) if row else "–"

    gained = [primary, *(f"{primary}/{m}" for m in modalities)]
    plain = [f"probe_{primary}/{m}" for m in modalities] + [f"value/{m}" for m in modalities]
    plain = [p for p in plain if any((m, p) in at for m in present)]
    header = ["method"] + [h for g in gained for h in (g, f"Δ {g}")] + plain
    body = [[m] + [c for g in gained for c in (cell(m, g), fmt.gain(at.get((m, g))))] + [cell(m, p) for p in plain]
            for m in present]
    doc.table(header, body)

    curves = list(dict.fromkeys(r.metric.split("/", 1)[1] for r in rows  # the sweep's order: protocol, all, each
                                if r.dataset == dataset and r.metric.startswith("rel_robust/")))
    if curves:
        doc.paragraph(f"Robustness ({primary}): relative robustness ± std, and in brackets the effective "
                      f"robustness against {baseline} (mean over seeds).")
        robust = [[m] + [_robust_cell(fmt, at.get((m, f"rel_robust/{c}")), None if m == baseline else
                                      at.get((m, f"eff_robust/{c}"))) for c in curves] for m in present]
        doc.table(["method", *curves], robust)

    if any((m, "cost/step_ms") in at for m in present) or any((m, "time/train_s") in at for m in present):
        doc.table(["method", "step ms", f"× {baseline}", "parameters", "peak MiB", "train s (runs)"],
                  [[m, cell(m, "cost/step_ms"), cell(m, "cost/step_ratio"), _count(at.get((m, "cost/params"))),
                    _one(at.get((m, "cost/peak_mib"))), cell(m, "time/train_s")] for m in present])


def _robust_cell(fmt: Formatter, relative: Row | None, effective: Row | None) -> str:
    text = fmt.value(relative.metric, relative.mean, relative.std) if relative else "–"
    if effective is not None and effective.mean is not None:
        text += f" ({fmt.value(effective.metric, effective.mean, signed=True)})"
    return text


def _count(row: Row | None) -> str:
    return "–" if row is None or row.mean is None else f"{int(row.mean):,}"


def _one(row: Row | None) -> str:
    return "–" if row is None or row.mean is None else f"{row.mean:.1f}"


Figures = Mapping[str, Sequence[tuple[str, str]]]  # dataset ("" = the whole bench) -> [(image path, alt text)]


def results_document(info: Mapping[str, Any], rows: Sequence[Row], missing: Sequence[str], failed: Mapping[str, str],
                     costs: Mapping[str, Mapping[str, Any]], figures: Figures | None = None,
                     command: str = "") -> Document:
    """results.md (and the report page, with figures): what was run and how it is summarised, then
    every dataset's tables and figures."""
    figures = figures or {}
    doc = Document(f"Bench: {info['name']}")
    if command:
        doc.paragraph("Regenerate everything on this page with:")
        doc.code(command)
    if info.get("description"):
        doc.paragraph(info["description"])
    doc.paragraph(_method_paragraph(info))
    for image, alt in figures.get("", ()):
        doc.image(image, alt)
    for dataset, modalities in info["datasets"].items():
        primary = info["primary"].get(dataset, "acc")
        doc.heading(f"{dataset} ({' + '.join(modalities)})")
        dataset_tables(doc, dataset, rows, info["methods"], modalities, info["baseline"], primary)
        if dataset in costs:
            doc.paragraph(_cost_paragraph(costs[dataset]))
        for image, alt in figures.get(dataset, ()):
            doc.image(image, alt)
    if missing or failed:
        doc.heading("Cells without results")
        doc.paragraph(", ".join([*(f"`{k}` (not run yet)" for k in missing),
                                 *(f"`{k}` (failed: {why})" for k, why in failed.items())]))
    return doc


def _method_paragraph(info: Mapping[str, Any]) -> str:
    seeds = info["seeds"]
    text = (f"Base config `{info['base']}`; methods {', '.join(f'`{m}`' for m in info['methods'])}; seeds {seeds}. "
            f"Each number is the {info['split']} split of a run selected on validation (`summary.json`), "
            f"mean ± sample std (ddof = 1) over seeds. Δ is the gain over `{info['baseline']}` paired by seed "
            f"(mean ± std of the per-seed differences, and the seeds won); percentages for 0–1 metrics.")
    robustness = info.get("robustness")
    if robustness and robustness["rates"]:
        text += (f" Robustness: the {robustness['split']} split under {robustness['level']}-level "
                 f"{robustness['noise']} noise or missing modalities at rates {robustness['rates']}, on all modalities "
                 "and on each alone; relative robustness is the curve's area divided by the rate span (its average "
                 "score), effective robustness the mean of f_i − (b_i + f_0 − b_0) against the baseline b "
                 "(MultiBench's definitions, unnormalised). Every sample keeps one modality, so a missing rate over "
                 "all M modalities saturates at (M − 1)/M.")
    return text


def _cost_paragraph(cost: Mapping[str, Any]) -> str:
    machine = cost["machine"]
    load = machine.get("loadavg_before")
    where = machine.get("gpu") or machine["cpu"]
    peak = "the CUDA allocator's peak" if "gpu" in machine else "the growth of a fresh process's peak resident set size"
    text = (f"Cost measured on {where} ({machine['device']}, torch {machine['torch']}, {cost['threads']} thread(s)), "
            f"{cost['clock']} clock: median of {cost['settings']['rounds']} rounds × {cost['settings']['steps']} steps "
            f"per method, the methods alternating within one process. Peak MiB: what training steps add on top of "
            f"the built model and data ({peak}). Epoch-level work (valuation passes, stage switches, resampled "
            "epochs) is not in a step: train s, each run's own wall-clock training time, shows it, measured one run "
            "after another and so with whatever else the machine was doing then.")
    if load:
        text += f" 1-minute load average before / after: {load[0]:.1f} / {cost['machine']['loadavg_after'][0]:.1f}."
    return text
