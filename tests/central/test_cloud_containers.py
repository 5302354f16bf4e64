"""Cloud containers: Central holds a personal one per account and an enterprise one per
group; the vendor (or a group's admin) activates the customer's tickets of cloud items
into them, each an ordinary firm-signed entry naming the cloud container, whose private
keys stay in Central. Real Central in-process, real SQLite (and PostgreSQL at the end)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from central_helpers import FakeContainer, central_app, dump_state, error_code, make_settings
from fastapi.testclient import TestClient
from sqlalchemy import select
from test_accounts import PASSWORD, Site, bearer, ok

from licentia.central.models import CloudContainer, Container, Ticket
from licentia.core import hazmat
from licentia.core.encoding import b64d
from licentia.core.license import LicenseEntry

API = "/api/v1"
FIRM = 63001


class Shop(Site):
    """A Site whose firm sells an item for the cloud (and one not for the cloud)."""

    def __init__(self, client: TestClient, firm_code: int = FIRM):
        super().__init__(client, firm_code)
        v = self.vendor
        made = ok(v.post("/items", {"name": "Cloud Suite", "product_code": 9, "cloud": True}), 201)
        assert made["cloud"] is True
        self.cloud_item = made["item_id"]

    def tickets(self, count: int = 1, item: str | None = None, customer: str | None = None) -> list[str]:
        order = {
            "customer": customer or self.customer,
            "items": [item or self.cloud_item],
            "quantity_of_licenses": count,
        }
        return [t["ticket"] for t in ok(self.vendor.post("/tickets", order), 201)["tickets"]]

    def activate(self, ticket: str, **target: str) -> Any:
        return self.client.post(f"{API}/tickets/{ticket}/cloud-activation", json=target, headers=self.vendor.headers)


@pytest.fixture
def shop(client: TestClient) -> Shop:
    return Shop(client)


def test_a_ticket_goes_into_a_personal_cloud_container(client, shop, engine):
    (ticket,) = shop.tickets()
    box = ok(shop.activate(ticket, login="ada@example.com"))
    assert box["kind"] == "personal" and box["login"] == "ada@example.com" and box["serial"].startswith("140-")
    assert [lic["ticket"] for lic in box["licenses"]] == [ticket] and box["activated"] is True
    assert ok(shop.activate(ticket, login="ada@example.com"))["activated"] is False  # once
    shown = ok(shop.vendor.get(f"/tickets/{ticket}"))
    assert shown["state"] == "activated" and shown["serial"] == box["serial"]
    assert ok(shop.vendor.get("/accounts/ada@example.com/cloud"))["serial"] == box["serial"]

    # an ordinary firm-signed entry naming the cloud container; its keys stay in Central
    with engine.connect() as conn:
        entry_text = conn.execute(select(Ticket.entry).where(Ticket.ticket == ticket)).scalar_one()
        container = conn.execute(select(Container).where(Container.serial == box["serial"])).one()
        keys_enc = conn.execute(select(CloudContainer.keys_enc)).scalar_one()
    entry = LicenseEntry.verify(json.loads(entry_text), shop.vendor.pinned())
    assert (entry.serial, entry.container_key, entry.ticket) == (box["serial"], container.sign_pub, ticket)
    assert container.level == "cloud"
    ctx = client.app.state.central
    secret = ctx.box.open(FIRM, f"cloud container {box['serial']}", keys_enc)
    sign_key = hazmat.Ed25519PrivateKey.from_private_bytes(secret[:32])
    assert hazmat.raw_public(sign_key.public_key()) == b64d(container.sign_pub)
    assert secret[:32] not in keys_enc


def test_what_may_not_go_into_a_cloud_container_changes_nothing(client, shop, engine, clock):
    (not_cloud,) = shop.tickets(item=shop.vendor.item)  # an item not made for the cloud
    (other_customers,) = shop.tickets(customer=shop.other_customer)
    (on_a_machine, revoked, good) = shop.tickets(3)
    machine = FakeContainer()
    request = machine.request("activate", ticket=on_a_machine, now=clock.now)
    ok(client.post(API + "/activations", json=request))
    ok(shop.vendor.post(f"/tickets/{revoked}/revoke"))
    ok(client.post(f"{API}/accounts", json={"login": "staff@vendor.example", "name": "S", "role": "staff"},
                   headers=shop.vendor.headers), 201)  # fmt: skip
    before = dump_state(engine)
    for ticket, target, status, code in [
        (not_cloud, {"login": "ada@example.com"}, 409, "not_for_cloud"),
        (other_customers, {"login": "ada@example.com"}, 409, "ticket_of_another_customer"),
        (on_a_machine, {"login": "ada@example.com"}, 409, "ticket_bound_elsewhere"),
        (revoked, {"login": "ada@example.com"}, 409, "ticket_revoked"),
        (good, {"login": "staff@vendor.example"}, 400, "invalid_input"),  # holds no cloud licenses
        (good, {"login": "nobody@example.com"}, 404, "unknown_account"),
        (good, {"customer": shop.customer, "group": "Nope"}, 404, "unknown_group"),
        (good, {}, 400, "invalid_input"),
        (good, {"login": "ada@example.com", "customer": shop.customer, "group": "Engineering"}, 400, "invalid_input"),
    ]:
        r = shop.activate(ticket, **target)
        assert (r.status_code, error_code(r)) == (status, code), (ticket, target, r.text)
    assert dump_state(engine) == before  # not even an empty container was made


def test_a_group_admin_fills_the_groups_enterprise_container(client, shop, clock):
    t1, t2, t3 = shop.tickets(3)
    ada = ok(shop.sign_in("ada@example.com", clock.now), 201)["session"]  # admin of Engineering
    admin = ok(shop.sign_in("admin@example.com", clock.now), 201)["session"]  # the customer's admin
    ok(client.post(f"{API}/customers/{shop.customer}/groups", json={"name": "Sales"}, headers=shop.vendor.headers), 201)

    box = ok(client.post(f"{API}/cloud/groups/Engineering/licenses", json={"ticket": t1}, headers=bearer(ada)))
    assert box["kind"] == "enterprise" and box["group"] == "Engineering" and box["customer"] == shop.customer
    r = client.post(f"{API}/cloud/groups/Sales/licenses", json={"ticket": t2}, headers=bearer(ada))
    assert r.status_code == 403  # ada does not administer Sales
    ok(client.post(f"{API}/cloud/groups/Sales/licenses", json={"ticket": t2}, headers=bearer(admin)))
    ok(shop.activate(t3, login="ada@example.com"))

    # ada uses her personal container and her group's, not Sales'
    seen = ok(client.get(API + "/cloud/licenses", headers=bearer(ada)))
    assert [(b["kind"], b["group"], [lic["ticket"] for lic in b["licenses"]]) for b in seen] == [
        ("personal", None, [t3]),
        ("enterprise", "Engineering", [t1]),
    ]
    ok(client.delete(f"{API}/cloud/groups/Engineering/licenses/{t1}", headers=bearer(ada)))
    assert ok(shop.vendor.get(f"/tickets/{t1}"))["state"] == "deactivated"
    r = client.delete(f"{API}/cloud/groups/Engineering/licenses/{t2}", headers=bearer(ada))  # Sales' ticket
    assert r.status_code == 404


def test_a_plain_member_and_another_customer_cannot_activate(client, shop, clock):
    (ticket,) = shop.tickets()
    shop.put(f"/customers/{shop.customer}/groups/Engineering/members/bob@example.com", {})
    ok(client.patch(f"{API}/accounts/bob@example.com", json={"password": PASSWORD}, headers=shop.vendor.headers))
    bob = ok(shop.sign_in("bob@example.com", clock.now), 201)["session"]
    r = client.post(f"{API}/cloud/groups/Engineering/licenses", json={"ticket": ticket}, headers=bearer(bob))
    assert r.status_code == 403
    ok(client.patch(f"{API}/accounts/eve@example.com", json={"password": PASSWORD}, headers=shop.vendor.headers))
    eve = ok(shop.sign_in("eve@example.com", clock.now), 201)["session"]  # another customer's person
    r = client.post(f"{API}/cloud/groups/Engineering/licenses", json={"ticket": ticket}, headers=bearer(eve))
    assert r.status_code == 404
    assert ok(client.get(API + "/cloud/licenses", headers=bearer(eve))) == []


def test_a_ticket_taken_out_of_the_cloud_can_go_to_a_machine(client, shop, clock):
    (ticket,) = shop.tickets()
    ok(shop.activate(ticket, login="ada@example.com"))
    done = ok(client.post(f"{API}/tickets/{ticket}/cloud-deactivation", headers=shop.vendor.headers))
    assert done["deactivated"] and done["licenses"] == []
    machine = FakeContainer()
    update = ok(client.post(API + "/activations", json=machine.request("activate", ticket=ticket, now=clock.now)))
    assert update["payload"]["serial"] == machine.serial
    r = client.post(f"{API}/tickets/{ticket}/cloud-deactivation", headers=shop.vendor.headers)
    assert r.status_code == 404  # on a machine now, not in the cloud


def test_two_firms_cloud_containers_stay_apart(client, clock):
    a, b = Shop(client, 63001), Shop(client, 63002)
    (a_ticket,) = a.tickets()
    (b_ticket,) = b.tickets()
    ok(b.activate(b_ticket, login="ada@example.com"))
    r = a.activate(b_ticket, login="ada@example.com")  # B's ticket with A's key
    assert r.status_code == 404 and error_code(r) == "unknown_ticket"
    ok(a.activate(a_ticket, login="ada@example.com"))
    a_ada = ok(a.sign_in("ada@example.com", clock.now), 201)["session"]
    (box,) = ok(client.get(API + "/cloud/licenses", headers=bearer(a_ada)))
    assert [lic["ticket"] for lic in box["licenses"]] == [a_ticket] and box["firm_code"] == 63001


@pytest.mark.postgres
def test_cloud_containers_on_postgresql(tmp_path, pg_url, clock):
    with (
        central_app(make_settings(tmp_path / "data", pg_url), clock) as app,
        TestClient(app, client=("203.0.113.7", 50000)) as c,
    ):
        shop = Shop(c)
        t1, t2 = shop.tickets(2)
        personal = ok(shop.activate(t1, login="ada@example.com"))
        ada = ok(shop.sign_in("ada@example.com", clock.now), 201)["session"]
        group = ok(c.post(f"{API}/cloud/groups/Engineering/licenses", json={"ticket": t2}, headers=bearer(ada)))
        assert personal["serial"] != group["serial"]
        assert len(ok(c.get(API + "/cloud/licenses", headers=bearer(ada)))) == 2
        ok(c.post(f"{API}/tickets/{t1}/cloud-deactivation", headers=shop.vendor.headers))
        assert ok(shop.vendor.get("/accounts/ada@example.com/cloud"))["licenses"] == []


def test_vendor_sees_a_groups_container(client, shop):
    (ticket,) = shop.tickets()
    r = client.get(f"{API}/customers/{shop.customer}/groups/Engineering/cloud", headers=shop.vendor.headers)
    assert r.status_code == 404 and error_code(r) == "unknown_cloud_container"
    ok(shop.activate(ticket, customer=shop.customer, group="Engineering"))
    box = ok(client.get(f"{API}/customers/{shop.customer}/groups/Engineering/cloud", headers=shop.vendor.headers))
    assert box["kind"] == "enterprise" and [lic["ticket"] for lic in box["licenses"]] == [ticket]
    assert box["licenses"][0]["quantity"] == 1
