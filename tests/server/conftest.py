"""Fixtures of the license server's tests: a site and its client processes, a real browser."""

import pytest

from tests.browser import browser  # noqa: F401 - the fixture, for the tests of this directory
from tests.server.netsite import Client, Site


@pytest.fixture
def site(tmp_path):
    s = Site(tmp_path)
    yield s
    s.stop()


@pytest.fixture
def clients(site):
    """``clients(name, **kw)``: a client process on ``site``, closed at the end of the test."""
    made: list[Client] = []

    def make(name: str, **kw) -> Client:
        c = Client(site, name, **kw)
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()
