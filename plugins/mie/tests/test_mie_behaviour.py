"""Behaviour: what mie changes in a step and at a stage switch, what it leaves alone, its three
sam modes, and that seeded runs repeat."""
import copy
import logging

import pytest
import torch
from attrs import frozen

import mmcore
from mmcore.testing import check_id, contract_checks, make_trainer, run_steps, toy_config

LATE = {"kind": "late", "hidden": [16, 8]}
PLAIN_SGD = {"kind": "sgd", "lr": 0.1, "momentum": 0.0}
QUICK_FIT = {"probe": False, "value_every_epoch": False}  # fit() without end-of-run probes or epoch valuation


def mie_toy(table, *before, **tables):
    tables.setdefault("optimizer", PLAIN_SGD)
    return toy_config(balancers=[*before, {"kind": "mie", **table}], fusion=LATE, **tables)


@frozen(kw_only=True)
class NoOptions:
    pass


class Scramble(mmcore.Balancer):
    """Moves every weight at each epoch end, so a reload of the best weights is visible."""

    def attach(self, model):
        self.model = model

    def on_epoch_end(self, epoch, metrics, control):
        with torch.no_grad():
            for p in self.model.parameters():
                p.add_(1.0)


class StageWatch:
    """Registers `scramble`; records, after each epoch's balancers, whether the weights are the
    best ones and whether the optimizer state is fresh."""

    def __init__(self):
        self.after_epoch = []

    @mmcore.hookimpl
    def mmcore_register_components(self, registry):
        registry.balancer("scramble", NoOptions, lambda config, ctx: Scramble(), help="test only")

    @mmcore.hookimpl
    def mmcore_epoch_end(self, trainer, epoch, metrics):
        best = trainer.state.weights("best")
        is_best = all(torch.equal(v, best[k]) for k, v in trainer.model.state_dict().items())
        self.after_epoch.append((is_best, len(trainer.optimizer.state) == 0))


def test_a_stage_switch_reloads_the_best_weights_and_resets_the_optimizer():
    watch = StageWatch()
    config = mie_toy({"epoch_list": [1]}, {"kind": "scramble"}, run={"epochs": 3, **QUICK_FIT},
                     optimizer={"kind": "sgd", "lr": 0.1, "momentum": 0.9})
    make_trainer(config, modules=[watch]).fit()
    # epochs 0 and 1 end a stage: best weights back (the scramble undone), fresh optimizer state;
    # epoch 2 is the last one: nothing to switch to, the scrambled weights and momentum stay
    assert watch.after_epoch == [(True, True), (True, True), (False, False)]


def test_only_the_active_branch_runs_and_trains():
    trainer = make_trainer(mie_toy({"mixup_alpha": 0.0}))
    before = {m: [p.detach().clone() for p in trainer.model.modality_params(m)] for m in ("a", "b")}
    _, (state,) = run_steps(trainer, 1)
    assert state.active_modalities == ("a",) and not state.output.present[:, 1].any()
    assert torch.count_nonzero(state.output.features["b"]) == 0  # b's encoder never ran
    assert any(not torch.equal(p, q) for p, q in zip(before["a"], trainer.model.modality_params("a")))
    assert all(torch.equal(p, q) for p, q in zip(before["b"], trainer.model.modality_params("b")))


def test_paper_mode_warns_and_its_flat_term_is_the_unperturbed_loss(caplog):
    with caplog.at_level(logging.WARNING, logger="mmcore_mie"):
        trainer = make_trainer(mie_toy({"mixup_alpha": 0.0}))
    assert "below float32 resolution" in caplog.text
    _, (state,) = run_steps(trainer, 1)
    assert float(state.metrics["balancer/mie/perturbed_fraction"]) == 0.0  # rho = 1e-10 moves no weight
    logits = state.output.fusion.unimodal_logits["a"]
    ce = state.task_loss(logits, state.batch.label)
    assert torch.allclose(state.losses["task"], 0.7 * ce) and torch.allclose(state.losses["mie/flat"], 0.3 * ce)


def test_head_only_mode_evaluates_the_flat_term_at_the_perturbed_head():
    trainer = make_trainer(mie_toy({"sam_mode": "head_only", "mixup_alpha": 0.0}))
    head = copy.deepcopy(trainer.model.heads["a"])
    _, (state,) = run_steps(trainer, 1)
    z = state.output.features["a"]
    loss = state.task_loss(head(z), state.batch.label)
    grads = torch.autograd.grad(loss, list(head.parameters()))
    norm = torch.linalg.vector_norm(torch.stack([g.norm() for g in grads]))
    with torch.no_grad():
        for p, g in zip(head.parameters(), grads):
            p.add_(0.05 * g / norm)  # the global-norm ascent step of paper Eq. 3
    expected = 0.3 * state.task_loss(head(z), state.batch.label)
    assert torch.allclose(state.losses["mie/flat"], expected, atol=1e-6)
    assert float(state.metrics["balancer/mie/perturbed_fraction"]) > 0.5


def test_full_mode_owns_the_step_and_with_rho_zero_is_the_plain_objective():
    full, states = run_steps(mie_toy({"sam_mode": "full", "rho": 0.0}), 3)
    assert full.owner is full.balancers[0] and len(states[0].pass_outputs) == 2
    plain, _ = run_steps(mie_toy({"flat_ratio": 0.0}), 3)
    assert plain.owner is None
    for p, q in zip(full.model.parameters(), plain.model.parameters()):
        assert torch.allclose(p, q, atol=1e-6)


def test_full_mode_perturbs_only_the_active_branch_and_restores_it():
    seen = []

    class Watch:
        @mmcore.hookimpl
        def mmcore_after_backward(self, trainer, state):
            seen.append({n: p.detach().clone() for n, p in trainer.model.named_parameters()})

        @mmcore.hookimpl
        def mmcore_before_optimizer_step(self, trainer, state):
            seen.append({n: p.detach().clone() for n, p in trainer.model.named_parameters()})

    trainer = make_trainer(mie_toy({"sam_mode": "full"}), modules=[Watch()])
    run_steps(trainer, 1)
    first, second, at_step = seen
    active = {n for n, p in trainer.model.named_parameters() if any(p is q for q in trainer.model.modality_params("a"))}
    moved = {n for n in first if not torch.equal(first[n], second[n])}
    assert moved and moved <= active
    assert all(torch.equal(first[n], at_step[n]) for n in first)


def test_seeded_runs_repeat_across_a_stage_switch():
    runs = []
    for _ in range(2):
        trainer = make_trainer(mie_toy({"epoch_list": [1], "mixup_alpha": 0.4}, run={"epochs": 2, **QUICK_FIT}))
        trainer.fit()
        runs.append(trainer)
    for p, q in zip(runs[0].model.parameters(), runs[1].model.parameters()):
        assert torch.equal(p, q)
    assert all(torch.equal(s, t) for s, t in zip(runs[0].balancers[0].matrices, runs[1].balancers[0].matrices))


@pytest.mark.parametrize("check", [*contract_checks("balancer", {"kind": "mie"}, config=toy_config(fusion=LATE)),
                                   *contract_checks("balancer", {"kind": "mie", "sam_mode": "full"},
                                                    config=toy_config(fusion=LATE))], ids=check_id)
def test_contract(check):
    check()
