"""The `mmcore bench` command: its arguments, and a handler that imports the bench only when run."""
from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import Any


def _names(text: str) -> list[str]:
    return [name for name in text.split(",") if name]


def _seeds(text: str) -> list[int]:
    try:
        return [int(seed) for seed in _names(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers (got {text!r})") from None


def add_bench_command(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    bench = sub.add_parser("bench", parents=parents, help="run a methods x datasets x seeds grid and aggregate it",
                           description="Train every cell of GRID.toml in this process (finished cells are kept, "
                                       "interrupted ones trained again), sweep robustness, measure cost, and write "
                                       "results.csv and results.md into the bench directory.")
    bench.add_argument("grid", type=Path, help="the GRID.toml file")
    bench.add_argument("--out", type=Path, help="bench directory (default runs/<bench name>)")
    bench.add_argument("--datasets", type=_names, default=[], metavar="A,B", help="train only these datasets' cells")
    bench.add_argument("--methods", type=_names, default=[], metavar="A,B", help="train only these methods' cells")
    bench.add_argument("--seeds", type=_seeds, default=[], metavar="0,1", help="train only these seeds' cells")
    bench.add_argument("--no-robustness", action="store_true", help="skip the robustness sweeps")
    bench.add_argument("--no-cost", action="store_true", help="skip the cost measurement")
    bench.set_defaults(handler=run_bench_command)


def run_bench_command(args: argparse.Namespace, host: Any) -> int:
    import attrs

    from mmcore.bench.grid import load_grid
    from mmcore.bench.runner import Selection, run_bench

    grid = load_grid(args.grid)
    if args.no_cost:
        grid = attrs.evolve(grid, cost=attrs.evolve(grid.cost, enabled=False))
    bench_dir = args.out or Path("runs") / grid.name
    modules = [*args.modules, *args.sub_modules]
    command = shlex.join(["mmcore", *(f"-p{m}" for m in modules), "bench", str(args.grid), "--out", str(bench_dir)])
    selection = Selection(args.datasets, args.methods, args.seeds)
    try:
        outcome = run_bench(grid, host, bench_dir, selection, plugin_modules=modules, command=command,
                            log=lambda line: print(line, flush=True), sweep=not args.no_robustness)
    except KeyboardInterrupt:
        print("interrupted; run the same command again: finished cells are kept and the interrupted one is "
              "trained again", file=sys.stderr)
        return 130
    print(f"results: {bench_dir / 'results.md'} and {bench_dir / 'results.csv'}"
          + (f" ({len(outcome['missing'])} cells not run yet)" if outcome["missing"] else ""))
    for key, why in outcome["failed"].items():
        print(f"error: {key}: {why}", file=sys.stderr)
    return 1 if outcome["failed"] else 0
