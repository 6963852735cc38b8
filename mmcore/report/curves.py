"""Per-epoch validation curves from a run's metrics.jsonl, and their mean ± std over seeds."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np

from mmcore.errors import DataError
from mmcore.logging import METRICS_FILE

Curves = dict[str, dict[int, float]]  # metric -> {epoch: value}


def validation_curves(run_dir: Path) -> Curves:
    """Every validation metric by epoch (the last record of an epoch wins, as after a resume)."""
    path = Path(run_dir) / METRICS_FILE
    if not path.is_file():
        raise DataError(path, "missing: not a run directory, or the run logged nothing")
    curves: Curves = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue  # a torn last line from a killed run
        if not isinstance(record, dict) or record.get("split") != "val":
            continue
        epoch = int(record["epoch"])
        for name, value in record.items():
            if name not in ("step", "epoch", "split") and isinstance(value, (int, float)):
                curves.setdefault(name, {})[epoch] = float(value)
    return curves


def seed_band(runs: Sequence[Curves], metric: str) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(epochs, mean, std) over the runs that logged `metric`, on the epochs all of them reached.
    std is the sample std (ddof = 1), zero for a single run; None when no run has the metric."""
    series = [run[metric] for run in runs if run.get(metric)]
    if not series:
        return None
    epochs = sorted(set.intersection(*(set(s) for s in series)))
    values = np.array([[s[e] for e in epochs] for s in series], dtype=float)
    std = values.std(axis=0, ddof=1) if len(series) > 1 else np.zeros(len(epochs))
    return np.array(epochs) + 1, values.mean(axis=0), std  # epochs counted from 1 on the plots
