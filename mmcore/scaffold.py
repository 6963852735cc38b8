"""`mmcore new-plugin NAME`: write a plugin package that installs and passes its own tests as generated.

The package (templates in mmcore/templates/plugin/) registers a balancer and a valuator, both of kind
NAME, through the entry-point group `mmcore`, and tests them with `mmcore.testing`.
"""
from __future__ import annotations

import importlib.util
import keyword
import re
from importlib import resources
from pathlib import Path
from string import Template

from mmcore.errors import UsageError
from mmcore.registry import ComponentRegistry

#: template file -> path in the generated package ({name} and {package} are filled in)
FILES = {
    "pyproject.toml.tmpl": "pyproject.toml",
    "README.md.tmpl": "README.md",
    "init.py.tmpl": "src/{package}/__init__.py",
    "plugin.py.tmpl": "src/{package}/plugin.py",
    "balancer.py.tmpl": "src/{package}/balancer.py",
    "valuator.py.tmpl": "src/{package}/valuator.py",
    "test_plugin.py.tmpl": "tests/test_{name}.py",
}
_NAME = re.compile(r"[a-z][a-z0-9]*(_[a-z0-9]+)*")
_SLOTS = ("balancer", "valuator")  # the kinds the package registers, both named NAME


def check_name(name: str, registry: ComponentRegistry) -> None:
    """A usage error unless NAME makes a valid, new plugin: snake_case, not a Python keyword, not
    a kind or an import package that is installed already."""
    if not _NAME.fullmatch(name) or len(name) > 40:
        raise UsageError(f"plugin name {name!r}: use snake_case (lowercase letters, digits and single "
                         "underscores, starting with a letter, at most 40 characters), e.g. grad_blend")
    if keyword.iskeyword(name):
        raise UsageError(f"plugin name {name!r} is a Python keyword; choose another")
    if name.startswith("mmcore"):
        raise UsageError(f"plugin name {name!r}: leave out the 'mmcore' prefix, the package gets it (mmcore_<name>)")
    for slot in _SLOTS:
        if registry.has(slot, name):
            owner = registry.get(slot, name).distribution
            raise UsageError(f"plugin name {name!r}: {slot} kind {name!r} is already registered by {owner}; choose another")
    if importlib.util.find_spec(f"mmcore_{name}") is not None:
        raise UsageError(f"plugin name {name!r}: a package mmcore_{name} is already importable; choose another")


def new_plugin(name: str, parent: Path, registry: ComponentRegistry, mmcore_version: str) -> list[Path]:
    """Write the package into parent/NAME; returns the files written."""
    check_name(name, registry)
    root = parent / name
    if root.exists():
        raise UsageError(f"{root} already exists; choose another name or --dir")
    fields = _fields(name, mmcore_version)
    templates = resources.files("mmcore") / "templates" / "plugin"
    written = []
    for template, target in FILES.items():
        path = root / target.format(name=name, package=fields["package"])
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(Template(templates.joinpath(template).read_text()).substitute(fields))
        written.append(path)
    return written


def _fields(name: str, mmcore_version: str) -> dict[str, str]:
    major, minor = (int(part) for part in mmcore_version.split(".")[:2])
    return {
        "name": name,
        "package": f"mmcore_{name}",
        "dist": "mmcore-" + name.replace("_", "-"),
        "Name": "".join(part.capitalize() for part in name.split("_")),
        "mmcore_requirement": f"mmcore>={major}.{minor},<{major}.{minor + 1}",
    }
