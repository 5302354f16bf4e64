"""ASGI entry for process managers: ``uvicorn --factory licentia.central.asgi:app_from_env``
(and ``licentia central serve --workers N``). Reads the settings from the
environment: this module is an edge, like the CLI. Each app migrates the database
on start, unless ``LICENTIA_MIGRATE=0``: then it refuses to start on a database
that ``licentia central migrate`` has not brought to the newest schema."""

from __future__ import annotations

from fastapi import FastAPI

from .app import create_app, create_cloud_app
from .settings import Settings


def app_from_env() -> FastAPI:
    return create_app(Settings.from_env())


def cloud_app_from_env() -> FastAPI:
    """``licentia cloud serve --workers N``: the cloud leases only."""
    return create_cloud_app(Settings.from_env())
