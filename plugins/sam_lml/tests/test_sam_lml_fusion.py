"""The sam_lml fusion: Eq. 1-2 and 16-25 by hand on one-step inputs, records, masks and the predictive loss."""
import math

import pytest
import torch
import torch.nn.functional as F

from mmcore.testing import make_trainer, run_steps, toy_config
from mmcore_sam_lml.fusion import SamLmlFusion, SamLmlFusionConfig


def cross_entropy(logits, label, reduction="mean"):  # a task loss, as the trainer hands fusions one
    return torch.nn.functional.cross_entropy(logits.float(), label, reduction=reduction)

T = True


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def fusion(modalities=("a", "b"), d=4, num_outputs=3, **config):
    torch.manual_seed(0)
    return SamLmlFusion(modalities, {m: d for m in modalities}, num_outputs, cross_entropy,
                        SamLmlFusionConfig(d_model=d, **config)).eval()


def test_one_step_inputs_follow_the_equations_by_hand():
    f = fusion()
    u = {"a": torch.randn(2, 4), "b": torch.randn(2, 4)}
    present = torch.ones(2, 2, dtype=torch.bool)
    out = f(u, present)
    # one key: Softmax = 1, so X_m = LN(U_m W_v) (Eq. 2) and X_{m1,m2} = LN(X_m2 W_{m1,v}) (Eq. 17),
    # and with |M| = 2 each X_{m1,M} is that single row (Eq. 19)
    x = {m: f.intra[m].norm(f.intra[m].value(u[m])) for m in "ab"}
    cross = torch.stack([f.inter["a"].norm(f.inter["a"].value(x["b"])), f.inter["b"].norm(f.inter["b"].value(x["a"]))], 1)
    scores = f.pool.query(f.pool_query) @ f.pool.key(cross).transpose(1, 2) / math.sqrt(4)  # Eq. 21
    fused = f.pool.norm(torch.softmax(scores, -1) @ f.pool.value(cross))[:, 0]  # Eq. 22
    assert torch.allclose(out.fused, fused, atol=1e-6)
    assert torch.allclose(out.logits, f.predictor(fused), atol=1e-6)  # Eq. 23
    assert out.predictor is f.predictor


def test_records_expose_every_block_with_its_own_score_function():
    f = fusion(("a", "b", "c"), heads=2)
    features = {m: torch.randn(2, 5, 4) for m in "abc"}
    masks = {m: torch.tensor([[T] * 5, [T, T, T, False, False]]) for m in "abc"}
    out = f(features, torch.ones(2, 3, dtype=torch.bool), masks)
    names = [r.name for r in out.attention]
    assert names == ["intra/a", "intra/b", "intra/c", "inter/a->b", "inter/a->c", "inter/b->a", "inter/b->c",
                     "inter/c->a", "inter/c->b"]
    for record in out.attention:
        assert record.scores.shape == (2, 5, 5)
        assert torch.allclose(record.score_fn(record.queries, record.keys), record.scores)
        assert record.key_mask.tolist() == masks[record.key_modality].tolist()
    assert out.attention[3].queries is not out.attention[0].queries  # inter blocks see X_m, not U_m


def test_padding_changes_nothing():
    f = fusion()
    short = {m: torch.randn(1, 3, 4) for m in "ab"}
    padded = {m: torch.cat([x, 100 * torch.ones(1, 2, 4)], 1) for m, x in short.items()}
    masks = {m: torch.tensor([[T, T, T, False, False]]) for m in "ab"}
    present = torch.ones(1, 2, dtype=torch.bool)
    assert torch.allclose(f(short, present).logits, f(padded, present, masks).logits, atol=1e-6)


def test_an_absent_modality_is_never_a_key():
    f = fusion()
    features = {"a": torch.randn(1, 3, 4), "b": torch.zeros(1, 3, 4)}  # b absent: the model zeroes it
    present = torch.tensor([[True, False]])
    out = f(features, present)
    for record in out.attention:
        assert record.key_mask.any().item() == (record.key_modality == "a")
    # b's (constant) queries still gather a's values, so the prediction depends on a
    moved = f({"a": features["a"] + 1, "b": features["b"]}, present).logits
    assert not torch.allclose(out.logits, moved)


def test_cross_modal_predictive_loss_eq25():
    f = fusion(alpha_p=1.0)
    features, present = {m: torch.randn(4, 2, 4) for m in "ab"}, torch.ones(4, 2, dtype=torch.bool)
    labels = torch.tensor([0, 1, 2, 0])
    loss = f(features, present, labels=labels).aux_losses["sam_lml/cross_modal"]
    twice = fusion(alpha_p=2.0)(features, present, labels=labels).aux_losses["sam_lml/cross_modal"]
    assert torch.allclose(twice, 2 * loss)
    assert f(features, present, labels=labels, probe=True).aux_losses == {}  # probes add no losses
    assert fusion(alpha_p=0.0)(features, present, labels=labels).aux_losses == {}
    # Eq. 24-25 by hand with one-step inputs (|M| = 2): every softmax is over a single key
    one = {m: v[:, :1] for m, v in features.items()}
    with torch.no_grad():
        x = {m: f.intra[m].norm(f.intra[m].value(one[m])) for m in "ab"}
        p_a = f.predictor(f.inter["a"].norm(f.inter["a"].value(x["b"]))[:, 0])
        p_b = f.predictor(f.inter["b"].norm(f.inter["b"].value(x["a"]))[:, 0])
    expected = 0.5 * (F.cross_entropy(p_a, labels) + F.cross_entropy(p_b, labels))
    assert torch.allclose(f(one, present, labels=labels).aux_losses["sam_lml/cross_modal"], expected, atol=1e-6)


def test_input_projection_only_where_widths_differ():
    f = SamLmlFusion(("a", "b"), {"a": 4, "b": 6}, 2, cross_entropy, SamLmlFusionConfig(d_model=4))
    assert isinstance(f.input_projections["a"], torch.nn.Identity)
    assert not isinstance(f.input_projections["b"], torch.nn.Identity)
    always = SamLmlFusion(("a", "b"), {"a": 4, "b": 6}, 2, cross_entropy, SamLmlFusionConfig(d_model=4, input_projection="always"))
    assert not isinstance(always.input_projections["a"], torch.nn.Identity)


def test_trains_through_the_trainer_with_the_cross_modal_loss():
    config = toy_config(sequence=4, fusion={"kind": "sam_lml", "d_model": 16})
    _, states = run_steps(config, 2)
    assert set(states[-1].losses) == {"task", "sam_lml/cross_modal"}
    trainer = make_trainer(toy_config(fusion={"kind": "sam_lml", "d_model": 8}))  # vector encoders work too
    assert trainer.model.fusion.modality_modules("a")[1] is trainer.model.fusion.intra["a"]
