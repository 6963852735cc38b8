"""Every shipped config validates (configs whose plugin is not installed are skipped)."""
from pathlib import Path

import pytest

from mmcore.config import load_config
from mmcore.errors import ConfigError
from mmcore.plugins import PluginHost

CONFIGS = sorted((Path(__file__).parent.parent / "configs").glob("*.toml"))


@pytest.fixture(scope="module")
def host():
    return PluginHost()


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_config_validates(path, host):
    try:
        config = load_config(path, host.registry)
    except ConfigError as error:
        if any("pip install mmcore-" in line for line in error.problems):
            pytest.skip(f"its plugin is not installed: {error.problems[0]}")
        raise
    assert host.validate_config(config) == []
