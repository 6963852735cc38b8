"""Run configs: read TOML, apply `--set` overrides, structure, cross-check, write back.

One TOML file is one run (DESIGN.md section 3). `load_config` / `parse_config` raise ConfigError
whose `problems` are every problem found, one `$.path: message` line each: first all structuring
problems (config_converter.py), then, once the config is well-formed, the cross-component rules
(config_schema.check_config). `dump_config` writes the resolved config (all defaults filled).
"""
from __future__ import annotations

import copy
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Iterable

import tomli_w
from cattrs.errors import BaseValidationError

from mmcore.config_converter import Problem, make_converter, problem_lines
from mmcore.config_schema import (
    BalancerTable,
    Component,
    DataSection,
    EncoderTable,
    FusionTable,
    OptimizerTable,
    RunConfig,
    RunSettings,
    SchedulerTable,
    Slot,
    SupervisorTable,
    ValuatorTable,
    check_config,
)
from mmcore.errors import ConfigError
from mmcore.registry import ComponentRegistry

__all__ = [
    "BalancerTable",
    "Component",
    "DataSection",
    "EncoderTable",
    "FusionTable",
    "OptimizerTable",
    "RunConfig",
    "RunSettings",
    "SchedulerTable",
    "Slot",
    "SupervisorTable",
    "ValuatorTable",
    "apply_overrides",
    "check_config",
    "config_to_dict",
    "dump_config",
    "load_config",
    "make_converter",
    "parse_config",
    "problem_lines",
]


# -- reading, overriding, writing ------------------------------------------------------------
def load_config(path: str | Path, registry: ComponentRegistry, overrides: Iterable[str] = ()) -> RunConfig:
    """Read, override, structure and cross-check a TOML run config; ConfigError lists every problem."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read config ({getattr(exc, 'strerror', None) or exc})") from None
    return parse_config(text, registry, source=str(path), overrides=overrides)


def parse_config(
    data: Mapping[str, Any] | str,
    registry: ComponentRegistry,
    source: str = "<config>",
    overrides: Iterable[str] = (),
) -> RunConfig:
    """Like load_config, from TOML text or an already-parsed dict (which is not modified)."""
    if isinstance(data, str):
        raw = read_toml(data, source)
    elif isinstance(data, Mapping):
        raw = copy.deepcopy(dict(data))
    else:
        raise ConfigError(f"$: expected a table (got {type(data).__name__})")
    raw = apply_overrides(raw, overrides)
    try:
        config = make_converter(registry).structure(raw, RunConfig)
    except (BaseValidationError, Problem) as exc:
        raise ConfigError(problem_lines(exc)) from None
    problems = check_config(config, registry)
    if problems:
        raise ConfigError(problems)
    return config


def config_to_dict(config: RunConfig) -> dict[str, Any]:
    """Plain dict (TOML structure, `kind` re-inserted, defaults filled); parse_config inverts it."""
    registry = ComponentRegistry()  # unstructuring needs no kinds
    return make_converter(registry).unstructure(config)


#: Sections whose default is empty; an empty one is left out of dump_config's text.
_OPTIONAL_SECTIONS = ("valuators", "balancers", "attention_supervisors")


def dump_config(config: RunConfig) -> str:
    """TOML text of the resolved config, every default filled in. TOML has no null, so unset
    (None) values are omitted, as are empty optional sections; parse_config reads it back equal."""
    table = _without_none(config_to_dict(config))
    for name in _OPTIONAL_SECTIONS:
        if not table[name]:
            del table[name]
    if not table["data"]["corruption"]:
        del table["data"]["corruption"]
    return tomli_w.dumps(table)


def _without_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_none(v) for v in value]
    return value


_SYNTAX_POSITION = re.compile(r"\s*\(at line (\d+), column (\d+)\)$")


def read_toml(text: str, source: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        found = _SYNTAX_POSITION.search(message)
        if found:
            line, column = found.group(1), found.group(2)
            message = message[: found.start()]
        else:  # "... (at end of document)": point just past the last character
            message = message.replace(" (at end of document)", "") + " at end of document"
            lines = text.split("\n")
            line, column = str(len(lines)), str(len(lines[-1]) + 1)
        raise ConfigError(f"{source}:{line}:{column}: {message}") from None


_OVERRIDE_KEY = re.compile(r"[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*")


class _OverrideError(Exception):
    pass


def apply_overrides(raw: dict[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """A copy of `raw` with each "a.b.c=value" set (value parsed as a TOML literal, else a string).
    Missing tables are created; `balancers.0.alpha` indexes an array (index = length appends)."""
    result = copy.deepcopy(raw)
    problems = []
    for text in overrides:
        try:
            _apply_override(result, text)
        except _OverrideError as exc:
            problems.append(f"override {text!r}: {exc}")
    if problems:
        raise ConfigError(problems)
    return result


def _apply_override(root: dict[str, Any], text: str) -> None:
    key, equals, literal = text.partition("=")
    key = key.strip()
    if not equals or not _OVERRIDE_KEY.fullmatch(key):
        raise _OverrideError("expected KEY=VALUE with a dotted key, e.g. run.epochs=3")
    parts = key.split(".")
    node: Any = root
    path = "$"
    for part, next_part in zip(parts[:-1], parts[1:]):
        # a missing level becomes an array when it is indexed next (balancers.0.kind), else a table
        node, path = _override_child(node, part, path, [] if next_part.isdigit() else {})
    _override_assign(node, parts[-1], _parse_literal(literal), path)


def _override_child(node: Any, part: str, path: str, empty: Any) -> tuple[Any, str]:
    if isinstance(node, dict):
        if part not in node:
            node[part] = empty
        return node[part], f"{path}.{part}"
    if isinstance(node, list):
        index = _override_index(node, part, path)
        if index == len(node):
            node.append(empty)
        return node[index], f"{path}[{index}]"
    raise _OverrideError(f"{path} is {_toml_repr(node)}, not a table or an array")


def _override_assign(node: Any, part: str, value: Any, path: str) -> None:
    if isinstance(node, dict):
        node[part] = value
    elif isinstance(node, list):
        index = _override_index(node, part, path)
        node[index:index + 1] = [value]
    else:
        raise _OverrideError(f"{path} is {_toml_repr(node)}, not a table or an array")


def _override_index(array: list[Any], part: str, path: str) -> int:
    if not part.isdigit():
        raise _OverrideError(f"{path} is an array; expected an index, not {part!r}")
    index = int(part)
    if index > len(array):
        entries = "1 entry" if len(array) == 1 else f"{len(array)} entries"
        raise _OverrideError(
            f"{path} has {entries}; index {index} is out of range (at most {len(array)}, which appends)"
        )
    return index


def _parse_literal(text: str) -> Any:
    text = text.strip()
    try:
        parsed = tomllib.loads(f"v = {text}")
    except tomllib.TOMLDecodeError:
        return text
    return parsed["v"] if parsed.keys() == {"v"} else text


def _toml_repr(scalar: Any) -> str:
    return tomli_w.dumps({"v": scalar})[len("v = "):].strip()
