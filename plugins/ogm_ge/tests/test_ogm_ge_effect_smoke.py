"""The effect study benchmarks/gradient_modulation_effect.py in its smoke mode, for `ogm_ge` alone:
real Trainer.fit() runs on both datasets, paired with joint training, written as a table."""
import importlib.util
import json
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[3] / "benchmarks" / "gradient_modulation_effect.py"


@pytest.mark.skipif(not SCRIPT.exists(), reason="runs from the mmcore repository only")
def test_effect_study_smoke(tmp_path):
    spec = importlib.util.spec_from_file_location("gradient_modulation_effect", SCRIPT)
    study = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = study
    spec.loader.exec_module(study)
    out = tmp_path / "effect.json"
    study.main(["--smoke", "--methods", "ogm_ge", "--out", str(out)])
    results = json.loads(out.read_text())
    assert set(results["datasets"]) == {"mfeat", "synthetic"} and results["seeds"] == [0]
    for dataset, weak in (("mfeat", "mor"), ("synthetic", "weak")):
        table = results["datasets"][dataset]["table"]
        assert set(table) == {"joint", "ogm_ge"}
        for metric in ("acc", f"acc/{weak}", f"probe_acc/{weak}"):
            assert 0.0 <= table["ogm_ge"][metric]["mean"] <= 1.0 and table["ogm_ge"][metric]["wins"] in (0, 1)
            assert table["joint"][metric]["wins"] is None
        assert set(results["datasets"][dataset]["goal"]["ogm_ge"]) >= {"weak_mean_higher", "weak_wins", "fused_within_1pt", "met"}
