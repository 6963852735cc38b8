"""msam combined with other balancers, and the configurations a step owner rules out.

- msam + ogm_ge in one config: OGM-GE's modulation runs once per step, in `finish`, on the update
  gradient msam formed from its two passes (DESIGN.md §4), not on either pass's raw gradient.
- `mmcore validate` rejects, with exit code 2 and one clear line each, fp16 with a gradient scaler,
  gradient accumulation above 1, and a second step owner.
"""
from __future__ import annotations

import pytest
import tomli_w
import torch

from mmcore.cli import main
from mmcore.testing import make_trainer, run_steps, toy_config

pytest.importorskip("mmcore_msam")

PLAIN_SGD = {"kind": "sgd", "lr": 0.1, "momentum": 0.0}


def _update_gradient(trainer):
    """The gradient the optimizer applies in the next step, captured by wrapping optimizer.step."""
    captured = []
    step = trainer.optimizer.step

    def recording_step(*args, **kwargs):
        captured.append([None if p.grad is None else p.grad.clone() for p in trainer.model.parameters()])
        return step(*args, **kwargs)

    trainer.optimizer.step = recording_step
    return captured


def test_ogm_ge_modulates_once_on_msams_update_gradient():
    pytest.importorskip("mmcore_ogm_ge")
    msam = {"kind": "msam", "rho": 0.1}
    ogm = {"kind": "ogm_ge", "alpha": 2.0, "ge": False}  # no noise: the modulation is a pure rescaling
    alone = make_trainer(toy_config(balancers=[msam], optimizer=PLAIN_SGD))
    update_alone = _update_gradient(alone)
    run_steps(alone, 1)

    both = make_trainer(toy_config(balancers=[msam, ogm], optimizer=PLAIN_SGD))
    modulator = both.balancers[1]
    seen = []
    modulate = modulator.after_backward

    def watched(state):
        seen.append((state.pass_index, [None if p.grad is None else p.grad.clone() for p in both.model.parameters()]))
        modulate(state)

    modulator.after_backward = watched
    update_both = _update_gradient(both)
    _, (state,) = run_steps(both, 1)

    assert [pass_index for pass_index, _ in seen] == [1]  # once per step, after both passes
    incoming = seen[0][1]
    assert all(torch.equal(a, b) for a, b in zip(incoming, update_alone[0]))  # msam's update gradient
    coefficients = {m: state.metrics[f"balancer/ogm_ge/coef/{m}"] for m in ("a", "b")}
    assert min(float(c) for c in coefficients.values()) < 1.0  # the leading modality is damped
    scaled = {id(p): coefficients[m] for m in ("a", "b") for p in both.model.encoder_params(m)}
    for p, before, after in zip(both.model.parameters(), incoming, update_both[0]):
        expected = before * scaled[id(p)] if id(p) in scaled else before
        assert torch.allclose(after, expected)


def test_msam_with_ogm_ge_and_its_noise_trains():
    pytest.importorskip("mmcore_ogm_ge")
    _, states = run_steps(toy_config(balancers=[{"kind": "msam"}, {"kind": "ogm_ge"}]), 3)
    assert all(torch.isfinite(s.losses["task"]) for s in states)
    assert all(len(s.pass_outputs) == 2 for s in states)


OWNER_ERRORS = {
    "fp16 with a scaler": (
        {"run": {"precision": "16-mixed"}}, [{"kind": "msam"}],
        ['$.run.precision: $.balancers[0] (msam) owns the step, which rules out "16-mixed" '
         '(fp16 with a gradient scaler); use "bf16-mixed" or "32"'],
    ),
    "gradient accumulation": (
        {"run": {"grad_accum": 2}}, [{"kind": "sam"}],
        ["$.run.grad_accum: $.balancers[0] (sam) owns the step, which needs grad_accum = 1 (got 2)"],
    ),
    "second step owner": (
        {}, [{"kind": "sam"}, {"kind": "msam"}],
        ["$.balancers: at most one balancer may own the optimizer step, but $.balancers[0] (sam) "
         "and $.balancers[1] (msam) do"],
    ),
}


@pytest.mark.parametrize("case", OWNER_ERRORS, ids=list(OWNER_ERRORS))
def test_validate_rejects_what_a_step_owner_rules_out(case, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MMCORE_LOAD_PLUGINS", "mmcore-msam")
    tables, balancers, expected = OWNER_ERRORS[case]
    config = toy_config(balancers=balancers, **tables)
    path = tmp_path / "config.toml"
    path.write_text(tomli_w.dumps(config))
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.splitlines() == [f"error: {line}" for line in expected] and "Traceback" not in err


def test_mie_owns_the_step_only_in_full_mode(tmp_path, capsys, monkeypatch):
    pytest.importorskip("mmcore_mie")
    monkeypatch.setenv("MMCORE_LOAD_PLUGINS", "mmcore-msam,mmcore-mie")
    late = {"kind": "late", "hidden": [16]}
    for mode, code in (("paper", 0), ("full", 2)):
        config = toy_config(balancers=[{"kind": "msam"}, {"kind": "mie", "sam_mode": mode}], fusion=late)
        path = tmp_path / f"{mode}.toml"
        path.write_text(tomli_w.dumps(config))
        assert main(["validate", str(path)]) == code
    err = capsys.readouterr().err
    assert err.strip() == ("error: $.balancers: at most one balancer may own the optimizer step, but "
                           "$.balancers[0] (msam) and $.balancers[1] (mie) do")
