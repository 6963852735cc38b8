"""Every shipped config validates (configs whose plugin is not installed are skipped)."""
from pathlib import Path

import pytest

from mmcore.config import load_config
from mmcore.data import formats
from mmcore.errors import ConfigError
from mmcore.plugins import PluginHost
from mmcore.registry import ComponentRegistry

CONFIG_ROOT = Path(__file__).parent.parent / "configs"
# Run configs: configs/*.toml, and configs/<dataset kind>/<method>.toml for the real-dataset formats,
# whose data need not exist here (validation checks the config; it does not build the data).
# Other folders (configs/bench/) hold other kinds of files.
_FORMATS = ComponentRegistry()
formats.register(_FORMATS)
CONFIGS = sorted([*CONFIG_ROOT.glob("*.toml"),
                  *(p for p in CONFIG_ROOT.glob("*/*.toml") if p.parent.name in _FORMATS.kinds("dataset"))])


@pytest.fixture(scope="module")
def host():
    return PluginHost()


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: str(p.relative_to(CONFIG_ROOT)))
def test_config_validates(path, host):
    try:
        config = load_config(path, host.registry)
    except ConfigError as error:
        if any("pip install mmcore-" in line for line in error.problems):
            pytest.skip(f"its plugin is not installed: {error.problems[0]}")
        raise
    assert host.validate_config(config) == []
