"""Robustness protocols: overrides, tables, the `mmcore robustness` command, the noise-attention probe,
and smoke runs of the three benchmarks."""
import argparse
import importlib.util
import json
import sys
import tomllib
from pathlib import Path

import pytest
import torch

import mmcore
from mmcore_sam_lml.commands import add_robustness_command
from mmcore_sam_lml.noise_attention import noise_attention_ratios, noise_weight_sums
from mmcore_sam_lml.report import markdown, summarize
from mmcore_sam_lml.robustness import corruption_overrides, run_name

ROOT = Path(__file__).resolve().parents[3]
TINY = ["run.epochs=1", "data.train_size=32", "data.val_size=16", "data.test_size=16"]


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def load_benchmark(name):
    spec = importlib.util.spec_from_file_location(f"_bench_{name}", ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_protocols_put_the_same_corruption_on_every_split():
    assert corruption_overrides("missing", 0.0) == []
    assert corruption_overrides("missing", 0.3) == [f"data.corruption.{s}.missing_rate=0.3" for s in ("train", "val", "test")]
    noise = corruption_overrides("noise", 0.5, "laplace")
    assert len(noise) == 9 and 'data.corruption.val.noise="laplace"' in noise and 'data.corruption.test.level="feature"' in noise
    assert run_name("sup", "noise", "erasing", 0.2, 1) == "erasing_r0.2/sup_s1"
    assert run_name("sup", "missing", "", 0.0, 0) == run_name("sup", "noise", "gaussian", 0.0, 0) == "clean/sup_s0"


def test_table_means_paired_wins_and_average():
    def rec(variant, rate, seed, acc):
        return {"variant": variant, "protocol": "missing", "noise": "", "rate": rate, "seed": seed, "metrics": {"acc": acc}}

    records = [rec("sup", 0.1, 0, 0.8), rec("sup", 0.1, 1, 0.6), rec("uns", 0.1, 0, 0.7), rec("uns", 0.1, 1, 0.65),
               rec("sup", 0.2, 0, 0.5), rec("sup", 0.2, 1, 0.5), rec("uns", 0.2, 0, 0.5), rec("uns", 0.2, 1, 0.4)]
    (group,) = summarize(records, "acc")["groups"]
    first, second, average = group["rows"]
    assert first["variants"]["sup"]["mean"] == pytest.approx(0.7)
    assert first["variants"]["sup"]["std"] == pytest.approx(0.1414, abs=1e-4)
    assert first["paired"] == {"diff": pytest.approx(0.025), "seeds": 2, "wins": 1}
    assert second["paired"]["wins"] == 1  # a tie is no win
    assert average["rate"] == "Avg" and average["variants"]["uns"]["values"] == pytest.approx([0.6, 0.525])
    clean = [rec(v, 0.0, seed, 1.0) for v in ("sup", "uns") for seed in (0, 1)]
    *_, with_clean = summarize(clean + records, "acc")["groups"][0]["rows"]
    assert with_clean["variants"]["uns"]["values"] == pytest.approx([0.6, 0.525])  # Avg: rates > 0 only
    text = markdown(summarize(records, "acc"))
    assert "| 0.1 | 70.0 ± 14.1 (n=2) | 67.5 ± 3.5 (n=2) | +2.5 | 1/2 |" in text
    mae = summarize([{**r, "metrics": {"mae": r["metrics"]["acc"]}} for r in records], "mae")
    assert mae["groups"][0]["rows"][0]["paired"]["wins"] == 1  # lower is better for errors


def test_noise_weight_sums_split_attention_between_noisy_and_clean_keys():
    scores = torch.log(torch.tensor([[[1.0, 1.0, 2.0], [1.0, 3.0, 0.0]]]))  # softmax rows: (.25 .25 .5), (.25 .75 0)
    record = mmcore.AttentionRecord(name="intra/a", kind="intra", query_modality="a", key_modality="a",
                                    queries=torch.zeros(1, 2, 1), keys=torch.zeros(1, 3, 1), scores=scores,
                                    score_fn=None, query_mask=torch.tensor([[True, True]]),
                                    key_mask=torch.tensor([[True, True, True]]))
    sums = noise_weight_sums(record, torch.tensor([[False, False, True]]))
    assert sums.tolist() == pytest.approx([0.5, 2.0, 1.5, 4.0])
    ratio = noise_attention_ratios([{"intra/a": sums}])["intra"]
    assert ratio["noisy_key_weight"] == pytest.approx(0.25) and ratio["ratio"] == pytest.approx(0.25 / 0.375)


def robustness(argv):
    parser = argparse.ArgumentParser()
    add_robustness_command(parser.add_subparsers(dest="command"), [])
    args = parser.parse_args(["robustness", *argv])
    return args.handler(args, mmcore.PluginHost(load_only=["mmcore-sam-lml"]))


def test_robustness_command_trains_under_the_protocol_then_evaluates(tmp_path, capsys):
    config = ROOT / "configs" / "sam_lml_synthetic.toml"
    options = [f"--set={o}" for o in TINY]
    assert robustness(["train", str(config), "--variant", "sup", "--variant", "uns=attention_supervisors=[]",
                       "--protocol", "missing", "--rates", "0.5", "--seeds", "3", *options, "--out", str(tmp_path)]) == 0
    results = json.loads((tmp_path / "robustness.json").read_text())
    assert [(r["variant"], r["rate"], r["seed"]) for r in results["records"]] == [("sup", 0.5, 3), ("uns", 0.5, 3)]
    run = tmp_path / "missing_r0.5" / "uns_s3"
    resolved = tomllib.loads((run / "config.toml").read_text())
    splits = ("train", "val", "test")
    assert {s: resolved["data"]["corruption"][s]["missing_rate"] for s in splits} == dict.fromkeys(splits, 0.5)
    assert "attention_supervisors" not in resolved or resolved["attention_supervisors"] == []
    assert (tmp_path / "robustness.png").stat().st_size > 0 and "seeds sup better" in capsys.readouterr().out
    # the eval sweep scores finished checkpoints in process, as `mmcore eval` does
    sweep = ["--protocol", "noise", "--rates", "0.4", "--out", str(tmp_path / "ev")]
    assert robustness(["eval", "--run", f"uns={run}", *sweep]) == 0
    (record,) = json.loads((tmp_path / "ev" / "robustness.json").read_text())["records"]
    assert (record["protocol"], record["noise"], record["rate"], record["seed"]) == ("noise", "gaussian", 0.4, 3)
    assert 0.0 <= record["metrics"]["acc"] <= 1.0


def test_attention_benchmark_smoke(tmp_path):
    result = load_benchmark("sam_lml_attention").main(["--smoke", "--set=data.train_size=32", "--out", str(tmp_path / "a.json")])
    rows = {(r["probe"], r["records"]): r for r in result["rows"]}
    assert set(rows) >= {("feature", "intra"), ("feature", "inter"), ("input", "all"), ("test acc", "")}
    assert all(row["supervised"]["values"] for row in rows.values())
    assert json.loads((tmp_path / "a.json").read_text())["seeds"] == [0]


def test_robustness_benchmark_smoke(tmp_path):
    report = load_benchmark("sam_lml_robustness").main(["--smoke", "--out", str(tmp_path), "--runs", str(tmp_path / "runs")])
    assert [g["protocol"] for g in report["table"]["groups"]] == ["missing", "noise"]


def test_cost_benchmark_smoke(tmp_path):
    result = load_benchmark("sam_lml_cost").main(["--smoke", "--workload", "mosi-seq", "--threads", "1"])
    (cell,) = result["cells"]
    assert set(cell["ratios"]) == {"train", "inference"} and cell["ratios"]["train"] > 0
    assert cell["parameters"]["unsupervised"]["training_only"] == 0 < cell["parameters"]["supervised"]["training_only"]
