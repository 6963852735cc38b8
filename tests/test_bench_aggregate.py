"""The bench's arithmetic on hand-made inputs: mean ± sample std over seeds, paired gains and wins,
MultiBench's relative and effective robustness, and the strict GRID.toml."""
from __future__ import annotations

import math

import pytest

from mmcore.bench.aggregate import Row, aggregate, cost_rows, mean_std
from mmcore.bench.grid import Cell, cell_raw_config, cells, load_grid
from mmcore.bench.robustness import effective_robustness, relative_robustness, robustness_metrics
from mmcore.bench.tables import Formatter, results_csv
from mmcore.cli import main
from mmcore.errors import ConfigError


def record(method: str, seed: int, dataset: str = "d", **metrics: float) -> dict:
    return {"dataset": dataset, "method": method, "seed": seed, "metrics": {k.replace("__", "/"): v for k, v in metrics.items()}}


RECORDS = [
    record("joint", 0, acc=0.8, loss=1.0, value__a=0.7),
    record("joint", 1, acc=0.9, loss=2.0, value__a=0.6),
    record("joint", 2, acc=1.0, loss=3.0, value__a=0.5),
    record("m", 0, acc=0.9, loss=0.5, value__a=0.5),
    record("m", 1, acc=0.8, loss=2.5, value__a=0.5),
    record("m", 2, acc=1.0, loss=2.0, value__a=math.nan),
    record("m", 3, acc=0.7, loss=9.0, value__a=0.5),  # no joint run on seed 3: counts in mean, not in gains
    record("joint", 0, dataset="one_seed", acc=0.5),
    record("m", 0, dataset="one_seed", acc=0.75),
]


def rows_by_key() -> dict[tuple[str, str, str], Row]:
    rows = aggregate(RECORDS, "joint", ["d", "one_seed"], ["joint", "m"])
    return {(r.dataset, r.method, r.metric): r for r in rows}


def test_mean_and_sample_std_over_seeds():
    rows = rows_by_key()
    joint = rows["d", "joint", "acc"]
    assert (joint.n, joint.mean, joint.std) == (3, pytest.approx(0.9), pytest.approx(0.1))  # ddof = 1
    method = rows["d", "m", "acc"]
    assert method.n == 4 and method.mean == pytest.approx(0.85)
    assert method.std == pytest.approx(math.sqrt(((0.05**2) * 2 + 0.15**2 + 0.15**2) / 3))
    value = rows["d", "m", "value/a"]
    assert value.n == 3 and value.mean == pytest.approx(0.5) and value.std == pytest.approx(0.0)  # nan left out
    single = rows["one_seed", "joint", "acc"]
    assert (single.n, single.mean, single.std) == (1, 0.5, None)  # one seed: no std, not 0
    assert mean_std([]) == (None, None)


def test_gains_are_paired_by_seed_with_wins_in_the_metric_direction():
    rows = rows_by_key()
    acc = rows["d", "m", "acc"]  # differences on seeds 0, 1, 2: +0.1, -0.1, 0.0
    assert acc.pairs == 3 and acc.gain == pytest.approx(0.0, abs=1e-12) and acc.gain_std == pytest.approx(0.1)
    assert acc.wins == 1  # a tie is not a win
    loss = rows["d", "m", "loss"]  # -0.5, +0.5, -1.0: lower is better
    assert loss.gain == pytest.approx(-1 / 3) and loss.wins == 2
    share = rows["d", "m", "value/a"]  # Shapley shares have no better direction; seed 2 is nan
    assert share.pairs == 2 and share.gain == pytest.approx(-0.15) and share.wins is None
    assert rows["d", "joint", "acc"].gain is None  # the baseline has no gain over itself
    single = rows["one_seed", "m", "acc"]
    assert (single.gain, single.gain_std, single.pairs, single.wins) == (0.25, None, 1, 1)


def test_rows_come_in_grid_order_and_as_csv():
    rows = aggregate(RECORDS, "joint", ["one_seed", "d"], ["m", "joint"])
    assert [(r.dataset, r.method) for r in rows][:2] == [("one_seed", "m"), ("one_seed", "joint")]
    assert [r.metric for r in rows if r.dataset == "d" and r.method == "joint"] == ["acc", "loss", "value/a"]
    text = results_csv([Row("d", "m", "acc", 2, 0.5, 0.25, 0.125, None, 1, 1)])
    assert text == "dataset,method,metric,n,mean,std,gain,gain_std,pairs,wins\nd,m,acc,2,0.5,0.25,0.125,,1,1\n"
    cost = cost_rows("d", {"methods": {"m": {"step_ms": 2.0, "step_ratio": 1.5, "params": 10, "peak_mib": None}}}, ["joint", "m"])
    assert [(r.metric, r.mean, r.std) for r in cost] == [("cost/step_ms", 2.0, None), ("cost/step_ratio", 1.5, None),
                                                         ("cost/params", 10.0, None)]


def test_table_cells_show_percent_and_signed_gains():
    fmt = Formatter("acc")
    assert fmt.value("acc/a", 0.9, 0.1) == "90.00 ± 10.00"
    assert fmt.gain(Row("d", "m", "acc", 3, 0.9, 0.1, 0.0125, 0.005, 3, 2)) == "+1.25 ± 0.50 (2/3)"
    assert fmt.value("rel_robust/noise/all", 0.5) == "50.00" and fmt.value("loss", 1.23456) == "1.2346"
    assert fmt.value("acc", None) == "–"


def test_multibench_robustness_on_hand_made_curves():
    assert relative_robustness([0.0, 0.5, 1.0], [1.0, 0.5, 0.0]) == pytest.approx(0.5)
    # uneven rates: trapezoids (0.1 * (0.9 + 0.8) / 2 + 0.3 * (0.8 + 0.4) / 2) / 0.4
    assert relative_robustness([0.0, 0.1, 0.4], [0.9, 0.8, 0.4]) == pytest.approx((0.085 + 0.18) / 0.4)
    # f keeps 0.1 more than the baseline's drop at the middle level, as much at the ends
    assert effective_robustness([0.9, 0.8, 0.6], [0.8, 0.6, 0.5]) == pytest.approx(0.1 / 3)
    sweep = {"settings": {"rates": [0.0, 1.0]}, "curves": {"noise/all": [0.9, 0.5]}}
    reference = {"settings": {"rates": [0.0, 1.0]}, "curves": {"noise/all": [0.8, 0.2]}}
    assert robustness_metrics(sweep, reference) == {"rel_robust/noise/all": pytest.approx(0.7),
                                                    "eff_robust/noise/all": pytest.approx(0.1)}
    assert robustness_metrics(sweep, {**reference, "settings": {"rates": [0.0, 0.5]}}) == {
        "rel_robust/noise/all": pytest.approx(0.7)}  # a sweep with other settings is no reference


GRID = '''
[bench]
base = "base.toml"
seeds = [3, 4]

[datasets.weak]
set = ["data.signal = [2.0, 0.1]"]
replace.encoders = { a = { kind = "mlp" }, b = { kind = "mlp" } }

[methods.joint]
[methods.late]
replace.fusion = { kind = "late" }
set = ["optimizer.lr = 0.5"]
'''


def test_a_cell_is_the_base_with_replaced_sections_and_overrides(tmp_path):
    (tmp_path / "base.toml").write_text('[run]\nname = "x"\n[fusion]\nkind = "concat"\n[encoders.a]\nkind = "gru"\n'
                                        '[optimizer]\nkind = "sgd"\nlr = 0.1\n')
    (tmp_path / "grid.toml").write_text(GRID)
    grid = load_grid(tmp_path / "grid.toml")
    assert grid.name == "grid" and cells(grid) == [Cell("weak", "joint", 3), Cell("weak", "late", 3),
                                                   Cell("weak", "joint", 4), Cell("weak", "late", 4)]
    raw = cell_raw_config(grid, {"run": {"name": "x"}, "fusion": {"kind": "concat"}, "encoders": {"a": {"kind": "gru"}},
                                 "optimizer": {"kind": "sgd", "lr": 0.1}}, Cell("weak", "late", 4))
    assert raw["fusion"] == {"kind": "late"} and raw["optimizer"] == {"kind": "sgd", "lr": 0.5}
    assert raw["encoders"] == {"a": {"kind": "mlp"}, "b": {"kind": "mlp"}}
    assert raw["data"] == {"signal": [2.0, 0.1]} and raw["run"] == {"name": "weak-late-seed4", "seed": 4}


def test_grid_problems_are_reported_at_once_with_paths(tmp_path, capsys):
    (tmp_path / "grid.toml").write_text('''
[bench]
base = "missing.toml"
baseline = "joint"
seeds = [1, 1]
[datasets."a b"]
[methods.m]
replace.fuson = { kind = "late" }
sett = []
[robustness]
rates = [0.1, 0.5]
[extra]
''')
    with pytest.raises(ConfigError) as error:
        load_grid(tmp_path / "grid.toml")
    assert error.value.problems == [
        "$.methods.m.sett: unknown key 'sett'; did you mean 'set'?",
        "$.methods.m.replace: unknown run config sections ['fuson']; sections: run, data, encoders, fusion, "
        "optimizer, scheduler, valuators, balancers, attention_supervisors",
        "$.robustness.rates: rates must start at 0 (the clean score) and increase (got [0.1, 0.5])",
        "$.extra: unknown table",
    ]
    (tmp_path / "grid.toml").write_text('[bench]\nbase = "missing.toml"\nseeds = [1, 1]\n[datasets."a b"]\n[methods.m]\n')
    assert main(["bench", str(tmp_path / "grid.toml")]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "error: $.datasets.\"a b\": names become directories; use letters, digits, _ . -",
        "error: $.bench.baseline: 'joint' is not a method; methods: m",
        "error: $.bench.seeds: repeated seeds in [1, 1]",
        f"error: $.bench.base: no run config at {tmp_path / 'missing.toml'}",
    ]
