"""Behaviour: what sam and msam change in a step, what they leave alone, and that seeded runs repeat."""
import pytest
import torch

import mmcore
from mmcore.testing import RecordingPlugin, make_trainer, run_steps
from msam_recording import Snapshots, sam_toy


class ValueFunctions:
    """Value functions that pin the Shapley values: only `a` counts, everyone equal, nobody."""

    @mmcore.hookimpl
    def mmcore_register_components(self, registry: mmcore.ComponentRegistry) -> None:
        def constant(score):
            return lambda logits, label, *, coalition, task_loss: torch.full((logits.shape[0],), score(coalition))
        registry.value_function("only_a", constant(lambda s: float("a" in s)))
        registry.value_function("size", constant(lambda s: float(len(s))))
        registry.value_function("nothing", constant(lambda s: 0.0))


def test_a_non_owner_modulator_runs_once_on_the_update_gradient():
    recorder = RecordingPlugin()
    config = sam_toy({"kind": "recording", "name": "mod"}, {"kind": "msam"})
    run_steps(make_trainer(config, modules=[recorder]), 1)
    calls = [c for c in recorder.calls if not c.startswith(("mod.attach", "mod.on_epoch"))]
    assert calls == [
        "mod.before_forward[0]", "mod.before_backward[0]", "hook.after_backward[0]",
        "mod.before_forward[1]", "mod.before_backward[1]", "hook.after_backward[1]",
        "mod.after_backward[1]", "hook.before_optimizer_step",
    ]


def test_nu_one_on_a_modality_makes_msam_sam():
    plugins = [ValueFunctions()]
    sam, _ = run_steps(make_trainer(sam_toy({"kind": "sam"}), modules=plugins), 3)
    msam, states = run_steps(make_trainer(sam_toy({"kind": "msam", "value": "only_a"}), modules=plugins), 3)
    assert float(states[-1].metrics["balancer/msam/nu/a"]) == 1.0
    for p, q in zip(sam.model.parameters(), msam.model.parameters()):
        assert torch.allclose(p, q, atol=1e-6)


@pytest.mark.parametrize("value, fallback", [("size", 0.0), ("nothing", 1.0)])
def test_equal_or_absent_contributions_give_uniform_nu(value, fallback):
    _, (state,) = run_steps(make_trainer(sam_toy({"kind": "msam", "value": value}), modules=[ValueFunctions()]), 1)
    assert float(state.metrics["balancer/msam/nu/a"]) == float(state.metrics["balancer/msam/nu/b"]) == 0.5
    assert float(state.metrics["balancer/msam/fallback"]) == fallback
    assert int(state.metrics["balancer/msam/dominant"]) == 0  # a tie on the first step: the first modality


def test_scalar_msam_leaves_the_loss_terms_alone():
    snapshots = Snapshots()
    run_steps(make_trainer(sam_toy({"kind": "msam"}), modules=[snapshots]), 1)
    state = snapshots.states[0]
    assert set(state.losses) == {"task"} and len(state.pass_outputs) == 2
    last = state.pass_outputs[-1]
    assert torch.equal(state.losses["task"], state.task_loss(last.logits, state.batch.label, reduction="none").mean())


def test_nu_and_the_dominant_modality_are_logged_each_step():
    _, states = run_steps(sam_toy({"kind": "msam"}), 3)
    for state in states:
        nu = torch.stack([state.metrics["balancer/msam/nu/a"], state.metrics["balancer/msam/nu/b"]])
        assert torch.isclose(nu.sum(), torch.tensor(1.0)) and (nu >= 0).all()
        assert nu[int(state.metrics["balancer/msam/dominant"])] == nu.max()  # argmax; a tie keeps the last one


def test_per_sample_needs_a_per_sample_valuator():
    config = sam_toy({"kind": "msam", "decomposition": "per_sample", "valuator": "v"},
                     valuators={"v": {"kind": "shapley", "per": "batch"}})
    with pytest.raises(mmcore.ConfigError, match="per-sample"):
        make_trainer(config)


def test_seeded_runs_repeat():
    runs = [run_steps(sam_toy({"kind": "msam", "nu_momentum": 0.5, "adaptive": True}), 3)[0] for _ in range(2)]
    for p, q in zip(runs[0].model.parameters(), runs[1].model.parameters()):
        assert torch.equal(p, q)
    first, second = (run.balancers[0].state_dict() for run in runs)
    assert torch.equal(first["nu_average"], second["nu_average"]) and torch.equal(first["previous"], second["previous"])
