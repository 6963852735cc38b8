"""Loader throughput of every real-dataset format: samples per second with 0 and 2 worker processes.

For each format id a synthetic dataset of realistic per-sample size is written to a temporary folder
(benchmarks/_format_fixtures.py; nothing is downloaded), built through the config path as `mmcore
run` builds it, and its training split is read with the trainer's loader (`make_loader`: shuffled,
collated into Batches, training transforms on). Reported per (format, workers): the steady rate
after the first batch (`samples_per_s`), and the first batch's latency (worker start-up included).

    python benchmarks/data_throughput.py --out data_throughput.json
    python benchmarks/data_throughput.py --smoke          # tiny files, seconds (the test runs this)

Does loading starve a GPU? With `--step-device cuda` the audio-visual formats also train the
av-resnet model (two ResNet-18s, concat fusion, SGD) on the device: `compute samples/s` repeats one
batch already on the GPU (the step alone), `fed samples/s` takes every batch from the loader with
`--step-workers` workers (their lists repeat each clip `--repeat` times, so the decode work is real
while the fixture stays small), timed after the loader's prefetched batches are used up. Fed below
compute means the loader is the bottleneck. `--finish host` is the comparison row: the data's
device transforms (ImageNet normalisation of uint8 frames) run in the workers instead, so float
frames cross processes and the bus.

    python benchmarks/data_throughput.py --workers 0 2 8 --repeat 48 \
        --step-device cuda --step-workers 8 14 --finish device host --out gpu.json

CPU rates depend on the machine's load: the JSON records the load average before and after every cell.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import itertools
import json
import os
import pstats
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import torch
from torch.utils.data import Dataset, Subset

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/ is a folder of scripts, not a package
import _format_fixtures as fx  # noqa: E402

from mmcore.bench.loader import fed_rates, loader_rate  # noqa: E402
from mmcore.bench.timing import machine_description  # noqa: E402
from mmcore.build import build_data  # noqa: E402
from mmcore.config import parse_config  # noqa: E402
from mmcore.data.loading import make_loader  # noqa: E402
from mmcore.plugins import PluginHost  # noqa: E402

# per-sample sizes: CREMA-D frames are 480 x 360 and its clips ~2.5 s of 16 kHz audio; Kinetics
# frames 340 x 256 at 1 fps; AVE frames 480 x 360; sequences at the MMSA / MultiBench lengths.
FULL = {
    "av_per_class": 24,
    "image_size": 224,
    "frame": (480, 360),
    "ks_frame": (340, 256),
    "seconds": 2.5,
    "fbank": 1024,
    "ks_classes": 31,
    "ks_per_class": 4,
    "ave_classes": 10,
    "ave_per_class": 30,
    "rows": 2048,
    "batch": 16,
    "batches": 20,
    "repeat": 8,
}
SMOKE = {
    "av_per_class": 4,
    "image_size": 32,
    "frame": (48, 36),
    "ks_frame": (40, 30),
    "seconds": 0.5,
    "fbank": 32,
    "ks_classes": 3,
    "ks_per_class": 4,
    "ave_classes": 3,
    "ave_per_class": 4,
    "rows": 48,
    "batch": 4,
    "batches": 3,
    "repeat": 4,
}


def repeat_lines(path: Path, times: int) -> None:
    """List every line `times` times: more rows, the same files (decoding cost per row unchanged)."""
    path.write_text(path.read_text() * times)


def _crema(audio_format: str) -> Callable[[Path, dict], dict]:
    def write(root: Path, s: dict) -> dict:
        fx.write_crema_d(
            root,
            s["av_per_class"],
            1,
            audio_format,
            s["frame"],
            frames=3,
            seconds=s["seconds"],
            fbank_frames=s["fbank"],
        )
        repeat_lines(root / "train.csv", s["repeat"])
        return {
            "kind": "crema_d",
            "modalities": ["audio", "visual"],
            "root": str(root),
            "format": audio_format,
            "frames": 1,
            "image_size": s["image_size"],
            "trusted": True,
            "val_fraction": 0.25,
            "audio_frames": s["fbank"] if audio_format.startswith("fbank") else 0,
        }

    return write


def _kinetics(root: Path, s: dict) -> dict:
    fx.write_kinetics_sounds(
        root, s["ks_per_class"], 1, s["ks_classes"], s["ks_frame"], frames=9, fbank_frames=s["fbank"]
    )
    repeat_lines(root / "my_train.txt", s["repeat"])
    return {
        "kind": "kinetics_sounds",
        "modalities": ["audio", "visual"],
        "root": str(root),
        "num_classes": s["ks_classes"],
        "image_size": s["image_size"],
        "audio_frames": s["fbank"],
        "val_fraction": 0.25,
    }


def _ave(root: Path, s: dict) -> dict:
    categories = tuple(f"event {k}" for k in range(s["ave_classes"]))
    fx.write_ave(root, {"train": s["ave_per_class"], "val": 1, "test": 1}, categories, frame_size=s["frame"], frames=4)
    return {"kind": "ave", "modalities": ["audio", "visual"], "root": str(root), "trusted": True,
            "image_size": s["image_size"]}


def _av_mnist(root: Path, s: dict) -> dict:
    fx.write_av_mnist(root, s["rows"] + 16, 16)
    return {"kind": "av_mnist", "modalities": ["image", "audio"], "root": str(root), "val_size": 16}


def _sentiment(kind: str, tables: Callable[[dict], dict], audio_format: str) -> Callable[[Path, dict], dict]:
    def write(root: Path, s: dict) -> dict:
        fx.write_pickle(root / "data.pkl", tables(s))
        return {
            "kind": kind,
            "modalities": ["text", "audio", "vision"],
            "path": str(root / "data.pkl"),
            "format": audio_format,
            "trusted": True,
        }

    return write


def _multibench(kind: str) -> Callable[[Path, dict], dict]:
    def write(root: Path, s: dict) -> dict:
        counts = {"train": s["rows"], "valid": 8, "test": 8}
        fx.write_pickle(root / "data.pkl", fx.front_padded_tables(counts, (50, 50, 50), (300, 81, 371), (0.0, 1.0)))
        return {
            "kind": kind,
            "modalities": ["text", "audio", "vision"],
            "path": str(root / "data.pkl"),
            "trusted": True,
        }

    return write


FORMATS: dict[str, Callable[[Path, dict], dict]] = {
    "crema_d/ogm-wav": _crema("ogm-wav"),
    "crema_d/pmr-pkl1004": _crema("pmr-pkl1004"),
    "crema_d/fbank-pt": _crema("fbank-pt"),
    "kinetics_sounds/fbank-npy": _kinetics,
    "ave/pmr-pkl1004": _ave,
    "av_mnist/multibench-npy": _av_mnist,
    "cmu_mosi/mmsa": _sentiment(
        "cmu_mosi", lambda s: fx.mmsa_tables({"train": s["rows"], "valid": 8, "test": 8}), "mmsa"
    ),
    "cmu_mosei/mult": _sentiment(
        "cmu_mosei",
        lambda s: fx.front_padded_tables({"train": s["rows"], "valid": 8, "test": 8}, (50, 500, 500), (300, 74, 35)),
        "mult",
    ),
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


STEP_FORMATS = ("crema_d/ogm-wav", "crema_d/pmr-pkl1004", "kinetics_sounds/fbank-npy")
FINISH = ("device", "host")  # where the data's on_device transforms run: the trainer's way, or the workers


class FinishedOnHost(Dataset):
    """A split whose items get the data's device transforms in the loader workers: the float frames
    cross processes and the bus, as before frames travelled as uint8. The comparison row."""

    def __init__(self, base: Any, on_device: dict[str, Callable[[torch.Tensor], torch.Tensor]]) -> None:
        self.base, self.on_device = base, on_device

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = dict(self.base[index])
        item["inputs"] = {m: self.on_device[m](x) if m in self.on_device else x for m, x in item["inputs"].items()}
        return item


def fed_step_rates(
    data: dict, host: PluginHost, device: str, workers: int, batch_size: int, steps: int, finish: str
) -> dict[str, float]:
    """av-resnet training steps on `device` fed by a loader with `workers` workers, against the step
    alone (`mmcore.bench.loader.fed_rates`). The loader covers exactly the batches used, so its
    workers are gone when it ends."""
    from mmcore.trainer import Trainer

    config = {
        "run": {"name": "data-throughput-step", "device": device, "probe": False},
        "data": {**data, "batch_size": batch_size},
        "encoders": {m: {"kind": "resnet18"} for m in data["modalities"]},
        "fusion": {"kind": "concat"},
        "optimizer": {"kind": "sgd", "lr": 0.001, "momentum": 0.9},
    }
    trainer = Trainer(parse_config(config, host.registry), host.registry)
    split = trainer.data.splits["train"]
    if finish == "host":
        split = FinishedOnHost(split, trainer.data.on_device)
    rows = (2 * max(workers, 1) + steps) * batch_size
    if len(split) < rows:
        raise SystemExit(f"{data['kind']}: {len(split)} rows; raise --repeat to cover {rows}")
    loader = make_loader(  # pinned on a GPU, as the trainer's own loaders are
        Subset(split, range(rows)), batch_size, shuffle=True, seed=0, num_workers=workers, drop_last=True,
        pin_memory=trainer.evaluator.pin_memory,
    )
    return {**fed_rates(trainer, loader, workers, steps), "finish": finish}


def profile_samples(dataset: Any, count: int) -> str:
    """Where one sample's time goes: `count` training samples read in this process under cProfile,
    the functions with the most cumulative time (the untimed wall rate first)."""
    count = min(count, len(dataset))
    for index in range(count):  # files into the page cache, filters designed: the steady cost is timed
        dataset[index]
    start = time.perf_counter()
    for index in range(count):
        dataset[index]
    per_sample = (time.perf_counter() - start) / count
    profiler = cProfile.Profile()
    profiler.runcall(lambda: [dataset[index] for index in range(count)])
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(16)
    return f"{1e3 * per_sample:.2f} ms per sample without the profiler\n{out.getvalue()}"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny files (the test's mode)")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--formats", nargs="+", default=list(FORMATS), choices=list(FORMATS))
    parser.add_argument("--out", type=Path, help="write the results as JSON")
    parser.add_argument(
        "--repeat",
        type=int,
        help="list each CREMA-D / Kinetics-Sounds training clip this many times (default: 8, smoke 4)",
    )
    parser.add_argument("--batches", type=int, help="batches timed per cell (default: 20, smoke 3)")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads of this process (a loader worker has one; tiny ops only slow down with more)",
    )
    parser.add_argument("--profile", type=int, default=0, metavar="N",
                        help="also profile N samples of each format in this process (cProfile, cumulative)")
    parser.add_argument("--step-device", help="also time av-resnet steps fed by the loader on this device (cuda)")
    parser.add_argument("--step-workers", type=int, nargs="+", default=[8])
    parser.add_argument("--step-batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=30, help="fed steps timed, after the prefetched batches")
    parser.add_argument(
        "--finish", nargs="+", choices=FINISH, default=["device"],
        help="where the data's device transforms run in the fed steps: device (the trainer's way) or host (workers)",
    )
    args = parser.parse_args(argv)
    sizes = dict(SMOKE if args.smoke else FULL)
    sizes.update({key: value for key, value in (("repeat", args.repeat), ("batches", args.batches)) if value})
    torch.set_num_threads(args.threads)
    host = PluginHost()
    results: dict[str, Any] = {
        "machine": machine_description(torch.device(args.step_device or "cpu")),
        "batch_size": sizes["batch"],
        "cells": [],
        "note": "CPU rates on a machine shared with other jobs: see loadavg per cell",
    }
    with tempfile.TemporaryDirectory() as scratch:
        for name in args.formats:
            root = Path(scratch) / name.replace("/", "_")
            data = FORMATS[name](root, sizes)  # writes the fixture, returns its [data] table
            dataset = build_train_split(data, host)
            if args.profile:
                print(f"{name}: {profile_samples(dataset, args.profile)}", flush=True)
            for workers in args.workers:
                load_before = os.getloadavg()
                cell = {
                    "format": name,
                    "workers": workers,
                    **loader_rate(
                        make_loader(dataset, sizes["batch"], shuffle=True, seed=0, num_workers=workers, drop_last=True),
                        workers,
                        sizes["batches"],
                    ),
                }
                cell["loadavg_before"], cell["loadavg_after"] = load_before, os.getloadavg()
                results["cells"].append(cell)
                print(
                    f"{name:28s} workers={workers}  {cell['samples_per_s']:9.1f} samples/s  "
                    f"first batch {cell['first_batch_s']:.2f} s  load {load_before[0]:.1f}",
                    flush=True,
                )
            cells = itertools.product(args.step_workers, args.finish)
            for workers, finish in cells if args.step_device and name in STEP_FORMATS else ():
                step = {
                    "format": name,
                    **fed_step_rates(data, host, args.step_device, workers, args.step_batch, args.steps, finish),
                }
                results.setdefault("steps", []).append(step)
                print(
                    f"{name:28s} av-resnet on {args.step_device}: compute {step['compute_samples_per_s']:.0f} "
                    f"samples/s, fed by {workers} workers ({finish} finish) {step['fed_samples_per_s']:.0f} "
                    f"samples/s = {step['fed_samples_per_s'] / step['compute_samples_per_s']:.0%}",
                    flush=True,
                )
    if args.out:
        args.out.write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
