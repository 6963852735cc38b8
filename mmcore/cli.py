"""The `mmcore` command: run, validate, eval, bench, report, loader, plugins, kinds, new-plugin.
User errors print one line each, no traceback."""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any, Sequence

from mmcore.bench.command import add_bench_command
from mmcore.bench.loader_command import add_loader_command
from mmcore.errors import ConfigError, MMCoreError, UsageError
from mmcore.report.command import add_report_command


def _rate(text: str) -> float:
    """A corruption rate in [0, 1]; argparse turns the ValueError into a usage error (exit 2)."""
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1 (got {text})")
    return value


def _parser(host: Any = None) -> argparse.ArgumentParser:
    # `-p` works before or after the command (`mmcore -p mod run c.toml`, `mmcore run c.toml -p mod`):
    # the subcommands' copy has its own dest, because a subparser's default would overwrite the main one.
    plugin_option = argparse.ArgumentParser(add_help=False)
    plugin_option.add_argument("-p", dest="sub_modules", action="append", default=[], metavar="MODULE",
                               help="register an importable module as a plugin (repeatable)")
    parser = argparse.ArgumentParser(prog="mmcore", description="Balanced and robust multimodal learning.")
    parser.add_argument("-p", dest="modules", action="append", default=[], metavar="MODULE",
                        help="register an importable module as a plugin (repeatable)")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_commands(sub, [plugin_option])
    if host is not None:  # plugins' own commands: each sets `handler(args, host) -> exit code`
        _add_plugin_commands(host, sub, [plugin_option])
    return parser


def _add_plugin_commands(host: Any, subparsers: Any, parents: list[argparse.ArgumentParser]) -> None:
    """One plugin whose commands fail to build is reported by distribution; the others keep working."""
    for impl in host.hook.mmcore_add_commands.get_hookimpls():
        try:
            impl.function(subparsers=subparsers, parents=parents)
        except Exception as exc:  # noqa: BLE001 - the plugin's failure, not the command line's
            dist = host.distributions.get(host.pm.get_name(impl.plugin) or "", ("?", ""))[0]
            print(f"warning: plugin {dist}: mmcore_add_commands raised {type(exc).__name__}: {exc}", file=sys.stderr)


def _add_commands(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    run = sub.add_parser("run", parents=parents, help="train and test one config")
    run.add_argument("config", type=Path)
    run.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    run.add_argument("--out", type=Path, help="run directory (default runs/<run.name>)")
    mode = run.add_mutually_exclusive_group()
    mode.add_argument("--resume", action="store_true", help="continue from the run directory's last checkpoint")
    mode.add_argument("--overwrite", action="store_true", help="replace an existing run directory")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")

    validate = sub.add_parser("validate", parents=parents, help="check a config without training")
    validate.add_argument("config", type=Path)
    validate.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")

    ev = sub.add_parser("eval", parents=parents, help="evaluate a finished run's checkpoint, optionally corrupted")
    ev.add_argument("run_dir", type=Path)
    ev.add_argument("--split", default="test", choices=("train", "val", "test"))
    ev.add_argument("--checkpoint", default="best", choices=("best", "last"))
    ev.add_argument("--missing-rate", type=_rate, default=0.0, help="fraction of samples missing modalities")
    ev.add_argument("--noise-rate", type=_rate, default=0.0, help="noise mixing rate r in (1 - r) u + r noise")
    ev.add_argument("--noise", default="gaussian", choices=("gaussian", "laplace", "erasing", "mixed"))
    ev.add_argument("--level", default="feature", choices=("input", "feature"))
    ev.add_argument("--seed", type=int, default=0, help="corruption seed")
    ev.add_argument("--modalities", type=lambda text: [m for m in text.split(",") if m], metavar="M1,M2",
                    help="corrupt only these modalities (default: all)")
    ev.add_argument("--name", help="result file name under eval/ (default from the options)")

    add_bench_command(sub, parents)  # handlers set through set_defaults(handler=...)
    add_report_command(sub, parents)
    add_loader_command(sub, parents)

    plugins = sub.add_parser("plugins", parents=parents, help="list installed plugins as JSON")
    plugins.add_argument("--all", action="store_true", help="include mmcore's built-ins")
    plugins.add_argument("--hook", help="only plugins that implement this hook")

    kinds = sub.add_parser("kinds", parents=parents, help="list kinds with their config fields, defaults and help")
    kinds.add_argument("slot", nargs="?", help="one slot (balancer, fusion, ...); default: all")

    scaffold = sub.add_parser("new-plugin", parents=parents,
                              help="write a plugin package (a balancer, a valuator, their tests) to start from")
    scaffold.add_argument("name", help="snake_case: distribution mmcore-<name>, package mmcore_<name>, kinds <name>")
    scaffold.add_argument("--dir", type=Path, default=Path("."), help="where to create <name>/ (default: here)")


def _plugin_modules(argv: Sequence[str]) -> list[str]:
    """The `-p` modules, wherever they stand, read before the full parser exists (plugins add commands)."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("-p", dest="modules", action="append", default=[])
    return pre.parse_known_args(list(argv))[0].modules


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        host = _host(_plugin_modules(argv))
        args = _parser(host).parse_args(argv)
        handler = COMMANDS.get(args.command) or args.handler
        return handler(args, host)
    except MMCoreError as error:
        for line in str(error).splitlines() or [type(error).__name__]:
            print(f"error: {line}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print("interrupted; resume with --resume", file=sys.stderr)
        return 130


def _host(modules: list[str]) -> Any:
    from mmcore.plugins import PluginHost

    host = PluginHost(modules=modules)
    # A module the user named with -p and that cannot be imported is a usage error, not a warning.
    unimportable = [f for f in host.failures if f.stage == "import" and f.distribution in modules]
    if unimportable:
        raise UsageError("\n".join(f"-p {f.distribution}: {f.error}" for f in unimportable))
    for line in host.problems():  # the rest of the plugins keep working: warn and go on
        print(f"warning: {line}", file=sys.stderr)
    return host


def _load(args: argparse.Namespace, host: Any) -> Any:
    from mmcore.config import load_config

    config = load_config(args.config, host.registry, overrides=args.overrides)
    problems = host.validate_config(config)
    if problems:
        raise ConfigError(problems)
    return config


def cmd_validate(args: argparse.Namespace, host: Any) -> int:
    config = _load(args, host)
    balancers = ", ".join(c.kind for c in config.balancers) or "none"
    modalities = len(config.data.modalities)
    print(f"{args.config}: valid ({modalities} modalities, fusion {config.fusion.kind}, balancers {balancers})")
    return 0


def cmd_run(args: argparse.Namespace, host: Any) -> int:
    from mmcore.logging import summary_table
    from mmcore.trainer import Trainer

    config = _load(args, host)
    run_dir = args.out or Path("runs") / config.run.name
    if int(os.environ.get("RANK", "0")) == 0:  # under torchrun, rank 0 owns the run directory
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
    if run_dir.exists() and not run_dir.is_dir():
        raise UsageError(f"{run_dir} is a file, not a run directory")
    if resume:
        if not (run_dir / "checkpoints" / "last").exists() and not (run_dir / "checkpoints" / "last.old").exists():
            raise UsageError(f"{run_dir}: no checkpoint to resume from (checkpoints/last is missing)")
        return
    if run_dir.exists() and any(run_dir.iterdir()):
        if not overwrite:
            raise UsageError(f"{run_dir} already exists; pass --resume to continue it or --overwrite to replace it")
        # --overwrite deletes a whole tree: only ever one that a run wrote (`--out ~` must not wipe a home)
        if not (run_dir / "config.toml").is_file():
            raise UsageError(f"{run_dir} is not a run directory (no config.toml); refusing to overwrite it")
        shutil.rmtree(run_dir)


def cmd_eval(args: argparse.Namespace, host: Any) -> int:
    from mmcore.evaluate_run import evaluate_run

    result = evaluate_run(args, host)
    print(json.dumps(result, indent=2))
    return 0


def cmd_plugins(args: argparse.Namespace, host: Any) -> int:
    print(json.dumps(host.plugins_info(include_builtin=args.all, hook=args.hook), indent=2))
    return 0


def cmd_kinds(args: argparse.Namespace, host: Any) -> int:
    from mmcore.describe import describe_kinds

    print(describe_kinds(host.registry, args.slot))
    return 0


def cmd_new_plugin(args: argparse.Namespace, host: Any) -> int:
    from mmcore import __version__
    from mmcore.scaffold import new_plugin

    written = new_plugin(args.name, args.dir, host.registry, __version__)
    root = args.dir / args.name
    print(f"created {root}/:", *(f"  {path.relative_to(root)}" for path in written), sep="\n")
    print(f"next: pip install -e \"{root}[test]\" && python -m pytest {root}")
    return 0


COMMANDS = {"run": cmd_run, "validate": cmd_validate, "eval": cmd_eval, "plugins": cmd_plugins, "kinds": cmd_kinds,
            "new-plugin": cmd_new_plugin}
