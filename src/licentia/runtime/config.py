"""The runtime's configuration file, ``$LICENTIA_HOME/config.toml``.

    [central]
    url = "https://licenses.example.com"   # default License Central for activate/sync

Read with the standard library's tomllib (through ``core.tomlfile``); a missing file is an empty config.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..core import errors as E
from ..core import tomlfile


def load(home: Path) -> dict[str, Any]:
    path = home / "config.toml"
    try:
        return tomlfile.load(path)
    except FileNotFoundError:
        return {}
    except (OSError, tomlfile.TomlRejected) as exc:
        raise E.ActivationError(f"{path} cannot be read ({exc}): fix or remove it") from None


def central_url(home: Path) -> str | None:
    central = load(home).get("central", {})
    if not isinstance(central, dict):
        raise E.ActivationError(f'{home / "config.toml"}: [central] is a table (url = "https://...")')
    value = central.get("url")
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise E.ActivationError(f"{home / 'config.toml'}: [central] url is text (the address of License Central)")
    return value
