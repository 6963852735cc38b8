"""Cost of each method on one dataset: step time against the baseline measured side by side in one
process (timing.py), peak memory of training steps, and parameter count.

Step time: every method's Trainer is built from its cell config (the first seed), and their real
`train_step` calls alternate in rounds on the same prepared batches; the ratio is the median step
over the baseline's median step. With one torch thread on a CPU the default clock is this process's
CPU time, which counts our work and not our waiting on a machine shared with other jobs.

Peak memory: how much the training steps add on top of the built model, data and batches. On CUDA,
the allocator's peak (`torch.cuda.max_memory_allocated`) minus what was allocated before the steps,
in this process. On a CPU torch keeps no allocator statistics, so each method runs its steps in a
fresh process (spawned), and the growth of that process's peak resident set size over the steps is
reported (Linux: the peak is reset through /proc/self/clear_refs before the steps; elsewhere it is
not measured). Both are in MiB.
"""
from __future__ import annotations

import gc
import multiprocessing
import os
import re
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, Mapping, Sequence

import attrs
import torch

from mmcore.bench.grid import CostSettings
from mmcore.bench.timing import CLOCKS, machine_description, measure_steps, prepared_batches, synchronize, timed_step
from mmcore.trainer import Trainer

MIB = 2.0**20


def build_trainer(config: Any, registry: Any) -> Trainer:
    """A Trainer in training mode at epoch 0, as `fit` leaves it before its first step."""
    trainer = Trainer(config, registry)
    trainer.model.train()
    for balancer in trainer.balancers:
        balancer.on_epoch_start(0, trainer.control)
    return trainer


def parameter_count(trainer: Trainer) -> int:
    """Every parameter of the model, including fusions', balancers' and supervisors' own modules."""
    return sum(p.numel() for p in trainer.model.parameters())


def chosen_clock(settings: CostSettings, device: torch.device) -> str:
    if settings.clock != "auto":
        return settings.clock
    threads = settings.threads or torch.get_num_threads()
    return "process" if device.type == "cpu" and threads == 1 else "wall"


def measure_cost(configs: Mapping[str, Any], registry: Any, baseline: str, settings: CostSettings,
                 plugin_modules: Sequence[str] = ()) -> dict[str, Any]:
    """{"methods": {method: {step_ms, step_ratio, params, peak_mib}}, "clock", "settings", "machine"}."""
    threads = torch.get_num_threads()
    if settings.threads:
        torch.set_num_threads(settings.threads)
    try:
        load_before, started = _load(), time.perf_counter()
        trainers = {method: build_trainer(config, registry) for method, config in configs.items()}
        device = trainers[baseline].device
        clock = chosen_clock(settings, device)
        if clock == "process" and device.type != "cpu":
            clock = "wall"  # a GPU step's time is not this process's CPU time
        batches = prepared_batches(trainers[baseline], max(2, settings.memory_steps))
        times = measure_steps(trainers, batches, settings.rounds, settings.steps, settings.warmup, {clock: CLOCKS[clock]})
        step_ms = {m: 1e3 * statistics.median(t[clock]) for m, t in times.items()}
        params = {m: parameter_count(t) for m, t in trainers.items()}
        memory = _peak_memory(trainers, configs, batches, settings, plugin_modules) if settings.memory else {}
        machine = machine_description(device)
    finally:
        torch.set_num_threads(threads)
    methods = {m: {"step_ms": step_ms[m], "step_ratio": step_ms[m] / step_ms[baseline], "params": params[m],
                   "peak_mib": memory.get(m), "samples_ms": [1e3 * s for s in times[m][clock]]} for m in configs}
    return {"baseline": baseline, "clock": clock, "threads": settings.threads or threads, "methods": methods,
            "settings": settings_record(settings),
            "machine": machine | {"loadavg_before": load_before, "loadavg_after": _load()},
            "wall_s": time.perf_counter() - started}


def settings_record(settings: CostSettings) -> dict[str, Any]:
    """What a stored measurement was taken with; one taken with other settings is measured again."""
    return attrs.asdict(settings)


def _load() -> list[float] | None:
    return list(os.getloadavg()) if hasattr(os, "getloadavg") else None


def _peak_memory(trainers: Mapping[str, Trainer], configs: Mapping[str, Any], batches: list[Any],
                 settings: CostSettings, plugin_modules: Sequence[str]) -> dict[str, float | None]:
    device = next(iter(trainers.values())).device
    if device.type == "cuda":
        return {m: cuda_step_peak(t, batches, settings.memory_steps) for m, t in trainers.items()}
    from mmcore.config import dump_config

    texts = {m: dump_config(c) for m, c in configs.items()}
    context = multiprocessing.get_context("spawn")  # a fresh interpreter: nothing of ours in its heap
    peaks = {}
    for method in configs:
        with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
            peaks[method] = pool.submit(cpu_step_peak_in_child, texts[method], list(plugin_modules),
                                        settings.memory_steps, settings.threads).result()
    return peaks


def cuda_step_peak(trainer: Trainer, batches: list[Any], steps: int) -> float:
    """MiB the allocator's peak rises above its level before `steps` training steps."""
    synchronize(trainer.device)
    gc.collect()
    torch.cuda.reset_peak_memory_stats(trainer.device)
    before = torch.cuda.memory_allocated(trainer.device)
    for i in range(steps):
        timed_step(trainer, batches[i % len(batches)])
    synchronize(trainer.device)
    return (torch.cuda.max_memory_allocated(trainer.device) - before) / MIB


def cpu_step_peak_in_child(config_toml: str, plugin_modules: list[str], steps: int, threads: int) -> float | None:
    """In a spawned process: build the method's trainer and batches, reset the peak resident set
    size, run `steps` steps; MiB the peak rose above the resident size before them (None off Linux)."""
    from mmcore.config import parse_config
    from mmcore.plugins import PluginHost

    if threads:
        torch.set_num_threads(threads)
    host = PluginHost(modules=plugin_modules)
    trainer = build_trainer(parse_config(config_toml, host.registry), host.registry)
    batches = prepared_batches(trainer, 2)
    gc.collect()
    if not _reset_peak_rss():
        return None
    before = _status_kib("VmRSS")
    for i in range(steps):
        timed_step(trainer, batches[i % len(batches)])
    return (_status_kib("VmHWM") - before) * 1024 / MIB


_STATUS = Path("/proc/self/status")


def _reset_peak_rss() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")  # "5": reset the peak RSS to the current RSS
    except OSError:
        return False
    return _STATUS.exists()


def _status_kib(field: str) -> int:
    found = re.search(rf"^{field}:\s+(\d+) kB", _STATUS.read_text(), re.MULTILINE)
    if found is None:
        raise OSError(f"{_STATUS} has no {field}")
    return int(found.group(1))
