"""Built-in fusions: hand-computed references, presence handling, probes, attention records, gradients."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mmcore.builtin import attention, encoders, fusions, late, resnet
from mmcore.builtin.attention import AttentionBlock, masked_softmax
from mmcore.builtin.fusions import pool_steps, vector_features
from mmcore.errors import ConfigError
from mmcore.model import MultimodalModel
from mmcore.registry import BuildContext, ComponentRegistry
from mmcore.types import Batch

KINDS = ["concat", "sum", "film", "gated", "late", "cross_attention"]
MODALITIES = ("a", "b", "c")
DIMS = {"a": 6, "b": 4, "c": 5}
CLASSES = 3


def registry() -> ComponentRegistry:
    reg = ComponentRegistry()
    for module in (encoders, resnet, fusions, late, attention):
        module.register(reg)
    return reg


def build_fusion(kind, modalities=MODALITIES, sequence=None, num_outputs=CLASSES, task="classification", **config):
    spec = registry().get("fusion", kind)
    ctx = BuildContext(
        modalities=modalities,
        task=task,
        num_outputs=num_outputs,
        feature_dims={m: DIMS[m] for m in modalities},
        feature_sequence=sequence or {m: False for m in modalities},
    )
    return spec.build(spec.config_cls(**config), ctx)


def vectors(batch=4, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return {m: torch.randn(batch, DIMS[m], generator=generator) for m in MODALITIES}


def mixed_features(batch=4):
    """'a' as a padded sequence [B, 5, 6] (with mask), 'b' and 'c' as vectors."""
    features = vectors(batch)
    features["a"] = torch.randn(batch, 5, DIMS["a"], generator=torch.Generator().manual_seed(1))
    mask = torch.arange(5).expand(batch, 5) < torch.tensor([5, 3, 1, 4][:batch]).unsqueeze(1)
    return features, {"a": mask}


def all_present(batch=4):
    return torch.ones(batch, len(MODALITIES), dtype=torch.bool)


def test_registration_declares_capabilities():
    specs = {spec.kind: spec for spec in registry().specs("fusion")}
    assert set(specs) == set(KINDS)
    assert specs["concat"].provides == {"unimodal_logits"}
    assert specs["sum"].provides == specs["late"].provides == {"unimodal_logits", "per_modality_heads"}
    assert specs["cross_attention"].provides == {"attention"}
    assert specs["film"].provides == specs["gated"].provides == frozenset()
    for kind, spec in specs.items():
        assert build_fusion(kind).provides == spec.provides and spec.help


@pytest.mark.parametrize("kind", KINDS)
def test_shapes_on_mixed_sequence_and_vector_features(kind):
    torch.manual_seed(0)
    fusion = build_fusion(kind, sequence={"a": True, "b": False, "c": False})
    features, masks = mixed_features()
    out = fusion(features, all_present(), masks=masks)
    assert out.logits.shape == (4, CLASSES)
    assert out.predictor is not None and out.fused is not None and out.aux_losses == {}
    torch.testing.assert_close(out.predictor(out.fused), out.logits)
    if "unimodal_logits" in fusion.provides:
        assert {m: t.shape for m, t in out.unimodal_logits.items()} == {m: (4, CLASSES) for m in MODALITIES}


def test_sequence_features_are_pooled_over_real_steps():
    x = torch.arange(12.0).view(2, 3, 2)
    mask = torch.tensor([[True, True, False], [False, False, False]])
    torch.testing.assert_close(pool_steps(x, mask), torch.tensor([[1.0, 2.0], [0.0, 0.0]]))
    torch.testing.assert_close(pool_steps(x, None), x.mean(dim=1))
    features, masks = mixed_features()
    pooled = vector_features(features, MODALITIES, masks)
    torch.testing.assert_close(pooled[0][1], features["a"][1, :3].mean(dim=0))
    assert pooled[1] is features["b"]


def test_concat_decomposes_exactly_into_weight_slices():
    torch.manual_seed(0)
    fusion = build_fusion("concat")
    z = vectors()
    out = fusion(z, all_present())
    assert torch.equal(sum(out.unimodal_logits.values()), out.logits)
    w, b = fusion.head.weight, fusion.head.bias
    torch.testing.assert_close(out.unimodal_logits["a"], z["a"] @ w[:, :6].T + b / 3)
    torch.testing.assert_close(out.unimodal_logits["b"], z["b"] @ w[:, 6:10].T + b / 3)
    torch.testing.assert_close(out.unimodal_logits["c"], z["c"] @ w[:, 10:].T + b / 3)
    torch.testing.assert_close(out.logits, torch.cat([z["a"], z["b"], z["c"]], 1) @ w.T + b)
    assert out.predictor is fusion.head


def test_sum_adds_per_modality_heads():
    torch.manual_seed(0)
    fusion = build_fusion("sum")
    z = vectors()
    out = fusion(z, all_present())
    heads = fusion.heads
    assert list(heads) == list(MODALITIES) and fusion.modality_modules("b") == [heads["b"]]
    for m in MODALITIES:
        torch.testing.assert_close(out.unimodal_logits[m], z[m] @ heads[m].weight.T + heads[m].bias)
    assert torch.equal(out.logits, sum(out.unimodal_logits.values()))


def test_film_modulates_the_other_modalities_with_the_condition():
    torch.manual_seed(0)
    fusion = build_fusion("film", condition="b", dim=7)
    z = vectors()
    out = fusion(z, all_present())
    gamma_beta = z["b"] @ fusion.film.weight.T + fusion.film.bias
    gamma, beta = gamma_beta[:, :7], gamma_beta[:, 7:]
    summed = z["a"] @ fusion.projections["a"].weight.T + z["c"] @ fusion.projections["c"].weight.T
    fused = gamma * summed + beta
    torch.testing.assert_close(out.fused, fused)
    torch.testing.assert_close(out.logits, fused @ fusion.head.weight.T + fusion.head.bias)
    assert build_fusion("film").condition == "a" and build_fusion("film").dim == 6


def test_film_rejects_an_unknown_condition():
    with pytest.raises(ConfigError, match=r"\$\.fusion\.condition"):
        build_fusion("film", condition="x")


def test_gated_sums_gated_projections_of_present_modalities_only():
    torch.manual_seed(0)
    fusion = build_fusion("gated", dim=8)
    z = vectors()
    present = torch.tensor([[True, True, True], [True, False, True], [False, False, True], [True, True, False]])
    out = fusion(z, present)
    expected = torch.zeros(4, 8)
    for i, m in enumerate(MODALITIES):
        gate = torch.sigmoid(z[m] @ fusion.gates[m].weight.T + fusion.gates[m].bias)
        projected = z[m] @ fusion.projections[m].weight.T + fusion.projections[m].bias
        expected += present[:, i : i + 1].float() * gate * projected
    torch.testing.assert_close(out.fused, expected)
    torch.testing.assert_close(out.logits, expected @ fusion.head.weight.T + fusion.head.bias)


def test_late_average_combines_probabilities_of_present_heads_only():
    torch.manual_seed(0)
    fusion = build_fusion("late")
    z = vectors()
    present = torch.tensor([[True, True, True], [True, False, True], [False, True, False], [False, False, False]])
    out = fusion(z, present)
    p = {m: torch.softmax(out.unimodal_logits[m], dim=-1) for m in MODALITIES}
    expected = torch.stack(
        [
            (p["a"][0] + p["b"][0] + p["c"][0]) / 3,
            (p["a"][1] + p["c"][1]) / 2,
            p["b"][2],
            (p["a"][3] + p["b"][3] + p["c"][3]) / 3,  # nothing present: every head on zeroed features
        ]
    )
    torch.testing.assert_close(out.logits.exp(), expected)
    labels = torch.tensor([0, 1, 2, 1])
    nll = -expected[torch.arange(4), labels].log().mean()
    torch.testing.assert_close(F.cross_entropy(out.logits, labels), nll)
    assert fusion.modality_modules("c") == [fusion.heads["c"]]


def test_late_weighted_uses_softmax_weights_renormalised_over_present():
    torch.manual_seed(0)
    fusion = build_fusion("late", mode="weighted", hidden=[5])
    with torch.no_grad():
        fusion.weight_logits.copy_(torch.tensor([0.0, 1.0, 2.0]))
    z = vectors()
    present = torch.tensor([[True, True, True], [True, False, True], [False, True, False], [True, True, True]])
    out = fusion(z, present)
    p = torch.stack([torch.softmax(out.unimodal_logits[m], dim=-1) for m in MODALITIES], dim=1)
    e = torch.tensor([1.0, torch.e, torch.e**2])
    without_b = torch.tensor([1.0, 0.0, torch.e**2]) / (1 + torch.e**2)
    w = torch.stack([e / e.sum(), without_b, torch.tensor([0.0, 1.0, 0.0]), e / e.sum()])
    torch.testing.assert_close(out.logits.exp(), (w.unsqueeze(-1) * p).sum(dim=1))
    assert isinstance(fusion.weight_logits, torch.nn.Parameter)


def test_late_regression_averages_raw_outputs_over_present():
    torch.manual_seed(0)
    fusion = build_fusion("late", num_outputs=1, task="regression")
    z = vectors()
    present = torch.tensor([[True, True, True], [True, False, True], [False, True, False], [False, False, False]])
    out = fusion(z, present)
    u = torch.cat([out.unimodal_logits[m] for m in MODALITIES], dim=1)
    expected = torch.stack([u[0].mean(), (u[1, 0] + u[1, 2]) / 2, u[2, 1], u[3].mean()]).unsqueeze(1)
    torch.testing.assert_close(out.logits, expected)


@pytest.mark.parametrize("kind", KINDS)
def test_probe_is_side_effect_free(kind):
    torch.manual_seed(0)
    fusion = build_fusion(kind, **({"mode": "weighted"} if kind == "late" else {})).train()
    before = {k: t.clone() for k, t in fusion.state_dict().items()}
    buffers = {k: t.clone() for k, t in fusion.named_buffers()}
    out = fusion(vectors(), all_present(), probe=True)
    assert out.aux_losses == {}
    after = fusion.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert all(torch.equal(buffers[k], t) for k, t in fusion.named_buffers())


@pytest.mark.parametrize("kind", KINDS)
def test_every_modality_absent_gives_finite_logits_and_gradients(kind):
    torch.manual_seed(0)
    model = toy_model(kind)
    batch = toy_batch()
    batch = batch.replace(present=torch.tensor([[False, False, False], [True, True, False], [True, True, True]]))
    out = model(batch)
    assert torch.isfinite(out.logits).all()
    F.cross_entropy(out.logits, batch.label).backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def toy_model(kind, sequences=("a",)):
    """A sequence encoder for the modalities in `sequences`, mlp encoders for the rest (b: 7, c: 2x2
    inputs), and the fusion `kind`."""
    reg = registry()
    shapes = {"a": (5, 3), "b": (6, 7) if "b" in sequences else (7,), "c": (4, 2) if "c" in sequences else (2, 2)}
    is_sequence = {m: m in sequences for m in MODALITIES}
    ctx = BuildContext(modalities=MODALITIES, num_outputs=CLASSES, input_shapes=shapes, sequence=is_sequence)
    built = {}
    small_sequence = {"d_model": 8, "heads": 2, "layers": 1}
    for m, hidden in [("a", 4), ("b", 6), ("c", 5)]:
        kind_m, config = ("sequence", small_sequence) if m in sequences else ("mlp", {"hidden": [hidden]})
        spec = reg.get("encoder", kind_m)
        ctx.modality = m
        built[m] = spec.build(spec.config_cls(**config), ctx)
    ctx.feature_dims = {m: e.out_dim for m, e in built.items()}
    ctx.feature_sequence = {m: e.sequence for m, e in built.items()}
    spec = reg.get("fusion", kind)
    return MultimodalModel(built, spec.build(spec.config_cls(), ctx), MODALITIES)


def toy_batch(sequences=("a",)):
    generator = torch.Generator().manual_seed(3)

    def steps(lengths, total):  # bool [3, total], True on the first `length` steps
        return torch.arange(total) < torch.tensor(lengths).unsqueeze(1)

    inputs = {"a": torch.randn(3, 5, 3, generator=generator), "b": torch.randn(3, 7, generator=generator)}
    inputs["c"] = torch.randn(3, 2, 2, generator=generator)
    masks = {"a": steps([5, 2, 4], 5)}
    if "b" in sequences:
        inputs["b"], masks["b"] = torch.randn(3, 6, 7, generator=generator), steps([6, 3, 6], 6)
    if "c" in sequences:
        inputs["c"], masks["c"] = torch.randn(3, 4, 2, generator=generator), steps([4, 4, 1], 4)
    present = torch.ones(3, 3, dtype=torch.bool)
    return Batch(inputs=inputs, present=present, label=torch.tensor([0, 2, 1]), index=torch.arange(3), masks=masks)


@pytest.mark.parametrize("kind", KINDS)
def test_gradients_reach_every_encoder_and_fusion_parameter(kind):
    # Attention over a single key has softmax weight 1 whatever the scores, so W_q and W_k of such
    # blocks cannot learn; cross_attention is checked with every modality a real sequence.
    sequences = MODALITIES if kind == "cross_attention" else ("a",)
    torch.manual_seed(0)
    model = toy_model(kind, sequences)
    batch = toy_batch(sequences)
    F.cross_entropy(model(batch).logits, batch.label).backward()
    for name, p in model.named_parameters():
        if kind == "late" and name.endswith("weight_logits"):
            continue  # "average" mode keeps it a buffer; never reached here
        assert p.grad is not None and p.grad.abs().sum() > 0, name


# -- cross attention -----------------------------------------------------------------------------
def test_masked_softmax_zeroes_masked_keys_and_empty_rows():
    scores = torch.tensor([[[1.0, 2.0, 3.0], [0.5, -1.0, 4.0]]])
    mask = torch.tensor([[True, False, True]])
    weights = masked_softmax(scores, mask[:, None, :])
    torch.testing.assert_close(weights[0, 0], torch.tensor([1.0, 0.0, torch.e**2]) / (1 + torch.e**2))
    assert torch.all(weights[..., 1] == 0)
    empty = masked_softmax(scores, torch.zeros(1, 1, 3, dtype=torch.bool))
    assert torch.equal(empty, torch.zeros_like(scores))


def test_attention_block_ignores_masked_keys_and_all_masked_rows_are_zero_attention():
    torch.manual_seed(0)
    block = AttentionBlock(8, 2, 2, 0.0).eval()
    queries, keys = torch.randn(2, 3, 8), torch.randn(2, 4, 8)
    mask = torch.tensor([[True, True, False, False], [False, False, False, False]])
    altered = keys.clone()
    altered[0, 2:] = 50.0 * torch.randn(2, 8)
    out, scores = block(queries, keys, mask)
    out_altered, _ = block(queries, altered, mask)
    torch.testing.assert_close(out[0], out_altered[0])
    # Sample 1 sees no key: its attention output is zero, leaving only the output bias.
    hidden = block.norm_attention(queries[1] + block.output.bias)
    expected = block.norm_feed_forward(hidden + block.feed_forward(hidden))
    torch.testing.assert_close(out[1], expected)
    assert torch.isfinite(out).all() and scores.shape == (2, 3, 4)


def test_cross_attention_records_and_score_fn_reproduce_scores():
    torch.manual_seed(0)
    fusion = build_fusion("cross_attention", modalities=("a", "b"), sequence={"a": True, "b": False})
    features, masks = mixed_features()
    present = torch.tensor([[True, True], [True, False], [True, True], [True, True]])
    out = fusion({m: features[m] for m in ("a", "b")}, present, masks=masks)
    names = [r.name for r in out.attention]
    assert names == ["intra/a", "inter/a->b", "inter/b->a", "intra/b"]
    assert [r.kind for r in out.attention] == ["intra", "inter", "inter", "intra"]
    for record in out.attention:
        torch.testing.assert_close(record.score_fn(record.queries, record.keys), record.scores)
    record = out.attention[1]  # a -> b: queries from a [B, 5, 64], keys from b as a length-1 sequence
    assert record.scores.shape == (4, 5, 1) and record.query_modality == "a" and record.key_modality == "b"
    assert record.key_mask.tolist() == [[True], [False], [True], [True]]
    assert torch.equal(record.query_mask, masks["a"])
    block = fusion.layers[0]["a"]["b"]
    q = (record.queries @ block.query.weight.T + block.query.bias).view(4, 5, 4, 16)
    k = (record.keys @ block.key.weight.T).view(4, 1, 4, 16)  # keys have no bias
    by_head = torch.einsum("bqhd,bkhd->bhqk", q, k) / 4.0
    torch.testing.assert_close(record.scores, by_head.mean(dim=1))


def test_cross_attention_ignores_absent_modalities_and_padding():
    torch.manual_seed(0)
    fusion = build_fusion("cross_attention", sequence={"a": True, "b": False, "c": False}).eval()
    features, masks = mixed_features()
    present = torch.tensor([[True, True, True], [True, False, True], [False, True, True], [False, False, False]])
    out = fusion(features, present, masks=masks)
    changed = {m: t.clone() for m, t in features.items()}
    changed["b"][1] = 9.0  # b absent in sample 1
    changed["a"][2] = -7.0  # a absent in sample 2
    changed["a"][1, 3:] = 5.0  # padding of sample 1
    torch.testing.assert_close(fusion(changed, present, masks=masks).logits, out.logits)
    torch.testing.assert_close(out.logits[3], fusion.head.bias)  # nothing present: pooled zeros
    assert torch.equal(out.fused[3], torch.zeros_like(out.fused[3]))


def test_cross_attention_layers_prefix_record_names():
    fusion = build_fusion("cross_attention", modalities=("a", "b"), layers=2)
    out = fusion({"a": torch.randn(2, 6), "b": torch.randn(2, 4)}, torch.ones(2, 2, dtype=torch.bool))
    assert [r.name for r in out.attention][:2] == ["layer0/intra/a", "layer0/inter/a->b"]
    assert len(out.attention) == 8 and out.attention[-1].name == "layer1/intra/b"


def test_late_heads_without_the_last_activation_end_linear_linear():
    from mmcore.builtin.late import make_head

    head = make_head(8, (6, 4), 3, dropout=0.0, activate_last=False)
    assert [type(m).__name__ for m in head] == ["Linear", "ReLU", "Linear", "Linear"]
    assert [type(m).__name__ for m in make_head(8, (6, 4), 3, dropout=0.0)] == ["Linear", "ReLU", "Linear", "ReLU", "Linear"]
