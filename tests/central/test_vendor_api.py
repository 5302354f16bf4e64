"""Firms, keys, items, customers, tickets over the API; vendors are kept apart."""

from __future__ import annotations

import pytest
from central_helpers import ADMIN_KEY, FakeContainer, Vendor, count_rows, dump_state, error_code
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from licentia.central.models import AuditEntry, FirmKey
from licentia.core import codes, hazmat

ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}


def test_firm_creation_and_public_key(client, engine):
    r = client.post("/api/v1/firms", json={"code": 777, "name": "Acme"}, headers=ADMIN)
    assert r.status_code == 201
    firm = r.json()
    assert firm["code"] == 777 and len(firm["keys"]) == 1 and firm["keys"][0]["active"]
    pub = client.get("/api/v1/firms/777/public-key").json()
    assert pub["firm_code"] == 777
    assert [(k["kid"], k["active"]) for k in pub["keys"]] == [(firm["keys"][0]["kid"], True)]
    key = hazmat.load_public_pem(pub["keys"][0]["pem"])
    assert hazmat.key_id(key) == pub["keys"][0]["kid"]
    pem = client.get("/api/v1/firms/777/public-key?format=pem")
    assert pem.status_code == 200 and pem.text == pub["keys"][0]["pem"]
    r = client.post("/api/v1/firms", json={"code": 777, "name": "Again"}, headers=ADMIN)
    assert r.status_code == 409 and error_code(r) == "firm_exists"
    for bad in (0, 2**32, -1):
        r = client.post("/api/v1/firms", json={"code": bad, "name": "x"}, headers=ADMIN)
        assert r.status_code in (400, 422) and error_code(r) == "invalid_input", (bad, r.text)
    r = client.get("/api/v1/firms/778/public-key")
    assert r.status_code == 404 and error_code(r) == "unknown_firm"


def test_private_parts_are_stored_encrypted(client, engine, app):
    client.post("/api/v1/firms", json={"code": 31, "name": "Enc"}, headers=ADMIN)
    with engine.connect() as conn:
        row = conn.execute(select(FirmKey.private_enc, FirmKey.kid)).one()
    assert len(row.private_enc) == 12 + 32 + 16  # nonce, key, tag: not the raw key
    box = app.state.central.box
    raw = box.open(31, box.signing_key(row.kid), row.private_enc)
    assert hazmat.key_id(hazmat.Ed25519PrivateKey.from_private_bytes(raw).public_key()) == row.kid
    with pytest.raises(hazmat.CryptoError):
        box.open(32, box.signing_key(row.kid), row.private_enc)  # AAD names the firm


def test_retired_keys_leave_the_pem(client):
    v = Vendor(client, 41)
    first = v.get("/firms/41").json()["keys"][0]["kid"]
    r = v.post(f"/firms/41/keys/{first}/retire")
    assert r.status_code == 409 and error_code(r) == "active_key"
    v.post("/firms/41/keys/rotate")
    assert v.post(f"/firms/41/keys/{first}/retire").status_code == 200
    pub = client.get("/api/v1/firms/41/public-key").json()
    assert [k["retired"] for k in pub["keys"]] == [True, False]
    assert client.get("/api/v1/firms/41/public-key?format=pem").text == pub["keys"][1]["pem"]


def test_report_and_sync_interval_defaults_are_the_vendors_to_change(client):
    v = Vendor(client, 53)
    r = v.post(
        "/items",
        {
            "name": "Few reports",
            "product_code": 146,
            "options": {"units": 5, "report_interval_hours": 0, "sync_interval_days": 7},
        },
    )
    assert r.json()["options"] == {"units": 5, "quantity": 1, "report_interval_hours": 0, "sync_interval_days": 7}
    r = v.post("/items", {"name": "Plain", "product_code": 147, "options": {"quantity": 1}})
    assert r.json()["options"] == {"quantity": 1}  # nothing to count, no limit, one seat: no defaults
    r = v.post("/items", {"name": "Seats", "product_code": 149, "options": {"quantity": 3}})
    assert r.json()["options"] == {"quantity": 3, "sync_interval_days": 30}  # a license server's: syncs monthly
    r = v.post("/items", {"name": "Metered", "product_code": 148, "options": {"metering": "online"}})
    assert r.status_code == 400 and error_code(r) == "invalid_input" and "units" in r.json()["error"]["message"]


@pytest.mark.parametrize(
    "fields",
    [
        {"key_versions": [2**60]},
        {"key_versions": [0]},
        {"options": {"units": 2**53}},
        {"options": {"quantity": 2**53}},
        {"options": {"expires": 2**60}},
        {"options": {"expires_days": 10**12}},
        {"options": {"report_interval_hours": 10**12}},
        {"options": {"max_grace": 2**53}},
    ],
    ids=["key-version", "key-version-zero", "units", "quantity", "expires", "expires-days", "report-hours", "grace"],
)
def test_an_item_whose_license_could_not_be_signed_is_refused_at_once(client, fields):
    """A signed document holds whole numbers within 2^53 - 1: an item whose values (or days
    and hours as seconds) go beyond is refused when it is made, not at its first activation."""
    v = Vendor(client, 54)
    r = v.post("/items", {"name": "Huge", "product_code": 149, **fields})
    assert r.status_code == 422 and error_code(r) == "invalid_input"
    assert v.get("/items").json() == [] or all(i["name"] != "Huge" for i in v.get("/items").json())


def test_items_customers_and_orders(client):
    v = Vendor(client, 52)
    assert codes.check_item_id(v.item) == "F-00001-7"
    r = v.post(
        "/items",
        {
            "item_id": "B-00001-145",
            "name": "Base",
            "product_code": 145,
            "options": {"expires": 1_900_000_000, "maintenance_days": 365, "data": "aGVsbG8="},
        },
    )
    assert r.status_code == 201, r.text
    # an item with a time limit reports daily and syncs monthly unless the vendor says otherwise
    assert r.json()["options"] == {
        "expires": 1_900_000_000,
        "maintenance_days": 365,
        "data": "aGVsbG8",
        "quantity": 1,
        "report_interval_hours": 24,
        "sync_interval_days": 30,
    }
    r = v.post("/items", {"item_id": "B-00001-145", "name": "Again", "product_code": 145})
    assert r.status_code == 409 and error_code(r) == "item_exists"
    r = v.post("/items", {"item_id": "bad id", "name": "x", "product_code": 1})
    assert r.status_code == 400 and error_code(r) == "invalid_input"
    r = v.post("/items", {"name": "x", "product_code": 1, "options": {"expires_days": 1, "expires": 5}})
    assert r.status_code == 400 and error_code(r) == "invalid_input"
    r = v.post("/items", {"name": "x", "product_code": 1, "optoins": {}})
    assert r.status_code == 422 and error_code(r) == "invalid_input"
    assert [i["item_id"] for i in v.get("/items").json()] == ["B-00001-145", "F-00001-7"]
    r = v.post("/customers", {"number": "C-9", "name": "Nine"})
    assert r.status_code == 201 and r.json()["number"] == "C-9"
    r = v.post("/customers", {"number": "C-9", "name": "Nine"})
    assert r.status_code == 409 and error_code(r) == "customer_exists"
    r = v.post("/tickets", {"customer": "C-9", "items": ["B-00001-145"], "quantity_of_licenses": 3})
    assert r.status_code == 201
    order = r.json()
    assert len(order["tickets"]) == 3
    assert [t["license_id"] for t in order["tickets"]] == [1, 2, 3]
    assert all(codes.normalize_ticket(t["ticket"]) == t["ticket"] for t in order["tickets"])
    shown = v.get(f"/tickets/{order['tickets'][0]['ticket']}").json()
    assert shown["state"] == "new" and shown["customer"] == "C-9" and shown["items"] == ["B-00001-145"]
    r = v.post("/tickets", {"customer": "nobody", "items": ["B-00001-145"]})
    assert r.status_code == 404 and error_code(r) == "unknown_customer"
    r = v.post("/tickets", {"customer": "C-9", "items": ["F-09999-1"]})
    assert r.status_code == 404 and error_code(r) == "unknown_item"
    r = v.post("/tickets", {"customer": "C-9", "items": ["B-00001-145", v.item]})
    assert r.status_code == 400 and error_code(r) == "invalid_items"


def test_admin_names_the_firm(client):
    Vendor(client, 61)
    r = client.post("/api/v1/customers", json={"name": "x"}, headers=ADMIN)
    assert r.status_code == 400 and error_code(r) == "invalid_input" and "firm_code" in r.json()["error"]["message"]
    r = client.post("/api/v1/customers", json={"name": "x", "firm_code": 61}, headers=ADMIN)
    assert r.status_code == 201
    assert client.get("/api/v1/customers", params={"firm_code": 61}, headers=ADMIN).status_code == 200


def test_vendor_a_cannot_read_or_change_vendor_b(client, clock, engine):
    a, b = Vendor(client, 71), Vendor(client, 72)
    b_item = b.post("/items", {"item_id": "B-00009-9", "name": "B only", "product_code": 9}).json()["item_id"]
    b_customer = b.post("/customers", {"number": "B-ONLY", "name": "B's customer"}).json()["number"]
    (tb,) = b.tickets()
    box = FakeContainer()
    box.apply(client.post("/api/v1/activations", json=box.request("activate", ticket=tb, now=clock.now)).json())
    before = dump_state(engine)
    audit = count_rows(engine, "audit_log")

    def refused(r, status, code):
        assert (r.status_code, error_code(r)) == (status, code), r.text

    # reads
    refused(a.get(f"/items/{b_item}"), 404, "unknown_item")
    refused(a.get(f"/customers/{b_customer}"), 404, "unknown_customer")
    refused(a.get("/items?firm_code=72"), 403, "forbidden")
    refused(a.get(f"/customers/{b.customer}?firm_code=72"), 403, "forbidden")
    assert [c["number"] for c in a.get("/customers").json()] == [a.customer]
    refused(a.get(f"/tickets/{tb}"), 404, "unknown_ticket")
    refused(a.get("/firms/72"), 403, "forbidden")
    refused(a.get(f"/containers/{box.serial}"), 404, "unknown_container")
    refused(a.get(f"/containers/{box.serial}?firm_code=72"), 403, "forbidden")
    assert all(row["firm_code"] == 71 for row in a.get("/audit").json())
    # writes
    refused(a.post(f"/tickets/{tb}/revoke"), 404, "unknown_ticket")
    refused(a.post("/firms/72/keys/rotate"), 403, "forbidden")
    kid = b.get("/firms/72").json()["keys"][0]["kid"]
    refused(a.post(f"/firms/72/keys/{kid}/retire"), 403, "forbidden")
    refused(a.post(f"/containers/{box.serial}/clear"), 404, "unknown_container")
    refused(a.post(f"/containers/{box.serial}/clear", {"firm_code": 72}), 403, "forbidden")
    refused(a.post("/items", {"firm_code": 72, "name": "x", "product_code": 1}), 403, "forbidden")
    refused(a.post("/customers", {"firm_code": 72, "name": "x"}), 403, "forbidden")
    refused(a.post("/tickets", {"firm_code": 72, "customer": b.customer, "items": [b.item]}), 403, "forbidden")
    refused(a.post("/tickets", {"customer": b_customer, "items": [a.item]}), 404, "unknown_customer")
    refused(a.post("/tickets", {"customer": a.customer, "items": [b_item]}), 404, "unknown_item")
    refused(a.post("/apikeys", {"firm_code": 71}), 403, "forbidden")
    assert dump_state(engine) == before
    assert count_rows(engine, "audit_log") == audit
    # b itself can
    assert b.get(f"/tickets/{tb}").json()["state"] == "activated"
    assert b.post(f"/containers/{box.serial}/clear").status_code == 200


def test_revoked_api_key_stops_working(client):
    v = Vendor(client, 81)
    assert v.get("/items").status_code == 200
    rows = client.get("/api/v1/audit", params={"firm_code": 81}, headers=ADMIN).json()
    (created,) = [r for r in rows if r["action"] == "apikey.create"]
    r = client.post(f"/api/v1/apikeys/{created['detail']['key_id']}/revoke", headers=ADMIN)
    assert r.status_code == 200
    r = v.get("/items")
    assert r.status_code == 401 and error_code(r) == "unauthorized"


def test_every_write_is_audited_and_the_log_is_append_only(client, engine):
    v = Vendor(client, 91)
    (t,) = v.tickets()
    v.post(f"/tickets/{t}/revoke")
    with engine.connect() as conn:
        rows = conn.execute(select(AuditEntry).order_by(AuditEntry.id)).all()
    actions = [r.action for r in rows]
    assert actions == [
        "firm.create",
        "apikey.create",
        "item.create",
        "customer.create",
        "tickets.create",
        "ticket.revoke",
    ]
    assert rows[0].role == "admin" and rows[2].role == "vendor" and rows[2].firm_code == 91
    assert rows[4].detail["tickets"] == [t]
    assert all(len(r.actor) == 16 for r in rows)
    with engine.connect() as conn:
        for statement in ("UPDATE audit_log SET action = 'x'", "DELETE FROM audit_log"):
            with pytest.raises(IntegrityError, match="audit_log is append-only"):  # the trigger's ABORT
                conn.exec_driver_sql(statement)
            conn.rollback()


def test_errors_are_json_with_code_and_message(client):
    r = client.get("/api/v1/nowhere")
    assert r.status_code == 404 and error_code(r) == "not_found"
    r = client.get("/api/v1/firms/abc/public-key")
    assert r.status_code == 422 and error_code(r) == "invalid_input"
    r = client.post("/api/v1/firms", content="{", headers={**ADMIN, "Content-Type": "application/json"})
    assert r.status_code == 400 and error_code(r) == "malformed_input"  # refused before it is read
    r = client.post("/api/v1/firms", json={"code": "x", "name": "F"}, headers=ADMIN)
    assert r.status_code == 422 and error_code(r) == "invalid_input"
    assert client.get("/docs").status_code == 200
    assert "/api/v1/activations" in client.get("/openapi.json").json()["paths"]


def test_product_key_export_is_firm_signed_scoped_and_audited(client):
    from licentia.core import hazmat, keyfile

    admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
    for code in (5001, 5002):
        assert client.post("/api/v1/firms", json={"code": code, "name": f"F{code}"}, headers=admin).status_code == 201
    vendor_a = client.post("/api/v1/apikeys", json={"firm_code": 5001}, headers=admin).json()["key"]
    a = {"Authorization": f"Bearer {vendor_a}"}
    r = client.get("/api/v1/firms/5001/products/7/keys/2", headers=a)
    assert r.status_code == 200
    pem = client.get("/api/v1/firms/5001/public-key", params={"format": "pem"}).text
    key = hazmat.load_public_pem(pem)
    pk = keyfile.verify(r.json(), key, firm_code=5001, product_code=7, version=2)
    assert len(pk.key) == 32
    v1 = keyfile.verify(client.get("/api/v1/firms/5001/products/7/keys/1", headers=a).json(), key)
    assert v1.key != pk.key  # a new version is a new key
    r = client.get("/api/v1/firms/5002/products/7/keys/2", headers=a)
    assert r.status_code == 403 and error_code(r) == "forbidden"
    r = client.get("/api/v1/firms/5001/products/7/keys/2")
    assert r.status_code == 401 and error_code(r) == "unauthorized"
    audit = client.get("/api/v1/audit", headers=a).json()
    assert any(row["action"] == "firm.export_product_key" for row in audit)


def test_exported_product_key_is_the_one_sealed_into_licenses(client):
    from licentia.core import exchange, keyfile

    vendor = Vendor(client, 5003)  # item: product 7, key versions 1 and 2
    container = FakeContainer()
    (ticket,) = vendor.tickets()
    r = client.post("/api/v1/activations", json=container.request(ticket=ticket))
    assert r.status_code == 200, r.text
    update = exchange.verify_update(r.json(), vendor.pinned())
    sealed = {
        k["version"]: exchange.unseal_product_key(container.box_key, container.serial, k) for k in update.sealed_keys
    }
    for version in (1, 2):
        doc = vendor.get(f"/firms/5003/products/7/keys/{version}").json()
        assert keyfile.verify(doc, vendor.pinned()).key == sealed[version]


def test_the_audit_log_refuses_a_firm_code_out_of_range(client):
    """Found by fuzzing the API: a firm code past 64 bits reached the database (a 500)."""
    for code in (2**63, 2**80, -(2**70), 0):
        r = client.get("/api/v1/audit", params={"firm_code": code}, headers=ADMIN)
        assert r.status_code == 400 and error_code(r) == "invalid_input", r.text
