"""A license server as proxy of a group's enterprise cloud container.

A real Central on 127.0.0.1 (uvicorn in a thread, real SQLite), a real license server
core with its real machine container (injected clock and traits), LAN clients that prove
their device as the runtime does (the machine container each linked with a cloud
sign-in), and direct cloud leases beside the proxy's. Each attack the issue names is a
test: a non-member on the LAN, a copied credential, a reused code, a forked container;
removal at the next refresh; the offline tolerance ending on time."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from central_helpers import FakeContainer, ServerThread, central_app, dump_state, make_settings
from fastapi.testclient import TestClient
from sqlalchemy import select
from test_accounts import PASSWORD, bearer, ok
from test_cloud_containers import Shop
from test_cloud_leases import Device, refused

from licentia import _testing
from licentia.central.models import UsageEvent
from licentia.central.settings import Settings
from licentia.client import CentralClient, CentralRefused
from licentia.core import errors as E
from licentia.core import grants, hazmat
from licentia.core.documents import sign_document
from licentia.core.encoding import b64e
from licentia.runtime import make_runtime
from licentia.seats import Refusal
from licentia.server import Settings as ServerSettings
from licentia.server import proxy
from licentia.server.core import LicenseServer
from tests.factory import machine_traits

API = "/api/v1"
FIRM = 63101  # the firm of the cloud lease helpers (test_cloud_leases)
PRODUCT = 12
TOLERANCE = 3600


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path / "central", cloud_proxy_tolerance=TOLERANCE, cloud_proxy_refresh=600)


@pytest.fixture
def central(app: Any) -> Any:
    with ServerThread(app) as running:
        yield running


@pytest.fixture(autouse=True)
def runtime_fakes(clock: Any) -> Any:
    _testing.install(clock=clock, traits=machine_traits)  # the autouse fixture of tests/ puts the system's back


class World:
    """A group Engineering with a license of 3 seats in its cloud container; Ada (its
    admin) signed in on a laptop; a proxy 'lan' of 2 seats, linked by a license server."""

    def __init__(self, client: TestClient, central: Any, clock: Any, tmp_path: Path, seats: int = 2):
        self.client, self.central, self.clock, self.tmp = client, central, clock, tmp_path
        self.shop = Shop(client, FIRM)
        item = {"name": "Team", "product_code": PRODUCT, "cloud": True, "options": {"quantity": 3}}
        made = ok(self.shop.vendor.post("/items", item), 201)
        (self.ticket,) = self.shop.tickets(item=made["item_id"])
        box = ok(self.shop.activate(self.ticket, customer=self.shop.customer, group="Engineering"))
        self.cloud_serial = box["serial"]
        self.ada = Device(client, self.shop, "ada@example.com", clock.now)
        self.code = ok(self.create("lan", seats), 201)["code"]
        self.data = tmp_path / "server"
        self.link = proxy.link(self.data, make_runtime(self.data), central.url, self.code)
        self.server = LicenseServer(ServerSettings(data_dir=self.data, discovery=False, clock=clock, admin_token="a"))

    def create(self, name: str, seats: int, headers: dict[str, str] | None = None) -> Any:
        body = {"name": name, "seats": seats}
        return self.client.post(
            f"{API}/cloud/groups/Engineering/proxies", json=body, headers=headers or self.ada.headers
        )

    def proxies(self) -> list[dict[str, Any]]:
        return list(ok(self.client.get(f"{API}/cloud/groups/Engineering/proxies", headers=self.ada.headers)))

    def person(self, login: str, *, member: bool) -> Device:
        """A person of the customer with a password, signed in on a device of theirs."""
        body = {"login": login, "name": login[:2], "role": "customer-user", "customer": self.shop.customer}
        ok(self.shop.vendor.post("/accounts", {**body, "password": PASSWORD}), 201)
        if member:
            self.shop.put(f"/customers/{self.shop.customer}/groups/Engineering/members/{login}", {"admin": False})
        return Device(self.client, self.shop, login, self.clock.now)

    def refresh(self) -> proxy.ProxyLink:
        self.link = proxy.refresh(self.data, make_runtime(self.data), self.link)
        return self.link

    def held_at_central(self) -> int:
        """Seats of the license held now in Central's seat rows (proxies and direct leases)."""
        engine = self.client.app.state.cloud_leases.engine
        return int(engine.seats_in_use([f"{self.cloud_serial}/1"]).get(f"{self.cloud_serial}/1", 0))


class Lan:
    """One process on a LAN machine, proving the machine container ``box`` to the server."""

    def __init__(self, server: LicenseServer, box: FakeContainer, n: int = 1):
        self.server, self.box = server, box
        self.key = hazmat.Ed25519PrivateKey.generate()
        self.holder = b64e(hazmat.raw_public(self.key.public_key()))
        self.session = b64e(hazmat.raw_public(hazmat.X25519PrivateKey.generate().public_key()))
        self.sign_pub = b64e(hazmat.raw_public(box.sign_key.public_key()))
        self.cid = f"lan-{n}-{self.holder[:6]}"
        self.counter = 0

    def body(self, **changes: Any) -> dict[str, Any]:
        challenge = self.server.challenge()
        proof = sign_document(
            grants.SEAT_PROOF,
            {
                "serial": self.box.serial,
                "sign_pub": self.sign_pub,
                "server": "http://lan",
                "nonce": challenge["nonce"],
                "time": challenge["time"],
                "holder": self.holder,
            },
            self.box.sign_key,
        )
        body = {
            "firm_code": FIRM,
            "product_code": PRODUCT,
            "client_lease_id": self.cid,
            "session": self.session,
            "nonce": "n",
            "user": "root",  # self-reported: the server names the member instead
            "host": "pc",
            "holder": self.holder,
            "mode": "user",
            "machine": proof,
            **changes,
        }
        return {**body, "proof": grants.prove(self.key, grants.LEASE_REQUEST, grants.request_proof_payload(body))}

    def access(self) -> dict[str, Any]:
        return dict(json.loads(self.server.access(self.body(), "10.0.0.5")))

    def renew(self, answer: dict[str, Any]) -> dict[str, Any]:
        self.counter += 1
        proof = grants.prove(self.key, grants.LEASE_RENEW, grants.lease_proof_payload(answer["lease_id"], self.counter))
        return self.server.renew(
            answer["lease_id"], {"client_lease_id": self.cid, "counter": self.counter, "proof": proof}
        )

    def release(self, answer: dict[str, Any]) -> dict[str, Any]:
        self.counter += 1
        proof = grants.prove(
            self.key, grants.LEASE_RELEASE, grants.lease_proof_payload(answer["lease_id"], self.counter)
        )
        return self.server.release(answer["lease_id"], self.cid, str(self.counter), proof)

    def renew_as(self, other: Lan, answer: dict[str, Any]) -> dict[str, Any]:
        """``other``'s renewal of its lease, sent to this process's server."""
        other.counter += 1
        proof = grants.prove(
            other.key, grants.LEASE_RENEW, grants.lease_proof_payload(answer["lease_id"], other.counter)
        )
        body = {"client_lease_id": other.cid, "counter": other.counter, "proof": proof}
        return self.server.renew(answer["lease_id"], body)

    def borrow(self, days: int, *, box_pub: str | None = None, proven: bool = True) -> dict[str, Any]:
        """A borrow into ``box``, proven by its machine proof (whose holder is the box key)."""
        box_pub = box_pub or b64e(hazmat.raw_public(self.box.box_key.public_key()))
        body: dict[str, Any] = {
            "firm_code": FIRM,
            "product_code": PRODUCT,
            "client_lease_id": self.cid,
            "user": "root",
            "host": "pc",
            "days": days,
            "container": {"serial": self.box.serial, "sign_pub": self.sign_pub, "box_pub": box_pub},
        }
        if proven:
            challenge = self.server.challenge()
            payload = {
                "serial": self.box.serial,
                "sign_pub": self.sign_pub,
                "server": "http://lan",
                "nonce": challenge["nonce"],
                "time": challenge["time"],
                "holder": box_pub,
            }
            body["machine"] = sign_document(grants.SEAT_PROOF, payload, self.box.sign_key)
        return self.server.borrow(body, "10.0.0.5")


def refusal(call: Any) -> Refusal:
    with pytest.raises(Refusal) as caught:
        call()
    return caught.value


@pytest.fixture
def world(client: TestClient, central: Any, clock: Any, tmp_path: Path) -> World:
    return World(client, central, clock, tmp_path)


def test_the_proxy_serves_the_groups_members_and_its_seats_add_up_with_cloud_leases(world):
    (listed,) = world.proxies()
    assert listed["state"] == "linked" and listed["seats_held"] == 2 and listed["server"] == world.link.serial
    assert world.held_at_central() == 2  # the proxy's seats are Central's seat rows, like borrows
    # a member's linked device is admitted, under the member's login (not the name it reports)
    ada = Lan(world.server, world.ada.box)
    first = ada.access()
    assert first["entry"]["payload"]["options"]["quantity"] == 2
    assert [s["user"] for s in world.server.status()["sessions"]] == ["ada@example.com"]
    # a LAN machine whose container no member linked: refused, whatever user name it reports
    stranger = Lan(world.server, FakeContainer())
    assert refusal(stranger.access).error is E.AccessDenied
    # a second seat through the proxy; then the proxy's two are used
    ok_second = Lan(world.server, world.ada.box, 2).access()
    assert refusal(Lan(world.server, world.ada.box, 3).access).error is E.SeatsExhausted
    # a direct cloud lease takes the third seat of the license; a fourth anywhere is refused
    direct = world.ada.process()
    ok(direct.access(direct.request(PRODUCT)))
    refused(direct.access(direct.request(PRODUCT)), 409, "SeatsExhausted")
    assert world.held_at_central() == 3
    # a borrow through the proxy never outlasts its signed entitlement (the tolerance)
    assert ada.release(first)["released"] is True
    borrowed = ada.borrow(30)
    until = world.link.grant["payload"]["until"]
    assert borrowed["expires"] == until == world.clock.now + TOLERANCE
    assert ok_second["lease_id"]
    # the status shows what the server proxies
    (shown,) = world.server.status()["proxy"]
    assert shown["group"] == "Engineering" and shown["members"] == 1 and shown["until"] == until
    # its usage goes to Central like any license server's (the member's login as the user); its
    # periodic sync keeps the proxied entries
    synced = world.server.sync_central()
    assert synced is not None and synced.usage.uploaded >= 3 and synced.updates == 1
    with world.client.app.state.central.db.engine.connect() as conn:
        users = (
            conn.execute(select(UsageEvent.user_ident).where(UsageEvent.source == "server", UsageEvent.success > 0))
            .scalars()
            .all()
        )
    assert users and all(u.startswith("ada@example.com@") for u in users), users
    assert Lan(world.server, world.ada.box, 4).borrow(1)["entry"]["payload"]["options"]["quantity"] == 2


def test_a_borrow_of_a_proxied_license_needs_the_members_device_proven(world):
    """A member device's serial and public keys travel in every request: a stranger who
    names them in a borrow, with a box key of its own, gets no proxied seat and no product
    key (the same refusal a lease gets); the device itself, proving its container, borrows."""
    ada = Lan(world.server, world.ada.box)
    stranger_box = b64e(hazmat.raw_public(hazmat.X25519PrivateKey.generate().public_key()))
    before = world.server.status()
    assert refusal(lambda: ada.borrow(30, box_pub=stranger_box, proven=False)).error is E.AccessDenied
    assert refusal(lambda: ada.borrow(30, proven=False)).error is E.AccessDenied  # not proven: no member's device
    assert world.server.status()["borrowed"] == before["borrowed"] == []
    assert ada.borrow(30)["expires"] == world.link.grant["payload"]["until"]


def test_members_added_and_removed_take_effect_at_the_next_refresh_or_trigger(world):
    cy = world.person("cy@example.com", member=False)
    cy_lan = Lan(world.server, cy.box)
    assert refusal(cy_lan.access).error is E.AccessDenied
    refresher = proxy.Refresher(world.data, lambda: make_runtime(world.data), world.clock)
    assert refresher.run_once() == 0  # the trigger is unchanged: no refresh
    world.shop.put(f"/customers/{world.shop.customer}/groups/Engineering/members/cy@example.com", {"admin": False})
    assert refresher.run_once() == 1  # the trigger changed: refreshed
    answer = cy_lan.access()
    assert cy_lan.renew(answer)["lease_id"] == answer["lease_id"]
    r = world.client.delete(
        f"{API}/customers/{world.shop.customer}/groups/Engineering/members/cy@example.com",
        headers=world.shop.vendor.headers,
    )
    ok(r)
    assert cy_lan.renew(answer)  # until the next refresh, the grant the server holds says member
    assert refresher.run_once() == 1
    restarted = LicenseServer(ServerSettings(data_dir=world.data, discovery=False, clock=world.clock, admin_token="a"))
    with pytest.raises(E.LeaseRevoked):  # a restarted server checks its first renewal as well
        Lan(restarted, cy.box).renew_as(cy_lan, answer)
    restarted.close()
    with pytest.raises(E.LeaseRevoked):
        cy_lan.renew(answer)
    assert refusal(Lan(world.server, cy.box, 2).access).error is E.AccessDenied
    assert Lan(world.server, world.ada.box).access()["lease_id"]  # the other member is unaffected


def test_offline_the_proxy_serves_until_its_tolerance_then_its_seats_return(world):
    world.clock.advance(TOLERANCE - 60)  # Central not asked since the link: still within the tolerance
    ada = Lan(world.server, world.ada.box)
    answer = ada.access()
    assert ada.renew(answer)["lease_id"] == answer["lease_id"]
    assert world.held_at_central() == 2
    world.clock.advance(61)  # the entitlement ends
    with pytest.raises(E.LeaseRevoked):
        ada.renew(answer)
    assert refusal(Lan(world.server, world.ada.box, 2).access).error is E.LicenseExpired
    assert world.held_at_central() == 0  # the seats are back in the cloud: three direct leases fit
    for _ in range(3):
        p = world.ada.process()
        ok(p.access(p.request(PRODUCT)))
    # back online, a refresh holds what is free again (nothing now) and serves nothing more
    world.refresh()
    assert world.link.grant["payload"]["licenses"] == []


def test_a_copied_credential_a_reused_code_and_a_forked_container_are_refused(world, client, tmp_path):
    # the link code works once
    other = tmp_path / "other"
    _testing.install(traits=lambda: machine_traits(machine_id="0" * 32))
    with pytest.raises(CentralRefused) as caught:
        proxy.link(other, make_runtime(other), world.central.url, world.code)
    assert (caught.value.status, caught.value.code) == (409, "proxy_bound")
    # the session token copied to a server whose container is another: 403, nothing served
    _testing.install(traits=machine_traits)
    token = world.link.token(make_runtime(world.data).container(world.link.serial))
    _testing.install(traits=lambda: machine_traits(machine_id="0" * 32))
    rt = make_runtime(other)
    request = rt.machine_container("medium").make_request("sync", world.clock.now, firm_code=FIRM)
    with CentralClient(world.central.url, api_key=token) as c, pytest.raises(CentralRefused) as caught:
        c.request("POST", "/cloud/proxy/refresh", json={"request": request})
    assert (caught.value.status, caught.value.code) == (403, "forbidden")
    # the link file copied there does not open: it is sealed to the linked container
    copied = shutil.copytree(world.data / "proxy", other / "proxy", dirs_exist_ok=True)
    (found,) = proxy.links(Path(copied).parent)
    with pytest.raises(E.LicenseError):
        proxy.refresh(other, rt, found)
    # two copies of the same container (its files restored on the same machine): the chain forks
    _testing.install(traits=machine_traits)
    twin = tmp_path / "twin"
    shutil.copytree(world.data, twin)
    world.refresh()
    (twin_link,) = proxy.links(twin)
    with pytest.raises(CentralRefused) as caught:
        proxy.refresh(twin, make_runtime(twin), twin_link)
    assert (caught.value.status, caught.value.code) == (409, "proxy_flagged")
    (listed,) = world.proxies()
    assert (listed["state"], listed["ended_by"], listed["seats_held"]) == ("ended", "flagged", 0)
    assert world.held_at_central() == 0
    with pytest.raises(CentralRefused) as caught:
        world.refresh()
    assert caught.value.status == 401


def test_only_the_groups_admin_manages_proxies_and_bad_input_changes_nothing(world, client, engine):
    cy = world.person("cy@example.com", member=True)  # a member, not an admin
    r = world.create("cy-proxy", 1, headers=cy.headers)
    assert r.status_code == 403
    r = client.get(f"{API}/cloud/groups/Engineering/proxies", headers=bearer("lcs_" + "x" * 40))
    assert r.status_code == 401
    assert world.create("lan", 1).status_code == 409  # the name is taken
    assert world.create("bad name!", 1).status_code == 400
    assert world.create("big", 0).status_code == 422
    before = {k: v for k, v in dump_state(engine).items() if k not in ("attempts", "account_sessions")}
    for code, status in [("lcp_63101.nope", 404), ("nope", 404), (world.code, 409)]:
        box = FakeContainer()
        request = box.request("sync", firm_code=FIRM, now=world.clock.now)
        r = client.post(f"{API}/cloud/proxy/link", json={"code": code, "request": request})
        assert r.status_code == status, r.text
    for token in ("lpx_" + "x" * 40, "nope", ""):
        r = client.get(f"{API}/cloud/proxy/trigger", headers=bearer(token))
        assert r.status_code == 401
    assert {k: v for k, v in dump_state(engine).items() if k not in ("attempts", "account_sessions")} == before
    # removal: the seats return now, the server's licenses go at its next sync
    ok(client.delete(f"{API}/cloud/groups/Engineering/proxies/lan", headers=world.ada.headers))
    assert world.held_at_central() == 0 and world.proxies() == []


def test_a_license_taken_out_of_the_group_goes_from_the_proxy_at_its_next_refresh(world):
    ada = Lan(world.server, world.ada.box)
    answer = ada.access()
    ok(world.shop.vendor.post(f"/tickets/{world.ticket}/cloud-deactivation", {}))
    world.clock.advance(1)
    world.refresh()
    assert world.link.grant["payload"]["licenses"] == [] and world.held_at_central() == 0
    with pytest.raises(E.LeaseRevoked):
        ada.renew(answer)
    assert refusal(Lan(world.server, world.ada.box, 2).access).error is E.LicenseNotFound


def test_an_ended_proxys_entries_are_served_to_no_one_until_they_go(world, clock):
    """Central ended the proxy while the server could not sync its entries away: the link is
    kept as ended, and the entries, still in the container, serve no one (also after a
    restart, when the server knows them only from the link file)."""
    ada = Lan(world.server, world.ada.box)
    answer = ada.access()
    proxy._save(world.data, dataclasses.replace(world.link, ended=True))  # as the refresher does, before its sync
    restarted = LicenseServer(ServerSettings(data_dir=world.data, discovery=False, clock=clock, admin_token="a"))
    for server in (world.server, restarted):
        lan = Lan(server, world.ada.box, 2)
        assert refusal(lan.access).error is E.LicenseNotFound
    with pytest.raises(E.LeaseRevoked):
        ada.renew(answer)
    (shown,) = restarted.status()["proxy"]
    assert shown["ended"] is True
    restarted.close()


@pytest.mark.postgres
def test_the_proxy_on_postgresql_and_after_a_restart(tmp_path, pg_url, clock):
    """The same seat accounting on PostgreSQL (the seat rows locked per license); a restarted
    server (the same container) resumes its session: it serves and refreshes."""
    settings = make_settings(tmp_path / "central", pg_url, cloud_proxy_tolerance=TOLERANCE)
    with central_app(settings, clock) as app, TestClient(app) as client, ServerThread(app) as central:
        world = World(client, central, clock, tmp_path)
        assert world.held_at_central() == 2
        first = Lan(world.server, world.ada.box).access()
        world.server.close()
        world.server = LicenseServer(ServerSettings(data_dir=world.data, discovery=False, clock=clock, admin_token="a"))
        second = Lan(world.server, world.ada.box, 2).access()
        assert first["lease_id"] != second["lease_id"]
        assert refusal(Lan(world.server, world.ada.box, 3).access).error is E.SeatsExhausted
        clock.advance(60)
        assert world.refresh().grant["payload"]["licenses"] == [{"license_id": 1, "product_code": PRODUCT, "seats": 2}]
        direct = world.ada.process()
        ok(direct.access(direct.request(PRODUCT)))
        refused(direct.access(direct.request(PRODUCT)), 409, "SeatsExhausted")
        assert world.held_at_central() == 3
        world.server.close()
