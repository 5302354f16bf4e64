"""licentia.runtime: the SDK inside vendor applications.

``access()``, ``trust()``, ``info()`` and ``Handle`` are what an application uses; the
runtime factory (``factory``, ``get_runtime()``, ``make_runtime()``) is what the CLI,
the license server and tests build runtimes from. The network names (finding license
servers, borrowing) load on first use, so ``import licentia`` stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._factory import RuntimeFactory, access, factory, get_runtime, info, make_runtime, trust
from ._handle import Handle
from ._runtime import MODES, Runtime, system_clock

if TYPE_CHECKING:  # pragma: no cover
    from ._borrowing import borrow, borrowed, give_back
    from ._servers import (
        CLOUD_ORDERS,
        DEFAULT_PORT,
        NetConfig,
        ServerAddr,
        discover,
        parse_server,
        parse_servers,
        read_config,
    )

_LAZY = {
    "CLOUD_ORDERS": "._servers",
    "DEFAULT_PORT": "._servers",
    "NetConfig": "._servers",
    "ServerAddr": "._servers",
    "borrow": "._borrowing",
    "borrowed": "._borrowing",
    "discover": "._servers",
    "give_back": "._borrowing",
    "parse_server": "._servers",
    "parse_servers": "._servers",
    "read_config": "._servers",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


__all__ = [
    "CLOUD_ORDERS",
    "DEFAULT_PORT",
    "MODES",
    "Handle",
    "NetConfig",
    "Runtime",
    "RuntimeFactory",
    "ServerAddr",
    "access",
    "borrow",
    "borrowed",
    "discover",
    "factory",
    "get_runtime",
    "give_back",
    "info",
    "make_runtime",
    "parse_server",
    "parse_servers",
    "read_config",
    "system_clock",
    "trust",
]
