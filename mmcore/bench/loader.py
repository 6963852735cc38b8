"""Does loading keep up? The loader's own rate, and training steps fed by it against the same step on
a batch already on the device. Shared by `mmcore loader` (a user's config and data) and
`benchmarks/data_throughput.py` (every format on synthetic files)."""
from __future__ import annotations

import itertools
import time
from typing import Any, Iterable

from mmcore.bench.timing import synchronize
from mmcore.types import Batch


def loader_rate(loader: Iterable[Batch], workers: int, batches: int) -> dict[str, float]:
    """One pass of a fresh loader: the first batch's latency (worker start-up included), then the
    steady samples/s over up to `batches` batches. W workers deliver their first W batches together
    (each makes one), so the clock starts after that first round; with no workers, after the first
    batch."""
    start = time.perf_counter()
    stream = iter(loader)
    next(stream)
    first = time.perf_counter() - start
    for _ in itertools.islice(stream, max(workers - 1, 0)):
        pass
    count, steady_start = 0, time.perf_counter()
    for batch in itertools.islice(stream, batches):
        count += batch.size
    steady = time.perf_counter() - steady_start
    del stream  # its workers stop now, not when the garbage collector gets to them
    return {"samples_per_s": count / steady if count else float("nan"), "first_batch_s": first, "samples": count}


def step_rate(trainer: Any, batch: Batch, steps: int) -> float:
    """Samples/s of `steps` training steps on one batch already on the trainer's device."""
    synchronize(trainer.device)
    start = time.perf_counter()
    for _ in range(steps):
        trainer.train_step([batch])
    synchronize(trainer.device)
    return steps * batch.size / (time.perf_counter() - start)


def fed_rates(trainer: Any, loader: Iterable[Batch], workers: int, steps: int) -> dict[str, Any]:
    """Training steps fed by `loader` (through `trainer.to_device`) against the step alone.

    The step alone repeats the loader's first batch, timed before and after the fed steps while no
    loader worker is alive. The fed clock starts once the loader's prefetch (2 batches per worker)
    is used up, so it times the steady rate rather than a full queue. `loader` must hold at least
    that prefetch plus `steps` batches."""
    resident = trainer.to_device(next(iter(loader)))  # that iterator and its workers are gone at once
    for _ in range(3):  # warm-up: kernels chosen, memory pools grown
        trainer.train_step([resident])
    before = step_rate(trainer, resident, steps)
    prefetched = 2 * max(workers, 1)
    stream = iter(loader)
    for batch in itertools.islice(stream, prefetched):
        trainer.train_step([trainer.to_device(batch)])
    synchronize(trainer.device)
    fed, timed, start = 0, 0, time.perf_counter()
    for batch in itertools.islice(stream, steps):
        trainer.train_step([trainer.to_device(batch)])
        fed, timed = fed + batch.size, timed + 1
    synchronize(trainer.device)
    elapsed = time.perf_counter() - start
    del stream
    if timed < steps:
        raise ValueError(f"the loader ran out after {prefetched} + {timed} batches; it needs {prefetched} + {steps}")
    after = step_rate(trainer, resident, steps)
    compute = (before + after) / 2
    return {"compute_samples_per_s": compute, "compute_before_after": [before, after],
            "fed_samples_per_s": fed / elapsed, "fed_share": fed / elapsed / compute, "fed_samples": fed,
            "workers": workers, "batch_size": resident.size}
