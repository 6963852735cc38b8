"""TrainControl behaviour: epoch plans, evaluate over a subset, freeze / unfreeze, reset_optimizer
and restore("best"), each driven the way a balancer drives it (from its epoch hooks)."""
from __future__ import annotations

import pytest
import torch
from attrs import frozen

from mmcore import Balancer, hookimpl
from mmcore.data.loading import collate
from mmcore.evaluation import Evaluator
from mmcore.testing import make_trainer, run_steps, toy_config


@frozen(kw_only=True)
class NoConfig:
    pass


class Scripted(Balancer):
    """Runs the test's callbacks from its hooks and counts its own steps (state to leave alone)."""

    def __init__(self, script: dict) -> None:
        self.script, self.steps = script, 0

    def on_epoch_start(self, epoch, control):
        self.script.get("on_epoch_start", lambda *a: None)(epoch, control)

    def before_forward(self, state):
        if state.pass_index == 0:
            self.steps += 1
        self.script.get("before_forward", lambda *a: None)(state)

    def on_epoch_end(self, epoch, metrics, control):
        self.script.get("on_epoch_end", lambda *a: None)(epoch, control)

    def state_dict(self):
        return {"steps": self.steps}


class ScriptPlugin:
    def __init__(self, **script) -> None:
        self.script = script

    @hookimpl
    def mmcore_register_components(self, registry):
        registry.balancer("scripted", NoConfig, lambda c, ctx: Scripted(self.script), help="test callbacks")

    @hookimpl
    def mmcore_before_optimizer_step(self, trainer, state):
        self.script.get("before_optimizer_step", lambda *a: None)(trainer)


def _trainer(script=None, run_dir=None, **tables):
    config = toy_config(balancers=[{"kind": "scripted"}], **tables)
    return make_trainer(config, modules=[ScriptPlugin(**(script or {}))], run_dir=run_dir)


def _grads(trainer):
    return [p.grad.detach().clone() for p in trainer.model.parameters()]


def _params(params):
    return [p.detach().clone() for p in params]


def _same(a, b):
    return all(torch.equal(x, y) for x, y in zip(a, b))


# -- plan_epoch ------------------------------------------------------------------------------
def test_plan_epoch_sets_rows_presence_extras_and_the_number_of_steps():
    """Epoch 0 trains on a 40-entry plan (rows 0..19 keeping only a, then rows 0..19 keeping only
    b, each tagged with its entry number): 3 steps of 16, 16, 8. Epoch 1 returns to the dataset."""
    entries = [(i, ("a",), {"tag": torch.tensor(j)}) for j, i in enumerate(range(20))]
    entries += [(i, ["b"], {"tag": torch.tensor(20 + i)}) for i in range(20)]
    seen = []

    def on_epoch_start(epoch, control):
        control.plan_epoch(entries if epoch == 0 else None)

    def before_forward(state):
        seen.append((state.epoch, state.batch))

    trainer = _trainer({"on_epoch_start": on_epoch_start, "before_forward": before_forward}, run={"epochs": 2})
    trainer.train_epoch()
    assert trainer.step == 3 and [b.size for _, b in seen] == [16, 16, 8]
    tags = torch.cat([b.extras["tag"] for _, b in seen])
    assert sorted(tags.tolist()) == list(range(40))  # every entry exactly once
    index = torch.cat([b.index for _, b in seen])
    present = torch.cat([b.present for _, b in seen])
    assert torch.equal(index, tags % 20)  # the batch index stays the dataset row
    keeps_a = (tags < 20).unsqueeze(1)
    assert torch.equal(present, torch.cat([keeps_a, ~keeps_a], dim=1))
    trainer.epoch += 1
    seen.clear()
    trainer.train_epoch()
    assert trainer.step == 3 + 4 and all(b.extras == {} and b.present.all() for _, b in seen)
    assert sorted(torch.cat([b.index for _, b in seen]).tolist()) == list(range(64))


def test_a_plan_reaches_the_model_as_zeroed_features():
    seen = []
    trainer = _trainer({
        "on_epoch_start": lambda epoch, control: control.plan_epoch([(i, ("b",), {}) for i in range(16)]),
        "before_forward": lambda state: seen.append(state),
    })
    trainer.train_epoch()
    out = seen[0].output
    assert not out.present[:, 0].any() and out.present[:, 1].all()


# -- evaluate -----------------------------------------------------------------------------------
def test_evaluate_runs_fn_over_exactly_the_subset_in_eval_mode_without_grad():
    trainer = _trainer()
    model = trainer.model
    model.train()
    model.encoders["b"].eval()  # a mixed set of flags, to be restored exactly
    flags_before = [m.training for m in model.modules()]
    subset = [5, 3, 17, 30, 2]
    observed = []

    def fn(batch, m):
        observed.append((not any(x.training for x in m.modules()), torch.is_grad_enabled(), m is model))
        return batch.index, m(batch).logits

    results = trainer.control.evaluate("val", fn, subset=torch.tensor(subset), batch_size=2)
    assert len(results) == 3 and observed == [(True, False, True)] * 3
    assert torch.cat([index for index, _ in results]).tolist() == subset
    logits = torch.cat([out for _, out in results])
    assert not logits.requires_grad
    assert [m.training for m in model.modules()] == flags_before
    # the reference: the same rows collated by hand, the model in eval mode
    model.eval()
    with torch.no_grad():
        reference = model(collate([trainer.data.splits["val"][i] for i in subset])).logits
    torch.testing.assert_close(logits, reference)


# -- freeze / unfreeze ----------------------------------------------------------------------------
@pytest.mark.parametrize("optimizer", [
    {"kind": "sgd", "lr": 0.1, "momentum": 0.9, "weight_decay": 0.1},
    {"kind": "adamw", "lr": 0.01, "weight_decay": 0.1},
])
def test_freeze_stops_momentum_and_weight_decay_and_unfreeze_restores(optimizer):
    trainer = _trainer(fusion={"kind": "sum"}, optimizer=optimizer, run={"epochs": 10})
    run_steps(trainer, 3)  # momentum buffers / Adam moments now hold non-zero state
    frozen, other = trainer.model.modality_params("a"), trainer.model.modality_params("b")
    assert any(p is trainer.model.heads["a"].weight for p in frozen)  # the sum fusion's head of a
    trainer.control.freeze("a")
    assert not any(p.requires_grad for p in frozen) and all(p.requires_grad for p in other)
    before_frozen, before_other = _params(frozen), _params(other)
    run_steps(trainer, 3)
    assert _same(_params(frozen), before_frozen)
    assert all(p.grad is None for p in frozen)
    assert not any(torch.equal(a, b) for a, b in zip(_params(other), before_other))
    trainer.control.unfreeze("a")
    assert all(p.requires_grad for p in frozen) and trainer.frozen == set()
    run_steps(trainer, 1)
    assert not any(torch.equal(a, b) for a, b in zip(_params(frozen), before_frozen))


# -- reset_optimizer -------------------------------------------------------------------------------
def test_reset_optimizer_gives_fresh_state_and_a_fresh_scheduler():
    grads = []
    trainer = _trainer({"before_optimizer_step": lambda t: grads.append(_grads(t))},
                       optimizer={"kind": "sgd", "lr": 0.2, "momentum": 0.9}, scheduler={"kind": "cosine"},
                       run={"epochs": 2})
    run_steps(trainer, 3)
    old = trainer.optimizer
    assert len(old.state) > 0 and old.param_groups[0]["lr"] < 0.2
    trainer.control.reset_optimizer()
    fresh = trainer.optimizer
    assert fresh is not old and len(fresh.state) == 0
    assert fresh.param_groups[0]["lr"] == 0.2 and trainer.scheduler.last_epoch == 0
    assert {id(p) for g in fresh.param_groups for p in g["params"]} == {id(p) for p in trainer.model.parameters()}
    # the next step starts momentum afresh: its buffer is exactly this step's gradient
    grads.clear()
    run_steps(trainer, 1)
    buffers = [fresh.state[p]["momentum_buffer"] for p in trainer.model.parameters()]
    assert _same(buffers, grads[0]) and len(old.state) > 0  # and the old optimizer was left behind
    assert trainer.scheduler.optimizer is fresh


# -- restore -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("with_run_dir", [True, False])
def test_restore_best_loads_the_best_weights_and_leaves_balancer_state(tmp_path, monkeypatch, with_run_dir):
    """Validation is scripted so that epoch 0 is best; at the end of epoch 2 the balancer restores it."""
    snapshots, checks = {}, []

    def on_epoch_end(epoch, control):
        trainer = control._trainer
        snapshots[epoch] = _params(trainer.model.parameters())
        if epoch == 2:
            balancer_state = trainer.balancers[0].state_dict()
            optimizer_state = {k: v["momentum_buffer"].clone() for k, v in enumerate(trainer.optimizer.state.values())}
            control.restore("best")
            checks.append(_same(_params(trainer.model.parameters()), snapshots[0]))
            checks.append(not _same(snapshots[2], snapshots[0]))
            checks.append(trainer.balancers[0].state_dict() == balancer_state == {"steps": 12})
            after = {k: v["momentum_buffer"] for k, v in enumerate(trainer.optimizer.state.values())}
            checks.append(all(torch.equal(after[k], optimizer_state[k]) for k in optimizer_state))

    scripted = iter([0.9, 0.5, 0.7])
    real_evaluate = Evaluator.evaluate

    def evaluate(self, split, values=False, corruption=None):
        metrics = real_evaluate(self, split, values=values, corruption=corruption)
        if split == "val" and self.trainer.epoch < 3:  # the per-epoch validations, not the final one
            metrics["acc"] = next(scripted)
        return metrics

    monkeypatch.setattr(Evaluator, "evaluate", evaluate)
    trainer = _trainer({"on_epoch_end": on_epoch_end}, run_dir=tmp_path if with_run_dir else None, run={"epochs": 3})
    summary = trainer.fit()
    trainer.close()
    assert summary["best_epoch"] == 0 and checks == [True, True, True, True]


def test_evaluate_inside_a_corrupted_epoch_neither_inherits_nor_removes_the_train_corruption():
    """Train features carry feature-level noise; a validation pass from inside a step runs clean and
    the step's corruption is back afterwards."""
    seen = []

    def before_forward(state):
        model = state.model
        during = state.control.evaluate("val", lambda batch, m: m.feature_transform is None, subset=[0])
        seen.append((model.feature_transform is not None, during, model.feature_transform is not None))

    trainer = _trainer({"before_forward": before_forward},
                       data={"corruption": {"train": {"noise_rate": 0.5, "level": "feature"}}})
    trainer.train_epoch()
    assert seen == [(True, [True], True)] * 4
    assert trainer.model.feature_transform is None  # and the epoch's own context cleaned up
