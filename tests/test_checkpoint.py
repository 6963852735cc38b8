"""Checkpoints: exact round trips of nested state, file round trips, atomic replacement, errors."""
from __future__ import annotations

import json
import math
import os
import pickle

import pytest
import torch
from torch import nn

from mmcore import checkpoint
from mmcore.checkpoint import (
    Checkpoint,
    flatten_state,
    generator_state,
    load_checkpoint,
    save_checkpoint,
    set_generator_state,
    unflatten_state,
)
from mmcore.errors import DataError


def assert_same_tree(actual, expected, path="$"):
    """Deep equality that also demands identical types (int keys stay ints, tuples stay tuples)."""
    assert type(actual) is type(expected), f"{path}: {type(actual)} != {type(expected)}"
    if isinstance(expected, torch.Tensor):
        assert actual.dtype == expected.dtype and actual.shape == expected.shape, path
        assert torch.equal(actual, expected), path
    elif isinstance(expected, dict):
        assert list(actual.keys()) == list(expected.keys()), path
        for key in expected:
            assert type(key) is type(next(k for k in actual if k == key)), f"{path}: key {key!r}"
            assert_same_tree(actual[key], expected[key], f"{path}[{key!r}]")
    elif isinstance(expected, (list, tuple)):
        assert len(actual) == len(expected), path
        for i, (a, e) in enumerate(zip(actual, expected)):
            assert_same_tree(a, e, f"{path}[{i}]")
    elif isinstance(expected, float) and math.isnan(expected):
        assert math.isnan(actual), path
    else:
        assert actual == expected, path


def trained_optimizers():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    adam = torch.optim.Adam(model.parameters(), lr=1e-2)
    sgd = torch.optim.SGD(model.parameters(), lr=1e-2, momentum=0.9)
    for optimizer in (adam, sgd):
        model(torch.randn(5, 4)).pow(2).mean().backward()
        optimizer.step()
        optimizer.zero_grad()
    return model, adam, sgd


def realistic_state():
    _, adam, sgd = trained_optimizers()
    generator = torch.Generator().manual_seed(7)
    return {
        "optimizer": adam.state_dict(),
        "sgd": sgd.state_dict(),
        "epoch": 3,
        "rng": {"data": generator.get_state()},
        "balancers": [{"coeff": 0.25, "history": [1.0, float("inf"), float("-inf")], "flag": True}],
        "nan": float("nan"),
        "nothing": None,
        "name": "ogm_ge",
        "shape": (2, (3, "x"), []),
        "int_keys": {0: "zero", 3: {5: torch.arange(3)}},
        "mixed_keys": {1: "int one", "1": "str one", (0, 1): "tuple"},
        "__dunder": {"__tensor__": "not a tensor tag"},
        "collide": {"a.b": torch.ones(2), "a": {"b": torch.zeros(2)}},
        "scalar": torch.tensor(2.5, dtype=torch.float64),
        "empty": torch.zeros(0, 3),
    }


def test_flatten_unflatten_round_trip_is_exact_through_json():
    state = realistic_state()
    tensors, meta = flatten_state(state)
    assert all(isinstance(t, torch.Tensor) for t in tensors.values())
    meta_from_disk = json.loads(json.dumps(meta, allow_nan=False))  # strict JSON: no NaN literals
    assert_same_tree(unflatten_state(tensors, meta_from_disk), state)
    assert isinstance(next(iter(unflatten_state(tensors, meta_from_disk)["optimizer"]["state"])), int)


def test_colliding_paths_keep_every_tensor():
    state = {"a.b": torch.ones(1), "a": {"b": torch.zeros(1)}, 0: torch.full((1,), 2.0), "0": torch.ones(2)}
    tensors, meta = flatten_state(state)
    assert len(tensors) == 4
    assert_same_tree(unflatten_state(tensors, meta), state)


def test_unsupported_value_names_its_path():
    with pytest.raises(TypeError, match="opt.hook"):
        flatten_state({"opt": {"hook": object()}})


@pytest.mark.parametrize("which", ["adam", "sgd"])
def test_restored_optimizer_takes_identical_next_steps(which):
    model, adam, sgd = trained_optimizers()
    optimizer = adam if which == "adam" else sgd
    tensors, meta = flatten_state(optimizer.state_dict())
    restored = unflatten_state({k: v.clone() for k, v in tensors.items()}, json.loads(json.dumps(meta)))
    twin = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    twin.load_state_dict(model.state_dict())
    twin_optimizer = type(optimizer)(twin.parameters(), lr=1.0)  # hyperparameters come from the state
    twin_optimizer.load_state_dict(restored)
    batches = torch.randn(3, 6, 4, generator=torch.Generator().manual_seed(1))
    for net, opt in ((model, optimizer), (twin, twin_optimizer)):
        for batch in batches:
            opt.zero_grad()
            net(batch).pow(2).mean().backward()
            opt.step()
    for a, b in zip(model.parameters(), twin.parameters()):
        assert torch.equal(a, b)


def test_generator_state_round_trip_reproduces_draws():
    generator = torch.Generator().manual_seed(123)
    torch.randn(10, generator=generator)
    tensors, meta = flatten_state({"gen": generator_state(generator)})
    expected = torch.randn(5, generator=generator)
    fresh = torch.Generator()
    set_generator_state(fresh, unflatten_state(tensors, json.loads(json.dumps(meta)))["gen"])
    assert torch.equal(torch.randn(5, generator=fresh), expected)


def model_state_with_sharing():
    weight = torch.randn(4, 3)
    return {
        "encoder.weight": weight,
        "head.weight": weight,  # tied: same storage
        "transposed": weight.t(),  # non-contiguous view of it
        "row": weight[1],  # a view into part of the storage
        "buffer": torch.tensor([1, 2], dtype=torch.int64),
    }


def test_save_load_round_trip(tmp_path):
    model_state = model_state_with_sharing()
    state = realistic_state()
    config = '[run]\nname = "x"\n'
    save_checkpoint(tmp_path / "last", model_state, state, config)
    assert sorted(p.name for p in (tmp_path / "last").iterdir()) == [
        "config.toml", "model.safetensors", "state.json", "state.safetensors"
    ]
    loaded = load_checkpoint(tmp_path / "last")
    assert isinstance(loaded, Checkpoint)
    assert loaded.config_toml == config
    assert_same_tree(loaded.model_state, {k: v.contiguous() for k, v in model_state.items()})
    assert_same_tree(loaded.state, state)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last"]


def test_loading_never_unpickles(tmp_path, monkeypatch):
    save_checkpoint(tmp_path / "ck", {"w": torch.ones(2)}, realistic_state(), "")

    def forbidden(*args, **kwargs):
        raise AssertionError("pickle used while loading a checkpoint")

    for name in ("load", "loads", "Unpickler"):
        monkeypatch.setattr(pickle, name, forbidden)
    monkeypatch.setattr(torch, "load", forbidden)
    load_checkpoint(tmp_path / "ck")


def save_version(path, version):
    save_checkpoint(path, {"w": torch.full((2,), float(version))}, {"version": version}, f"v = {version}\n")


def test_crash_after_writing_temp_leaves_old_checkpoint(tmp_path, monkeypatch):
    target = tmp_path / "last"
    save_version(target, 1)

    def crash(*args):
        raise RuntimeError("killed")

    monkeypatch.setattr(checkpoint, "_swap_into_place", crash)
    with pytest.raises(RuntimeError):
        save_version(target, 2)
    assert (tmp_path / "last.tmp" / "state.json").exists()  # the new one was fully staged
    assert load_checkpoint(target).state == {"version": 1}
    monkeypatch.undo()
    save_version(target, 3)
    assert load_checkpoint(target).state == {"version": 3}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last"]


def test_crash_between_renames_recovers_aside_directory(tmp_path, monkeypatch):
    target = tmp_path / "last"
    save_version(target, 1)
    real_replace, calls = os.replace, []

    def replace_then_crash(src, dst):
        calls.append((src, dst))
        if len(calls) == 2:  # target already moved aside, new one not yet in place
            raise RuntimeError("killed")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace_then_crash)
    with pytest.raises(RuntimeError):
        save_version(target, 2)
    monkeypatch.undo()
    assert not target.exists() and (tmp_path / "last.old").is_dir()
    loaded = load_checkpoint(target)
    assert loaded.state == {"version": 1} and loaded.config_toml == "v = 1\n"
    assert target.is_dir() and not (tmp_path / "last.old").exists()


def test_crash_while_deleting_aside_is_cleaned_by_next_save(tmp_path):
    target = tmp_path / "last"
    save_version(target, 2)
    save_version(tmp_path / "last.old", 1)  # as if the final delete never ran
    assert load_checkpoint(target).state == {"version": 2}  # a complete target wins
    save_version(target, 3)
    assert load_checkpoint(target).state == {"version": 3}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last"]


def test_corrupt_state_json_names_the_file(tmp_path):
    save_version(tmp_path / "ck", 1)
    (tmp_path / "ck" / "state.json").write_text('{"format": "mmcore-checkpoint", "vers')
    with pytest.raises(DataError, match="state.json") as error:
        load_checkpoint(tmp_path / "ck")
    assert error.value.path == str(tmp_path / "ck" / "state.json")


def test_state_json_pointing_at_missing_tensor_is_a_data_error(tmp_path):
    save_checkpoint(tmp_path / "ck", {}, {"t": torch.ones(1)}, "")
    document = json.loads((tmp_path / "ck" / "state.json").read_text())
    document["state"]["t"]["__tensor__"] = "nope"
    (tmp_path / "ck" / "state.json").write_text(json.dumps(document))
    with pytest.raises(DataError, match="nope"):
        load_checkpoint(tmp_path / "ck")


@pytest.mark.parametrize("name", ["model.safetensors", "state.safetensors", "config.toml", "state.json"])
def test_missing_file_names_the_file(tmp_path, name):
    save_version(tmp_path / "ck", 1)
    (tmp_path / "ck" / name).unlink()
    with pytest.raises(DataError, match=name.replace(".", r"\.")):
        load_checkpoint(tmp_path / "ck")


def test_truncated_safetensors_names_the_file(tmp_path):
    save_version(tmp_path / "ck", 1)
    path = tmp_path / "ck" / "model.safetensors"
    path.write_bytes(path.read_bytes()[:20])
    with pytest.raises(DataError, match="model.safetensors"):
        load_checkpoint(tmp_path / "ck")


def test_missing_checkpoint_directory(tmp_path):
    with pytest.raises(DataError, match="not found"):
        load_checkpoint(tmp_path / "absent")
