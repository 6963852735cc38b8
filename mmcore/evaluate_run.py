"""Score a finished run's checkpoint on a split, optionally corrupted: `mmcore eval RUN_DIR` and its
in-process counterparts (`load_finished_run`, `evaluate_checkpoint`) for sweeps such as `mmcore bench`."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from mmcore.checkpoint import load_checkpoint
from mmcore.config import parse_config
from mmcore.data.corruption import CorruptionConfig
from mmcore.errors import UsageError
from mmcore.logging import write_json_atomic
from mmcore.trainer import Trainer


def load_finished_run(run_dir: Path | str, registry: Any, checkpoint: str = "best") -> Trainer:
    """A Trainer rebuilt from the run's resolved config, holding the checkpoint's weights. It has no
    run directory, so evaluating with it writes nothing; call `evaluator.evaluate` as often as needed."""
    run_dir = Path(run_dir)
    if not (run_dir / "config.toml").exists():
        raise UsageError(f"{run_dir}: not a run directory (config.toml is missing)")
    checkpoint_dir = run_dir / "checkpoints" / checkpoint
    if not checkpoint_dir.exists():
        raise UsageError(f"{run_dir}: no checkpoints/{checkpoint} (not a finished run?)")
    config_path = run_dir / "config.toml"
    config = parse_config(config_path.read_text(encoding="utf-8"), registry, source=str(config_path))
    trainer = Trainer(config, registry)
    trainer.model.load_state_dict(load_checkpoint(checkpoint_dir, device=trainer.device).model_state)
    return trainer


def evaluate_checkpoint(run_dir: Path | str, registry: Any, split: str = "test", checkpoint: str = "best",
                        corruption: CorruptionConfig | None = None, values: bool = True) -> dict[str, float]:
    """The metrics of one checkpoint on one split under `corruption` (None: the split's configured one)."""
    trainer = load_finished_run(run_dir, registry, checkpoint)
    return trainer.evaluator.evaluate(split, values=values, corruption=corruption)


def evaluate_run(args: argparse.Namespace, host: Any) -> dict[str, Any]:
    """`mmcore eval`: evaluate, then write the result to RUN_DIR/eval/<name>.json."""
    corruption = CorruptionConfig(missing_rate=args.missing_rate, noise_rate=args.noise_rate, noise=args.noise,
                                  level=args.level, seed=args.seed, modalities=tuple(args.modalities or ()))
    trainer = load_finished_run(args.run_dir, host.registry, args.checkpoint)
    unknown = [m for m in corruption.modalities if m not in trainer.model.modalities]
    if unknown:
        raise UsageError(f"--modalities: {unknown} not among the run's modalities {list(trainer.model.modalities)}")
    metrics = trainer.evaluator.evaluate(args.split, values=True, corruption=corruption)
    targets = f"_{'+'.join(corruption.modalities)}" if corruption.modalities else ""
    name = args.name or (f"{args.split}_{args.checkpoint}_mr{args.missing_rate:g}_nr{args.noise_rate:g}_{args.noise}"
                         f"_{args.level}{targets}")
    fields = ("missing_rate", "noise_rate", "noise", "level", "seed", "modalities")
    result = {"split": args.split, "checkpoint": args.checkpoint,
              "corruption": {k: getattr(corruption, k) for k in fields}, "metrics": metrics}
    write_json_atomic(Path(args.run_dir) / "eval" / f"{name}.json", result)
    return result
