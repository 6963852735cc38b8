"""Every test of this package runs with only this distribution loaded from entry points, which
shows it works without any other plugin (the issue's MMCORE_LOAD_PLUGINS check)."""
import pytest


@pytest.fixture(autouse=True)
def _only_this_plugin(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MMCORE_LOAD_PLUGINS", "mmcore-ogm-ge")
