"""`mmcore robustness train|eval`: the robustness protocols as commands, writing a table and a plot.

    mmcore robustness train CONFIG --variant supervised --variant "unsupervised=attention_supervisors=[]" \\
        --protocol missing --protocol noise --seeds 0 1 2 --out runs/robustness
    mmcore robustness eval --run supervised=runs/a --run unsupervised=runs/b --protocol noise --out runs/rob-eval
"""
from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path
from typing import Any

import mmcore
from mmcore_sam_lml.report import write_report
from mmcore_sam_lml.robustness import PAPER_RATES, eval_sweep, train_sweep

NOISE_KINDS = ("gaussian", "laplace", "erasing", "mixed")


def rate(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1 (got {text})")
    return value


def add_robustness_command(subparsers: Any, parents: list[Any]) -> None:
    parser = subparsers.add_parser("robustness", parents=parents,
                                   help="missing-rate and noise-rate sweeps (SAM-LML protocols): table + plot")
    modes = parser.add_subparsers(dest="robustness_mode", required=True)
    train = modes.add_parser("train", parents=[*parents, _shared_options()],
                             help="train and test at each rate, same corruption in every split (Eq. 34-35)")
    train.add_argument("config", type=Path)
    train.add_argument("--variant", action="append", default=[], metavar="LABEL[=KEY=VALUE;...]",
                       help="a labelled variant with its own ';'-separated overrides (repeatable; "
                            "the first two are compared seed by seed); default: one, named after the config")
    train.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                       help="override for every variant")
    train.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    train.set_defaults(handler=run_train)
    evaluate = modes.add_parser("eval", parents=[*parents, _shared_options()],
                                help="score finished runs under test-time corruption (mmcore eval per rate)")
    evaluate.add_argument("--run", action="append", default=[], required=True, metavar="LABEL=RUN_DIR",
                          help="a finished run; runs sharing a label are its seeds (repeatable)")
    evaluate.add_argument("--split", default="test", choices=("train", "val", "test"))
    evaluate.add_argument("--checkpoint", default="best", choices=("best", "last"))
    evaluate.set_defaults(handler=run_eval)


def _shared_options() -> argparse.ArgumentParser:
    shared = argparse.ArgumentParser(add_help=False)
    shared.add_argument("--protocol", action="append", choices=("missing", "noise"),
                        help="missing rate (Eq. 34) and/or feature noise rate (Eq. 35); default both")
    shared.add_argument("--noise", action="append", choices=NOISE_KINDS,
                        help="noise kinds for the noise protocol (repeatable; §A.14); default gaussian")
    shared.add_argument("--rates", type=rate, nargs="+", default=list(PAPER_RATES),
                        help="rates to sweep (default 0.1 ... 0.7, as the paper)")
    shared.add_argument("--level", default="feature", choices=("input", "feature"),
                        help="where noise is added (the paper: feature)")
    shared.add_argument("--metric", default="", help="metric in the table (default: the task's primary)")
    shared.add_argument("--out", type=Path, required=True, help="directory for runs and robustness.{json,md,png}")
    return shared


def groups_of(args: argparse.Namespace) -> list[tuple[str, str]]:
    protocols = args.protocol or ["missing", "noise"]
    kinds = args.noise or ["gaussian"]
    return [(p, k) for p in dict.fromkeys(protocols) for k in (kinds if p == "noise" else [""])]


def parse_variants(texts: list[str], default_label: str) -> dict[str, list[str]]:
    variants: dict[str, list[str]] = {}
    for text in texts or [default_label]:
        label, _, overrides = text.partition("=")
        if not label or "/" in label or label in variants:
            raise mmcore.ConfigError(f"--variant {text!r}: needs a new label without '/'")
        variants[label] = [item.strip() for item in overrides.split(";") if item.strip()]
    return variants


def parse_runs(texts: list[str]) -> dict[str, list[Path]]:
    runs: dict[str, list[Path]] = defaultdict(list)
    for text in texts:
        label, equals, path = text.partition("=")
        if not equals or not label or not path:
            raise mmcore.ConfigError(f"--run {text!r}: expected LABEL=RUN_DIR")
        runs[label].append(Path(path))
    return dict(runs)


def metric_of(args: argparse.Namespace, records: list[dict[str, Any]]) -> str:
    if args.metric:
        return args.metric
    return "mae" if records and "mae" in records[0]["metrics"] else "acc"


def finish(args: argparse.Namespace, records: list[dict[str, Any]]) -> int:
    metric = metric_of(args, records)
    if any(metric not in r["metrics"] for r in records):
        raise mmcore.ConfigError(f"--metric {metric!r}: not among {sorted(records[0]['metrics'])}")
    report = write_report(records, metric, args.out)
    print(report["markdown"])
    print("written: " + ", ".join(report["files"]))
    return 0


def run_train(args: argparse.Namespace, host: mmcore.PluginHost) -> int:
    variants = parse_variants(args.variant, args.config.stem)
    records = train_sweep(args.config, variants, groups_of(args), args.rates, args.seeds, args.out, host,
                          base_overrides=args.overrides, level=args.level)
    return finish(args, records)


def run_eval(args: argparse.Namespace, host: mmcore.PluginHost) -> int:
    records = eval_sweep(parse_runs(args.run), groups_of(args), args.rates, host.registry, level=args.level,
                         split=args.split, checkpoint=args.checkpoint)
    return finish(args, records)
