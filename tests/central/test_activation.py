"""The activation protocol over the API (TestClient on a real SQLite file)."""

from __future__ import annotations

import json

import pytest
from central_helpers import (
    ADMIN_KEY,
    DAY_S,
    FakeContainer,
    Vendor,
    central_app,
    count_rows,
    dump_state,
    error_code,
    make_settings,
)
from fastapi.testclient import TestClient

from licentia.core import codes, exchange
from licentia.core.documents import DocumentInvalid
from licentia.core.exchange import SlotPosition

ACT = "/api/v1/activations"
SYNC = "/api/v1/sync"
DEACT = "/api/v1/deactivations"


@pytest.fixture
def vendor(client):
    return Vendor(client, 20001)


def activate(client, box: FakeContainer, ticket: str, clock, **kw):
    r = client.post(ACT, json=box.request("activate", ticket=ticket, now=clock.now, **kw))
    return r


def test_activate_issues_signed_full_state_with_sealed_keys(client, vendor, clock):
    (ticket,) = vendor.tickets()
    box = FakeContainer()
    r = activate(client, box, ticket, clock)
    assert r.status_code == 200, r.text
    update = box.apply(r.json(), vendor.pinned())
    assert update.seq == 1 and update.time == clock.now
    (entry,) = update.entries
    assert entry.ticket == ticket and entry.license_id == 1
    assert entry.product_code == 7 and entry.feature_map == 0b0011 and entry.text == "Product One"
    assert entry.container_key == box.request()["payload"]["sign_pub"]
    assert entry.options.expires == clock.now + 30 * DAY_S and entry.options.units == 100
    assert entry.key_versions == (1, 2)
    # one sealed product key per key version, bound to this entry, openable only by this container
    assert sorted(s["version"] for s in update.sealed_keys) == [1, 2]
    keys = box.product_keys(update)
    assert len(set(keys)) == 2 and all(len(k) == 32 for k in keys)
    other = FakeContainer(serial=box.serial)
    with pytest.raises(DocumentInvalid) as info:
        other.product_keys(update)
    assert "authentication failed" in info.value.reason
    info = client.get(f"/api/v1/tickets/{ticket}/info").json()
    assert info == {"ticket": ticket, "firm_code": 20001, "product_code": 7, "level": "medium", "state": "activated"}
    shown = vendor.get(f"/tickets/{ticket}").json()
    assert shown["state"] == "activated" and shown["serial"] == box.serial


def test_same_request_returns_stored_update_without_changes(client, vendor, clock, engine):
    (ticket,) = vendor.tickets()
    box = FakeContainer()
    doc = box.request("activate", ticket=ticket, now=clock.now)
    first = client.post(ACT, json=doc)
    assert first.status_code == 200
    before = dump_state(engine)
    clock.advance(3600)
    again = client.post(ACT, content=json.dumps(doc))
    assert again.status_code == 200
    assert again.content == first.content
    assert dump_state(engine) == before


def test_full_state_holds_every_ticket_of_the_firm_in_that_container(client, vendor, clock):
    t1, t2 = vendor.tickets(2)
    box = FakeContainer()
    box.apply(activate(client, box, t1, clock).json())
    clock.advance(60)
    u2 = box.apply(activate(client, box, t2, clock).json())
    assert [e.ticket for e in u2.entries] == [t1, t2]
    assert u2.seq == 2
    # license entries are kept from activation: t1's entry is the same document as before
    u3 = box.apply(client.post(SYNC, json=box.request("sync", firm_code=20001, now=clock.now)).json())
    assert [e.digest for e in u3.entries] == [e.digest for e in u2.entries]
    assert u3.seq == 3


def test_sync_after_revoke_drops_the_ticket_and_signs_new_time(client, vendor, clock):
    t1, t2 = vendor.tickets(2)
    box = FakeContainer()
    box.apply(activate(client, box, t1, clock).json())
    box.apply(activate(client, box, t2, clock).json())
    r = vendor.post(f"/tickets/{t1}/revoke")
    assert r.status_code == 200 and r.json()["state"] == "revoked"
    clock.advance(DAY_S)
    u = box.apply(client.post(SYNC, json=box.request("sync", firm_code=20001, now=clock.now)).json())
    assert [e.ticket for e in u.entries] == [t2]
    assert u.time == clock.now
    r = activate(client, FakeContainer(), t1, clock)
    assert r.status_code == 409 and error_code(r) == "ticket_revoked"


def test_options_are_fixed_at_first_activation(client, vendor, clock):
    (ticket,) = vendor.tickets()
    box = FakeContainer()
    first = box.apply(activate(client, box, ticket, clock).json()).entries[0]
    clock.advance(5 * DAY_S)
    receipt = box.receipt(20001, first.license_id, ticket)
    assert client.post(DEACT, json={"receipt": receipt}).status_code == 200
    other = FakeContainer()
    again = other.apply(activate(client, other, ticket, clock).json()).entries[0]
    assert again.options.expires == first.options.expires  # deactivating does not restart a trial
    assert again.issued == clock.now and again.serial == other.serial


def test_a_dead_item_is_not_sold_nor_activated(client, vendor, clock, engine):
    """An item whose absolute expiry has passed gets no new ticket, and its tickets no activation."""
    r = vendor.post("/items", {"name": "Season 2027", "product_code": 8, "options": {"expires": clock.now + DAY_S}})
    assert r.status_code == 201, r.text
    item = r.json()["item_id"]
    shown = vendor.get(f"/items/{item}").json()
    assert shown["expires_in_days"] == 1 and shown["expired"] is False
    (sold,) = vendor.tickets(1, [item])
    clock.advance(2 * DAY_S)
    assert vendor.get(f"/items/{item}").json()["expired"] is True
    before = dump_state(engine)
    r = vendor.post("/tickets", {"customer": vendor.customer, "items": [item]})
    assert r.status_code == 409 and error_code(r) == "item_expired"
    r = activate(client, FakeContainer(), sold, clock)
    assert r.status_code == 409 and error_code(r) == "item_expired"
    assert "expired" in r.json()["error"]["message"]
    assert dump_state(engine) == before


def test_wrong_level_names_the_level(client, clock):
    vendor = Vendor(client, 20002, level="tight")
    (ticket,) = vendor.tickets()
    r = activate(client, FakeContainer(level="medium"), ticket, clock)
    assert r.status_code == 409 and error_code(r) == "wrong_level"
    assert r.json()["error"]["message"] == (
        "this ticket needs a container of binding level tight: activate with --level tight"
    )


def test_ticket_bound_elsewhere_then_deactivate_and_move(client, vendor, clock, engine):
    (ticket,) = vendor.tickets()
    a, b = FakeContainer(), FakeContainer()
    ua = a.apply(activate(client, a, ticket, clock).json())
    before = dump_state(engine)
    r = activate(client, b, ticket, clock)
    assert r.status_code == 409 and error_code(r) == "ticket_bound_elsewhere"
    assert a.serial in r.json()["error"]["message"]
    assert dump_state(engine) == before  # b was not even registered
    receipt = a.receipt(20001, ua.entries[0].license_id, ticket)
    r1 = client.post(DEACT, json={"receipt": receipt})
    assert r1.status_code == 200 and r1.json()["state"] == "deactivated"
    after_deactivation = dump_state(engine)
    r2 = client.post(DEACT, json={"receipt": receipt})  # same receipt again: same answer, no change
    assert r2.status_code == 200 and r2.content == r1.content
    assert dump_state(engine) == after_deactivation
    ub = b.apply(activate(client, b, ticket, clock).json())
    assert ub.entries[0].serial == b.serial
    # a's next sync no longer carries the ticket
    ua2 = a.apply(client.post(SYNC, json=a.request("sync", firm_code=20001, now=clock.now)).json())
    assert ua2.entries == ()


def test_reactivation_in_same_container_is_a_fresh_full_state(client, vendor, clock):
    (ticket,) = vendor.tickets()
    box = FakeContainer()
    u1 = box.apply(activate(client, box, ticket, clock).json())
    clock.advance(10)
    u2 = box.apply(activate(client, box, ticket, clock).json())
    assert u2.seq == u1.seq + 1 and len(u2.entries) == 1
    assert u2.entries[0].issued == clock.now  # re-signed on re-activation


def test_a_fork_is_flagged_rebased_and_shown_to_the_vendor_until_cleared(client, vendor, clock, engine):
    (ticket,) = vendor.tickets()
    box = FakeContainer(chained=True)
    box.apply(activate(client, box, ticket, clock).json())
    box.apply(client.post(SYNC, json=box.request("sync", firm_code=20001, now=clock.now)).json())
    clock.advance(60)
    saved = (dict(box.gen), {f: list(c) for f, c in box.chain.items()})  # a copy of the container files
    box.apply(client.post(SYNC, json=box.request("sync", firm_code=20001, now=clock.now)).json())
    clock.advance(60)
    box.gen, box.chain = saved  # the copy is put back: its next document forks the chain
    r = client.post(SYNC, json=box.request("sync", firm_code=20001, now=clock.now))
    assert r.status_code == 200, r.text  # answered: the container is corrected, not refused
    update = box.apply(r.json())
    assert update.manipulation == {"rebased": [1], "withdrawn": []}
    assert "restored" in (update.message or "") and "Firm 20001" in (update.message or "")
    assert update.entries[0].activation == 2  # a new entry, with Central's counts
    shown = vendor.get(f"/containers/{box.serial}").json()
    assert shown["flagged"] is True and [f["action"] for f in shown["flags"]] == ["rebase"]
    assert "fork" in shown["flags"][0]["reason"]
    # the next honest request goes on from the restored line: no second flag
    r = client.post(SYNC, json=box.request("sync", firm_code=20001, now=clock.now))
    assert r.status_code == 200 and box.apply(r.json()).manipulation is None
    audit_before = count_rows(engine, "audit_log")
    r = vendor.post(f"/containers/{box.serial}/clear")
    assert r.status_code == 200 and r.json()["was_flagged"] is True
    assert count_rows(engine, "audit_log") == audit_before + 1
    shown = vendor.get(f"/containers/{box.serial}").json()
    assert shown["flagged"] is False and shown["flags"][0]["cleared"] == clock.now


def test_a_document_without_generation_after_generations_is_manipulation(client, vendor, clock):
    (ticket,) = vendor.tickets()
    box = FakeContainer(chained=True)
    box.apply(activate(client, box, ticket, clock).json())
    box.apply(client.post(SYNC, json=box.request("sync", firm_code=20001, now=clock.now)).json())
    box.chained = False  # an old copy of the software, or the generation stripped
    r = client.post(SYNC, json=box.request("sync", firm_code=20001, now=clock.now + 60))
    assert r.status_code == 200 and box.apply(r.json()).manipulation == {"rebased": [1], "withdrawn": []}


def test_two_honest_offline_requests_at_the_same_seq_are_not_flagged(client, vendor, clock):
    t1, t2 = vendor.tickets(2)
    box = FakeContainer()
    box.apply(activate(client, box, t1, clock).json())
    # two requests made at seq 1 before either update was applied; the clock moved between them
    clock.advance(100)
    req_a = box.request("activate", ticket=t2, now=clock.now, slots={20001: SlotPosition(1, box.slots[20001].vtime)})
    req_b = box.request(
        "sync", firm_code=20001, now=clock.now, slots={20001: SlotPosition(1, box.slots[20001].vtime + 50)}
    )
    ra = client.post(ACT, json=req_a)
    rb = client.post(SYNC, json=req_b)
    assert ra.status_code == 200 and rb.status_code == 200
    assert exchange.verify_update(rb.json()).seq > exchange.verify_update(ra.json()).seq


def test_module_items_add_feature_bits(client, vendor, clock):
    r = vendor.post("/items", {"name": "Module X", "module_of": vendor.item, "feature_map": 0b1000_0000})
    assert r.status_code == 201, r.text
    module = r.json()
    assert module["product_code"] == 7 and module["module_of"] == vendor.item
    (ticket,) = vendor.tickets(items=[vendor.item, module["item_id"]])
    box = FakeContainer()
    entry = box.apply(activate(client, box, ticket, clock).json()).entries[0]
    assert entry.feature_map == 0b1000_0011
    r = vendor.post("/tickets", {"customer": vendor.customer, "items": [module["item_id"]]})
    assert r.status_code == 400 and error_code(r) == "invalid_items"


def test_key_rotation_updates_carry_endorsements(client, vendor, clock):
    pinned = vendor.pinned()
    t1, t2 = vendor.tickets(2)
    box = FakeContainer()
    box.apply(activate(client, box, t1, clock).json(), pinned)
    r = vendor.post(f"/firms/{vendor.firm_code}/keys/rotate")
    assert r.status_code == 200
    keys = r.json()["keys"]
    assert [k["active"] for k in keys] == [False, True]
    u = box.apply(activate(client, box, t2, clock).json(), pinned)  # verifies only through the endorsement
    assert u.document["kid"] == keys[1]["kid"] and len(u.endorsements) == 1
    assert {e.kid for e in u.entries} == {keys[0]["kid"], keys[1]["kid"]}
    pem = client.get(f"/api/v1/firms/{vendor.firm_code}/public-key", params={"format": "pem"}).text
    assert pem.count("BEGIN PUBLIC KEY") == 2


# ---------------------------------------------------------------- untrusted input


def _flip(doc: dict) -> dict:
    doc = json.loads(json.dumps(doc))
    doc["payload"]["created"] += 1
    return doc


def _forge(doc: dict) -> dict:
    doc = json.loads(json.dumps(doc))
    sig = doc["sig"]
    doc["sig"] = ("A" if sig[0] != "A" else "B") + sig[1:]
    return doc


@pytest.mark.parametrize(
    "make, status, code",
    [
        (lambda box, t, now: json.dumps(_forge(box.request("activate", ticket=t, now=now))), 400, "invalid_request"),
        (lambda box, t, now: json.dumps(_flip(box.request("activate", ticket=t, now=now))), 400, "invalid_request"),
        (lambda box, t, now: json.dumps(box.request("activate", ticket=t, now=now))[:-40], 400, "malformed_input"),
        (lambda box, t, now: "", 400, "malformed_input"),
        (lambda box, t, now: json.dumps(box.request("sync", firm_code=20001, now=now)), 400, "invalid_request"),
        (
            lambda box, t, now: json.dumps(box.request("activate", ticket=codes.new_ticket_id(), now=now)),
            404,
            "unknown_ticket",
        ),
        (
            lambda box, t, now: json.dumps(
                box.request("activate", ticket=t[:-1] + ("0" if t[-1] != "0" else "1"), now=now)
            ),
            400,
            "invalid_request",
        ),
    ],
    ids=[
        "forged-signature",
        "flipped-byte",
        "truncated-json",
        "empty",
        "sync-to-activate",
        "unknown-ticket",
        "mistyped-ticket",
    ],
)
def test_bad_activation_input_changes_nothing(client, vendor, clock, engine, make, status, code):
    (ticket,) = vendor.tickets()
    box = FakeContainer()
    before = dump_state(engine)
    attempts = count_rows(engine, "attempts")
    r = client.post(ACT, content=make(box, ticket, clock.now))
    assert r.status_code == status and error_code(r) == code
    assert dump_state(engine) == before
    if code == "malformed_input":  # refused before it was read: counted in the process, not the database
        assert count_rows(engine, "attempts") == attempts
    else:
        assert count_rows(engine, "attempts") > attempts  # a failed attempt is counted


def test_request_from_another_key_for_a_known_serial_is_refused(client, vendor, clock, engine):
    t1, t2 = vendor.tickets(2)
    box = FakeContainer()
    box.apply(activate(client, box, t1, clock).json())
    impostor = FakeContainer(serial=box.serial)
    before = dump_state(engine)
    r = activate(client, impostor, t2, clock)
    assert r.status_code == 403 and error_code(r) == "container_key_mismatch"
    r = client.post(SYNC, json=impostor.request("sync", firm_code=20001, now=clock.now))
    assert r.status_code == 403 and error_code(r) == "container_key_mismatch"
    assert dump_state(engine) == before


def test_bad_receipts_change_nothing(client, vendor, clock, engine):
    t1, t2 = vendor.tickets(2)
    a, b = FakeContainer(), FakeContainer()
    e1 = a.apply(activate(client, a, t1, clock).json()).entries[0]
    e2 = b.apply(activate(client, b, t2, clock).json()).entries[0]
    before = dump_state(engine)
    good = a.receipt(20001, e1.license_id, t1)
    cases = [
        (json.dumps({"receipt": _forge(good)}), 400, "invalid_receipt"),
        (json.dumps({"receipt": _flip_receipt(good)}), 400, "invalid_receipt"),
        (json.dumps({"receipt": good})[:-30], 400, "malformed_input"),  # not JSON: refused before it is read
        (json.dumps(good), 400, "invalid_receipt"),
        # signed by b's key but naming a's serial
        (
            json.dumps(
                {"receipt": FakeContainer(serial=a.serial, sign_key=b.sign_key).receipt(20001, e1.license_id, t1)}
            ),
            400,
            "invalid_receipt",
        ),
        # a's genuine receipt naming t2's license id but t1's ticket: replay for another ticket
        (json.dumps({"receipt": a.receipt(20001, e2.license_id, t1)}), 400, "invalid_receipt"),
        # a's genuine receipt for t2, which is active in b
        (json.dumps({"receipt": a.receipt(20001, e2.license_id, t2)}), 409, "not_active_here"),
    ]
    for body, status, code in cases:
        r = client.post(DEACT, content=body)
        assert (r.status_code, error_code(r)) == (status, code), body[:80]
        assert dump_state(engine) == before


def _flip_receipt(doc: dict) -> dict:
    doc = json.loads(json.dumps(doc))
    doc["payload"]["license_id"] += 1
    return doc


def test_mistyped_ticket_is_400_before_lookup(client, vendor, engine):
    (ticket,) = vendor.tickets()
    typo = ticket[:-1] + ("0" if ticket[-1] != "0" else "1")
    before, attempts = dump_state(engine), count_rows(engine, "attempts")
    r = client.get(f"/api/v1/tickets/{typo}/info")
    assert r.status_code == 400 and error_code(r) == "invalid_ticket"
    assert "mistyped" in r.json()["error"]["message"]
    r = client.get(f"/api/v1/tickets/{typo}")  # even before the API key is looked at
    assert r.status_code == 400 and error_code(r) == "invalid_ticket"
    assert dump_state(engine) == before and count_rows(engine, "attempts") == attempts
    # lower case and missing dashes are fine
    r = client.get(f"/api/v1/tickets/{ticket.replace('-', '').lower()}/info")
    assert r.status_code == 200 and r.json()["ticket"] == ticket
    r = vendor.get(f"/tickets/{typo}")
    assert r.status_code == 400 and error_code(r) == "invalid_ticket"


def test_failed_attempts_are_rate_limited_per_address_and_ticket(tmp_path, clock):
    settings = make_settings(tmp_path / "d", attempts_per_address=5, attempts_per_ticket=3)
    with (
        central_app(settings, clock) as app,
        TestClient(app, client=("198.51.100.1", 1)) as c1,
        TestClient(app, client=("198.51.100.2", 1)) as c2,
    ):
        vendor = Vendor(c1, 20003)
        (ticket,) = vendor.tickets()
        for _ in range(5):
            r = c1.get(f"/api/v1/tickets/{codes.new_ticket_id()}/info")
            assert r.status_code == 404 and error_code(r) == "unknown_ticket"
        r = c1.get(f"/api/v1/tickets/{ticket}/info")
        assert r.status_code == 429 and error_code(r) == "too_many_attempts"
        # another address is not affected, and successes never count
        for _ in range(10):
            assert c2.get(f"/api/v1/tickets/{ticket}/info").status_code == 200
        # per ticket: forged requests naming the ticket from several addresses
        box = FakeContainer()
        for client in (c2, c2, c2):
            r = client.post(ACT, json=_forge(box.request("activate", ticket=ticket)))
            assert r.status_code == 400 and error_code(r) == "invalid_request"
        with TestClient(app, client=("198.51.100.3", 1)) as c3:
            r = c3.post(ACT, json=box.request("activate", ticket=ticket, now=clock.now))
            assert r.status_code == 429 and error_code(r) == "too_many_attempts"
            clock.advance(601)  # the window passes
            r = c3.post(ACT, json=box.request("activate", ticket=ticket, now=clock.now))
            assert r.status_code == 200
            assert c1.get(f"/api/v1/tickets/{ticket}/info").status_code == 200


def test_public_endpoints_need_no_key_and_vendor_endpoints_do(client, vendor):
    assert client.get("/health").json() == {"status": "ok"}
    assert client.get(f"/api/v1/firms/{vendor.firm_code}/public-key").status_code == 200
    r = client.get(f"/api/v1/items/{vendor.item}")
    assert r.status_code == 401 and error_code(r) == "unauthorized"
    r = client.get(f"/api/v1/items/{vendor.item}", headers={"Authorization": "Bearer nope-not-a-key-at-all"})
    assert r.status_code == 401 and error_code(r) == "unauthorized"
    r = client.post("/api/v1/firms", json={"code": 5, "name": "x"}, headers=vendor.headers)
    assert r.status_code == 403 and error_code(r) == "forbidden"
    r = client.post("/api/v1/firms", json={"code": 5, "name": "x"}, headers={"Authorization": f"Bearer {ADMIN_KEY}"})
    assert r.status_code == 201
