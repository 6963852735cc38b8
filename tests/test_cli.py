"""The `mmcore` command. Broken configs exit 2 with one `error: ` line per problem and no traceback,
from `validate` and `run` alike; runtime failures exit 1 naming what failed. Most calls run in
process through `main([...])`; two subprocesses prove exit codes, stderr and `python -m mmcore`."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tomli_w

from mmcore.cli import main

FIXTURES = Path(__file__).parent / "fixtures"
P_FIXTURE = ["-p", "mmcore_fixture_kinds"]  # a step-owning balancer and a supervisor that needs attention


@pytest.fixture(autouse=True)
def isolated(monkeypatch):
    """Only built-ins and -p modules: other installed plugins must not add warnings to stderr."""
    monkeypatch.setenv("MMCORE_DISABLE_PLUGIN_AUTOLOAD", "1")
    monkeypatch.syspath_prepend(str(FIXTURES))


def base_config(**changes):
    config = {
        "run": {"name": "cli", "epochs": 1, "device": "cpu", "probe": False, "log_every_steps": 5},
        "data": {"kind": "mfeat", "modalities": ["pix", "mor"], "batch_size": 128},
        "encoders": {"pix": {"kind": "mlp", "hidden": [16]}, "mor": {"kind": "mlp", "hidden": [16]}},
        "fusion": {"kind": "concat"},
        "optimizer": {"kind": "sgd", "lr": 0.05},
    }
    for dotted, value in changes.items():
        *tables, key = dotted.split("__")
        node = config
        for table in tables:
            node = node.setdefault(table, {})
        node[key] = value
    return config


def write(tmp_path, config, name="config.toml"):
    path = tmp_path / name
    path.write_text(config if isinstance(config, str) else tomli_w.dumps(config))
    return path


def error_lines(err):
    lines = err.splitlines()
    assert all(line.startswith("error: ") for line in lines), err
    assert "Traceback" not in err
    return lines


OWNER = {"kind": "fixture_owner"}
BROKEN_CONFIGS = {
    "unknown kind": (
        base_config(fusion__kind="nosuch"),
        ["error: $.fusion.kind: unknown fusion kind 'nosuch'; installed: concat, cross_attention, film, gated, "
         "late, sum (pip install mmcore-nosuch?)"],
    ),
    "misspelt key": (base_config(run__epochz=3), ["error: $.run.epochz: unknown key 'epochz'; did you mean 'epochs'?"]),
    "wrong type": (base_config(run__epochs="three"), ["error: $.run.epochs: expected an integer (got 'three')"]),
    "out of range": (base_config(optimizer__lr=-1.0), ["error: $.optimizer.lr: 'lr' must be > 0.0: -1.0"]),
    "modality without an encoder": (
        base_config(data__modalities=["pix", "mor", "fou"]),
        ["error: $.data.modalities: modality 'fou' has no encoder; add an [encoders.fou] table"],
    ),
    "two step owners": (
        base_config(balancers=[OWNER, {"kind": "none"}, OWNER]),
        ["error: $.balancers: at most one balancer may own the optimizer step, but $.balancers[0] (fixture_owner) "
         "and $.balancers[2] (fixture_owner) do"],
    ),
    "supervisor without attention": (
        base_config(attention_supervisors=[{"kind": "fixture_needs_attention"}]),
        ["error: $.attention_supervisors[0]: fixture_needs_attention requires 'attention', which fusion 'concat' "
         "does not provide; fusions that do: cross_attention"],
    ),
    "several at once": (
        base_config(run__epochz=3, optimizer__lr=-1.0, fusion__kind="nosuch"),
        ["error: $.run.epochz: unknown key 'epochz'; did you mean 'epochs'?",
         "error: $.fusion.kind: unknown fusion kind 'nosuch'; installed: concat, cross_attention, film, gated, "
         "late, sum (pip install mmcore-nosuch?)",
         "error: $.optimizer.lr: 'lr' must be > 0.0: -1.0"],
    ),
    "toml syntax error": ('[run]\nname = "cli"\nepochs = = 1\n', ["error: {path}:3:10: Invalid value"]),
}


@pytest.mark.parametrize("command", ["validate", "run"])
@pytest.mark.parametrize("case", BROKEN_CONFIGS, ids=str)
def test_broken_config_exits_2_with_one_line_per_problem(case, command, tmp_path, capsys):
    config, expected = BROKEN_CONFIGS[case]
    path = write(tmp_path, config)
    out = ["--out", str(tmp_path / "run")] if command == "run" else []
    assert main([*P_FIXTURE, command, str(path), *out]) == 2
    assert error_lines(capsys.readouterr().err) == [line.format(path=path) for line in expected]
    assert not (tmp_path / "run").exists()  # nothing is written for a config that does not validate


def test_validate_accepts_a_good_config_and_set_overrides(tmp_path, capsys):
    path = write(tmp_path, base_config())
    assert main(["validate", str(path)]) == 0
    assert capsys.readouterr().out == f"{path}: valid (2 modalities, fusion concat, balancers none)\n"
    assert main(["validate", str(path), "--set", "run.epochs=0"]) == 2
    assert error_lines(capsys.readouterr().err) == ["error: $.run.epochs: 'epochs' must be >= 1: 0"]
    assert main(["validate", str(tmp_path / "missing.toml")]) == 2
    assert error_lines(capsys.readouterr().err) == [
        f"error: {tmp_path / 'missing.toml'}: cannot read config (No such file or directory)"]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """One 1-epoch mfeat run, shared by the tests that need a run directory."""
    root = tmp_path_factory.mktemp("cli_run")
    path = write(root, base_config())
    run_dir = root / "run"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MMCORE_DISABLE_PLUGIN_AUTOLOAD", "1")
        assert main(["run", str(path), "--out", str(run_dir), "--no-progress"]) == 0
    return path, run_dir


def test_run_writes_a_run_directory(finished_run):
    _, run_dir = finished_run
    for name in ("config.toml", "metrics.jsonl", "summary.json", "checkpoints/best", "checkpoints/last"):
        assert (run_dir / name).exists(), name
    assert set(json.loads((run_dir / "summary.json").read_text())["test"]) >= {"acc", "macro_f1", "loss"}


def test_run_refuses_an_existing_run_directory(finished_run, capsys):
    path, run_dir = finished_run
    assert main(["run", str(path), "--out", str(run_dir)]) == 2
    assert error_lines(capsys.readouterr().err) == [
        f"error: {run_dir} already exists; pass --resume to continue it or --overwrite to replace it"]


def test_resume_needs_a_checkpoint_and_overwrite_needs_a_run_directory(tmp_path, capsys):
    path = write(tmp_path, base_config())
    assert main(["run", str(path), "--out", str(tmp_path / "fresh"), "--resume"]) == 2
    assert error_lines(capsys.readouterr().err) == [
        f"error: {tmp_path / 'fresh'}: no checkpoint to resume from (checkpoints/last is missing)"]
    (tmp_path / "precious").mkdir()
    (tmp_path / "precious" / "notes.txt").write_text("keep me")
    assert main(["run", str(path), "--out", str(tmp_path / "precious"), "--overwrite"]) == 2
    assert error_lines(capsys.readouterr().err) == [
        f"error: {tmp_path / 'precious'} is not a run directory (no config.toml); refusing to overwrite it"]
    assert (tmp_path / "precious" / "notes.txt").read_text() == "keep me"
    assert main(["run", str(path), "--out", str(path)]) == 2
    assert error_lines(capsys.readouterr().err) == [f"error: {path} is a file, not a run directory"]


def test_eval_writes_a_result_under_eval(finished_run, capsys):
    _, run_dir = finished_run
    assert main(["eval", str(run_dir), "--split", "test", "--missing-rate", "0.3"]) == 0
    printed = json.loads(capsys.readouterr().out)
    saved = json.loads((run_dir / "eval" / "test_best_mr0.3_nr0_gaussian_feature.json").read_text())
    assert saved == printed
    assert saved["split"] == "test" and saved["corruption"]["missing_rate"] == 0.3
    assert 0.0 <= saved["metrics"]["acc"] <= 1.0
    with pytest.raises(SystemExit) as usage:
        main(["eval", str(run_dir), "--missing-rate", "1.5"])
    assert usage.value.code == 2
    assert "argument --missing-rate: must be between 0 and 1 (got 1.5)" in capsys.readouterr().err


def test_kinds_lists_fields_defaults_and_help(capsys):
    assert main(["kinds"]) == 0
    out = capsys.readouterr().out
    assert "[optimizer]\n  adam  (mmcore)  Adam\n" in out
    assert "  sgd  (mmcore)  stochastic gradient descent with momentum\n      lr: float = 0.01  learning rate\n" in out
    assert "  concat  (mmcore)  linear head on the concatenated features" in out
    assert "  attention: FusionOutput.attention holds AttentionRecords" in out
    assert main(["kinds", "balancer"]) == 0
    assert capsys.readouterr().out.startswith("[balancer]\n  none  (mmcore)  plain joint training (no balancing)\n\n")
    assert main(["kinds", "balancers"]) == 0  # the config table's name works too
    assert capsys.readouterr().out.startswith("[balancer]\n")


def test_kinds_of_an_unknown_slot_exits_2(capsys):
    assert main(["kinds", "nosuch"]) == 2
    assert error_lines(capsys.readouterr().err) == [
        "error: unknown slot 'nosuch'; slots: dataset, encoder, fusion, valuator, balancer, attention_supervisor, "
        "optimizer, scheduler"]


def garbage_npz(tmp_path):
    path = tmp_path / "garbage.npz"
    path.write_bytes(np.random.default_rng(0).bytes(256))
    return path


def test_unreadable_data_file_exits_1_naming_the_file(tmp_path, capsys):
    data = garbage_npz(tmp_path)
    path = write(tmp_path, base_config(data__path=str(data)))
    assert main(["run", str(path), "--out", str(tmp_path / "run")]) == 1
    (line,) = error_lines(capsys.readouterr().err)
    assert line.startswith(f"error: {data}: not a readable .npz file")


def _mmcore(*args, cwd):
    env = {**os.environ, "MMCORE_DISABLE_PLUGIN_AUTOLOAD": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(FIXTURES), os.environ.get("PYTHONPATH")]))}
    return subprocess.run([sys.executable, "-m", "mmcore", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120)


def test_python_m_mmcore_reports_config_errors_without_traceback(tmp_path):
    path = write(tmp_path, base_config(balancers=[OWNER, OWNER],
                                       attention_supervisors=[{"kind": "fixture_needs_attention"}]))
    done = _mmcore("validate", str(path), *P_FIXTURE, cwd=tmp_path)
    assert done.returncode == 2 and done.stdout == ""
    assert error_lines(done.stderr) == [
        "error: $.balancers: at most one balancer may own the optimizer step, but $.balancers[0] (fixture_owner) "
        "and $.balancers[1] (fixture_owner) do",
        "error: $.attention_supervisors[0]: fixture_needs_attention requires 'attention', which fusion 'concat' "
        "does not provide; fusions that do: cross_attention",
    ]


def test_python_m_mmcore_run_with_unreadable_data_exits_1_without_traceback(tmp_path):
    data = garbage_npz(tmp_path)
    path = write(tmp_path, base_config(data__path=str(data)))
    done = _mmcore("run", str(path), "--out", str(tmp_path / "run"), cwd=tmp_path)
    assert done.returncode == 1
    (line,) = error_lines(done.stderr)
    assert line.startswith(f"error: {data}: not a readable .npz file")
