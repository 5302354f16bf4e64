"""License Central: the vendor's back office (firms, items, customers, tickets,
activations). ``create_app(settings)`` builds the ASGI app; ``licentia central
serve`` runs it."""

from __future__ import annotations

from typing import Any

__all__ = ["Settings", "create_app"]


def __getattr__(name: str) -> Any:  # lazy: importing the package loads no web framework
    if name == "create_app":
        from .app import create_app

        return create_app
    if name == "Settings":
        from .settings import Settings

        return Settings
    raise AttributeError(name)
