"""TOML from outside (config files, text an administrator wrote): a dict or ``TomlRejected``.

``tomllib`` alone lets more than ``TOMLDecodeError`` out: ``RecursionError`` for deep
nesting, ``ValueError`` for an integer past Python's digit limit, and the caller's
decode or encode error for bytes that are not UTF-8 or text with a lone surrogate.
Every reader of a TOML file goes through here, so each gives its own typed error.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any


class TomlRejected(ValueError):
    """TOML that licentia does not accept (the reason reads after the file's name)."""


def loads(data: str | bytes) -> dict[str, Any]:
    """The document of a TOML text (bytes: UTF-8); ``TomlRejected`` for anything else."""
    try:
        if isinstance(data, (bytes, bytearray, memoryview)):
            text = bytes(data).decode("utf-8")
        else:
            text = data
            text.encode("utf-8")  # a lone surrogate does not encode
    except UnicodeError:
        raise TomlRejected("not UTF-8 text") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise TomlRejected(str(exc)) from None
    except RecursionError:
        raise TomlRejected("nested too deeply") from None
    except ValueError as exc:  # an integer past the digit limit
        raise TomlRejected(f"a value out of range ({exc.__class__.__name__})") from None


def load(path: str | Path) -> dict[str, Any]:
    """The document of a TOML file; ``OSError`` when it cannot be read, ``TomlRejected`` when
    it is not TOML licentia accepts."""
    with open(path, "rb") as fh:
        data = fh.read()
    return loads(data)
