"""Running a grid in this process, resumably.

Every cell config is built and validated first (all problems at once, exit 2). Then, cell by cell,
a run directory under cells/: a cell is finished when its summary.json exists (the trainer writes it
atomically, last) and its config.toml is the config the grid gives now; a cell directory without a
summary (interrupted, or failed) or with another config is wiped and the cell trained again. Then
the robustness sweep of each finished cell (robustness.json, recomputed when the settings change),
the cost of each dataset's methods (cost/<dataset>.json), and the results files from everything
finished so far.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any, Callable, Sequence

from attrs import field, frozen

from mmcore import build
from mmcore.bench import cost as cost_module
from mmcore.bench import robustness
from mmcore.bench.grid import Cell, Grid, cell_raw_config, cells, read_base
from mmcore.bench.results import BENCH_FILE, FAILED_FILE, cell_dir, config_digest, cost_file, write_results
from mmcore.config import dump_config, parse_config
from mmcore.errors import ConfigError, MMCoreError
from mmcore.logging import write_json_atomic
from mmcore.metrics import primary_metric
from mmcore.trainer import Trainer

Log = Callable[[str], None]


@frozen
class Selection:
    """Which cells this invocation runs (empty = all); results always cover every finished cell."""

    datasets: tuple[str, ...] = field(default=(), converter=tuple)
    methods: tuple[str, ...] = field(default=(), converter=tuple)
    seeds: tuple[int, ...] = field(default=(), converter=tuple)

    def includes(self, cell: Cell) -> bool:
        return ((not self.datasets or cell.dataset in self.datasets) and (not self.methods or cell.method in self.methods)
                and (not self.seeds or cell.seed in self.seeds))

    def problems(self, grid: Grid) -> list[str]:
        named = (("--datasets", self.datasets, list(grid.datasets)), ("--methods", self.methods, list(grid.methods)),
                 ("--seeds", self.seeds, list(grid.bench.seeds)))
        return [f"{option}: {value!r} is not in the grid ({', '.join(map(str, known))})"
                for option, values, known in named for value in values if value not in known]


def resolve_configs(grid: Grid, host: Any) -> dict[Cell, Any]:
    """Every cell's validated RunConfig; ConfigError names the cell and the `$.path` of each problem."""
    base = read_base(grid)
    configs, problems, reported = {}, [], set()
    for cell in cells(grid):
        try:
            config = parse_config(cell_raw_config(grid, base, cell), host.registry, source=cell.key)
            extra = host.validate_config(config)
            if extra:
                raise ConfigError(extra)
        except ConfigError as error:
            if (cell.dataset, cell.method) not in reported:  # the seed changes nothing that can fail
                reported.add((cell.dataset, cell.method))
                problems += [f"cell {cell.dataset}/{cell.method}: {line}" for line in error.problems]
            continue
        configs[cell] = config
    if problems:
        raise ConfigError(problems)
    return configs


def bench_info(grid: Grid, configs: dict[Cell, Any], registry: Any, command: str = "") -> dict[str, Any]:
    first = {d: next(config for cell, config in configs.items() if cell.dataset == d) for d in grid.datasets}
    primary = {d: primary_metric(build.build_data(config, registry).info.task)[0] for d, config in first.items()}
    return {"name": grid.name, "description": grid.bench.description, "base": os.path.normpath(grid.base_path),
            "datasets": {d: list(config.data.modalities) for d, config in first.items()},
            "methods": list(grid.methods), "seeds": list(grid.bench.seeds), "baseline": grid.bench.baseline,
            "split": grid.bench.split, "primary": primary,
            "robustness": robustness.settings_record(grid.robustness), "command": command,
            "configs": {cell.key: config_digest(dump_config(config)) for cell, config in configs.items()}}


def run_bench(grid: Grid, host: Any, bench_dir: Path, selection: Selection = Selection(),
              plugin_modules: Sequence[str] = (), command: str = "", log: Log = print,
              sweep: bool = True) -> dict[str, Any]:
    """Train, sweep and cost every selected cell that needs it; write the results. Returns what happened.
    `sweep = False` skips this invocation's robustness sweeps; the grid's settings stay recorded, so
    results keep only sweeps made with them."""
    problems = selection.problems(grid)
    if problems:
        raise ConfigError(problems)
    configs = resolve_configs(grid, host)
    bench_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(bench_dir / BENCH_FILE, bench_info(grid, configs, host.registry, command))
    if Path(grid.source).resolve() != (bench_dir / "grid.toml").resolve():  # not when run from its own copy
        shutil.copyfile(grid.source, bench_dir / "grid.toml")
    selected = [cell for cell in cells(grid) if selection.includes(cell)]
    outcome: dict[str, Any] = {"trained": [], "skipped": [], "failed": {}}
    for number, cell in enumerate(selected, 1):
        status = train_cell(configs[cell], host, cell_dir(bench_dir, *_parts(cell)))
        if status.startswith("failed"):
            outcome["failed"][cell.key] = status
        else:
            outcome[status].append(cell.key)
        log(f"[{number}/{len(selected)}] {cell.key}: {status}")
    if grid.robustness.rates and sweep:
        for cell in selected:
            if cell.key not in outcome["failed"]:
                sweep_cell(cell_dir(bench_dir, *_parts(cell)), host.registry, grid, log, cell.key)
    if grid.cost.enabled:
        for dataset in dict.fromkeys(cell.dataset for cell in selected):
            cost_dataset(grid, configs, dataset, host.registry, bench_dir, plugin_modules, log)
    rows, collected = write_results(bench_dir)
    outcome |= {"rows": rows, "missing": collected.missing}
    return outcome


def _parts(cell: Cell) -> tuple[str, str, int]:
    return cell.dataset, cell.method, cell.seed


def train_cell(config: Any, host: Any, run_dir: Path) -> str:
    """"skipped" (finished before), "trained", or "failed: <why>" (a runtime error of the run, such
    as a non-finite loss; the cell is trained again next time)."""
    finished = (run_dir / "summary.json").is_file() and not (run_dir / FAILED_FILE).exists()
    if finished and _saved_config(run_dir) == dump_config(config):  # failed.json: it failed after its summary
        return "skipped"
    if run_dir.exists():  # interrupted, failed, or trained from another config: start it again
        shutil.rmtree(run_dir)
    trainer = Trainer(config, host.registry, run_dir=run_dir, hook=host.hook)
    try:
        trainer.fit()
    except ConfigError:
        raise
    except MMCoreError as error:
        write_json_atomic(run_dir / FAILED_FILE, {"error": f"{type(error).__name__}: {error}"})
        return f"failed: {error}"
    finally:
        trainer.close()
    return "trained"


def _saved_config(run_dir: Path) -> str | None:
    path = run_dir / "config.toml"
    return path.read_text(encoding="utf-8") if path.is_file() else None


def sweep_cell(run_dir: Path, registry: Any, grid: Grid, log: Log, key: str) -> None:
    path = run_dir / robustness.ROBUSTNESS_FILE
    wanted = robustness.settings_record(grid.robustness)
    if path.is_file():
        if json.loads(path.read_text(encoding="utf-8")).get("settings") == wanted:
            return
    write_json_atomic(path, robustness.sweep(run_dir, registry, grid.robustness))
    log(f"robustness {key}: done")


def cost_dataset(grid: Grid, configs: dict[Cell, Any], dataset: str, registry: Any, bench_dir: Path,
                 plugin_modules: Sequence[str], log: Log) -> None:
    """Cost of every method on `dataset` (first seed's configs), unless measured with these settings
    from these configs."""
    path = cost_file(bench_dir, dataset)
    seed = grid.bench.seeds[0]
    chosen = {method: configs[Cell(dataset, method, seed)] for method in grid.methods}
    wanted = cost_module.settings_record(grid.cost)
    digests = {method: config_digest(dump_config(config)) for method, config in chosen.items()}
    if path.is_file():
        done = json.loads(path.read_text(encoding="utf-8"))
        if done.get("settings") == wanted and done.get("configs") == digests:
            return
    result = cost_module.measure_cost(chosen, registry, grid.bench.baseline, grid.cost, plugin_modules)
    write_json_atomic(path, result | {"configs": digests})
    log(f"cost {dataset}: " + ", ".join(f"{m} ×{r['step_ratio']:.2f}" for m, r in result["methods"].items()))
