"""The effect study and the cost benchmark in their smoke modes (real runs, tiny budgets)."""
import importlib.util
import json
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[3] / "benchmarks"


def _load(name):
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(name, module)
    spec.loader.exec_module(module)
    return module


def test_effect_study_smoke(tmp_path):
    out = tmp_path / "effect.json"
    assert _load("modality_valuation_effect").main(["--smoke", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    rows = {row["method"]: row for row in result["rows"]}
    assert set(rows) == {"joint", "sample", "modality"} and all(r["seeds"] == 1 for r in rows.values())
    assert rows["sample"]["acc/mor wins"] in ("0/1", "1/1") and "acc/mor" in rows["joint"]
    assert {(r["method"], r["seed"]) for r in result["runs"]} == {("joint", 0), ("sample", 0), ("modality", 0)}


def test_cost_benchmark_smoke(tmp_path):
    out = tmp_path / "cost.json"
    _load("modality_valuation_cost").main(["--smoke", "--modalities", "2", "--out", str(out)])
    (cell,) = json.loads(out.read_text())["cells"]
    assert set(cell["ratios"]) == {"sample/joint", "modality/joint"} and all(v > 0 for v in cell["ratios"].values())
    assert cell["epoch_rows"]["joint"] == 1.0 and cell["epoch_rows"]["sample"] >= 1.0
