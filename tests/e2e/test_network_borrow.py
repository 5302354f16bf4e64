"""Borrowing: a seat goes into the client's container, works offline, and comes back."""

from __future__ import annotations

import json
import shutil

import pytest

from licentia.core import exchange
from tests.factory import DAY
from tests.server.netsite import Client, Site

pytestmark = pytest.mark.slow


def test_borrow_offline_and_return(tmp_path):
    site = Site(tmp_path)
    site.add_license(quantity=1, expires=site.now + 30 * DAY)
    site.write_config("[borrow]\nmax_days = 7\n")
    site.start()
    clients: list[Client] = []
    try:
        laptop_cli = Client(site, "laptop")
        clients.append(laptop_cli)
        out = laptop_cli.cli("borrow", f"{site.firm.code}:1", "--days", "10").stdout
        assert "Borrowed" in out and site.host in out
        listed = json.loads(laptop_cli.cli("list", "--json").stdout)
        assert any("borrowed from" in lic["status"] for c in listed for lic in c["licenses"])
        desk = Client(site, "desk", user="bob")
        clients.append(desk)
        assert desk.access().startswith("ERR SeatsExhausted")  # the seat stays taken on the server
        status = site.status()
        (borrowed,) = status["borrowed"]
        assert borrowed["expires"] == site.now + 7 * DAY  # the admin's cap

        site.stop()  # the laptop goes offline: no server anywhere
        offline = Client(site, "laptop", servers="")
        clients.append(offline)
        answer = offline.access()
        assert answer.startswith("OK None 1 "), answer  # a local license: no server
        key = bytes.fromhex(answer.split()[3])
        assert key == exchange.derive_product_key(site.firm.secret, site.firm.code, 1, 1)
        offline.close()

        site.start()
        out = laptop_cli.cli("return", f"{site.firm.code}:1").stdout
        assert "Returned" in out
        assert desk.access().startswith("OK")
        returned = Client(site, "laptop", servers="")
        clients.append(returned)  # every client process is stopped at the end, whatever happens
        assert returned.access().startswith("ERR LicenseNotFound")
        returned.close()
        desk.release()

        # a borrow that is not returned ends by itself, on both sides
        laptop_cli.cli("borrow", f"{site.firm.code}:1", "--days", "2")
        site.advance(2 * DAY + 1)
        late = Client(site, "laptop", servers="")
        clients.append(late)
        assert late.access().startswith("ERR LicenseExpired")
        assert desk.access().startswith("OK")  # the server's sweep freed the seat
        report = json.loads(site.cli("server", "usage", "--data", str(site.data), "--events", "--json").stdout)
        kinds = [e["event"] for e in report["events"]]
        assert kinds.count("borrow") == 2 and "return" in kinds and "expire" in kinds
    finally:
        for c in clients:
            c.close()
        site.stop()


def test_borrowed_license_copied_to_another_container_is_refused(tmp_path):
    site = Site(tmp_path)
    site.add_license(quantity=2)
    site.start()
    clients: list[Client] = []
    try:
        a = Client(site, "a")
        clients.append(a)
        a.cli("borrow", f"{site.firm.code}:1", "--days", "1")
        a.close()
        site.stop()
        # b borrows too, then a's borrowed record is planted into b's container state
        b = Client(site, "b", servers=site.host)
        clients.append(b)
        site.start()
        b.cli("borrow", f"{site.firm.code}:1", "--days", "1")
        b.close()
        site.stop()
        from licentia.container import MachineContainer

        (a_dir,) = (site.root / "home-a" / "containers").iterdir()
        (b_dir,) = (site.root / "home-b" / "containers").iterdir()
        ca = MachineContainer.open(a_dir, a.traits)
        cb = MachineContainer.open(b_dir, b.traits)
        record = dict(ca.slots()[site.firm.code].borrowed[0])

        def plant(slots):
            slots[site.firm.code].borrowed = [record]

        cb.mutate(plant)
        planted = Client(site, "b", servers="")
        clients.append(planted)
        assert planted.access().startswith("ERR LicenseInvalid")
        planted.close()
        shutil.rmtree(site.root / "home-b")
    finally:
        for c in clients:
            c.close()
        site.stop()
