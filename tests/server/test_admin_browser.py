"""The /admin page in a real browser: sign in, see licenses and sessions, release one."""

from __future__ import annotations

import pytest

from tests.server.netsite import Site

pytestmark = pytest.mark.slow


@pytest.fixture
def site(tmp_path):
    s = Site(tmp_path)
    yield s
    s.stop()


def test_admin_page_signs_in_lists_and_releases(site, browser, tmp_path):
    from tests.server.netsite import Client

    site.add_license(quantity=2)
    site.start()
    alice, bob = Client(site, "a"), Client(site, "b", user="bob")
    try:
        assert alice.access().startswith("OK") and bob.access().startswith("OK")
        page = browser.new_page()
        page.goto(f"{site.url}/admin")
        assert "alice" not in page.content()  # nothing shown before signing in
        page.fill("input[name=token]", "wrong")
        page.click("text=Sign in")
        assert "alice" not in page.content()
        page.goto(f"{site.url}/admin")
        page.fill("input[name=token]", site.admin_token())
        page.click("text=Sign in")
        page.wait_for_selector("text=Sessions")
        rows = page.locator("tr", has_text="alice")
        assert rows.count() == 1 and page.locator("tr", has_text="bob").count() == 1
        page.screenshot(path=str(tmp_path / "admin.png"), full_page=True)
        rows.first.locator("button", has_text="release").click()
        page.wait_for_selector("text=Sessions")
        assert page.locator("tr", has_text="alice").count() == 0
        assert site.seats_in_use() == 1
        page.click("text=Sign out")
        assert "bob" not in page.content()
    finally:
        alice.close()
        bob.close()
