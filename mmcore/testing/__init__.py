"""mmcore.testing: an opt-in pytest plugin for mmcore and its plugins.

Enable it in a conftest.py with ``pytest_plugins = ["mmcore.testing"]``. It offers toy configs,
`run_steps`, recording components and contract checks any plugin can run in its own tests.
"""
from __future__ import annotations

import pytest

from mmcore.testing.contracts import check_id, contract_checks
from mmcore.testing.recording import RecordingPlugin, record_optimizer_steps
from mmcore.testing.toy import make_trainer, run_steps, toy_config

__all__ = ["RecordingPlugin", "check_id", "contract_checks", "make_trainer", "record_optimizer_steps",
           "run_steps", "toy_config"]


@pytest.fixture
def mmcore_toy_config() -> dict:
    """A fresh toy config dict (two synthetic modalities, MLP encoders, concat fusion, SGD)."""
    return toy_config()


@pytest.fixture
def mmcore_recorder() -> RecordingPlugin:
    """A RecordingPlugin; pass it in `modules=[...]` and read `.calls`."""
    return RecordingPlugin()


@pytest.fixture
def mmcore_isolated(monkeypatch: pytest.MonkeyPatch) -> None:
    """Entry-point autoload off for this test: it sees only the plugins it registers itself."""
    monkeypatch.setenv("MMCORE_DISABLE_PLUGIN_AUTOLOAD", "1")
