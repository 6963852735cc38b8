"""`mmcore loader`: the loader's rate per worker count and, with --feed, steps fed by it against the
step alone, on the quickstart config; a split too short for the prefetch is a usage error."""
from __future__ import annotations

import json
from pathlib import Path

from mmcore.cli import main

QUICKSTART = Path(__file__).resolve().parents[1] / "configs" / "quickstart.toml"


def test_loader_rates_and_fed_steps_are_measured_and_written(tmp_path, capsys):
    out = tmp_path / "loader.json"
    code = main(["loader", str(QUICKSTART), "--workers", "0", "1", "--batches", "3", "--feed", "--steps", "2",
                 "--out", str(out)])
    assert code == 0
    result = json.loads(out.read_text())
    assert result["rows"] == 1200 and result["batch_size"] == 64
    assert [cell["workers"] for cell in result["loader"]] == [0, 1]
    assert all(cell["samples"] == 3 * 64 and cell["samples_per_s"] > 0 for cell in result["loader"])
    for fed in result["fed"]:
        assert fed["fed_samples"] == 2 * 64 and fed["fed_samples_per_s"] > 0
        assert fed["fed_share"] == fed["fed_samples_per_s"] / fed["compute_samples_per_s"]
    printed = capsys.readouterr().out
    assert "training split of 1,200 rows, batch 64, device cpu" in printed and "fed by 1 workers" in printed


def test_feed_needs_more_batches_than_the_prefetch(capsys):
    code = main(["loader", str(QUICKSTART), "--set", "data.batch_size=400", "--workers", "2", "--feed"])
    assert code == 2
    assert "needs more than 4 training batches (the loader's prefetch); the training split has 3" in capsys.readouterr().err
