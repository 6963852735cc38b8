"""benchmarks/valuation_overhead.py in its smoke mode (tiny shapes, one round), plus the pieces it
relies on: the benchmark-only dataset kind and the naive valuator computing the same game."""
from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest
import torch

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def load_benchmark(name: str):
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def test_smoke_run_writes_every_cell_and_target(tmp_path):
    bench = load_benchmark("valuation_overhead")
    out = tmp_path / "results.json"
    # one thread: the ResNet steps of the smoke run are tiny, and a shared CI core makes threads spin
    bench.main(["--smoke", "--modalities", "3", "--threads", "1", "--out", str(out)])
    results = json.loads(out.read_text())
    cells = {(c["workload"], c["modalities"]): c for c in results["cells"]}
    assert set(cells) == {("av-resnet", 3), ("mfeat", 3)}
    settings = bench.settings_for("av-resnet", "cpu", smoke=True, rounds=None)
    for cell in cells.values():
        steps = cell["samples_ms"]["steps"]
        assert set(steps) == {"joint", "shapley", "naive"}
        assert all(len(times) == settings["rounds"] * settings["steps"] for times in steps.values())
        assert all(t > 0 for times in steps.values() for t in times)
        ratios, step_ms = cell["ratios"], cell["step_ms"]
        assert ratios["shapley/joint"] == step_ms["shapley"] / step_ms["joint"]
        assert ratios["naive/shapley added"] == cell["valuator_call_ms"]["naive"] / cell["valuator_call_ms"]["shapley"]
    assert cells[("av-resnet", 3)]["batch_size"] == 2 and cells[("mfeat", 3)]["batch_size"] == 64
    assert {(t["workload"], t["ratio"]) for t in results["targets"]} == {
        ("av-resnet", "shapley/joint"), ("mfeat", "shapley/joint"),
        ("av-resnet", "naive/shapley added"), ("av-resnet", "naive/shapley step"),
    }
    assert results["machine"]["device"] == "cpu" and len(results["machine"]["loadavg_before"]) == 3


def test_av_tensors_yields_cremad_shapes_from_a_small_pool():
    workloads = load_benchmark("_workloads")
    from mmcore.registry import BuildContext

    config = workloads.AVTensorsConfig(train_size=10, eval_size=3, pool_rows=4, frame=(3, 8, 8), spectrogram=(1, 6, 5))
    bundle = workloads.build_av_tensors(config, BuildContext(modalities=("audio", "visual", "visual2")))
    assert bundle.info.input_shapes == {"audio": (1, 6, 5), "visual": (3, 8, 8), "visual2": (3, 8, 8)}
    assert bundle.info.num_outputs == 6 and [len(bundle.splits[s]) for s in ("train", "val", "test")] == [10, 3, 3]
    row, same_pool_row = bundle.splits["train"][1], bundle.splits["train"][5]
    assert row["index"] == 1 and same_pool_row["index"] == 5
    assert torch.equal(row["inputs"]["visual"], same_pool_row["inputs"]["visual"])  # 5 % 4 == 1
    assert not torch.equal(row["inputs"]["visual"], row["inputs"]["visual2"])
    full = load_benchmark("valuation_overhead")
    assert full.WORKLOADS["av-resnet"].config(3)["data"]["batch_size"] == 8
    assert full.WORKLOADS["av-resnet"].config(3, device="cuda")["data"]["batch_size"] == 64


def test_naive_and_head_only_valuators_compute_the_same_game_on_mfeat():
    # The mfeat MLP encoders have no BatchNorm or dropout, so re-encoding in eval mode reproduces
    # the step's features and both valuators must agree exactly on the accuracy game.
    bench = load_benchmark("valuation_overhead")
    trainers = bench.build_trainers(bench.WORKLOADS["mfeat"], 3, "cpu", smoke=True)
    batch = bench.prepared_batches(trainers["joint"], 1)[0]
    trainer = trainers["shapley"]
    for group in trainer.optimizer.param_groups:
        group["lr"] = 0.0  # the real step, minus the update: the naive one re-encodes with these weights
    state = trainer.train_step([batch])
    naive = trainers["naive"].valuators.all()["v"].value(state)
    ours = state.values["v"]
    assert isinstance(trainers["naive"].valuators.all()["v"], bench.NaiveShapleyValuator)
    assert ours.coalitions.keys() == naive.coalitions.keys() and len(ours.coalitions) == 7
    assert torch.equal(ours.values, naive.values)


def test_gpu_benchmark_tiny_cpu_run_times_every_method_in_both_precisions(tmp_path):
    """benchmarks/gpu.py with tiny shapes on CPU: every installed method trains in fp32 and in bf16
    autocast (its extra passes included), with a ratio against its baseline."""
    gpu = load_benchmark("gpu")
    out = tmp_path / "gpu.json"
    gpu.main(["--device", "cpu", "--tiny", "--out", str(out)])
    results = json.loads(out.read_text())
    assert set(results["precisions"]) == {"32", "bf16-mixed"}
    for block in results["precisions"].values():
        assert set(block["methods"]) | set(block["skipped"]) == set(gpu.METHODS)
        assert {"joint", "joint_late"} <= set(block["methods"])
        for name, row in block["methods"].items():
            assert math.isfinite(row["ratio"]) and row["ratio"] > 0, name
            assert row["parameters"] > 20_000_000  # two ResNet-18s
            assert row["peak_memory_mb"] is None  # measured on CUDA only
        assert block["methods"]["joint"]["ratio"] == 1.0


def test_data_throughput_smoke_run_measures_every_format_with_0_and_2_workers(tmp_path):
    bench = load_benchmark("data_throughput")
    out = tmp_path / "throughput.json"
    bench.main(["--smoke", "--out", str(out)])
    results = json.loads(out.read_text())
    cells = {(c["format"], c["workers"]): c for c in results["cells"]}
    assert set(cells) == {(name, workers) for name in bench.FORMATS for workers in (0, 2)}
    assert len(bench.FORMATS) == 10 and {name.split("/")[0] for name in bench.FORMATS} == {
        "crema_d", "kinetics_sounds", "ave", "av_mnist", "cmu_mosi", "cmu_mosei", "ur_funny", "mustard"}
    for cell in cells.values():
        assert cell["samples"] > 0 and cell["samples"] % results["batch_size"] == 0
        assert cell["samples_per_s"] > 0 and cell["first_batch_s"] > 0
    assert results["machine"]["cpu_count"] >= 1 and "shared" in results["note"]


def test_data_throughput_times_fed_steps_with_frames_finished_on_either_side(tmp_path):
    bench = load_benchmark("data_throughput")
    out = tmp_path / "steps.json"
    bench.main(["--smoke", "--formats", "crema_d/ogm-wav", "--workers", "0", "--step-device", "cpu",
                "--step-workers", "0", "--step-batch", "2", "--steps", "1", "--finish", "device", "host", "--profile", "2",
                "--out", str(out)])
    steps = json.loads(out.read_text())["steps"]
    assert [(s["finish"], s["workers"]) for s in steps] == [("device", 0), ("host", 0)]
    assert all(s["compute_samples_per_s"] > 0 and s["fed_samples_per_s"] > 0 and s["fed_samples"] == 2 for s in steps)


@pytest.mark.parametrize("method", ["ogm_ge", "agm"])
def test_gradient_modulation_effect_smoke_pairs_each_method_with_joint(tmp_path, method):
    """benchmarks/gradient_modulation_effect.py in its smoke mode, one method at a time: real
    Trainer.fit() runs on both datasets, paired with joint training, written as a table."""
    pytest.importorskip(f"mmcore_{method}")
    study = load_benchmark("gradient_modulation_effect")
    out = tmp_path / "effect.json"
    study.main(["--smoke", "--methods", method, "--out", str(out)])
    results = json.loads(out.read_text())
    assert set(results["datasets"]) == {"mfeat", "synthetic"} and results["seeds"] == [0]
    for dataset, weak in (("mfeat", "mor"), ("synthetic", "weak")):
        table = results["datasets"][dataset]["table"]
        assert set(table) == {"joint", method}
        for metric in ("acc", f"acc/{weak}", f"probe_acc/{weak}"):
            assert 0.0 <= table[method][metric]["mean"] <= 1.0 and table[method][metric]["wins"] in (0, 1)
            assert table["joint"][metric]["wins"] is None
        assert set(results["datasets"][dataset]["goal"][method]) >= {"weak_mean_higher", "weak_wins",
                                                                     "fused_within_1pt", "met"}
