"""Smoke version of benchmarks/pase_effect.py: real mfeat runs, one seed, two epochs."""
from __future__ import annotations

import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[3] / "benchmarks"


def test_effect_study_smoke(tmp_path):
    sys.path.insert(0, str(BENCHMARKS))
    try:
        import pase_effect
    finally:
        sys.path.remove(str(BENCHMARKS))
    result = pase_effect.main(["--smoke", "--out", str(tmp_path / "effect.json")])
    rows = {row["variant"]: row for row in result["rows"]}
    assert set(rows) == {"joint", "pase"} and result["weak_view"] in pase_effect.VIEWS
    assert rows["pase"]["second_phase_from"] == [1]  # SGM ran in the second epoch
    assert 0.0 < rows["pase"]["fused acc"]["mean"] <= 1.0
    assert (tmp_path / "effect.json").exists()
