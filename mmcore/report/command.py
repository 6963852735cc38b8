"""The `mmcore report` command: its arguments, and a handler that imports the report only when run."""
from __future__ import annotations

import argparse
import shlex
from pathlib import Path
from typing import Any


def add_report_command(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    report = sub.add_parser("report", parents=parents, help="figures and a Markdown/HTML page of a run or a bench",
                            description="Plot a run directory's or a bench directory's curves, gains and robustness "
                                        "(PNG, needs the plots extra) and write one page embedding them, as "
                                        "Markdown and HTML.")
    report.add_argument("path", type=Path, help="a run directory or a bench directory")
    report.add_argument("--out", type=Path, help="figure directory (default PATH/report)")
    report.add_argument("--page", type=Path, help="write only this page, Markdown (.md) or HTML (.html); "
                                                  "default OUT/index.md and OUT/index.html")
    report.set_defaults(handler=run_report_command)


def run_report_command(args: argparse.Namespace, host: Any) -> int:
    from mmcore.report.page import write_report

    words = ["mmcore", "report", str(args.path)]
    words += ["--out", str(args.out)] if args.out else []
    words += ["--page", str(args.page)] if args.page else []
    pages = write_report(args.path, args.out, args.page, command=shlex.join(words))
    print("report: " + " and ".join(map(str, pages)))
    return 0
