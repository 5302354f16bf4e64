"""The usage store's rollup for the product view (``usage_days``): per license, user and UTC
day of access, with every scope column a view filters on, the seconds, accesses, refusals
and units of that day's events.

Writers keep it exact in their own transaction: ``DayDeltas`` collects what a write adds
(a new row, a release that sets a stored row's seconds) and ``apply`` upserts each key once,
in key order (two writers never wait on each other in opposite orders). A bulk load that
writes events without it (COPY) is followed by ``RollupService.rebuild``, which recomputes
the rollup from the events. Events whose ticket Central does not know have no customer or
item and are not rolled up: the views join both.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import ColumnElement, Executable, delete, func, insert, select, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.orm import Session

from ..db import run_write
from ..models import USAGE_DAY_KEY, UsageBillingStale, UsageDay, UsageEvent
from . import _protocol_sql as sql
from .base import Service
from .firms import MAX_RETENTION_DAYS

log = logging.getLogger("licentia.central")

DAY = 86400
#: the rollup's key columns, in the order of its unique constraint
KEY = USAGE_DAY_KEY
SUMS = ("seconds", "success", "fail", "invalid", "units")

_d = sql.table_of(UsageDay)


class Writer(Protocol):
    """What the rollup writes through: the protocol path's ``Tx``, or ``OnConnection``."""

    @property
    def dialect(self) -> Dialect: ...

    def execute(self, stmt: Executable, params: Mapping[str, Any]) -> None: ...

    def execute_many(self, stmt: Executable, rows: Sequence[Mapping[str, Any]]) -> None: ...


class OnConnection:
    """A ``Writer`` on a SQLAlchemy connection (the ORM services' transactions)."""

    def __init__(self, conn: Connection):
        self.conn = conn

    @property
    def dialect(self) -> Dialect:
        return self.conn.dialect

    def execute(self, stmt: Executable, params: Mapping[str, Any]) -> None:
        self.conn.execute(stmt, dict(params))

    def execute_many(self, stmt: Executable, rows: Sequence[Mapping[str, Any]]) -> None:
        if rows:
            self.conn.execute(stmt, [dict(r) for r in rows])


def _upsert(stmt: Any) -> Executable:
    """``stmt`` (a dialect's insert into usage_days) adding to the row it meets."""
    done: Executable = stmt.on_conflict_do_update(
        index_elements=list(KEY), set_={name: getattr(_d.c, name) + getattr(stmt.excluded, name) for name in SUMS}
    )
    return done


#: add a day's sums to its rollup row (made when it is missing)
U_DAY = {"sqlite": _upsert(sqlite_insert(_d)), "postgresql": _upsert(pg_insert(_d))}


@dataclass
class _Sums:
    firm_code: int
    seconds: int = 0
    success: int = 0
    fail: int = 0
    invalid: int = 0
    units: int = 0


class DayDeltas:
    """What one write adds to the rollup, by key."""

    def __init__(self) -> None:
        self._sums: dict[tuple[object, ...], _Sums] = {}

    def _at(self, row: Mapping[str, object]) -> _Sums | None:
        if row["ticket_id"] is None or row["customer_id"] is None or row["item_id"] is None:
            return None
        key = tuple(int(row["access_time"]) // DAY if k == "day" else row[k] for k in KEY)  # type: ignore[call-overload]
        sums = self._sums.get(key)
        if sums is None:
            sums = self._sums[key] = _Sums(firm_code=int(row["firm_code"]))  # type: ignore[call-overload]
        return sums

    def add_row(self, row: Mapping[str, object]) -> None:
        """A new usage_events row (a dict of its columns)."""
        sums = self._at(row)
        if sums is not None:
            for name in SUMS:
                setattr(sums, name, getattr(sums, name) + int(row.get(name) or 0))  # type: ignore[call-overload]

    def add_seconds(self, row: Mapping[str, object], seconds: int) -> None:
        """Seconds added to a stored row (its release came)."""
        sums = self._at(row)
        if sums is not None:
            sums.seconds += seconds

    def apply(self, tx: Writer) -> int:
        """Upsert every key (in key order); the number of keys."""
        rows = []
        for key in sorted(self._sums, key=lambda k: tuple(str(v) for v in k)):
            s = self._sums[key]
            rows.append(
                dict(zip(KEY, key, strict=True))
                | {"firm_code": s.firm_code, "seconds": s.seconds, "success": s.success}
                | {"fail": s.fail, "invalid": s.invalid, "units": s.units}
            )
        tx.execute_many(U_DAY[tx.dialect.name], rows)  # one execution per key (each key once)
        return len(rows)


_s = sql.table_of(UsageBillingStale)
#: mark a customer's item's day stale (kept when marked already)
I_STALE = {
    "sqlite": sqlite_insert(_s).on_conflict_do_nothing(index_elements=["customer_id", "item_id", "day"]),
    "postgresql": pg_insert(_s).on_conflict_do_nothing(index_elements=["customer_id", "item_id", "day"]),
}


#: the days before today a write marks at most: none older can be kept (the longest
#: retention), and one more
MARK_DAYS_BACK = MAX_RETENTION_DAYS + 1


class StaleDays:
    """The billing days one write changes: each session's days from its access to its
    release (or, still open, to ``now``), each refusal's day; never a day before the longest
    retention (``MARK_DAYS_BACK``) or after tomorrow, however long a session says it was held."""

    def __init__(self, now: int) -> None:
        self.now = now
        self._days: set[tuple[str, str, int, str]] = set()
        self._ids: dict[str, uuid.UUID] = {}

    def add_row(self, row: Mapping[str, Any]) -> None:
        customer, item, firm = row["customer_id"], row["item_id"], row["firm_id"]
        if customer is None or item is None:
            return
        access = int(row["access_time"])
        first = last = access // DAY
        if row["success"]:
            release = row["release_time"]
            end = int(release) if release is not None else max(self.now, access)
            last = max(access, end - 1) // DAY
        for ident in (customer, item, firm):
            self._ids[str(ident)] = ident
        today = self.now // DAY
        for day in range(max(first, today - MARK_DAYS_BACK), min(last, today + 1) + 1):
            self._days.add((str(customer), str(item), day, str(firm)))

    def rows(self) -> list[dict[str, Any]]:
        """The marks in key order."""
        return [
            {"customer_id": self._ids[c], "item_id": self._ids[i], "day": d, "firm_id": self._ids[f]}
            for c, i, d, f in sorted(self._days)
        ]

    def apply(self, tx: Writer) -> int:
        """Insert the marks; the number of days marked."""
        rows = self.rows()
        tx.execute_many(I_STALE[tx.dialect.name], rows)
        return len(rows)


_e = sql.table_of(UsageEvent)
I_EVENT = insert(_e)


def units_row(
    *,
    source: str,
    firm_id: uuid.UUID,
    firm_code: int,
    container_id: uuid.UUID | None,
    ticket: Any,
    units: int,
    at: int,
    user: str = "",
) -> dict[str, Any]:
    """The usage store's row of ``units`` a container counted (``source`` "container": a
    usage report raised its counter) or Central counted (``online``; ``user``: a person's
    consumption over REST, ``user`` its login), at Central's time ``at``. It is neither an
    access nor a refusal (success, fail and invalid are 0): the license and product views
    leave it out, the billing view counts its units.
    ``ticket`` has the ticket's ``tid``, ``license_id``, ``customer_id``, ``item_id`` and
    its item's ``product_code``."""
    return {
        "firm_id": firm_id,
        "source": source,
        "container_id": container_id,
        "seq": None,
        "lease_id": None,
        "access_time": at,
        "release_time": None,
        "seconds": 0,
        "success": 0,
        "fail": 0,
        "invalid": 0,
        "firm_code": firm_code,
        "product_code": int(ticket.product_code),
        "feature_code": 0,
        "feature_map": 0,
        "license_id": int(ticket.license_id),
        "ticket_id": ticket.tid,
        "customer_id": ticket.customer_id,
        "item_id": ticket.item_id,
        "user_ident": user,
        "host": "",
        "address": "",
        "mode": "",
        "seat": None,
        "units": units,
    }


def write_units(tx: Writer, rows: list[dict[str, Any]]) -> None:
    """Store units rows (``units_row``) with their rollup upkeep, in the caller's transaction."""
    if not rows:
        return
    days, stale = DayDeltas(), StaleDays(now=max(int(r["access_time"]) for r in rows))
    tx.execute_many(I_EVENT, rows)
    for r in rows:
        days.add_row(r)
        stale.add_row(r)
    days.apply(tx)
    stale.apply(tx)


class RollupService(Service):
    """Rebuilds the rollup from the events (after a bulk load, or to repair it)."""

    def rebuild(
        self, firm_id: uuid.UUID | None = None, first_day: int | None = None, end_day: int | None = None
    ) -> int:
        """Recompute ``usage_days`` from usage_events in one transaction (on PostgreSQL with
        the table locked against writers meanwhile): of one firm or every firm, of the days
        from ``first_day`` up to (not including) ``end_day`` or all of them. The number of
        rollup rows written."""
        n = run_write(self.session, lambda: rebuild_days(self.session, firm_id, first_day, end_day))
        log.info("usage rollup rebuilt: %d row(s)%s", n, "" if firm_id is None else f" of firm {firm_id}")
        return n


def rebuild_days(s: Session, firm_id: uuid.UUID | None, first_day: int | None, end_day: int | None) -> int:
    """``RollupService.rebuild`` inside the caller's transaction."""
    if s.get_bind().dialect.name == "postgresql":
        s.execute(text("LOCK TABLE usage_days IN EXCLUSIVE MODE"))
    e = UsageEvent
    day = (e.access_time // DAY).label("day")
    cols: list[Any] = [e.firm_id, e.item_id, day, e.customer_id, e.ticket_id, e.license_id, e.product_code]
    cols += [e.feature_code, e.user_ident, e.firm_code]
    sums = [func.sum(getattr(e, name)) for name in SUMS]
    conds: list[ColumnElement[bool]] = [e.ticket_id.is_not(None), e.customer_id.is_not(None), e.item_id.is_not(None)]
    kept: list[ColumnElement[bool]] = []  # the rollup rows rebuilt
    if firm_id is not None:
        conds.append(e.firm_id == firm_id)
        kept.append(UsageDay.firm_id == firm_id)
    if first_day is not None:
        conds.append(e.access_time >= first_day * DAY)
        kept.append(UsageDay.day >= first_day)
    if end_day is not None:
        conds.append(e.access_time < end_day * DAY)
        kept.append(UsageDay.day < end_day)
    s.execute(delete(UsageDay).where(*kept))
    grouped = select(*cols, *sums).where(*conds).group_by(*cols)
    names = [*KEY, "firm_code", *SUMS]
    s.execute(insert(UsageDay).from_select(names, grouped))
    return int(s.scalar(select(func.count()).select_from(UsageDay).where(*kept)) or 0)
