"""Checkpoints without pickle: tensors in safetensors, everything else in JSON.

A checkpoint directory holds `model.safetensors` (the model's state dict), `state.safetensors`
and `state.json` (the nested trainer state, flattened by `flatten_state`) and `config.toml` (the
resolved config). Loading one reads tensors and JSON only, so it never runs code.

Atomic replacement and the recovery rule
----------------------------------------
`save_checkpoint(target, ...)` writes every file into the sibling `<target>.tmp`, fsyncs it, then
renames `target` to `<target>.old`, renames `<target>.tmp` to `target` and deletes `<target>.old`.
Renames are atomic and only complete directories are ever renamed, so after a crash at any point:

- `target` exists: it is complete (old or new). A leftover `.tmp` is a partial write and a leftover
  `.old` is the previous checkpoint; both are discarded by the next save.
- `target` is missing but `<target>.old` exists: the crash fell between the two renames; `.old` is
  the previous complete checkpoint. `load_checkpoint` renames it back into place.
"""
from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path
from typing import Any

import attrs
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import Tensor

from mmcore.errors import DataError

MODEL_FILE = "model.safetensors"
STATE_TENSORS_FILE = "state.safetensors"
STATE_JSON_FILE = "state.json"
CONFIG_FILE = "config.toml"
FORMAT_NAME = "mmcore-checkpoint"
FORMAT_VERSION = 1
ORDER_METADATA_KEY = "mmcore.order"

# Tags of the JSON skeleton: an object with exactly one of these keys is an encoded value. Plain
# dicts never carry "__"-prefixed keys (such dicts are encoded as DICT_TAG), so nothing is ambiguous.
TENSOR_TAG = "__tensor__"
TUPLE_TAG = "__tuple__"
DICT_TAG = "__dict__"
FLOAT_TAG = "__float__"
_TAGS = (TENSOR_TAG, TUPLE_TAG, DICT_TAG, FLOAT_TAG)


@attrs.frozen
class Checkpoint:
    model_state: dict[str, Tensor]
    state: dict[str, Any]
    config_toml: str


# ---------------------------------------------------------------- flatten / unflatten


def flatten_state(tree: Any) -> tuple[dict[str, Tensor], Any]:
    """Split a nested state into tensors keyed by dotted path and a JSON-able skeleton.

    Supports dicts (any JSON-scalar keys, including ints), lists, tuples, tensors, bools, ints,
    floats (inf and nan too), strings and None. `unflatten_state` restores the exact structure.
    """
    tensors: dict[str, Tensor] = {}
    meta = _encode(tree, "", tensors)
    return tensors, meta


def unflatten_state(tensors: dict[str, Tensor], meta: Any) -> Any:
    """Rebuild the tree `flatten_state` split; raises KeyError for a tensor missing from `tensors`."""
    if isinstance(meta, list):
        return [unflatten_state(tensors, item) for item in meta]
    if isinstance(meta, dict):
        if len(meta) == 1 and next(iter(meta)) in _TAGS:
            return _decode_tagged(tensors, meta)
        return {key: unflatten_state(tensors, value) for key, value in meta.items()}
    return meta


def _encode(value: Any, path: str, tensors: dict[str, Tensor]) -> Any:
    if isinstance(value, Tensor):
        name = _unique_name(path or "tensor", tensors)
        tensors[name] = value
        return {TENSOR_TAG: name}
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        value = float(value)  # numpy float scalars are float subclasses with their own repr
        return value if math.isfinite(value) else {FLOAT_TAG: repr(value)}
    if isinstance(value, tuple):
        return {TUPLE_TAG: [_encode(v, _join(path, i), tensors) for i, v in enumerate(value)]}
    if isinstance(value, list):
        return [_encode(v, _join(path, i), tensors) for i, v in enumerate(value)]
    if isinstance(value, dict):
        return _encode_dict(value, path, tensors)
    raise TypeError(f"cannot checkpoint {type(value).__name__} at {path or '<root>'!r}")


def _encode_dict(value: dict, path: str, tensors: dict[str, Tensor]) -> Any:
    plain = all(isinstance(k, str) and not k.startswith("__") for k in value)
    if plain:
        return {k: _encode(v, _join(path, k), tensors) for k, v in value.items()}
    pairs = []
    for key, item in value.items():
        key_tensors: dict[str, Tensor] = {}
        encoded_key = _encode(key, path, key_tensors)
        if key_tensors:  # keys must decode without tensors
            raise TypeError(f"cannot checkpoint a tensor inside a dict key at {path or '<root>'!r}")
        pairs.append([encoded_key, _encode(item, _join(path, key), tensors)])
    return {DICT_TAG: pairs}


def _decode_tagged(tensors: dict[str, Tensor], meta: dict) -> Any:
    tag, payload = next(iter(meta.items()))
    if tag == TENSOR_TAG:
        return tensors[payload]
    if tag == FLOAT_TAG:
        return float(payload)
    if tag == TUPLE_TAG:
        return tuple(unflatten_state(tensors, item) for item in payload)
    # Keys are scalars or tuples of scalars, so they decode without tensors.
    return {unflatten_state({}, k): unflatten_state(tensors, v) for k, v in payload}


def _join(path: str, key: Any) -> str:
    return f"{path}.{key}" if path else str(key)


def _unique_name(path: str, taken: dict[str, Tensor]) -> str:
    # Dotted paths can collide ({"a.b": x} and {"a": {"b": y}}, or int 0 and str "0"); the
    # skeleton stores the exact name, so a numbered suffix keeps every tensor reachable.
    name, n = path, 1
    while name in taken:
        name, n = f"{path}#{n}", n + 1
    return name


# ---------------------------------------------------------------- generators


def generator_state(generator: torch.Generator) -> Tensor:
    """A generator's state as a uint8 CPU tensor (checkpointable like any other tensor)."""
    return generator.get_state()


def set_generator_state(generator: torch.Generator, state: Tensor) -> None:
    generator.set_state(state.to(device="cpu", dtype=torch.uint8))


# ---------------------------------------------------------------- save


def save_checkpoint(
    directory: Path | str, model_state: dict[str, Tensor], state: dict, config_toml: str
) -> None:
    """Write a complete checkpoint to `directory`, replacing any previous one atomically."""
    target = Path(directory)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging, aside = _staging_path(target), _aside_path(target)
    _remove_tree(staging)  # a partial write from a crashed save
    staging.mkdir()
    _write_checkpoint_files(staging, model_state, state, config_toml)
    _swap_into_place(staging, target, aside)


def _write_checkpoint_files(
    staging: Path, model_state: dict[str, Tensor], state: dict, config_toml: str
) -> None:
    tensors, meta = flatten_state(state)
    document = {"format": FORMAT_NAME, "version": FORMAT_VERSION, "state": meta}
    _save_tensors(model_state, staging / MODEL_FILE)
    _save_tensors(tensors, staging / STATE_TENSORS_FILE)
    (staging / STATE_JSON_FILE).write_text(json.dumps(document, allow_nan=False), encoding="utf-8")
    (staging / CONFIG_FILE).write_text(config_toml, encoding="utf-8")
    for name in (MODEL_FILE, STATE_TENSORS_FILE, STATE_JSON_FILE, CONFIG_FILE):
        _fsync_path(staging / name)
    _fsync_path(staging)


def _swap_into_place(staging: Path, target: Path, aside: Path) -> None:
    if target.exists():
        _remove_tree(aside)  # beside a complete target, an aside is the checkpoint before it
        os.replace(target, aside)
        _fsync_path(target.parent)
    os.replace(staging, target)
    _fsync_path(target.parent)
    _remove_tree(aside)


def _save_tensors(tensors: dict[str, Tensor], path: Path) -> None:
    # safetensors sorts its entries; the recorded order gives state dicts back in their own order.
    order = json.dumps(list(tensors))
    save_file(_storable(tensors), str(path), metadata={ORDER_METADATA_KEY: order})


def _storable(tensors: dict[str, Tensor]) -> dict[str, Tensor]:
    """Detached, contiguous CPU copies that own their storage (safetensors refuses shared storage)."""
    out = {}
    for name, tensor in tensors.items():
        tensor = tensor.detach()
        if tensor.device.type == "cpu":
            out[name] = tensor.clone(memory_format=torch.contiguous_format)
        else:
            out[name] = tensor.to("cpu", memory_format=torch.contiguous_format)
    return out


def _staging_path(target: Path) -> Path:
    return target.with_name(target.name + ".tmp")


def _aside_path(target: Path) -> Path:
    return target.with_name(target.name + ".old")


def _remove_tree(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def _fsync_path(path: Path) -> None:
    flags = os.O_RDONLY | (os.O_DIRECTORY if path.is_dir() and hasattr(os, "O_DIRECTORY") else 0)
    try:
        fd = os.open(path, flags)
    except OSError:  # directories cannot be opened for fsync on some platforms (Windows)
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# ---------------------------------------------------------------- load


def recover_checkpoint(directory: Path | str) -> Path:
    """Apply the recovery rule (module docstring) and return the checkpoint's directory."""
    target = Path(directory)
    aside = _aside_path(target)
    if not target.exists() and aside.is_dir():
        try:
            os.replace(aside, target)
        except OSError:  # a read-only location: read the previous checkpoint where it lies
            return aside
    return target


def load_checkpoint(directory: Path | str, device: str | torch.device = "cpu") -> Checkpoint:
    """Read a checkpoint; a missing or corrupt file raises DataError naming that file."""
    root = recover_checkpoint(directory)
    if not root.is_dir():
        raise DataError(root, "checkpoint directory not found")
    model_state = _read_tensors(root / MODEL_FILE, device)
    state_tensors = _read_tensors(root / STATE_TENSORS_FILE, device)
    meta = _read_state_json(root / STATE_JSON_FILE)
    try:
        state = unflatten_state(state_tensors, meta)
    except KeyError as missing:
        raise DataError(
            root / STATE_JSON_FILE, f"refers to tensor {missing} absent from {STATE_TENSORS_FILE}"
        ) from None
    except (TypeError, ValueError, AttributeError) as error:
        raise DataError(root / STATE_JSON_FILE, f"malformed state skeleton ({error})") from None
    return Checkpoint(model_state=model_state, state=state, config_toml=_read_text(root / CONFIG_FILE))


def _read_tensors(path: Path, device: str | torch.device) -> dict[str, Tensor]:
    if not path.is_file():
        raise DataError(path, "missing checkpoint file")
    try:
        with safe_open(str(path), framework="pt", device=str(device)) as handle:
            order = json.loads((handle.metadata() or {}).get(ORDER_METADATA_KEY, "[]"))
            stored = set(handle.keys())
            names = [n for n in order if n in stored] + sorted(stored.difference(order))
            return {name: handle.get_tensor(name) for name in names}
    except Exception as error:  # safetensors raises its own error type for corrupt headers
        raise DataError(path, f"unreadable safetensors file ({error})") from None


def _read_state_json(path: Path) -> Any:
    text = _read_text(path)
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        raise DataError(path, f"corrupt JSON ({error})") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT_NAME:
        raise DataError(path, f"not an {FORMAT_NAME} state file")
    if document.get("version") != FORMAT_VERSION:
        raise DataError(path, f"unsupported checkpoint version {document.get('version')!r}")
    if "state" not in document:
        raise DataError(path, "no 'state' entry")
    return document["state"]


def _read_text(path: Path) -> str:
    if not path.is_file():
        raise DataError(path, "missing checkpoint file")
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise DataError(path, f"unreadable ({error})") from None
