"""The optional decoding libraries of the `formats` extra, imported only by the kinds that need them."""

from __future__ import annotations

import importlib
from types import ModuleType

from mmcore.errors import ConfigError

#: import name -> the distribution that provides it (all three come with `pip install 'mmcore[formats]'`)
DISTRIBUTIONS = {"PIL": "pillow", "soundfile": "soundfile", "scipy": "scipy"}


def require(kind: str, *modules: str) -> list[ModuleType]:
    """Import `modules` for dataset kind `kind`; a ConfigError naming the extra when one is missing."""
    loaded, missing = [], []
    for name in modules:
        try:
            loaded.append(importlib.import_module(name))
        except ImportError:
            missing.append(DISTRIBUTIONS.get(name, name))
    if missing:
        raise ConfigError(
            f"$.data.kind: {kind!r} needs {', '.join(missing)}, which is not installed: pip install 'mmcore[formats]'"
        )
    return loaded
