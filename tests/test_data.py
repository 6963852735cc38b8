"""The data layer: mfeat, synthetic, corruption (missing masks, noise), collation, plans, loaders."""
from __future__ import annotations

import math
import zlib

import numpy as np
import pytest
import torch

from mmcore.data import register
from mmcore.data.corruption import (
    CorruptedDataset,
    CorruptionConfig,
    corrupt_features,
    corrupt_split,
    hash_uniform,
    missing_masks,
    split_missing_masks,
    splitmix64,
)
from mmcore.data.loading import PlannedDataset, TensorSplit, collate, make_loader
from mmcore.data.mfeat import VIEWS, MfeatConfig, build_mfeat, stratified_split
from mmcore.data.synthetic import SyntheticConfig, build_synthetic
from mmcore.errors import ConfigError, DataError
from mmcore.registry import BuildContext, ComponentRegistry


def ctx(*modalities: str, seed: int = 0) -> BuildContext:
    return BuildContext(modalities=modalities, seed=seed)


def whole(split) -> dict:
    """Every row of a split as one collated batch."""
    return collate([split[i] for i in range(len(split))])


# -- registration and mfeat ---------------------------------------------------------------------------


def test_register_adds_both_kinds() -> None:
    registry = ComponentRegistry()
    register(registry)
    assert registry.kinds("dataset") == ["mfeat", "synthetic"]
    assert registry.get("dataset", "mfeat").config_cls is MfeatConfig


def test_mfeat_split_sizes_and_stratification() -> None:
    bundle = build_mfeat(MfeatConfig(), ctx("pix", "mor"))
    sizes = {name: len(split) for name, split in bundle.splits.items()}
    assert sizes == {"train": 1200, "val": 400, "test": 400}
    for name, per_class in (("train", 120), ("val", 40), ("test", 40)):
        labels = whole(bundle.splits[name]).label
        assert labels.dtype == torch.long
        assert torch.bincount(labels, minlength=10).tolist() == [per_class] * 10
    info = bundle.info
    assert (info.task, info.num_outputs, info.modalities) == ("classification", 10, ("pix", "mor"))
    assert info.input_shapes == {"pix": (240,), "mor": (6,)} and info.sequence == {"pix": False, "mor": False}
    assert "Kybernetika 34(4):381-386" in info.citation and "CC BY 4.0" in info.citation


def test_mfeat_splits_partition_the_rows_and_follow_split_seed() -> None:
    labels = torch.arange(2000) // 200  # the file's layout: rows ordered by class
    first = stratified_split(labels, 0.2, 0.2, seed=0)
    assert torch.equal(torch.sort(torch.cat(list(first.values()))).values, torch.arange(2000))
    again, other = stratified_split(labels, 0.2, 0.2, seed=0), stratified_split(labels, 0.2, 0.2, seed=1)
    assert all(torch.equal(first[n], again[n]) for n in first)
    assert not torch.equal(first["test"], other["test"])
    uneven = stratified_split(torch.tensor([0] * 7 + [1] * 3), 0.2, 0.2, seed=0)  # round(1.4) = 1, round(0.6) = 1
    assert [len(uneven[n]) for n in ("train", "val", "test")] == [6, 2, 2]


def test_mfeat_standardizes_with_train_statistics_only() -> None:
    raw = build_mfeat(MfeatConfig(standardize=False), ctx("zer"))
    scaled = build_mfeat(MfeatConfig(), ctx("zer"))
    train = whole(raw.splits["train"]).inputs["zer"]
    mean, std = train.mean(0), train.std(0)
    for name in ("train", "val", "test"):
        expected = (whole(raw.splits[name]).inputs["zer"] - mean) / std
        torch.testing.assert_close(whole(scaled.splits[name]).inputs["zer"], expected)
    scaled_train = whole(scaled.splits["train"]).inputs["zer"]
    torch.testing.assert_close(scaled_train.mean(0), torch.zeros(47), atol=1e-5, rtol=0)
    assert not torch.allclose(whole(scaled.splits["val"]).inputs["zer"].mean(0), torch.zeros(47), atol=1e-3)


def test_mfeat_unknown_view_names_every_bad_view() -> None:
    with pytest.raises(ConfigError) as raised:
        build_mfeat(MfeatConfig(), ctx("pix", "xyz", "audio"))
    assert raised.value.problems == [
        "$.data.modalities: unknown mfeat view 'xyz'; views: fac, fou, kar, mor, pix, zer",
        "$.data.modalities: unknown mfeat view 'audio'; views: fac, fou, kar, mor, pix, zer",
    ]
    assert VIEWS == ("fac", "fou", "kar", "mor", "pix", "zer")


def test_mfeat_unusable_files_raise_data_error(tmp_path) -> None:
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"\x00\x01 not a zip archive" * 10)
    lacking = tmp_path / "lacking.npz"
    np.savez(lacking, pix=np.zeros((4, 3), np.float32), label=np.zeros(4, np.int64))
    for path, reason in ((garbage, "not a readable .npz"), (lacking, "missing arrays ['mor']"),
                         (tmp_path / "absent.npz", "not a readable .npz")):
        with pytest.raises(DataError) as raised:
            build_mfeat(MfeatConfig(path=str(path)), ctx("pix", "mor"))
        assert raised.value.path == str(path) and reason in str(raised.value)


def test_mfeat_fractions_must_leave_training_rows() -> None:
    with pytest.raises(ValueError, match="below 1"):
        MfeatConfig(val_fraction=0.5, test_fraction=0.5)


# -- synthetic ----------------------------------------------------------------------------------------


def test_synthetic_is_deterministic_in_its_own_seed() -> None:
    config = SyntheticConfig(seq_len=6, ragged=True, noise_steps=0.5)
    first = whole(build_synthetic(config, ctx("a", "b", seed=1)).splits["train"])
    again = whole(build_synthetic(config, ctx("a", "b", seed=99)).splits["train"])  # run seed plays no part
    other = whole(build_synthetic(SyntheticConfig(seq_len=6, ragged=True, noise_steps=0.5, seed=1),
                                  ctx("a", "b")).splits["train"])
    for m in ("a", "b"):
        assert torch.equal(first.inputs[m], again.inputs[m]) and torch.equal(first.masks[m], again.masks[m])
        assert not torch.equal(first.inputs[m], other.inputs[m])
    assert torch.equal(first.extras["noise_positions/a"], again.extras["noise_positions/a"])


def nearest_mean_accuracy(train, test, m: str) -> float:
    means = torch.stack([train.inputs[m][train.label == c].mean(0) for c in range(4)])
    predicted = torch.cdist(test.inputs[m], means).argmin(1)
    return float((predicted == test.label).float().mean())


def test_synthetic_signal_orders_separability() -> None:
    config = SyntheticConfig(signal=[0.0, 1.0, 4.0], train_size=2000, test_size=1000)
    bundle = build_synthetic(config, ctx("none", "weak", "strong"))
    train, test = whole(bundle.splits["train"]), whole(bundle.splits["test"])
    acc = {m: nearest_mean_accuracy(train, test, m) for m in ("none", "weak", "strong")}
    assert acc["none"] < 0.32  # chance is 0.25; 1000 test rows keep it within a few points
    assert acc["none"] + 0.1 < acc["weak"] < acc["strong"] - 0.1
    assert acc["strong"] > 0.95
    assert train.label.dtype == torch.long and bundle.info.num_outputs == 4


def test_synthetic_binary_and_regression_labels() -> None:
    binary = build_synthetic(SyntheticConfig(task="binary"), ctx("a"))
    labels = whole(binary.splits["train"]).label
    assert labels.dtype == torch.float32 and set(labels.tolist()) == {0.0, 1.0}
    assert binary.info.num_outputs == 1
    regression = build_synthetic(SyntheticConfig(task="regression", signal=[3.0]), ctx("a"))
    batch = whole(regression.splits["train"])
    assert batch.label.dtype == torch.float32 and regression.info.task == "regression"
    # x = 3 z w + noise for a unit direction w: the first principal direction tracks z.
    centred = batch.inputs["a"] - batch.inputs["a"].mean(0)
    direction = torch.linalg.svd(centred, full_matrices=False).Vh[0]
    correlation = torch.corrcoef(torch.stack([centred @ direction, batch.label]))[0, 1].abs()
    assert correlation > 0.9


def test_synthetic_ragged_sequences_pad_with_masked_zeros() -> None:
    config = SyntheticConfig(seq_len=10, ragged=True, dim=3, train_size=300)
    bundle = build_synthetic(config, ctx("a", "b"))
    batch = whole(bundle.splits["train"])
    assert bundle.info.input_shapes == {"a": (10, 3), "b": (10, 3)} and bundle.info.sequence["a"]
    lengths = batch.masks["a"].sum(1)
    assert int(lengths.min()) == 5 and int(lengths.max()) == 10
    # Masks are prefixes (real steps first), shared by the modalities of a sample.
    assert torch.equal(batch.masks["a"], torch.arange(10)[None] < lengths[:, None])
    assert torch.equal(batch.masks["a"], batch.masks["b"])
    padding = ~batch.masks["a"]
    assert torch.equal(batch.inputs["a"][padding], torch.zeros(int(padding.sum()), 3))
    assert bool((batch.inputs["a"][~padding].abs().sum(-1) > 0).all())


def test_synthetic_noise_steps_are_pure_noise_at_the_reported_positions() -> None:
    config = SyntheticConfig(seq_len=8, ragged=True, noise_steps=0.25, signal=[50.0], train_size=200)
    batch = whole(build_synthetic(config, ctx("a")).splits["train"])
    positions, mask = batch.extras["noise_positions/a"], batch.masks["a"]
    assert positions.dtype == torch.bool and positions.shape == (200, 8)
    assert not bool((positions & ~mask).any())  # only real steps are replaced
    assert torch.equal(positions.sum(1), torch.round(0.25 * mask.sum(1).float()).long())
    norms = batch.inputs["a"].norm(dim=-1)  # a signal step has norm ~50, a noise step ~sqrt(16)
    assert torch.equal(norms[mask] < 20, positions[mask])


def test_synthetic_config_errors_name_their_fields() -> None:
    with pytest.raises(ConfigError) as raised:
        build_synthetic(SyntheticConfig(signal=[1.0], noise_steps=0.5), ctx("a", "b"))
    assert raised.value.problems == [
        "$.data.signal: 1 values for 2 modalities ['a', 'b']",
        "$.data.noise_steps: 0.5 needs sequences (seq_len > 0)",
    ]


# -- missing masks (Eq. 34) ---------------------------------------------------------------------------


@pytest.mark.parametrize("rate", [0.1, 0.3, 0.5, 0.6])
def test_missing_masks_hit_the_rate_and_keep_one_modality(rate: float) -> None:
    kept = missing_masks(1000, 3, rate, seed=4)
    assert kept.shape == (1000, 3) and kept.dtype == torch.bool
    assert bool((kept.sum(1) >= 1).all())
    realised = 1.0 - kept.float().mean()
    assert abs(float(realised) - rate) <= 0.005
    assert torch.equal(kept, missing_masks(1000, 3, rate, seed=4))
    assert not torch.equal(kept, missing_masks(1000, 3, rate, seed=5))


@pytest.mark.parametrize("rate", [2 / 3, 0.7, 1.0])
def test_missing_masks_keep_exactly_one_at_high_rates(rate: float) -> None:
    kept = missing_masks(900, 3, rate, seed=0)
    assert torch.equal(kept.sum(1), torch.ones(900, dtype=torch.long))
    per_modality = kept.sum(0)
    assert bool((per_modality > 240).all())  # each modality is the survivor about 300 times


def test_missing_masks_edge_cases() -> None:
    assert bool(missing_masks(10, 2, 0.0, seed=0).all())
    assert bool(missing_masks(10, 1, 0.5, seed=0).all())  # one modality: it must stay
    with pytest.raises(ValueError):
        missing_masks(10, 2, 1.5, seed=0)
    config = CorruptionConfig(missing_rate=0.3, seed=2)
    assert torch.equal(split_missing_masks(50, config, 3), missing_masks(50, 3, 0.3, 2))
    assert not torch.equal(split_missing_masks(50, config, 3, "val"), split_missing_masks(50, config, 3, "test"))


# -- counter-based noise (Eq. 35) ---------------------------------------------------------------------

MASK64 = (1 << 64) - 1


def splitmix64_reference(value: int) -> int:
    z = value & MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
    return z ^ (z >> 31)


def test_splitmix64_matches_unsigned_reference() -> None:
    values = [0, 1, 12345, -1, -(1 << 63), (1 << 63) - 1, 0x0123456789ABCDEF]
    hashed = splitmix64(torch.tensor(values, dtype=torch.long)).tolist()
    assert [h & MASK64 for h in hashed] == [splitmix64_reference(v) for v in values]
    assert splitmix64_reference(0) == 0  # the finaliser fixes zero; the counters below never hash a bare 0


def uniform_reference(seed: int, stream: int, index: int, position: int) -> float:
    golden = 0x9E3779B97F4A7C15
    key = splitmix64_reference(seed * golden + stream)
    per_sample = splitmix64_reference(key + index * golden)
    bits = splitmix64_reference(per_sample + (position + 1) * golden)
    return ((bits >> 11) + 0.5) * 2.0**-53


def test_gaussian_noise_is_box_muller_on_hashed_uniforms() -> None:
    config = CorruptionConfig(noise_rate=0.25, noise="gaussian", seed=7)
    x = torch.tensor([[1.0, -2.0, 0.5]], dtype=torch.float64)
    out = corrupt_features({"a": x}, torch.tensor([42]), config, ("a",))["a"]
    stream = zlib.crc32(b"a") << 3  # the modality key, Gaussian radius stream
    expected = []
    for position, value in enumerate(x[0].tolist()):
        radius, angle = (uniform_reference(7, stream + k, 42, position) for k in (0, 1))
        noise = math.sqrt(-2 * math.log(radius)) * math.cos(2 * math.pi * angle)
        expected.append(0.75 * value + 0.25 * noise)
    torch.testing.assert_close(out[0], torch.tensor(expected, dtype=torch.float64), rtol=1e-12, atol=1e-12)
    assert hash_uniform(7, stream, torch.tensor([42]), 3)[0, 2].item() == uniform_reference(7, stream, 42, 2)


def test_noise_rate_zero_is_identity_and_noise_is_additive() -> None:
    x = torch.randn(6, 5, generator=torch.Generator().manual_seed(0))
    index = torch.arange(6)
    for kind in ("gaussian", "laplace", "erasing", "mixed"):
        same = corrupt_features({"a": x}, index, CorruptionConfig(noise_rate=0.0, noise=kind), ("a",))["a"]
        assert torch.equal(same, x)
    config = CorruptionConfig(noise_rate=0.3, noise="laplace")
    shifted = corrupt_features({"a": x + 1.0}, index, config, ("a",))["a"]
    plain = corrupt_features({"a": x}, index, config, ("a",))["a"]
    torch.testing.assert_close(shifted - plain, torch.full_like(x, 0.7))  # (1 - r)(u + 1) + r n


def standardised_moments(noise: torch.Tensor) -> tuple[float, float, float]:
    mean, var = noise.mean(), noise.var()
    kurtosis = ((noise - mean) ** 4).mean() / var**2
    return float(mean), float(var), float(kurtosis)


@pytest.mark.parametrize(("kind", "kurtosis"), [("gaussian", 3.0), ("laplace", 6.0)])
def test_noise_has_unit_variance_and_its_shape(kind: str, kurtosis: float) -> None:
    zeros = torch.zeros(400, 500, dtype=torch.float64)
    noise = corrupt_features({"a": zeros}, torch.arange(400), CorruptionConfig(noise_rate=1.0, noise=kind), ("a",))["a"]
    mean, var, kurt = standardised_moments(noise.flatten())
    assert abs(mean) < 0.01 and abs(var - 1.0) < 0.02  # 200k draws: sd of the mean 0.002, of the var ~0.005
    assert abs(kurt - kurtosis) < 0.3


def test_erasing_zeroes_an_exact_fraction_of_real_entries() -> None:
    x = torch.arange(1, 1 + 4 * 5 * 2, dtype=torch.float32).reshape(4, 5, 2)
    mask = torch.tensor([[True] * 5, [True] * 5, [True, True, True, False, False], [True] * 5])
    x[~mask] = 0.0
    config = CorruptionConfig(noise_rate=0.3, noise="erasing")
    out = corrupt_features({"a": x}, torch.arange(4), config, ("a",), masks={"a": mask})["a"]
    erased = (out == 0) & mask[..., None]
    assert erased.sum((1, 2)).tolist() == [3, 3, 2, 3]  # round(0.3 * 10) = 3; round(0.3 * 6) = 2
    assert torch.equal(out[~erased], x[~erased])  # the rest, padding included, is untouched


def test_feature_noise_ignores_batch_composition() -> None:
    x = torch.randn(5, 4, 3, generator=torch.Generator().manual_seed(1))
    index = torch.tensor([10, 3, 7, 0, 99])
    for kind in ("gaussian", "laplace", "erasing", "mixed"):
        config = CorruptionConfig(noise_rate=0.4, noise=kind, seed=3)
        batched = corrupt_features({"a": x, "b": x[:, 0]}, index, config, ("a", "b"))
        alone = corrupt_features({"a": x[2:3]}, index[2:3], config, ("a",))
        torch.testing.assert_close(alone["a"][0], batched["a"][2], rtol=0, atol=0)
        order = torch.tensor([4, 2, 0, 1, 3])
        permuted = corrupt_features({"a": x[order]}, index[order], config, ("a",))
        torch.testing.assert_close(permuted["a"], batched["a"][order], rtol=0, atol=0)
        again = corrupt_features({"a": x}, index, config, ("a",))
        assert torch.equal(again["a"], batched["a"])
    other_seed = corrupt_features({"a": x}, index, CorruptionConfig(noise_rate=0.4, seed=4), ("a",))
    assert not torch.equal(other_seed["a"], corrupt_features({"a": x}, index, CorruptionConfig(noise_rate=0.4, seed=3),
                                                              ("a",))["a"])
    untouched = corrupt_features({"a": x, "c": x}, index, CorruptionConfig(noise_rate=0.4), ("a",))
    assert torch.equal(untouched["c"], x)


def test_mixed_noise_picks_one_kind_per_sample() -> None:
    x = torch.randn(60, 8, generator=torch.Generator().manual_seed(2))
    index = torch.arange(60)
    single = {kind: corrupt_features({"a": x, "b": x}, index, CorruptionConfig(noise_rate=0.5, noise=kind), ("a", "b"))
              for kind in ("gaussian", "laplace", "erasing", "mixed")}
    kinds = {}
    for m in ("a", "b"):
        matches = torch.stack([(single["mixed"][m] == single[k][m]).all(1) for k in ("gaussian", "laplace", "erasing")])
        assert torch.equal(matches.sum(0), torch.ones(60, dtype=torch.long))  # exactly one kind per row
        kinds[m] = matches.float().argmax(0)
    assert torch.equal(kinds["a"], kinds["b"])  # the same kind for every modality of a sample
    assert set(kinds["a"].tolist()) == {0, 1, 2}


# -- corrupted datasets -------------------------------------------------------------------------------


def sequence_split() -> TensorSplit:
    bundle = build_synthetic(SyntheticConfig(seq_len=6, ragged=True, dim=3, train_size=40), ctx("a", "b"))
    return bundle.splits["train"]


def test_input_level_noise_matches_feature_level_on_the_same_rows() -> None:
    base = sequence_split()
    config = CorruptionConfig(noise_rate=0.5, noise="mixed", level="input", seed=9)
    corrupted = whole(CorruptedDataset(base, config, ("a", "b")))
    clean = whole(base)
    expected = corrupt_features(clean.inputs, clean.index, config, ("a", "b"), masks=clean.masks)
    for m in ("a", "b"):
        torch.testing.assert_close(corrupted.inputs[m], expected[m], rtol=0, atol=0)
        padding = ~clean.masks[m]
        assert bool((corrupted.inputs[m][padding] == 0).all())  # padding stays zero
        assert not torch.equal(corrupted.inputs[m], clean.inputs[m])


def test_corrupted_dataset_applies_missing_masks() -> None:
    base = sequence_split()
    config = CorruptionConfig(missing_rate=0.4, level="feature", noise_rate=0.5, seed=1)
    dataset = CorruptedDataset(base, config, ("a", "b"), split="train")
    batch, clean = whole(dataset), whole(base)
    kept = split_missing_masks(40, config, 2, "train")
    assert torch.equal(batch.present, kept)
    for column, m in enumerate(("a", "b")):
        missing = ~kept[:, column]
        assert bool((batch.inputs[m][missing] == 0).all())
        # feature level: the present inputs are left for corrupt_features
        assert torch.equal(batch.inputs[m][~missing], clean.inputs[m][~missing])
        assert torch.equal(batch.masks[m], clean.masks[m])
    assert corrupt_split(base, CorruptionConfig(noise_rate=0.5, level="feature"), ("a", "b")) is base
    assert isinstance(corrupt_split(base, CorruptionConfig(noise_rate=0.5, level="input"), ("a", "b")), CorruptedDataset)


# -- collation, plans, loaders ------------------------------------------------------------------------


def small_split(rows: int = 10) -> TensorSplit:
    inputs = {"a": torch.arange(rows * 2, dtype=torch.float32).reshape(rows, 2), "b": torch.zeros(rows, 3, 4)}
    masks = {"b": torch.ones(rows, 3, dtype=torch.bool)}
    extras = {"tag": torch.arange(rows) * 10}
    return TensorSplit(inputs, torch.arange(rows) % 3, ("a", "b"), masks=masks, extras=extras)


def test_collate_stacks_every_field() -> None:
    split = small_split()
    batch = collate([split[i] for i in (4, 1, 7)])
    assert torch.equal(batch.inputs["a"], torch.tensor([[8.0, 9.0], [2.0, 3.0], [14.0, 15.0]]))
    assert batch.inputs["b"].shape == (3, 3, 4) and batch.masks["b"].shape == (3, 3)
    assert torch.equal(batch.index, torch.tensor([4, 1, 7])) and batch.index.dtype == torch.long
    assert torch.equal(batch.label, torch.tensor([1, 1, 1]))
    assert torch.equal(batch.extras["tag"], torch.tensor([40, 10, 70]))
    assert batch.present.shape == (3, 2) and bool(batch.present.all())
    odd = dict(split[0], extras={})
    with pytest.raises(ValueError, match="extras"):
        collate([split[1], odd])


def test_planned_dataset_keeps_modalities_and_merges_extras() -> None:
    split = small_split()
    entries = [(3, None, None), (3, ("b",), {"copy": torch.tensor(1)}), (5, ("a",), {"copy": torch.tensor(2)})]
    plan = PlannedDataset(split, ("a", "b"), entries)
    assert len(plan) == 3
    batch = collate([plan[1], plan[2]])
    assert batch.present.tolist() == [[False, True], [True, False]]
    assert torch.equal(batch.index, torch.tensor([3, 5]))  # the base row, shared by copies
    assert torch.equal(batch.extras["copy"], torch.tensor([1, 2]))
    assert torch.equal(batch.extras["tag"], torch.tensor([30, 50]))
    assert plan[0]["present"].tolist() == [True, True]
    with pytest.raises(ValueError, match="unknown modalities"):
        PlannedDataset(split, ("a", "b"), [(0, ("c",), None)])


def batch_rows(loader, count: int | None = None) -> list[list[int]]:
    rows = []
    for batch in loader:
        rows.append(batch.index.tolist())
        if count is not None and len(rows) == count:
            break
    return rows


def test_loader_order_is_fixed_by_its_seed() -> None:
    split = small_split(23)
    first = batch_rows(make_loader(split, 4, shuffle=True, seed=5))
    assert first == batch_rows(make_loader(split, 4, shuffle=True, seed=5))
    assert first != batch_rows(make_loader(split, 4, shuffle=True, seed=6))
    assert sorted(sum(first, [])) == list(range(23)) and len(first[-1]) == 3
    assert batch_rows(make_loader(split, 4, shuffle=False, seed=5))[0] == [0, 1, 2, 3]
    assert len(batch_rows(make_loader(split, 4, shuffle=True, seed=5, drop_last=True))) == 5


def test_loader_resumes_mid_epoch_and_in_later_epochs() -> None:
    split = small_split(23)
    reference = make_loader(split, 4, shuffle=True, seed=0)
    epochs = [batch_rows(reference) for _ in range(3)]
    assert epochs[0] != epochs[1]

    interrupted = make_loader(split, 4, shuffle=True, seed=0)
    head = batch_rows(interrupted, 3)
    state = interrupted.state_dict()
    resumed = make_loader(split, 4, shuffle=True, seed=0)
    resumed.load_state_dict(state)
    assert head + batch_rows(resumed) == epochs[0]
    assert [batch_rows(resumed), batch_rows(resumed)] == epochs[1:]


def test_loader_resumes_after_a_finished_epoch_and_inside_the_next() -> None:
    split = small_split(23)
    reference = make_loader(split, 4, shuffle=True, seed=1)
    epochs = [batch_rows(reference) for _ in range(3)]

    loader = make_loader(split, 4, shuffle=True, seed=1)
    batch_rows(loader)
    at_epoch_end = loader.state_dict()
    head = batch_rows(loader, 2)
    inside_second = loader.state_dict()

    from_end = make_loader(split, 4, shuffle=True, seed=1)
    from_end.load_state_dict(at_epoch_end)
    assert [batch_rows(from_end), batch_rows(from_end)] == epochs[1:]

    from_inside = make_loader(split, 4, shuffle=True, seed=1)
    from_inside.load_state_dict(inside_second)
    assert head + batch_rows(from_inside) == epochs[1]
    assert batch_rows(from_inside) == epochs[2]


def test_loader_order_and_resume_do_not_depend_on_worker_processes() -> None:
    split = small_split(23)
    in_process = make_loader(split, 4, shuffle=True, seed=2)
    epochs = [batch_rows(in_process) for _ in range(2)]
    workers = make_loader(split, 4, shuffle=True, seed=2, num_workers=1)
    head = batch_rows(workers, 2)
    state = workers.state_dict()
    resumed = make_loader(split, 4, shuffle=True, seed=2, num_workers=1)
    resumed.load_state_dict(state)
    assert [head + batch_rows(resumed), batch_rows(resumed)] == epochs


def _batch_with_every_field():
    from mmcore.types import Batch

    return Batch(inputs={"a": torch.ones(2, 3)}, present=torch.ones(2, 1, dtype=torch.bool), label=torch.tensor([0, 1]),
                 index=torch.tensor([4, 5]), masks={"a": torch.ones(2, 3, dtype=torch.bool)}, extras={"w": torch.ones(2)})


def test_batch_map_reaches_every_tensor():
    seen = []
    _batch_with_every_field().map(lambda t: seen.append(t.shape) or t)
    assert len(seen) == 6


@pytest.mark.skipif(not torch.cuda.is_available(), reason="pinned memory needs a CUDA device")
def test_loaders_pin_batches_for_a_cuda_run():
    pinned = _batch_with_every_field().pin_memory()
    assert all(t.is_pinned() for t in (*pinned.inputs.values(), pinned.present, pinned.label, pinned.index,
                                       *pinned.masks.values(), *pinned.extras.values()))
