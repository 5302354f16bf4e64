"""A real license server process and real runtimes in separate processes."""

from __future__ import annotations

import json
import re
import time

import httpx
import pytest

from licentia.core import exchange
from tests.seats.acl_rules import ACL
from tests.server.netsite import Client

pytestmark = pytest.mark.slow


def ok(answer: str) -> list[str]:
    assert answer.startswith("OK"), answer
    return answer.split()


def test_two_runtimes_contend_for_one_seat(site, clients):
    site.add_license(quantity=1)
    site.start()
    a, b = clients("a"), clients("b")
    _, server, license_id, key = ok(a.access())
    assert server == site.host and license_id == "1"
    assert bytes.fromhex(key) == exchange.derive_product_key(site.firm.secret, site.firm.code, 1, 1)
    refused = b.access()
    assert refused.startswith("ERR SeatsExhausted") and "1 seat" in refused
    assert site.seats_in_use() == 1
    ok(a.release())
    ok(b.access())
    assert site.seats_in_use() == 1
    ok(b.release())
    assert site.seats_in_use() == 0


def test_a_served_license_counts_its_sync_interval_from_the_servers_sync(site, clients):
    """Central issued the license 40 days ago with a 30-day sync interval; the server synced
    today: its clients run (the lease, signed today, stands for that sync)."""
    day = 86400
    site.add_license(quantity=1, sync_interval=30 * day)
    site.advance(40 * day)
    site.add_license(product=2)  # an update from Central: the server's container is in sync
    site.start()
    a = clients("a")
    ok(a.access())
    ok(a.release())


def test_station_mode_shares_a_seat_per_machine(site, clients):
    site.add_license(quantity=1)
    site.start()
    a1 = clients("a1", host="ws-1")
    a2 = clients("a2", same_machine_as=a1)  # another process of the same user on the same machine
    other = clients("b", host="ws-1", user="bob")  # bob's own container on ws-1
    ok(a1.access(mode="station"))
    ok(a2.access(mode="station"))
    assert site.seats_in_use() == 1
    assert other.access(mode="station").startswith("ERR SeatsExhausted")
    ok(a1.release())
    assert site.seats_in_use() == 1  # a2 still holds the shared seat
    ok(a2.release())
    ok(other.access(mode="station"))


def test_exclusive_mode_one_process_per_host(site, clients):
    site.add_license(quantity=2)
    site.start()
    a = clients("a", host="ws-1")
    same_host = clients("b", same_machine_as=a)
    other_host = clients("c", host="ws-2")
    ok(a.access(mode="exclusive"))
    assert same_host.access(mode="exclusive").startswith("ERR AccessDenied")
    assert same_host.access(mode="user").startswith("ERR AccessDenied")
    ok(other_host.access(mode="exclusive"))
    assert site.seats_in_use() == 2


def test_nolimit_needs_a_license_without_a_seat_limit(site, clients):
    site.add_license(product=1, quantity=1)
    site.add_license(product=2, quantity=0)
    site.start()
    a, b = clients("a"), clients("b")
    assert a.access(product=1, mode="nolimit").startswith("ERR AccessDenied")
    ok(a.access(product=2, mode="nolimit"))
    ok(b.access(product=2, mode="nolimit"))
    assert site.seats_in_use(2) == 0


def test_heartbeat_loss_frees_the_seat_after_the_ttl(site, clients):
    site.add_license(quantity=1)
    site.start()
    a, b = clients("a"), clients("b")
    ok(a.access())
    time.sleep(1.0)  # a few heartbeats (every 0.3 s) keep it
    assert b.access().startswith("ERR SeatsExhausted")
    a.kill9()  # dies without releasing: stops renewing
    assert b.access().startswith("ERR SeatsExhausted")
    site.advance(31)  # the server's TTL is 30 s (its clock is the shared time file)
    ok(b.access())
    events = site.cli("server", "usage", "--data", str(site.data), "--events", "--json").stdout
    kinds = [e["event"] for e in json.loads(events)["events"]]
    assert "expire" in kinds and "renew" in kinds


def test_linger_keeps_the_seat_after_release(site, clients):
    site.write_config(linger=60)
    site.add_license(quantity=1)
    site.start()
    a, b = clients("a"), clients("b", user="bob")
    ok(a.access())
    ok(a.release())
    assert b.access().startswith("ERR SeatsExhausted")
    site.advance(61)
    ok(b.access())


def test_reconnect_after_a_server_restart_keeps_one_seat(site, clients):
    site.add_license(quantity=2)
    site.start()
    a = clients("a")
    ok(a.access())
    site.kill9()
    site.advance(45)  # the lease ran out while the server was away
    site.start()
    a.wait_event("lost h")
    a.wait_event("back h")
    assert site.seats_in_use() == 1  # its own seat back, never a second one
    sessions = site.status()["sessions"]
    assert len(sessions) == 1
    assert ok(a.cmd("lost h"))[1] == "False"


def test_a_short_drop_is_invisible(site, clients):
    site.add_license(quantity=1)
    site.start()
    a, b = clients("a"), clients("b")
    ok(a.access())
    site.kill9()
    time.sleep(0.8)  # heartbeats (every 0.3 s) fail meanwhile, but the lease has not run out
    site.start()
    events = a.settle(1.5)  # what the client said during the drop and after it, read for real
    assert "lost h" not in events and "back h" not in events, events
    assert ok(a.cmd("lost h"))[1] == "False"
    assert site.seats_in_use() == 1
    assert b.access().startswith("ERR SeatsExhausted")
    (session,) = site.status()["sessions"]
    assert session["user"] == "alice"


def test_lease_lost_callback_when_the_administrator_releases(site, clients):
    site.add_license(quantity=1)
    site.start()
    a, b = clients("a"), clients("b")
    ok(a.access())
    (session,) = site.status()["sessions"]
    r = httpx.delete(
        f"{site.url}/api/v1/admin/sessions/{session['lease_id']}",
        headers={"Authorization": f"Bearer {site.admin_token()}"},
    )
    assert r.json() == {"released": True}
    a.wait_event("lost h")
    assert ok(a.cmd("lost h"))[1] == "True"
    ok(b.access())  # the seat is free
    assert site.seats_in_use() == 1
    ok(b.release())
    # a released lease is lost for good: a does not take the free seat back by itself
    events = a.settle(2.5)  # longer than the runtime waits between two tries to get a lost seat back (2 s)
    assert "back h" not in events, events
    assert ok(a.cmd("lost h"))[1] == "True"
    assert site.seats_in_use() == 0 and site.status()["sessions"] == []


def test_forked_child_does_not_inherit_the_lease(site, clients):
    site.add_license(quantity=1)
    site.start()
    a = clients("a")
    ok(a.access())
    _, child_saw_released, parent_released = ok(a.cmd("fork h"))
    assert child_saw_released == "True" and parent_released == "False"
    time.sleep(0.5)
    assert site.seats_in_use() == 1  # the child's release() did not free the parent's seat


def test_acl_deny_reserve_and_max_and_reload(site, clients):
    site.add_license(quantity=3)
    site.write_config(ACL)
    site.start()
    version = site.health()["config_version"]
    mallory = clients("m", user="mallory")
    carol1, carol2 = clients("c1", user="carol"), clients("c2", user="carol")
    dave, bob = clients("d", user="dave"), clients("b", user="bob")
    denied = mallory.access()
    assert denied.startswith("ERR AccessDenied")
    assert "mallory" not in denied and "#1" not in denied  # generic for the client
    assert "rule #1" in site.log()  # the server log names the rule
    ok(carol1.access())
    assert carol2.access().startswith("ERR AccessDenied")  # MAX 1 for carol
    assert "rule #3" in site.log()
    ok(dave.access())
    assert clients("d2", user="dave").access().startswith("ERR SeatsExhausted")  # the last seat is eng's
    ok(bob.access())
    # lift the deny rule: the file change is picked up without a restart
    site.write_config("")
    deadline = time.monotonic() + 20
    while site.health()["config_version"] == version:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    ok(carol1.release())
    ok(mallory.access())
    # SIGHUP reloads too; a broken file keeps the live config and says so
    live = site.health()["config_version"]
    site.config.write_text("[[rules]]\naction = 'nonsense'\n")
    site.hup()
    deadline = time.monotonic() + 20
    while not site.health()["config_error"]:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert site.health()["config_version"] == live


def test_unreachable_servers_are_all_named(site, tmp_path):
    from tests.conftest import free_port

    p1, p2 = free_port(), free_port()
    c = Client(site, "a", servers=f"127.0.0.1:{p1},127.0.0.1:{p2}")
    try:
        answer = c.access()
        assert answer.startswith("ERR ServerUnreachable")
        assert f"127.0.0.1:{p1}" in answer and f"127.0.0.1:{p2}" in answer
    finally:
        c.close()


def test_local_only_licenses_are_never_served(site, clients):
    site.add_license(product=1, quantity=5, local_only=True)
    site.start()
    answer = clients("a").access()
    assert answer.startswith("ERR LicenseNotFound") and "local use only" in answer
    assert httpx.get(f"{site.url}/api/v1/licenses").json() == {"licenses": []}


def test_the_closest_error_wins_between_local_and_network(site, clients):
    site.add_license(quantity=1, expires=site.now - 10)
    site.start()
    answer = clients("a").access()
    assert answer.startswith("ERR LicenseExpired") and site.host in answer


def test_access_token(site, clients):
    site.add_license(quantity=1)
    site.write_config(access_token="s3cret")
    site.start()
    assert clients("a").access().startswith("ERR AccessDenied")
    ok(clients("b", LICENTIA_SERVER_TOKEN="s3cret").access())
    assert httpx.get(f"{site.url}/api/v1/licenses").status_code == 401


def test_operator_views(site, clients):
    site.add_license(quantity=2)
    site.start()
    a = clients("a")
    ok(a.access())
    assert clients("b", user="bob").access(feature=0).startswith("OK")
    health = site.health()
    assert health["status"] == "ok" and health["config_version"] >= 1
    metrics = httpx.get(f"{site.url}/metrics").text
    assert 'licentia_seats_total{firm="10101",product="1"} 2.0' in metrics
    assert 'licentia_seats_used{firm="10101",product="1"} 2.0' in metrics
    assert "licentia_server_request_seconds_bucket" in metrics
    status = site.cli("server", "status", "--url", site.url, "--data", str(site.data)).stdout
    assert "alice" in status and "bob" in status and "10101" in status
    # the admin page: a login form, then the sessions with a release button
    page = httpx.get(f"{site.url}/admin")
    assert "Admin token" in page.text and "alice" not in page.text
    with httpx.Client(base_url=site.url, headers={"Origin": site.url}) as web:  # a browser names its origin
        r = web.post("/admin/login", data={"token": site.admin_token()})
        assert r.status_code == 303
        assert site.admin_token() not in r.headers["set-cookie"]  # the cookie holds a session id, not the token
        page = web.get("/admin").text
        assert "alice" in page and "host-a" in page and "release" in page
        csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
        lease_id = next(s["lease_id"] for s in site.status()["sessions"] if s["user"] == "alice")
        # a form without the page's CSRF token, or from another site, changes nothing
        assert web.post(f"/admin/sessions/{lease_id}/release").status_code == 403
        foreign = {"Origin": "http://127.0.0.9:8080"}
        assert web.post(f"/admin/sessions/{lease_id}/release", data={"csrf": csrf}, headers=foreign).status_code == 403
        assert site.seats_in_use() == 2
        assert web.post(f"/admin/sessions/{lease_id}/release", data={"csrf": csrf}).status_code == 303
        assert web.post("/admin/logout", data={"csrf": csrf}).status_code == 303
        assert "alice" not in web.get("/admin").text  # signed out: the session is gone on the server
    assert site.seats_in_use() == 1
    origin = {"Origin": site.url}
    for _ in range(5):
        assert httpx.post(f"{site.url}/admin/login", data={"token": "wrong"}, headers=origin).status_code == 401
    # sign-ins are rate limited per address: even the right token waits now
    assert httpx.post(f"{site.url}/admin/login", data={"token": site.admin_token()}, headers=origin).status_code == 429


def test_usage_report_and_verify(site, clients):
    site.add_license(quantity=1)
    site.write_config(lease_ttl=600)
    site.start()
    a, b = clients("a"), clients("b", user="bob")
    ok(a.access(feature=5))
    site.advance(359)
    assert b.access().startswith("ERR SeatsExhausted")
    ok(a.release())
    report = json.loads(site.cli("server", "usage", "--data", str(site.data), "--json").stdout)
    assert report["errorCode"] == 0
    rows = report["licenseUsageList"]
    done = next(r for r in rows if r["success"])
    assert done["seconds"] == 359 and done["featureCode"] == 5 and done["ticketLicenseId"] == 1
    assert done["userIdentification"] == "alice@host-a" and done["firmCode"] == site.firm.code
    assert any(r["fail"] == 1 and r["userIdentification"] == "bob@host-b" for r in rows)
    csv = site.cli("server", "usage", "--data", str(site.data), "--csv").stdout
    assert csv.splitlines()[0].startswith("accessTime,releaseTime,seconds,success,fail,invalid,firmCode")
    out = site.cli(
        "server", "usage", "--data", str(site.data), "--from", "2000-01-01", "--to", "2001-01-01", "--json"
    ).stdout
    assert json.loads(out)["licenseUsageList"] == []
    assert "intact" in site.cli("server", "usage", "verify", "--data", str(site.data)).stdout
    site.stop()
    import sqlite3

    db = sqlite3.connect(site.data / "seats.db")
    db.execute("UPDATE events SET body = replace(body, '\"seconds\":359', '\"seconds\":1') WHERE kind = 'release'")
    db.commit()
    db.close()
    bad = site.cli("server", "usage", "verify", "--data", str(site.data), ok=False)
    assert bad.returncode != 0 and "changed" in bad.stdout + bad.stderr


def test_lease_lost_while_the_server_is_gone_and_back_with_the_same_seat(site, clients):
    site.add_license(quantity=2)
    site.write_config(lease_ttl=2, heartbeat=0.2)  # the client gives up renewing after 2 s
    site.start()
    a = clients("a")
    ok(a.access())
    (before,) = site.status()["sessions"]
    site.kill9()
    a.wait_event("lost h", timeout=20)
    assert ok(a.cmd("lost h"))[1] == "True"
    site.start()  # the server's clock did not move: the lease is still live there
    a.wait_event("back h", timeout=20)
    (after,) = site.status()["sessions"]
    assert after["lease_id"] == before["lease_id"] and site.seats_in_use() == 1


def test_cloned_machines_reporting_the_same_names_take_a_station_seat_each(site, clients):
    """Cloned VMs report the same user and host name; each proves its own container."""
    site.add_license(quantity=1)
    site.start()
    clones = [clients(f"clone{n}", host="ws-1") for n in range(4)]  # other machine ids, same names
    ok(clones[0].access(mode="station"))
    for clone in clones[1:]:
        assert clone.access(mode="station").startswith("ERR SeatsExhausted")
    assert site.seats_in_use() == 1


def test_a_crashed_and_restarted_process_reclaims_its_own_station_seat(site, clients):
    site.add_license(quantity=2)
    site.start()
    first = clients("w0", host="ws-1")
    ok(first.access(mode="station"))
    previous = first
    for n in range(1, 6):
        previous.proc.kill()  # kill -9: no release, the lease lives until its TTL
        previous.proc.wait()
        again = clients(f"w{n}", same_machine_as=first)
        ok(again.access(mode="station"))
        assert site.seats_in_use() == 1
        previous = again


def _signed_access(user: str) -> dict:
    """A first access as the runtime sends it, signed by a fresh session key (no container)."""
    from licentia.core import grants, hazmat
    from licentia.core.encoding import b64e

    key = hazmat.Ed25519PrivateKey.generate()
    body = {
        "firm_code": 10101,
        "product_code": 1,
        "feature_code": 0,
        "units": 0,
        "release_date": None,
        "mode": "user",
        "client_lease_id": "raw-1",
        "reconnect": False,
        "session": b64e(hazmat.raw_public(hazmat.X25519PrivateKey.generate().public_key())),
        "holder": b64e(hazmat.raw_public(key.public_key())),
        "nonce": "raw-1",
        "user": user,
        "host": "desk",
        "pid": 1,
        "groups": [],
    }
    return {**body, "proof": grants.prove(key, grants.LEASE_REQUEST, grants.request_proof_payload(body))}


def test_a_client_cannot_name_its_own_address_in_a_forwarded_header(site, clients):
    """The address the server sees is the TCP peer's: an ``X-Forwarded-For`` (or
    ``Forwarded``) header from a client, even one on the server's own host, changes
    neither the ``ips`` of the access rules nor the sign-in limit per address."""
    site.add_license(quantity=2)
    site.write_config("[[rules]]\naction = 'allow'\nips = ['10.20.0.0/16']\n")
    site.start()
    spoofed = {"X-Forwarded-For": "10.20.0.5", "Forwarded": "for=10.20.0.5"}
    answer = httpx.post(f"{site.url}/api/v1/leases", json=_signed_access("eve"), headers=spoofed)
    assert answer.status_code == 403 and answer.json()["error"]["type"] == "AccessDenied"
    assert "(127.0.0.1)" in site.log() and "10.20.0.5" not in site.log()
    assert site.seats_in_use() == 0
    origin = {"Origin": site.url}
    for _ in range(5):
        assert httpx.post(f"{site.url}/admin/login", data={"token": "wrong"}, headers=origin).status_code == 401
    # another address named in a header is still this client: it waits as well
    for n in range(3):
        forged = {**origin, "X-Forwarded-For": f"10.66.0.{n}"}
        login = httpx.post(f"{site.url}/admin/login", data={"token": site.admin_token()}, headers=forged)
        assert login.status_code == 429
