"""Benchmark: License Central's usage store (issue 13, part 4): the three reporting views
over one month of events, each against a bare count(*) over the same rows, and the
ingestion rate of the upload endpoint against the raw COPY rate.

    .venv/bin/python bench/bench_usage.py [--events 200000] [--rounds 3] [--sqlite] [--explain] [--json]

    # the documented large run (its figures go into docs/performance.md):
    .venv/bin/python bench/bench_usage.py --events 10000000 --rounds 3 --explain

Setup: a throwaway PostgreSQL 15 cluster (tests/pgcluster.py; skipped with one line where
none is available) and ``licentia central serve`` on it as a separate process; firms,
items, customers and tickets are made through its API, one license server per customer
registers by activating a ticket. Then N usage rows for one month (October 2026) are
written straight into usage_events with COPY (SQLite, with --sqlite: executemany in one
transaction), spread over 3 firms, 50 customers (a few large, many small), 20 items,
their tickets, ~2000 users, sessions of minutes to hours, ~3 % refusals and seats; the
table keeps its indexes while it loads, and is vacuumed and analyzed afterwards.

Views, in-process through ReportingService (the query and the service's Python, not
HTTP), each walked to its end page by page (``walk``) on a warm cache, median of
``--rounds``: the license view of the busiest customer's month, the product view of the
busiest item's month, the billing view of the largest firm's month. For each: the bare
``count(*)`` with the view's own WHERE (the same rows, the same indexes), the ratio
view / count (goal: <= 2 at N = 10,000,000), and the time the view's SQL takes alone
(every page's statement re-run on the driver, rows fetched, no Python rows built). For the
license view on PostgreSQL also the floor of any listing of its rows: one ``COPY (SELECT
the view's columns ...) TO STDOUT`` read to its end, against the same count.

Downloads: the license view's case read whole through the running server, as a vendor
fetches a month: as CSV (``?format=csv``, one streamed answer) and as JSON pages of 1000
(cursor after cursor); rows/s, median of ``--rounds``.

Ingestion: 8 license servers (8 client threads, one kept-alive connection each) upload
their logs (access, release and deny events, chunks of up to 1000 events, built and
signed before the clock starts) to POST /api/v1/usage-uploads of the same server, after
the views; events/s and rows/s against the COPY rate of the same run.

Prints a markdown table per backend, then the JSON summary (--json: the JSON only).
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import io
import json
import shutil
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

import httpx  # noqa: E402
import numpy as np  # noqa: E402
from bench_central import ADMIN_KEY, MASTER_KEY, Server  # noqa: E402
from sqlalchemy import event, func, select  # noqa: E402

from licentia.central.db import run_read  # noqa: E402
from licentia.central.models import Container, Customer, Firm, Item, Role, Ticket, UsageEvent  # noqa: E402
from licentia.central.services.base import Actor, Context  # noqa: E402
from licentia.central.services.billing import BillingRollup  # noqa: E402
from licentia.central.services.reporting import (  # noqa: E402
    LICENSE_COLUMNS,
    MAX_PAGE,
    PAGE_SIZE,
    ReportingService,
    UsageFilter,
    held_in,
    iso,
    used,
)
from licentia.central.services.rollup import RollupService  # noqa: E402
from licentia.central.settings import Settings  # noqa: E402
from licentia.central.startup import prepare  # noqa: E402
from licentia.core import anchoring, codes, exchange, hazmat  # noqa: E402
from licentia.core.encoding import canonical  # noqa: E402

CLIENTS = 8
TARGET = 2.0
MONTH_START = int(dt.datetime(2026, 10, 1, tzinfo=dt.UTC).timestamp())
MONTH_DAYS = 31
MONTH_END = MONTH_START + MONTH_DAYS * 86400 - 1  # inclusive, as the API's "to"
#: (firm code, customers, items): a large, a middle and a small vendor
FIRMS = ((61001, 25, 10), (61002, 15, 6), (61003, 10, 4))
USERS = 2000
REFUSALS = 0.03
SEED = 13
#: the columns COPY and executemany fill (id comes from the table's sequence)
COLUMNS = (
    "firm_id",
    "source",
    "container_id",
    "seq",
    "lease_id",
    "access_time",
    "release_time",
    "seconds",
    "success",
    "fail",
    "invalid",
    "firm_code",
    "product_code",
    "feature_code",
    "feature_map",
    "license_id",
    "ticket_id",
    "customer_id",
    "item_id",
    "user_ident",
    "host",
    "address",
    "mode",
    "seat",
    "units",
)
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}


# ---------------------------------------------------------------- the vendors, through the API


@dataclass
class TicketInfo:
    id: uuid.UUID
    license_id: int
    firm_id: uuid.UUID
    firm_code: int
    customer_id: uuid.UUID
    item_id: uuid.UUID
    product_code: int
    feature_map: int


@dataclass
class World:
    """What the API made, with the ids the rows need (read back from the database)."""

    firm_ids: dict[int, uuid.UUID] = field(default_factory=dict)
    customers: list[tuple[int, str]] = field(default_factory=list)  # (firm code, number), by activity
    tickets: dict[tuple[int, str], list[TicketInfo]] = field(default_factory=dict)  # customer -> its tickets
    containers: dict[tuple[int, str], uuid.UUID] = field(default_factory=dict)  # customer -> its license server
    item_names: dict[uuid.UUID, str] = field(default_factory=dict)  # item row id -> item id (B-...)


def _activation(ticket: str) -> tuple[bytes, str, hazmat.Ed25519PrivateKey]:
    """A license server container's first activation: its request and its keys."""
    sign = hazmat.Ed25519PrivateKey.generate()
    box = hazmat.X25519PrivateKey.generate()
    serial = codes.new_serial()
    doc = exchange.build_request(
        serial=serial,
        level="medium",
        sign_key=sign,
        box_pub=hazmat.raw_public(box.public_key()),
        slots={},
        action="activate",
        now=int(time.time()),
        ticket=ticket,
    )
    return json.dumps(doc).encode(), serial, sign


def _activate(c: httpx.Client, ticket: str) -> tuple[str, hazmat.Ed25519PrivateKey]:
    body, serial, sign = _activation(ticket)
    r = c.post("/activations", content=body, headers={"Content-Type": "application/json"})
    if r.status_code != 200:
        raise RuntimeError(f"activation failed: {r.status_code} {r.text[:200]}")
    return serial, sign


def make_vendors(c: httpx.Client, rng: np.random.Generator) -> dict[str, Any]:
    """Firms, items, customers and tickets through the vendor API (admin key); one license
    server per customer, registered by activating the customer's first ticket."""
    made: dict[str, Any] = {"customers": [], "tickets": {}, "serials": {}}
    product = 201000
    for code, n_customers, n_items in FIRMS:
        c.post("/firms", json={"code": code, "name": f"Vendor {code}"}, headers=ADMIN).raise_for_status()
        items = []
        for i in range(n_items):
            product += 1
            r = c.post(
                "/items",
                json={
                    "firm_code": code,
                    "name": f"Product {i + 1} of {code}",
                    "product_code": product,
                    "feature_map": 0xFF,
                    "options": {"quantity": int(rng.choice([0, 5, 10, 25, 50]))},
                },
                headers=ADMIN,
            )
            r.raise_for_status()
            items.append(r.json()["item_id"])
        popularity = 1 / np.arange(1, n_items + 1) ** 0.8
        popularity /= popularity.sum()
        for k in range(n_customers):
            r = c.post("/customers", json={"firm_code": code, "name": f"Customer {k + 1} of {code}"}, headers=ADMIN)
            r.raise_for_status()
            number = r.json()["number"]
            made["customers"].append((code, number))
            wanted = rng.choice(n_items, size=min(n_items, int(rng.integers(2, 7))), replace=False, p=popularity)
            tickets = []
            for j in wanted:
                r = c.post(
                    "/tickets",
                    json={
                        "firm_code": code,
                        "customer": number,
                        "items": [items[int(j)]],
                        "quantity_of_licenses": int(rng.choice([1, 1, 1, 2, 3])),
                    },
                    headers=ADMIN,
                )
                r.raise_for_status()
                tickets += [t["ticket"] for t in r.json()["tickets"]]
            made["tickets"][(code, number)] = tickets
            made["serials"][(code, number)] = _activate(c, tickets[0])[0]
    return made


def read_world(ctx: Context, made: dict[str, Any]) -> World:
    w = World()
    with ctx.db.session() as s:
        w.firm_ids = {f.code: f.id for f in s.scalars(select(Firm))}
        codes_of = {v: k for k, v in w.firm_ids.items()}
        items = {i.id: i for i in s.scalars(select(Item))}
        w.item_names = {i.id: i.item_id for i in items.values()}
        by_ticket = {t.ticket: t for t in s.scalars(select(Ticket))}
        serials = {cn.serial: cn.id for cn in s.scalars(select(Container))}
    w.customers = list(made["customers"])
    for key, tickets in made["tickets"].items():
        w.tickets[key] = [
            TicketInfo(
                t.id,
                t.license_id,
                t.firm_id,
                codes_of[t.firm_id],
                t.customer_id,
                t.item_id,
                items[t.item_id].product_code,
                items[t.item_id].feature_map,
            )
            for t in (by_ticket[x] for x in tickets)
        ]
        w.containers[key] = serials[made["serials"][key]]
    return w


# ---------------------------------------------------------------- one month of rows


def _ident(rng: np.random.Generator) -> str:
    return f"{int(rng.integers(0, 2**32)):08x}-{int(rng.integers(0, 2**32)):08x}"


def month_rows(w: World, n: int, seed: int, block: int = 200_000) -> Iterator[list[tuple[Any, ...]]]:
    """N usage rows of one month, in blocks, each a tuple in COLUMNS order (UUIDs as
    uuid.UUID, NULL as None). Customers' activity falls off like a power law (the first
    is the busiest); users belong to one customer; accesses follow working hours on
    weekdays; sessions last minutes to hours (log-normal, median 45 minutes); ~3 % are
    refusals; a few sessions of the last day are still open."""
    rng = np.random.default_rng(seed)
    n_cust = len(w.customers)
    weight = 1 / np.arange(1, n_cust + 1) ** 0.9
    weight /= weight.sum()
    # users: at least 3 a customer, the rest by weight
    per_cust = np.maximum(3, np.round(weight * USERS).astype(int))
    users = []
    for k in range(n_cust):
        users.append(
            [(_ident(rng), f"pc-{k:02d}-{u:03d}", f"10.{k}.{u // 250}.{u % 250 + 1}") for u in range(per_cust[k])]
        )
    ticket_w = [rng.dirichlet(np.ones(len(w.tickets[key]))) for key in w.customers]
    day_w = np.array([0.25 if dt.date(2026, 10, d + 1).weekday() >= 5 else 1.0 for d in range(MONTH_DAYS)])
    day_w /= day_w.sum()
    seqs = np.zeros(n_cust, dtype=np.int64)
    done = 0
    while done < n:
        m = min(block, n - done)
        cust = rng.choice(n_cust, size=m, p=weight)
        day = rng.choice(MONTH_DAYS, size=m, p=day_w)
        hour = np.clip(rng.normal(13.0, 3.0, size=m), 0, 23.99)
        access = MONTH_START + day * 86400 + (hour * 3600).astype(np.int64)
        access = np.sort(access)  # a log's events come in time order (the seq follows it)
        duration = np.clip(rng.lognormal(np.log(2700), 1.1, size=m), 60, 12 * 3600).astype(np.int64)
        outcome = rng.random(size=m)  # < 0.027 fail, < 0.03 invalid, else a session
        open_ = (access > MONTH_END - 86400) & (rng.random(size=m) < 0.1)
        mode_r = rng.random(size=m)
        pick_user = rng.random(size=m)
        pick_ticket = rng.random(size=m)
        feature = rng.integers(1, 5, size=m)
        units = np.where(rng.random(size=m) < 0.1, rng.integers(1, 20, size=m), 0)
        rows = []
        for i in range(m):
            k = int(cust[i])
            key = w.customers[k]
            tickets = w.tickets[key]
            t = tickets[min(int(np.searchsorted(np.cumsum(ticket_w[k]), pick_ticket[i])), len(tickets) - 1)]
            user, host, ip = users[k][int(pick_user[i] * len(users[k]))]
            seqs[k] += 1
            seq = int(seqs[k])
            a = int(access[i])
            o = outcome[i]
            if o < REFUSALS:
                lease = release = seat = None
                secs, success, fail, invalid, mode, u = 0, 0, int(o < 0.027), int(o >= 0.027), "user", 0
            else:
                lease = f"{seq:x}.{k:02x}"
                mr = mode_r[i]
                mode = "user" if mr < 0.8 else "station" if mr < 0.97 else "nolimit"
                seat = host if mode == "station" else user
                release = None if open_[i] else a + int(duration[i])
                secs = 0 if release is None else release - a
                success, fail, invalid, u = 1, 0, 0, int(units[i])
            rows.append(
                (
                    t.firm_id,
                    "server",
                    w.containers[key],
                    seq,
                    lease,
                    a,
                    release,
                    secs,
                    success,
                    fail,
                    invalid,
                    t.firm_code,
                    t.product_code,
                    int(feature[i]),
                    t.feature_map,
                    t.license_id,
                    t.id,
                    t.customer_id,
                    t.item_id,
                    user,
                    host,
                    ip,
                    mode,
                    seat,
                    u,
                )
            )
        done += m
        yield rows


def _tsv(rows: list[tuple[Any, ...]]) -> bytes:
    out = io.StringIO()
    for r in rows:
        out.write("\t".join("\\N" if v is None else str(v) for v in r))
        out.write("\n")
    return out.getvalue().encode()


def load_postgresql(ctx: Context, w: World, n: int, work: Path) -> dict[str, Any]:
    """The rows into a file first (generation is not timed), then COPY from it."""
    path = work / "usage.tsv"
    t0 = time.perf_counter()
    with open(path, "wb") as f:
        for rows in month_rows(w, n, SEED):
            f.write(_tsv(rows))
    generated = time.perf_counter() - t0
    breakdown = _copy_breakdown(ctx, path, min(n, BREAKDOWN_ROWS))
    raw = ctx.db.engine.raw_connection()
    try:
        cur = raw.cursor()
        start = time.perf_counter()
        with cur.copy(f"COPY usage_events ({', '.join(COLUMNS)}) FROM STDIN") as copy, open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                copy.write(chunk)
        raw.commit()
        copied = time.perf_counter() - start
        driver: Any = raw.driver_connection
        driver.autocommit = True  # VACUUM runs outside a transaction
        start = time.perf_counter()
        cur.execute("VACUUM ANALYZE usage_events")
        vacuumed = time.perf_counter() - start
        driver.autocommit = False
        # the table and its partitions (a partitioned table's own size is 0)
        cur.execute(
            "SELECT sum(pg_total_relation_size(c.oid)), sum(pg_relation_size(c.oid)) FROM pg_class c "
            "WHERE c.relname = 'usage_events' OR c.oid IN "
            "(SELECT inhrelid FROM pg_inherits WHERE inhparent = 'usage_events'::regclass)"
        )
        total, heap = (int(x or 0) for x in (cur.fetchone() or (0, 0)))  # sum() is a numeric
    finally:
        raw.close()
    path.unlink()
    return {
        "rows": n,
        "generate_seconds": round(generated, 2),
        "seconds": round(copied, 2),
        "rows_per_second": round(n / copied),
        "vacuum_analyze_seconds": round(vacuumed, 2),
        "table_mib": round(heap / 2**20, 1),
        "table_with_indexes_mib": round(total / 2**20, 1),
        "how": "COPY FROM STDIN (psycopg cursor.copy) into the month's partition, 9 indexes and 5 foreign keys",
        "breakdown": breakdown,
    }


#: the rows of the file COPY also writes into a bare heap and into the heap with the indexes
BREAKDOWN_ROWS = 200_000


def _copy_breakdown(ctx: Context, path: Path, n: int) -> dict[str, Any]:
    """What the store's indexes and foreign keys cost a COPY: the first ``n`` rows into a
    table like usage_events without indexes, then with its indexes (primary key, unique
    key, 7 indexes) but without its 5 foreign keys, then into usage_events itself
    (indexes and foreign keys; rolled back), each starting empty."""
    with open(path, "rb") as f:
        lines = [next(f) for _ in range(n)]
    data = b"".join(lines)
    out: dict[str, Any] = {"rows": n}
    raw = ctx.db.engine.raw_connection()
    try:
        cur = raw.cursor()
        for name, like in (
            ("heap_only", "INCLUDING DEFAULTS"),
            ("with_indexes", "INCLUDING DEFAULTS INCLUDING INDEXES INCLUDING CONSTRAINTS"),
            ("with_indexes_and_foreign_keys", None),
        ):
            table = "usage_events" if like is None else f"bench_{name}"
            if like is not None:
                cur.execute(f"CREATE TABLE {table} (LIKE usage_events {like})")
            raw.commit()
            start = time.perf_counter()
            with cur.copy(f"COPY {table} ({', '.join(COLUMNS)}) FROM STDIN") as copy:
                for i in range(0, len(data), 1 << 20):
                    copy.write(data[i : i + (1 << 20)])
            elapsed = time.perf_counter() - start
            if like is None:
                raw.rollback()
            else:
                raw.commit()
                cur.execute(f"DROP TABLE {table}")
                raw.commit()
            out[name] = round(n / elapsed)
    finally:
        raw.close()
    return out


def load_sqlite(ctx: Context, w: World, n: int) -> dict[str, Any]:
    """executemany in one transaction (SQLite has no COPY); UUIDs as SQLAlchemy stores them there."""
    marks = ", ".join("?" * len(COLUMNS))
    sql = f"INSERT INTO usage_events ({', '.join(COLUMNS)}) VALUES ({marks})"  # noqa: S608 - constant columns
    uid = {0, 2, 16, 17, 18}
    blocks = []
    t0 = time.perf_counter()
    for rows in month_rows(w, n, SEED):
        blocks.append([tuple(v.hex if i in uid and v is not None else v for i, v in enumerate(r)) for r in rows])
    generated = time.perf_counter() - t0
    raw = ctx.db.engine.raw_connection()
    try:
        cur = raw.cursor()
        start = time.perf_counter()
        cur.execute("BEGIN IMMEDIATE")
        for rows in blocks:
            cur.executemany(sql, rows)
        raw.commit()
        copied = time.perf_counter() - start
        start = time.perf_counter()
        cur.execute("ANALYZE")
        raw.commit()
        vacuumed = time.perf_counter() - start
    finally:
        raw.close()
    size = sum(p.stat().st_size for p in Path(ctx.settings.data_dir).glob("central.db*"))
    return {
        "rows": n,
        "generate_seconds": round(generated, 2),
        "seconds": round(copied, 2),
        "rows_per_second": round(n / copied),
        "vacuum_analyze_seconds": round(vacuumed, 2),
        "table_with_indexes_mib": round(size / 2**20, 1),
        "how": "executemany in one transaction (sqlite3), the table's 9 indexes in place",
    }


# ---------------------------------------------------------------- the views


@dataclass
class Case:
    name: str
    view: str
    actor: Actor
    filter: UsageFilter
    what: str


def cases(ctx: Context, w: World) -> list[Case]:
    """The busiest customer's month, the busiest item's month, the largest firm's month."""
    with ctx.db.session() as s:
        e = UsageEvent
        month = (e.access_time >= MONTH_START, e.access_time <= MONTH_END)
        item_id: Any
        cust_id, firm_id = s.execute(
            select(e.customer_id, e.firm_id)
            .where(*month)
            .group_by(e.customer_id, e.firm_id)
            .order_by(func.count().desc())
            .limit(1)
        ).one()
        item_id, item_firm = s.execute(
            select(e.item_id, e.firm_id)
            .where(*month)
            .group_by(e.item_id, e.firm_id)
            .order_by(func.count().desc())
            .limit(1)
        ).one()
        big_firm = s.execute(
            select(e.firm_id).where(*month).group_by(e.firm_id).order_by(func.count().desc()).limit(1)
        ).scalar_one()
        firms = {f.id: f.code for f in s.scalars(select(Firm))}
        number = s.scalar(select(Customer.number).where(Customer.id == cust_id))
    period: dict[str, Any] = {"start": MONTH_START, "end": MONTH_END}

    def vendor(fid: uuid.UUID) -> Actor:
        return Actor(key_id="bench", role=Role.vendor, firm_id=fid, firm_code=firms[fid])

    return [
        Case(
            "license view, one customer's month",
            "license",
            vendor(firm_id),
            UsageFilter(customer=number, **period),
            f"customer {number}",
        ),
        Case(
            "product view, one item's month",
            "product",
            vendor(item_firm),
            UsageFilter(item=w.item_names[item_id], **period),
            f"item {w.item_names[item_id]}",
        ),
        Case(
            "billing view, one firm's month",
            "billing",
            vendor(big_firm),
            UsageFilter(**period),
            f"firm {firms[big_firm]}",
        ),
    ]


def build_rollups(ctx: Context, n: int) -> dict[str, Any]:
    """Build both reporting rollups from the loaded events (what `licentia central usage
    rollup` does after a bulk load), timed, with the rollups' sizes."""
    with ctx.db.session() as s:
        start = time.perf_counter()
        product_rows = RollupService(ctx, s).rebuild()
        product_s = time.perf_counter() - start
        start = time.perf_counter()
        billing_days = BillingRollup(ctx, s).rebuild()
        billing_s = time.perf_counter() - start
    return {
        "product_rows": product_rows,
        "product_seconds": round(product_s, 2),
        "billing_days": billing_days,
        "billing_seconds": round(billing_s, 2),
        "events_per_second": round(n / (product_s + billing_s)),
    }


def count_stmt(svc: ReportingService, case: Case) -> Any:
    """count(*) with the view's own WHERE: the scope the service resolves, and the period
    as the view applies it (the billing view also takes sessions held into the period)."""
    e = UsageEvent
    q = svc.query(case.actor, case.view, case.filter)
    flt = case.filter
    conds = q.scope.over(e)
    if case.view == "billing":
        assert flt.start is not None and flt.end is not None
        conds += held_in(flt.start, flt.end + 1)
    else:
        conds += [e.access_time >= flt.start, e.access_time <= flt.end]
    return select(func.count()).select_from(e).where(*conds)


def _median_time(fn: Callable[[], Any], rounds: int) -> tuple[float, list[float], Any]:
    fn()  # warm the cache
    times, out = [], None
    for _ in range(rounds):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), times, out


class Captured:
    """The statements a block of code runs on the usage store or its rollups (to re-run
    them alone)."""

    def __init__(self, engine: Any):
        self.engine = engine
        self.statements: list[tuple[str, Any]] = []

    def __enter__(self) -> Captured:
        event.listen(self.engine, "before_cursor_execute", self._seen)
        return self

    def __exit__(self, *exc: object) -> None:
        event.remove(self.engine, "before_cursor_execute", self._seen)

    def _seen(self, conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        if any(t in statement for t in ("usage_events", "usage_days", "usage_billing")):
            self.statements.append((statement, parameters))


def _plan_summary(ctx: Context, statement: str, params: Any) -> str:
    """The access paths a statement's plan takes (node types and indexes), one line."""
    raw = ctx.db.engine.raw_connection()
    try:
        cur = raw.cursor()
        if ctx.db.engine.dialect.name == "postgresql":
            cur.execute("EXPLAIN (FORMAT JSON) " + statement, params)
            found = cur.fetchone()
            assert found is not None
            plan = found[0][0]["Plan"]
            parts: list[str] = []

            def visit(node: dict[str, Any]) -> None:
                if "Scan" in node["Node Type"]:
                    on = node.get("Index Name") or node.get("Relation Name") or ""
                    parts.append(f"{node['Node Type']} {on}".strip())
                for child in node.get("Plans", []):
                    visit(child)

            visit(plan)
            return "; ".join(dict.fromkeys(parts))
        cur.execute("EXPLAIN QUERY PLAN " + statement, params)
        return "; ".join(str(r[-1]) for r in cur.fetchall())
    finally:
        raw.rollback()
        raw.close()


def _explain_analyze(ctx: Context, statement: str, params: Any) -> str:
    raw = ctx.db.engine.raw_connection()
    try:
        cur = raw.cursor()
        if ctx.db.engine.dialect.name == "postgresql":
            cur.execute("EXPLAIN (ANALYZE, BUFFERS) " + statement, params)
        else:
            cur.execute("EXPLAIN QUERY PLAN " + statement, params)
        return "\n".join(str(r[0] if len(r) == 1 else r[-1]) for r in cur.fetchall())
    finally:
        raw.rollback()
        raw.close()


def _sql_only(ctx: Context, statements: list[tuple[str, Any]], page_size: int) -> int:
    """Run the statements on the driver and fetch the rows the service reads of each (a
    page and one more, through a server-side cursor on PostgreSQL as the service's
    yield_per does): what the database and the driver cost without the service's Python.
    The billing view reads more than a page of rows for a page of days, so its figure is
    a lower bound (the statement's sort and first rows)."""
    raw = ctx.db.engine.raw_connection()
    try:
        rows = 0
        for i, (statement, params) in enumerate(statements):
            if ctx.db.engine.dialect.name == "postgresql":
                driver: Any = raw.driver_connection
                cur = driver.cursor(name=f"bench_{i}")
            else:
                cur = raw.cursor()
            cur.execute(statement, params)
            rows += len(cur.fetchmany(page_size + 1))
            cur.close()
        raw.rollback()
        return rows
    finally:
        raw.close()


def copy_floor(ctx: Context, svc: ReportingService, case: Case) -> int:
    """PostgreSQL's own fastest output of the license view's rows: one ``COPY (SELECT the
    view's columns ...) TO STDOUT``, in order, read to its end as text blocks (no row made in
    Python, no JSON): the floor of any listing of these rows. Returns the bytes read."""
    e = UsageEvent
    q = svc.query(case.actor, case.view, case.filter)
    stmt = (
        select(*LICENSE_COLUMNS)
        .where(*q.scope.over(e), *svc.accessed(case.filter), used(e))
        .order_by(e.access_time, e.id)
    )
    compiled = stmt.compile(dialect=ctx.db.engine.dialect)
    raw = ctx.db.engine.raw_connection()
    try:
        cur = raw.driver_connection.cursor()  # type: ignore[union-attr]
        read = 0
        with cur.copy(f"COPY ({compiled.string}) TO STDOUT", compiled.params) as copy:
            for block in copy:
                read += len(block)
        raw.rollback()
        return read
    finally:
        raw.close()


def measure_views(
    ctx: Context, all_cases: list[Case], rounds: int, page_size: int, explain: bool
) -> list[dict[str, Any]]:
    out = []
    for case in all_cases:
        with ctx.db.session() as s:
            svc = ReportingService(ctx, s)
            counted = count_stmt(svc, case)

            def walk(svc: ReportingService = svc, case: Case = case) -> int:
                q = svc.query(case.actor, case.view, case.filter)
                return sum(1 for _ in svc.walk(q, page_size))

            def count(svc: ReportingService = svc, counted: Any = counted) -> int:
                return int(run_read(svc.session, lambda: svc.session.execute(counted).scalar_one()))

            view_s, view_times, rows_out = _median_time(walk, rounds)
            count_s, count_times, rows_in = _median_time(count, rounds)
            with Captured(ctx.db.engine) as cap:
                count()
            count_sql, count_params = cap.statements[-1]
            with Captured(ctx.db.engine) as cap:
                walk()
            # the statements the walk ran on usage_events, in their driver form
            stmts = cap.statements

            def sql_only(stmts: list[tuple[str, Any]] = stmts) -> int:
                return _sql_only(ctx, stmts, page_size)

            sql_s, _, fetched = _median_time(sql_only, rounds)
            floor = None
            if case.view == "license" and ctx.db.engine.dialect.name == "postgresql":
                floor, _, _ = _median_time(lambda svc=svc, case=case: copy_floor(ctx, svc, case), rounds)
        result = {
            "case": case.name,
            "what": case.what,
            "rows_counted": rows_in,
            "rows_out": rows_out,
            "statements": len(stmts),
            "view_seconds": round(view_s, 4),
            "view_rounds": [round(t, 4) for t in view_times],
            "view_sql_seconds": round(sql_s, 4),
            "view_sql_rows_fetched": fetched,
            "count_seconds": round(count_s, 5),
            "count_rounds": [round(t, 5) for t in count_times],
            "ratio": round(view_s / count_s, 1),
            "sql_ratio": round(sql_s / count_s, 1),
            **(
                {"copy_floor_seconds": round(floor, 4), "copy_floor_ratio": round(floor / count_s, 1)}
                if floor is not None
                else {}
            ),
            "view_plan": _plan_summary(ctx, *stmts[0]) if stmts else "",
            "count_plan": _plan_summary(ctx, count_sql, count_params),
        }
        if explain:
            result["explain_view_first_page"] = _explain_analyze(ctx, *stmts[0]) if stmts else ""
            result["explain_count"] = _explain_analyze(ctx, count_sql, count_params)
        progress(f"{case.name}: {json.dumps({k: v for k, v in result.items() if not k.startswith('explain')})}")
        out.append(result)
    return out


# ---------------------------------------------------------------- downloads through HTTP


def downloads(c: httpx.Client, case: Case, rounds: int) -> dict[str, Any]:
    """The license view's case read whole through the server, as CSV and as JSON pages."""
    flt = {"from": iso(MONTH_START), "to": iso(MONTH_END), "customerIdentification": case.filter.customer}
    flt["firmCode"] = case.actor.firm_code  # the admin key names the firm

    def csv_download() -> int:
        lines = 0
        with c.stream("POST", "/reporting/license-usage?format=csv", json={"filter": flt}, headers=ADMIN) as r:
            r.raise_for_status()
            for _ in r.iter_lines():
                lines += 1
        return lines - 1  # the header

    def json_pages() -> int:
        rows, cursor = 0, None
        while True:
            body: dict[str, Any] = {"filter": flt, "limit": 1000}
            if cursor:
                body["cursor"] = cursor
            r = c.post("/reporting/license-usage", json=body, headers=ADMIN)
            r.raise_for_status()
            answer = r.json()
            rows += len(answer["licenseUsageList"])
            cursor = answer.get("cursor")
            if not cursor:
                return rows

    out: dict[str, Any] = {"case": case.name, "what": case.what}
    for name, fn in (("csv", csv_download), ("json_pages", json_pages)):
        seconds, times, rows = _median_time(fn, rounds)
        out[name] = {"rows": rows, "seconds": round(seconds, 3), "rows_per_second": round(rows / seconds)}
    return out


# ---------------------------------------------------------------- ingestion through the endpoint


def _server_log(
    firm_code: int, license_id: int, product: int, feature_map: int, events: int, rng: np.random.Generator, tag: str
) -> list[str]:
    """A license server's usage log over the month: sessions (an access and its release)
    and ~3 % refusals, in time order, as canonical event bodies."""
    items: list[tuple[int, int, dict[str, Any]]] = []  # (time, order, body without seq)
    users = [(_ident(rng), f"ws-{tag}-{u:03d}") for u in range(60)]
    n = 0
    while len(items) < events:
        n += 1
        a = MONTH_START + int(rng.integers(0, MONTH_DAYS * 86400))
        user, host = users[int(rng.integers(0, len(users)))]
        base = {
            "mode": "user",
            "success": 1,
            "fail": 0,
            "invalid": 0,
            "firmCode": firm_code,
            "productCode": product,
            "featureCode": int(rng.integers(1, 5)),
            "featureMap": feature_map,
            "ticketLicenseId": license_id,
            "userIdentification": user,
            "host": host,
            "ip": "10.9.0.5",
        }
        if rng.random() < REFUSALS:
            items.append(
                (
                    a,
                    n,
                    {
                        **base,
                        "event": "deny",
                        "time": a,
                        "leaseId": None,
                        "accessTime": a,
                        "releaseTime": None,
                        "seconds": 0,
                        "success": 0,
                        "fail": 1,
                    },
                )
            )
            continue
        lease = f"{tag}-{n:x}"
        r = a + int(np.clip(rng.lognormal(np.log(2700), 1.1), 60, 12 * 3600))
        common = {**base, "leaseId": lease, "accessTime": a, "seat": user}
        items.append((a, n, {**common, "event": "access", "time": a, "releaseTime": None, "seconds": 0}))
        items.append((r, n, {**common, "event": "release", "time": r, "releaseTime": r, "seconds": r - a}))
    items.sort(key=lambda x: (x[0], x[1]))
    return [canonical({**body, "seq": seq}).decode() for seq, (_, _, body) in enumerate(items[:events], 1)]


def _chunks(bodies: list[str]) -> Iterator[tuple[int, list[str]]]:
    """Runs of at most MAX_EVENTS events and MAX_EVENT_BYTES bytes, with their base seq."""
    run: list[str] = []
    start = size = 0
    for i, body in enumerate(bodies):
        b = len(body.encode())
        if run and (len(run) == anchoring.MAX_EVENTS or size + b > anchoring.MAX_EVENT_BYTES):
            yield start, run
            start, run, size = i, [], 0
        run.append(body)
        size += b
    if run:
        yield start, run


def ingestion(srv: Server, c: httpx.Client, per_client: int, chained: bool, rng: np.random.Generator) -> dict[str, Any]:
    """8 clients upload license servers' logs. ``chained``: each client is one license
    server whose log goes up in consecutive uploads (a session's release may come in a
    later upload than its access); otherwise each upload (at most 1000 events) is the
    first of a license server of its own, so no upload ends a session stored before."""
    code = FIRMS[0][0]
    product = 209001
    item = c.post(
        "/items",
        json={
            "firm_code": code,
            "name": "Served product",
            "product_code": product,
            "feature_map": 0xFF,
            "options": {"quantity": 10000},
        },
        headers=ADMIN,
    ).json()["item_id"]
    cust = c.post("/customers", json={"firm_code": code, "name": "Served customer"}, headers=ADMIN).json()["number"]
    # a license server's first upload: 800 events stay within MAX_EVENTS and MAX_EVENT_BYTES
    first = 800
    logs = [[per_client]] * CLIENTS if chained else [[first] * max(1, per_client // first)] * CLIENTS
    events = sum(map(sum, logs))
    tickets = c.post(
        "/tickets",
        json={"firm_code": code, "customer": cust, "items": [item], "quantity_of_licenses": sum(map(len, logs))},
        headers=ADMIN,
    ).json()["tickets"]
    uploads: list[list[bytes]] = [[] for _ in range(CLIENTS)]
    servers = iter(tickets)
    for n, sizes in enumerate(logs):
        for size in sizes:
            t = next(servers)
            serial, sign = _activate(c, t["ticket"])
            bodies = _server_log(code, int(t["license_id"]), product, 0xFF, size, rng, serial)
            for start, run in _chunks(bodies):
                doc = anchoring.build_upload(
                    sign_key=sign,
                    serial=serial,
                    time=int(time.time()),
                    base_seq=start,
                    base_hash=anchoring.extend(anchoring.GENESIS, bodies[:start]) if start else anchoring.GENESIS,
                    bodies=run,
                )
                uploads[n].append(json.dumps(doc).encode())
    barrier = threading.Barrier(CLIENTS + 1)
    stored = [0] * CLIENTS
    accepted = [0] * CLIENTS

    def client(n: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=300)
        barrier.wait()
        for body in uploads[n]:
            conn.request("POST", "/api/v1/usage-uploads", body=body, headers={"Content-Type": "application/json"})
            response = conn.getresponse()
            payload = response.read()
            if response.status != 200:
                tail = Path(srv.log.name).read_text(errors="replace")[-12000:]
                raise RuntimeError(
                    f"upload refused: {response.status} {payload[:300]!r} (after {sum(accepted)} uploads "
                    f"accepted of {sum(map(len, uploads))})\nthe server's log:\n{tail}"
                )
            stored[n] += int(json.loads(payload)["stored"])
            accepted[n] += 1
        conn.close()

    with ThreadPoolExecutor(CLIENTS) as pool:
        futures = [pool.submit(client, n) for n in range(CLIENTS)]
        barrier.wait()
        cpu0, t0 = srv.cpu_seconds(), time.perf_counter()
        for f in futures:
            f.result()
        elapsed, cpu = time.perf_counter() - t0, srv.cpu_seconds() - cpu0
    return {
        "clients": CLIENTS,
        "mode": "chained: one server per client, consecutive uploads" if chained else "one upload per server",
        "events": events,
        "uploads": sum(len(u) for u in uploads),
        "rows_stored": sum(stored),
        "seconds": round(elapsed, 2),
        "events_per_second": round(events / elapsed),
        "rows_per_second": round(sum(stored) / elapsed),
        "server_cpu_ms_per_1000_events": round(cpu / events * 1e6, 1),
        "server_busy": round(cpu / elapsed, 2),
    }


# ---------------------------------------------------------------- one backend


def run_backend(name: str, database_url: str | None, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    rng = np.random.default_rng(SEED)
    data = work / f"central-{name}"
    result: dict[str, Any] = {"events": args.events}
    # the rollups are built below, timed; the server's own job would race them
    quiet = {"LICENTIA_USAGE_ROLLUP_INTERVAL": "0", "LICENTIA_USAGE_PURGE_INTERVAL": "0"}
    with (
        Server(data, database_url, env_extra=quiet) as srv,
        httpx.Client(base_url=srv.url + "/api/v1", timeout=120) as c,
    ):
        made = make_vendors(c, rng)
        settings = Settings(data_dir=data, database_url=database_url, admin_key=ADMIN_KEY, master_key=MASTER_KEY)
        ctx = prepare(settings, clock=lambda: int(time.time()))
        try:
            w = read_world(ctx, made)
            result["tickets"] = sum(len(t) for t in w.tickets.values())
            result["load"] = (
                load_postgresql(ctx, w, args.events, work) if database_url else load_sqlite(ctx, w, args.events)
            )
            progress(f"{name}: load {json.dumps(result['load'])}")
            result["rollups"] = build_rollups(ctx, args.events)
            progress(f"{name}: rollups {json.dumps(result['rollups'])}")
            all_cases = cases(ctx, w)
            result["views"] = measure_views(ctx, all_cases, args.rounds, args.page_size, args.explain)
            license_case = all_cases[0]
        finally:
            ctx.db.dispose()
        result["downloads"] = downloads(c, license_case, args.rounds)
        progress(f"{name}: downloads {json.dumps(result['downloads'])}")
        if args.upload_events:
            try:
                result["ingestion"] = ingestion(srv, c, args.upload_events, args.chained, rng)
                result["ingestion"]["vs_load_rows_per_second"] = round(
                    result["ingestion"]["rows_per_second"] / result["load"]["rows_per_second"], 4
                )
            except RuntimeError as exc:  # Central refused or failed: say so, keep the views' figures
                result["ingestion_failed"] = str(exc)
    return result


def progress(line: str) -> None:
    """A figure as soon as it is measured (stderr), so that a stopped long run keeps it."""
    print(line, file=sys.stderr, flush=True)


def print_tables(results: dict[str, Any]) -> None:
    for name, r in results["backends"].items():
        print(f"### {name}\n")
        if "skipped" in r:
            print(f"skipped: {r['skipped']}\n")
            continue
        load = r["load"]
        print(
            f"{r['events']:,} rows, {r['tickets']} tickets; load: {load['rows_per_second']:,} rows/s "
            f"({load['seconds']} s, {load['how']}); vacuum + analyze {load['vacuum_analyze_seconds']} s; "
            f"table with indexes {load['table_with_indexes_mib']} MiB\n"
        )
        if "breakdown" in load:
            b = load["breakdown"]
            print(
                f"COPY of the first {b['rows']:,} rows into an empty table, rows/s: bare heap {b['heap_only']:,}; "
                f"with the 9 indexes {b['with_indexes']:,}; with the indexes and the 5 foreign keys "
                f"{b['with_indexes_and_foreign_keys']:,}\n"
            )
        if "rollups" in r:
            g = r["rollups"]
            print(
                f"rollups built from the loaded events: product view {g['product_rows']:,} rows in "
                f"{g['product_seconds']} s, billing view {g['billing_days']:,} days in {g['billing_seconds']} s "
                f"({g['events_per_second']:,} events/s)\n"
            )
        print(
            "| view | rows counted | rows out | statements | view (walk) | its SQL alone | count(*) "
            "| view / count | SQL / count |"
        )
        print("|---|---|---|---|---|---|---|---|---|")
        for v in r["views"]:
            ok = "ok" if v["ratio"] <= TARGET else "over 2x"
            print(
                f"| {v['case']} ({v['what']}) | {v['rows_counted']:,} | {v['rows_out']:,} | {v['statements']} "
                f"| {v['view_seconds'] * 1000:,.1f} ms | {v['view_sql_seconds'] * 1000:,.1f} ms "
                f"| {v['count_seconds'] * 1000:,.2f} ms | **{v['ratio']}** ({ok}) | {v['sql_ratio']} |"
            )
        print()
        for v in r["views"]:
            print(f"- {v['case']}: view `{v['view_plan']}`; count `{v['count_plan']}`")
            if "copy_floor_seconds" in v:
                print(
                    f"  - the floor of any listing of its rows, one COPY of the view's columns to STDOUT: "
                    f"{v['copy_floor_seconds'] * 1000:,.1f} ms = **{v['copy_floor_ratio']}x** the count"
                )
        if "downloads" in r:
            d = r["downloads"]
            print(
                f"\n{d['case']} ({d['what']}) read whole through HTTP: as CSV {d['csv']['rows']:,} rows in "
                f"{d['csv']['seconds']} s ({d['csv']['rows_per_second']:,} rows/s); as JSON pages of 1000 "
                f"{d['json_pages']['seconds']} s ({d['json_pages']['rows_per_second']:,} rows/s)"
            )
        if "ingestion_failed" in r:
            print(f"\ningestion FAILED: {r['ingestion_failed'].splitlines()[0]}")
        if "ingestion" in r:
            g = r["ingestion"]
            print(
                f"\ningestion, {g['clients']} clients through POST /api/v1/usage-uploads ({g['mode']}): "
                f"{g['events_per_second']:,} events/s ({g['rows_per_second']:,} rows/s; {g['events']:,} events "
                f"in {g['uploads']} uploads, {g['seconds']} s; "
                f"server CPU {g['server_cpu_ms_per_1000_events']} ms per 1000 events) = "
                f"**{g['vs_load_rows_per_second']}x** the load's rows/s"
            )
        for v in r["views"]:
            if "explain_view_first_page" in v:
                print(f"\n#### {v['case']}: EXPLAIN (ANALYZE, BUFFERS), the view's first page\n")
                print("```\n" + v["explain_view_first_page"] + "\n```")
                print(f"\n#### {v['case']}: the count\n")
                print("```\n" + v["explain_count"] + "\n```")
        print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=200_000, help="usage rows for the month (default 200000)")
    parser.add_argument(
        "--rounds", type=int, default=3, help="timed runs of each view and count; the median (default 3)"
    )
    parser.add_argument(
        "--page-size",
        type=int,
        default=PAGE_SIZE,
        help=f"rows per page of a walk (default {PAGE_SIZE}, at most {MAX_PAGE})",
    )
    parser.add_argument(
        "--upload-events",
        type=int,
        default=10_000,
        help="events each of the 8 license servers uploads (default 10000; 0: no ingestion)",
    )
    parser.add_argument(
        "--chained",
        action="store_true",
        help="each client one license server uploading its whole log in consecutive uploads "
        "(default: each upload the first of a server of its own)",
    )
    parser.add_argument("--sqlite", action="store_true", help="also on SQLite (executemany instead of COPY)")
    parser.add_argument("--no-postgresql", action="store_true", help="leave PostgreSQL out (with --sqlite)")
    parser.add_argument(
        "--explain", action="store_true", help="print EXPLAIN (ANALYZE, BUFFERS) of each view and count"
    )
    parser.add_argument("--json", action="store_true", help="print only the JSON summary")
    args = parser.parse_args()

    import pgcluster

    work = Path(tempfile.mkdtemp(prefix="licentia-bench-usage-"))
    results: dict[str, Any] = {"month": "2026-10", "target_ratio": TARGET, "backends": {}}
    try:
        if not args.no_postgresql:
            if pgcluster.available():
                cluster = pgcluster.start(max_connections=100)
                try:
                    tune(cluster)
                    results["backends"]["postgresql"] = run_backend(
                        "pg", cluster.create_database("bench_usage"), work, args
                    )
                finally:
                    cluster.stop()
            else:
                results["backends"]["postgresql"] = {"skipped": f"{pgcluster.WHAT} not available: no PostgreSQL run"}
                if not args.json:
                    print(f"PostgreSQL skipped: {pgcluster.WHAT} is not available on this machine.")
        if args.sqlite:
            results["backends"]["sqlite"] = run_backend("sqlite", None, work, args)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if not args.json:
        print_tables(results)
    print(json.dumps(results, indent=2))
    if any("ingestion_failed" in r for r in results["backends"].values()):
        sys.exit(1)  # Central refused or failed an upload: the figures above, and a failed bench


def tune(cluster: Any) -> None:
    """Memory settings a server for this store would have (the throwaway cluster starts
    with PostgreSQL's defaults: 128 MB of shared buffers, 4 MB of work_mem), then a restart."""
    import subprocess

    import pgcluster
    import psycopg

    with psycopg.connect(
        host="127.0.0.1", port=cluster.port, user=cluster.user, dbname="postgres", autocommit=True
    ) as c:
        for name, value in (
            ("shared_buffers", "4GB"),
            ("work_mem", "64MB"),
            ("maintenance_work_mem", "512MB"),
            ("effective_cache_size", "12GB"),
            ("max_wal_size", "8GB"),
        ):
            c.execute(f"ALTER SYSTEM SET {name} = '{value}'")
    pg_ctl = [str(pgcluster.BIN / "pg_ctl"), "-D", str(cluster.datadir), "-l", str(cluster.root / "server.log")]
    subprocess.run(pgcluster._as_owner([*pg_ctl, "-w", "-t", "60", "restart"]), check=True, capture_output=True)


if __name__ == "__main__":
    main()
