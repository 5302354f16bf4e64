"""The whole chain: License Central issues tickets, `licentia server activate` puts them
into the server's container, runtimes on other machines take seats (local-only items stay
home)."""

from __future__ import annotations

import subprocess
import sys
import time

import httpx
import pytest

from tests.conftest import child_env
from tests.e2e.test_flow import central  # noqa: F401 - the module-scoped Central fixture
from tests.server.netsite import Client, Site

pytestmark = pytest.mark.slow
FIRM = 4343


def test_server_activated_from_central_serves_seats(central, tmp_path):  # noqa: F811
    url, admin = central
    api = httpx.Client(base_url=url + "/api/v1", timeout=30)
    admin_h = {"Authorization": f"Bearer {admin}"}
    api.post("/firms", json={"code": FIRM, "name": "Net Software"}, headers=admin_h).raise_for_status()
    vkey = api.post("/apikeys", json={"firm_code": FIRM}, headers=admin_h).json()["key"]
    h = {"Authorization": f"Bearer {vkey}"}
    floating = api.post(
        "/items", json={"name": "Floating Pro", "product_code": 1, "options": {"quantity": 2}}, headers=h
    )
    floating.raise_for_status()
    local = api.post(
        "/items",
        json={"name": "Desktop Only", "product_code": 2, "options": {"quantity": 5, "local_only": True}},
        headers=h,
    )
    local.raise_for_status()
    assert local.json()["options"]["local_only"] is True
    customer = api.post("/customers", json={"name": "Acme"}, headers=h).json()["number"]
    tickets = []
    for item in (floating.json()["item_id"], local.json()["item_id"], floating.json()["item_id"]):
        r = api.post("/tickets", json={"customer": customer, "items": [item]}, headers=h)
        r.raise_for_status()
        tickets.append(r.json()["tickets"][0]["ticket"])
    pem = tmp_path / "firm.pem"
    pem.write_text(api.get(f"/firms/{FIRM}/public-key", params={"format": "pem"}).text)

    # the server's clock at Central's (real) time: a floating item syncs every 30 days by default
    site = Site(tmp_path / "site", now=int(time.time()))
    site.pem.write_text(pem.read_text())
    site.firm.code = FIRM  # the clients trust Central's firm key (site.pem), not the test firm's
    import shutil

    shutil.rmtree(site.data)  # `server activate` makes the server's container itself
    for ticket in tickets[:2]:
        site.cli("server", "activate", ticket, "--central", url, "--data", str(site.data))
    # the third ticket offline: request file, depot on any machine, apply on the server
    site.cli("server", "activate", tickets[2], "--offline", "-o", "req.json", "--data", str(site.data))
    depot = subprocess.run(
        [sys.executable, "-m", "licentia", "depot", "submit", "req.json", "--central", url, "-o", "upd.json"],
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=120,
        cwd=site.root,
    )
    assert depot.returncode == 0, depot.stdout + depot.stderr
    site.cli("server", "apply", "upd.json", "--data", str(site.data))
    site.start()
    listed = httpx.get(f"{site.url}/api/v1/licenses").json()["licenses"]
    assert sorted((lic["product_code"], lic["seats"]) for lic in listed) == [(1, 2), (1, 2)]
    site.stop()
    site.cli("server", "deactivate", tickets[2], "--data", str(site.data))  # back to Central, freed
    assert api.get(f"/tickets/{tickets[2]}", headers=h).json()["state"] == "deactivated"
    site.start()
    clients = [Client(site, "a"), Client(site, "b"), Client(site, "c")]
    try:
        assert clients[0].access().startswith(f"OK {site.host}")
        assert clients[1].access().startswith(f"OK {site.host}")
        refused = clients[2].access()
        assert refused.startswith("ERR SeatsExhausted") and "2 seat" in refused
        local_only = clients[2].access(product=2)
        assert local_only.startswith("ERR LicenseNotFound") and "local use only" in local_only
        listed = httpx.get(f"{site.url}/api/v1/licenses").json()["licenses"]
        assert [(lic["product_code"], lic["seats"]) for lic in listed] == [(1, 2)]
    finally:
        for c in clients:
            c.close()
        site.stop()


def test_item_without_local_only_keeps_older_documents_working():
    from licentia.core.license import Options

    assert Options.from_json({k: v for k, v in Options().to_json().items() if k != "local_only"}).local_only is False
    assert Options.from_json({**Options().to_json(), "local_only": True}).local_only is True
