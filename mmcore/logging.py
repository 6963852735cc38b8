"""Run logging: metrics.jsonl, TensorBoard scalars, a progress bar and the closing summary table.

metrics.jsonl holds one JSON object per logged event, `{"step", "epoch", "split", <metric>: value}`,
flushed on every call so a killed run keeps what it logged. JSON has no inf or nan, so non-finite
values are written as null (TensorBoard still receives them as they are).
"""
from __future__ import annotations

import json
import math
import os
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any, Iterable, Mapping

import torch
from tqdm import tqdm

METRICS_FILE = "metrics.jsonl"
TENSORBOARD_DIR = "tb"
RESERVED_KEYS = ("step", "epoch", "split")
SUMMARY_SPLITS = ("val", "test", "test_last")
FUSED_METRIC_ORDER = (
    "acc", "macro_f1", "mae", "corr", "acc2_has0", "acc2_non0",
    "f1_has0", "f1_non0", "acc5", "acc7", "loss",
)
PER_MODALITY_PREFIXES = ("acc", "mae", "probe_acc", "probe_mae", "value")


class RunLogger:
    """Appends metric events to `run_dir/metrics.jsonl` and TensorBoard (`run_dir/tb`).

    With `resume_step`, lines logged after that step (by the interrupted run, past its last
    checkpoint) are dropped from metrics.jsonl, and TensorBoard is told to purge them too.
    """

    def __init__(
        self, run_dir: Path | str, enable_tensorboard: bool = True, resume_step: int | None = None
    ) -> None:
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.metrics_path = self.run_dir / METRICS_FILE
        if resume_step is not None:
            truncate_metrics_log(self.metrics_path, resume_step)
        self._file = open(self.metrics_path, "a", encoding="utf-8")
        self._writer = None
        if enable_tensorboard:
            purge_step = None if resume_step is None else resume_step + 1
            self._writer = _open_tensorboard(self.run_dir / TENSORBOARD_DIR, purge_step)

    def log(self, metrics: Mapping[str, Any], step: int, epoch: int, split: str) -> None:
        """Record one event; values may be floats, ints or 0-dim tensors (read back here)."""
        clashes = [k for k in RESERVED_KEYS if k in metrics]
        if clashes:
            raise ValueError(f"metric names {clashes} clash with the record's own keys")
        values = {name: float(value) for name, value in metrics.items()}
        record = {"step": int(step), "epoch": int(epoch), "split": split, **values}
        self._file.write(json.dumps(json_safe(record), allow_nan=False) + "\n")
        self._file.flush()
        if self._writer is not None:
            for name, value in values.items():
                self._writer.add_scalar(f"{split}/{name}", value, global_step=int(step))
            self._writer.flush()

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def __enter__(self) -> RunLogger:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def truncate_metrics_log(path: Path, resume_step: int) -> None:
    """Keep only the events with step <= resume_step; a torn last line from a kill is dropped."""
    if not path.exists():
        return
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and isinstance(record.get("step"), int):
            if record["step"] <= resume_step:
                kept.append(line + "\n")
    write_text_atomic(path, "".join(kept))


def _open_tensorboard(log_dir: Path, purge_step: int | None) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as error:  # a broken tensorboard install should not stop a run
        warnings.warn(f"TensorBoard logging disabled: {error}", stacklevel=3)
        return None
    return SummaryWriter(log_dir=str(log_dir), purge_step=purge_step)


# ---------------------------------------------------------------- progress


def progress(
    iterable: Iterable, total: int | None = None, desc: str | None = None, enabled: bool = True
) -> tqdm:
    """A tqdm bar over `iterable`, silent unless enabled and stderr is a terminal."""
    disable = not enabled or not sys.stderr.isatty()
    return tqdm(iterable, total=total, desc=desc, disable=disable, dynamic_ncols=True, leave=False)


def update_progress(bar: tqdm, metrics: Mapping[str, Any]) -> None:
    """Show the latest logged values beside the bar (call at logging points only)."""
    bar.set_postfix({name: f"{float(value):.4g}" for name, value in metrics.items()}, refresh=False)


# ---------------------------------------------------------------- summary


def summary_table(summary: Mapping[str, Any]) -> str:
    """A plain-text table: one row per metric, one column per split (val, test, test_last)."""
    splits = [s for s in SUMMARY_SPLITS if isinstance(summary.get(s), Mapping)]
    lines = []
    if summary.get("best_epoch") is not None:
        lines.append(f"best epoch: {summary['best_epoch']}")
    names = ordered_metric_names([summary[s] for s in splits])
    if splits and names:
        rows = [["metric", *splits]]
        rows += [[name, *(_format_value(summary[s].get(name)) for s in splits)] for name in names]
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        for row in rows:
            cells = [row[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(row[1:], widths[1:])]
            lines.append("  ".join(cells).rstrip())
    timing = summary.get("timing")
    if isinstance(timing, Mapping) and timing:
        lines.append("timing: " + ", ".join(f"{k} {_format_value(v)}" for k, v in timing.items()))
    return "\n".join(lines)


def ordered_metric_names(split_metrics: list[Mapping[str, Any]]) -> list[str]:
    """Fused metrics (known ones first), then per-modality groups, then everything else."""
    seen: list[str] = []
    for metrics in split_metrics:
        seen += [name for name in metrics if name not in seen and _is_number(metrics[name])]
    fused = [n for n in FUSED_METRIC_ORDER if n in seen]
    fused += [n for n in seen if "/" not in n and n not in fused]
    modalities: list[str] = []
    for name in seen:
        prefix, _, modality = name.partition("/")
        if prefix in PER_MODALITY_PREFIXES and modality and modality not in modalities:
            modalities.append(modality)
    grouped = [f"{prefix}/{m}" for m in modalities for prefix in PER_MODALITY_PREFIXES]
    per_modality = [name for name in grouped if name in seen]
    rest = [n for n in seen if n not in fused and n not in per_modality]
    return fused + per_modality + rest


def _is_number(value: Any) -> bool:
    return value is None or (isinstance(value, (int, float)) and not isinstance(value, bool))


def _format_value(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.4f}"
    return str(value)


# ---------------------------------------------------------------- JSON files


def json_safe(obj: Any) -> Any:
    """Plain JSON values: tensors to lists or numbers, tuples to lists, non-finite floats to null."""
    if isinstance(obj, torch.Tensor):
        return json_safe(obj.detach().cpu().tolist())
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {key: json_safe(value) for key, value in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(value) for value in obj]
    if isinstance(obj, Path):
        return str(obj)
    return obj


def write_json_atomic(path: Path | str, obj: Any) -> None:
    """Write `obj` as indented JSON so that readers see the old file or the new one, never a part."""
    write_text_atomic(Path(path), json.dumps(json_safe(obj), indent=2, allow_nan=False) + "\n")


def write_text_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
