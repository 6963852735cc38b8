"""Loader throughput of every real-dataset format: samples per second with 0 and 2 worker processes.

For each format id a synthetic dataset of realistic per-sample size is written to a temporary folder
(benchmarks/_format_fixtures.py; nothing is downloaded), built through the config path as `mmcore
run` builds it, and its training split is read with the trainer's loader (`make_loader`: shuffled,
collated into Batches, training transforms on). Reported per (format, workers): the steady rate
after the first batch (`samples_per_s`), and the first batch's latency (worker start-up included).

    python benchmarks/data_throughput.py --out data_throughput.json
    python benchmarks/data_throughput.py --smoke          # tiny files, seconds (the test runs this)

A 224 x 224 ResNet-18 step on a GPU consumes a few hundred samples per second per GPU; a format
whose rate with workers is below the step rate starves it. CPU rates depend on the machine's load:
the JSON records the load average before and after every cell.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/ is a folder of scripts, not a package
import _format_fixtures as fx  # noqa: E402

from mmcore.build import build_data  # noqa: E402
from mmcore.config import parse_config  # noqa: E402
from mmcore.data.loading import make_loader  # noqa: E402
from mmcore.plugins import PluginHost  # noqa: E402

# per-sample sizes: CREMA-D frames are 480 x 360 and its clips ~2.5 s of 16 kHz audio; Kinetics
# frames 340 x 256 at 1 fps; AVE frames 480 x 360; sequences at the MMSA / MultiBench lengths.
FULL = {"av_per_class": 24, "frame": (480, 360), "ks_frame": (340, 256), "seconds": 2.5, "fbank": 1024,
        "ks_classes": 31, "ks_per_class": 4, "ave_per_class": 40, "rows": 2048, "batch": 16}
SMOKE = {"av_per_class": 2, "frame": (48, 36), "ks_frame": (40, 30), "seconds": 0.5, "fbank": 32,
         "ks_classes": 3, "ks_per_class": 4, "ave_per_class": 4, "rows": 48, "batch": 4}


def _crema(audio_format: str) -> Callable[[Path, dict], dict]:
    def write(root: Path, s: dict) -> dict:
        fx.write_crema_d(root, s["av_per_class"], 1, audio_format, s["frame"], frames=3, seconds=s["seconds"],
                         fbank_frames=s["fbank"])
        return {"kind": "crema_d", "modalities": ["audio", "visual"], "root": str(root), "format": audio_format,
                "frames": 1, "trusted": True, "audio_frames": s["fbank"] if audio_format.startswith("fbank") else 0}
    return write


def _kinetics(root: Path, s: dict) -> dict:
    fx.write_kinetics_sounds(root, s["ks_per_class"], 1, s["ks_classes"], s["ks_frame"], frames=9, fbank_frames=s["fbank"])
    return {"kind": "kinetics_sounds", "modalities": ["audio", "visual"], "root": str(root),
            "num_classes": s["ks_classes"], "audio_frames": s["fbank"]}


def _ave(root: Path, s: dict) -> dict:
    fx.write_ave(root, {"train": s["ave_per_class"], "val": 1, "test": 1}, frame_size=s["frame"], frames=6)
    return {"kind": "ave", "modalities": ["audio", "visual"], "root": str(root), "trusted": True}


def _av_mnist(root: Path, s: dict) -> dict:
    fx.write_av_mnist(root, s["rows"] + 16, 16)
    return {"kind": "av_mnist", "modalities": ["image", "audio"], "root": str(root), "val_size": 16}


def _sentiment(kind: str, tables: Callable[[dict], dict], audio_format: str) -> Callable[[Path, dict], dict]:
    def write(root: Path, s: dict) -> dict:
        fx.write_pickle(root / "data.pkl", tables(s))
        return {"kind": kind, "modalities": ["text", "audio", "vision"], "path": str(root / "data.pkl"),
                "format": audio_format, "trusted": True}
    return write


def _multibench(kind: str) -> Callable[[Path, dict], dict]:
    def write(root: Path, s: dict) -> dict:
        counts = {"train": s["rows"], "valid": 8, "test": 8}
        fx.write_pickle(root / "data.pkl", fx.front_padded_tables(counts, (50, 50, 50), (300, 81, 371), (0.0, 1.0)))
        return {"kind": kind, "modalities": ["text", "audio", "vision"], "path": str(root / "data.pkl"), "trusted": True}
    return write


FORMATS: dict[str, Callable[[Path, dict], dict]] = {
    "crema_d/ogm-wav": _crema("ogm-wav"),
    "crema_d/pmr-pkl1004": _crema("pmr-pkl1004"),
    "crema_d/fbank-pt": _crema("fbank-pt"),
    "kinetics_sounds/fbank-npy": _kinetics,
    "ave/pmr-pkl1004": _ave,
    "av_mnist/multibench-npy": _av_mnist,
    "cmu_mosi/mmsa": _sentiment("cmu_mosi", lambda s: fx.mmsa_tables({"train": s["rows"], "valid": 8, "test": 8}), "mmsa"),
    "cmu_mosei/mult": _sentiment(
        "cmu_mosei", lambda s: fx.front_padded_tables({"train": s["rows"], "valid": 8, "test": 8}, (50, 500, 500), (300, 74, 35)),
        "mult"),
    "ur_funny/multibench-pkl": _multibench("ur_funny"),
    "mustard/multibench-pkl": _multibench("mustard"),
}


def build_train_split(data: dict, host: PluginHost) -> Any:
    config = {
        "run": {"name": "data-throughput", "device": "cpu"},
        "data": data,
        "encoders": {m: {"kind": "mlp", "hidden": [8]} for m in data["modalities"]},
        "fusion": {"kind": "concat"},
        "optimizer": {"kind": "sgd"},
    }
    return build_data(parse_config(config, host.registry), host.registry).splits["train"]


def measure(dataset: Any, batch_size: int, workers: int) -> dict[str, float]:
    """One shuffled epoch of the split: the first batch's latency, then the steady rate."""
    start = time.perf_counter()
    batches = iter(make_loader(dataset, batch_size, shuffle=True, seed=0, num_workers=workers, drop_last=True))
    next(batches)
    first = time.perf_counter() - start
    count, steady_start = 0, time.perf_counter()
    for batch in batches:
        count += batch.size
    steady = time.perf_counter() - steady_start
    return {"samples_per_s": count / steady if count else float("nan"), "first_batch_s": first, "samples": count}


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    info = Path("/proc/cpuinfo")
    if info.exists():
        names = [line.split(":", 1)[1].strip() for line in info.read_text().splitlines() if line.startswith("model name")]
        cpu = names[0] if names else cpu
    return {"cpu": cpu, "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
            "python": platform.python_version()}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny files (the test's mode)")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--formats", nargs="+", default=list(FORMATS), choices=list(FORMATS))
    parser.add_argument("--out", type=Path, help="write the results as JSON")
    args = parser.parse_args(argv)
    sizes = SMOKE if args.smoke else FULL
    host = PluginHost()
    results: dict[str, Any] = {"machine": machine(), "batch_size": sizes["batch"], "cells": [],
                               "note": "CPU rates on a machine shared with other jobs: see loadavg per cell"}
    with tempfile.TemporaryDirectory() as scratch:
        for name in args.formats:
            root = Path(scratch) / name.replace("/", "_")
            dataset = build_train_split(FORMATS[name](root, sizes), host)
            for workers in args.workers:
                load_before = os.getloadavg()
                cell = {"format": name, "workers": workers, **measure(dataset, sizes["batch"], workers)}
                cell["loadavg_before"], cell["loadavg_after"] = load_before, os.getloadavg()
                results["cells"].append(cell)
                print(f"{name:28s} workers={workers}  {cell['samples_per_s']:9.1f} samples/s  "
                      f"first batch {cell['first_batch_s']:.2f} s  load {load_before[0]:.1f}", flush=True)
    if args.out:
        args.out.write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
