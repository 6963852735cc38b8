"""GRID.toml: methods x datasets x seeds, each cell a base run config plus overrides.

```toml
[bench]
base = "../quickstart.toml"   # relative to this file
seeds = [0, 1, 2]
baseline = "joint"            # gains and effective robustness are taken against this method

[datasets.pix_mor]            # a named override set: nothing to change here
[datasets.fou_zer]
set = ['data.modalities = ["fou", "zer"]']
replace.encoders = { fou = { kind = "mlp" }, zer = { kind = "mlp" } }

[methods.joint]               # no balancer: the base as it is
[methods.ogm_ge]
replace.balancers = [{ kind = "ogm_ge", alpha = 0.8 }]
```

A cell's config is the base, with the dataset's then the method's `replace` tables substituted for
whole top-level sections (a different fusion or optimizer kind has different keys, which `--set`
cannot remove), then `bench.set`, the dataset's and the method's `set` items (`--set` syntax),
then `run.seed` and `run.name`. The file is strict like a run config: every problem is reported
with its `$.path` and the command exits with 2.
"""
from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any, Mapping

import attrs
from attrs import field, frozen
from attrs.validators import and_, deep_iterable, ge, in_, instance_of, le, min_len
from cattrs.errors import BaseValidationError

from mmcore.config import read_toml, apply_overrides, make_converter, problem_lines
from mmcore.config_converter import Problem
from mmcore.config_schema import RunConfig
from mmcore.data.corruption import NOISE_KINDS
from mmcore.errors import ConfigError
from mmcore.registry import ComponentRegistry

SECTIONS = tuple(a.name for a in attrs.fields(RunConfig))  # what `replace` may substitute
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")  # dataset and method names become directory names
PROTOCOLS = ("missing", "noise")
SPLITS = ("val", "test", "test_last")


def _known_sections(_: Any, attribute: Any, value: Mapping[str, Any]) -> None:
    unknown = [key for key in value if key not in SECTIONS]
    if unknown:
        raise ValueError(f"unknown run config sections {unknown}; sections: {', '.join(SECTIONS)}")


@frozen(kw_only=True)
class OverrideSet:
    """A named dataset or method."""

    replace: dict[str, Any] = field(factory=dict, validator=_known_sections, metadata={
        "help": "top-level run config sections replaced whole, e.g. replace.fusion = { kind = \"late\" }"})
    set: tuple[str, ...] = field(default=(), validator=deep_iterable(instance_of(str)), metadata={
        "help": "KEY=VALUE overrides, as `mmcore run --set`, applied after every replace"})


def _increasing_from_zero(_: Any, attribute: Any, rates: tuple[float, ...]) -> None:
    if rates and (rates[0] != 0.0 or any(b <= a for a, b in zip(rates, rates[1:]))):
        raise ValueError("rates must start at 0 (the clean score) and increase")


@frozen(kw_only=True)
class BenchSettings:
    base: str = field(metadata={"help": "the base run config, relative to the grid file"})
    name: str = field(default="", metadata={"help": "bench name (default: the grid file's stem)"})
    description: str = field(default="", metadata={"help": "a paragraph for the top of results.md and the report"})
    seeds: tuple[int, ...] = field(default=(0,), validator=[min_len(1), deep_iterable(instance_of(int))],
                                   metadata={"help": "run.seed of every cell"})
    baseline: str = field(default="joint", metadata={"help": "the method gains are taken against"})
    split: str = field(default="test", validator=in_(SPLITS), metadata={
        "help": "summary split aggregated: test (best-on-validation checkpoint), val, test_last"})
    set: tuple[str, ...] = field(default=(), validator=deep_iterable(instance_of(str)), metadata={
        "help": "overrides for every cell (before the dataset's and the method's)"})


@frozen(kw_only=True)
class RobustnessSettings:
    rates: tuple[float, ...] = field(
        default=(0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9),
        validator=[deep_iterable(and_(instance_of(float), ge(0.0), le(1.0))), _increasing_from_zero],
        metadata={"help": "corruption rates, from 0 (MultiBench's levels 0.0-0.9); empty = no robustness sweep"})
    protocols: tuple[str, ...] = field(default=PROTOCOLS, validator=deep_iterable(in_(PROTOCOLS)),
                                       metadata={"help": "missing (missing rate) and/or noise (noise rate)"})
    per_modality: bool = field(default=True, metadata={"help": "also corrupt each modality alone"})
    noise: str = field(default="gaussian", validator=in_(NOISE_KINDS), metadata={"help": "noise kind"})
    level: str = field(default="feature", validator=in_(("input", "feature")), metadata={"help": "where noise is added"})
    split: str = field(default="test", validator=in_(("val", "test")), metadata={"help": "evaluated split"})
    checkpoint: str = field(default="best", validator=in_(("best", "last")), metadata={"help": "evaluated checkpoint"})
    seed: int = field(default=0, metadata={"help": "corruption seed: every method sees the same corrupted data"})


@frozen(kw_only=True)
class CostSettings:
    enabled: bool = field(default=True, metadata={"help": "measure step time, peak memory and parameters"})
    rounds: int = field(default=10, validator=ge(1), metadata={"help": "alternation rounds"})
    steps: int = field(default=5, validator=ge(1), metadata={"help": "consecutive steps per method per round"})
    warmup: int = field(default=5, validator=ge(0), metadata={"help": "untimed steps per method first"})
    clock: str = field(default="auto", validator=in_(("auto", "wall", "process")), metadata={
        "help": "auto: process CPU time on a CPU with one thread, else wall time"})
    threads: int = field(default=1, validator=ge(0), metadata={"help": "torch threads while timing (0 = unchanged)"})
    memory: bool = field(default=True, metadata={"help": "peak memory growth of training steps"})
    memory_steps: int = field(default=3, validator=ge(1), metadata={"help": "steps run for the memory peak"})


@frozen(kw_only=True)
class Grid:
    bench: BenchSettings
    datasets: dict[str, OverrideSet] = field(validator=min_len(1), metadata={"help": "[datasets.<name>] tables"})
    methods: dict[str, OverrideSet] = field(validator=min_len(1), metadata={"help": "[methods.<name>] tables"})
    robustness: RobustnessSettings = field(factory=RobustnessSettings)
    cost: CostSettings = field(factory=CostSettings)
    source: Path = field(default=Path("."), metadata={"help": "the grid file (set by load_grid)"})

    @property
    def name(self) -> str:
        return self.bench.name or self.source.stem

    @property
    def base_path(self) -> Path:
        return self.source.parent / self.bench.base


@frozen(order=True)
class Cell:
    dataset: str
    method: str
    seed: int

    @property
    def key(self) -> str:
        return f"{self.dataset}/{self.method}/seed{self.seed}"


def load_grid(path: Path | str) -> Grid:
    """Read and check a GRID.toml; ConfigError lists every problem with its `$.path`."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read grid ({getattr(exc, 'strerror', None) or exc})") from None
    raw = read_toml(text, str(path))
    unknown = [key for key in raw if key not in ("bench", "datasets", "methods", "robustness", "cost")]
    try:
        grid = make_converter(ComponentRegistry()).structure({k: v for k, v in raw.items() if k not in unknown}, Grid)
    except (BaseValidationError, Problem) as exc:
        raise ConfigError([*problem_lines(exc), *(f"$.{key}: unknown table" for key in unknown)]) from None
    problems = [f"$.{key}: unknown table" for key in unknown] + _cross_problems(grid)
    grid = attrs.evolve(grid, source=path)
    if not grid.base_path.is_file():
        problems.append(f"$.bench.base: no run config at {grid.base_path}")
    if problems:
        raise ConfigError(problems)
    return grid


def _cross_problems(grid: Grid) -> list[str]:
    problems = [f"{_path(table, name)}: names become directories; use letters, digits, _ . -"
                for table in ("datasets", "methods") for name in getattr(grid, table) if not NAME.fullmatch(name)]
    if grid.bench.baseline not in grid.methods:
        problems.append(f"$.bench.baseline: {grid.bench.baseline!r} is not a method; methods: {', '.join(grid.methods)}")
    if len(set(grid.bench.seeds)) != len(grid.bench.seeds):
        problems.append(f"$.bench.seeds: repeated seeds in {list(grid.bench.seeds)}")
    return problems


def _path(table: str, name: str) -> str:
    return f"$.{table}.{name}" if re.fullmatch(r"[A-Za-z0-9_-]+", name) else f'$.{table}."{name}"'


def cells(grid: Grid) -> list[Cell]:
    """Every cell, dataset by dataset and seed by seed: after one seed, every method has a result."""
    return [Cell(d, m, s) for d in grid.datasets for s in grid.bench.seeds for m in grid.methods]


def read_base(grid: Grid) -> dict[str, Any]:
    return read_toml(grid.base_path.read_text(encoding="utf-8"), str(grid.base_path))


def cell_raw_config(grid: Grid, base: Mapping[str, Any], cell: Cell) -> dict[str, Any]:
    """The cell's raw run config (the dict a TOML file parses to), ready for `parse_config`."""
    dataset, method = grid.datasets[cell.dataset], grid.methods[cell.method]
    raw = copy.deepcopy(dict(base))
    for override in (dataset, method):
        raw.update(copy.deepcopy(override.replace))
    name = f"{cell.dataset}-{cell.method}-seed{cell.seed}"
    overrides = [*grid.bench.set, *dataset.set, *method.set, f"run.seed={cell.seed}", f'run.name="{name}"']
    return apply_overrides(raw, overrides)
