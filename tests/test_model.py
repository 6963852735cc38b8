"""MultimodalModel behaviour: drops, presence masks, inactive modalities, parameter groups, heads.

Every reference is computed by a second path: the encoders and the fusion called by hand on
hand-zeroed features, encoder calls counted with forward hooks.
"""
from __future__ import annotations

import pytest
import torch

from mmcore.testing import make_trainer, toy_config


def _model_and_batch(fusion: str = "concat", dropout: float = 0.0, **fusion_options):
    config = toy_config(fusion={"kind": fusion, **fusion_options})
    for table in config["encoders"].values():
        table["dropout"] = dropout
    trainer = make_trainer(config)
    batch = next(iter(trainer.evaluator.eval_loader(trainer.data.splits["val"])))
    return trainer.model, batch


def _count_calls(model):
    """Forward hooks that record the batch size of every encoder call, per modality."""
    calls = {m: [] for m in model.modalities}
    for m, encoder in model.encoders.items():
        encoder.register_forward_hook(lambda module, args, out, m=m: calls[m].append(args[0].shape[0]))
    return calls


def _capture_fusion_inputs(model):
    seen = {}

    def grab(module, args, kwargs):
        seen["features"] = {m: f.detach().clone() for m, f in args[0].items()}
        seen["present"] = args[1].clone()

    model.fusion.register_forward_pre_hook(grab, with_kwargs=True)
    return seen


@pytest.mark.parametrize("fusion", ["concat", "late"])
def test_feature_drop_zeroes_exactly_the_dropped_fusion_input(fusion):
    model, batch = _model_and_batch(fusion)
    model.eval()
    seen = _capture_fusion_inputs(model)
    with torch.no_grad():
        out = model(batch, drop=["a"], drop_at="feature")
        features_b = model.encoders["b"](batch.inputs["b"])
        present = batch.present.clone()
        present[:, 0] = False
        reference = model.fusion({"a": torch.zeros_like(seen["features"]["a"]), "b": features_b}, present)
    assert torch.equal(seen["features"]["a"], torch.zeros(batch.size, model.encoders["a"].out_dim))
    assert torch.equal(seen["features"]["b"], features_b)  # the other modality is untouched
    assert torch.equal(out.present, present)
    torch.testing.assert_close(out.logits, reference.logits, rtol=0, atol=0)
    # and the drop matters: the undropped model predicts differently
    assert not torch.allclose(model(batch).logits, out.logits)


def test_input_drop_runs_the_encoder_once_at_batch_size_one_and_broadcasts():
    model, batch = _model_and_batch(dropout=0.5)
    calls = _count_calls(model)
    model.eval()
    with torch.no_grad():
        features = model.encode(batch, drop=["a"], drop_at="input")
        assert calls == {"a": [1], "b": [batch.size]}
        zero_output = model.encoders["a"](torch.zeros(1, *batch.inputs["a"].shape[1:]))
        assert torch.equal(features["a"], zero_output.expand(batch.size, -1))
        assert zero_output.abs().sum() > 0  # encoder(0) is not zero: the bias path reaches the fusion
        out = model(batch, drop=["a"], drop_at="input")
    assert out.present.all()  # an input-level drop feeds encoder(0); the modality stays "present"
    # in train mode one dropout draw is shared by every sample (one call, broadcast)
    model.train()
    features = model.encode(batch, drop=["a"], drop_at="input")
    assert (features["a"] == features["a"][:1]).all()


def test_per_sample_present_masks_zero_only_those_samples():
    model, batch = _model_and_batch("late")
    absent_a, absent_b = torch.tensor([1, 4, 5]), torch.tensor([2, 4])
    present = batch.present.clone()
    present[absent_a, 0] = False
    present[absent_b, 1] = False
    seen = _capture_fusion_inputs(model)
    model.eval()
    with torch.no_grad():
        out = model(batch.replace(present=present))
        raw = {m: model.encoders[m](batch.inputs[m]) for m in model.modalities}
    for m, absent in (("a", absent_a), ("b", absent_b)):
        expected = raw[m].clone()
        expected[absent] = 0.0
        assert torch.equal(seen["features"][m], expected)
        assert torch.equal(out.features[m], raw[m])  # the kept features are the raw encoder outputs
    assert torch.equal(seen["present"], present)
    # a late fusion averages only the present heads: row 1 (no 'a') is the 'b' head alone
    heads = model.fusion.heads
    with torch.no_grad():
        only_b = torch.log_softmax(heads["b"](raw["b"][1:2]), dim=-1)
    torch.testing.assert_close(out.logits[1:2], only_b)


def test_inactive_modalities_are_not_encoded_and_marked_absent():
    model, batch = _model_and_batch()
    calls = _count_calls(model)
    seen = _capture_fusion_inputs(model)
    out = model(batch, active=("b",))
    assert calls == {"a": [], "b": [batch.size]}
    assert torch.equal(out.present[:, 0], torch.zeros(batch.size, dtype=torch.bool))
    assert out.present[:, 1].all()
    assert torch.equal(seen["features"]["a"], torch.zeros(batch.size, model.encoders["a"].out_dim))


def _ids(params):
    return {id(p) for p in params}


@pytest.mark.parametrize("fusion", ["sum", "late"])
def test_parameter_groups_by_module_identity_with_per_modality_heads(fusion):
    model, _ = _model_and_batch(fusion)
    heads = model.heads
    assert set(heads.keys()) == {"a", "b"} and heads is model.fusion.modality_heads
    groups = {}
    for m in model.modalities:
        assert _ids(model.encoder_params(m)) == _ids(model.encoders[m].parameters())
        groups[m] = _ids(model.modality_params(m))
        assert groups[m] == _ids(model.encoders[m].parameters()) | _ids(heads[m].parameters())
        assert len(model.modality_params(m)) == len(groups[m])  # no parameter listed twice
    assert not groups["a"] & groups["b"]
    shared = _ids(model.parameters()) - groups["a"] - groups["b"]
    assert shared == set()  # sum / average-late: every parameter belongs to exactly one modality


def test_weighted_late_keeps_its_shared_weights_out_of_modality_groups():
    model, _ = _model_and_batch("late", mode="weighted")
    groups = _ids(model.modality_params("a")) | _ids(model.modality_params("b"))
    assert _ids(model.parameters()) - groups == {id(model.fusion.weight_logits)}


def test_concat_has_no_heads_and_its_modality_groups_are_the_encoders():
    model, _ = _model_and_batch("concat")
    assert model.heads is None
    for m in model.modalities:
        assert _ids(model.modality_params(m)) == _ids(model.encoders[m].parameters())


def test_input_drop_runs_batchnorm_in_eval_mode_and_leaves_its_statistics():
    """A zero input at batch size 1 has no batch statistics and is no sample of the batch: in
    training mode the model runs it with BatchNorm in eval mode, trains through it, and restores
    the flags; the running statistics move only with the real modality's batch."""
    config = toy_config()
    for table in config["encoders"].values():
        table["batchnorm"] = True
    trainer = make_trainer(config)
    model = trainer.model
    batch = next(iter(trainer.evaluator.eval_loader(trainer.data.splits["val"])))
    norm_a = model.encoders["a"].layers[1]
    stats = (norm_a.running_mean.clone(), norm_a.running_var.clone(), int(norm_a.num_batches_tracked))
    model.train()
    features = model.encode(batch, drop=["a"], drop_at="input")
    assert norm_a.training and model.encoders["a"].training
    assert torch.equal(norm_a.running_mean, stats[0]) and torch.equal(norm_a.running_var, stats[1])
    assert int(norm_a.num_batches_tracked) == stats[2]
    model.encoders["a"].eval()
    with torch.no_grad():
        reference = model.encoders["a"](torch.zeros(1, *batch.inputs["a"].shape[1:]))
    torch.testing.assert_close(features["a"], reference.expand(batch.size, -1), rtol=0, atol=0)
    features["a"].sum().backward()
    assert model.encoders["a"].layers[0].bias.grad.abs().sum() > 0  # autograd runs through encoder(0)


def test_coalition_fuser_equals_full_passes_with_drops_and_encodes_each_modality_at_most_twice():
    import itertools

    from mmcore.testing import make_trainer, toy_config

    trainer = make_trainer(toy_config(modalities=("a", "b", "c"), fusion={"kind": "gated"}))
    model = trainer.model.eval()
    batch = next(iter(trainer.evaluator.eval_loader(trainer.data.splits["val"])))
    for drop_at in ("input", "feature"):
        fuse_coalition = model.coalition_fuser(batch, drop_at=drop_at)
        for size in (1, 2, 3):
            for coalition in itertools.combinations(model.modalities, size):
                muted = [m for m in model.modalities if m not in coalition]
                with torch.no_grad():
                    reference = model(batch, drop=muted, drop_at=drop_at).logits
                assert torch.allclose(fuse_coalition(coalition).logits, reference, atol=1e-6)
    fresh = {m: 0 for m in model.modalities}
    hooks = [model.encoders[m].register_forward_hook(lambda *_, m=m: fresh.__setitem__(m, fresh[m] + 1))
             for m in model.modalities]
    fuse_coalition = model.coalition_fuser(batch, drop_at="input")
    for size in (1, 2, 3):
        for coalition in itertools.combinations(model.modalities, size):
            fuse_coalition(coalition)
    assert fresh == {m: 2 for m in model.modalities}  # once real, once on zeros: not once per coalition
