"""PluginHost: pluggy discovery and registration. Nothing else goes through pluggy.

Built-ins register through the same hook as third parties; a plugin that fails to import or to
register is reported by distribution name while the rest keep working.
"""
from __future__ import annotations

import importlib
import importlib.metadata as metadata
import os
from types import ModuleType
from typing import Any, Iterable

import pluggy
from attrs import frozen

from mmcore import hookspecs
from mmcore.registry import ComponentRegistry

ENTRY_POINT_GROUP = "mmcore"
BUILTIN = "mmcore.builtin.plugin"


@frozen
class PluginFailure:
    distribution: str
    error: str

    def __str__(self) -> str:
        return f"plugin {self.distribution} failed: {self.error}"


def _env_list(name: str) -> set[str]:
    return {item.strip() for item in os.environ.get(name, "").split(",") if item.strip()}


def _normalise(dist: str) -> str:
    return dist.lower().replace("_", "-")


class PluginHost:
    """Loads plugins and fills one ComponentRegistry.

    autoload: load entry points (default: unless MMCORE_DISABLE_PLUGIN_AUTOLOAD is set);
    load_only / block: distribution names (default: MMCORE_LOAD_PLUGINS / MMCORE_BLOCK_PLUGINS);
    modules: importable module names registered as plugins (the CLI's `-p module`).
    """

    def __init__(
        self,
        autoload: bool | None = None,
        load_only: Iterable[str] | None = None,
        block: Iterable[str] | None = None,
        modules: Iterable[str | ModuleType | object] = (),
    ) -> None:
        self.pm = pluggy.PluginManager(ENTRY_POINT_GROUP)
        self.pm.add_hookspecs(hookspecs)
        self.failures: list[PluginFailure] = []
        self.distributions: dict[str, tuple[str, str]] = {}  # plugin name -> (distribution, version)
        if autoload is None:
            autoload = not os.environ.get("MMCORE_DISABLE_PLUGIN_AUTOLOAD")
        only = {_normalise(d) for d in (load_only if load_only is not None else _env_list("MMCORE_LOAD_PLUGINS"))}
        blocked = {_normalise(d) for d in (block if block is not None else _env_list("MMCORE_BLOCK_PLUGINS"))}

        self._register(importlib.import_module(BUILTIN), "mmcore", ("mmcore", _version("mmcore")))
        if autoload:
            self._load_entry_points(only, blocked)
        for module in modules:
            self.add_module(module)
        self.registry = self._fill_registry()

    @property
    def hook(self) -> Any:
        return self.pm.hook

    def add_module(self, module: str | ModuleType | object) -> None:
        """Register a module (by import name) or any object with hookimpls, as `-p` does."""
        name = module if isinstance(module, str) else getattr(module, "__name__", repr(module))
        try:
            obj = importlib.import_module(module) if isinstance(module, str) else module
        except Exception as exc:  # noqa: BLE001 - any import failure is the plugin's, not ours
            self.failures.append(PluginFailure(name, f"{type(exc).__name__}: {exc}"))
            return
        self._register(obj, name, (name, ""))

    def _register(self, plugin: object, name: str, dist: tuple[str, str]) -> None:
        if self.pm.is_registered(plugin) or self.pm.get_plugin(name) is not None:
            return
        self.pm.register(plugin, name=name)
        self.distributions[name] = dist

    def _load_entry_points(self, only: set[str], blocked: set[str]) -> None:
        for ep in sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
            dist = ep.dist.name if ep.dist is not None else ep.value.split(".")[0]
            version = ep.dist.version if ep.dist is not None else ""
            if _normalise(dist) in blocked or _normalise(ep.name) in blocked:
                continue
            if only and _normalise(dist) not in only:
                continue
            try:
                plugin = ep.load()
            except Exception as exc:  # noqa: BLE001
                self.failures.append(PluginFailure(dist, f"import of {ep.value} raised {type(exc).__name__}: {exc}"))
                continue
            self._register(plugin, ep.name, (dist, version))

    def _fill_registry(self) -> ComponentRegistry:
        registry = ComponentRegistry()
        for impl in reversed(self.pm.hook.mmcore_register_components.get_hookimpls()):  # registration order
            dist = self.distributions.get(self.pm.get_name(impl.plugin) or "", ("?", ""))[0]
            registry.current_distribution = dist
            try:
                impl.function(registry=registry)
            except Exception as exc:  # noqa: BLE001
                self.failures.append(PluginFailure(dist, f"registration raised {type(exc).__name__}: {exc}"))
        registry.current_distribution = "mmcore"
        return registry

    def problems(self) -> list[str]:
        """Import/registration failures and duplicate kinds, one line each."""
        return [str(f) for f in self.failures] + list(self.registry.errors)

    def plugins_info(self, include_builtin: bool = False) -> list[dict[str, Any]]:
        """`mmcore plugins` JSON: one entry per distribution, with its kinds and hooks."""
        by_dist: dict[str, dict[str, Any]] = {}
        for name, plugin in self.pm.list_name_plugin():
            dist, version = self.distributions.get(name, (name, ""))
            if dist == "mmcore" and not include_builtin:
                continue
            entry = by_dist.setdefault(dist, {"name": dist, "version": version, "kinds": [], "hooks": []})
            entry["hooks"] = sorted({*entry["hooks"], *(c.name for c in self.pm.get_hookcallers(plugin) or [])})
        for entry in by_dist.values():
            entry["kinds"] = self.registry.kinds_of(entry["name"])
        return sorted(by_dist.values(), key=lambda e: e["name"])


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return ""
