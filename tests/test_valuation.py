"""Shapley valuation: the math against its definition, the valuator against a real model."""
from __future__ import annotations

import math
from itertools import permutations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mmcore.errors import ConfigError
from mmcore.interfaces import Encoder, Fusion
from mmcore.model import MultimodalModel
from mmcore.registry import BuildContext, ComponentRegistry
from mmcore.types import Batch, FusionOutput, StepState
from mmcore.valuation import naive_value_modalities, shapley, value_modalities
from mmcore.valuator import ShapleyValuatorConfig, build_shapley_valuator, register
from mmcore.value_functions import VALUE_FUNCTIONS, accuracy, logits, neg_loss, true_class_prob

NAMES = ("a", "b", "c", "d", "e")


# -- references -----------------------------------------------------------------------------------
def shapley_by_orderings(value_of, modalities, empty_value):
    """Average marginal contribution over all M! orderings: the definition itself."""
    totals = {m: 0 for m in modalities}
    orderings = list(permutations(modalities))
    for order in orderings:
        joined, previous = set(), empty_value
        for m in order:
            joined.add(m)
            current = value_of(tuple(x for x in modalities if x in joined))
            totals[m] = totals[m] + (current - previous)
            previous = current
    return {m: total / len(orderings) for m, total in totals.items()}


class RandomHead:
    """logits = W2·tanh(Σ_m A_m·x_m·1[m ∈ S] + b1) + b2 over M random feature blocks (float64)."""

    def __init__(self, num_modalities, batch=6, dim=3, hidden=5, classes=4, seed=0, ignore=()):
        g = torch.Generator().manual_seed(seed)
        self.modalities = NAMES[:num_modalities]
        self.x = {m: torch.randn(batch, dim, generator=g, dtype=torch.float64) for m in self.modalities}
        self.a = {m: torch.randn(dim, hidden, generator=g, dtype=torch.float64) for m in self.modalities}
        for m in ignore:
            self.a[m].zero_()
        self.b1 = torch.randn(hidden, generator=g, dtype=torch.float64)
        self.w2 = torch.randn(hidden, classes, generator=g, dtype=torch.float64)
        self.b2 = torch.randn(classes, generator=g, dtype=torch.float64)
        self.label = torch.randint(0, classes, (batch,), generator=g)
        self.calls = []

    def logits(self, coalition):
        self.calls.append(coalition)
        batch, hidden = self.x[self.modalities[0]].shape[0], self.b1.shape[0]
        pre = self.b1 + sum((self.x[m] @ self.a[m] for m in coalition), torch.zeros(batch, hidden, dtype=torch.float64))
        return torch.tanh(pre) @ self.w2 + self.b2

    def value(self, kind):
        def value_of(coalition):
            out = self.logits(coalition)
            if kind == "logits":
                return out
            prob = out.softmax(-1).gather(1, self.label.view(-1, 1)).view(-1)
            return prob.mean() if kind == "batch" else prob

        return value_of


# -- the math -------------------------------------------------------------------------------------
@pytest.mark.parametrize("num_modalities", [2, 3, 4, 5])
@pytest.mark.parametrize("kind", ["batch", "sample", "logits"])
def test_exact_equals_the_permutation_definition(num_modalities, kind):
    head = RandomHead(num_modalities, seed=num_modalities)
    result = shapley(head.value(kind), head.modalities)
    full = head.value(kind)(head.modalities)
    reference = shapley_by_orderings(head.value(kind), head.modalities, torch.zeros_like(full))
    expected_shape = {"batch": (num_modalities,), "sample": (6, num_modalities), "logits": (num_modalities, 6, 4)}
    assert tuple(result.values.shape) == expected_shape[kind]
    for m in head.modalities:
        torch.testing.assert_close(result.of(m), reference[m], rtol=0, atol=1e-12)
    member_axis = 1 if kind == "sample" else 0
    torch.testing.assert_close(result.values.sum(member_axis), full, rtol=0, atol=1e-12)  # efficiency


def test_each_coalition_evaluated_once_and_empty_only_when_asked():
    head = RandomHead(4)
    result = shapley(head.value("batch"), head.modalities, empty="zero")
    assert len(head.calls) == 15 and len(set(head.calls)) == 15 and () not in head.calls
    assert set(result.coalitions) == set(head.calls)
    assert all(c == tuple(m for m in head.modalities if m in c) for c in head.calls)  # modality order
    head.calls.clear()
    shapley(head.value("batch"), head.modalities, empty="evaluate")
    assert len(head.calls) == 16 and () in head.calls


@pytest.mark.parametrize("kind", ["batch", "sample", "logits"])
def test_empty_evaluate_subtracts_an_equal_share_of_the_empty_value(kind):
    head = RandomHead(3, seed=7)
    value_of = head.value(kind)
    zero = shapley(value_of, head.modalities, empty="zero")
    evaluated = shapley(value_of, head.modalities, empty="evaluate")
    empty_value = value_of(())
    reference = shapley_by_orderings(value_of, head.modalities, empty_value)
    for m in head.modalities:
        torch.testing.assert_close(evaluated.of(m), reference[m], rtol=0, atol=1e-12)
        torch.testing.assert_close(evaluated.of(m), zero.of(m) - empty_value / 3, rtol=0, atol=1e-12)
    member_axis = 1 if kind == "sample" else 0
    full = value_of(head.modalities)
    torch.testing.assert_close(evaluated.values.sum(member_axis), full - empty_value, rtol=0, atol=1e-12)


def test_two_modality_closed_form():
    table = {("a",): 0.3, ("b",): 0.5, ("a", "b"): 0.9}
    result = shapley(lambda c: torch.tensor(table[c], dtype=torch.float64), ("a", "b"))
    # φ_a = ½[v(ab) + v(a) − v(b)] = ½[0.9 + 0.3 − 0.5]; φ_b = ½[0.9 + 0.5 − 0.3]
    torch.testing.assert_close(result.values, torch.tensor([0.35, 0.55], dtype=torch.float64), rtol=0, atol=1e-15)


def test_symmetric_modalities_share_equally_and_an_ignored_one_gets_nothing():
    head = RandomHead(4, seed=3, ignore=("d",))
    head.x["b"], head.a["b"] = head.x["a"].clone(), head.a["a"].clone()
    for method in ("exact", "permutation"):
        draws = torch.Generator().manual_seed(0)
        result = shapley(head.value("sample"), head.modalities, empty="evaluate", method=method, generator=draws)
        if method == "exact":  # sampled orderings favour neither on average, but not per draw
            torch.testing.assert_close(result.of("a"), result.of("b"), rtol=0, atol=1e-12)
        # v(S ∪ d) == v(S) for every S, so φ_d is zero up to float64 rounding of the weighted sum
        torch.testing.assert_close(result.of("d"), torch.zeros(6, dtype=torch.float64), rtol=0, atol=1e-15)
        assert torch.count_nonzero(result.of("a")) > 0
    # With v(∅) := 0 the ignored modality is no null player: it takes a 1/M share of the head's
    # output with nothing present, v({d}) − 0 = head(∅).
    zero = shapley(head.value("sample"), head.modalities, empty="zero")
    torch.testing.assert_close(zero.of("d"), head.value("sample")(()) / 4, rtol=0, atol=1e-12)


def test_values_keep_the_graph_when_value_of_has_one():
    weight = torch.tensor([0.7, -1.3], dtype=torch.float64, requires_grad=True)
    v = {("a",): lambda: weight[0] ** 2, ("b",): lambda: weight[1], ("a", "b"): lambda: weight[0] * weight[1]}
    result = shapley(lambda c: v[c](), ("a", "b"))
    result.of("a").backward()
    # φ_a = ½[w0·w1 + w0² − w1] → ∂/∂w0 = ½[w1 + 2·w0], ∂/∂w1 = ½[w0 − 1]
    expected = torch.tensor([0.5 * (-1.3 + 1.4), 0.5 * (0.7 - 1.0)], dtype=torch.float64)
    torch.testing.assert_close(weight.grad, expected, rtol=0, atol=1e-15)


# -- Monte-Carlo permutation sampling -------------------------------------------------------------
def test_permutation_is_exact_on_an_additive_game_and_reproducible():
    worth = {"a": 0.25, "b": -1.5, "c": 2.0, "d": 0.125, "e": 3.0}
    additive = lambda c: torch.tensor(sum(worth[m] for m in c), dtype=torch.float64)  # noqa: E731
    first = shapley(additive, NAMES, method="permutation", samples=3, generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(first.values, torch.tensor([worth[m] for m in NAMES], dtype=torch.float64))
    head = RandomHead(5, seed=11)
    runs = [
        shapley(head.value("sample"), NAMES, method="permutation", samples=7, generator=torch.Generator().manual_seed(9))
        for _ in range(2)
    ]
    torch.testing.assert_close(runs[0].values, runs[1].values, rtol=0, atol=0)
    assert runs[0].coalitions.keys() == runs[1].coalitions.keys()


def test_permutation_converges_to_exact_and_is_efficient():
    head = RandomHead(4, seed=2)
    value_of = head.value("batch")
    exact = shapley(value_of, head.modalities)
    samples = 2000
    head.calls.clear()
    estimate = shapley(value_of, head.modalities, method="permutation", samples=samples, generator=torch.Generator().manual_seed(1))
    assert len(head.calls) == len(set(head.calls)) <= 15  # each distinct coalition once
    torch.testing.assert_close(estimate.values.sum(), value_of(head.modalities), rtol=0, atol=1e-12)
    # Tolerance: 5 standard errors of the mean marginal contribution over all 24 orderings.
    for m in head.modalities:
        contributions = []
        for order in permutations(head.modalities):
            before = order[: order.index(m)]
            with_m = tuple(x for x in head.modalities if x in before or x == m)
            without = tuple(x for x in head.modalities if x in before)
            contributions.append(value_of(with_m) - (value_of(without) if without else 0.0))
        sigma = torch.stack(contributions).std(unbiased=False)
        assert abs(estimate.of(m) - exact.of(m)) <= 5 * sigma / math.sqrt(samples)


# -- value functions ------------------------------------------------------------------------------
def ce_loss(out, y, reduction="mean"):
    return F.cross_entropy(out, y, reduction=reduction)


def test_builtin_value_functions_on_hand_computed_inputs():
    out = torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, 3.0]])
    y = torch.tensor([0, 1])
    kw = dict(coalition=("a",), task_loss=ce_loss)
    assert accuracy(out, y, **kw).tolist() == [1.0, 0.0]
    p0 = math.exp(2) / (math.exp(2) + 2)
    p1 = math.exp(1) / (1 + math.exp(1) + math.exp(3))
    torch.testing.assert_close(true_class_prob(out, y, **kw), torch.tensor([p0, p1]))
    torch.testing.assert_close(neg_loss(out, y, **kw), torch.tensor([math.log(p0), math.log(p1)]))
    assert logits(out, y, **kw) is out
    single = torch.tensor([[1.5], [-0.5], [0.2]])
    binary = torch.tensor([1.0, 1.0, 0.0])
    assert accuracy(single, binary, **kw).tolist() == [1.0, 0.0, 0.0]
    s = torch.sigmoid(torch.tensor([1.5, -0.5, 0.2]))
    torch.testing.assert_close(true_class_prob(single, binary, **kw), torch.stack([s[0], s[1], 1 - s[2]]))
    regression_pred, regression_y = torch.tensor([0.4, -2.0, 1.0]), torch.tensor([1.2, -0.1, -3.0])
    assert accuracy(regression_pred, regression_y, **kw).tolist() == [1.0, 1.0, 0.0]


def test_register_adds_value_functions_and_the_kind():
    registry = ComponentRegistry()
    register(registry)
    assert registry.value_functions() == sorted(VALUE_FUNCTIONS)
    assert registry.get("valuator", "shapley").config_cls is ShapleyValuatorConfig
    with pytest.raises(ConfigError, match="unknown value function 'nope'.*accuracy"):
        build_shapley_valuator(ShapleyValuatorConfig(value="nope"), BuildContext(modalities=("a",), registry=registry))


# -- the valuator on a real model -----------------------------------------------------------------
class CountingEncoder(Encoder):
    def __init__(self, in_dim, out_dim):
        super().__init__()
        self.out_dim = out_dim
        self.linear = nn.Linear(in_dim, out_dim)
        self.calls = 0

    def forward(self, x, mask=None):
        self.calls += 1
        return torch.tanh(self.linear(x))


class NormHeadFusion(Fusion):
    """concat → BatchNorm → dropout → MLP: train-mode side effects a probe must not have."""

    def __init__(self, modalities, dim, classes):
        super().__init__()
        self.modalities = tuple(modalities)
        self.norm = nn.BatchNorm1d(dim * len(modalities))
        self.dropout = nn.Dropout(0.5)
        self.head = nn.Sequential(nn.Linear(dim * len(modalities), 8), nn.Tanh(), nn.Linear(8, classes))
        self.calls = 0

    def forward(self, features, present, masks=None, labels=None, probe=False):
        self.calls += 1
        return FusionOutput(logits=self.head(self.dropout(self.norm(torch.cat([features[m] for m in self.modalities], 1)))))


def make_model(num_modalities, seed=0, batch=10, classes=3):
    torch.manual_seed(seed)
    names = NAMES[:num_modalities]
    model = MultimodalModel({m: CountingEncoder(4, 3) for m in names}, NormHeadFusion(names, 3, classes), names)
    g = torch.Generator().manual_seed(seed + 100)
    present = torch.ones(batch, num_modalities, dtype=torch.bool)
    present[0, 0] = False  # sample 0 lacks the first modality
    data = Batch(
        inputs={m: torch.randn(batch, 4, generator=g) for m in names},
        present=present,
        label=torch.randint(0, classes, (batch,), generator=g),
        index=torch.arange(batch),
    )
    return model, data


def make_state(model, data):
    state = StepState(batch=data, model=model, control=None, task_loss=ce_loss, generator=lambda name, shared=False: None)
    state.output = model(data)  # pass 0, in train mode (BN statistics update here, as in the step)
    return state


def snapshot(model):
    return {k: v.clone() for k, v in model.state_dict().items()}, [m.training for m in model.modules()]


def test_valuator_probes_only_the_head_and_leaves_the_model_untouched():
    model, data = make_model(3)
    model.fusion.head[2].eval()  # a mixed tree must come back mixed
    state = make_state(model, data)
    before, flags = snapshot(model)
    for part in [*model.encoders.values(), model.fusion]:
        part.calls = 0
    valuator = build_shapley_valuator(ShapleyValuatorConfig(per="sample"), BuildContext(modalities=model.modalities))
    result = valuator.value(state)
    assert model.fusion.calls == 1 and all(e.calls == 0 for e in model.encoders.values())  # 7 coalitions, one call
    one_per_coalition = ShapleyValuatorConfig(value="true_class_prob", per="sample", empty="evaluate", batch_coalitions=False)
    evaluated = build_shapley_valuator(one_per_coalition, BuildContext(modalities=model.modalities)).value(state)
    assert model.fusion.calls == 1 + 8 and all(e.calls == 0 for e in model.encoders.values())
    after, flags_after = snapshot(model)
    assert flags_after == flags
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert not result.values.requires_grad and result.values.shape == (10, 3)
    # sample 0 lacks "a": a null player there (zero up to float32 rounding), unlike the others
    torch.testing.assert_close(evaluated.values[0, 0], torch.tensor(0.0), rtol=0, atol=1e-7)
    assert evaluated.values[1:, 0].abs().min() > 1e-4
    torch.testing.assert_close(result.values.sum(1), result.coalitions[model.modalities])  # efficiency per sample


def test_valuator_values_match_eval_mode_brute_force_and_the_naive_baseline():
    model, data = make_model(3, seed=4)
    state = make_state(model, data)
    features = {m: f.detach() for m, f in state.output.features.items()}
    model.eval()

    def value_of(coalition):  # the definition, on eval-mode head outputs
        with torch.no_grad():
            out = model.fuse(features, model.coalition_presence(data.present, coalition), probe=True).logits
        return true_class_prob(out, data.label, coalition=coalition, task_loss=ce_loss).mean()

    reference = shapley_by_orderings(value_of, model.modalities, torch.tensor(0.0))
    model.train()
    result = build_shapley_valuator(
        ShapleyValuatorConfig(value="true_class_prob"), BuildContext(modalities=model.modalities)
    ).value(state)
    for m in model.modalities:
        torch.testing.assert_close(result.of(m), reference[m], rtol=0, atol=1e-6)
    # The naive baseline re-encodes per coalition; in eval mode it sees the same features.
    model.eval()
    with torch.no_grad():
        eval_features = model.encode(data)
    cached = value_modalities(model, eval_features, data.present, {}, data.label, true_class_prob, ce_loss)
    for part in model.encoders.values():
        part.calls = 0
    naive = naive_value_modalities(model, data, true_class_prob, ce_loss)
    torch.testing.assert_close(naive.values, cached.values, rtol=0, atol=1e-6)
    assert [e.calls for e in model.encoders.values()] == [4, 4, 4]  # each modality in 4 of 7 coalitions


def size_times_correct(out, label, *, coalition, task_loss):
    """v(S) = |S|·1[correct], the sample-level valuation paper's game (fair share = 1)."""
    return len(coalition) * (out.argmax(-1) == label).float()


def test_a_plugin_value_function_is_registered_and_used():
    registry = ComponentRegistry()
    register(registry)
    registry.current_distribution = "mmcore-valuation-plugin"
    registry.value_function("size_times_correct", size_times_correct)
    model, data = make_model(2, seed=6, batch=32)
    state = make_state(model, data)
    ctx = BuildContext(modalities=model.modalities, registry=registry)
    result = build_shapley_valuator(ShapleyValuatorConfig(value="size_times_correct", per="sample"), ctx).value(state)
    correct = {c: (v > 0).float() for c, v in result.coalitions.items()}
    # φ_a(i) = ½(1[a✓] − 1[b✓]) + 1[ab✓]
    torch.testing.assert_close(result.of("a"), 0.5 * (correct[("a",)] - correct[("b",)]) + correct[("a", "b")])
    assert torch.equal(result.values.sum(1), 2 * correct[("a", "b")])


def test_permutation_valuator_resumes_its_draws():
    model, data = make_model(5, seed=8)
    state = make_state(model, data)
    config = ShapleyValuatorConfig(value="true_class_prob", samples=3, seed=4)
    valuator = build_shapley_valuator(config, BuildContext(modalities=model.modalities))
    assert valuator.method == "permutation"  # auto, M = 5
    valuator.value(state)
    saved = valuator.state_dict()
    assert saved["generator"].dtype == torch.uint8
    second = valuator.value(state)
    resumed = build_shapley_valuator(config, BuildContext(modalities=model.modalities))
    resumed.load_state_dict(saved)
    again = resumed.value(state)
    assert second.coalitions.keys() == again.coalitions.keys()
    torch.testing.assert_close(second.values, again.values, rtol=0, atol=0)


# -- one fuse call for every coalition ------------------------------------------------------------
def assert_same_valuation(batched, one_per_coalition, exact=False):
    """Equal up to float32 rounding: a GEMM may round a row differently depending on where it falls
    in the kernel's row tiles, so stacking can move a logit by an ulp. 0/1 scores match exactly."""
    assert batched.coalitions.keys() == one_per_coalition.coalitions.keys()
    pairs = [(batched.values, one_per_coalition.values)]
    pairs += [(batched.coalitions[c], one_per_coalition.coalitions[c]) for c in one_per_coalition.coalitions]
    for got, expected in pairs:
        if exact:
            assert torch.equal(got, expected)
        else:
            torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-7)


def toy_features(fusion_kind, num_modalities=3, seed=0):
    """A toy trainer's model (3 modalities; ragged sequences for attention) after one forward in
    train mode, as pass 0 leaves it, with one sample missing a modality."""
    from mmcore.plugins import PluginHost
    from mmcore.testing.toy import make_trainer, toy_config

    names = NAMES[:num_modalities]
    sequence = 5 if fusion_kind == "cross_attention" else 0
    data = {"ragged": True, "batch_size": 12} if sequence else {"batch_size": 12}
    config = toy_config(names, sequence=sequence, fusion={"kind": fusion_kind}, data=data, run={"seed": seed})
    trainer = make_trainer(config, host=PluginHost(autoload=False))  # built-in kinds only
    batch = next(iter(trainer.evaluator.train_loader(0, None)))
    batch = batch.replace(present=batch.present.clone().index_put_((torch.tensor([0]), torch.tensor([1])), torch.tensor(False)))
    trainer.model.train()
    output = trainer.model(batch)
    return trainer, batch, output


@pytest.mark.parametrize("fusion_kind", ["concat", "sum", "film", "gated", "late", "cross_attention"])
def test_batched_coalitions_equal_one_probe_per_coalition(fusion_kind):
    # attention runs a block per modality pair: two modalities keep it quick on a busy CPU
    trainer, batch, output = toy_features(fusion_kind, num_modalities=2 if fusion_kind == "cross_attention" else 3)
    model = trainer.model
    before, flags = snapshot(model)
    games = [(accuracy, "batch", "zero"), (true_class_prob, "sample", "evaluate"), (neg_loss, "batch", "evaluate"),
             (logits, "batch", "zero"), (size_times_correct, "sample", "evaluate")]  # the last: one call per coalition
    for value_fn, per, empty in games:
        results = [
            value_modalities(model, output.features, output.present, batch.masks, batch.label, value_fn,
                             trainer.task_loss, per=per, empty=empty, batch_coalitions=batched)
            for batched in (True, False)
        ]
        assert_same_valuation(*results, exact=value_fn in (accuracy, size_times_correct))
    after, flags_after = snapshot(model)
    assert flags_after == flags and all(torch.equal(before[k], after[k]) for k in before)


def test_batched_permutation_sampling_evaluates_the_union_of_sampled_coalitions():
    model, data = make_model(5, seed=3)
    state = make_state(model, data)
    out = state.output
    results = []
    for batched in (True, False):
        model.fusion.calls = 0
        draws = torch.Generator().manual_seed(12)
        results.append(value_modalities(model, out.features, out.present, {}, data.label, true_class_prob, ce_loss,
                                        per="sample", method="permutation", samples=4, generator=draws,
                                        batch_coalitions=batched))
        assert model.fusion.calls == (1 if batched else len(results[-1].coalitions))
    assert 5 <= len(results[0].coalitions) < 31  # 4 orderings meet fewer than all 31 coalitions
    assert_same_valuation(*results)
