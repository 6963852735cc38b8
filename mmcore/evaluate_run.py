"""`mmcore eval RUN_DIR`: score a finished run's checkpoint on a split, optionally corrupted."""
from __future__ import annotations

import argparse
from typing import Any

from mmcore.checkpoint import load_checkpoint
from mmcore.config import parse_config
from mmcore.data.corruption import CorruptionConfig
from mmcore.errors import UsageError
from mmcore.logging import write_json_atomic
from mmcore.trainer import Trainer


def evaluate_run(args: argparse.Namespace, host: Any) -> dict[str, Any]:
    run_dir = args.run_dir
    checkpoint_dir = run_dir / "checkpoints" / args.checkpoint
    if not (run_dir / "config.toml").exists():
        raise UsageError(f"{run_dir}: not a run directory (config.toml is missing)")
    config = parse_config((run_dir / "config.toml").read_text(), host.registry, source=str(run_dir / "config.toml"))
    trainer = Trainer(config, host.registry)  # no run_dir: evaluation writes nothing but its result
    trainer.model.load_state_dict(load_checkpoint(checkpoint_dir, device=trainer.device).model_state)
    corruption = CorruptionConfig(missing_rate=args.missing_rate, noise_rate=args.noise_rate, noise=args.noise,
                                  level=args.level, seed=args.seed)
    metrics = trainer.evaluator.evaluate(args.split, values=True, corruption=corruption)
    name = args.name or f"{args.split}_{args.checkpoint}_mr{args.missing_rate:g}_nr{args.noise_rate:g}_{args.noise}_{args.level}"
    result = {"split": args.split, "checkpoint": args.checkpoint,
              "corruption": {k: getattr(corruption, k) for k in ("missing_rate", "noise_rate", "noise", "level", "seed")},
              "metrics": metrics}
    write_json_atomic(run_dir / "eval" / f"{name}.json", result)
    return result
