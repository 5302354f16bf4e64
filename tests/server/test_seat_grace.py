"""Grace on a license server's seat is a short borrow: granted only as far as the license
and the server allow, held in the client's machine container, and counted on the server
until the client container's return receipt arrives or the grace ends."""

from __future__ import annotations

import json

import httpx
import pytest

from licentia.core import hazmat
from licentia.core.documents import sign_document
from tests.server.netsite import Client, Site

pytestmark = pytest.mark.slow

HOUR = 3600
TTL = 30  # BASE_SERVER's lease_ttl


def ok(answer: str) -> list[str]:
    assert answer.startswith("OK"), answer
    return answer.split()


def grace_of(client: Client, name: str = "h") -> int:
    return int(ok(client.cmd(f"grace {name}"))[1])


def sessions(site: Site) -> list[dict]:
    return site.status()["sessions"]


def wait_swept(site: Site) -> None:
    """Let the server's sweep (every 0.1 s) see the time the test just set."""
    import time

    time.sleep(0.5)


def metric(site: Site, name: str) -> float:
    for line in httpx.get(f"{site.url}/metrics", timeout=10).text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise KeyError(name)


def held_graces(client: Client) -> list[dict]:
    """The grace records in the client's machine container (read from its state file)."""
    states = list(client.home.rglob("state.json"))
    out: list[dict] = []
    for path in states:
        slots = json.loads(path.read_text())["body"]["slots"]
        for slot in slots.values():
            out.extend(slot.get("graces") or [])
    return out


def test_grace_is_the_smallest_of_the_ask_the_license_and_the_server(site, clients):
    site.add_license(product=1, quantity=5, max_grace=2 * HOUR)
    site.add_license(product=2, quantity=5)  # no max_grace: no grace on network seats
    site.write_config(max_grace="30m")
    site.start()
    a = clients("a")
    ok(a.access("big", product=1, grace=30 * 24 * HOUR))
    assert grace_of(a, "big") == 30 * 60  # the server's cap below the license's 2 h
    ok(a.access("none", product=1))
    assert grace_of(a, "none") == 0  # asked for none
    ok(a.access("other", product=2, grace=HOUR))
    assert grace_of(a, "other") == 0  # the license allows none
    site.write_config()  # no server cap: the license's own
    site.hup()
    import time

    time.sleep(0.5)
    ok(a.access("again", product=1, grace=30 * 24 * HOUR))
    assert grace_of(a, "again") == 2 * HOUR
    graced = {s["lease_id"]: s["grace_until"] for s in sessions(site)}
    assert sorted(v - site.now for v in graced.values() if v is not None) == [30 * 60, 2 * HOUR]


def test_a_crashed_holder_keeps_its_seat_counted_until_its_grace_ends(site, clients):
    """A seat with grace ended by a crash: the seat stays counted (state grace) past the
    lease TTL, so another machine gets no seat while this one may run offline."""
    site.add_license(quantity=1, max_grace=2 * HOUR)
    site.start()
    a, b = clients("a"), clients("b")
    ok(a.access(grace=2 * HOUR))
    assert grace_of(a) == 2 * HOUR
    assert len(held_graces(a)) == 1
    a.kill9()
    site.advance(TTL * 4)  # far past the lease TTL: without grace the seat would be free
    wait_swept(site)
    assert [s["state"] for s in sessions(site)] == ["grace"]
    assert metric(site, "licentia_grace") == 1
    assert b.access().startswith("ERR SeatsExhausted")
    site.advance(2 * HOUR)
    wait_swept(site)
    assert sessions(site) == []
    ok(b.access())


def test_a_normal_release_gives_the_grace_back_before_it_frees_the_seat(site, clients):
    site.add_license(quantity=1, max_grace=2 * HOUR)
    site.start()
    a, b = clients("a"), clients("b")
    ok(a.access(grace=2 * HOUR))
    assert len(held_graces(a)) == 1
    ok(a.release())
    assert held_graces(a) == []  # removed from the container before the seat was freed
    assert site.seats_in_use() == 0
    ok(b.access())


def test_a_receipt_that_could_not_be_delivered_is_sent_at_the_next_contact(site, clients):
    site.add_license(quantity=1, max_grace=2 * HOUR)
    site.start()
    a, b = clients("a"), clients("b")
    ok(a.access(grace=2 * HOUR))
    site.stop()
    ok(a.release())  # the server is gone: the receipt is kept
    kept = list((a.home / "receipts").glob("grace-*.json"))
    assert len(kept) == 1 and held_graces(a) == []
    site.start()
    site.advance(TTL * 4)
    wait_swept(site)
    assert [s["state"] for s in sessions(site)] == ["grace"]  # counted: no receipt has come yet
    assert b.access().startswith("ERR SeatsExhausted")
    ok(a.access("again"))  # the next contact delivers the kept receipt first
    assert list((a.home / "receipts").glob("grace-*.json")) == []
    assert [s["state"] for s in sessions(site)] == ["active"]  # the old grace seat is gone
    ok(a.release("again"))
    ok(b.access())


def test_a_restarted_process_takes_its_grace_seat_over(site, clients):
    """kill -9 and restart five times on one machine: one seat held, its grace carried on."""
    site.add_license(quantity=3, max_grace=2 * HOUR)
    site.start()
    first = clients("w0")
    ok(first.access(grace=2 * HOUR))
    previous = first
    for n in range(1, 6):
        previous.kill9()
        site.advance(TTL * 2)
        again = clients(f"w{n}", same_machine_as=first)
        ok(again.access(grace=2 * HOUR))
        assert site.seats_in_use() == 1
        live = sessions(site)
        assert [s["state"] for s in live] == ["active"], live
        previous = again
    assert len(held_graces(first)) == 1  # one record per server and product


def test_the_administrators_release_of_a_grace_seat_keeps_it_counted(site, clients):
    site.add_license(quantity=1, max_grace=2 * HOUR)
    site.start()
    a, b = clients("a"), clients("b")
    ok(a.access(grace=2 * HOUR))
    lease_id = sessions(site)[0]["lease_id"]
    r = httpx.delete(
        f"{site.url}/api/v1/admin/sessions/{lease_id}",
        headers={"Authorization": f"Bearer {site.admin_token()}"},
        timeout=10,
    )
    assert r.json() == {"released": True}
    assert [s["state"] for s in sessions(site)] == ["lost"]
    assert b.access().startswith("ERR SeatsExhausted")  # the grace still runs on a's machine
    a.wait_event("lost h")
    ok(a.release())  # the receipt ends it
    assert site.seats_in_use() == 0
    ok(b.access())


def test_a_receipt_from_another_key_ends_nothing(site, clients):
    site.add_license(quantity=1, max_grace=2 * HOUR)
    site.start()
    a = clients("a")
    ok(a.access(grace=2 * HOUR))
    a.kill9()
    site.advance(TTL * 4)
    wait_swept(site)
    live = sessions(site)
    lease_id = live[0]["lease_id"]
    serial = site.status()["sessions"][0]["machine"].split(":")[0]
    forged = sign_document(
        "grace-return",
        {"serial": serial, "lease_id": lease_id, "firm_code": site.firm.code, "vtime": site.now},
        hazmat.Ed25519PrivateKey.generate(),
    )
    r = httpx.post(f"{site.url}/api/v1/leases/{lease_id}/return", json={"receipt": forged}, timeout=10)
    assert r.status_code == 400 and "does not verify" in r.json()["error"]["message"]
    assert r.json()["error"]["message"].count(" ") < 12  # no detail for the caller
    r = httpx.post(f"{site.url}/api/v1/leases/nosuchlease/return", json={"receipt": forged}, timeout=10)
    assert r.status_code == 404
    assert [s["state"] for s in sessions(site)] == ["grace"] and site.seats_in_use() == 1
