"""Shared by the format tests: the fixture writers of benchmarks/_format_fixtures.py, and loading a
dataset through the config path (a TOML file, load_config, then the data builder the Trainer uses)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

import tomli_w

from mmcore.build import build_data
from mmcore.config import load_config
from mmcore.data.base import DataBundle
from mmcore.data.loading import collate
from mmcore.plugins import PluginHost

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
_HOST: list[PluginHost] = []


def fixtures() -> Any:
    """benchmarks/_format_fixtures.py as a module (benchmarks/ is not a package)."""
    name = "_format_fixtures"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def host() -> PluginHost:
    if not _HOST:
        _HOST.append(PluginHost())
    return _HOST[0]


def run_config(data: dict[str, Any], **run: Any) -> dict[str, Any]:
    """A whole run config around a [data] table: one small mlp encoder per modality, concat fusion."""
    return {
        "run": {"name": "formats", "epochs": 1, "device": "cpu", "probe": False, "value_every_epoch": False, **run},
        "data": data,
        "encoders": {m: {"kind": "mlp", "hidden": [8]} for m in data["modalities"]},
        "fusion": {"kind": "concat"},
        "optimizer": {"kind": "sgd", "lr": 0.01},
    }


def load_bundle(tmp_path: Path, data: dict[str, Any]) -> DataBundle:
    """Write the config as TOML, load it as `mmcore run` does, and build its data."""
    path = tmp_path / "run.toml"
    path.write_text(tomli_w.dumps(run_config(data)))
    config = load_config(path, host().registry)
    return build_data(config, host().registry)


def whole(split: Any) -> Any:
    """Every row of a split as one collated Batch."""
    return collate([split[i] for i in range(len(split))])


def fixture_data(dataset: str, data: dict[str, Any], folder: Path) -> dict[str, Any]:
    """[data] keys that point a configs/<dataset>/*.toml at a small fixture of that dataset's layout
    under `folder` (written on first use), with small frames."""
    fx, target = fixtures(), folder / dataset
    fresh = not target.exists()
    if dataset == "crema_d":
        if fresh:
            fx.write_crema_d(target, 4, 1, frames=3)
        return {"root": str(target), "image_size": 32, "val_fraction": 0.25}
    if dataset == "kinetics_sounds":
        if fresh:
            fx.write_kinetics_sounds(target, 2, 1, num_classes=31, frames=3, fbank_frames=1024)
        return {"root": str(target), "image_size": 32, "val_fraction": 0.5}
    if dataset == "ave":
        if fresh:
            fx.write_ave(target, {"train": 4, "val": 1, "test": 1})
        return {"root": str(target), "image_size": 32, "trusted": True}
    if dataset == "av_mnist":
        if fresh:
            fx.write_av_mnist(target, 40, 8)
        return {"root": str(target), "val_size": 8}
    counts = {"train": 24, "valid": 8, "test": 8}
    path = target / f"{data.get('format', 'default')}.pkl"
    if not path.exists():
        if data.get("format", "mmsa") == "mmsa" and dataset in ("cmu_mosi", "cmu_mosei"):
            tables = fx.mmsa_tables(counts, (50, 50, 50), (768, 74, 35))
        else:
            tables = fx.front_padded_tables(counts, (50, 50, 50), (300, 81, 371), (0.0, 1.0))
        fx.write_pickle(path, tables)
    return {"path": str(path), "trusted": True}
