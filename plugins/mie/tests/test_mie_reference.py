"""Reference tests: MIE's formulas (T, covariance, schedule, mixup, flat term) on hand-computed inputs."""
import math

import pytest
import torch

import mmcore
from mmcore.testing import make_trainer, run_steps, toy_config
from mmcore_mie.flat import head_ascent
from mmcore_mie.mixup import beta_sample, mixed_batch
from mmcore_mie.modification import head_linears, input_covariances, modification_matrix
from mmcore_mie.schedule import StageSchedule

LATE = {"kind": "late", "hidden": [16, 8]}
PLAIN_SGD = {"kind": "sgd", "lr": 0.1, "momentum": 0.0}
QUICK_FIT = {"probe": False, "value_every_epoch": False}  # fit() without end-of-run probes or epoch valuation


def mie_toy(table, **tables):
    tables.setdefault("optimizer", PLAIN_SGD)
    return toy_config(balancers=[{"kind": "mie", **table}], fusion=LATE, **tables)


def test_t_is_symmetric_with_eigenvalues_between_exp_minus_tau_and_one():
    tau = 0.4
    means = torch.randn(7, 5, generator=torch.Generator().manual_seed(0)) + 1.0
    covariance = sum(torch.outer(z, z) for z in means)  # Eq. 5: sum of batch-mean outer products
    t = modification_matrix(covariance, tau)
    assert torch.allclose(t, t.T, atol=1e-12)
    eigenvalues = torch.linalg.eigvalsh(t)
    assert eigenvalues.min() >= math.exp(-tau) - 1e-9 and eigenvalues.max() <= 1 + 1e-9
    lam, vectors = torch.linalg.eigh(covariance.double())
    top, bottom = vectors[:, -1], vectors[:, 0]
    assert torch.allclose(t @ top, math.exp(-tau) * top, atol=1e-9)  # the top direction damped by e^-tau
    assert torch.allclose(t @ bottom, bottom, atol=1e-9)  # the least-used direction untouched


def test_t_by_hand_on_a_diagonal_covariance():
    t = modification_matrix(torch.diag(torch.tensor([4.0, 1.0, 0.0])), tau=0.4)
    assert torch.allclose(t, torch.diag(torch.tensor([math.exp(-0.4), math.exp(-0.1), 1.0], dtype=torch.float64)))
    assert torch.equal(modification_matrix(torch.eye(3), tau=0.4), torch.eye(3, dtype=torch.float64))  # flat spectrum


def test_covariance_sums_the_outer_products_of_full_batch_means():
    trainer = make_trainer(mie_toy({}))
    control, model = trainer.control, trainer.model
    head = model.heads["a"]
    inputs = control.evaluate("train", lambda batch, m: model.encode(batch, active=("a",))["a"], batch_size=12)
    full = [x for x in inputs if x.shape[0] == 12]  # 64 rows: five full batches, the short one dropped
    assert len(full) == 5
    expected_first = sum(torch.outer(x.double().mean(0), x.double().mean(0)) for x in full)
    expected_second = sum(torch.outer(h.double().mean(0), h.double().mean(0))
                          for h in (head[1](head[0](x)) for x in full))  # Linear, ReLU -> Linear 2's input
    covariances = input_covariances(control, model, "a", batch_size=12)
    assert [c.shape[0] for c in covariances] == [layer.in_features for layer in head_linears(model, "a")]
    assert torch.allclose(covariances[0], expected_first) and torch.allclose(covariances[1], expected_second)


def test_stages_cycle_the_epoch_list_round_robin():
    schedule = StageSchedule.build((2, 3), ("a", "b", "c"), epochs=12)
    assert [schedule.modality(e) for e in range(12)] == list("aabbbccaaabb")
    assert [e for e in range(12) if schedule.switches_after(e)] == [1, 4, 6, 9]  # not after the last epoch
    default = StageSchedule.build((), ("a", "b"), epochs=10)  # two rounds of equal stages
    assert [default.modality(e) for e in range(10)] == list("aabbaabbaa")


def test_beta_draws_have_the_beta_moments():
    generator = torch.Generator().manual_seed(0)
    for alpha in (0.4, 1.0, 2.0):
        draws = torch.stack([beta_sample(alpha, generator, torch.device("cpu")) for _ in range(1500)])
        assert ((draws >= 0) & (draws <= 1)).all()  # float32 can round the heavy tails of a < 1 to 0 or 1
        assert abs(float(draws.mean()) - 0.5) < 0.03
        assert abs(float(draws.var()) - 1 / (4 * (2 * alpha + 1))) < 0.015


def test_mixup_mixes_only_the_active_modality():
    batch = mmcore.Batch(inputs={"a": torch.tensor([[1.0], [3.0]]), "b": torch.tensor([[5.0], [7.0]])},
                         present=torch.ones(2, 2, dtype=torch.bool), label=torch.tensor([0, 1]), index=torch.arange(2))
    mixed = mixed_batch(batch, "a", torch.tensor(0.25), torch.tensor([1, 0]))
    assert torch.equal(mixed.inputs["a"], torch.tensor([[0.25 * 1 + 0.75 * 3], [0.25 * 3 + 0.75 * 1]]))
    assert mixed.inputs["b"] is batch.inputs["b"]


def test_head_ascent_global_and_per_tensor_norms():
    grads = [torch.tensor([3.0, 0.0]), torch.tensor([4.0])]
    assert all(torch.allclose(e, g / 5.0 * 0.1) for e, g in zip(head_ascent(grads, 0.1, per_tensor=False), grads))
    per_tensor = head_ascent(grads, 0.1, per_tensor=True)
    assert torch.allclose(per_tensor[0], torch.tensor([0.1, 0.0]))
    assert torch.allclose(per_tensor[1], torch.tensor([0.1]))


class Capture:
    """Gradients at the first backward (raw) and at the optimizer step (after modification)."""

    def __init__(self):
        self.raw, self.final, self.epochs = [], [], []

    @mmcore.hookimpl
    def mmcore_after_backward(self, trainer, state):
        if state.pass_index == 0:
            self.raw.append([None if p.grad is None else p.grad.clone() for p in trainer.model.parameters()])
            self.epochs.append(state.epoch)

    @mmcore.hookimpl
    def mmcore_before_optimizer_step(self, trainer, state):
        self.final.append([None if p.grad is None else p.grad.clone() for p in trainer.model.parameters()])


def test_second_stage_gradients_are_right_multiplied_by_t_on_paired_head_weights():
    capture = Capture()
    trainer = make_trainer(mie_toy({"epoch_list": [1]}, run={"epochs": 2, **QUICK_FIT}), modules=[capture])
    trainer.fit()
    mie = trainer.balancers[0]
    assert mie.source == "a" and len(mie.matrices) == 3
    paired = {id(layer.weight): i for i, layer in enumerate(head_linears(trainer.model, "b"))}
    step = capture.epochs.index(1)  # the first step of stage 2 (modality b)
    for p, raw, final in zip(trainer.model.parameters(), capture.raw[step], capture.final[step]):
        if id(p) in paired:
            assert torch.allclose(final, raw @ mie.matrices[paired[id(p)]], atol=1e-6)
        elif raw is not None:
            assert torch.equal(final, raw)  # biases and the encoder: untouched
