"""PluginHost: pluggy discovery and registration. Nothing else goes through pluggy.

Built-ins register through the same hook as third parties, and first: a kind registered twice keeps
its first owner, so no plugin can silently replace a built-in. A plugin that fails to import, to
register with pluggy or to register its kinds is reported by distribution name while the rest keep
working; a plugin whose registration fails leaves no half of its kinds behind.
"""
from __future__ import annotations

import importlib
import importlib.metadata as metadata
import os
import re
from types import ModuleType
from typing import Any, Iterable

import pluggy
from attrs import frozen

from mmcore import hookspecs
from mmcore.errors import PluginError
from mmcore.registry import ComponentRegistry

ENTRY_POINT_GROUP = "mmcore"
BUILTIN = "mmcore.builtin.plugin"
HOOK_PREFIX = "mmcore_"
_SPEC_NAMES = frozenset(name for name in vars(hookspecs) if name.startswith(HOOK_PREFIX))


@frozen
class PluginFailure:
    distribution: str  # or the module name, for `-p` modules
    error: str
    stage: str  # import | register | hooks | kinds | load_only

    def __str__(self) -> str:
        return f"plugin {self.distribution} failed: {self.error}"


def _env_list(name: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, "").split(",") if item.strip()]


def normalise_name(dist: str) -> str:
    """PEP 503 normal form, so `mmcore_foo`, `mmcore.foo` and `MMCore-Foo` name one distribution."""
    return re.sub(r"[-_.]+", "-", dist).lower()


class PluginHost:
    """Loads plugins and fills one ComponentRegistry.

    autoload: load entry points of group `mmcore` (default: unless MMCORE_DISABLE_PLUGIN_AUTOLOAD is set);
    load_only / block: distribution or entry-point names (default: MMCORE_LOAD_PLUGINS / MMCORE_BLOCK_PLUGINS);
    modules: importable module names, modules or objects with hookimpls (the CLI's `-p module`).
    Registration order, which decides who keeps a duplicate kind: built-ins, entry points by name, modules.
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
        if autoload is None:  # like pytest's switch: any value but empty or "0" turns autoload off
            autoload = os.environ.get("MMCORE_DISABLE_PLUGIN_AUTOLOAD", "").strip() in ("", "0")
        only = list(load_only) if load_only is not None else _env_list("MMCORE_LOAD_PLUGINS")
        blocked = list(block) if block is not None else _env_list("MMCORE_BLOCK_PLUGINS")

        self._register(importlib.import_module(BUILTIN), "mmcore", ("mmcore", _version("mmcore")))
        if autoload:
            self._load_entry_points({normalise_name(d): d for d in only}, {normalise_name(d) for d in blocked})
        for module in modules:
            self._add_module(module)
        self.registry = self._fill_registry()

    @property
    def hook(self) -> Any:
        return self.pm.hook

    def _fail(self, distribution: str, stage: str, error: str) -> None:
        one_line = "; ".join(part.strip() for part in error.splitlines() if part.strip())  # one warning line each
        self.failures.append(PluginFailure(distribution, one_line, stage))

    # -- loading -----------------------------------------------------------------------------
    def _add_module(self, module: str | ModuleType | object) -> None:
        """Register a module (by import name) or any object with hookimpls, as `-p` does."""
        if isinstance(module, str):
            name = module
            try:
                plugin: object = importlib.import_module(module)
            except Exception as exc:  # noqa: BLE001 - any import failure is the plugin's, not ours
                self._fail(name, "import", f"import of {module} raised {type(exc).__name__}: {exc}")
                return
        else:
            plugin, name = module, _object_name(module)
        self._register(plugin, self._free_name(name), (name, getattr(plugin, "__version__", "")))

    def _free_name(self, name: str) -> str:
        """pluggy needs unique plugin names; two instances of one plugin class both register."""
        candidate, n = name, 1
        while self.pm.get_plugin(candidate) is not None:
            n += 1
            candidate = f"{name}#{n}"
        return candidate

    def _register(self, plugin: object, name: str, dist: tuple[str, str]) -> None:
        if self.pm.is_registered(plugin):  # e.g. `-p` names a module an entry point already loaded
            return
        try:
            self.pm.register(plugin, name=name)
        except Exception as exc:  # noqa: BLE001 - pluggy's PluginValidationError and the like
            self._fail(dist[0], "register", f"{type(exc).__name__}: {exc}")
            return
        self.distributions[name] = dist
        self._check_hook_names(plugin, dist[0])

    def _check_hook_names(self, plugin: object, dist: str) -> None:
        """Catch the two silent mistakes: a misspelt hook name and a hook without @hookimpl."""
        for caller in self.pm.get_hookcallers(plugin) or []:
            if not caller.has_spec() and not all(i.optionalhook for i in caller.get_hookimpls()):
                self._fail(dist, "hooks", f"{caller.name} is not an mmcore hook (misspelt?); it is never called")
        marked = {caller.name for caller in self.pm.get_hookcallers(plugin) or []}
        for name in sorted(_SPEC_NAMES - marked):
            if callable(getattr(plugin, name, None)):
                self._fail(dist, "hooks", f"{name} lacks the @mmcore.hookimpl marker; it is never called")

    def _load_entry_points(self, only: dict[str, str], blocked: set[str]) -> None:
        seen: set[str] = set()
        for ep in sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
            dist = ep.dist.name if ep.dist is not None else ep.value.split(".")[0]
            version = ep.dist.version if ep.dist is not None else ""
            names = {normalise_name(dist), normalise_name(ep.name)}
            seen |= names
            if names & blocked or (only and not names & only.keys()):
                continue
            if self.pm.get_plugin(ep.name) is not None:
                other = self.distributions[ep.name][0]
                self._fail(dist, "register", f"entry point name {ep.name!r} is already taken by {other}; skipped")
                continue
            try:
                plugin = ep.load()
            except Exception as exc:  # noqa: BLE001
                self._fail(dist, "import", f"import of {ep.value} raised {type(exc).__name__}: {exc}")
                continue
            self._register(plugin, ep.name, (dist, version))
        for missing in sorted(only.keys() - seen):
            self._fail(only[missing], "load_only", "named in MMCORE_LOAD_PLUGINS but not installed")

    def _fill_registry(self) -> ComponentRegistry:
        registry = ComponentRegistry()
        # get_hookimpls() lists in registration order (pluggy *calls* them LIFO), so built-ins go first.
        for impl in _plain_impls(self.pm.hook.mmcore_register_components):
            dist = self.distributions.get(impl.plugin_name, (impl.plugin_name, ""))[0]
            registry.current_distribution = dist
            # Snapshot, so a registration that raises halfway leaves none of its kinds behind.
            kinds, functions, errors = dict(registry._kinds), dict(registry._value_functions), list(registry.errors)
            try:
                impl.function(**{arg: registry for arg in impl.argnames})  # an impl may take no argument
            except Exception as exc:  # noqa: BLE001
                registry._kinds, registry._value_functions, registry.errors = kinds, functions, errors
                self._fail(dist, "kinds", f"mmcore_register_components raised {type(exc).__name__}: {exc}")
        registry.current_distribution = "mmcore"
        return registry

    # -- what the CLI asks ---------------------------------------------------------------------
    def problems(self) -> list[str]:
        """Import/registration failures and duplicate kinds, one line each."""
        return [str(f) for f in self.failures] + list(self.registry.errors)

    def distribution_of(self, plugin_name: str) -> str:
        return self.distributions.get(plugin_name, (plugin_name, ""))[0]

    def validate_config(self, config: Any) -> list[str]:
        """Every plugin's `mmcore_validate_config` problems; a plugin that crashes is a PluginError."""
        problems: list[str] = []
        for impl in _plain_impls(self.pm.hook.mmcore_validate_config):  # registration order: built-ins first
            try:
                found = impl.function(**{arg: config for arg in impl.argnames})
            except Exception as exc:  # noqa: BLE001
                raise PluginError(self.distribution_of(impl.plugin_name),
                                  f"mmcore_validate_config raised {type(exc).__name__}: {exc}") from exc
            problems += list(found or [])
        return problems

    def plugins_info(self, include_builtin: bool = False, hook: str | None = None) -> list[dict[str, Any]]:
        """`mmcore plugins` JSON: one entry per distribution, with its kinds and hooks.

        include_builtin: also list mmcore itself; hook: only distributions implementing this hook."""
        by_dist: dict[str, dict[str, Any]] = {}
        for name, plugin in self.pm.list_name_plugin():
            dist, version = self.distributions.get(name, (name, ""))
            if dist == "mmcore" and not include_builtin:
                continue
            entry = by_dist.setdefault(dist, {"name": dist, "version": version, "kinds": [], "hooks": []})
            entry["hooks"] = sorted({*entry["hooks"], *(c.name for c in self.pm.get_hookcallers(plugin) or [])})
        for entry in by_dist.values():
            entry["kinds"] = self.registry.kinds_of(entry["name"])
        listed = [e for e in by_dist.values() if hook is None or hook in e["hooks"]]
        return sorted(listed, key=lambda e: e["name"])


def _plain_impls(caller: Any) -> list[Any]:
    """A hook's implementations in registration order; wrappers have nothing to add to these two hooks."""
    return [impl for impl in caller.get_hookimpls() if not (impl.wrapper or impl.hookwrapper)]


def _object_name(plugin: object) -> str:
    if isinstance(plugin, ModuleType):
        return plugin.__name__
    cls = plugin if isinstance(plugin, type) else type(plugin)
    return f"{cls.__module__}.{cls.__qualname__}"


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return ""
