"""The reporting API over the usage store: the source's three example requests as
written, every filter, `to` inclusive of its second, two-firm isolation, the cursor,
the billing view on a hand-made day, CSV cells that never become formulas, and
`licentia vendor usage` against a real Central on 127.0.0.1.

The usage rows are written straight into usage_events (the store that uploads fill) and
the product view's rollup rebuilt for their day, as after a bulk load; firms, customers,
items and tickets are made through the vendor API."""

from __future__ import annotations

import csv
import datetime as dt
import io
import itertools
import json
import random
from dataclasses import dataclass
from typing import Any

import pytest
from central_helpers import ADMIN_KEY, ServerThread, central_app, make_settings
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.orm import Session

from licentia.central.models import (
    Item,
    Ticket,
    UsageBillingDay,
    UsageBillingStale,
    UsageEvent,
    UsageRollupState,
)
from licentia.central.services.billing import BillingRollup
from licentia.central.services.reporting import BILLING_FINAL, DaySweep, iso
from licentia.central.services.retention import RetentionService
from licentia.central.services.rollup import I_STALE, StaleDays, rebuild_days
from licentia.core.anchoring import MAX_TIME
from tests.cli.helpers import vendor as vendor_cli

API = "/api/v1"
DAY_S = 86400
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
FIRM, OTHER = 6000145, 6000177
LICENSE, PRODUCT, BILLING = (
    API + "/reporting/license-usage",
    API + "/reporting/product-usage",
    API + "/reporting/billing",
)


def ts(text: str) -> int:
    return int(dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC).timestamp())


# ---------------------------------------------------------------- the source's requests, as written

SOURCE_FILTER = '"filter": {\n    "from": "2023-08-01T00:00:00",\n    "to": "2023-08-31T23:59:59"\n  }'
SOURCE_LICENSE_REQUEST = '{\n  "session": {},\n  ' + SOURCE_FILTER + "\n}"
SOURCE_CUSTOMER_REQUEST = """{
  "session": {},
  "filter": {
    "customerIdentification": "20230306",
    "from": "2023-08-01T00:00:00",
    "to": "2023-08-31T23:59:59"
  }
}"""
SOURCE_ITEM_REQUEST = """{
  "session": {},
  "filter": {
    "itemIdentification": "B-00001-145",
    "from": "2023-08-01T00:00:00",
    "to": "2023-08-31T23:59:59"
  }
}"""


@dataclass
class Firm:
    code: int
    headers: dict[str, str]
    tickets: dict[str, dict[str, Any]]  # ticket id -> the ticket's view


class Store:
    """Firms made through the vendor API, and usage rows written into the store."""

    def __init__(self, client: TestClient, engine: Any, clock: Any):
        self.client, self.engine, self.clock = client, engine, clock
        self.firms: dict[int, Firm] = {}

    def firm(self, code: int) -> Firm:
        r = self.client.post(API + "/firms", json={"code": code, "name": f"Firm {code}"}, headers=ADMIN)
        assert r.status_code == 201, r.text
        key = self.client.post(API + "/apikeys", json={"firm_code": code}, headers=ADMIN).json()["key"]
        self.firms[code] = Firm(code, {"Authorization": f"Bearer {key}"}, {})
        return self.firms[code]

    def item(self, firm: Firm, item_id: str, name: str, product: int, quantity: int = 1) -> None:
        body = {"item_id": item_id, "name": name, "product_code": product, "options": {"quantity": quantity}}
        r = self.client.post(API + "/items", json=body, headers=firm.headers)
        assert r.status_code == 201, r.text

    def customer(self, firm: Firm, number: str) -> None:
        r = self.client.post(API + "/customers", json={"number": number, "name": f"C {number}"}, headers=firm.headers)
        assert r.status_code == 201, r.text

    def ticket(self, firm: Firm, customer: str, item: str, modules: tuple[str, ...] = ()) -> dict[str, Any]:
        order = {"customer": customer, "items": [item, *modules]}
        r = self.client.post(API + "/tickets", json=order, headers=firm.headers)
        assert r.status_code == 201, r.text
        ticket = r.json()["tickets"][0]["ticket"]
        view = self.client.get(f"{API}/tickets/{ticket}", headers=firm.headers).json()
        firm.tickets[ticket] = view
        return dict(view)

    def use(
        self,
        ticket: dict[str, Any] | None,
        access: str,
        release: str | None = None,
        *,
        firm: int = FIRM,
        user: str = "user-1",
        product: int | None = None,
        feature: int = 0,
        fail: int = 0,
        seat: str | None = None,
        units: int = 0,
        mode: str = "user",
        license_id: int | None = None,
    ) -> None:
        """One session (or, with ``fail``, one refusal) of ``ticket``'s license."""
        with self.engine.begin() as conn:
            firm_id = conn.execute(select(Ticket.firm_id).limit(1)).scalar()  # replaced below when known
            t_id = c_id = i_id = None
            if ticket is not None:
                row = conn.execute(
                    select(Ticket.id, Ticket.firm_id, Ticket.customer_id, Ticket.item_id, Item.product_code)
                    .join(Item, Item.id == Ticket.item_id)
                    .where(Ticket.ticket == ticket["ticket"])
                ).one()
                t_id, firm_id, c_id, i_id, item_product = row
                product = item_product if product is None else product
            else:
                from licentia.central.models import Firm as FirmRow

                firm_id = conn.execute(select(FirmRow.id).where(FirmRow.code == firm)).scalar_one()
            a = ts(access)
            r = ts(release) if release else None
            row = dict(
                    firm_id=firm_id,
                    source="server",
                    access_time=a,
                    release_time=None if fail else r,
                    seconds=(r - a) if r and not fail else 0,
                    success=0 if fail else 1,
                    fail=fail,
                    invalid=0,
                    firm_code=ticket["firm_code"] if ticket else firm,
                    product_code=product or 0,
                    feature_code=feature,
                    feature_map=0,
                    license_id=ticket["license_id"] if ticket else (license_id or 0),
                    ticket_id=t_id,
                    customer_id=c_id,
                    item_id=i_id,
                    user_ident=user,
                    seat=seat,
                    lease_id=f"lease-{next(LEASES)}",
                    units=units,
                    mode=mode,
            )  # fmt: skip
            conn.execute(insert(UsageEvent).values(**row))
            # the product view's rollup rebuilt for the event's day, the billing days marked
            rebuild_days(Session(bind=conn), firm_id, a // DAY_S, a // DAY_S + 1)
            stale = StaleDays(now=self.clock())
            stale.add_row(row)
            if stale.rows():
                conn.execute(I_STALE[conn.dialect.name], stale.rows())


LEASES = itertools.count(1)


def post(client: Any, path: str, body: Any, headers: dict[str, str], **kw: Any) -> Any:
    data = body if isinstance(body, str) else json.dumps(body)
    return client.post(path, content=data, headers={**headers, "Content-Type": "application/json"}, **kw)


def ok(r: Any) -> dict[str, Any]:
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["errorCode"] == 0
    return dict(body)


def refused(r: Any, status: int, error_code: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    body = r.json()
    assert body["errorCode"] == error_code and isinstance(body["message"], str) and body["message"], body
    assert body["error"]["message"] == body["message"]
    return dict(body)


@pytest.fixture
def store(client: TestClient, engine: Any, clock: Any) -> Store:
    return Store(client, engine, clock)


@pytest.fixture
def source(store: Store) -> Firm:
    """Firm 6000145 with the source's customers and items, and the uses behind its three
    answers (August 2023)."""
    f = store.firm(FIRM)
    for number in ("20230301", "20230306", "20230315"):
        store.customer(f, number)
    store.item(f, "F-00001-145", "Feature #1", 201001)
    store.item(f, "F-00002-145", "Feature #2", 201002)
    store.item(f, "F-00003-145", "Feature #3", 201003)
    store.item(f, "B-00001-145", "Bundle #1", 201100)
    one = store.ticket(f, "20230301", "F-00001-145")
    store.use(one, "2023-08-08T09:18:28", "2023-08-08T09:24:27", user="474ce7a1-903f421d")
    # a refusal: no license could be found for product 10000, feature 1
    store.use(None, "2023-08-14T16:46:14", product=10000, feature=1, fail=1, user="7ae99d49-4a41-4934")
    two, three = store.ticket(f, "20230306", "F-00002-145"), store.ticket(f, "20230306", "F-00003-145")
    store.use(two, "2023-08-20T08:00:00", "2023-08-20T14:46:17", user="xyzKLF4711eDxSdfs6y")  # 24377 s
    store.use(three, "2023-08-21T08:00:00", "2023-08-21T10:45:39", user="xyzKLF4711eDxSdfs6y")  # 9939 s
    b1, b2 = store.ticket(f, "20230315", "B-00001-145"), store.ticket(f, "20230315", "B-00001-145")
    store.use(b1, "2023-08-22T08:00:00", "2023-08-22T08:53:57", user="217521f2-385f-4c52")  # 3237 s
    store.use(b2, "2023-08-23T08:00:00", "2023-08-23T08:22:04", user="217521f2-385f-4c52")  # 1324 s
    # outside August, on both sides
    store.use(one, "2023-07-31T23:59:59", "2023-08-01T00:10:00", user="before")
    store.use(one, "2023-09-01T00:00:00", "2023-09-01T00:10:00", user="after")
    return f


def test_the_license_view_answers_the_sources_first_request(client, source):
    body = ok(post(client, LICENSE, SOURCE_LICENSE_REQUEST, source.headers))
    assert set(body) == {"errorCode", "licenseUsageList", "cursor"} and body["cursor"] is None
    entries = body["licenseUsageList"]
    (one,) = [t for t in source.tickets.values() if t["customer"] == "20230301"]
    assert entries[:2] == [
        {
            "accessTime": "2023-08-08T09:18:28",
            "fail": 0,
            "featureCode": 0,
            "featureMap": 0,
            "firmCode": 6000145,
            "invalid": 0,
            "productCode": 201001,
            "releaseTime": "2023-08-08T09:24:27",  # August (the source's March is a misprint)
            "seconds": 359,
            "success": 1,
            "ticketLicenseId": one["license_id"],
            "userIdentification": "474ce7a1-903f421d",
        },
        {  # refused: no releaseTime
            "accessTime": "2023-08-14T16:46:14",
            "fail": 1,
            "featureCode": 1,
            "featureMap": 0,
            "firmCode": 6000145,
            "invalid": 0,
            "productCode": 10000,
            "seconds": 0,
            "success": 0,
            "ticketLicenseId": 0,
            "userIdentification": "7ae99d49-4a41-4934",
        },
    ]
    # JSON types exactly: whole numbers are ints (not bools, not floats), times and users text
    for entry in entries:
        for name, value in entry.items():
            want = str if name in ("accessTime", "releaseTime", "userIdentification") else int
            assert type(value) is want, (name, value)
    # the four other August sessions, in access order; July's and September's left out
    assert [e["accessTime"][:10] for e in entries[2:]] == ["2023-08-20", "2023-08-21", "2023-08-22", "2023-08-23"]
    assert len(entries) == 6


def test_the_product_view_answers_the_sources_customer_request(client, source):
    body = ok(post(client, PRODUCT, SOURCE_CUSTOMER_REQUEST, source.headers))
    assert set(body) == {"errorCode", "productUsageList", "cursor"}
    assert body["productUsageList"] == [
        {"customer": "20230306", "item": "F-00002-145", "name": "Feature #2", "seconds": 24377, "success": 1,
         "user": "xyzKLF4711eDxSdfs6y"},
        {"customer": "20230306", "item": "F-00003-145", "name": "Feature #3", "seconds": 9939, "success": 1,
         "user": "xyzKLF4711eDxSdfs6y"},
    ]  # fmt: skip


def test_the_product_view_answers_the_sources_item_request_one_row_per_license(client, source):
    body = ok(post(client, PRODUCT, SOURCE_ITEM_REQUEST, source.headers))
    rows = body["productUsageList"]
    # two licenses of one customer, item and user: two rows
    assert sorted(rows, key=lambda r: -r["seconds"]) == [
        {"customer": "20230315", "item": "B-00001-145", "name": "Bundle #1", "seconds": 3237, "success": 1,
         "user": "217521f2-385f-4c52"},
        {"customer": "20230315", "item": "B-00001-145", "name": "Bundle #1", "seconds": 1324, "success": 1,
         "user": "217521f2-385f-4c52"},
    ]  # fmt: skip


def test_the_product_view_sums_seconds_and_counts_successes(client, store, source):
    (two,) = [t for t in source.tickets.values() if t["item"] == "F-00002-145"]
    store.use(two, "2023-08-25T08:00:00", "2023-08-25T08:00:23", user="xyzKLF4711eDxSdfs6y")
    store.use(two, "2023-08-25T09:00:00", fail=1, user="xyzKLF4711eDxSdfs6y")  # refused: no success, no seconds
    rows = ok(post(client, PRODUCT, SOURCE_CUSTOMER_REQUEST, source.headers))["productUsageList"]
    assert rows[0]["item"] == "F-00002-145" and (rows[0]["seconds"], rows[0]["success"]) == (24400, 2)


def test_the_product_view_of_any_period_sums_the_events_in_it(client, store, source):
    """Whole UTC days come from the rollup, a period's partial first and last days from the
    events: whatever the period, the answer is the events' own sums."""
    rng = random.Random(13)
    store.customer(source, "20231002")
    tickets = [store.ticket(source, "20231002", item) for item in ("F-00002-145", "F-00003-145")]
    tickets += [store.ticket(source, "20231002", "B-00001-145") for _ in range(2)]  # two licenses of one item
    base = ts("2023-10-02T00:00:00")
    made: list[tuple[int, dict[str, Any], str, int, int]] = []  # access, ticket, user, seconds, success
    for _ in range(40):
        t, user = rng.choice(tickets), f"u{rng.randrange(3)}"
        access = base + rng.randrange(5 * DAY_S)
        if rng.random() < 0.2:
            store.use(t, _iso(access), user=user, fail=1)
            made.append((access, t, user, 0, 0))
        else:
            seconds = rng.randrange(1, 30000)  # some sessions end on a later day
            store.use(t, _iso(access), _iso(access + seconds), user=user)
            made.append((access, t, user, seconds, 1))
    periods = [(None, None), (base, base + 5 * DAY_S - 1), (base + DAY_S, base + 3 * DAY_S - 1)]
    periods += [(None, base + 2 * DAY_S + 4000), (base + 7000, None), (base + DAY_S + 100, base + DAY_S + 50000)]
    periods += [(base + 3600 * rng.randrange(120), base + 3600 * rng.randrange(120, 140)) for _ in range(6)]
    for lo, hi in periods:
        expected: dict[tuple[str, str, int, str], list[int]] = {}
        for access, t, user, seconds, success in made:
            if (lo is None or access >= lo) and (hi is None or access <= hi):
                sums = expected.setdefault((t["customer"], t["item"], t["license_id"], user), [0, 0])
                sums[0] += seconds
                sums[1] += success
        flt = {k: _iso(v) for k, v in (("from", lo), ("to", hi)) if v is not None}
        flt["customerIdentification"] = "20231002"
        rows = ok(post(client, PRODUCT, {"filter": flt, "limit": 10000}, source.headers))["productUsageList"]
        want = sorted((c, i, s[0], s[1], u) for (c, i, _, u), s in expected.items())
        assert sorted((r["customer"], r["item"], r["seconds"], r["success"], r["user"]) for r in rows) == want, flt
        assert want or (lo, hi) != (None, None)


def test_retention_takes_the_rollups_old_days_with_the_events(app, client, store, source, clock):
    """Purging a firm's old events takes their days out of the product view's rollup, and
    the day the cutoff falls in keeps exactly the events the purge kept."""
    r = client.patch(f"{API}/firms/{FIRM}", json={"usage_retention_days": 30}, headers=source.headers)
    assert r.status_code == 200, r.text
    (two,) = [t for t in source.tickets.values() if (t["item"], t["customer"]) == ("F-00002-145", "20230306")]
    cutoff = clock() - 30 * DAY_S
    for offset in (-DAY_S - 5, -10, 10, DAY_S + 5):  # around the cutoff, two on its day
        store.use(two, _iso(cutoff + offset), _iso(cutoff + offset + 60), user=f"at{offset:+d}")
    ctx = app.state.central
    with ctx.db.session() as s:
        (purged,) = [p for p in RetentionService(ctx, s).purge() if p.firm_code == FIRM]
    assert purged.deleted == 2 + 8  # two around the cutoff and the source's eight of 2023
    rows = ok(post(client, PRODUCT, {"filter": {}}, source.headers))["productUsageList"]
    assert sorted((r["user"], r["seconds"], r["success"]) for r in rows) == [
        ("at+10", 60, 1),
        (f"at+{DAY_S + 5}", 60, 1),
    ]


def test_the_item_filter_takes_the_tickets_that_hold_the_item_as_a_module(client, store, source):
    """A ticket of a base item with a module: its use is the module item's use too. Each
    view's item filter finds it (grouped under the ticket's base item), the rollups too."""
    store.customer(source, "20231004")
    r = client.post(API + "/items", json={"item_id": "M-00001-145", "name": "Module #1", "module_of": "F-00001-145"},
                    headers=source.headers)  # fmt: skip
    assert r.status_code == 201, r.text
    t = store.ticket(source, "20231004", "F-00001-145", modules=("M-00001-145",))
    store.use(t, "2023-08-24T08:00:00", "2023-08-24T09:00:00", user="module-user")
    for path, name, key in ((LICENSE, "licenseUsageList", "userIdentification"), (PRODUCT, "productUsageList", "user")):
        rows = ok(post(client, path, {"filter": {"itemIdentification": "M-00001-145"}}, source.headers))[name]
        assert "module-user" in [r[key] for r in rows]
        rows = ok(post(client, path, {"filter": {"itemIdentification": "F-00002-145"}}, source.headers))[name]
        assert "module-user" not in [r[key] for r in rows]
    body = {"filter": {"itemIdentification": "M-00001-145"}}
    rows = ok(post(client, PRODUCT, body, source.headers))["productUsageList"]
    assert ("20231004", "F-00001-145", 3600) in [(r["customer"], r["item"], r["seconds"]) for r in rows]
    days = ok(post(client, BILLING, body, source.headers))["billingList"]
    assert ("20231004", "F-00001-145", "2023-08-24") in [(d["customer"], d["item"], d["day"]) for d in days]


def _iso(t: int) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")


# ---------------------------------------------------------------- the filter


def license_users(client: Any, firm: Firm, flt: dict[str, Any]) -> list[str]:
    body = ok(post(client, LICENSE, {"session": {}, "filter": flt}, firm.headers))
    return [e["userIdentification"] for e in body["licenseUsageList"]]


def test_each_filter_alone_and_combined(client, source):
    tickets = source.tickets
    (b_first,) = [t["ticket"] for t in tickets.values() if t["item"] == "B-00001-145" and t["license_id"] == min(
        x["license_id"] for x in tickets.values() if x["item"] == "B-00001-145")]  # fmt: skip
    every = ["before", "474ce7a1-903f421d", "7ae99d49-4a41-4934", "xyzKLF4711eDxSdfs6y", "xyzKLF4711eDxSdfs6y",
             "217521f2-385f-4c52", "217521f2-385f-4c52", "after"]  # fmt: skip
    assert license_users(client, source, {}) == every
    assert license_users(client, source, {"from": "2023-08-22T00:00:00"}) == [*every[5:]]
    assert license_users(client, source, {"to": "2023-08-08T09:18:28"}) == every[:2]
    assert license_users(client, source, {"customerIdentification": "20230301"}) == ["before", every[1], "after"]
    assert license_users(client, source, {"itemIdentification": "f-00003-145 "}) == [
        every[4]
    ]  # as the catalog reads it
    assert license_users(client, source, {"firmCode": FIRM}) == every
    assert license_users(client, source, {"productCode": 10000}) == [every[2]]
    assert license_users(client, source, {"featureCode": 1}) == [every[2]]
    assert license_users(client, source, {"ticketId": b_first}) == [every[5]]
    assert license_users(client, source, {"productCode": 424242}) == []
    combined = {
        "customerIdentification": "20230301",
        "from": "2023-08-01T00:00:00",
        "to": "2023-08-31T23:59:59",
        "productCode": 201001,
        "featureCode": 0,
        "firmCode": FIRM,
        "itemIdentification": "F-00001-145",
    }
    assert license_users(client, source, combined) == [every[1]]
    assert license_users(client, source, {**combined, "featureCode": 1}) == []
    # a time with an offset is converted; without one it is UTC
    assert license_users(client, source, {"to": "2023-08-08T11:18:28+02:00"}) == every[:2]
    assert license_users(client, source, {"to": "2023-08-08T11:18:27+02:00"}) == every[:1]


def test_to_includes_its_whole_second_and_from_its_own(client, store, source):
    (one,) = [t for t in source.tickets.values() if t["customer"] == "20230301"]
    store.use(one, "2023-08-31T23:59:59", "2023-09-01T00:00:30", user="last-second")
    store.use(one, "2023-08-01T00:00:00", "2023-08-01T00:00:01", user="first-second")
    users = license_users(client, source, {"from": "2023-08-01T00:00:00", "to": "2023-08-31T23:59:59"})
    assert users[0] == "first-second" and users[-1] == "last-second" and "after" not in users
    users = license_users(client, source, {"to": "2023-08-31T23:59:58.999"})
    assert "last-second" not in users
    users = license_users(client, source, {"to": "2023-08-31T23:59:59.999"})
    assert users[-1] == "last-second"


@pytest.mark.parametrize(
    ("body", "status", "error_code", "words"),
    [
        ({"session": {}, "filter": {"customer": "20230306"}}, 422, 1, "customer"),
        ({"session": {}, "filter": {"From": "2023-08-01T00:00:00"}}, 422, 1, "From"),
        ({"session": {}, "filter": {}, "extra": 1}, 422, 1, "extra"),
        ({"session": {}, "filter": {"from": "2023-08-01"}}, 400, 1, "date and time"),
        ({"session": {}, "filter": {"from": "yesterday"}}, 400, 1, "date and time"),
        ({"session": {}, "filter": {"from": "2023-09-01T00:00:00", "to": "2023-08-01T00:00:00"}}, 400, 1, "after"),
        ({"session": {}, "filter": {"productCode": "201001"}}, 422, 1, "productCode"),
        ({"session": {}, "filter": {"ticketId": "not-a-ticket"}}, 400, 1, "ticket"),
        ({"session": {}, "filter": {}, "cursor": "garbage"}, 400, 1, "cursor"),
        ({"session": {}, "filter": {}, "limit": 0}, 422, 1, "limit"),
        ({"session": {}, "filter": {}, "limit": 10001}, 422, 1, "limit"),
        ({"session": {"user": "x", "token": "y"}, "filter": {}}, 400, 5, "session"),
        ({"session": {}, "filter": {"customerIdentification": "NOBODY"}}, 404, 4, "NOBODY"),
        ({"session": {}, "filter": {"itemIdentification": "F-09999-145"}}, 404, 4, "F-09999-145"),
    ],
)
def test_a_bad_request_is_refused_with_an_error_code_and_changes_nothing(client, engine, source, body, status,
                                                                         error_code, words):  # fmt: skip
    from central_helpers import dump_state

    before = dump_state(engine)
    answer = refused(post(client, LICENSE, body, source.headers), status, error_code)
    assert words in answer["message"], answer
    assert dump_state(engine) == before


@pytest.mark.parametrize("path", [LICENSE, PRODUCT, BILLING])
def test_a_body_refused_before_it_is_read_keeps_the_reporting_shape(client, source, path):
    """Not JSON, or JSON Central does not accept (a duplicate key): refused before any
    route reads it, still with an errorCode."""
    for body in (b"{not json", b'{"session": {}, "session": {}}'):
        r = client.post(path, content=body, headers={**source.headers, "Content-Type": "application/json"})
        answer = refused(r, 400, 1)
        assert answer["error"]["code"] == "malformed_input", answer


def test_the_api_key_is_needed_and_checked(client, source):
    refused(post(client, LICENSE, SOURCE_LICENSE_REQUEST, {}), 401, 2)
    refused(post(client, LICENSE, SOURCE_LICENSE_REQUEST, {"Authorization": "Bearer not-a-key"}), 401, 2)
    # the session object absent or null is the same as empty
    assert ok(post(client, LICENSE, {"filter": {}}, source.headers))["licenseUsageList"]
    assert ok(post(client, LICENSE, {"session": None}, source.headers))["licenseUsageList"]


# ---------------------------------------------------------------- two firms


def _two_firms(store: Store, source: Firm) -> Firm:
    other = store.firm(OTHER)
    store.customer(other, "77-OTHER-CUSTOMER")
    store.item(other, "Z-00001-177", "Other Firm Item", 7001)
    t = store.ticket(other, "77-OTHER-CUSTOMER", "Z-00001-177")
    store.use(t, "2023-08-10T10:00:00", "2023-08-10T11:00:00", user="other-firm-user")
    return other


def check_isolation(client: Any, store: Store, source: Firm, *, other_made: bool = False) -> None:
    other = store.firms[OTHER] if other_made else _two_firms(store, source)
    for path in (LICENSE, PRODUCT, BILLING):
        for flt in ({}, {"from": "2023-08-01T00:00:00", "to": "2023-08-31T23:59:59"}, {"productCode": 7001}):
            text = post(client, path, {"filter": flt}, source.headers).text
            assert "other-firm-user" not in text and "Z-00001-177" not in text and "77-OTHER" not in text
        assert "other-firm-user" in post(client, LICENSE, {"filter": {}}, other.headers).text or path != LICENSE
        # another firm's customer, item, ticket or code: answered as one nobody has
        (other_ticket,) = other.tickets
        (own_ticket,) = [t for t in source.tickets if source.tickets[t]["customer"] == "20230301"]
        for key, theirs, nobody in (
            ("customerIdentification", "77-OTHER-CUSTOMER", "77-NOBODY-AT-ALL"),
            ("itemIdentification", "Z-00001-177", "Z-09999-177"),
            ("ticketId", other_ticket, own_ticket.replace(own_ticket[:5], "ZZZZZ")),
            ("firmCode", OTHER, 6000999),
        ):
            a = post(client, path, {"filter": {key: theirs}}, source.headers)
            b = post(client, path, {"filter": {key: nobody}}, source.headers)
            assert a.status_code in (403, 404) and a.json()["errorCode"] in (3, 4), a.text
            if key != "ticketId":  # a made-up ticket id may be mistyped: its check digit
                assert (a.status_code, a.text) == (b.status_code, b.text.replace(str(nobody), str(theirs)))
    # the admin key sees both firms, and narrows to one with firmCode
    users = [e["userIdentification"] for e in ok(post(client, LICENSE, {}, ADMIN))["licenseUsageList"]]
    assert "other-firm-user" in users and "474ce7a1-903f421d" in users
    only = ok(post(client, LICENSE, {"filter": {"firmCode": OTHER}}, ADMIN))["licenseUsageList"]
    assert [e["userIdentification"] for e in only] == ["other-firm-user"]


def test_a_firms_key_never_sees_another_firms_usage(client, store, source):
    check_isolation(client, store, source)


def test_a_firms_key_never_sees_another_firms_usage_with_the_billing_rollup(app, client, store, source):
    _two_firms(store, source)
    ctx = app.state.central
    with ctx.db.session() as s:
        assert BillingRollup(ctx, s).refresh() > 0  # both firms' days in the rollup
    check_isolation(client, store, source, other_made=True)


# ---------------------------------------------------------------- the cursor


def walk(client: Any, path: str, list_name: str, body: dict[str, Any], headers: dict[str, str]) -> list[Any]:
    rows, cursor, pages = [], None, 0
    while True:
        answer = ok(post(client, path, {**body, **({"cursor": cursor} if cursor else {})}, headers))
        rows += answer[list_name]
        pages += 1
        cursor = answer["cursor"]
        if cursor is None:
            return [rows, pages]


def test_the_cursor_walks_a_report_larger_than_a_page_exactly_once(client, store, source):
    (one,) = [t for t in source.tickets.values() if t["customer"] == "20230301"]
    for i in range(40):  # many at the same second: the row id breaks the tie
        store.use(one, f"2023-08-{10 + i // 8:02d}T12:00:00", f"2023-08-{10 + i // 8:02d}T12:30:00", user=f"u{i:02d}",
                  seat=f"s{i % 3}")  # fmt: skip
    for path, name in ((LICENSE, "licenseUsageList"), (PRODUCT, "productUsageList"), (BILLING, "billingList")):
        whole = ok(post(client, path, {"filter": {}, "limit": 10000}, source.headers))
        assert whole["cursor"] is None
        rows, pages = walk(client, path, name, {"filter": {}, "limit": 7}, source.headers)
        assert rows == whole[name] and pages == -(-len(rows) // 7) + (len(rows) % 7 == 0)
        assert len(rows) > 7
        if path == LICENSE:
            assert len(rows) == 48 and len({json.dumps(r, sort_keys=True) for r in rows}) == 48
    # a cursor is bound to its view and its filter
    first = ok(post(client, LICENSE, {"filter": {}, "limit": 5}, source.headers))
    refused(
        post(client, LICENSE, {"filter": {"productCode": 201001}, "cursor": first["cursor"]}, source.headers), 400, 1
    )
    refused(post(client, PRODUCT, {"filter": {}, "cursor": first["cursor"]}, source.headers), 400, 1)


# ---------------------------------------------------------------- billing


def test_the_billing_view_peak_seats_and_seat_hours_of_a_hand_made_day(client, store, source):
    f = store.firm(6000300)
    store.customer(f, "BILL-1")
    store.item(f, "S-00001-300", "Seats", 300, quantity=5)
    t = store.ticket(f, "BILL-1", "S-00001-300")
    day = "2023-08-10T"
    store.use(t, day + "09:00:00", day + "10:00:00", seat="s1")
    store.use(t, day + "09:30:00", day + "11:00:00", seat="s1")  # the same seat: counted once, 2 h in all
    store.use(t, day + "10:00:00", day + "12:00:00", seat="s2", units=5)
    store.use(t, day + "10:30:00", day + "10:45:00", seat="s3")  # 10:30-10:45: s1, s2, s3 held: peak 3
    store.use(t, day + "12:00:00", day + "12:00:00", fail=1)  # a refusal
    store.use(t, day + "11:00:00", day + "12:00:00", seat="nolimit", mode="nolimit")  # holds no seat
    store.use(t, day + "23:00:00", "2023-08-11T01:00:00", seat="s4")  # over midnight: 1 h each day
    store.use(t, "2023-08-12T20:00:00", seat="s5")  # still open: held until the period's end
    body = {"filter": {"from": "2023-08-01T00:00:00", "to": "2023-08-12T23:59:59"}}
    rows = ok(post(client, BILLING, body, f.headers))["billingList"]
    head = {"firmCode": 6000300, "customer": "BILL-1", "item": "S-00001-300", "name": "Seats"}
    assert rows == [
        {**head, "day": "2023-08-10", "peakSeats": 3, "seatSeconds": 18900, "seatHours": 5.25, "sessions": 6,
         "units": 5, "refusals": 1},
        {**head, "day": "2023-08-11", "peakSeats": 1, "seatSeconds": 3600, "seatHours": 1.0, "sessions": 0,
         "units": 0, "refusals": 0},
        {**head, "day": "2023-08-12", "peakSeats": 1, "seatSeconds": 14400, "seatHours": 4.0, "sessions": 1,
         "units": 0, "refusals": 0},
    ]  # fmt: skip
    # a period that begins inside a session counts only its part
    body = {"filter": {"from": "2023-08-11T00:30:00", "to": "2023-08-11T23:59:59"}}
    (row,) = ok(post(client, BILLING, body, f.headers))["billingList"]
    assert (row["day"], row["peakSeats"], row["seatSeconds"], row["sessions"]) == ("2023-08-11", 1, 1800, 0)


def billing_answers(client: Any, firm: Firm, periods: list[dict[str, Any]]) -> list[list[Any]]:
    return [walk(client, BILLING, "billingList", {"filter": flt, "limit": 5}, firm.headers)[0] for flt in periods]


def rolled_and_live(app: Any, client: Any, firm: Firm, periods: list[dict[str, Any]]) -> list[list[Any]]:
    """The billing answers with the rollup as it is, checked against the same answers
    computed from the events alone (the job's state set aside meanwhile)."""
    rolled = billing_answers(client, firm, periods)
    with app.state.central.db.engine.begin() as conn:
        (final,) = conn.execute(select(UsageRollupState.value)).scalars().all()
        conn.execute(delete(UsageRollupState))
    live = billing_answers(client, firm, periods)
    with app.state.central.db.engine.begin() as conn:
        conn.execute(insert(UsageRollupState).values(name=BILLING_FINAL, value=final))
    assert rolled == live
    return rolled


def test_the_billing_view_reads_the_jobs_rollup_and_answers_as_the_events_do(app, client, store, source, clock):
    """Days the job computed come from usage_billing_days, the others from the events
    (partial first days, days after the job's last run, days a late write marked stale):
    every answer, walked page by page, is the one the events alone give."""
    rng = random.Random(19)
    store.customer(source, "20231003")
    tickets = [store.ticket(source, "20231003", item) for item in ("F-00002-145", "F-00003-145")]
    tickets += [store.ticket(source, "20231003", "B-00001-145") for _ in range(2)]
    today = clock() // DAY_S
    base = (today - 8) * DAY_S

    def sessions(n: int, start: int) -> None:
        for _ in range(n):
            t, seat = rng.choice(tickets), f"seat{rng.randrange(4)}"
            access, kind = rng.randrange(start, clock()), rng.random()
            if kind < 0.15:
                store.use(t, _iso(access), fail=1, seat=seat)
            elif kind < 0.25:  # still open
                store.use(t, _iso(access), seat=seat, units=rng.randrange(3))
            else:  # some held over one or two midnights
                end = min(clock(), access + rng.randrange(60, 2 * DAY_S))
                store.use(t, _iso(access), _iso(end), seat=seat, units=rng.randrange(3))

    sessions(60, base)
    periods = [{}, {"from": _iso(base - 2 * DAY_S), "to": _iso(clock())}, {"customerIdentification": "20231003"}]
    periods += [{"from": _iso(base + 3 * DAY_S + 5000), "to": _iso(base + 6 * DAY_S + 7000)}]
    periods += [{"from": _iso(base + DAY_S), "to": _iso(base + 5 * DAY_S - 1)}, {"to": _iso(base + 4 * DAY_S + 99)}]
    periods += [{"itemIdentification": "B-00001-145"}]  # an item filter: from the events
    before = billing_answers(client, source, periods)  # no job has run: every day from the events
    ctx = app.state.central
    with ctx.db.session() as s:
        assert BillingRollup(ctx, s).refresh() > 0  # the first run computes every day that ended
    with ctx.db.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(UsageBillingDay)).scalar_one() > 10
        assert conn.execute(select(func.count()).select_from(UsageBillingStale)).scalar_one() > 0  # today's
    assert rolled_and_live(app, client, source, periods) == before

    # the view reads the rollup: a changed figure shows
    with ctx.db.engine.begin() as conn:
        conn.execute(update(UsageBillingDay).values(refusals=UsageBillingDay.refusals + 1000))
    assert "1000" in json.dumps(billing_answers(client, source, [{}]))
    with ctx.db.engine.begin() as conn:
        conn.execute(update(UsageBillingDay).values(refusals=UsageBillingDay.refusals - 1000))

    # late writes for days already computed: stale, answered from the events until the next run
    sessions(8, base)
    rolled_and_live(app, client, source, periods)
    # two days on: the open sessions held through them; the job computes them and the stale days
    clock.advance(2 * DAY_S)
    rolled_and_live(app, client, source, periods)
    sessions(3, clock() - clock() % DAY_S)  # today's
    with ctx.db.session() as s:
        BillingRollup(ctx, s).refresh()
    with ctx.db.engine.connect() as conn:
        left = conn.execute(select(UsageBillingStale.day)).scalars().all()
    assert left and set(left) == {clock() // DAY_S}  # only today's marks wait: the day goes on
    rolled_and_live(app, client, source, periods)


def _calendar(ts: int) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")


@settings(max_examples=500, deadline=None)
@given(st.integers(min_value=0, max_value=MAX_TIME))
def test_a_time_is_written_as_the_calendar_writes_it(ts):
    """The reporting API's times (built from tables for speed) are the calendar's, from
    1970 to the last second a stored event may carry."""
    assert iso(ts) == _calendar(ts)


def test_the_times_at_the_edges_of_a_minute_a_day_and_the_range():
    edges = (0, 59, 60, 3599, 3600, 86399, 86400, 951782399, 951782400, 951868800, MAX_TIME)
    assert [iso(ts) for ts in edges] == [_calendar(ts) for ts in edges]
    assert iso(MAX_TIME) == "9999-12-31T23:59:59" and iso(951782400) == "2000-02-29T00:00:00"


def test_the_day_sweep_counts_distinct_seats_at_an_instant():
    sweep = DaySweep((1, "c", "i"), "n", lo=None, hi=None, now=10 * 86400)
    out = []
    # back to back on two seats: never two at once; a session ending as another begins
    for access, release, seat in ((100, 200, "a"), (200, 300, "b"), (300, 400, "a")):
        out += list(sweep.add(access, release, True, 0, seat, True))
    out += list(sweep.finish())
    (row,) = out
    assert (row["peakSeats"], row["seatSeconds"], row["sessions"]) == (1, 300, 3)


# ---------------------------------------------------------------- CSV


HYPERLINK = '=HYPERLINK("http://evil.example/?x","click")'


def test_csv_cells_never_become_formulas(client, store, source):
    (two,) = [t for t in source.tickets.values() if t["item"] == "F-00002-145"]
    store.use(two, "2023-08-26T08:00:00", "2023-08-26T08:01:00", user=HYPERLINK)
    store.use(two, "2023-08-26T09:00:00", "2023-08-26T09:01:00", user="+1-555\nline two")
    for headers, params in (({**source.headers, "Accept": "text/csv"}, None), (source.headers, {"format": "csv"})):
        r = post(client, PRODUCT, SOURCE_CUSTOMER_REQUEST, headers, params=params)
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv"), r.text
        table = list(csv.reader(io.StringIO(r.text)))
        assert table[0] == ["customer", "item", "name", "seconds", "success", "user"]
        users = [row[5] for row in table[1:]]
        assert "'" + HYPERLINK in users and "'+1-555 line two" in users and HYPERLINK not in users
        assert all(not u.startswith(("=", "+", "-", "@")) for u in users)
    r = post(client, LICENSE, {"filter": {}}, source.headers, params={"format": "csv"})
    table = list(csv.reader(io.StringIO(r.text)))
    assert table[0][0] == "accessTime" and len(table) == 1 + 10
    # a refusal before the body streams keeps the JSON refusal
    refused(post(client, LICENSE, {"filter": {"customerIdentification": "NOBODY"}}, source.headers,
                 params={"format": "csv"}), 404, 4)  # fmt: skip


def test_a_csv_report_is_sent_in_blocks_of_lines_not_a_write_per_line(app, store, source):
    """Each item of a streamed body costs a step on a worker thread and a write: a long
    report sent a line at a time ran at a seventh of the JSON pages' rate. Its lines go in
    blocks, and the blocks hold every row, across the pages the stream reads."""
    (two,) = [t for t in source.tickets.values() if t["item"] == "F-00002-145"]
    store.use(two, "2023-10-02T00:00:00", "2023-10-02T00:00:30", user="user-0")
    with store.engine.begin() as conn:  # 1,199 more of its kind, one a minute, in one write
        first = conn.execute(select(UsageEvent).where(UsageEvent.user_ident == "user-0")).mappings().one()
        base = {k: v for k, v in first.items() if k != "id"}
        conn.execute(
            insert(UsageEvent),
            [
                {**base, "access_time": base["access_time"] + 60 * m, "release_time": base["release_time"] + 60 * m,
                 "user_ident": f"user-{m}", "lease_id": f"bulk-{m}"}
                for m in range(1, 1200)
            ],
        )  # fmt: skip
    writes: list[int] = []

    async def counting(scope: Any, receive: Any, send: Any) -> None:
        async def counted(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.body" and message.get("body"):
                writes.append(len(message["body"]))
            await send(message)

        await app(scope, receive, counted)

    c = TestClient(counting)  # the app is up (the fixture's client): no second lifespan
    body = {"filter": {"from": "2023-10-02T00:00:00", "to": "2023-10-02T23:59:59"}}
    r = post(c, LICENSE, body, source.headers, params={"format": "csv"})
    assert r.status_code == 200, r.text
    table = list(csv.reader(io.StringIO(r.text)))
    assert table[0][0] == "accessTime" and len(table) == 1 + 1200
    assert [row[-1] for row in table[1:]] == [f"user-{m}" for m in range(1200)]
    assert sum(writes) == len(r.content) and len(writes) <= 4, len(writes)


# ---------------------------------------------------------------- the CLI


def test_vendor_usage_prints_the_product_view_as_csv(tmp_path, clock):
    with central_app(make_settings(tmp_path / "data"), clock) as app, ServerThread(app) as server:
        import httpx

        with httpx.Client(base_url=server.url) as http:
            store = Store(http, app.state.central.db.engine, clock)  # type: ignore[arg-type]
            f = store.firm(FIRM)
            store.customer(f, "20230306")
            store.item(f, "F-00002-145", "Feature #2", 201002)
            t = store.ticket(f, "20230306", "F-00002-145")
            store.use(t, "2023-08-20T08:00:00", "2023-08-20T14:46:17", user="xyzKLF4711eDxSdfs6y")
            store.use(t, "2023-08-21T08:00:00", "2023-08-21T08:00:10", user=HYPERLINK)
        key = f.headers["Authorization"].split()[1]
        args = ["usage", "--view", "product", "--customer", "20230306", "--from", "2023-08-01T00:00:00",
                "--to", "2023-08-31T23:59:59", "--csv"]  # fmt: skip
        code, out, err = vendor_cli(args, url=server.url, key=key)
        assert code == 0, err
        assert list(csv.reader(io.StringIO(out))) == [
            ["customer", "item", "name", "seconds", "success", "user"],
            ["20230306", "F-00002-145", "Feature #2", "10", "1", "'" + HYPERLINK],
            ["20230306", "F-00002-145", "Feature #2", "24377", "1", "xyzKLF4711eDxSdfs6y"],
        ]
        code, out, err = vendor_cli(["usage", "--view", "license", "--limit", "1"], url=server.url, key=key)
        assert code == 0 and "xyzKLF4711eDxSdfs6y" in out and "--cursor" in err, (out, err)
        for csv_or_not in ([], ["--csv"]):  # a refusal is told as such, the CSV streamed or not
            code, out, err = vendor_cli(["usage", "--customer", "NOBODY", *csv_or_not], url=server.url, key=key)
            assert code == 1 and "There is no customer NOBODY" in err and not out, (out, err)


# ---------------------------------------------------------------- PostgreSQL


@pytest.mark.postgres
def test_the_license_view_and_isolation_on_postgresql(tmp_path, pg_url, clock):
    with central_app(make_settings(tmp_path / "data", pg_url), clock) as app, TestClient(app) as client:
        store = Store(client, app.state.central.db.engine, clock)
        firm = source.__wrapped__(store)  # type: ignore[attr-defined]
        test_the_license_view_answers_the_sources_first_request(client, firm)
        test_the_product_view_answers_the_sources_item_request_one_row_per_license(client, firm)
        rows, _ = walk(client, LICENSE, "licenseUsageList", {"filter": {}, "limit": 3}, firm.headers)
        assert len(rows) == 8
        check_isolation(client, store, firm)


@pytest.mark.postgres
def test_the_rollups_on_postgresql(tmp_path, pg_url, clock):
    with central_app(make_settings(tmp_path / "data", pg_url), clock) as app, TestClient(app) as client:
        store = Store(client, app.state.central.db.engine, clock)
        firm = source.__wrapped__(store)  # type: ignore[attr-defined]
        test_retention_takes_the_rollups_old_days_with_the_events(app, client, store, firm, clock)
        test_the_product_view_of_any_period_sums_the_events_in_it(client, store, firm)
        test_the_billing_view_reads_the_jobs_rollup_and_answers_as_the_events_do(app, client, store, firm, clock)


@pytest.mark.parametrize(
    "view, key",
    [
        ("license", [10**20, 1]),  # beyond what a database integer holds
        ("product", [10**20, "a", "b", 1, "u"]),
        ("billing", [10**20, "a", "b", 1]),
        ("product", [1, "\ud800", "b", 1, "u"]),  # a lone surrogate no database text holds
        ("license", [-(10**20), 1]),
    ],
)
def test_a_hand_made_cursor_is_refused_as_a_bad_cursor(client, source, view, key):
    """A cursor is the client's text: one whose key passes for the view's types but holds
    what no stored row could (a number beyond 64 bits, a lone surrogate) answers 400 like
    any bad cursor, never a server error."""
    from licentia.central.services.reporting import UsageFilter
    from licentia.core.encoding import b64e

    digest = UsageFilter.from_api({}).digest(view)
    text = json.dumps({"v": view, "f": digest, "k": key})  # json.dumps escapes the surrogate
    path = {"license": LICENSE, "product": PRODUCT, "billing": BILLING}[view]
    refused(post(client, path, {"filter": {}, "cursor": b64e(text.encode())}, source.headers), 400, 1)
