"""License servers' usage logs, anchored at Central and kept in the one usage store.

A license server uploads its usage log (``core.anchoring``: a run of event bodies that
extends a point of its hash chain, signed with the server container's key). Central
verifies the upload with the key the container registered when it first activated a
ticket, recomputes the chain over the bodies, and checks where the run starts against the
anchors it holds for that container (``usage_anchors``, the latest one not superseded):

- no anchor yet (or every one superseded by the vendor's ``container clear``): the upload
  is accepted from any base (trust on first contact); its base and head are anchored;
- the base is the latest anchor: the events are stored, the head anchored;
- the base is an older anchor and the events hash to every anchor they pass, ending at
  an anchor or beyond the latest: the events up to the latest anchor are not stored again
  (counted once), the rest extends it; ending short of the latest anchor where Central
  holds none, nothing could show a rewritten event there: 409 ``anchor_mismatch`` with
  ``anchored_seq`` (the server uploads from the latest anchor, and a rewritten log breaks
  there);
- the base is the latest anchor's sequence with another hash, lies beyond the latest
  anchor (events never uploaded: the log was cut), is an anchored sequence with another
  hash, or the events differ from an anchor they pass: the log was rewritten, cut or
  forked. Nothing of the upload is stored, every active ticket in the container is
  flagged with its item's policy, and the answer is 409 ``usage_chain_broken``;
- the base is below the latest anchor where Central holds none: 409 ``anchor_mismatch``
  with ``anchored_seq`` (the server uploads again from there).

The stored events become usage_events rows (a session one row, its release filled in by
its final event; a refusal one row) with the ticket, customer and item joined. Only the
licenses activated into the uploading server's container count (for a proxy license
server, those of the cloud container of the group it proxies): an event naming another
license (another customer's, or one no ticket has) is skipped and logged, never stored or
checked against that license's seats; a refusal that named no license (license id 0) is kept
with the firm alone. Then the
seat check: per license the upload touches, the most seats held at one instant over the
server's sessions of it, against the ticket's ``quantity``; more is flagged with the
item's policy (the events are stored: the chain is genuine).

Everything runs in one write transaction of the protocol path (``protocol_db``), with the
container's row locked (FOR UPDATE on PostgreSQL; SQLite serializes writers): two uploads
of one container never extend the same anchor, and the (container, seq) key of the
anchors stops a second one if they ever did (the transaction is then retried).
"""

from __future__ import annotations

import datetime as _dt
import logging
import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, delete, exists, insert, select, update

from ...core import anchoring, hazmat
from ...core.anchoring import Upload, UsageEvent
from ...core.documents import DocumentInvalid, DocumentMalformed, parse
from ...core.encoding import b64d
from ...core.errors import (
    GENERIC_UPLOAD,
    AnchorMismatch,
    Conflict,
    InvalidRequest,
    MalformedInput,
    ServiceError,
    UsageRejected,
)
from ..db import run_read
from ..models import CloudContainer, CloudProxy, ContainerFirm, Firm, UsageAnchor
from ..models import UsageEvent as UsageRow
from ..protocol_db import Row, Tx, protocol_for
from . import _protocol_sql as sql
from .activation import COUNTED, ActivationService, _firm, _Outcome, dump
from .rollup import DayDeltas, StaleDays

log = logging.getLogger("licentia.central")

ACTION = "usage-upload"
SOURCE = "server"
#: the kinds that open a session row
OPENING = frozenset({"access", "borrow"})
BROKEN = "usage_chain_broken"
#: how the reason of a chain break's flag starts
CHAIN_BROKEN = "usage log chain broken"
#: how far a server's clock may run ahead of Central's: no event is timed later than that
SKEW = 86400


def _refused(reason: str) -> InvalidRequest:
    """An upload that fails verification: the generic words of an upload, ``reason`` to the log."""
    return InvalidRequest(reason, message=GENERIC_UPLOAD)


_c, _cf, _f, _t = sql._c, sql.table_of(ContainerFirm), sql.table_of(Firm), sql._t
_ue, _ua = sql.table_of(UsageRow), sql.table_of(UsageAnchor)

Q_KEY_OF = select(_c.c.id, _c.c.sign_pub).where(_c.c.serial == bindparam("serial"))
#: The firms of the container's slots, lowest code first (the first signs the anchors).
Q_SLOT_FIRMS = (
    select(_f.c.id, _f.c.code)
    .select_from(_cf.join(_f, _f.c.id == _cf.c.firm_id))
    .where(_cf.c.container_id == bindparam("container"))
    .order_by(_f.c.code)
)
_LIVE = (_ua.c.container_id == bindparam("container"), _ua.c.superseded.is_(None))
Q_LATEST = select(_ua.c.seq, _ua.c.hash).where(*_LIVE).order_by(_ua.c.seq.desc()).limit(1)
#: The anchors an upload starts at or passes.
Q_PASSED = (
    select(_ua.c.seq, _ua.c.hash)
    .where(*_LIVE, _ua.c.seq >= bindparam("base"), _ua.c.seq <= bindparam("head"))
    .order_by(_ua.c.seq)
)
#: A superseded anchor at a sequence a new chain reaches gives way (the key is (container, seq)).
D_SUPERSEDED = delete(_ua).where(
    _ua.c.container_id == bindparam("container"), _ua.c.seq == bindparam("seq"), _ua.c.superseded.is_not(None)
)
I_ANCHOR = insert(_ua)
#: Sequences already in the store (only after the vendor superseded the anchors: a new chain,
#: whose events at those sequences are not stored again).
Q_TAKEN = select(_ue.c.seq).where(
    _ue.c.container_id == bindparam("container"), _ue.c.seq >= bindparam("first"), _ue.c.seq <= bindparam("last")
)
#: a stored row's columns the rollup key is made of
_ROLLED = (
    *("firm_id", "item_id", "access_time", "customer_id", "ticket_id", "success", "release_time"),
    *("license_id", "product_code", "feature_code", "user_ident", "firm_code"),
)
#: The session rows of leases whose final event comes in this upload.
Q_SESSIONS = select(_ue.c.id, _ue.c.lease_id, _ue.c.seconds, *(_ue.c[k] for k in _ROLLED)).where(
    _ue.c.container_id == bindparam("container"), _ue.c.lease_id.in_(bindparam("leases", expanding=True))
)
U_RELEASE = (
    update(_ue).where(_ue.c.id == bindparam("rid")).values(release_time=bindparam("rt"), seconds=bindparam("secs"))
)
I_USAGE = insert(_ue)
Q_TICKETS_OF = select(_t.c.id, _t.c.ticket, _t.c.license_id, _t.c.customer_id, _t.c.item_id, _t.c.options).where(
    _t.c.firm_id == bindparam("firm"), _t.c.license_id.in_(bindparam("licenses", expanding=True))
)
_cc, _px = CloudContainer.__table__, CloudProxy.__table__
#: Of those, the tickets activated into the container (held there now, or before), or into
#: the cloud container of a group whose proxy the container's server is: the only licenses
#: a server's log may name.
Q_TICKETS_HELD = Q_TICKETS_OF.where(
    exists().where(sql._act.c.ticket_id == _t.c.id, sql._act.c.container_id == bindparam("container"))
    | exists().where(
        sql._act.c.ticket_id == _t.c.id,
        sql._act.c.container_id == _cc.c.container_id,
        _cc.c.group_id == _px.c.group_id,
        _px.c.container_id == bindparam("container"),
    )
)
#: A license's sessions on one server that hold a seat at ``since`` or later.
Q_HELD = select(_ue.c.seat, _ue.c.lease_id, _ue.c.access_time, _ue.c.release_time).where(
    _ue.c.container_id == bindparam("container"),
    _ue.c.firm_id == bindparam("firm"),
    _ue.c.license_id == bindparam("license"),
    _ue.c.success == 1,
    _ue.c.lease_id.is_not(None),  # nolimit sessions too: a server grants them only without a seat limit
    (_ue.c.release_time.is_(None)) | (_ue.c.release_time > bindparam("since")),
)
#: Whether the ticket has this flag from this container already, not yet cleared.
Q_SAME_FLAG = (
    select(sql._flag.c.id)
    .where(
        sql._flag.c.ticket_id == bindparam("tid"),
        sql._flag.c.container_id == bindparam("container"),
        sql._flag.c.reason == bindparam("reason"),
        sql._flag.c.cleared.is_(None),
    )
    .limit(1)
)
#: The container's slot for a firm, flagged for the vendor's review.
U_FLAG_SLOT = (
    update(_cf)
    .where(_cf.c.container_id == bindparam("container"), _cf.c.firm_id == bindparam("firm"))
    .values(flagged=True, flagged_at=bindparam("at"))
)
#: Whether the container has a chain break not yet reviewed (the server sends the same log again).
Q_OPEN_BREAK = (
    select(sql._flag.c.id)
    .where(
        sql._flag.c.container_id == bindparam("container"),
        sql._flag.c.cleared.is_(None),
        sql._flag.c.reason.startswith(CHAIN_BROKEN),
    )
    .limit(1)
)
Q_TEMPLATE = select(sql._base.c.options).where(sql._base.c.id == bindparam("item"))


def _iso(ts: int) -> str:
    return _dt.datetime.fromtimestamp(ts, _dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class _Ticket:
    id: uuid.UUID
    ticket: str
    customer_id: uuid.UUID
    item_id: uuid.UUID
    options: dict[str, Any] | None


def peak_seats(sessions: Iterable[tuple[str, int, int]], since: int) -> tuple[int, int]:
    """The most distinct seats held at one instant at ``since`` or later, and the first
    such instant. ``sessions``: (seat, access, release) with the seat held over
    [access, release); sessions of one seat count once."""
    by_seat: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for seat, start, end in sessions:
        start = max(start, since)
        if end > start:
            by_seat[seat].append((start, end))
    marks: list[tuple[int, int]] = []
    for spans in by_seat.values():  # a seat's overlapping sessions make one span
        spans.sort()
        cur_start, cur_end = spans[0]
        for start, end in spans[1:]:
            if start <= cur_end:
                cur_end = max(cur_end, end)
            else:
                marks += [(cur_start, 1), (cur_end, -1)]
                cur_start, cur_end = start, end
        marks += [(cur_start, 1), (cur_end, -1)]
    marks.sort()  # at one instant a seat freed (-1) comes before one taken
    held = peak = 0
    when = since
    for at, step in marks:
        held += step
        if held > peak:
            peak, when = held, at
    return peak, when


class UsageService(ActivationService):
    """Usage uploads of license servers (the activation service's helpers: the firm signer,
    the rate limit, the manipulation policy)."""

    def upload(self, body: bytes, address: str) -> str:
        self.attempts.check(address)
        try:
            try:
                doc = parse(body)
            except DocumentMalformed as exc:  # not JSON we accept: refused before it is read, not counted here
                raise MalformedInput(f"usage upload: {exc.reason}") from None
            except DocumentInvalid as exc:
                raise _refused(f"usage upload rejected: {exc.reason}") from None
            container_id, up = self._verified_upload(doc)
            self._check_times(up)
            outcome = protocol_for(self.ctx.db.engine).run(lambda tx: self._upload_tx(tx, container_id, up))
        except ServiceError as exc:
            if isinstance(exc, COUNTED):
                self.attempts.record(ACTION, address, None)
            raise
        return outcome.result()

    def _verified_upload(self, doc: dict[str, Any]) -> tuple[uuid.UUID, Upload]:
        """The registered container the upload names and the upload, verified with its key."""
        try:
            serial = anchoring.upload_serial(doc)
        except DocumentInvalid as exc:
            raise _refused(f"usage upload rejected: {exc.reason}") from None
        row = run_read(self.session, lambda: self.session.execute(Q_KEY_OF, {"serial": serial}).first())
        if row is None:
            raise _refused(f"usage upload for unknown container {serial}")
        try:
            key = hazmat.Ed25519PublicKey.from_public_bytes(b64d(row.sign_pub))
            return row.id, anchoring.verify_upload(doc, key)
        except DocumentInvalid as exc:
            raise _refused(f"usage upload from {serial} rejected: {exc.reason}") from None

    def _check_times(self, up: Upload) -> None:
        """Refuse the upload whole when an event is timed after Central's clock (and the
        skew a server's may run ahead): its session would hold seats, and mark billing
        days, into a future no report has reached."""
        limit = self.now() + SKEW
        for e in up.events:
            latest = e.latest
            if latest > limit:
                raise UsageRejected(
                    f"usage upload from {up.serial}: event {e.seq} is timed {_iso(latest)}, "
                    f"after Central's time {_iso(limit - SKEW)} and {SKEW} seconds of skew"
                )

    # ---------------------------------------------------------------- the transaction

    def _upload_tx(self, tx: Tx, container_id: uuid.UUID, up: Upload) -> _Outcome:
        row = tx.first(sql.Q_CONTAINER, {"serial": up.serial})  # locked: one upload of a container at a time
        if row is None or row.id != container_id:  # pragma: no cover - containers are never removed
            raise _refused(f"usage upload for unknown container {up.serial}")
        firms = tx.all(Q_SLOT_FIRMS, {"container": container_id})
        if not firms:  # pragma: no cover - a registered container has the slot of its first activation
            raise _refused(f"usage upload from {up.serial}, a container without a firm slot")
        now = self.now()
        latest = tx.first(Q_LATEST, {"container": container_id})
        if latest is None:  # trust on first contact: the base starts Central's chain
            self._anchor(tx, container_id, up.base_seq, up.base_hash, now, up.digest)
            return self._accept(tx, container_id, up, firms, up.events, now)
        if up.base_seq > latest.seq:
            return self._broken(
                tx, container_id, up, firms, f"events {latest.seq + 1} to {up.base_seq} were never uploaded"
            )
        if up.base_seq == latest.seq:
            if up.base_hash != latest.hash:
                return self._broken(tx, container_id, up, firms, f"event {up.base_seq} differs from the anchored one")
            return self._accept(tx, container_id, up, firms, up.events, now)
        passed = tx.all(Q_PASSED, {"container": container_id, "base": up.base_seq, "head": up.head_seq})
        if not passed or passed[0].seq != up.base_seq:
            raise AnchorMismatch(int(latest.seq))
        if passed[0].hash != up.base_hash:
            return self._broken(tx, container_id, up, firms, f"event {up.base_seq} differs from the anchored one")
        anchored = {int(a.seq): a.hash for a in passed[1:]}
        digest = up.base_hash
        for seq, body in enumerate(up.bodies, up.first_seq):
            digest = anchoring.chain(digest, body)
            if anchored.get(seq, digest) != digest:
                return self._broken(
                    tx, container_id, up, firms, f"event {seq} differs from the anchored one (uploaded again)"
                )
        if up.head_seq < latest.seq and up.head_seq not in anchored:
            # it ends among events Central holds, where no anchor tells them genuine: never
            # answered with an anchor (a rewritten event there would be); upload from the last
            raise AnchorMismatch(int(latest.seq))
        new = [e for e in up.events if e.seq > latest.seq]
        if not new:  # counted once already: the latest anchor again
            return _Outcome(response=self._answer(tx, firms, up, int(latest.seq), latest.hash, now, 0, {}, []))
        return self._accept(tx, container_id, up, firms, new, now)

    def _anchor(self, tx: Tx, container_id: uuid.UUID, seq: int, digest: str, now: int, upload: str) -> None:
        tx.execute(D_SUPERSEDED, {"container": container_id, "seq": seq})
        row = {"container_id": container_id, "seq": seq, "hash": digest, "time": now, "upload": upload}
        tx.execute(I_ANCHOR, {**row, "superseded": None})

    def _accept(
        self, tx: Tx, container_id: uuid.UUID, up: Upload, firms: Sequence[Row], new: Sequence[UsageEvent], now: int
    ) -> _Outcome:
        """Store ``new`` (the upload's events Central does not hold yet), anchor the head,
        check the seats, answer the anchor."""
        stored, touched = self._store(tx, container_id, up.serial, firms, new)
        self._anchor(tx, container_id, up.head_seq, up.head_hash, now, up.digest)
        notice: dict[str, list[int]] = {"rebased": [], "withdrawn": []}
        flagged = self._check_seats(tx, container_id, up, firms, touched, new, notice)
        text = self._answer(tx, firms, up, up.head_seq, up.head_hash, now, stored, notice, flagged)
        log.info("usage of %s anchored through event %s (%s rows stored)", up.serial, up.head_seq, stored)
        return _Outcome(response=text)

    def _answer(
        self,
        tx: Tx,
        firms: Sequence[Row],
        up: Upload,
        seq: int,
        digest: str,
        now: int,
        stored: int,
        notice: dict[str, list[int]],
        flagged: list[str],
    ) -> str:
        """The answer: the anchor, signed by the active key of the container's lowest firm."""
        firm = _firm(tx.all(sql.Q_FIRM, {"code": firms[0].code}))
        anchor = anchoring.build_anchor(
            firm_key=self._signer(firm),
            serial=up.serial,
            firm_code=firm.code,
            seq=seq,
            digest=digest,
            time=now,
            upload=up.digest,
        )
        return dump(
            {
                "anchor": anchor,
                "stored": stored,
                "flagged": flagged,
                "withdrawn": sorted(notice.get("withdrawn", [])),
                "rebased": sorted(notice.get("rebased", [])),
            }
        )

    def _broken(self, tx: Tx, container_id: uuid.UUID, up: Upload, firms: Sequence[Row], why: str) -> _Outcome:
        """The log was rewritten, cut or forked: flag every active ticket in the container
        (each firm's slot) with its item's policy; nothing of the upload is stored. A break
        flagged already and not yet reviewed is not flagged again (the server sends its log
        again at every sync until the vendor clears the container)."""
        reason = f"{CHAIN_BROKEN}: {why}"
        log.warning("manipulation detected: container %s: %s", up.serial, reason)
        now = self.now()
        withdrawn: list[int] = []
        seen = tx.first(Q_OPEN_BREAK, {"container": container_id}) is not None
        for firm in [] if seen else firms:
            tx.execute(U_FLAG_SLOT, {"container": container_id, "firm": firm.id, "at": now})
            tickets = [t for (t,) in tx.all(sql.Q_ACTIVE, {"firm": firm.id, "container": container_id})]
            notice = self._flag_tickets(
                tx, up.serial, container_id, firm.id, firm.code, tickets, reason, up.digest, None
            )
            withdrawn += notice["withdrawn"]
        what = f" License(s) {', '.join(map(str, sorted(withdrawn)))} were withdrawn." if withdrawn else ""
        return _Outcome(
            error=Conflict(
                BROKEN,
                f"License Central found the usage log of license server {up.serial} rewritten, cut or forked: "
                f"nothing of this upload was stored and the server was flagged for the vendor's review.{what}",
            )
        )

    # ---------------------------------------------------------------- the store

    def _store(
        self,
        tx: Tx,
        container_id: uuid.UUID | None,
        serial: str,
        firms: Sequence[Row],
        events: Sequence[UsageEvent],
        source: str = SOURCE,
    ) -> tuple[int, dict[tuple[int, int], _Ticket]]:
        """Write ``events`` into usage_events: the number of rows inserted, and the tickets of
        the licenses (firm code, license id) whose sessions they open or end."""
        firm_ids = {int(f.code): f.id for f in firms}
        known, tickets = self._placed(tx, container_id if source == SOURCE else None, serial, firm_ids, events)
        if not known:
            return 0, {}
        taken = {
            s for (s,) in tx.all(Q_TAKEN, {"container": container_id, "first": known[0].seq, "last": known[-1].seq})
        }
        if taken and source == SOURCE:  # a new chain after a clear: what Central holds is never counted twice
            log.warning("usage of %s: events %s are stored already: not stored again", serial, sorted(taken))
            known = [e for e in known if e.seq not in taken]
            if not known:
                return 0, {}
        opened: dict[str, dict[str, Any]] = {}  # lease id -> its new row (this upload)
        rows: list[dict[str, Any]] = []
        ends: dict[str, UsageEvent] = {}  # lease id -> its final event, for a row stored before
        touched: set[tuple[int, int]] = set()

        def row(e: UsageEvent, **changes: Any) -> dict[str, Any]:
            t = tickets.get((e.firm_code, e.license_id))
            out = {
                "firm_id": firm_ids[e.firm_code],
                "source": source,
                "container_id": container_id,
                "seq": None if e.seq in taken else e.seq,  # (the cloud's log: its own sequences)
                "lease_id": e.lease_id,
                "access_time": e.access_time,
                "release_time": None,
                "seconds": 0,
                "success": e.success,
                "fail": e.fail,
                "invalid": e.invalid,
                "firm_code": e.firm_code,
                "product_code": e.product_code,
                "feature_code": e.feature_code,
                "feature_map": e.feature_map,
                "license_id": e.license_id,
                "ticket_id": t.id if t else None,
                "customer_id": t.customer_id if t else None,
                "item_id": t.item_id if t else None,
                "user_ident": e.user,
                "host": e.host,
                "address": e.ip,
                "mode": e.mode,
                "seat": e.seat,
                "units": 0,
            }
            out.update(changes)
            return out

        for e in known:
            if e.kind == "deny":
                rows.append(row(e))
            elif e.kind in OPENING:
                assert e.lease_id is not None  # noqa: S101 - read_event: every kind but deny names its lease
                opened[e.lease_id] = r = row(e)
                rows.append(r)
                touched.add((e.firm_code, e.license_id))
            elif e.kind in anchoring.FINAL_KINDS:
                assert e.lease_id is not None  # noqa: S101 - as above
                release = e.release_time if e.release_time is not None else e.time
                touched.add((e.firm_code, e.license_id))
                if e.lease_id in opened:
                    opened[e.lease_id].update(release_time=release, seconds=e.seconds)
                else:
                    ends[e.lease_id] = e
            # renew, grace, lost: the session goes on as it is
        days = DayDeltas()
        released: list[dict[str, Any]] = []  # stored rows this upload releases
        if ends:
            found: dict[str, list[Row]] = defaultdict(list)
            for stored in tx.all(Q_SESSIONS, {"container": container_id, "leases": sorted(ends)}):
                found[stored.lease_id].append(stored)
            updates = []
            for lease, e in ends.items():
                release = e.release_time if e.release_time is not None else e.time
                if found.get(lease):
                    for stored in found[lease]:
                        updates.append({"rid": stored.id, "rt": release, "secs": e.seconds})
                        before = stored._asdict()
                        days.add_seconds(before, e.seconds - int(stored.seconds))
                        released.append(before | {"release_time": release})
                else:  # its access came before the first anchor: the session from its final event
                    rows.append(row(e, release_time=release, seconds=e.seconds))
            tx.execute_many(U_RELEASE, updates)
        tx.execute_many(I_USAGE, rows)
        stale = StaleDays(self.now())
        for r in rows:
            days.add_row(r)
            stale.add_row(r)
        for r in released:
            stale.add_row(r)
        days.apply(tx)
        stale.apply(tx)
        return len(rows), {k: tickets[k] for k in touched if k in tickets}

    def _placed(
        self,
        tx: Tx,
        held_in: uuid.UUID | None,
        serial: str,
        firm_ids: dict[int, uuid.UUID],
        events: Sequence[UsageEvent],
    ) -> tuple[list[UsageEvent], dict[tuple[int, int], _Ticket]]:
        """The events to store (of the container's firms; with ``held_in``, only those of
        the licenses activated into it, or naming none) and the tickets they name."""
        known: list[UsageEvent] = []
        for e in events:
            if e.firm_code in firm_ids:
                known.append(e)
            else:
                log.warning(
                    "usage of %s: event %s names firm %s, not one of its slots: skipped", serial, e.seq, e.firm_code
                )
        if not known:
            return [], {}
        tickets = self._tickets(tx, firm_ids, known, held_in)
        if held_in is None:
            return known, tickets
        named = [e for e in known if e.license_id == 0 or (e.firm_code, e.license_id) in tickets]
        if len(named) < len(known):
            strays = sorted({(e.firm_code, e.license_id) for e in known if e.license_id} - set(tickets))
            log.warning(
                "usage of %s: %s events name licenses it does not hold (%s): skipped",
                serial,
                len(known) - len(named),
                ", ".join(f"{code}/{lid}" for code, lid in strays),
            )
        return named, tickets

    @staticmethod
    def _tickets(
        tx: Tx, firm_ids: dict[int, uuid.UUID], events: Sequence[UsageEvent], held_in: uuid.UUID | None = None
    ) -> dict[tuple[int, int], _Ticket]:
        """The tickets of the licenses the events name, by (firm code, license id); with
        ``held_in``, only those activated into that container."""
        wanted: dict[int, set[int]] = defaultdict(set)
        for e in events:
            wanted[e.firm_code].add(e.license_id)
        out: dict[tuple[int, int], _Ticket] = {}
        query, extra = (Q_TICKETS_OF, {}) if held_in is None else (Q_TICKETS_HELD, {"container": held_in})
        for code, licenses in wanted.items():
            for t in tx.all(query, {"firm": firm_ids[code], "licenses": sorted(licenses), **extra}):
                out[(code, int(t.license_id))] = _Ticket(t.id, t.ticket, t.customer_id, t.item_id, t.options)
        return out

    # ---------------------------------------------------------------- the seat check

    def _check_seats(
        self,
        tx: Tx,
        container_id: uuid.UUID,
        up: Upload,
        firms: Sequence[Row],
        touched: dict[tuple[int, int], _Ticket],
        new: Sequence[UsageEvent],
        notice: dict[str, list[int]],
    ) -> list[str]:
        """Flag each license whose server held more seats at once than its ticket's quantity,
        from the access of the first session this upload opens or ends on (earlier instants
        were checked before); a session still open holds its seat through the upload's last
        second. The times are the sessions' access and release, never the events' ``time``
        (a server writes that field as it likes). An overrun flagged already and not yet
        cleared is not flagged again (a session of it that ends later checks it again)."""
        if not touched:
            return []
        since = min(e.access_time for e in new if e.lease_id is not None)
        until = max(e.latest for e in up.events)
        firm_ids = {int(f.code): f.id for f in firms}
        flagged = []
        for (code, license_id), t in sorted(touched.items()):
            firm_id = firm_ids[code]
            options = t.options if t.options is not None else tx.scalar(Q_TEMPLATE, {"item": t.item_id}) or {}
            quantity = int(options.get("quantity", 1))
            if quantity == 0:  # no seat limit
                continue
            params = {"container": container_id, "firm": firm_id, "license": license_id, "since": since}
            sessions = [
                (seat or lease, access, release if release is not None else max(until, access) + 1)
                for seat, lease, access, release in tx.all(Q_HELD, params)
            ]
            peak, when = peak_seats(sessions, since)
            if peak <= quantity:
                continue
            reason = f"{peak} seats held at once at {_iso(when)}, {quantity} licensed"
            log.warning("usage of %s: license %s/%s: %s", up.serial, code, license_id, reason)
            if tx.first(Q_SAME_FLAG, {"tid": t.id, "container": container_id, "reason": reason}) is not None:
                continue
            tx.execute(U_FLAG_SLOT, {"container": container_id, "firm": firm_id, "at": self.now()})
            done = self._flag_tickets(tx, up.serial, container_id, firm_id, code, [t.ticket], reason, up.digest, None)
            notice["withdrawn"] += done["withdrawn"]
            notice["rebased"] += done["rebased"]
            flagged.append(f"license {license_id} of firm {code}: {reason}")
        return flagged


__all__ = ["UsageService", "peak_seats"]
