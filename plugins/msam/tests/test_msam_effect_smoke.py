"""The effect study (benchmarks/sam_family_effect.py) in its smoke mode: joint, sam and msam on
both datasets, one seed, two epochs; the table carries every metric and msam's logged shares."""
import importlib.util
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[3] / "benchmarks" / "sam_family_effect.py"


def load_study():
    spec = importlib.util.spec_from_file_location("sam_family_effect", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_smoke_study_reports_sam_and_msam_against_joint_training(tmp_path):
    results = load_study().main(["--smoke", "--methods", "sam", "msam", "--out", str(tmp_path / "effect.json")])
    rows = {(r["dataset"], r["method"]): r for r in results["table"]}
    assert set(rows) == {(d, m) for d in ("mfeat", "synthetic") for m in ("none", "sam", "msam")}
    for (dataset, method), row in rows.items():
        weak = {"mfeat": "mor", "synthetic": "weak"}[dataset]
        assert row["seeds"] == 1 and 0.0 <= row["acc"]["mean"] <= 1.0 and f"acc/{weak}" in row
        assert "wins" not in row["acc"] if method == "none" else row["acc"]["wins"] in (0, 1)
    assert rows[("mfeat", "msam")]["acc"]["wins_vs_sam"] in (0, 1)  # msam is also paired with sam
    shares = rows[("mfeat", "msam")]["msam"]
    assert abs(shares["nu/pix"] + shares["nu/mor"] - 1.0) < 1e-6
    assert (tmp_path / "effect.json").exists()
