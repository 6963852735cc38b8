"""The effect study (benchmarks/sam_family_effect.py) in its smoke mode for mie: both sam modes
against joint training on the same late-fusion architecture, one seed, two one-epoch stages."""
import importlib.util
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[3] / "benchmarks" / "sam_family_effect.py"


def load_study():
    spec = importlib.util.spec_from_file_location("sam_family_effect", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_smoke_study_reports_both_mie_modes_against_late_joint_training():
    results = load_study().main(["--smoke", "--datasets", "synthetic", "--methods", "mie_paper", "mie_full"])
    rows = {r["method"]: r for r in results["table"]}
    assert set(rows) == {"none_late", "mie_paper", "mie_full"}
    assert rows["mie_paper"]["baseline"] == rows["mie_full"]["baseline"] == "none_late"
    for row in rows.values():
        assert {"acc", "acc/strong", "acc/weak"} <= set(row)
