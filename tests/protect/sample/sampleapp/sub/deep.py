"""Package data through importlib.resources and pkgutil, relative imports both ways."""

import importlib.resources
import json
import pkgutil

from .. import core
from .helper import total

__all__ = ["core", "greeting", "settings", "total"]


def greeting():
    return importlib.resources.files("sampleapp").joinpath("data/greeting.txt").read_text().strip()


def settings():
    via_pkgutil = json.loads(pkgutil.get_data("sampleapp.sub", "settings.json"))
    via_resources = json.loads(importlib.resources.files(__package__).joinpath("settings.json").read_text())
    assert via_pkgutil == via_resources
    return via_resources
