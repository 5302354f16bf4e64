"""Fixtures of the license server's tests: a real browser for the /admin page."""

from tests.browser import browser  # noqa: F401 - the fixture, for the tests of this directory
