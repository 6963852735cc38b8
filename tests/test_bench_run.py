"""`mmcore bench` and `mmcore report` on a tiny grid (synthetic data, one epoch, built-in kinds only):
resumption, selection, the results files, the cost and robustness columns, and the report's figures."""
from __future__ import annotations

import csv
import json
import re
import sys
from pathlib import Path

import pytest

from mmcore.bench.grid import load_grid
from mmcore.bench.robustness import relative_robustness
from mmcore.bench.results import write_results
from mmcore.bench.runner import Selection, run_bench
from mmcore.cli import main
from mmcore.errors import DataError, MMCoreError
from mmcore.evaluate_run import load_finished_run
from mmcore.hookspecs import hookimpl
from mmcore.plugins import PluginHost

BASE = '''
[run]
name = "tiny"
epochs = 1
device = "cpu"
log_every_steps = 1000
probe = false

[data]
kind = "synthetic"
modalities = ["a", "b"]
batch_size = 32
train_size = 64
val_size = 32
test_size = 32
num_classes = 3
dim = 6
signal = [2.0, 0.5]

[encoders.a]
kind = "mlp"
hidden = [8]
[encoders.b]
kind = "mlp"
hidden = [8]

[fusion]
kind = "concat"

[optimizer]
kind = "sgd"
lr = 0.1
'''

GRID = '''
[bench]
base = "base.toml"
seeds = [0, 1]
description = "Two fusions on a weak-b synthetic set."

[datasets.weak_b]

[methods.joint]
[methods.late]
replace.fusion = {{ kind = "late" }}
{late_set}

[robustness]
rates = {rates}

[cost]
enabled = {cost}
rounds = 1
steps = 1
warmup = 1
memory_steps = 1
'''

PNG = b"\x89PNG\r\n\x1a\n"


def write_grid(root: Path, rates: str = "[]", cost: str = "false", late_set: str = "") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "base.toml").write_text(BASE)
    (root / "grid.toml").write_text(GRID.format(rates=rates, cost=cost, late_set=late_set))
    return root / "grid.toml"


class TrainStarts:
    """Records the run directory of every training that starts."""

    def __init__(self) -> None:
        self.runs: list[str] = []

    @hookimpl
    def mmcore_train_start(self, trainer) -> None:
        self.runs.append("/".join(trainer.run_dir.parts[-2:]))


def bench(grid_path: Path, out: Path, selection: Selection = Selection()) -> tuple[dict, list[str]]:
    recorder = TrainStarts()
    host = PluginHost(autoload=False, modules=[recorder])
    outcome = run_bench(load_grid(grid_path), host, out, selection, log=lambda line: None)
    return outcome, recorder.runs


def test_finished_cells_are_skipped_and_interrupted_or_changed_ones_trained_again(tmp_path):
    grid_path, out = write_grid(tmp_path), tmp_path / "bench"
    outcome, trained = bench(grid_path, out)
    assert trained == ["joint/seed0", "late/seed0", "joint/seed1", "late/seed1"]
    summaries = {p: p.stat().st_mtime_ns for p in out.glob("cells/*/*/*/summary.json")}
    assert len(summaries) == 4
    interrupted = out / "cells/weak_b/late/seed1"
    (interrupted / "summary.json").unlink()  # as a kill before the trainer's last, atomic write leaves it
    (interrupted / "leftover.txt").write_text("from the interrupted run")
    outcome, trained = bench(grid_path, out)
    assert trained == ["late/seed1"] and len(outcome["skipped"]) == 3
    assert not (interrupted / "leftover.txt").exists()  # the interrupted cell's directory was wiped first
    for path, mtime in summaries.items():
        if path.parent != interrupted:
            assert path.stat().st_mtime_ns == mtime
    write_grid(tmp_path, late_set='set = ["optimizer.lr = 0.05"]')  # the late cells' config changes
    outcome, trained = bench(grid_path, out)
    assert trained == ["late/seed0", "late/seed1"] and outcome["skipped"] == ["weak_b/joint/seed0", "weak_b/joint/seed1"]


def test_a_cell_that_failed_after_writing_its_summary_is_trained_again_and_not_aggregated(tmp_path):
    """A train-end hook can raise after the trainer wrote summary.json: failed.json wins."""
    grid_path, out = write_grid(tmp_path), tmp_path / "bench"
    bench(grid_path, out, Selection(methods=("joint",)))
    failed = out / "cells/weak_b/joint/seed0"
    (failed / "failed.json").write_text(json.dumps({"error": "MMCoreError: a train-end hook failed"}))
    collected = write_results(out)[1]
    assert "weak_b/joint/seed0" in collected.failed
    assert [r["seed"] for r in collected.records if r["method"] == "joint"] == [1]
    outcome, trained = bench(grid_path, out, Selection(methods=("joint",)))
    assert trained == ["joint/seed0"] and not (failed / "failed.json").exists()


def test_a_damaged_results_file_is_a_data_error_naming_it(tmp_path):
    grid_path, out = write_grid(tmp_path), tmp_path / "bench"
    bench(grid_path, out, Selection(methods=("joint",), seeds=(0,)))
    (out / "cells/weak_b/joint/seed0/summary.json").write_text("{ not json")
    with pytest.raises(DataError, match="summary.json: not readable JSON"):
        bench(grid_path, out, Selection(methods=("late",), seeds=(0,)))


def test_a_selection_trains_its_cells_and_the_results_list_the_rest(tmp_path, capsys):
    grid_path, out = write_grid(tmp_path), tmp_path / "bench"
    _, trained = bench(grid_path, out, Selection(methods=["joint"], seeds=[1]))
    assert trained == ["joint/seed1"]
    text = (out / "results.md").read_text()
    assert "`weak_b/late/seed0` (not run yet)" in text and "`weak_b/joint/seed0` (not run yet)" in text
    assert main(["bench", str(grid_path), "--out", str(out), "--methods", "nope"]) == 2
    assert "error: --methods: 'nope' is not in the grid (joint, late)" in capsys.readouterr().err


def test_cells_outside_the_selection_trained_from_an_older_config_are_not_aggregated(tmp_path):
    grid_path, out = write_grid(tmp_path), tmp_path / "bench"
    bench(grid_path, out)
    write_grid(tmp_path, late_set='set = ["optimizer.lr = 0.05"]')  # the late cells' config changes ...
    outcome, trained = bench(grid_path, out, Selection(methods=["joint"]))  # ... but only joint runs
    assert trained == [] and outcome["missing"] == ["weak_b/late/seed0", "weak_b/late/seed1"]
    with open(out / "results.csv", newline="") as handle:
        assert {r["method"] for r in csv.DictReader(handle)} == {"joint"}
    assert "`weak_b/late/seed0` (not run yet)" in (out / "results.md").read_text()


def test_the_cost_is_measured_again_when_a_method_config_changes(tmp_path):
    grid_path, out = write_grid(tmp_path, cost="true\nmemory = false"), tmp_path / "bench"
    host = PluginHost(autoload=False)

    def cost_lines() -> list[str]:
        lines: list[str] = []
        run_bench(load_grid(grid_path), host, out, log=lines.append)
        return [line for line in lines if line.startswith("cost ")]

    assert len(cost_lines()) == 1
    assert cost_lines() == []  # nothing changed: measured before
    write_grid(tmp_path, cost="true\nmemory = false", late_set='replace.encoders = { a = { kind = "mlp", hidden = [64] }, '
                                                                 'b = { kind = "mlp", hidden = [8] } }')
    assert len(cost_lines()) == 1  # late's model is another: its step time and parameters too
    params = json.loads((out / "cost/weak_b.json").read_text())["methods"]["late"]["params"]
    assert params == sum(p.numel() for p in load_finished_run(out / "cells/weak_b/late/seed0", host.registry,
                                                              "last").model.parameters())


def test_gain_bars_of_a_regression_dataset_are_in_its_metric_not_points(tmp_path, monkeypatch):
    from mmcore.report import plots
    from mmcore.report.page import write_report

    grid_path, out = write_grid(tmp_path), tmp_path / "bench"
    grid_path.write_text(grid_path.read_text().replace("[datasets.weak_b]\n",
                                                       "[datasets.weak_b]\nset = ['data.task = \"regression\"']\n"))
    bench(grid_path, out)
    drawn = {}
    monkeypatch.setattr(plots, "gain_bars", lambda gains, *args, **kwargs: drawn.update(gains=gains, **kwargs) or
                        plots._save(plots._figure(1, 1)[0], tmp_path / "gains.png"))
    monkeypatch.setattr(plots, "training_curves", lambda *args, **kwargs: tmp_path / "curves.png")
    write_report(out, tmp_path / "report", tmp_path / "report" / "index.md")
    with open(out / "results.csv", newline="") as handle:
        mae = next(r for r in csv.DictReader(handle) if r["method"] == "late" and r["metric"] == "mae")
    gain, std = drawn["gains"]["weak_b"]["late"]["mae"]
    assert gain == pytest.approx(float(mae["gain"])) and std == pytest.approx(float(mae["gain_std"]))
    assert drawn["units"] == {"weak_b": "mae"}


def test_sweeps_of_older_robustness_settings_are_not_aggregated_or_drawn(tmp_path):
    grid_path, out = write_grid(tmp_path, rates="[0.0, 1.0]"), tmp_path / "bench"
    bench(grid_path, out)
    write_grid(tmp_path, rates="[0.0, 0.5, 1.0]")  # new rates, swept on seed 0 only: seed 1 keeps the old curves
    bench(grid_path, out, Selection(seeds=[0]))
    with open(out / "results.csv", newline="") as handle:
        rows = {(r["method"], r["metric"]): r for r in csv.DictReader(handle)}
    fresh = json.loads((out / "cells/weak_b/late/seed0/robustness.json").read_text())
    assert rows["late", "rel_robust/noise/all"]["n"] == "1"
    assert float(rows["late", "rel_robust/noise/all"]["mean"]) == pytest.approx(
        relative_robustness([0.0, 0.5, 1.0], fresh["curves"]["noise/all"]))
    assert main(["report", str(out)]) == 0  # the curves of one rate grid only


def test_no_robustness_skips_sweeping_but_keeps_the_grids_settings(tmp_path):
    grid_path, out = write_grid(tmp_path, rates="[0.0, 1.0]"), tmp_path / "bench"
    bench(grid_path, out, Selection(seeds=[0]))
    write_grid(tmp_path, rates="[0.0, 0.5, 1.0]")  # seed 0 holds sweeps of the old rates
    assert main(["bench", str(grid_path), "--out", str(out), "--seeds", "1", "--no-robustness", "--no-cost"]) == 0
    assert json.loads((out / "bench.json").read_text())["robustness"]["rates"] == [0.0, 0.5, 1.0]
    assert not (out / "cells/weak_b/late/seed1/robustness.json").exists()
    with open(out / "results.csv", newline="") as handle:  # the old-rate sweeps are not results
        assert not any(r["metric"].startswith("rel_robust") for r in csv.DictReader(handle))
    assert main(["report", str(out)]) == 0


@pytest.fixture(scope="module")
def finished_bench(tmp_path_factory) -> Path:
    """The whole pipeline through the CLI, robustness and cost (with peak memory) included."""
    root = tmp_path_factory.mktemp("bench")
    grid_path = write_grid(root, rates="[0.0, 0.5, 1.0]", cost="true")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MMCORE_DISABLE_PLUGIN_AUTOLOAD", "1")
        assert main(["bench", str(grid_path), "--out", str(root / "out")]) == 0
    return root / "out"


def test_bench_writes_one_results_table_with_robustness_and_cost(finished_bench):
    with open(finished_bench / "results.csv", newline="") as handle:
        rows = {(r["method"], r["metric"]): r for r in csv.DictReader(handle)}
    summaries = {s: json.loads((finished_bench / f"cells/weak_b/late/seed{s}/summary.json").read_text()) for s in (0, 1)}
    joint = {s: json.loads((finished_bench / f"cells/weak_b/joint/seed{s}/summary.json").read_text()) for s in (0, 1)}
    late = rows["late", "acc"]
    assert float(late["mean"]) == pytest.approx((summaries[0]["test"]["acc"] + summaries[1]["test"]["acc"]) / 2)
    gains = [summaries[s]["test"]["acc"] - joint[s]["test"]["acc"] for s in (0, 1)]
    assert float(late["gain"]) == pytest.approx(sum(gains) / 2) and late["pairs"] == "2"
    for curve in ("missing/all", "missing/a", "missing/b", "noise/all", "noise/a", "noise/b"):
        assert 0.0 <= float(rows["late", f"rel_robust/{curve}"]["mean"]) <= 1.0
        assert float(rows["joint", f"eff_robust/{curve}"]["mean"]) == 0.0  # the baseline against itself
    sweep = json.loads((finished_bench / "cells/weak_b/late/seed0/robustness.json").read_text())
    assert sweep["curves"]["noise/all"][0] == pytest.approx(summaries[0]["test"]["acc"])  # rate 0: the clean score
    assert float(rows["joint", "cost/step_ratio"]["mean"]) == 1.0 and float(rows["late", "cost/step_ms"]["mean"]) > 0
    assert int(float(rows["late", "cost/params"]["mean"])) > int(float(rows["joint", "cost/params"]["mean"]))
    assert float(rows["late", "cost/peak_mib"]["mean"]) > 0  # measured in a spawned process
    text = (finished_bench / "results.md").read_text()
    assert "| method | acc | Δ acc | acc/a | Δ acc/a | acc/b | Δ acc/b | value/a | value/b |" in text
    assert "| method | missing/all | missing/a | missing/b | noise/all | noise/a | noise/b |" in text
    assert "| method | step ms | × joint | parameters | peak MiB | train s (runs) |" in text


def test_report_draws_the_bench_and_embeds_every_figure(finished_bench, tmp_path):
    page = tmp_path / "docs" / "results.md"
    assert main(["report", str(finished_bench), "--out", str(tmp_path / "docs" / "results"), "--page", str(page)]) == 0
    text = page.read_text()
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert sorted(Path(i).name for i in images) == ["curves_weak_b.png", "gains.png", "robustness_weak_b.png"]
    for image in images:
        assert (page.parent / image).read_bytes()[:8] == PNG
    assert text.splitlines()[5].startswith("mmcore bench ") and f"mmcore report {finished_bench}" in text
    assert not page.with_suffix(".html").exists()  # --page names the one page written
    assert main(["report", str(finished_bench)]) == 0  # default: both formats under BENCH_DIR/report
    assert (finished_bench / "report/index.html").read_text().count('<img src="') == 3
    assert (finished_bench / "report/index.md").read_text().count("![") == 3


def test_report_of_one_run_and_without_matplotlib(finished_bench, monkeypatch, capsys):
    run_dir = finished_bench / "cells/weak_b/joint/seed0"
    assert main(["report", str(run_dir)]) == 0
    assert (run_dir / "report" / "curves.png").read_bytes()[:8] == PNG
    assert "![validation accuracy and Shapley shares per epoch](curves.png)" in (run_dir / "report/index.md").read_text()
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)  # as if the plots extra were not installed
    assert main(["report", str(run_dir)]) == 1
    assert "matplotlib, which is not installed: pip install 'mmcore[plots]'" in capsys.readouterr().err
    assert main(["report", str(finished_bench / "cells")]) == 2
    with pytest.raises(MMCoreError):
        from mmcore.report.plots import _figure

        _figure(1, 1)


def test_the_shipped_study_grid_validates_every_cell():
    """configs/bench/results.toml (docs/results.md): every cell's config is valid with the installed plugins."""
    from mmcore.bench.runner import resolve_configs
    from mmcore.errors import ConfigError

    grid = load_grid(Path(__file__).resolve().parents[1] / "configs" / "bench" / "results.toml")
    try:
        configs = resolve_configs(grid, PluginHost())
    except ConfigError as error:
        if any("pip install mmcore-" in line for line in error.problems):
            pytest.skip(f"a method's plugin is not installed: {error.problems[0]}")
        raise
    assert len(configs) == len(grid.datasets) * len(grid.methods) * len(grid.bench.seeds) == 81
