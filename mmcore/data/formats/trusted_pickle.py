"""Pickle files load only when the config trusts them: unpickling runs code chosen by the file.

A file loads when `trusted = true` is set for its dataset, or when its SHA-256 digest is on the
allow-list (`sha256 = [...]` in the config, plus the digests a format publishes, such as the ones
in the MMSA README). A restricted Unpickler is no substitute: the MMSA and MultiBench pickles hold
numpy arrays, whose reconstruction needs exactly the callables an attack would use.
"""

from __future__ import annotations

import hashlib
import pickle
import re
from pathlib import Path
from typing import Any

from attrs import field, frozen
from attrs.validators import deep_iterable, instance_of, matches_re

from mmcore.errors import DataError

_HEX_DIGEST = re.compile(r"[0-9a-f]{64}")


def trusted_field() -> Any:
    return field(
        default=False,
        validator=instance_of(bool),
        metadata={
            "help": "load pickle files without checking their digest (unpickling runs code: only files you trust)"
        },
    )


def sha256_field() -> Any:
    return field(
        default=(),
        converter=lambda values: tuple(str(v).lower() for v in values),
        validator=deep_iterable(matches_re(_HEX_DIGEST)),
        metadata={"help": "SHA-256 digests (hex) of pickle files allowed to load without `trusted`"},
    )


@frozen
class PickleTrust:
    """What a dataset's config says about its pickle files, and where to say it."""

    trusted: bool = False
    digests: frozenset[str] = frozenset()
    config_path: str = "$.data"  # where the user sets `trusted` / `sha256`


def sha256_of(path: Path) -> str:
    with open(path, "rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()


def load_trusted_pickle(path: Path, trust: PickleTrust) -> Any:
    """Unpickle `path` if the config trusts it; otherwise a DataError giving its digest and the keys to set."""
    if not path.is_file():
        raise DataError(path, "no such file")
    if not trust.trusted:
        digest = sha256_of(path)
        if digest not in trust.digests:
            raise DataError(
                path,
                f"not loaded: unpickling runs code, and this file is not trusted (SHA-256 {digest}). "
                f"If you trust it, add its digest to {trust.config_path}.sha256 "
                f'(sha256 = ["{digest}"]) or set {trust.config_path}.trusted = true',
            )
    try:
        with open(path, "rb") as file:
            return pickle.load(file)
    except Exception as error:  # noqa: BLE001 - any failure to unpickle means the file is unusable
        raise DataError(path, f"not a readable pickle ({type(error).__name__}: {error})") from error
