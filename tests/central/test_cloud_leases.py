"""Cloud leases: the license server protocol under /api/v1/cloud, for a linked device.

Real Central in-process (real SQLite; the two-process test on PostgreSQL is in
test_cloud_seats.py and tests/e2e), real keys: requests are made as the runtime makes them
(a session key that signs them, the device's machine container proving itself over a
challenge of Central). Each attack the issue names gets a typed refusal and changes no
seat."""

from __future__ import annotations

import contextlib
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from central_helpers import ADMIN_KEY, MASTER_KEY, FakeContainer, central_app, dump_state, make_settings
from fastapi.testclient import TestClient
from sqlalchemy import select
from test_accounts import PASSWORD, bearer, ok
from test_cloud_containers import Shop

from licentia._testing import FakeClock
from licentia.central.models import AccountSession, CloudDevice, Container, Firm
from licentia.central.models import UsageEvent as UsageRow
from licentia.central.services.attempts import AttemptService
from licentia.central.services.cloud_usage import CloudUsage
from licentia.core import grants, hazmat
from licentia.core.documents import sign_document
from licentia.core.encoding import b64e
from licentia.core.license import LicenseEntry
from tests.conftest import serving_process

API = "/api/v1"
FIRM = 63101


class Device:
    """A linked device: its machine container (FakeContainer's keys) and its session token;
    ``process()`` is one process of the application on it (a session key of its own)."""

    def __init__(self, client: TestClient, shop: Shop, login: str, now: int, name: str = "laptop"):
        self.client = client
        self.box = FakeContainer()
        self.sign_pub = b64e(hazmat.raw_public(self.box.sign_key.public_key()))
        self.token = ok(shop.sign_in(login, now, self.box), 201)["session"]
        self.headers = bearer(self.token)

    def process(self, client: TestClient | None = None) -> Process:
        return Process(self, client or self.client)


class Process:
    def __init__(self, device: Device, client: TestClient):
        self.device = device
        self.client = client
        self.key = hazmat.Ed25519PrivateKey.generate()
        self.holder = b64e(hazmat.raw_public(self.key.public_key()))
        self.session_key = hazmat.X25519PrivateKey.generate()
        self.session = b64e(hazmat.raw_public(self.session_key.public_key()))
        self.counter = 0
        self.n = 0

    def machine_proof(self, challenge: dict[str, Any] | None = None, **changes: Any) -> dict[str, Any]:
        challenge = challenge or self.client.get(API + "/cloud/challenge").json()
        payload = {
            "serial": self.device.box.serial,
            "sign_pub": self.device.sign_pub,
            "server": "http://testserver",
            "nonce": challenge["nonce"],
            "time": challenge["time"],
            "holder": self.holder,
        }
        payload.update(changes)
        return sign_document(grants.SEAT_PROOF, payload, self.device.box.sign_key)

    def request(self, product: int = 9, **changes: Any) -> dict[str, Any]:
        self.n += 1
        body: dict[str, Any] = {
            "firm_code": FIRM,
            "product_code": product,
            "feature_code": 0,
            "client_lease_id": f"c{self.n}-{self.holder[:8]}",
            "reconnect": False,
            "session": self.session,
            "holder": self.holder,
            "nonce": f"n{self.n}",
            "user": "whoever",
            "host": "h",
            "mode": "user",
        }
        machine = changes.pop("machine", None)
        body["machine"] = self.machine_proof() if machine is None else machine
        body.update(changes)
        if body["machine"] is False:
            del body["machine"]
        return {**body, "proof": grants.prove(self.key, grants.LEASE_REQUEST, grants.request_proof_payload(body))}

    def access(self, body: dict[str, Any] | None = None, headers: dict[str, str] | None = None) -> Any:
        body = body or self.request()
        return self.client.post(API + "/cloud/leases", json=body, headers=headers or self.device.headers)

    def proof(self, kind: str, lease: dict[str, Any]) -> str:
        self.counter += 1
        return grants.prove(self.key, kind, grants.lease_proof_payload(lease["lease_id"], self.counter))

    def renew(self, lease: dict[str, Any]) -> Any:
        proof = self.proof(grants.LEASE_RENEW, lease)
        body = {
            "client_lease_id": lease["lease"]["payload"]["client_lease_id"],
            "counter": self.counter,
            "proof": proof,
        }
        return self.client.post(f"{API}/cloud/leases/{lease['lease_id']}/renew", json=body, headers=self.device.headers)

    def release(self, lease: dict[str, Any]) -> Any:
        proof = self.proof(grants.LEASE_RELEASE, lease)
        params = {"client": lease["lease"]["payload"]["client_lease_id"], "counter": str(self.counter), "proof": proof}
        return self.client.delete(f"{API}/cloud/leases/{lease['lease_id']}", params=params, headers=self.device.headers)


def refused(r: Any, status: int, kind: str) -> str:
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert error["type"] == kind, r.text
    return str(error["message"])


#: what a refusal may change: the usage log (a denial is an event), when a session was last seen
LOGGED = ("cloud_seat_events", "cloud_seat_meta", "account_sessions", "cloud_devices")


def seats_state(engine: Any) -> dict[str, Any]:
    return {name: rows for name, rows in dump_state(engine).items() if name not in LOGGED}


def links(engine: Any) -> list[Any]:
    with engine.connect() as conn:
        rows = conn.execute(select(CloudDevice.id, CloudDevice.unlinked, CloudDevice.unlinked_by)).all()
        sessions = conn.execute(select(AccountSession.id, AccountSession.device_id)).all()
    return sorted(map(tuple, rows), key=repr) + sorted(map(tuple, sessions), key=repr)


@pytest.fixture
def shop(client: TestClient) -> Shop:
    s = Shop(client, FIRM)
    ok(s.vendor.post("/items", {"name": "Pair", "product_code": 11, "cloud": True, "options": {"quantity": 2}}), 201)
    return s


def _ticket(shop: Shop, product: int) -> str:
    item = next(i["item_id"] for i in ok(shop.vendor.get("/items")) if i["product_code"] == product)
    return shop.tickets(item=item)[0]


def test_a_linked_device_gets_a_lease_signed_by_the_cloud_container(client, shop, clock, engine):
    (ticket,) = shop.tickets()
    box = ok(shop.activate(ticket, login="ada@example.com"))
    laptop = Device(client, shop, "ada@example.com", clock.now)
    app = laptop.process()
    answer = ok(app.access())
    entry = LicenseEntry.verify(answer["entry"], shop.vendor.pinned())  # firm-signed, names the cloud container
    assert entry.serial == box["serial"] and entry.ticket == ticket
    lease = grants.verify_lease(answer["lease"], entry)  # signed by the cloud container's key
    assert lease.holder == app.holder and lease.session == app.session and lease.mode == "user"
    (sealed,) = answer["keys"]
    key = grants.unseal_lease_key(app.session_key, app.session, entry.serial, entry.digest, sealed)
    ctx = client.app.state.central
    with engine.connect() as conn:
        secret_enc = conn.execute(select(Firm.secret_enc).where(Firm.code == FIRM)).scalar_one()
    assert key == ctx.product_key(FIRM, 9, sealed["version"], secret_enc)  # opened with the session key only
    assert answer["ttl"] == 120 and 0 < answer["heartbeat"] < answer["ttl"]
    assert ok(app.renew(answer))["lease_id"] == answer["lease_id"]
    listed = ok(client.get(API + "/cloud/leases", headers=laptop.headers))
    assert [x["lease_id"] for x in listed] == [answer["lease_id"]]
    assert ok(app.release(answer))["released"] is True
    assert ok(client.get(API + "/cloud/leases", headers=laptop.headers)) == []


def test_a_personal_license_counts_devices_and_names_them_when_full(app, client, shop, clock):
    ok(shop.activate(_ticket(shop, 11), login="ada@example.com"))  # quantity 2: two devices at once
    one = Device(client, shop, "ada@example.com", clock.now, "one")
    two = Device(client, shop, "ada@example.com", clock.now, "two")
    three = Device(client, shop, "ada@example.com", clock.now, "three")
    a, b = one.process(), one.process()
    first = ok(a.access(a.request(11)))
    ok(b.access(b.request(11)))  # a second process of the same device: the same seat
    ok(two.process().access(two.process().request(11)))
    p3 = three.process()
    message = refused(p3.access(p3.request(11)), 409, "DeviceLimitReached")
    assert "2 device(s)" in message
    error = p3.access(p3.request(11)).json()["error"]
    assert sorted(error["devices"]) == ["Ada's laptop", "Ada's laptop"] and error["code"] == 25
    # one device credential live from a second address (a cloned machine) is a second device
    with TestClient(app, client=("198.51.100.9", 50000)) as elsewhere:
        ok(a.release(first))
        ok(b.release(ok(b.access(b.request(11)))))
        clone = one.process(elsewhere)
        refused(clone.access(clone.request(11)), 409, "DeviceLimitReached")


def test_attacks_on_cloud_leases_are_refused_and_change_nothing(app, client, shop, clock, engine):
    ok(shop.activate(shop.tickets()[0], login="ada@example.com"))
    laptop = Device(client, shop, "ada@example.com", clock.now)
    p = laptop.process()
    thief = FakeContainer()  # the session token copied to a machine whose container is another
    challenge = client.get(API + "/cloud/challenge").json()
    used = p.request(machine=p.machine_proof(challenge))
    ok(p.access(used))
    before = seats_state(engine)
    forged = p.machine_proof()
    forged["payload"]["serial"] = thief.serial  # the signature no longer holds
    stolen = sign_document(
        grants.SEAT_PROOF,
        {**p.machine_proof()["payload"], "sign_pub": b64e(hazmat.raw_public(thief.sign_key.public_key()))},
        thief.sign_key,
    )
    other_holder = Process(laptop, client)
    for body, headers, status, kind in [
        (used, None, 403, "AccessDenied"),  # the same request again: its challenge is answered
        (p.request(machine=p.machine_proof(challenge)), None, 403, "AccessDenied"),  # a replayed challenge
        (p.request(machine=forged), None, 403, "AccessDenied"),
        (p.request(machine=stolen), None, 403, "AccessDenied"),  # another container than the linked one
        (p.request(machine=False), None, 403, "AccessDenied"),  # no machine proof
        (p.request(machine=other_holder.machine_proof()), None, 403, "AccessDenied"),  # made for another session
        ({**p.request(), "proof": "x" * 86}, None, 403, "AccessDenied"),  # not signed by its holder
        (p.request(units=1), None, 403, "AccessDenied"),
        (p.request(product=77), None, 404, "LicenseNotFound"),
        (p.request(firm_code=FIRM + 1), None, 404, "LicenseNotFound"),
        (p.request(session="short"), None, 400, "BadRequest"),
    ]:
        r = p.access(body, headers)
        assert (r.status_code, r.json()["error"].get("type")) == (status, kind), (kind, r.text)
    for headers in ({}, bearer("lcs_" + "x" * 40)):  # no session, an unknown one
        r = p.access(p.request(), headers=headers or {"x": "y"})
        assert r.status_code == 401 and "sign in" in r.json()["error"]["message"].lower()
    assert seats_state(engine) == before  # no lease was made or changed, no proof taken


def test_renewals_check_the_person_still_holds_the_license(client, shop, clock):
    t_personal, t_group = shop.tickets(2)
    ok(shop.activate(t_personal, login="ada@example.com"))
    ok(shop.activate(t_group, customer=shop.customer, group="Engineering"))
    laptop = Device(client, shop, "ada@example.com", clock.now)
    p = laptop.process()
    mine = ok(p.access())
    assert mine["entry"]["payload"]["ticket"] == t_personal  # the personal container first
    q = laptop.process()
    ok(q.release(ok(q.access())))  # still personal: its seat is the device's
    # the personal ticket taken out: the lease ends at its next renewal (410), not later
    ok(shop.vendor.post(f"/tickets/{t_personal}/cloud-deactivation", {}))
    refused(p.renew(mine), 410, "LeaseRevoked")
    group_lease = ok(q.access())
    assert group_lease["entry"]["payload"]["ticket"] == t_group
    # ada removed from the group: her device loses the group's license at the next renewal
    r = client.delete(f"{API}/customers/{shop.customer}/groups/Engineering/members/ada@example.com",
                      headers=shop.vendor.headers)  # fmt: skip
    ok(r)
    refused(q.renew(group_lease), 410, "LeaseRevoked")
    refused(q.access(), 404, "LicenseNotFound")
    # another device's lease is no business of this one's (no hint that it exists)
    other = Device(client, shop, "admin@example.com", clock.now)
    refused(other.process().renew(group_lease), 404, "LeaseUnknown")


def test_a_device_holds_at_most_the_vendors_number_of_leases(tmp_path, clock):
    settings = make_settings(tmp_path / "data").with_changes(cloud_leases_per_device=2)
    with central_app(settings, clock) as app, TestClient(app, client=("203.0.113.7", 50000)) as client:
        shop = Shop(client, FIRM)
        for t in shop.tickets(3):
            ok(shop.activate(t, customer=shop.customer, group="Engineering"))
        laptop = Device(client, shop, "ada@example.com", clock.now)
        first, second, third = laptop.process(), laptop.process(), laptop.process()
        held = ok(first.access())
        ok(second.access())
        assert "2 cloud leases at once" in refused(third.access(), 403, "AccessDenied")
        # a release not signed by the lease's holder releases nothing
        r = third.release(held)
        assert ok(r)["released"] is False
        refused(third.access(), 403, "AccessDenied")
        # the holder's release lets the next one in; another device has its own count
        assert ok(first.release(held))["released"] is True
        ok(third.access())
        desk = Device(client, shop, "ada@example.com", clock.now, "desk")
        ok(desk.process().access())


def test_unlinking_other_devices_is_limited_per_30_days(client, shop, clock, engine):
    """A personal license's seat is freed by unlinking the device that holds it: at most
    LICENTIA_CLOUD_DEVICE_SWAPS (3) such swaps in 30 days; signing a device out is not one."""
    here = Device(client, shop, "ada@example.com", clock.now, "here")
    others = [Device(client, shop, "ada@example.com", clock.now, f"d{i}") for i in range(5)]
    listed = {d["serial"]: d["device"] for d in ok(client.get(API + "/cloud/devices", headers=here.headers))}
    ids = [listed[d.box.serial] for d in others]
    for device_id in ids[:3]:
        ok(client.delete(f"{API}/cloud/devices/{device_id}", headers=here.headers))
        clock.advance(86400)
    before = seats_state(engine), links(engine)
    r = client.delete(f"{API}/cloud/devices/{ids[3]}", headers=here.headers)
    assert r.status_code == 429 and r.json()["error"]["code"] == "too_many_device_swaps", r.text
    assert "after" in r.json()["error"]["message"]
    assert (seats_state(engine), links(engine)) == before  # still linked, its session live
    ok(client.get(API + "/cloud/me", headers=others[3].headers))
    # a device signs itself out whatever the count
    ok(client.post(API + "/cloud/sign-out", headers=others[4].headers))
    # 30 days after the first swap, one more is allowed
    clock.advance(28 * 86400)
    ok(client.delete(f"{API}/cloud/devices/{ids[3]}", headers=here.headers))
    r = client.get(API + "/cloud/me", headers=others[3].headers)
    assert r.status_code == 401


def cloud_process(tmp_path: Path, url: str) -> contextlib.AbstractContextManager[str]:
    """`licentia cloud serve` on Central's PostgreSQL database, on a free port."""
    return serving_process(
        "cloud", tmp_path, ADMIN_KEY, {"LICENTIA_DATABASE_URL": url, "LICENTIA_MASTER_KEY": MASTER_KEY}
    )


@pytest.mark.slow
@pytest.mark.postgres
def test_two_cloud_processes_never_give_out_more_seats_than_a_license_has(tmp_path, pg_url):
    """Ten application processes on three devices take and give back the seats of one
    3-seat enterprise license through two `licentia cloud serve` processes on one
    PostgreSQL: never more than 3 held at once, every release acknowledged, none left."""
    settings = make_settings(tmp_path / "central", pg_url)
    with central_app(settings, FakeClock(int(time.time()))) as app, TestClient(app) as central:
        shop = Shop(central, FIRM)
        ok(shop.vendor.post("/items", {"name": "Three", "product_code": 12, "cloud": True,
                                       "options": {"quantity": 3}}), 201)  # fmt: skip
        ok(shop.activate(_ticket(shop, 12), customer=shop.customer, group="Engineering"))
        devices = [Device(central, shop, "ada@example.com", int(time.time()), f"d{i}") for i in range(3)]
    with cloud_process(tmp_path, pg_url) as one, cloud_process(tmp_path, pg_url) as two:
        held, most, granted, lock = [0], [0], [0], threading.Lock()
        errors: list[str] = []

        def worker(n: int) -> None:
            clients = [httpx.Client(base_url=base, timeout=30) for base in (one, two)]
            try:
                for r in range(12):
                    p = devices[n % 3].process(clients[(n + r) % 2])
                    answer = p.access(p.request(12))
                    if answer.status_code == 409:
                        continue
                    if answer.status_code != 200:
                        errors.append(answer.text)
                        return
                    with lock:
                        held[0] += 1
                        most[0] = max(most[0], held[0])
                        granted[0] += 1
                    time.sleep(0.005)
                    with lock:
                        held[0] -= 1
                    p.client = clients[(n + r + 1) % 2]  # released through the other process
                    released = p.release(answer.json())
                    if released.status_code != 200 or released.json() != {"released": True}:
                        errors.append(released.text)
                        return
            finally:
                for c in clients:
                    c.close()

        threads = [threading.Thread(target=worker, args=(n,)) for n in range(10)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert not errors, errors[:3]
        assert 1 <= most[0] <= 3 and granted[0] >= 12, (most, granted)
        with httpx.Client(base_url=one, timeout=30) as c:
            for d in devices:
                assert c.get(API + "/cloud/leases", headers=d.headers).json() == []  # no release lost


def test_cloud_leases_land_in_the_usage_store_and_its_reports(client, shop, clock, engine):
    """Central's cloud usage log copied into usage_events (source cloud): a session row per
    lease closed by its release, a refusal row; once; then in the person's own report."""
    usage_flow(client, shop, clock, engine)


@pytest.mark.postgres
def test_cloud_usage_is_copied_on_postgresql(tmp_path, pg_url, clock):
    with central_app(make_settings(tmp_path / "data", pg_url), clock) as app, TestClient(app) as client:
        usage_flow(client, Shop(client, FIRM), clock, app.state.central.db.engine)


def usage_flow(client: TestClient, shop: Shop, clock: Any, engine: Any) -> None:
    (ticket,) = shop.tickets()
    box = ok(shop.activate(ticket, login="ada@example.com"))
    laptop = Device(client, shop, "ada@example.com", clock.now)
    p = laptop.process()
    held = ok(p.access())
    for _ in range(6):  # heartbeats keep it for 10 minutes
        clock.advance(100)
        ok(p.renew(held))
    ok(p.release(held))
    refused(p.access(p.request(product=77)), 404, "LicenseNotFound")
    ctx = client.app.state.central
    with ctx.db.session() as session:
        copier = CloudUsage(ctx, session, attempts=AttemptService(ctx, session))
        assert copier.copy_all() >= 3
        assert copier.copy_all() == 0  # each event once
    with engine.connect() as conn:
        rows = conn.execute(
            select(UsageRow.source, UsageRow.lease_id, UsageRow.user_ident, UsageRow.seconds, UsageRow.success,
                   UsageRow.invalid, UsageRow.product_code, UsageRow.release_time, UsageRow.customer_id,
                   UsageRow.container_id, Container.serial)
            .outerjoin(Container, Container.id == UsageRow.container_id).order_by(UsageRow.id)
        ).all()  # fmt: skip
    session_row, denial = rows
    assert session_row.source == "cloud" and session_row.lease_id == held["lease_id"]
    assert (session_row.user_ident, session_row.seconds, session_row.success) == ("ada@example.com", 600, 1)
    assert session_row.release_time == clock.now and session_row.serial == box["serial"]
    assert session_row.customer_id is not None
    assert (denial.invalid, denial.product_code, denial.container_id) == (1, 77, None)
    # the person's own use, through the reporting API and its session
    day = time.strftime("%Y-%m-%dT00:00:00", time.gmtime(clock.now))
    body = {"session": {"token": laptop.token}, "filter": {"from": day, "to": day.replace("T00:00:00", "T23:59:59")}}
    r = client.post(API + "/reporting/license-usage", json=body)
    assert r.status_code == 200, r.text
    listed = r.json()["licenseUsageList"]
    assert [(x["userIdentification"], x["productCode"]) for x in listed if x["success"]] == [("ada@example.com", 9)]


def test_grace_holds_a_device_seat_until_its_receipt(client, shop, clock, engine):
    """A cloud lease with grace (the item's --max-grace caps what the package asks) keeps its
    device's seat counted after the process goes, until the device container's receipt."""
    item = {"name": "Grace", "product_code": 14, "cloud": True, "options": {"quantity": 1, "max_grace": 3600}}
    ok(shop.vendor.post("/items", item), 201)
    ok(shop.activate(_ticket(shop, 14), login="ada@example.com"))
    laptop = Device(client, shop, "ada@example.com", clock.now, "laptop")
    desk = Device(client, shop, "ada@example.com", clock.now, "desk")
    p = laptop.process()
    held = ok(p.access(p.request(14, grace=7200)))
    assert held["lease"]["payload"]["grace_until"] == clock.now + 3600  # capped by the item
    ok(p.release(held))  # given up without the receipt: the grace keeps the seat
    d = desk.process()
    refused(d.access(d.request(14)), 409, "DeviceLimitReached")

    def receipt(key: Any, lease_id: str = held["lease_id"]) -> dict[str, Any]:
        payload = {"serial": laptop.box.serial, "lease_id": lease_id, "firm_code": FIRM, "vtime": clock.now}
        return sign_document(grants.GRACE_RETURN, payload, key)

    path = f"{API}/cloud/leases/{held['lease_id']}/return"
    before = seats_state(engine)
    forged = client.post(path, json={"receipt": receipt(FakeContainer().sign_key)}, headers=laptop.headers)
    assert forged.status_code == 400, forged.text
    other = client.post(path, json={"receipt": receipt(laptop.box.sign_key)}, headers=desk.headers)
    assert other.status_code == 404, other.text  # another device's lease: unknown to it
    assert seats_state(engine) == before
    back = ok(client.post(path, json={"receipt": receipt(laptop.box.sign_key)}, headers=laptop.headers))
    assert back["returned"] is True
    ok(d.access(d.request(14)))


def test_a_person_of_another_customer_gets_nothing_of_anothers(client, shop, clock, engine):
    (ticket,) = shop.tickets()
    ok(shop.activate(ticket, login="ada@example.com"))
    ada = Device(client, shop, "ada@example.com", clock.now)
    held = ok(ada.process().access())
    r = client.patch(API + "/accounts/eve@example.com", json={"password": PASSWORD}, headers=shop.vendor.headers)
    ok(r)  # eve is a person of the other customer
    eve = Device(client, shop, "eve@example.com", clock.now, "eve's")
    before = seats_state(engine)
    p = eve.process()
    refused(p.access(), 404, "LicenseNotFound")  # ada's license is not eve's
    refused(p.renew(held), 404, "LeaseUnknown")  # nor is ada's lease
    assert ok(p.release(held))["released"] is False
    assert ok(client.get(API + "/cloud/leases", headers=eve.headers)) == []
    assert seats_state(engine) == before
