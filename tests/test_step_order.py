"""The exact order of calls within a step (DESIGN.md section 4), for one pass and for a step owner."""
from mmcore.testing import RecordingPlugin, make_trainer, record_optimizer_steps, run_steps, toy_config


def _trainer(balancers):
    recorder = RecordingPlugin()
    config = toy_config(
        balancers=balancers,
        attention_supervisors=[{"kind": "recording"}],
        valuators={"rec": {"kind": "recording"}},
    )
    trainer = make_trainer(config, modules=[recorder])
    record_optimizer_steps(trainer, recorder.calls)
    recorder.calls.clear()  # drop attach-time calls
    return trainer, recorder


def _one_step(trainer, recorder):
    run_steps(trainer, 1)
    return [c for c in recorder.calls if not c.endswith("on_epoch_start")]


def test_one_pass_step_order():
    trainer, recorder = _trainer([{"kind": "recording", "name": "b1"}, {"kind": "recording", "name": "b2"}])
    assert _one_step(trainer, recorder) == [
        "b1.before_forward[0]", "b2.before_forward[0]",
        "model.forward",
        "supervisor.losses[0]",
        "valuator.value[0]",
        "b1.before_backward[0]", "b2.before_backward[0]",
        "hook.after_backward[0]",
        "b1.after_backward[0]", "b2.after_backward[0]",
        "hook.before_optimizer_step",
        "optimizer.step",
    ]


def test_two_pass_step_owner_order():
    trainer, recorder = _trainer([{"kind": "recording", "name": "b1"}, {"kind": "recording", "name": "own", "owns_step": True}])
    assert _one_step(trainer, recorder) == [
        "own.step",
        "b1.before_forward[0]", "own.before_forward[0]",
        "model.forward",
        "supervisor.losses[0]",
        "valuator.value[0]",  # valuators run on pass 0 only
        "b1.before_backward[0]", "own.before_backward[0]",
        "hook.after_backward[0]",
        "own.between_passes",
        "b1.before_forward[1]", "own.before_forward[1]",
        "model.forward",
        "supervisor.losses[1]",
        "b1.before_backward[1]", "own.before_backward[1]",
        "hook.after_backward[1]",
        "b1.after_backward[1]",  # non-owner modulators act once, in finish; the owner never here
        "hook.before_optimizer_step",
        "optimizer.step",
    ]


def test_attach_runs_before_the_optimizer_and_epoch_hooks_are_called():
    recorder = RecordingPlugin()
    trainer = make_trainer(toy_config(balancers=[{"kind": "recording", "name": "b"}]), modules=[recorder])
    assert recorder.calls == ["b.attach"]
    trainer.fit()
    assert recorder.calls.count("b.on_epoch_start") == 1 and recorder.calls.count("b.on_epoch_end") == 1
    assert recorder.calls.index("b.on_epoch_start") < recorder.calls.index("b.before_forward[0]")


def test_close_detaches_every_balancer():
    trainer, recorder = _trainer([{"kind": "recording", "name": "b1"}, {"kind": "recording", "name": "b2"}])
    trainer.close()
    assert [c for c in recorder.calls if c.endswith("detach")] == ["b1.detach", "b2.detach"]
