"""Fixtures for Central: apps on real SQLite files and a throwaway PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from central_helpers import central_app, make_settings
from fastapi.testclient import TestClient

from licentia._testing import FakeClock
from licentia.central.settings import Settings
from tests.browser import browser  # noqa: F401 - the fixture, for the tests of this directory


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path / "data")


@pytest.fixture
def app(settings: Settings, clock: FakeClock) -> Iterator[Any]:
    with central_app(settings, clock) as application:
        yield application


@pytest.fixture
def client(app: Any) -> Iterator[TestClient]:
    with TestClient(app, client=("203.0.113.7", 50000)) as c:
        yield c


@pytest.fixture
def engine(app: Any) -> Any:
    return app.state.central.db.engine
