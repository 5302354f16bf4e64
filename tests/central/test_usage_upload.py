"""License servers' usage uploads at Central (POST /api/v1/usage-uploads): the anchor
rules, every attack on the chain, the one usage store, the seat check, the vendor's view
and clearing; on real SQLite files, the main path once on PostgreSQL."""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from central_helpers import (
    FakeContainer,
    ServerThread,
    Vendor,
    central_app,
    count_rows,
    dump_state,
    error_code,
    make_settings,
)
from fastapi.testclient import TestClient
from sqlalchemy import select

from licentia.central.models import Flag, Ticket, UsageAnchor, UsageBillingDay, UsageBillingStale, UsageDay, UsageEvent
from licentia.central.services.billing import BillingRollup
from licentia.core import anchoring
from licentia.core.documents import document_digest
from licentia.core.encoding import canonical
from tests.cli.helpers import vendor as vendor_cli

UPLOADS = "/api/v1/usage-uploads"
ACT = "/api/v1/activations"
FIRM = 20001


# ---------------------------------------------------------------- a license server's log, by hand


@dataclass
class Log:
    """A license server's usage log: canonical event bodies (as seats/usage.lease_event and
    usage.encode make them) and their hash chain."""

    firm_code: int = FIRM
    license_id: int = 1
    bodies: list[str] = field(default_factory=list)
    base_seq: int = 0
    base_hash: str = anchoring.GENESIS

    @property
    def seq(self) -> int:
        return self.base_seq + len(self.bodies)

    def hash_at(self, seq: int) -> str:
        return anchoring.extend(self.base_hash, self.bodies[: seq - self.base_seq])

    def add(self, kind: str, lease: str | None, t: int, **changes: Any) -> int:
        seq = self.seq + 1
        final = kind in anchoring.FINAL_KINDS
        access = changes.pop("access", t)
        body: dict[str, Any] = {
            "seq": seq,
            "event": kind,
            "time": t,
            "leaseId": lease,
            "mode": changes.pop("mode", "user"),
            "accessTime": access,
            "releaseTime": t if final else None,
            "seconds": t - access if final else 0,
            "success": 0 if kind == "deny" else 1,
            "fail": 1 if kind == "deny" else 0,
            "invalid": 0,
            "firmCode": changes.pop("firm_code", self.firm_code),
            "productCode": 7,
            "featureCode": 1,
            "featureMap": 3,
            "ticketLicenseId": changes.pop("license_id", self.license_id),
            "userIdentification": changes.pop("user", f"user-of-{lease}"),
            "host": changes.pop("host", "pc-1"),
            "ip": "10.0.0.5",
        }
        if kind != "deny":
            body["seat"] = changes.pop("seat", lease)
        body.update(changes)
        self.bodies.append(canonical(body).decode())
        return seq

    def session(self, lease: str, start: int, end: int | None = None, **kw: Any) -> None:
        """An access at ``start`` (and its release at ``end``)."""
        self.add("access", lease, start, **kw)
        if end is not None:
            self.add("release", lease, end, access=start, **kw)

    def fork(self, at: int) -> Log:
        """The same log up to event ``at``, to be written on differently."""
        return Log(self.firm_code, self.license_id, self.bodies[: at - self.base_seq], self.base_seq, self.base_hash)

    def upload(self, box: FakeContainer, start: int, end: int | None = None, *, t: int = 0) -> dict[str, Any]:
        """The signed upload of events start+1..end extending the chain at ``start``."""
        end = self.seq if end is None else end
        return anchoring.build_upload(
            sign_key=box.sign_key,
            serial=box.serial,
            time=t,
            base_seq=start,
            base_hash=self.hash_at(start),
            bodies=self.bodies[start - self.base_seq : end - self.base_seq],
        )


# ---------------------------------------------------------------- fixtures and helpers


@pytest.fixture
def vendor(client):
    """A firm whose item has no seat limit (quantity 0): the seat check stays out of the chain's tests."""
    return Vendor(client, FIRM, options={"quantity": 0})


def item(vendor: Vendor, quantity: int, policy: str = "rebase") -> str:
    r = vendor.post(
        "/items",
        {
            "name": f"{quantity} seats, {policy}",
            "product_code": 8,
            "feature_map": 1,
            "level": "medium",
            "key_versions": [1],
            "options": {"quantity": quantity},
            "on_manipulation": policy,
        },
    )
    assert r.status_code == 201, r.text
    return str(r.json()["item_id"])


def activated(client: Any, vendor: Vendor, clock: Any, *, items: list[str] | None = None) -> tuple[FakeContainer, str]:
    """A license server's container (core builders, a fresh Ed25519 key) with one ticket active:
    Central has registered its key."""
    (ticket,) = vendor.tickets(1, items)
    box = FakeContainer()
    r = client.post(ACT, json=box.request("activate", ticket=ticket, now=clock.now))
    assert r.status_code == 200, r.text
    box.apply(r.json())
    return box, ticket


def post(client: Any, doc: dict[str, Any]) -> Any:
    return client.post(UPLOADS, content=json.dumps(doc))


def accepted(client: Any, doc: dict[str, Any]) -> dict[str, Any]:
    r = post(client, doc)
    assert r.status_code == 200, r.text
    answer = r.json()
    assert set(answer) == {"anchor", "stored", "flagged", "withdrawn", "rebased"}
    return dict(answer)


def anchor_of(vendor: Vendor, answer: dict[str, Any]) -> anchoring.Anchor:
    return anchoring.verify_anchor(answer["anchor"], vendor.pinned())


def rows(engine: Any, *columns: Any) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(select(*columns).order_by(UsageEvent.id)).all())


def usage_rows(engine: Any) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(select(UsageEvent).order_by(UsageEvent.id)).all())


def live_anchors(engine: Any) -> list[tuple[int, str]]:
    with engine.connect() as conn:
        return [
            (a.seq, a.hash)
            for a in conn.execute(
                select(UsageAnchor).where(UsageAnchor.superseded.is_(None)).order_by(UsageAnchor.seq)
            ).all()
        ]


def flags(engine: Any) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(select(Flag.reason, Flag.action, Flag.ticket_id).order_by(Flag.id)).all())


def ticket_row(engine: Any, ticket: str) -> Any:
    with engine.connect() as conn:
        return conn.execute(select(Ticket).where(Ticket.ticket == ticket)).one()


def store(engine: Any) -> dict[str, Any]:
    """The usage store, its rollup and the anchors: what a refused upload must leave as it was."""
    state = dump_state(engine)
    return {name: state[name] for name in ("usage_events", "usage_days", "usage_anchors")}


def check_rollup(engine: Any) -> int:
    """The product view's rollup, as the uploads kept it, holds the events' sums per key
    (summed here from the events), and every day of every session is marked for the billing
    job or computed by it; the number of the rollup's rows."""
    expected: dict[tuple[Any, ...], list[int]] = {}
    with engine.connect() as conn:
        for e in conn.execute(select(UsageEvent)).all():
            if e.ticket_id is None:
                continue
            key = (e.firm_id, e.item_id, e.access_time // 86400, e.customer_id, e.ticket_id, e.license_id)
            key += (e.product_code, e.feature_code, e.user_ident)
            sums = expected.setdefault(key, [0, 0, 0, 0, 0])
            for i, value in enumerate((e.seconds, e.success, e.fail, e.invalid, e.units)):
                sums[i] += value
        got = {
            (d.firm_id, d.item_id, d.day, d.customer_id, d.ticket_id, d.license_id, d.product_code)
            + (d.feature_code, d.user_ident): [d.seconds, d.success, d.fail, d.invalid, d.units]
            for d in conn.execute(select(UsageDay)).all()
        }
        marked = set(
            conn.execute(select(UsageBillingStale.customer_id, UsageBillingStale.item_id, UsageBillingStale.day))
        )
        marked |= set(conn.execute(select(UsageBillingDay.customer_id, UsageBillingDay.item_id, UsageBillingDay.day)))
        for e in conn.execute(select(UsageEvent).where(UsageEvent.customer_id.is_not(None))).all():
            last = e.access_time if e.release_time is None else max(e.access_time, e.release_time - 1)
            for day in range(e.access_time // 86400, last // 86400 + 1):  # each day for the billing job
                assert (e.customer_id, e.item_id, day) in marked
    assert got == expected
    return len(got)


# ---------------------------------------------------------------- the main path


def first_upload_is_stored_and_anchored(client: Any, vendor: Vendor, clock: Any, engine: Any) -> None:
    box, ticket = activated(client, vendor, clock)
    log = Log()
    t0 = clock.now
    log.session("A", t0 + 10, t0 + 70)  # 1, 2
    log.session("B", t0 + 20)  # 3: still held
    log.add("deny", None, t0 + 30, user="carol")  # 4
    doc = log.upload(box, 0, t=t0 + 80)
    clock.advance(100)
    answer = accepted(client, doc)
    assert answer["stored"] == 3 and answer["flagged"] == [] and answer["withdrawn"] == answer["rebased"] == []
    anchor = anchor_of(vendor, answer)  # signed by the firm's key, which the server's slot pins
    assert anchor == anchoring.Anchor(box.serial, FIRM, 4, log.hash_at(4), clock.now, document_digest(doc))
    t = ticket_row(engine, ticket)
    got = usage_rows(engine)
    assert [(r.seq, r.lease_id, r.success, r.fail) for r in got] == [(1, "A", 1, 0), (3, "B", 1, 0), (4, None, 0, 1)]
    a, b, deny = got
    assert (a.access_time, a.release_time, a.seconds, a.seat, a.mode) == (t0 + 10, t0 + 70, 60, "A", "user")
    assert (b.release_time, b.seconds) == (None, 0)
    assert deny.release_time is None and deny.user_ident == "carol"
    for r in got:  # the scope joined from Central's tickets
        assert (r.source, r.firm_code, r.license_id, r.product_code, r.feature_map) == ("server", FIRM, 1, 7, 3)
        assert (r.ticket_id, r.customer_id, r.item_id) == (t.id, t.customer_id, t.item_id)
        assert (r.host, r.address) == ("pc-1", "10.0.0.5")
    assert live_anchors(engine) == [(0, anchoring.GENESIS), (4, log.hash_at(4))]
    assert check_rollup(engine) == 3  # the users of A and B, and carol's refusal


def chunks_extend_the_anchor(client: Any, vendor: Vendor, clock: Any, engine: Any) -> None:
    box, _ = activated(client, vendor, clock)
    log = Log()
    t0 = clock.now
    log.session("A", t0 + 1)  # 1
    log.session("B", t0 + 2, t0 + 5)  # 2, 3
    first = accepted(client, log.upload(box, 0, 2))
    assert anchor_of(vendor, first).seq == 2 and first["stored"] == 2
    log.add("renew", "A", t0 + 6, access=t0 + 1)  # 4: nothing changes
    log.add("expire", "A", t0 + 9, access=t0 + 1)  # 5: A's session ends in this later chunk
    log.add("deny", None, t0 + 10)  # 6
    second = accepted(client, log.upload(box, 2))
    assert anchor_of(vendor, second).seq == 6 and anchor_of(vendor, second).hash == log.hash_at(6)
    assert second["stored"] == 1  # the denial; B and A are rows already
    got = rows(engine, UsageEvent.seq, UsageEvent.lease_id, UsageEvent.release_time, UsageEvent.seconds)
    assert got == [(1, "A", t0 + 9, 8), (2, "B", t0 + 5, 3), (6, None, None, 0)]
    check_rollup(engine)  # A's seconds came with the second chunk
    assert [seq for seq, _ in live_anchors(engine)] == [0, 2, 6]


def test_first_upload_is_stored_and_anchored(client, vendor, clock, engine):
    first_upload_is_stored_and_anchored(client, vendor, clock, engine)


def test_chunked_uploads_complete_sessions_in_a_later_chunk(client, vendor, clock, engine):
    chunks_extend_the_anchor(client, vendor, clock, engine)


def test_an_upload_over_the_other_protocol_routes_body_limit_is_taken(client, vendor, clock, engine):
    box, _ = activated(client, vendor, clock)
    log = Log()
    for i in range(300):  # about 300 KiB of events: over 256 KiB, within one upload's 1 MiB
        log.add("deny", None, clock.now, host="h" * 250, user="u" * 250, reason="r" * 250 + str(i))
    doc = log.upload(box, 0)
    assert 256 * 1024 < len(json.dumps(doc)) < 1024 * 1024
    assert accepted(client, doc)["stored"] == 300
    huge = client.post(UPLOADS, content=b" " * (1024 * 1024 + 1))
    assert huge.status_code == 413
    assert client.post(ACT, content=b" " * (256 * 1024 + 1)).status_code == 413  # the others keep theirs


def test_a_late_upload_changes_a_closed_months_reports(app, client, vendor, clock, engine):
    """An offline server's log reaches Central a month late (through the depot): its
    sessions join the product view's whole days at once, and the billing days of that month,
    computed already, are computed again from the events."""
    box, _ = activated(client, vendor, clock)
    log = Log()
    month_ago = clock.now - 35 * 86400
    log.session("A", month_ago, month_ago + 600)
    accepted(client, log.upload(box, 0))
    ctx = app.state.central
    with ctx.db.session() as s:
        BillingRollup(ctx, s).refresh()  # the month is computed: one session
    period = {"from": _iso(month_ago - month_ago % 86400), "to": _iso(month_ago - month_ago % 86400 + 86399)}

    def views() -> tuple[list[Any], list[Any]]:
        body = {"filter": period}
        product = client.post("/api/v1/reporting/product-usage", json=body, headers=vendor.headers).json()
        billing = client.post("/api/v1/reporting/billing", json=body, headers=vendor.headers).json()
        return product["productUsageList"], billing["billingList"]

    product, billing = views()
    assert [p["seconds"] for p in product] == [600] and [b["sessions"] for b in billing] == [1]
    log.session("B", month_ago + 60, month_ago + 3660)  # held while A was: two seats at once
    accepted(client, log.upload(box, 2))  # a month late
    product, billing = views()
    assert sorted(p["seconds"] for p in product) == [600, 3600]
    assert [(b["sessions"], b["peakSeats"], b["seatSeconds"]) for b in billing] == [(2, 2, 4200)]
    with ctx.db.session() as s:
        BillingRollup(ctx, s).refresh()
    assert views()[1] == billing  # the job computed the day again: the same answer from the rollup
    check_rollup(engine)


def _iso(t: int) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")


# ---------------------------------------------------------------- re-uploads


def test_a_reupload_is_counted_once(client, vendor, clock, engine):
    box, _ = activated(client, vendor, clock)
    log = Log()
    for i in range(3):
        log.session(f"L{i}", clock.now + i)  # 1..3
    doc = log.upload(box, 0)
    accepted(client, doc)
    before = store(engine)
    again = accepted(client, doc)  # the same upload again (its answer was lost)
    assert again["stored"] == 0 and anchor_of(vendor, again).seq == 3
    assert store(engine) == before
    log.session("L3", clock.now + 5)  # 4
    log.session("L4", clock.now + 6)  # 5
    wider = accepted(client, log.upload(box, 0))  # from the first anchor: 1..3 are held already
    assert wider["stored"] == 2 and anchor_of(vendor, wider).seq == 5
    assert [r.seq for r in usage_rows(engine)] == [1, 2, 3, 4, 5]
    check_rollup(engine)


def test_an_upload_that_starts_where_central_holds_no_anchor_is_told_where_to_start(client, vendor, clock, engine):
    box, _ = activated(client, vendor, clock)
    log = Log()
    for i in range(6):
        log.session(f"L{i}", clock.now + i)
    accepted(client, log.upload(box, 0, 3))
    accepted(client, log.upload(box, 3, 6))
    before = store(engine)
    log.session("L6", clock.now + 9)
    r = post(client, log.upload(box, 4))  # the server lost its anchor record: no anchor at 4
    assert r.status_code == 409
    body = r.json()
    assert body["error"]["code"] == "anchor_mismatch" and body["error"]["anchored_seq"] == 6
    assert set(body["error"]) == {"code", "message", "anchored_seq"}
    assert store(engine) == before and flags(engine) == []
    assert anchor_of(vendor, accepted(client, log.upload(box, 6))).seq == 7


# ---------------------------------------------------------------- manipulation


def _chain_broken(client: Any, engine: Any, doc: dict[str, Any], before: dict[str, Any], ticket: str) -> None:
    r = post(client, doc)
    assert r.status_code == 409 and error_code(r) == "usage_chain_broken", r.text
    assert store(engine) == before  # nothing of the upload stored, the anchor stays
    (flag,) = flags(engine)
    assert flag.reason.startswith("usage log chain broken") and flag.action == "rebase"
    assert flag.ticket_id == ticket_row(engine, ticket).id
    assert ticket_row(engine, ticket).state == "activated"  # rebase: only the flag


def test_a_rewritten_event_is_flagged_and_nothing_stored(client, vendor, clock, engine):
    box, ticket = activated(client, vendor, clock)
    log = Log()
    for i in range(3):
        log.session(f"L{i}", clock.now + i)
    accepted(client, log.upload(box, 0))
    before = store(engine)
    forked = log.fork(2)
    forked.session("X", clock.now + 2, user="someone-else")  # event 3 written otherwise
    forked.session("Y", clock.now + 4)
    _chain_broken(client, engine, forked.upload(box, 3), before, ticket)


def test_a_truncated_log_is_flagged(client, vendor, clock, engine):
    box, ticket = activated(client, vendor, clock)
    log = Log()
    for i in range(6):
        log.session(f"L{i}", clock.now + i)
    accepted(client, log.upload(box, 0, 2))
    before = store(engine)
    _chain_broken(client, engine, log.upload(box, 4), before, ticket)  # events 3 and 4 never reach Central
    # the server sends the same log at its next sync: refused again, but not flagged twice
    clock.advance(86400)
    r = post(client, log.upload(box, 4, t=clock.now))
    assert r.status_code == 409 and error_code(r) == "usage_chain_broken"
    assert len(flags(engine)) == 1 and store(engine) == before


def test_a_different_event_at_a_known_sequence_is_flagged(client, vendor, clock, engine):
    box, ticket = activated(client, vendor, clock)
    log = Log()
    for i in range(4):
        log.session(f"L{i}", clock.now + i)
    accepted(client, log.upload(box, 0, 2))
    accepted(client, log.upload(box, 2, 4))
    before = store(engine)
    forked = log.fork(2)  # from the older anchor at 2: events 3 and 4 again, but not the same ones
    forked.session("L2", clock.now + 2)
    forked.session("L3", clock.now + 3, host="elsewhere")
    forked.session("L4", clock.now + 7)
    _chain_broken(client, engine, forked.upload(box, 2), before, ticket)


def test_a_rewritten_held_event_short_of_the_last_anchor_gets_no_anchor(client, vendor, clock, engine):
    """Events Central holds, rewritten and uploaded again from an older anchor without
    reaching the next one, are never answered with an anchor: Central cannot check where
    the run ends, so it names the last anchor, and the rewritten log breaks there."""
    box, ticket = activated(client, vendor, clock)
    log = Log()
    for i in range(3):
        log.session(f"L{i}", clock.now - 5000 + i * 100, clock.now - 4000 + i * 100)  # events 1..6
    accepted(client, log.upload(box, 0))
    assert [seq for seq, _ in live_anchors(engine)] == [0, 6]
    before = store(engine)
    forged = log.fork(0)
    forged.session("L0", clock.now - 5000, clock.now - 4999, user="someone-else")  # events 1 and 2 rewritten
    r = post(client, forged.upload(box, 0))
    assert r.status_code == 409 and r.json()["error"]["code"] == "anchor_mismatch", r.text
    assert r.json()["error"]["anchored_seq"] == 6
    assert store(engine) == before and flags(engine) == []
    r = post(client, log.upload(box, 0, 2))  # the genuine events 1 and 2: the same answer, nothing to tell them apart
    assert r.status_code == 409 and r.json()["error"]["anchored_seq"] == 6
    assert accepted(client, log.upload(box, 0))["stored"] == 0  # a retry that reaches the anchor: counted once
    for i in (1, 2):
        forged.session(f"L{i}", clock.now - 5000 + i * 100, clock.now - 4000 + i * 100)
    forged.session("L3", clock.now - 100)
    _chain_broken(client, engine, forged.upload(box, 6), before, ticket)  # from where it was told: broken there


def test_an_anchored_sequence_with_another_hash_is_flagged(client, vendor, clock, engine):
    box, ticket = activated(client, vendor, clock)
    log = Log()
    for i in range(4):
        log.session(f"L{i}", clock.now + i)
    accepted(client, log.upload(box, 0, 2))
    accepted(client, log.upload(box, 2, 4))
    before = store(engine)
    other = Log()  # another history whose event 2 is not the anchored one
    other.session("Z0", clock.now)
    other.session("Z1", clock.now + 1)
    other.session("Z2", clock.now + 2)
    _chain_broken(client, engine, other.upload(box, 2), before, ticket)


def test_a_chain_break_withdraws_with_the_withdraw_policy(client, vendor, clock, engine):
    box, ticket = activated(client, vendor, clock, items=[item(vendor, 0, "withdraw")])
    log = Log()
    log.session("A", clock.now)
    log.session("B", clock.now + 1)
    log.session("C", clock.now + 2)
    accepted(client, log.upload(box, 0, 1))
    r = post(client, log.upload(box, 2))  # event 2 left out
    assert r.status_code == 409 and error_code(r) == "usage_chain_broken"
    assert "withdrawn" in r.json()["error"]["message"]
    assert ticket_row(engine, ticket).state == "blocked"
    ((_, action, _),) = flags(engine)
    assert action == "withdraw"


def test_an_upload_signed_by_another_key_for_the_serial_is_refused(client, vendor, clock, engine):
    box, _ = activated(client, vendor, clock)
    log = Log()
    log.session("A", clock.now)
    forger = FakeContainer(serial=box.serial)  # the same serial, its own key
    before = dump_state(engine)
    attempts = count_rows(engine, "attempts")
    r = post(client, log.upload(forger, 0))
    assert r.status_code == 400 and error_code(r) == "invalid_request"
    message = r.json()["error"]["message"]  # generic: the reason goes to the log
    assert message.startswith("The usage upload could not be verified") and "licentia activate" not in message
    assert dump_state(engine) == before
    assert count_rows(engine, "attempts") == attempts + 1  # counted like every forged protocol request


def test_an_upload_for_an_unknown_serial_is_refused(client, vendor, clock, engine):
    activated(client, vendor, clock)
    stranger = FakeContainer()
    log = Log()
    log.session("A", clock.now)
    before = dump_state(engine)
    r = post(client, log.upload(stranger, 0))
    assert r.status_code == 400 and error_code(r) == "invalid_request"
    assert dump_state(engine) == before


@pytest.mark.parametrize(
    "body",
    [b"{not json", b"[]", json.dumps({"payload": {}, "kid": "x", "sig": "y"}).encode()],
    ids=["not json", "not an envelope", "bad envelope"],
)
def test_junk_is_refused_and_leaves_the_store(client, vendor, clock, engine, body):
    activated(client, vendor, clock)
    before = dump_state(engine)
    r = client.post(UPLOADS, content=body)
    assert r.status_code == 400 and error_code(r) in ("malformed_input", "invalid_request")
    assert dump_state(engine) == before


def test_an_event_body_that_does_not_hash_to_the_head_is_refused(client, vendor, clock, engine):
    box, _ = activated(client, vendor, clock)
    log = Log()
    log.session("A", clock.now, clock.now + 5)
    doc = log.upload(box, 0)
    payload = {k: v for k, v in doc["payload"].items() if k not in ("type", "v")}
    payload["events"] = [payload["events"][0], log.fork(1).bodies[0]]  # a second copy of event 1 as event 2
    from licentia.core.documents import sign_document

    before = dump_state(engine)
    r = post(client, sign_document(anchoring.UPLOAD_TYPE, payload, box.sign_key))
    assert r.status_code == 400 and error_code(r) == "invalid_request"
    assert dump_state(engine) == before


# ---------------------------------------------------------------- times


FAR = 300_000_000_000  # the year 11476


def _refused(client: Any, engine: Any, doc: dict[str, Any], code: str) -> None:
    before = dump_state(engine)
    r = post(client, doc)
    assert r.status_code == 400 and error_code(r) == code, r.text
    assert dump_state(engine) == before  # nothing stored, marked, anchored or flagged


@pytest.mark.parametrize(
    "write",
    [
        pytest.param(lambda log, now: log.add("deny", None, FAR), id="a refusal after the year 9999"),
        pytest.param(lambda log, now: log.session("A", now - 10, FAR), id="a release after the year 9999"),
        pytest.param(
            lambda log, now: (log.session("A", FAR, FAR + 100), log.session("B", FAR + 10, FAR + 110)),
            id="a seat overrun after the year 9999",
        ),
    ],
)
def test_event_times_after_the_year_9999_are_refused(client, vendor, clock, engine, write):
    box, _ = activated(client, vendor, clock, items=[item(vendor, 1)])
    log = Log()
    write(log, clock.now)
    _refused(client, engine, log.upload(box, 0), "invalid_request")
    for path in ("license-usage", "product-usage", "billing"):
        r = client.post(f"/api/v1/reporting/{path}", json={"filter": {}}, headers=vendor.headers)
        assert r.status_code == 200 and r.json()["errorCode"] == 0


@pytest.mark.parametrize(
    "write",
    [
        pytest.param(lambda log, now: log.add("deny", None, now + 2 * 86400), id="a refusal two days ahead"),
        pytest.param(lambda log, now: log.session("A", now - 10, now + 200_000 * 86400), id="a release far ahead"),
        pytest.param(lambda log, now: log.session("A", now + 86400 + 10), id="an access a day ahead"),
        pytest.param(lambda log, now: log.add("renew", "A", now + 3 * 86400, access=now), id="a renewal ahead"),
    ],
)
def test_event_times_ahead_of_centrals_clock_are_refused(client, vendor, clock, engine, write):
    """An event timed after Central's clock (and the skew it allows a server's) is refused
    whole: nothing stored, no billing day marked (a release far ahead once marked one day
    for each day in between, in the upload's transaction)."""
    box, _ = activated(client, vendor, clock)
    log = Log()
    log.session("ok", clock.now - 50, clock.now - 40)
    write(log, clock.now)
    _refused(client, engine, log.upload(box, 0), "usage_rejected")
    r = post(client, log.upload(box, 0))
    assert "clock" in r.json()["error"]["message"] and str(log.seq) not in r.json()["error"]["message"]
    # within the skew: taken
    fine = Log()
    fine.session("B", clock.now - 10, clock.now + 3600)
    assert accepted(client, fine.upload(box, 0))["stored"] == 1


def test_the_billing_days_one_row_marks_are_bounded():
    """A session held for ages marks at most the days retention can keep and the day after today."""
    from licentia.central.services.firms import MAX_RETENTION_DAYS
    from licentia.central.services.rollup import DAY, StaleDays

    now = 1_800_000_000
    stale = StaleDays(now)
    ids = {"customer_id": "c", "item_id": "i", "firm_id": "f", "success": 1}
    stale.add_row(ids | {"access_time": 0, "release_time": 2**53 - 1})
    days = [r["day"] for r in stale.rows()]
    assert days[0] == now // DAY - MAX_RETENTION_DAYS - 1 and days[-1] == now // DAY + 1
    assert len(days) == MAX_RETENTION_DAYS + 3


# ---------------------------------------------------------------- seats


def test_more_seats_than_licensed_are_flagged_and_the_events_stored(client, vendor, clock, engine):
    box, ticket = activated(client, vendor, clock, items=[item(vendor, 2)])
    log = Log()
    t0 = clock.now
    log.session("A", t0 + 10, t0 + 100)
    log.session("B", t0 + 20, t0 + 100, seat="S-B")
    log.session("B2", t0 + 25, t0 + 90, seat="S-B")  # a station's second process: the same seat
    log.add("deny", None, t0 + 30)  # no seat
    ok = accepted(client, log.upload(box, 0))
    assert ok["flagged"] == [] and flags(engine) == []
    log.session("C", t0 + 200, t0 + 300)
    log.session("D", t0 + 210)  # still held at the upload's last event
    log.session("E", t0 + 250, t0 + 260)
    answer = accepted(client, log.upload(box, 7))
    assert answer["stored"] == 3 and anchor_of(vendor, answer).seq == log.seq  # stored: the chain is genuine
    (reason,) = answer["flagged"]
    assert "3 seats held at once at" in reason and "2 licensed" in reason
    assert answer["rebased"] == [1] and answer["withdrawn"] == []
    ((stored_reason, action, ticket_id),) = flags(engine)
    assert stored_reason.startswith("3 seats held at once at ") and stored_reason.endswith(", 2 licensed")
    assert (action, ticket_id) == ("rebase", ticket_row(engine, ticket).id)
    assert ticket_row(engine, ticket).state == "activated"  # rebase only records the flag
    assert [r.lease_id for r in usage_rows(engine)][-3:] == ["C", "D", "E"]


def test_more_seats_than_licensed_withdraw_with_the_withdraw_policy(client, vendor, clock, engine):
    box, ticket = activated(client, vendor, clock, items=[item(vendor, 2, "withdraw")])
    log = Log()
    for lease in ("A", "B", "C"):
        log.session(lease, clock.now)
    answer = accepted(client, log.upload(box, 0))
    assert answer["withdrawn"] == [1] and answer["rebased"] == [] and len(answer["flagged"]) == 1
    assert answer["stored"] == 3
    assert ticket_row(engine, ticket).state == "blocked"  # the server loses it at its next sync
    sync = client.post("/api/v1/sync", json=box.request("sync", firm_code=FIRM, now=clock.now))
    assert sync.status_code == 200 and len(box.apply(sync.json()).entries) == 0


def _stamped(log: Log, at: int) -> Log:
    """The same events, each one's ``time`` field set to ``at`` (access and release kept)."""
    out = Log(log.firm_code, log.license_id)
    for text in log.bodies:
        body = json.loads(text)
        out.bodies.append(canonical({**body, "time": at}).decode())
    return out


def test_the_seat_check_goes_by_access_and_release_not_the_events_time(client, vendor, clock, engine):
    box, ticket = activated(client, vendor, clock, items=[item(vendor, 1, "withdraw")])
    log = Log()
    t = clock.now - 7200
    for i, lease in enumerate("ABC"):  # three seats at once, an hour before the upload
        log.session(lease, t + i * 10, t + 3600 + i * 10)
    answer = accepted(client, _stamped(log, clock.now).upload(box, 0))  # each event says "now"
    assert answer["stored"] == 3 and len(answer["flagged"]) == 1 and "3 seats held at once" in answer["flagged"][0]
    assert answer["withdrawn"] == [1] and ticket_row(engine, ticket).state == "blocked"


def test_nolimit_sessions_hold_a_seat_of_a_license_with_a_quantity(client, vendor, clock, engine):
    """A server grants nolimit only on a license without a seat limit: on one with a quantity,
    its nolimit sessions count like any other."""
    box, ticket = activated(client, vendor, clock, items=[item(vendor, 1, "withdraw")])
    log = Log()
    t = clock.now - 7200
    for i, lease in enumerate("ABC"):
        log.session(lease, t + i * 10, t + 3600, mode="nolimit")
    answer = accepted(client, log.upload(box, 0))
    assert len(answer["flagged"]) == 1 and "3 seats held at once" in answer["flagged"][0]
    assert ticket_row(engine, ticket).state == "blocked"


def test_a_session_ended_later_does_not_flag_its_overrun_twice(client, vendor, clock, engine):
    """The check of an upload covers its sessions from their access: an overrun flagged when
    it was uploaded is not flagged again when a session of it ends later (a second flag
    would withdraw with the rebase policy)."""
    box, ticket = activated(client, vendor, clock, items=[item(vendor, 1, "rebase")])
    log = Log()
    t = clock.now - 7200
    log.session("C", t)  # held on
    log.session("A", t + 10, t + 20)
    assert len(accepted(client, log.upload(box, 0))["flagged"]) == 1
    log.add("release", "C", t + 100, access=t)
    answer = accepted(client, log.upload(box, 3))
    assert answer["withdrawn"] == [] and len(flags(engine)) == 1
    assert ticket_row(engine, ticket).state == "activated"


def test_a_quantity_of_zero_is_no_seat_limit(client, vendor, clock, engine):
    box, _ = activated(client, vendor, clock)
    log = Log()
    for i in range(5):
        log.session(f"L{i}", clock.now)
    assert accepted(client, log.upload(box, 0))["flagged"] == []


def test_events_of_a_firm_without_a_slot_in_the_container_are_skipped(client, vendor, clock, engine):
    box, _ = activated(client, vendor, clock)
    Vendor(client, 20003)  # a firm Central knows, with nothing in this container
    log = Log()
    log.session("A", clock.now)
    log.session("F", clock.now, firm_code=20003)
    log.session("G", clock.now, firm_code=4242)  # a firm Central does not know
    answer = accepted(client, log.upload(box, 0))
    assert answer["stored"] == 1 and anchor_of(vendor, answer).seq == 3
    assert [r.lease_id for r in usage_rows(engine)] == ["A"]


def test_events_of_a_license_the_server_does_not_hold_are_skipped(client, vendor, clock, engine):
    """A server's log naming another customer's license (or one no ticket has) writes no row
    and flags no ticket: only the licenses activated into the uploading server count."""
    one_seat = item(vendor, 1, "rebase")
    own, _ = activated(client, vendor, clock, items=[one_seat])  # license 1, this customer's server
    r = vendor.post("/customers", {"name": "Customer B", "email": "b@example.com"})
    other_customer = r.json()["number"]
    r = vendor.post("/tickets", {"customer": other_customer, "items": [one_seat], "quantity_of_licenses": 1})
    (theirs,) = [t["ticket"] for t in r.json()["tickets"]]
    box_b = FakeContainer()  # license 2, the other customer's own server
    box_b.apply(client.post(ACT, json=box_b.request("activate", ticket=theirs, now=clock.now)).json())
    assert ticket_row(engine, theirs).license_id == 2
    before = store(engine)
    log = Log(license_id=2)  # this server names the other customer's license
    log.session("X1", clock.now - 600, clock.now - 100)
    log.session("X2", clock.now - 590, clock.now - 90)  # two seats of a one-seat license at once
    log.session("Z", clock.now - 500, clock.now - 400, license_id=999)  # a license no ticket has
    answer = accepted(client, log.upload(own, 0))
    assert answer["stored"] == 0 and answer["flagged"] == [] and anchor_of(vendor, answer).seq == 6
    assert store(engine)["usage_events"] == before["usage_events"] == []
    assert store(engine)["usage_days"] == before["usage_days"]
    assert flags(engine) == [] and ticket_row(engine, theirs).state == "activated"
    # the other customer's own server: one short overlap with the rebase policy stays a flag
    mine = Log(license_id=2)
    mine.session("B1", clock.now - 300, clock.now - 200)
    mine.session("B2", clock.now - 290, clock.now - 190)
    answer = accepted(client, mine.upload(box_b, 0))
    assert answer["stored"] == 2 and answer["rebased"] == [2] and answer["withdrawn"] == []
    assert ticket_row(engine, theirs).state == "activated" and len(flags(engine)) == 1


# ---------------------------------------------------------------- the vendor's view


def test_vendor_container_show_lists_the_anchor_and_the_flag_and_clear_starts_a_new_chain(tmp_path, clock):
    with central_app(make_settings(tmp_path / "data"), clock) as app, ServerThread(app) as srv:
        http = httpx.Client(base_url=srv.url)
        vendor = Vendor(http, FIRM, options={"quantity": 1})
        engine = app.state.central.db.engine
        box, _ = activated(http, vendor, clock)
        log = Log()
        log.session("A", clock.now, clock.now + 10)
        log.session("B", clock.now + 5)  # two seats at once, one licensed
        clock.advance(60)
        accepted(http, log.upload(box, 0))
        shown = vendor.get(f"/containers/{box.serial}").json()
        assert shown["usage"] == {
            "anchored_seq": 3,
            "anchored_at": clock.now,
            "first_anchored_seq": 0,
            "events": 2,
        }
        assert shown["flagged"] is True and "2 seats held at once" in shown["flags"][0]["reason"]
        code, out, err = vendor_cli(["container", "show", box.serial], url=srv.url, key=vendor.key)
        assert code == 0, err
        assert json.loads(out)["usage"]["anchored_seq"] == 3
        assert "anchored at License Central through event 3" in err and "2 seats held at once" in out
        # the server's log is rewritten: flagged; the vendor reviews and clears; a new chain starts
        forked = log.fork(1)
        forked.session("X", clock.now + 5)
        forked.session("Y", clock.now + 6)
        forked.session("Z", clock.now + 7)
        r = post(http, forked.upload(box, 1))
        assert r.status_code == 409 and r.json()["error"]["code"] == "anchor_mismatch"  # anchors at 0 and 3 only
        r = post(http, forked.upload(box, 3))
        assert r.status_code == 409 and error_code(r) == "usage_chain_broken"
        code, out, err = vendor_cli(["container", "clear", box.serial], url=srv.url, key=vendor.key)
        assert code == 0, err
        assert "next upload starts a new chain" in err
        assert live_anchors(engine) == []
        shown = vendor.get(f"/containers/{box.serial}").json()
        assert shown["usage"]["anchored_seq"] is None and shown["usage"]["events"] == 2
        fresh = accepted(http, forked.upload(box, 0))  # trust on first contact again
        assert anchor_of(vendor, fresh).seq == 4 and anchor_of(vendor, fresh).hash == forked.hash_at(4)
        got = rows(engine, UsageEvent.seq, UsageEvent.lease_id)
        # the new chain's events at sequences the old one stored are not stored again
        assert got == [(1, "A"), (3, "B"), (2, "X"), (4, "Z")] and fresh["stored"] == 2
        assert [seq for seq, _ in live_anchors(engine)] == [0, 4]
        http.close()


def _shared_server(client: Any, clock: Any) -> tuple[Vendor, Vendor, FakeContainer]:
    """One license server holding a license of firm A (20001) and one of firm B (20002)."""
    a, b = Vendor(client, FIRM, options={"quantity": 0}), Vendor(client, 20002, options={"quantity": 0})
    box, _ = activated(client, a, clock)
    (ticket,) = b.tickets(1)
    box.apply(client.post(ACT, json=box.request("activate", ticket=ticket, now=clock.now)).json())
    return a, b, box


def test_one_firms_clear_keeps_the_anchors_another_firm_relies_on(client, clock, engine):
    a, b, box = _shared_server(client, clock)
    log = Log()
    for i in range(3):
        log.session(f"L{i}", clock.now - 9000 + i * 100, clock.now - 8000 + i * 100)  # events 1..6 of firm A
    doc = log.upload(box, 0)
    accepted(client, doc)
    anchors = live_anchors(engine)
    r = client.post(f"/api/v1/containers/{box.serial}/clear", json={}, headers=b.headers)  # nothing flagged for B
    assert r.status_code == 200 and r.json()["anchors_superseded"] == 0
    assert live_anchors(engine) == anchors
    assert accepted(client, doc)["stored"] == 0  # the same upload again: counted once
    before = store(engine)
    other = Log()  # another history of firm A at sequences Central holds
    for i in range(3):
        other.session(f"Y{i}", clock.now - 9000 + i * 100, clock.now - 8900 + i * 100, user="someone-else")
    r = post(client, other.upload(box, 0))
    assert r.status_code == 409 and error_code(r) == "usage_chain_broken"
    assert store(engine) == before
    # the break flags both firms' slots: the anchors are set aside once both have cleared
    r = client.post(f"/api/v1/containers/{box.serial}/clear", json={}, headers=b.headers)
    assert r.json()["anchors_superseded"] == 0 and live_anchors(engine) == anchors
    r = client.post(f"/api/v1/containers/{box.serial}/clear", json={}, headers=a.headers)
    assert r.json()["anchors_superseded"] == 2 and live_anchors(engine) == []


def test_after_a_clear_events_central_holds_are_not_stored_again(client, vendor, clock, engine):
    box, _ = activated(client, vendor, clock)
    log = Log()
    for i in range(3):
        log.session(f"L{i}", clock.now - 9000 + i * 100, clock.now - 8000 + i * 100)
    doc = log.upload(box, 0)
    accepted(client, doc)
    events = store(engine)["usage_events"]
    r = client.post(f"/api/v1/containers/{box.serial}/clear", json={}, headers=vendor.headers)
    assert r.status_code == 200 and live_anchors(engine) == []
    days = store(engine)["usage_days"]
    assert accepted(client, doc)["stored"] == 0  # a new chain, the same events: not counted twice
    assert store(engine)["usage_events"] == events and store(engine)["usage_days"] == days


# ---------------------------------------------------------------- the catalog default


def test_items_of_more_than_one_seat_sync_monthly_by_default(client):
    vendor = Vendor(client, 20009, options={"quantity": 5})
    assert vendor.get(f"/items/{vendor.item}").json()["options"] == {"quantity": 5, "sync_interval_days": 30}
    r = vendor.post("/items", {"name": "One", "product_code": 2, "feature_map": 1, "options": {"quantity": 1}})
    assert r.json()["options"] == {"quantity": 1}
    r = vendor.post(
        "/items",
        {"name": "Given", "product_code": 3, "feature_map": 1, "options": {"quantity": 3, "sync_interval_days": 0}},
    )
    assert r.json()["options"] == {"quantity": 3, "sync_interval_days": 0}


# ---------------------------------------------------------------- PostgreSQL


@pytest.mark.postgres
def test_the_main_path_on_postgresql(tmp_path, pg_url, clock):
    with central_app(make_settings(tmp_path / "data", pg_url), clock) as app, TestClient(app) as client:
        engine = app.state.central.db.engine
        vendor = Vendor(client, FIRM, options={"quantity": 0})
        first_upload_is_stored_and_anchored(client, vendor, clock, engine)
        box, ticket = activated(client, vendor, clock)
        log = Log(license_id=ticket_row(engine, ticket).license_id)  # the server's own license
        log.session("P", clock.now, clock.now + 3)
        log.session("Q", clock.now + 1)
        accepted(client, log.upload(box, 0, 2))
        answer = accepted(client, log.upload(box, 2))
        assert anchor_of(vendor, answer).seq == 3
        with engine.connect() as conn:
            held = conn.execute(
                select(UsageEvent.lease_id, UsageEvent.release_time).where(UsageEvent.lease_id.in_(["P", "Q"]))
            ).all()
        assert sorted(held) == [("P", clock.now + 3), ("Q", None)]
        check_rollup(engine)
        forked = log.fork(2)
        forked.session("R", clock.now + 9)
        forked.session("S", clock.now + 10)
        before = store(engine)
        r = post(client, forked.upload(box, 3))
        assert r.status_code == 409 and error_code(r) == "usage_chain_broken"
        assert store(engine) == before
        assert any(f.ticket_id == ticket_row(engine, ticket).id for f in flags(engine))


# ---------------------------------------------------------------- concurrent uploads


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_concurrent_uploads_of_one_container_store_each_event_once(tmp_path, clock, backend, request):
    from concurrent.futures import ThreadPoolExecutor

    url = request.getfixturevalue("pg_url") if backend == "postgresql" else None
    with central_app(make_settings(tmp_path / "data", url), clock) as app, ServerThread(app) as srv:
        engine = app.state.central.db.engine
        with httpx.Client(base_url=srv.url) as http:
            vendor = Vendor(http, FIRM, options={"quantity": 0})
            box, _ = activated(http, vendor, clock)
        log = Log()
        for i in range(12):
            log.add("deny", None, clock.now + i)
        docs = [log.upload(box, 0, end) for end in range(1, 13)]  # every one from the start, to its own end

        def send(end: int) -> list[httpx.Response]:
            """As the server does: an upload that ends short of Central's last anchor is told
            where Central holds the log through, and goes on from there when it has more."""
            doc = docs[end - 1]
            for _ in range(12):
                r = httpx.post(srv.url + UPLOADS, content=json.dumps(doc), timeout=30)
                if r.status_code != 409 or r.json()["error"]["code"] != "anchor_mismatch":
                    break
                held = r.json()["error"]["anchored_seq"]
                if held >= end:
                    return []
                doc = log.upload(box, held, end)
            return [r]

        with ThreadPoolExecutor(8) as pool:
            answers = [r for rs in pool.map(send, range(1, 13)) for r in rs]
        assert all(r.status_code == 200 for r in answers), [r.text for r in answers if r.status_code != 200]
        assert sum(r.json()["stored"] for r in answers) == 12
        assert sorted(r.seq for r in usage_rows(engine)) == list(range(1, 13))  # each event once
        anchors = live_anchors(engine)
        assert anchors[-1] == (12, log.hash_at(12))
        assert all(h == log.hash_at(seq) for seq, h in anchors)  # every anchor on the one chain
        check_rollup(engine)


@pytest.mark.postgres
def test_many_uploads_of_varied_size_on_postgresql(tmp_path, pg_url, clock):
    """Uploads one after another on one connection pool, each ending a different number of
    sessions opened before (the statements differ in the length of their lists): every one
    is answered and stored, on one connection (psycopg prepares a statement from its fifth
    run)."""
    settings = make_settings(tmp_path / "data", pg_url, pool_size=1, protocol_threads=1)
    with central_app(settings, clock) as app, TestClient(app) as client:
        engine = app.state.central.db.engine
        vendor = Vendor(client, FIRM, options={"quantity": 0})
        box, _ = activated(client, vendor, clock)
        log = Log()
        start, t, opened = 0, clock.now, 0
        for n in range(1, 41):
            leases = [f"L{n}-{i}" for i in range(n % 13 + 1)]
            for lease in leases:
                log.add("access", lease, t)
            for lease in leases[: n % 7]:  # some end in this upload, the rest in the next
                log.add("release", lease, t + 5, access=t)
            if n > 1:
                for lease in [f"L{n - 1}-{i}" for i in range((n - 1) % 13 + 1)][(n - 1) % 7 :]:
                    log.add("release", lease, t + 6, access=t - 10)
            log.add("deny", None, t + 7)
            opened += len(leases)
            answer = accepted(client, log.upload(box, start))
            assert anchor_of(vendor, answer).seq == log.seq
            start, t = log.seq, t + 10
        assert len(usage_rows(engine)) == opened + 40  # every session once, and every refusal


@pytest.mark.postgres
def test_large_first_uploads_of_many_servers_on_postgresql(tmp_path, pg_url, clock):
    """Large first uploads of several license servers on one connection (hundreds of rows
    in one multi-row insert each): every one is answered and stored."""
    settings = make_settings(tmp_path / "data", pg_url, pool_size=1, protocol_threads=1)
    with central_app(settings, clock) as app, TestClient(app) as client:
        engine = app.state.central.db.engine
        vendor = Vendor(client, FIRM, options={"quantity": 1000})
        expected = 0
        for server in range(8):
            box, ticket = activated(client, vendor, clock)
            log = Log(license_id=ticket_row(engine, ticket).license_id)
            t = clock.now
            for i in range(300):
                log.session(f"S{server}-{i}", t + i, t + i + 60, seat=f"seat-{i % 50}")
            for i in range(20):
                log.add("deny", None, t + 400 + i)
            answer = accepted(client, log.upload(box, 0))
            assert answer["stored"] == 320 and anchor_of(vendor, answer).seq == log.seq
            expected += 320
        assert len(usage_rows(engine)) == expected


@pytest.mark.postgres
def test_concurrent_large_uploads_of_many_servers_on_postgresql(tmp_path, pg_url, clock):
    """Eight license servers upload at once, each many users' sessions (an upsert of the
    rollup per user and day): every upload is answered and stored, the rollup exact."""
    from concurrent.futures import ThreadPoolExecutor

    with central_app(make_settings(tmp_path / "data", pg_url), clock) as app, ServerThread(app) as srv:
        engine = app.state.central.db.engine
        with httpx.Client(base_url=srv.url) as http:
            vendor = Vendor(http, FIRM, options={"quantity": 0})
            chunks = []  # each server's log in chunks: sessions opened in one, ended in a later one
            for server in range(8):
                box, ticket = activated(http, vendor, clock)
                log = Log(license_id=ticket_row(engine, ticket).license_id)
                t = clock.now - 20 * 86400
                for i in range(400):  # over 20 days: hundreds of rollup keys an upload
                    at, user = t + i * 4000, f"user-{i % 60}"
                    log.add("access", f"S{server}-{i}", at, user=user, featureCode=i % 4)
                    if i >= 20:
                        j = i - 20
                        log.add("release", f"S{server}-{j}", at, access=t + j * 4000, user=f"user-{j % 60}")
                    if i % 7 == 0:
                        log.add("deny", None, t + i, user=f"user-{i % 90}")
                ends = list(range(0, log.seq, 400)) + [log.seq]
                chunks.append([log.upload(box, a, b) for a, b in itertools.pairwise(ends)])

        def send(docs: list[dict[str, Any]]) -> list[httpx.Response]:
            with httpx.Client(base_url=srv.url, timeout=60) as c:  # one kept-alive connection each
                return [c.post(UPLOADS, content=json.dumps(doc)) for doc in docs]

        with ThreadPoolExecutor(8) as pool:
            answers = [r for rs in pool.map(send, chunks) for r in rs]
        assert {r.status_code for r in answers} == {200}, [r.text[:300] for r in answers if r.status_code != 200]
        assert sum(r.json()["stored"] for r in answers) == len(usage_rows(engine)) > 8 * 400
        check_rollup(engine)
