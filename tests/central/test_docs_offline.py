"""The API documentation at /docs works on a network without Internet access: a real
browser that may reach nothing but the local Central renders every operation."""

from __future__ import annotations

import pytest
from central_helpers import ServerThread, central_app

pytestmark = pytest.mark.slow


def test_docs_render_with_nothing_but_the_local_server(settings, clock, browser):
    with central_app(settings, clock) as app, ServerThread(app) as server:
        page = browser.new_page()
        foreign: list[str] = []

        def only_local(route):
            if route.request.url.startswith(server.url + "/"):
                route.continue_()
            else:
                foreign.append(route.request.url)
                route.abort()

        page.route("**/*", only_local)
        page.goto(f"{server.url}/docs")
        page.wait_for_selector(".opblock-summary-path", timeout=30_000)
        paths = page.locator(".opblock-summary-path").all_inner_texts()
        assert "/api/v1/activations" in paths and "/api/v1/firms/{code}" in paths
        assert len(paths) == sum(len(ops) for ops in app.openapi()["paths"].values())
        assert foreign == []  # nothing was even asked of another host
