"""Run logging: metrics.jsonl, TensorBoard events, resume truncation, summary table, JSON files."""
from __future__ import annotations

import json

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from mmcore.logging import RunLogger, progress, summary_table, update_progress, write_json_atomic


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_run_logger_writes_flushed_jsonl_and_tensorboard(tmp_path):
    logger = RunLogger(tmp_path)
    logger.log({"loss": 0.5, "acc": torch.tensor(0.75)}, step=10, epoch=0, split="train")
    # Flushed on every call: readable before close, as after a kill.
    assert read_jsonl(tmp_path / "metrics.jsonl") == [
        {"step": 10, "epoch": 0, "split": "train", "loss": 0.5, "acc": 0.75}
    ]
    logger.log({"acc": 0.8, "corr": float("nan")}, step=20, epoch=1, split="val")
    logger.close()
    lines = read_jsonl(tmp_path / "metrics.jsonl")
    assert lines[1] == {"step": 20, "epoch": 1, "split": "val", "acc": 0.8, "corr": None}
    events = EventAccumulator(str(tmp_path / "tb"))
    events.Reload()
    assert set(events.Tags()["scalars"]) == {"train/loss", "train/acc", "val/acc", "val/corr"}
    (scalar,) = events.Scalars("val/acc")
    assert scalar.step == 20 and scalar.value == pytest.approx(0.8)


def test_resume_drops_lines_after_the_checkpoint_step(tmp_path):
    with RunLogger(tmp_path, enable_tensorboard=False) as logger:
        for step in range(1, 6):
            logger.log({"loss": float(step)}, step=step, epoch=0, split="train")
    with open(tmp_path / "metrics.jsonl", "a") as handle:
        handle.write('{"step": 6, "epo')  # torn by a kill mid-write
    with RunLogger(tmp_path, enable_tensorboard=False, resume_step=3) as logger:
        assert [line["step"] for line in read_jsonl(tmp_path / "metrics.jsonl")] == [1, 2, 3]
        logger.log({"loss": 4.5}, step=4, epoch=0, split="train")
    lines = read_jsonl(tmp_path / "metrics.jsonl")
    assert [(line["step"], line["loss"]) for line in lines] == [(1, 1.0), (2, 2.0), (3, 3.0), (4, 4.5)]
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.jsonl"]  # no temporary file left


def test_resume_purges_tensorboard_events_after_the_step(tmp_path):
    with RunLogger(tmp_path) as logger:
        for step in (1, 2, 3):
            logger.log({"loss": float(step)}, step=step, epoch=0, split="train")
    with RunLogger(tmp_path, resume_step=1) as logger:
        # A step past the old ones: only the purge marker (not a step going backwards) drops 2 and 3.
        logger.log({"loss": 40.0}, step=4, epoch=0, split="train")
    events = EventAccumulator(str(tmp_path / "tb"))
    events.Reload()
    assert [(s.step, s.value) for s in events.Scalars("train/loss")] == [(1, 1.0), (4, 40.0)]


def test_log_rejects_metric_named_like_a_record_key(tmp_path):
    with RunLogger(tmp_path, enable_tensorboard=False) as logger:
        with pytest.raises(ValueError, match="step"):
            logger.log({"step": 1.0}, step=1, epoch=0, split="train")


def test_progress_is_silent_off_a_terminal_and_still_iterates():
    bar = progress(range(4), total=4, desc="train", enabled=True)  # pytest's stderr is not a TTY
    assert bar.disable
    seen = []
    for item in bar:
        seen.append(item)
        update_progress(bar, {"loss": 0.123456})
    assert seen == [0, 1, 2, 3]
    assert progress([1], enabled=False).disable


SUMMARY = {
    "best_epoch": 7,
    "val": {"acc": 0.965, "macro_f1": 0.9612, "acc/pix": 0.91, "acc/mor": 0.55, "value/pix": 0.7,
            "value/mor": 0.3, "loss": 0.12},
    "test": {"acc": 0.96, "macro_f1": 0.958, "acc/pix": 0.905, "acc/mor": 0.52,
             "probe_acc/pix": 0.93, "probe_acc/mor": 0.61, "loss": 0.15},
    "test_last": {"acc": 0.9575, "macro_f1": 0.955, "acc/pix": 0.9, "acc/mor": 0.5, "loss": 0.16},
    "timing": {"train_s": 12.5, "step_ms_median": 4.25},
}


def test_summary_table_rows_columns_and_alignment():
    table = summary_table(SUMMARY)
    lines = table.splitlines()
    assert lines[0] == "best epoch: 7"
    header, *rows = lines[1:-1]
    assert header.split() == ["metric", "val", "test", "test_last"]
    cells = {row.split()[0]: row.split()[1:] for row in rows}
    assert [row.split()[0] for row in rows] == [
        "acc", "macro_f1", "loss", "acc/pix", "probe_acc/pix", "value/pix",
        "acc/mor", "probe_acc/mor", "value/mor",
    ]
    assert cells["acc"] == ["0.9650", "0.9600", "0.9575"]
    assert cells["probe_acc/mor"] == ["-", "0.6100", "-"]
    assert cells["value/pix"] == ["0.7000", "-", "-"]
    # Right-aligned number columns: every row ends where the header ends.
    assert {len(row) for row in rows} == {len(header)}
    assert lines[-1] == "timing: train_s 12.5000, step_ms_median 4.2500"


def test_summary_table_for_regression_and_missing_splits():
    table = summary_table({"val": {"mae": 0.71, "corr": 0.66, "acc7": 0.44}})
    assert table.splitlines() == [
        "metric     val",
        "mae     0.7100",
        "corr    0.6600",
        "acc7    0.4400",
    ]


def test_write_json_atomic_replaces_and_uses_strict_json(tmp_path):
    path = tmp_path / "eval" / "noise.json"
    write_json_atomic(path, {"old": 1})
    write_json_atomic(path, {"split": "test", "metrics": {"acc": 0.5, "corr": float("nan")},
                             "shape": (1, 2), "t": torch.tensor(2.0)})
    assert json.loads(path.read_text()) == {
        "split": "test", "metrics": {"acc": 0.5, "corr": None}, "shape": [1, 2], "t": 2.0
    }
    assert [p.name for p in path.parent.iterdir()] == ["noise.json"]
