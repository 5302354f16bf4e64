"""The runtime's configuration file, ``$LICENTIA_HOME/config.toml``.

    [central]
    url = "https://licenses.example.com"   # default License Central for activate/sync

Read with the standard library's tomllib; a missing file is an empty config.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from ..core import errors as E


def load(home: Path) -> dict[str, Any]:
    path = home / "config.toml"
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        return {}
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise E.ActivationError(f"{path} cannot be read ({exc}): fix or remove it") from None


def central_url(home: Path) -> str | None:
    value = load(home).get("central", {}).get("url")
    return str(value) if value else None
