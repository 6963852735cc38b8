"""The configuration reference page, generated at docs-build time from the attrs field metadata
of the top-level config classes and of every kind this repository ships (the same rows
`mmcore kinds` prints, through `mmcore.describe.field_rows`)."""
from __future__ import annotations

import html
import tomllib
from pathlib import Path
from typing import Any, Iterable

import tomli_w

from mmcore.config_schema import DataSection, RunConfig, RunSettings
from mmcore.data.corruption import CorruptionConfig
from mmcore.describe import field_rows
from mmcore.interfaces import CAPABILITIES
from mmcore.plugins import PluginHost, normalise_name
from mmcore.registry import SLOTS, KindSpec

#: Where each slot's tables sit in a config file.
SLOT_TABLES = {
    "dataset": "[data]",
    "encoder": "[encoders.<modality>]",
    "fusion": "[fusion]",
    "valuator": "[valuators.<name>]",
    "balancer": "[[balancers]]",
    "attention_supervisor": "[[attention_supervisors]]",
    "optimizer": "[optimizer]",
    "scheduler": "[scheduler]",
}

INTRO = """# Configuration reference

One TOML file is one run (DESIGN.md §3). This page is generated when the docs are built, from the
`help` metadata, types and defaults of the attrs config classes: the top-level tables first, then
every kind that mmcore and the plugins in this repository register. `mmcore kinds [SLOT]` prints the
same fields for whatever is installed on your machine, third-party plugins included.

Every component table has a `kind`; its other keys are that kind's fields. Unknown keys, unknown
kinds, wrong types and failed validators are all reported at once, each with its `$.path`, and the
command exits with code 2. `mmcore validate CONFIG` runs every check without training.
"""


def repo_distributions(root: Path) -> dict[str, Path]:
    """The plugin distributions this repository ships (plugins/* and docs/examples/*), by name."""
    found = {}
    for pyproject in sorted([*root.glob("plugins/*/pyproject.toml"), *root.glob("docs/examples/*/pyproject.toml")]):
        found[tomllib.loads(pyproject.read_text())["project"]["name"]] = pyproject.parent
    return found


def repo_host(root: Path) -> PluginHost:
    """A host with exactly this repository's plugins, so a foreign plugin installed on the machine
    that builds the docs never lands in them; a repository plugin that is not installed is an error."""
    shipped = repo_distributions(root)
    host = PluginHost(autoload=True, load_only=list(shipped), block=[])
    loaded = {normalise_name(e["name"]) for e in host.plugins_info()}
    missing = [f"{name} (pip install -e {path.relative_to(root)})" for name, path in shipped.items()
               if normalise_name(name) not in loaded]
    problems = host.problems() + [f"plugin {m} is not installed" for m in missing]
    if problems:
        raise RuntimeError("the configuration reference needs every plugin of the repository:\n" + "\n".join(problems))
    return host


def kind_anchor(slot: str, kind: str) -> str:
    return f"{slot}-{kind}".replace("_", "-")


def render(root: Path) -> str:
    registry = repo_host(root).registry
    parts = [INTRO, "## Top-level tables\n", _top_level(), "## Kinds\n", _kind_index(registry)]
    for slot in SLOTS:
        parts.append(f"### {slot.replace('_', ' ')} kinds: `{SLOT_TABLES[slot]}`\n")
        parts.extend(_kind(spec) for spec in registry.specs(slot))
        if slot == "valuator":
            parts.append(f"Value functions a valuator's `value` may name: "
                         f"{', '.join(f'`{name}`' for name in registry.value_functions())}.\n")
    parts.append(_capabilities())
    return "\n".join(parts)


def _top_level() -> str:
    data_fields = [name for name, *_ in field_rows(DataSection) if name != "config"]
    return "\n".join([
        "### The tables of a config file\n",
        "| table | required | meaning |",
        "|---|---|---|",
        *(f"| `{name}` | {'yes' if default is None else 'no'} | {_escape(help_text)} |"
          for name, _type, default, help_text in field_rows(RunConfig)),
        "",
        "### `[run]`\n",
        _table(field_rows(RunSettings, toml_literal)),
        "### `[data]`\n",
        "Next to the dataset kind's own keys (see its entry under *dataset kinds*), `[data]` takes these:\n",
        _table(row for row in field_rows(DataSection, toml_literal) if row[0] in data_fields),
        "### `[data.corruption.<split>]`\n",
        "One table per split (`train`, `val`, `test`); `mmcore eval` applies the same corruption at test time.\n",
        _table(field_rows(CorruptionConfig, toml_literal)),
    ])


def _kind_index(registry: Any) -> str:
    rows = [f"| {slot.replace('_', ' ')} | "
            + ", ".join(f"[`{kind}`](#{kind_anchor(slot, kind)})" for kind in registry.kinds(slot)) + " |"
            for slot in SLOTS]
    return "\n".join(["| slot | kinds |", "|---|---|", *rows, ""])


def _kind(spec: KindSpec) -> str:
    facts = []
    if spec.provides:
        facts.append("provides " + ", ".join(f"`{c}`" for c in sorted(spec.provides)))
    if spec.requires:
        facts.append("requires " + ", ".join(f"`{c}`" for c in sorted(spec.requires)))
    if spec.owns_step:
        facts.append("may own the step (depends on its config)" if callable(spec.owns_step) else "owns the step")
    lines = [f"#### `{spec.kind}` {{#{kind_anchor(spec.slot, spec.kind)}}}\n",
             f"{_escape(spec.help) or '(no help text)'}\n",
             f"*Registered by `{spec.distribution}`" + (f"; {'; '.join(facts)}" if facts else "") + ".*\n"]
    rows = field_rows(spec.config_cls, toml_literal)
    lines.append(_table(rows) if rows else "No fields: `kind` is the whole table.\n")
    return "\n".join(lines)


def _capabilities() -> str:
    rows = [f"| `{name}` | {_escape(text)} |" for name, text in CAPABILITIES.items()]
    return "\n".join([
        "## Capabilities\n",
        "Fusions provide them, balancers and attention supervisors require them; `mmcore validate` names the "
        "fusions that would satisfy a failing requirement. Input and feature drops and per-sample `present` "
        "masks work with every model and need no capability.\n",
        "| capability | meaning |", "|---|---|", *rows, "",
    ])


def _table(rows: Iterable[tuple[str, str, str | None, str]]) -> str:
    """An HTML table: help texts hold `<m>`, `|` and `*`, which Markdown would eat."""
    body = "".join(
        f"<tr><td><code>{html.escape(name)}</code></td><td><code>{html.escape(type_name)}</code></td>"
        f"<td>{'<em>required</em>' if default is None else f'<code>{html.escape(default)}</code>'}</td>"
        f"<td>{html.escape(help_text)}</td></tr>\n"
        for name, type_name, default, help_text in rows
    )
    return f"<table>\n<thead><tr><th>key</th><th>type</th><th>default</th><th>meaning</th></tr></thead>\n<tbody>\n{body}</tbody>\n</table>\n"


def toml_literal(value: Any) -> str:
    """A default as it would be written in the TOML file; None (no TOML literal) is "unset"."""
    if value is None:
        return "unset"
    try:
        return tomli_w.dumps({"x": value}).partition("=")[2].strip()
    except TypeError:  # not a TOML value (an enum, a callable): as Python writes it
        return repr(value)


def _escape(text: str) -> str:
    """Plain text inside Markdown prose: no tags, no emphasis."""
    return html.escape(text).replace("*", r"\*").replace("_", r"\_")
