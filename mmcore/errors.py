"""User-facing errors. The CLI prints them without a traceback and exits with their code."""
from __future__ import annotations


class MMCoreError(Exception):
    exit_code = 1


class ConfigError(MMCoreError):
    """One or more config problems, each a line that names its `$.path`."""

    exit_code = 2

    def __init__(self, problems: list[str] | str) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("\n".join(self.problems))


class UsageError(MMCoreError):
    exit_code = 2


class DataError(MMCoreError):
    """A data file is missing or unreadable; the message names the file.

    `reason` may be omitted so that a loader worker's error, which torch re-raises in the main
    process as `DataError(<worker traceback text>)`, stays a DataError (exit code 1)."""

    def __init__(self, path: object, reason: str | None = None) -> None:
        self.path = str(path)
        super().__init__(f"{path}: {reason}" if reason is not None else str(path))


class PluginError(MMCoreError):
    """A plugin failed; the message names its distribution."""

    def __init__(self, distribution: str, reason: str) -> None:
        self.distribution = distribution
        super().__init__(f"plugin {distribution}: {reason}")


class NonFiniteLossError(MMCoreError):
    """The loss became NaN or inf; the last good checkpoint is kept."""
