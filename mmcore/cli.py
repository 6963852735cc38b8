"""The `mmcore` command: run, validate, eval, plugins, kinds. User errors print one line each, no traceback."""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import Any, Sequence

from mmcore.errors import ConfigError, MMCoreError, UsageError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mmcore", description="Balanced and robust multimodal learning.")
    parser.add_argument("-p", dest="modules", action="append", default=[], metavar="MODULE",
                        help="register an importable module as a plugin (repeatable)")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="train and test one config")
    run.add_argument("config", type=Path)
    run.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    run.add_argument("--out", type=Path, help="run directory (default runs/<run.name>)")
    mode = run.add_mutually_exclusive_group()
    mode.add_argument("--resume", action="store_true", help="continue from the run directory's last checkpoint")
    mode.add_argument("--overwrite", action="store_true", help="replace an existing run directory")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")

    validate = sub.add_parser("validate", help="check a config without training")
    validate.add_argument("config", type=Path)
    validate.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")

    ev = sub.add_parser("eval", help="evaluate a finished run's checkpoint, optionally corrupted")
    ev.add_argument("run_dir", type=Path)
    ev.add_argument("--split", default="test", choices=("train", "val", "test"))
    ev.add_argument("--checkpoint", default="best", choices=("best", "last"))
    ev.add_argument("--missing-rate", type=float, default=0.0)
    ev.add_argument("--noise-rate", type=float, default=0.0)
    ev.add_argument("--noise", default="gaussian", choices=("gaussian", "laplace", "erasing", "mixed"))
    ev.add_argument("--level", default="feature", choices=("input", "feature"))
    ev.add_argument("--seed", type=int, default=0, help="corruption seed")
    ev.add_argument("--name", help="result file name under eval/ (default from the options)")

    plugins = sub.add_parser("plugins", help="list installed plugins as JSON")
    plugins.add_argument("--all", action="store_true", help="include mmcore's built-ins")

    kinds = sub.add_parser("kinds", help="list kinds with their config fields, defaults and help")
    kinds.add_argument("slot", nargs="?")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except MMCoreError as error:
        for line in str(error).splitlines() or [type(error).__name__]:
            print(f"error: {line}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print("interrupted; resume with --resume", file=sys.stderr)
        return 130


def _host(args: argparse.Namespace, warn: bool = True) -> Any:
    from mmcore.plugins import PluginHost

    host = PluginHost(modules=args.modules)
    if warn:
        for line in host.problems():
            print(f"warning: {line}", file=sys.stderr)
    return host


def _load(args: argparse.Namespace, host: Any) -> Any:
    from mmcore.config import load_config

    config = load_config(args.config, host.registry, overrides=args.overrides)
    problems = [p for found in host.hook.mmcore_validate_config(config=config) if found for p in found]
    if problems:
        raise ConfigError(problems)
    return config


def cmd_validate(args: argparse.Namespace) -> int:
    host = _host(args)
    config = _load(args, host)
    balancers = ", ".join(c.kind for c in config.balancers) or "none"
    print(f"{args.config}: valid ({len(config.data.modalities)} modalities, fusion {config.fusion.kind}, balancers {balancers})")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from mmcore.logging import summary_table
    from mmcore.trainer import Trainer

    host = _host(args)
    config = _load(args, host)
    run_dir = args.out or Path("runs") / config.run.name
    _prepare_run_dir(run_dir, resume=args.resume, overwrite=args.overwrite)
    trainer = Trainer(config, host.registry, run_dir=run_dir, hook=host.hook,
                      progress=not args.no_progress, resume=args.resume)
    try:
        summary = trainer.fit()
    finally:
        trainer.close()
    print(summary_table(summary))
    print(f"run directory: {run_dir}")
    return 0


def _prepare_run_dir(run_dir: Path, resume: bool, overwrite: bool) -> None:
    if resume:
        if not (run_dir / "checkpoints" / "last").exists() and not (run_dir / "checkpoints" / "last.old").exists():
            raise UsageError(f"{run_dir}: no checkpoint to resume from (checkpoints/last is missing)")
        return
    if run_dir.exists() and any(run_dir.iterdir()):
        if not overwrite:
            raise UsageError(f"{run_dir} already exists; pass --resume to continue it or --overwrite to replace it")
        shutil.rmtree(run_dir)


def cmd_eval(args: argparse.Namespace) -> int:
    from mmcore.evaluate_run import evaluate_run

    host = _host(args)
    result = evaluate_run(args, host)
    print(json.dumps(result, indent=2))
    return 0


def cmd_plugins(args: argparse.Namespace) -> int:
    host = _host(args)
    print(json.dumps(host.plugins_info(include_builtin=args.all), indent=2))
    return 0


def cmd_kinds(args: argparse.Namespace) -> int:
    from mmcore.describe import describe_kinds

    host = _host(args)
    print(describe_kinds(host.registry, args.slot))
    return 0


COMMANDS = {"run": cmd_run, "validate": cmd_validate, "eval": cmd_eval, "plugins": cmd_plugins, "kinds": cmd_kinds}
