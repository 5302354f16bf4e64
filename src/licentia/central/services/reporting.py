"""Usage reporting: three views of the usage store (``usage_events``), page by page.

- license view: one entry per stored use of a license (a session or a refusal), in
  access order;
- product view: per customer, item, license and user, the seconds and successful
  accesses summed;
- billing view: per customer, item and UTC day, the peak of seats held at one instant,
  seat-seconds, units, sessions and refusals.

Every view is read in pages of at most ``MAX_PAGE`` rows with keyset pagination: a page
ends with a cursor (the last row's sort key, bound to the view and the filter) and the
next page starts after it, so no page holds more than its rows and a walk sees each row
once. A vendor key sees its firm's rows, the admin key every firm's; a filter value
outside the caller's scope is answered like one that does not exist.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import hashlib
import heapq
import itertools
import json
import math
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, and_, func, or_, select, tuple_, union_all
from sqlalchemy.orm import Session

from ...core import codes
from ...core.encoding import JsonRejected, b64d, b64e, strict_loads
from ...core.errors import BadInput, Forbidden, NotFound
from ..db import run_read
from ..models import (
    AccountRole,
    Customer,
    Firm,
    Item,
    Role,
    Ticket,
    TicketItem,
    UsageBillingDay,
    UsageBillingStale,
    UsageDay,
    UsageEvent,
    UsageRollupState,
)
from .accounts import Person
from .base import Actor, Service, check_code
from .tickets import normalize

#: rows in a page unless the caller asks for another number, and the most in one page
PAGE_SIZE = 1000
MAX_PAGE = 10000
#: the largest whole number a filter holds (a code in a signed document stays within it)
MAX_NUMBER = 2**53 - 1
DAY = 86400

VIEWS = ("license", "product", "billing")

#: the fields of each view's entries, in the order of a CSV file's columns
LICENSE_FIELDS = (
    "accessTime",
    "fail",
    "featureCode",
    "featureMap",
    "firmCode",
    "invalid",
    "productCode",
    "releaseTime",
    "seconds",
    "success",
    "ticketLicenseId",
    "userIdentification",
)
PRODUCT_FIELDS = ("customer", "item", "name", "seconds", "success", "user")
BILLING_FIELDS = (
    "firmCode",
    "customer",
    "item",
    "name",
    "day",
    "peakSeats",
    "seatSeconds",
    "seatHours",
    "sessions",
    "units",
    "refusals",
)
FIELDS = {"license": LICENSE_FIELDS, "product": PRODUCT_FIELDS, "billing": BILLING_FIELDS}

#: the filter's keys as the API names them, each with the UsageFilter field it fills
FILTER_KEYS = {
    "from": "start",
    "to": "end",
    "customerIdentification": "customer",
    "itemIdentification": "item",
    "firmCode": "firm_code",
    "productCode": "product_code",
    "featureCode": "feature_code",
    "ticketId": "ticket",
}
#: a session whose access mode holds no seat
NO_SEAT_MODE = "nolimit"
#: the billing job's state: when its last complete run began (services/billing.py)
BILLING_FINAL = "billing_final"

BAD_CURSOR = "This cursor is not one that this query's answers gave. Leave it out to start from the first page."


# ---------------------------------------------------------------- times


def parse_time(text: str, *, name: str, end: bool = False) -> int:
    """An ISO 8601 date and time as Unix seconds; without an offset it is UTC. A ``to``
    time (``end``) covers its whole second: 23:59:59 includes 23:59:59.999."""
    example = "2023-08-31T23:59:59"
    if not isinstance(text, str) or len(text) > 40 or not text.isascii() or len(text) < 16 or text[10] not in "Tt ":
        raise BadInput(f"{name} is a date and time like {example} (UTC unless it names an offset).")
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        raise BadInput(f"{name} is a date and time like {example} (UTC unless it names an offset).") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    seconds = when.timestamp()
    return math.floor(seconds) if end else math.ceil(seconds)


#: "HH:MM:" of each minute of a day, and "SS" of each second of a minute
_HOUR_MINUTE = tuple(f"{h:02d}:{m:02d}:" for h in range(24) for m in range(60))
_SECOND = tuple(f"{s:02d}" for s in range(60))


def iso(ts: int) -> str:
    """Unix seconds as the reporting API writes them: UTC, no offset, whole seconds. Twice
    per row of a listing: the day's text comes from a cache, the time of day from tables."""
    day, second = divmod(ts, DAY)
    minute, sec = divmod(second, 60)
    return _day_prefix(day) + _HOUR_MINUTE[minute] + _SECOND[sec]


@functools.lru_cache(maxsize=4096)
def _day_prefix(day: int) -> str:
    """``YYYY-MM-DDT`` of a UTC day (a listing's rows share few days: formatted once each)."""
    return dt.datetime.fromtimestamp(day * DAY, dt.UTC).strftime("%Y-%m-%dT")


def iso_day(day: int) -> str:
    return dt.datetime.fromtimestamp(day * DAY, dt.UTC).date().isoformat()


# ---------------------------------------------------------------- the filter


@dataclass(frozen=True)
class UsageFilter:
    """What a report covers. ``start`` and ``end`` are Unix seconds, both included."""

    start: int | None = None
    end: int | None = None
    customer: str | None = None
    item: str | None = None
    firm_code: int | None = None
    product_code: int | None = None
    feature_code: int | None = None
    ticket: str | None = None

    @classmethod
    def from_api(cls, raw: Mapping[str, Any] | None) -> UsageFilter:
        """The API's filter object (``from``, ``to``, ``customerIdentification``, ...);
        an unknown key is refused, not ignored."""
        raw = dict(raw or {})
        unknown = sorted(set(raw) - set(FILTER_KEYS))
        if unknown:
            raise BadInput(f"Unknown filter key(s): {', '.join(unknown)}. The filter knows {', '.join(FILTER_KEYS)}.")
        values: dict[str, Any] = {}
        for key, name in FILTER_KEYS.items():
            value = raw.get(key)
            if value is None:
                continue
            if key in ("from", "to"):
                values[name] = parse_time(value, name=key, end=key == "to")
            elif key in ("firmCode", "productCode", "featureCode"):
                if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_NUMBER:
                    raise BadInput(f"{key} is a whole number of 0 or more.")
                values[name] = check_code(value) if key == "firmCode" else value
            else:
                if not isinstance(value, str) or not value.strip() or len(value) > 64:
                    raise BadInput(f"{key} is a text of 1 to 64 characters.")
                values[name] = value.strip()
        made = cls(**values)
        if made.start is not None and made.end is not None and made.start > made.end:
            raise BadInput("from is after to: give a period that starts before it ends.")
        return made

    def digest(self, view: str) -> str:
        text = json.dumps({"view": view, **asdict(self)}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


# ---------------------------------------------------------------- queries and pages


@dataclass(frozen=True)
class Scope:
    """What a caller may see and its filter asked for, resolved to ids once: conditions over
    the usage store or any of its rollups (each carries the same scope columns)."""

    firm_ids: tuple[uuid.UUID, ...] | None = None  # None: every firm (the admin key, no filter)
    customer_ids: tuple[uuid.UUID, ...] | None = None
    item_ids: tuple[uuid.UUID, ...] | None = None
    module_tickets: tuple[uuid.UUID, ...] = ()  # tickets that hold the item as a module
    ticket_id: uuid.UUID | None = None
    product_code: int | None = None
    feature_code: int | None = None
    #: a customer's user signed in: its own use only (the views that keep users apart)
    user_ident: str | None = None

    def over(self, t: Any) -> list[ColumnElement[bool]]:
        """The conditions over ``t`` (a mapped class with the scope columns)."""
        conds: list[ColumnElement[bool]] = []

        def one_of(column: Any, ids: tuple[Any, ...]) -> ColumnElement[bool]:
            cond: ColumnElement[bool] = column == ids[0] if len(ids) == 1 else column.in_(ids)
            return cond

        if self.firm_ids is not None:
            conds.append(one_of(t.firm_id, self.firm_ids))
        if self.customer_ids is not None:
            conds.append(one_of(t.customer_id, self.customer_ids))
        if self.item_ids is not None:  # the item itself, or a ticket that holds it as a module
            item = one_of(t.item_id, self.item_ids)
            conds.append(or_(item, t.ticket_id.in_(self.module_tickets)) if self.module_tickets else item)
        if self.ticket_id is not None:
            conds.append(t.ticket_id == self.ticket_id)
        if self.product_code is not None:
            conds.append(t.product_code == self.product_code)
        if self.feature_code is not None:
            conds.append(t.feature_code == self.feature_code)
        if self.user_ident is not None:
            if not hasattr(t, "user_ident"):  # a rollup without users: never read for a user
                raise TypeError(f"{t.__name__} has no user_ident to scope a user's report by")
            conds.append(t.user_ident == self.user_ident)
        return conds


@dataclass(frozen=True)
class UsageQuery:
    """A checked report request: the view, the scope's conditions (resolved once), the
    filter, where the first page starts, and Central's time (open sessions end there)."""

    view: str
    scope: Scope
    filter: UsageFilter
    digest: str
    after: tuple[Any, ...] | None
    now: int

    def cursor(self, key: Sequence[Any]) -> str:
        return b64e(json.dumps({"v": self.view, "f": self.digest, "k": list(key)}, separators=(",", ":")).encode())

    def resumed(self, key: Sequence[Any]) -> UsageQuery:
        return UsageQuery(self.view, self.scope, self.filter, self.digest, tuple(key), self.now)


@dataclass
class Page:
    rows: list[dict[str, Any]]
    cursor: str | None  # None: this is the last page


#: each view's cursor key: the types of its parts
_KEY_TYPES: dict[str, tuple[type, ...]] = {
    "license": (int, int),  # access time, row id
    "product": (int, str, str, int, str),  # firm code, customer, item, license id, user
    "billing": (int, str, str, int),  # firm code, customer, item, day
}


def _after(columns: Sequence[Any], values: Sequence[Any]) -> ColumnElement[bool]:
    """``columns`` sort after ``values`` (lexicographic; written out for any database)."""
    clauses = []
    for i, col in enumerate(columns):
        clauses.append(and_(*(c == v for c, v in zip(columns[:i], values[:i], strict=True)), col > values[i]))
    return or_(*clauses)


def _not_before(columns: Sequence[Any], values: Sequence[Any]) -> ColumnElement[bool]:
    return or_(_after(columns, values), and_(*(c == v for c, v in zip(columns, values, strict=True))))


#: the license view's columns, in the order its entries are built from
LICENSE_COLUMNS = (
    UsageEvent.access_time,
    UsageEvent.release_time,
    UsageEvent.seconds,
    UsageEvent.success,
    UsageEvent.fail,
    UsageEvent.invalid,
    UsageEvent.firm_code,
    UsageEvent.product_code,
    UsageEvent.feature_code,
    UsageEvent.feature_map,
    UsageEvent.license_id,
    UsageEvent.user_ident,
)


class ReportingService(Service):
    """The reporting views over the usage store, for a vendor or the admin key."""

    def query(self, actor: Actor | Person, view: str, flt: UsageFilter, cursor: str | None = None) -> UsageQuery:
        """Check a report request and resolve its scope (a NotFound for a filter value the
        caller does not have, whether or not another firm has it). A signed-in person of a
        customer sees the customer's use (a customer admin) or its own (a user)."""
        if view not in VIEWS:
            raise BadInput(f"The view is one of {', '.join(VIEWS)}.")
        digest = flt.digest(view)
        after = self._cursor_key(view, digest, cursor) if cursor is not None else None
        if isinstance(actor, Person):
            person = actor
            scope = run_read(self.session, lambda: self._person_scope(person, view, flt))
        else:
            caller = actor
            scope = run_read(self.session, lambda: self._scope(caller, flt))
        return UsageQuery(view, scope, flt, digest, after, self.now())

    def page(self, q: UsageQuery, limit: int = PAGE_SIZE) -> Page:
        """One page of ``q``: up to ``limit`` rows after its cursor, and the next cursor."""
        if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= MAX_PAGE:
            raise BadInput(f"limit is a whole number from 1 to {MAX_PAGE}.")

        def tx() -> Page:
            read = {"license": self._license_rows, "product": self._product_rows, "billing": self._billing_rows}
            rows: list[dict[str, Any]] = []
            keys: list[tuple[Any, ...]] = []
            for key, row in read[q.view](q, limit + 1):
                if len(rows) == limit:
                    return Page(rows, q.cursor(keys[-1]))
                rows.append(row)
                keys.append(key)
            return Page(rows, None)

        return run_read(self.session, tx)

    def walk(self, q: UsageQuery, page_size: int = PAGE_SIZE) -> Iterator[dict[str, Any]]:
        """Every row of ``q`` from its cursor on, read a page at a time (each page in its
        own read transaction): for streaming a whole report."""
        while True:
            page = self.page(q, page_size)
            yield from page.rows
            if page.cursor is None:
                return
            q = q.resumed(self._cursor_key(q.view, q.digest, page.cursor))

    def report(
        self, actor: Actor, view: str, flt: UsageFilter, *, cursor: str | None = None, limit: int = PAGE_SIZE
    ) -> Page:
        return self.page(self.query(actor, view, flt, cursor), limit)

    # ------------------------------------------------------------ scope

    def _scope(self, actor: Actor, flt: UsageFilter) -> Scope:
        """The caller's scope and the filter's values as ids (a NotFound for a value outside
        the scope). Where the admin key names a customer, an item or a ticket, their firms
        join the scope: every index of the store leads with the firm."""
        firm_ids: tuple[uuid.UUID, ...] | None = None  # None: every firm (the admin key)
        if not actor.admin or flt.firm_code is not None:
            firm_ids = (self.scoped_firm(actor, flt.firm_code).id,)
        seen_firms: set[uuid.UUID] = set()

        def in_scope(column: Any) -> ColumnElement[bool]:
            cond: ColumnElement[bool] = column.in_(firm_ids) if firm_ids is not None else column.is_not(None)
            return cond

        customer_ids = item_ids = None
        module_tickets: tuple[uuid.UUID, ...] = ()
        ticket_id = None
        if flt.customer is not None:
            rows = self.session.execute(
                select(Customer.id, Customer.firm_id).where(Customer.number == flt.customer, in_scope(Customer.firm_id))
            ).all()
            if not rows:
                raise NotFound(
                    "customer", f"There is no customer {flt.customer} for this API key. Check the customer number."
                )
            customer_ids = tuple(r.id for r in rows)
            seen_firms.update(r.firm_id for r in rows)
        if flt.item is not None:
            text = flt.item.strip(codes.ITEM_ID_SPACE).upper() if flt.item.isascii() else flt.item
            rows = self.session.execute(
                select(Item.id, Item.firm_id).where(Item.item_id == text, in_scope(Item.firm_id))
            ).all()
            if not rows:
                raise NotFound("item", f"There is no item {flt.item} for this API key. Check the item id.")
            item_ids = tuple(r.id for r in rows)
            seen_firms.update(r.firm_id for r in rows)
            # tickets whose base item is another one: resolved here, so that each half of the
            # condition is a range of an index
            module_tickets = tuple(
                self.session.scalars(
                    select(TicketItem.ticket_id)
                    .join(Ticket, Ticket.id == TicketItem.ticket_id)
                    .where(TicketItem.item_id.in_(item_ids), Ticket.item_id.not_in(item_ids))
                    .distinct()
                )
            )
        if flt.ticket is not None:
            ticket = normalize(flt.ticket)
            found = self.session.execute(
                select(Ticket.id, Ticket.firm_id).where(Ticket.ticket == ticket, in_scope(Ticket.firm_id))
            ).first()
            if found is None:
                raise NotFound("ticket", f"There is no ticket {ticket} for this API key. Check the ticket id.")
            ticket_id = found.id
            seen_firms.add(found.firm_id)
        if firm_ids is None and seen_firms:
            firm_ids = tuple(sorted(seen_firms))
        return Scope(
            firm_ids=firm_ids,
            customer_ids=customer_ids,
            item_ids=item_ids,
            module_tickets=module_tickets,
            ticket_id=ticket_id,
            product_code=flt.product_code,
            feature_code=flt.feature_code,
        )

    def _person_scope(self, person: Person, view: str, flt: UsageFilter) -> Scope:
        """A customer's person: the filter resolved within its firm, then narrowed to its
        customer (a customer admin) or to its own use too (a user). A filter value of
        another customer answers as one that does not exist."""
        admin = person.role is AccountRole.customer_admin
        if person.customer_id is None or person.role not in (AccountRole.customer_admin, AccountRole.customer_user):
            raise Forbidden("Usage reports through a session are for a customer's people; the vendor uses its API key.")
        if view == "billing" and not admin:
            raise Forbidden("The billing view is for the customer's admin; a user sees its own use in the other views.")
        within = Actor(person.audit_id, Role.vendor, person.firm_id, person.firm_code)
        try:
            scope = self._scope(within, flt)
        except NotFound as exc:  # in the words of another customer's value below, never others
            thing = exc.code.removeprefix("unknown_")
            if thing not in ("customer", "ticket", "item"):
                raise
            raise self._unknown(thing, flt) from None
        if scope.customer_ids is not None and scope.customer_ids != (person.customer_id,):
            raise self._unknown("customer", flt)
        if scope.ticket_id is not None:
            owner = self.session.scalar(select(Ticket.customer_id).where(Ticket.id == scope.ticket_id))
            if owner != person.customer_id:
                raise self._unknown("ticket", flt)
        return dataclasses.replace(
            scope, customer_ids=(person.customer_id,), user_ident=None if admin else person.login
        )

    @staticmethod
    def _unknown(thing: str, flt: UsageFilter) -> NotFound:
        """A filter value a person's session does not have: one answer whether it is another
        customer's or nobody's."""
        if thing == "customer":
            return NotFound("customer", f"There is no customer {flt.customer} for this session. Check the number.")
        if thing == "ticket":
            ticket = normalize(flt.ticket or "")
            return NotFound("ticket", f"There is no ticket {ticket} for this session. Check the ticket id.")
        return NotFound("item", f"There is no item {flt.item} for this session. Check the item id.")

    @staticmethod
    def _cursor_key(view: str, digest: str, cursor: str) -> tuple[Any, ...]:
        try:
            if not isinstance(cursor, str) or len(cursor) > 1024:
                raise ValueError
            # the strict reader: whole numbers in 64 bits, no lone surrogate (what a database
            # column holds), so a hand-made key fails here, not in the driver
            data = strict_loads(b64d(cursor))
            key = data["k"]
            types = _KEY_TYPES[view]
            if data["v"] != view or data["f"] != digest or not isinstance(key, list) or len(key) != len(types):
                raise ValueError
            if not all(isinstance(v, t) and not isinstance(v, bool) for v, t in zip(key, types, strict=True)):
                raise ValueError
        except (ValueError, KeyError, TypeError, JsonRejected):
            raise BadInput(BAD_CURSOR, reason=f"bad cursor {cursor[:80]!r}") from None
        return tuple(key)

    # ------------------------------------------------------------ the license view

    def _license_rows(self, q: UsageQuery, fetch: int) -> Iterator[tuple[tuple[Any, ...], dict[str, Any]]]:
        e = UsageEvent
        stmt = select(e.id, *LICENSE_COLUMNS).where(*q.scope.over(e), *self.accessed(q.filter), used(e))
        if q.after is not None:  # a row comparison: an index condition, so a page reads its rows only
            stmt = stmt.where(tuple_(e.access_time, e.id) > tuple_(*q.after))
        # the page's rows and the one that tells whether another page follows: a range of the
        # scope's (firm, customer|item, time, id) index, read in order and no further
        stmt = stmt.order_by(e.access_time, e.id).limit(fetch)
        rows = self.session.connection().execute(stmt).all()  # a page: at most MAX_PAGE + 1 rows
        for rid, access, release, seconds, success, fail, invalid, firm, product, feature, fmap, lic, user in rows:
            # the source's field order; releaseTime left out of a refused access's entry
            entry = {
                "accessTime": iso(access),
                "fail": fail,
                "featureCode": feature,
                "featureMap": fmap,
                "firmCode": firm,
                "invalid": invalid,
                "productCode": product,
                "releaseTime": None if release is None else iso(release),
                "seconds": seconds,
                "success": success,
                "ticketLicenseId": lic,
                "userIdentification": user,
            }
            if release is None:
                del entry["releaseTime"]
            yield (access, rid), entry

    @staticmethod
    def accessed(flt: UsageFilter) -> list[ColumnElement[bool]]:
        """The license and product views' period: accessed from ``start`` to ``end``."""
        conds: list[ColumnElement[bool]] = []
        if flt.start is not None:
            conds.append(UsageEvent.access_time >= flt.start)
        if flt.end is not None:
            conds.append(UsageEvent.access_time <= flt.end)
        return conds

    # ------------------------------------------------------------ the product view

    def _product_rows(self, q: UsageQuery, fetch: int) -> Iterator[tuple[tuple[Any, ...], dict[str, Any]]]:
        """The whole UTC days of the period from the rollup (usage_days), its partial first
        and last days from the events, summed per customer, item, license and user."""
        e, d = UsageEvent, UsageDay
        flt = q.filter
        lo = flt.start
        hi = flt.end + 1 if flt.end is not None else None  # the period is [lo, hi)
        first_day = None if lo is None else -(-lo // DAY)  # the first whole day
        end_day = None if hi is None else hi // DAY  # the whole days end before this one
        parts: list[Any] = []
        edges: list[tuple[int | None, int | None]] = []
        if first_day is not None and end_day is not None and first_day > end_day:
            edges.append((lo, hi))  # within one day
        else:
            if first_day is None or end_day is None or first_day < end_day:
                days = q.scope.over(d)
                if first_day is not None:
                    days.append(d.day >= first_day)
                if end_day is not None:
                    days.append(d.day < end_day)
                parts.append(
                    select(
                        d.firm_code, d.customer_id, d.item_id, d.license_id, d.user_ident, d.seconds, d.success
                    ).where(*days, used(d))
                )
            if lo is not None and first_day is not None and lo < first_day * DAY:
                edges.append((lo, first_day * DAY))
            if hi is not None and end_day is not None and end_day * DAY < hi:
                edges.append((end_day * DAY, hi))
        for a, b in edges:
            conds = [*q.scope.over(e), e.ticket_id.is_not(None), used(e)]
            if a is not None:
                conds.append(e.access_time >= a)
            if b is not None:
                conds.append(e.access_time < b)
            parts.append(
                select(e.firm_code, e.customer_id, e.item_id, e.license_id, e.user_ident, e.seconds, e.success).where(
                    *conds
                )
            )
        both: Any = union_all(*parts) if len(parts) > 1 else parts[0]
        u: Any = both.subquery()
        # summed by ids first, then each sum joined to its customer number and item id
        by_ids = (u.c.firm_code, u.c.customer_id, u.c.item_id, u.c.license_id, u.c.user_ident)
        summed: Any = (
            select(*by_ids, func.sum(u.c.seconds).label("seconds"), func.sum(u.c.success).label("success"))
            .group_by(*by_ids)
            .subquery()
        )
        group = (summed.c.firm_code, Customer.number, Item.item_id, summed.c.license_id, summed.c.user_ident)
        stmt = (
            select(*group, Item.name, summed.c.seconds, summed.c.success)
            .select_from(summed)
            .join(Customer, Customer.id == summed.c.customer_id)
            .join(Item, Item.id == summed.c.item_id)
        )
        if q.after is not None:
            stmt = stmt.where(_after(group, q.after))
        stmt = stmt.order_by(*group).limit(fetch)
        for firm_code, customer, item, license_id, user, name, seconds, success in self.session.execute(
            stmt.execution_options(yield_per=500)
        ):
            key = (firm_code, customer, item, license_id, user)
            yield (
                key,
                {
                    "customer": customer,
                    "item": item,
                    "name": name,
                    "seconds": int(seconds or 0),
                    "success": int(success or 0),
                    "user": user,
                },
            )

    # ------------------------------------------------------------ the billing view

    def _billing_rows(self, q: UsageQuery, fetch: int) -> Iterator[tuple[tuple[Any, ...], dict[str, Any]]]:
        """The days the rollup job computed (usage_billing_days) where it covers them: whole
        days of the period that ended before the job's last run began, not marked stale
        since, with no item, ticket, product or feature filter (the rollup is per customer
        and item). Every other day from the events: the period's partial first day, the days
        after the job's last run, and the stale days."""
        flt = q.filter
        lo = flt.start
        hi = flt.end + 1 if flt.end is not None else None  # the period is [lo, hi)
        final = None
        if flt.item is None and flt.ticket is None and flt.product_code is None and flt.feature_code is None:
            final = self.session.scalar(select(UsageRollupState.value).where(UsageRollupState.name == BILLING_FINAL))
        first_day = None if lo is None else -(-lo // DAY)  # the first whole day
        end_day = None if final is None else final // DAY if hi is None else min(hi // DAY, final // DAY)
        if end_day is None or (first_day is not None and first_day >= end_day):
            yield from self._billing_live(q, lo, hi)
            return
        streams = [self._billing_rolled(q, first_day, end_day, fetch), self._billing_stale(q, first_day, end_day)]
        if lo is not None and first_day is not None and lo < first_day * DAY:
            streams.append(self._billing_live(q, lo, first_day * DAY))
        if hi is None or end_day * DAY < hi:
            streams.append(self._billing_live(q, end_day * DAY, hi))
        yield from heapq.merge(*streams, key=lambda kv: kv[0])

    def _billing_rolled(
        self, q: UsageQuery, first_day: int | None, end_day: int, fetch: int
    ) -> Iterator[tuple[tuple[Any, ...], dict[str, Any]]]:
        b, st = UsageBillingDay, UsageBillingStale
        stale = select(st.day).where(st.customer_id == b.customer_id, st.item_id == b.item_id, st.day == b.day)
        key = (b.firm_code, Customer.number, Item.item_id, b.day)
        stmt = (
            select(*key, Item.name, b.peak_seats, b.seat_seconds, b.sessions, b.units, b.refusals)
            .join(Customer, Customer.id == b.customer_id)
            .join(Item, Item.id == b.item_id)
            .where(*q.scope.over(b), b.day < end_day, ~stale.exists())
        )
        if first_day is not None:
            stmt = stmt.where(b.day >= first_day)
        if q.after is not None:
            stmt = stmt.where(_after(key, q.after))
        for r in self.session.execute(stmt.order_by(*key).limit(fetch).execution_options(yield_per=500)):
            yield (
                (r.firm_code, r.number, r.item_id, r.day),
                billing_row((r.firm_code, r.number, r.item_id), r.name, r.day, r.peak_seats, r.seat_seconds)
                | {"sessions": r.sessions, "units": r.units, "refusals": r.refusals},
            )

    def _billing_stale(
        self, q: UsageQuery, first_day: int | None, end_day: int
    ) -> Iterator[tuple[tuple[Any, ...], dict[str, Any]]]:
        """The stale days of the rollup's range, each customer's item's runs of them swept
        from the events."""
        st = UsageBillingStale
        stmt = (
            select(st.firm_id, st.customer_id, st.item_id, st.day, Firm.code, Customer.number)
            .add_columns(Item.item_id.label("item_code"), Item.name)
            .join(Firm, Firm.id == st.firm_id)
            .join(Customer, Customer.id == st.customer_id)
            .join(Item, Item.id == st.item_id)
            .where(*q.scope.over(st), st.day < end_day)
            .order_by(Firm.code, Customer.number, Item.item_id, st.day)
        )
        if first_day is not None:
            stmt = stmt.where(st.day >= first_day)
        marks = self.session.execute(stmt).all()
        for _, group in itertools.groupby(marks, key=lambda m: (m.code, m.number, m.item_code)):
            days = list(group)
            m = days[0]
            head = (int(m.code), m.number, m.item_code)
            for a, b in day_runs([d.day for d in days]):
                for row in sweep_days(self.session, m.firm_id, m.customer_id, m.item_id, a * DAY, (b + 1) * DAY, q.now,
                                      head=head, name=m.name):  # fmt: skip
                    key = (*head, row.pop("_day"))
                    if q.after is None or key > q.after:
                        yield key, row

    def _billing_live(
        self, q: UsageQuery, lo: int | None, hi: int | None
    ) -> Iterator[tuple[tuple[Any, ...], dict[str, Any]]]:
        """The billing view of [lo, hi) swept from the events."""
        e = UsageEvent
        group = (e.firm_code, Customer.number, Item.item_id)
        stmt = (
            select(
                *group,
                Item.name,
                e.id,
                e.access_time,
                e.release_time,
                e.success,
                e.units,
                e.mode,
                e.seat,
                e.lease_id,
            )
            .join(Customer, Customer.id == e.customer_id)
            .join(Item, Item.id == e.item_id)
            .where(*q.scope.over(e), *held_in(lo, hi))
        )
        if q.after is not None:
            stmt = stmt.where(_not_before(group, q.after[:3]))
        stmt = stmt.order_by(*group, e.access_time, e.id).execution_options(yield_per=500)
        sweep: DaySweep | None = None
        for r in self.session.execute(stmt):
            head = (r.firm_code, r.number, r.item_id)
            if sweep is None or sweep.head != head:
                if sweep is not None:
                    yield from self._billing_out(sweep.finish(), q)
                sweep = DaySweep(head, r.name, lo=lo, hi=hi, now=q.now)
            seat = r.seat or r.lease_id or f"#{r.id}"
            yield from self._billing_out(
                sweep.add(r.access_time, r.release_time, r.success > 0, r.units, seat, r.mode != NO_SEAT_MODE), q
            )
        if sweep is not None:
            yield from self._billing_out(sweep.finish(), q)

    @staticmethod
    def _billing_out(rows: Iterator[dict[str, Any]], q: UsageQuery) -> Iterator[tuple[tuple[Any, ...], dict[str, Any]]]:
        for row in rows:
            key = (row["firmCode"], row["customer"], row["item"], row.pop("_day"))
            # the cursor's own customer and item again from its first day (the sweep needs
            # them all): its days up to the cursor's were on the pages before
            if q.after is not None and key[:3] == q.after[:3] and key[3] <= q.after[3]:
                continue
            yield key, row


def used(t: Any) -> ColumnElement[bool]:
    """Rows of ``t`` (the events or the product rollup) that are uses of a license: an access
    or a refusal. Units a container counted outside a session are neither (they count in
    the billing view only)."""
    cond: ColumnElement[bool] = or_(t.success > 0, t.fail > 0, t.invalid > 0)
    return cond


def held_in(lo: int | None, hi: int | None) -> list[ColumnElement[bool]]:
    """The events a billing period [lo, hi) reads: those accessed in it, and the sessions
    held into it (released after it begins, or still open). Each arm of the OR is a range
    of an index of the store (time, release time, open sessions)."""
    e = UsageEvent
    conds: list[ColumnElement[bool]] = []
    if hi is not None:
        conds.append(e.access_time < hi)
    if lo is not None:
        held_past = and_(e.release_time > lo, e.success > 0)
        still_open = and_(e.release_time.is_(None), e.success > 0)
        conds.append(or_(e.access_time >= lo, held_past, still_open))
    return conds


def sweep_days(
    s: Session,
    firm_id: uuid.UUID,
    customer_id: uuid.UUID,
    item_id: uuid.UUID,
    lo: int | None,
    hi: int,
    now: int,
    *,
    head: tuple[int, str, str] = (0, "", ""),
    name: str = "",
) -> list[dict[str, Any]]:
    """The billing rows of one customer's item for each day of [lo, hi) with any use."""
    e = UsageEvent
    stmt = (
        select(e.id, e.access_time, e.release_time, e.success, e.units, e.mode, e.seat, e.lease_id)
        .where(e.firm_id == firm_id, e.customer_id == customer_id, e.item_id == item_id, *held_in(lo, hi))
        .order_by(e.access_time, e.id)
        .execution_options(yield_per=2000)
    )
    sweep = DaySweep(head, name, lo=lo, hi=hi, now=now)
    out: list[dict[str, Any]] = []
    for r in s.execute(stmt):
        seat = r.seat or r.lease_id or f"#{r.id}"
        out += sweep.add(r.access_time, r.release_time, r.success > 0, r.units, seat, r.mode != NO_SEAT_MODE)
    out += sweep.finish()
    return out


def day_runs(days: Sequence[int]) -> Iterator[tuple[int, int]]:
    """Sorted days as runs of consecutive days (first, last)."""
    start = prev = days[0]
    for d in days[1:]:
        if d != prev + 1:
            yield start, prev
            start = d
        prev = d
    yield start, prev


def billing_row(head: tuple[int, str, str], name: str, day: int, peak: int, seat_seconds: int) -> dict[str, Any]:
    """A billing entry's fields up to its seat-hours (the caller adds the counts)."""
    firm_code, customer, item = head
    return {
        "firmCode": firm_code,
        "customer": customer,
        "item": item,
        "name": name,
        "day": iso_day(day),
        "peakSeats": peak,
        "seatSeconds": seat_seconds,
        "seatHours": round(seat_seconds / 3600, 3),
    }


@dataclass
class _Day:
    peak: int = 0
    seat_seconds: int = 0
    sessions: int = 0
    units: int = 0
    refusals: int = 0

    def active(self) -> bool:
        return bool(self.peak or self.seat_seconds or self.sessions or self.units or self.refusals)


@dataclass
class DaySweep:
    """The billing view of one customer and item: a sweep over its sessions in access
    order, closing each UTC day as the sweep passes its end.

    A session holds its seat over [access, release) clipped to the period [lo, hi); one
    still open holds it until ``now``. Sessions on one seat (the ``seat`` column, else
    the lease id) count once, so a seat's held time is the union of its sessions. A day's
    peak is the most distinct seats held at one instant of it (seats held as it begins
    included); seat-seconds are the seconds each seat was held within it. Sessions, units
    and refusals count on the day of their access (within the period).
    """

    head: tuple[int, str, str]
    name: str
    lo: int | None
    hi: int | None
    now: int
    day: int | None = None
    acc: _Day = field(default_factory=_Day)
    ends: list[tuple[int, str]] = field(default_factory=list)  # a heap of (end, seat)
    holders: dict[str, int] = field(default_factory=dict)  # seat -> its open sessions
    since: dict[str, int] = field(default_factory=dict)  # seat -> held since (within this day)

    def add(
        self, access: int, release: int | None, success: bool, units: int, seat: str, holds_seat: bool
    ) -> Iterator[dict[str, Any]]:
        in_period = self.lo is None or access >= self.lo
        if not success:  # a refusal, or units counted outside a session (a container's counter)
            if in_period:
                yield from self._to(access)
                if units:
                    self.acc.units += units
                else:
                    self.acc.refusals += 1
            return
        start = access if in_period else max(access, self.lo or access)
        end = release if release is not None else max(self.now, access)
        if self.hi is not None:
            end = min(end, self.hi)
        yield from self._to(start)
        if in_period:
            self.acc.sessions += 1
            self.acc.units += units
        if holds_seat and end > start:
            heapq.heappush(self.ends, (end, seat))
            held = self.holders.get(seat, 0)
            self.holders[seat] = held + 1
            if not held:
                self.since[seat] = start
                self.acc.peak = max(self.acc.peak, len(self.since))

    def finish(self) -> Iterator[dict[str, Any]]:
        if self.ends:
            yield from self._to(max(end for end, _ in self.ends))
        if self.day is not None and self.acc.active():
            yield self._row()

    def _to(self, t: int) -> Iterator[dict[str, Any]]:
        """Move the sweep to time ``t``: release the seats whose sessions end by then
        (ends first: a session ending when another begins does not overlap it) and close
        the days it passes."""
        if self.day is None:
            self._open(t // DAY)
        while True:
            assert self.day is not None  # noqa: S101 - narrows the type: opened above
            boundary = (self.day + 1) * DAY
            if self.ends and self.ends[0][0] <= min(t, boundary):
                end, seat = heapq.heappop(self.ends)
                self._release(seat, end)
            elif boundary <= t:
                for seat, since in self.since.items():
                    self.acc.seat_seconds += boundary - since
                    self.since[seat] = boundary
                if self.acc.active():
                    yield self._row()
                self._open(self.day + 1 if self.since else t // DAY)
            else:
                return

    def _open(self, day: int) -> None:
        self.day = day
        self.acc = _Day(peak=len(self.since))

    def _release(self, seat: str, end: int) -> None:
        held = self.holders[seat] - 1
        if held:
            self.holders[seat] = held
            return
        del self.holders[seat]
        self.acc.seat_seconds += end - self.since.pop(seat)

    def _row(self) -> dict[str, Any]:
        assert self.day is not None  # noqa: S101 - narrows the type: a row is of an opened day
        a = self.acc
        return billing_row(self.head, self.name, self.day, a.peak, a.seat_seconds) | {
            "sessions": a.sessions,
            "units": a.units,
            "refusals": a.refusals,
            "_day": self.day,
        }


__all__ = [
    "BILLING_FIELDS",
    "FIELDS",
    "LICENSE_FIELDS",
    "MAX_PAGE",
    "PAGE_SIZE",
    "PRODUCT_FIELDS",
    "VIEWS",
    "DaySweep",
    "Page",
    "ReportingService",
    "UsageFilter",
    "UsageQuery",
    "iso",
    "parse_time",
]
