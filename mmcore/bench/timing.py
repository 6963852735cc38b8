"""Side-by-side step timing: variants of one run (joint training and methods) built in one process,
their real `Trainer.train_step` calls alternated in rounds, so load from other jobs on a shared
machine hits every variant alike. Used by `mmcore bench` (cost.py) and the scripts in benchmarks/.
"""
from __future__ import annotations

import os
import platform
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping

import torch

if TYPE_CHECKING:
    from mmcore.trainer import Trainer
    from mmcore.types import Batch, StepState

Clock = Callable[[], float]

# wall: elapsed time. process: CPU seconds of this process, all threads; on a CPU shared with other
# jobs (use one torch thread with it) it counts our work, not our waiting. Not for CUDA: a GPU
# step's time is not this process's CPU time.
CLOCKS: dict[str, Clock] = {"wall": time.perf_counter, "process": time.process_time}
WALL: Mapping[str, Clock] = {"wall": time.perf_counter}


def prepared_batches(trainer: Trainer, count: int) -> list[Batch]:
    """The first `count` training batches, already on the device: the loader is not being timed."""
    batches = []
    for batch in trainer.evaluator.train_loader(0, None):
        batches.append(trainer.to_device(batch))
        if len(batches) == count:
            break
    return batches


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed_step(trainer: Trainer, batch: Batch, clocks: Mapping[str, Clock] = WALL) -> tuple[dict[str, float], StepState]:
    """Seconds of one real training step on each clock, and the step's state."""
    synchronize(trainer.device)
    started = {name: clock() for name, clock in clocks.items()}
    state = trainer.train_step([batch])
    synchronize(trainer.device)
    seconds = {name: clock() - started[name] for name, clock in clocks.items()}
    trainer.step += 1
    return seconds, state


def measure_steps(trainers: Mapping[str, Trainer], batches: list[Batch], rounds: int, steps: int, warmup: int,
                  clocks: Mapping[str, Clock] = WALL) -> dict[str, dict[str, list[float]]]:
    """Per-step seconds {variant: {clock: [...]}}: `warmup` untimed steps each, then `rounds` rounds
    of `steps` consecutive steps per variant, the variant that goes first rotating every round."""
    for trainer in trainers.values():
        for i in range(warmup):
            timed_step(trainer, batches[i % len(batches)], clocks)
    times: dict[str, dict[str, list[float]]] = {v: {c: [] for c in clocks} for v in trainers}
    order = list(trainers)
    for r in range(rounds):
        for variant in order[r % len(order):] + order[: r % len(order)]:
            for i in range(steps):
                seconds, _ = timed_step(trainers[variant], batches[(r * steps + i) % len(batches)], clocks)
                for clock, value in seconds.items():
                    times[variant][clock].append(value)
    return times


def machine_description(device: torch.device) -> dict[str, Any]:
    """CPU model, core and thread counts, versions, the device (and the GPU's name)."""
    cpu = platform.processor() or platform.machine()
    if Path("/proc/cpuinfo").exists():
        names = [line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                 if line.startswith("model name")]
        cpu = names[0] if names else cpu
    described = {"cpu": cpu, "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                 "torch": torch.__version__, "python": platform.python_version(), "device": str(device)}
    if device.type == "cuda":
        described["gpu"] = torch.cuda.get_device_name(device)
    return described
