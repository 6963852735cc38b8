"""`mmcore loader CONFIG`: how fast a run's training data loads with N workers, and with `--feed`
whether that keeps the run's device busy (steps fed by the loader against the step alone)."""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from mmcore.errors import UsageError


def _workers(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"a number of workers is 0 or more (got {text})")
    return value


def add_loader_command(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    loader = sub.add_parser(
        "loader", parents=parents, help="how fast a config's training data loads, and whether it keeps the device busy",
        description="Read the config's training split with its loader (training transforms, shuffling, pinning "
                    "on a GPU) and report samples/s for each number of worker processes. With --feed, also "
                    "train on the config's device: steps fed by the loader against the same step on a batch "
                    "already there. Nothing is written unless --out is given.")
    loader.add_argument("config", type=Path)
    loader.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    loader.add_argument("--workers", type=_workers, nargs="+", metavar="N",
                        help="worker counts to try (default: the config's data.num_workers)")
    loader.add_argument("--batches", type=int, default=20, help="batches timed per worker count (default 20)")
    loader.add_argument("--feed", action="store_true", help="also time training steps fed by the loader")
    loader.add_argument("--steps", type=int, default=30, help="fed steps timed per worker count (default 30)")
    loader.add_argument("--out", type=Path, help="write the figures as JSON")
    loader.set_defaults(handler=run_loader_command)


def run_loader_command(args: argparse.Namespace, host: Any) -> int:
    from mmcore.bench.loader import loader_rate
    from mmcore.cli import _load
    from mmcore.trainer import Trainer

    config = _load(args, host)
    trainer = Trainer(config, host.registry)
    try:
        workers = args.workers or [config.data.num_workers]
        rows, batch = len(trainer.data.splits["train"]), config.data.batch_size
        if args.feed:
            _check_feed_length(len(trainer.evaluator.train_loader(0, None, num_workers=0)), max(workers))
        print(f"{args.config}: training split of {rows:,} rows, batch {batch}, device {trainer.device}")
        result: dict[str, Any] = {"config": str(args.config), "rows": rows, "batch_size": batch, "loader": []}
        print(f"{'workers':>7}  {'samples/s':>10}  {'first batch':>11}")
        for count in workers:
            rate = loader_rate(trainer.evaluator.train_loader(0, None, num_workers=count), count, args.batches)
            result["loader"].append({"workers": count, **rate})
            print(f"{count:>7}  {rate['samples_per_s']:>10,.0f}  {rate['first_batch_s']:>10.2f}s")
        if args.feed:
            result["fed"] = [_fed(trainer, count, args.steps) for count in workers]
        if args.out is not None:
            args.out.write_text(json.dumps(result, indent=2))
    finally:
        trainer.close()
    return 0


def _check_feed_length(batches: int, workers: int) -> None:
    """Fed steps are timed after the loader's prefetch (2 batches per worker): the epoch must be longer."""
    if batches <= 2 * max(workers, 1):
        raise UsageError(f"--feed with {workers} workers needs more than {2 * max(workers, 1)} training batches "
                         f"(the loader's prefetch); the training split has {batches}")


def _fed(trainer: Any, workers: int, steps: int) -> dict[str, Any]:
    from mmcore.bench.loader import fed_rates

    loader = trainer.evaluator.train_loader(0, None, num_workers=workers)
    rates = fed_rates(trainer, loader, workers, min(steps, len(loader) - 2 * max(workers, 1)))
    print(f"fed by {workers} workers: {rates['fed_samples_per_s']:,.0f} samples/s, {rates['fed_share']:.0%} of the "
          f"step alone ({rates['compute_samples_per_s']:,.0f} samples/s)")
    return rates
