"""Toy configs and a step runner, so plugin tests need no data files and run in seconds."""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Iterable

from mmcore.plugins import PluginHost
from mmcore.trainer import Trainer
from mmcore.types import StepState

_BASE: dict[str, Any] = {
    "run": {"name": "toy", "seed": 0, "epochs": 1, "device": "cpu", "log_every_steps": 1, "probe": False},
    "data": {
        "kind": "synthetic", "modalities": ["a", "b"], "batch_size": 16,
        "train_size": 64, "val_size": 32, "test_size": 32, "num_classes": 3, "dim": 8, "signal": [2.0, 0.5],
    },
    "encoders": {"a": {"kind": "mlp", "hidden": [16]}, "b": {"kind": "mlp", "hidden": [16]}},
    "fusion": {"kind": "concat"},
    "optimizer": {"kind": "sgd", "lr": 0.1},
}


def toy_config(modalities: Iterable[str] = ("a", "b"), sequence: int = 0, **tables: Any) -> dict[str, Any]:
    """A small synthetic run as a raw config dict. Keyword tables replace (`fusion=`, `balancers=`)
    or, for `run` and `data`, update the defaults. `sequence > 0` gives sequence inputs of that
    length with `sequence` encoders (for attention fusions)."""
    config = copy.deepcopy(_BASE)
    names = list(modalities)
    config["data"]["modalities"] = names
    config["data"]["signal"] = [2.0] + [0.5] * (len(names) - 1)
    encoder = {"kind": "sequence", "d_model": 16, "layers": 1, "heads": 2} if sequence else {"kind": "mlp", "hidden": [16]}
    config["encoders"] = {m: dict(encoder) for m in names}
    if sequence:
        config["data"]["seq_len"] = sequence
    for name, table in tables.items():
        if name in ("run", "data"):
            config[name].update(table)
        else:
            config[name] = table
    return config


def make_trainer(config: dict[str, Any], host: PluginHost | None = None, modules: Iterable[Any] = (),
                 run_dir: Path | None = None) -> Trainer:
    from mmcore.config import parse_config

    host = host or PluginHost(modules=list(modules))
    return Trainer(parse_config(config, host.registry), host.registry, run_dir=run_dir, hook=host.hook)


def run_steps(config: dict[str, Any] | Trainer, steps: int = 5, host: PluginHost | None = None,
              modules: Iterable[Any] = ()) -> tuple[Trainer, list[StepState]]:
    """Run `steps` training steps (looping over epochs of the train split); return the trainer and
    each step's StepState. Balancers' epoch hooks run as in `fit`; validation does not."""
    trainer = config if isinstance(config, Trainer) else make_trainer(config, host, modules)
    states: list[StepState] = []
    trainer.model.train()
    while len(states) < steps:
        for b in trainer.balancers:
            b.on_epoch_start(trainer.epoch, trainer.control)
        trainer.epoch_batches = 0
        loader = trainer.evaluator.train_loader(trainer.epoch, trainer.plan)
        for batch in loader:
            trainer.count_batch(len(loader))
            states.append(trainer.train_step([trainer.to_device(batch)]))
            trainer.step += 1
            if len(states) == steps:
                break
        else:
            trainer.epoch += 1
    return trainer, states
