"""Every mmcore hook. Registration hooks add kinds; observer hooks watch and never change losses or grads.

All hooks are called with keyword arguments and return None unless stated otherwise.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from mmcore.registry import ComponentRegistry
    from mmcore.trainer import Trainer
    from mmcore.types import StepState

hookspec = pluggy.HookspecMarker("mmcore")
hookimpl = pluggy.HookimplMarker("mmcore")


@hookspec
def mmcore_register_components(registry: ComponentRegistry) -> None:
    """Called once, after plugins load, to add kinds to `registry`.

    Use the slot methods: ``registry.balancer("ogm_ge", OGMGEConfig, build_ogm_ge)``, likewise
    ``encoder``, ``fusion``, ``valuator``, ``attention_supervisor``, ``dataset``, ``optimizer``,
    ``scheduler`` and ``value_function(name, fn)``. A kind registered twice is reported with both
    distributions' names; the first registration is kept.
    """


@hookspec
def mmcore_validate_config(config: Any) -> list[str] | None:
    """Called by `mmcore validate` and before every run, after the config is structured.

    Return a list of problems (each a line starting with its `$.path`) or None. All problems from
    all plugins are reported together and the command exits 2.
    """


@hookspec
def mmcore_train_start(trainer: Trainer) -> None:
    """Called once before the first epoch (also after a resume), when model and loaders are built."""


@hookspec
def mmcore_epoch_start(trainer: Trainer, epoch: int) -> None:
    """Called at the start of each training epoch, after balancers' `on_epoch_start`."""


@hookspec
def mmcore_after_backward(trainer: Trainer, state: StepState) -> None:
    """Called after each backward pass of a step (check `state.pass_index`); watch, never modify grads."""


@hookspec
def mmcore_before_optimizer_step(trainer: Trainer, state: StepState) -> None:
    """Called in `finish`, after balancers modulate and clipping, right before `optimizer.step()`."""


@hookspec
def mmcore_log_metrics(metrics: dict[str, float], step: int, epoch: int, split: str) -> None:
    """Called at every logging point with host-side floats (train every `log_every_steps`, eval per epoch)."""


@hookspec
def mmcore_epoch_end(trainer: Trainer, epoch: int, metrics: dict[str, float]) -> None:
    """Called after validation and balancers' `on_epoch_end`, with the epoch's validation metrics."""


@hookspec
def mmcore_save_checkpoint(trainer: Trainer, checkpoint: dict[str, Any]) -> None:
    """Called before a checkpoint is written; add JSON-able values or tensors under your plugin's name."""


@hookspec
def mmcore_load_checkpoint(trainer: Trainer, checkpoint: dict[str, Any]) -> None:
    """Called after a checkpoint is restored, with the same mapping `mmcore_save_checkpoint` filled."""


@hookspec
def mmcore_train_end(trainer: Trainer, summary: dict[str, Any]) -> None:
    """Called once after the test split is evaluated, with the summary written to summary.json."""


@hookspec
def mmcore_add_commands(subparsers: Any, parents: list[Any]) -> None:
    """Called once when the `mmcore` command line is built, to add a plugin's own subcommands.

    ``parser = subparsers.add_parser("robustness", parents=parents, help="...")`` (pass `parents` so
    `-p` works after the command), add arguments, then ``parser.set_defaults(handler=fn)`` where
    ``fn(args, host) -> int`` returns the exit code; raise an `mmcore.errors` error for user errors.
    """
