"""The activation protocol: activate, sync and deactivate, authorized by the ticket
or the container's own signature, never by an API key.

Every answer to a request is the FULL state of one firm in one container: every
ticket of that firm activated there, signed license entries (kept from activation),
product keys sealed to the container, the next sequence number and Central's time.
The same request again returns the stored answer byte for byte, with no change.

Counters and rollbacks: every document a container signs reports, per firm slot, its
generation (raised on every state write), the digests of its last documents (the
chain) and its counters under each entry. Central merges the counters into one
activation per signed entry (maximum of units, earliest first use) and keeps the chain
of every (container, firm). A document it knows already is answered idempotently (or,
for a request made before one Central has answered, "superseded"); a document with a
lower generation that is not in the chain, a second successor of one document (a fork),
or counters below what Central recorded is manipulation: the slot is flagged for the
vendor's review, and each active ticket's item policy decides: ``rebase`` re-issues the
entry with Central's counts, ``withdraw`` takes the license back and blocks the ticket
until the vendor clears the container; a second flag within the item's window escalates
to ``withdraw``. The answer says so, and the user gets ``ManipulationDetected``.

Activation and sync are the hot path. Every method here reaches the database one
way: its Core statements (``_protocol_sql``) on the driver's connection, in one write
transaction of ``protocol_db.ProtocolDB.run`` (retried on a lost race like every write
transaction), without a Session. Row locks (FOR UPDATE) on the container, the ticket
and the container's firm slot serialize concurrent writers on PostgreSQL; SQLite
serializes them with BEGIN IMMEDIATE. The documents Central signs come from
``_signed`` with their canonical text and digest, encoded once.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy.orm import Session

from ...core import codes, exchange, hazmat
from ...core.documents import DocumentInvalid, DocumentMalformed, document_digest, parse
from ...core.encoding import JsonRejected, b64d, strict_loads
from ...core.errors import (
    Conflict,
    InvalidReceipt,
    InvalidRequest,
    KeyMismatch,
    MalformedInput,
    NotFound,
    ServiceError,
    TooManyAttempts,
)
from ...core.exchange import Receipt, Request, SlotPosition
from ...core.license import DAY, LicenseEntry, Options
from ..models import Policy, TicketState
from ..protocol_db import Row, Tx, protocol_for
from . import _protocol_sql as sql
from . import _signed
from ._signed import Signed, Signer
from .attempts import AttemptService
from .base import Context, Service
from .catalog import absolute_options, template_expired
from .rollup import units_row, write_units
from .tickets import unknown_ticket

#: A row of a statement (a named tuple); of a joined query: the ticket or firm, one row
#: per firm key (and item).
_Row = Row
#: A signed license entry and its digest.
_Entry = tuple[dict[str, Any], str]
if TYPE_CHECKING:
    _Rows = Sequence[_Row]

log = logging.getLogger("licentia.central")

#: Failures that count toward the rate limit: guesses and forgeries, not honest states.
COUNTED = (InvalidRequest, InvalidReceipt, KeyMismatch)
ACTIVATED = sql.ACTIVATED
DEACTIVATED = TicketState.deactivated.value
BLOCKED = TicketState.blocked.value


def _canonical(ticket: str) -> str | None:
    try:
        return codes.normalize_ticket(ticket)
    except codes.InvalidCode:
        return None


def _ticket_hint(body: bytes) -> str | None:
    """The ticket a rejected document names, if it names a well-formed one."""
    try:
        ticket = strict_loads(body)["payload"]["ticket"]
    except (JsonRejected, KeyError, TypeError):
        return None
    return _canonical(ticket) if isinstance(ticket, str) else None


def _date(ts: int) -> str:
    import datetime as _dt

    return _dt.datetime.fromtimestamp(ts, _dt.UTC).strftime("%Y-%m-%d")


def dump(doc: dict[str, Any]) -> str:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


@dataclass
class _Outcome:
    response: str | None = None
    error: ServiceError | None = None  # raised after the transaction commits (a flag)

    def result(self) -> str:
        if self.error is not None:
            raise self.error
        assert self.response is not None  # noqa: S101 - narrows the type: an outcome without error has a response
        return self.response


@dataclass
class _Slot:
    id: uuid.UUID
    reported_seq: int
    reported_vtime: int
    issued_seq: int
    reported_gen: int = 0
    new: bool = False  # inserted, with its final numbers, when the update is made
    flag: str | None = None  # the manipulation this request showed (the reason, for the log)
    notice: dict[str, list[int]] | None = None  # licenses rebased / withdrawn because of it


@dataclass(frozen=True)
class _Key:
    kid: str
    active: bool
    private_enc: bytes
    endorsement: dict[str, Any] | None


@dataclass(frozen=True)
class _Firm:
    """The firm an answer is for, with its keys oldest first."""

    id: uuid.UUID
    code: int
    name: str
    secret_enc: bytes
    keys: list[_Key]


def _firm(rows: _Rows) -> _Firm:
    """The firm of joined ticket or firm rows (one row per firm key)."""
    first = rows[0]
    return _Firm(first.firm_id, first.code, first.firm_name, first.secret_enc, _keys(rows))


def _keys(rows: _Rows) -> list[_Key]:
    """The firm's keys from joined rows, oldest first, each once."""
    seen: dict[str, tuple[int, _Key]] = {}
    for r in rows:
        seen.setdefault(r.kid, (r.created_seq, _Key(r.kid, r.active, r.private_enc, r.endorsement)))
    return [k for _, k in sorted(seen.values(), key=lambda item: item[0])]


def _feature_map(rows: _Rows) -> int:
    """The feature bits of a ticket's items (base and modules), from its joined rows."""
    fmap = 0
    for row in rows:
        fmap |= row.feature_map
    return fmap


def _message(firm: _Firm, serial: str, notice: dict[str, list[int]]) -> str:
    """What the user reads when Central saw a container's files restored or forked."""
    done = []
    if notice.get("rebased"):
        done.append(
            f"license(s) {', '.join(map(str, notice['rebased']))} were re-issued with the use License Central "
            "had recorded"
        )
    if notice.get("withdrawn"):
        done.append(f"license(s) {', '.join(map(str, notice['withdrawn']))} were withdrawn")
    what = "; ".join(done) or "the container was flagged"
    return (
        f"Manipulation detected: License Central saw the files of container {serial} restored from an older "
        f"copy (or one copy used twice): {what}. If you restored a backup after a failure, tell {firm.name} "
        f"(firm {firm.code}); they review and clear the container."
    )


def _receipt_envelope(body: bytes) -> dict[str, Any]:
    """The receipt document of a deactivation body, parsed but not yet verified."""
    try:
        outer = strict_loads(body)
    except JsonRejected as exc:
        raise MalformedInput(f"deactivation body: {exc}") from None
    if not isinstance(outer, dict) or set(outer) != {"receipt"}:
        raise InvalidReceipt("body is not {'receipt': ...}")
    try:
        doc = parse(outer["receipt"])
    except DocumentInvalid as exc:
        raise InvalidReceipt(exc.reason) from None
    if not isinstance(doc["payload"].get("serial"), str):
        raise InvalidReceipt("receipt names no serial")
    return doc


def _receipt_ticket_hint(doc: dict[str, Any]) -> str | None:
    hint = doc["payload"].get("ticket")
    return _canonical(hint) if isinstance(hint, str) else None


def _check_active_here(ticket: _Row, container: _Row, receipt: Receipt) -> None:
    if ticket.state != ACTIVATED or ticket.container_id != container.id:
        raise Conflict(
            "not_active_here",
            f"License {receipt.license_id} is not active in container {container.serial}: nothing to deactivate.",
        )


def _deactivated(ticket: _Row, firm: _Row, container: _Row) -> str:
    """The answer to a deactivation."""
    return dump(
        {
            "ticket": ticket.ticket,
            "license_id": ticket.license_id,
            "firm_code": firm.code,
            "serial": container.serial,
            "state": DEACTIVATED,
        }
    )


@dataclass(frozen=True)
class ProxyCall:
    """A proxy license server's request, verified: its container, the firm, Central's time."""

    container_id: uuid.UUID
    serial: str
    sign_pub: str
    firm_id: uuid.UUID
    firm_code: int
    signer: Signer
    now: int


@dataclass
class ProxyServed:
    """What a proxy's refresh gives: the full-state update (filled in last), its grant, a
    new session token (the link), or the refusal to raise once the transaction is stored."""

    grant: dict[str, Any] | None = None
    token: str | None = None
    error: ServiceError | None = None
    update: str = ""


class ProxyHandler(Protocol):
    def admit(self, tx: Tx, serial: str, sign_pub: str, firm_code: int) -> None: ...

    def serve(self, tx: Tx, call: ProxyCall, *, flagged: bool) -> ProxyServed: ...


class ActivationService(Service):
    def __init__(self, ctx: Context, session: Session, *, attempts: AttemptService):
        super().__init__(ctx, session)
        self.attempts = attempts

    # ---------------------------------------------------------------- public entry points

    def activate(self, body: bytes, address: str) -> str:
        return self._exchange(body, address, "activate", self._activate_tx)

    def sync(self, body: bytes, address: str) -> str:
        return self._exchange(body, address, "sync", self._sync_tx)

    def report(self, body: bytes, address: str) -> str:
        return self._exchange(body, address, "report", self._report_tx)

    def deactivate(self, body: bytes, address: str) -> str:
        self.attempts.check(address)
        ticket_hint: str | None = None
        try:
            doc = _receipt_envelope(body)
            ticket_hint = _receipt_ticket_hint(doc)
            if ticket_hint is not None:
                self.attempts.check(address, ticket_hint)
            outcome = protocol_for(self.ctx.db.engine).run(lambda tx: self._deactivate_tx(tx, doc))
        except ServiceError as exc:
            self._count(exc, "deactivate", address, ticket_hint)
            raise
        return outcome.result()

    def proxy_sync(self, body: bytes, address: str, handler: ProxyHandler, *, register: bool) -> ProxyServed:
        """A proxy license server's signed sync request (``register``: its first, which may
        register its container): ``handler.admit`` checks the credential against the
        container that signed it, the request's place in the container's chain is checked as
        any request's (a fork flags the slot, and ``handler.serve`` ends the proxy), then
        ``handler.serve`` holds its seats and stores its entries, and the answer is the
        container's full-state update with them. A refusal after a flag is committed first."""
        req = self._verified(body, address, "sync")
        try:
            self._check_action(req, "sync", address)
            served = protocol_for(self.ctx.db.engine).run(
                lambda tx: self._proxy_tx(tx, req, address, handler, register)
            )
        except ServiceError as exc:
            self._count(exc, "sync", address, None)
            raise
        if served.error is not None:
            raise served.error
        return served

    def _proxy_tx(self, tx: Tx, req: Request, address: str, handler: ProxyHandler, register: bool) -> ProxyServed:
        if self._start(tx, req, address) is not None:
            raise Conflict("superseded", "This request was answered already: make a new one.")
        assert req.firm_code is not None  # noqa: S101 - _check_action refused a sync without one
        handler.admit(tx, req.serial, req.sign_pub, req.firm_code)
        container_id, new = self._container(tx, req, register=register)
        rows = tx.all(sql.Q_FIRM, {"code": req.firm_code})
        if not rows:
            raise NotFound("firm", f"There is no firm {req.firm_code} in Central. Check the firm code.")
        firm = _firm(rows)
        slot = self._slot(tx, container_id, firm, req, new=new)
        now = self.now()
        call = ProxyCall(container_id, req.serial, req.sign_pub, firm.id, firm.code, self._firm_signer(firm), now)
        served = handler.serve(tx, call, flagged=slot.notice is not None)
        served.update = self._full_state(tx, req, container_id, firm, slot, now)
        return served

    # ---------------------------------------------------------------- activate / sync

    def _exchange(self, body: bytes, address: str, action: str, work: Callable[[Tx, Request, str], _Outcome]) -> str:
        req = self._verified(body, address, action)
        try:
            self._check_action(req, action, address)
            outcome = protocol_for(self.ctx.db.engine).run(lambda tx: work(tx, req, address))
        except ServiceError as exc:
            self._count(exc, action, address, req.ticket)
            raise
        return outcome.result()

    def _verified(self, body: bytes, address: str, action: str) -> Request:
        """The signed request of ``body``; a forgery counts against the address (and the ticket it names)."""
        try:
            return exchange.verify_request(body)
        except DocumentMalformed as exc:  # not JSON we accept: refused before it is read, not counted here
            raise MalformedInput(f"{action} request: {exc.reason}") from None
        except DocumentInvalid as exc:
            hint = _ticket_hint(body)  # unverified: counted against, never trusted
            self.attempts.check(address, hint)
            self.attempts.record(action, address, hint)
            raise InvalidRequest(f"{action} request rejected: {exc.reason}") from None

    def _check_action(self, req: Request, action: str, address: str) -> None:
        if req.action != action:
            problem = f"a {req.action!r} request was sent to the {action} endpoint"
        elif action in ("sync", "report") and req.firm_code is None:
            problem = f"{action} request without firm_code"
        else:
            return
        self.attempts.check(address, req.ticket)
        raise InvalidRequest(problem)

    def _count(self, exc: ServiceError, action: str, address: str, ticket: str | None) -> None:
        if isinstance(exc, COUNTED) or exc.code == "unknown_ticket":
            self.attempts.record(action, address, ticket)

    def _start(self, tx: Tx, req: Request, address: str) -> str | None:
        """Rate limit, then the stored answer to this very request (if any)."""
        s = self.ctx.settings
        since = self.now() - s.attempt_window
        params = {"digest": req.digest, "since": since, "address": address, "ticket": req.ticket}
        done: str | None
        done, by_address, by_ticket = tx.one(sql.Q_START, params)
        if by_address >= s.attempts_per_address or by_ticket >= s.attempts_per_ticket:
            raise TooManyAttempts(s.attempt_window)
        return done

    def _activate_tx(self, tx: Tx, req: Request, address: str) -> _Outcome:
        done = self._start(tx, req, address)
        if done is not None:
            return _Outcome(response=done)
        now = self.now()
        container_id, new_container = self._container(tx, req, register=True)
        rows = self._ticket_rows(tx, req)
        self._check_ticket(tx, rows[0], req.level, container_id, now)
        firm = _firm(rows)
        slot = self._slot(tx, container_id, firm, req, new=new_container)
        if slot.notice is not None:
            rows = self._ticket_rows(tx, req)  # the manipulation may have re-issued or withdrawn it
            if rows[0].state == BLOCKED:
                return _Outcome(response=self._full_state(tx, req, container_id, firm, slot, now))
        signed = self._bind_ticket(tx, rows, req.serial, req.sign_pub, container_id, firm, now)
        log.info("ticket %s activated in %s", req.ticket, req.serial)
        # a container registered just now holds this ticket alone
        known = [(signed.doc, signed.digest)] if new_container else None
        return _Outcome(response=self._full_state(tx, req, container_id, firm, slot, now, known))

    def _known_slot(self, tx: Tx, req: Request) -> tuple[uuid.UUID, _Firm, _Slot]:
        """The registered container, the firm a sync or report names, and its slot (checked)."""
        container_id, _ = self._container(tx, req, register=False)
        rows = tx.all(sql.Q_FIRM, {"code": req.firm_code})
        if not rows:
            raise NotFound("firm", f"There is no firm {req.firm_code} in Central. Check the firm code.")
        firm = _firm(rows)
        return container_id, firm, self._slot(tx, container_id, firm, req)

    def _sync_tx(self, tx: Tx, req: Request, address: str) -> _Outcome:
        done = self._start(tx, req, address)
        if done is not None:
            return _Outcome(response=done)
        container_id, firm, slot = self._known_slot(tx, req)
        return _Outcome(response=self._full_state(tx, req, container_id, firm, slot, self.now()))

    def _report_tx(self, tx: Tx, req: Request, address: str) -> _Outcome:
        """A usage report: counters merged, the chain checked like any request. When the
        container holds what Central would send, the answer is a firm-signed
        acknowledgement with Central's time (a sync, no new sequence number, nothing
        sealed); otherwise (a revocation, a renewal, a rebase) the full-state update."""
        done = self._start(tx, req, address)
        if done is not None:
            return _Outcome(response=done)
        container_id, firm, slot = self._known_slot(tx, req)
        now = self.now()
        live = {d: u for d, u in tx.all(sql.Q_LIVE, {"container": container_id, "firm": firm.id})}
        if slot.new or slot.notice is not None or set(live) != set(req.position(firm.code).counters):
            return _Outcome(response=self._full_state(tx, req, container_id, firm, slot, now))
        self._advance_slot(tx, req, container_id, firm, slot, now, issue=False)
        signed = _signed.ack(
            self._firm_signer(firm),
            firm_code=firm.code,
            serial=req.serial,
            now=now,
            request_digest=req.digest,
            recorded={d: int(u) for d, u in live.items()},
        )
        self._store_answer(tx, req, container_id, firm, signed.text, now)
        return _Outcome(response=signed.text)

    def _container(self, tx: Tx, req: Request, *, register: bool) -> tuple[uuid.UUID, bool]:
        """The container's id (row locked), and whether this request registered it."""
        if register:
            new_id = self._register(tx, req)
            if new_id is not None:
                return new_id, True
        row = tx.first(sql.Q_CONTAINER, {"serial": req.serial})
        if row is None:
            raise NotFound(
                "container",
                f"Container {req.serial} has no licenses from Central yet: activate a ticket first.",
            )
        if row.sign_pub != req.sign_pub:
            raise KeyMismatch(f"request for {req.serial} signed by a key other than the registered one")
        if row.box_pub != req.box_pub:  # signed by the registered key: the container's own choice
            tx.execute(sql.U_BOX, {"cid": row.id, "box": req.box_pub})
        return row.id, False

    def _register(self, tx: Tx, req: Request) -> uuid.UUID | None:
        """Insert the requesting container unless its serial is known: its new id, or None."""
        new_id = uuid.uuid4()
        params = {
            "id": new_id,
            "serial": req.serial,
            "level": req.level,
            "sign_pub": req.sign_pub,
            "box_pub": req.box_pub,
            "created": self.now(),
        }
        inserted = tx.first(sql.I_CONTAINER[tx.dialect.name], params)
        return None if inserted is None else new_id

    @staticmethod
    def _ticket_rows(tx: Tx, req: Request) -> _Rows:
        """The requested ticket (row locked) joined with its firm, items and firm keys."""
        rows = tx.all(sql.Q_TICKET, {"ticket": req.ticket})
        if not rows:
            raise unknown_ticket(str(req.ticket))
        return rows

    @staticmethod
    def _check_ticket(tx: Tx, t: _Row, level: str | None, container_id: uuid.UUID, now: int) -> None:
        """Refuse a revoked or blocked ticket, a dead item, a container of the wrong level
        (``level`` None: a cloud container, whatever the item's level), a ticket active
        elsewhere."""
        if t.state == TicketState.revoked.value:
            raise Conflict("ticket_revoked", "This ticket has been revoked. Contact the vendor.")
        if t.state == BLOCKED:
            raise Conflict(
                "ticket_blocked",
                "This ticket is blocked: License Central saw the files of the container that held it restored "
                f"from an older copy. Contact {t.firm_name} (firm {t.code}) to have it cleared.",
            )
        if template_expired(t.template, now):
            when = _date(t.template["expires"])
            raise Conflict("item_expired", f"This product expired on {when} and can no longer be activated.")
        if level is not None and t.level != level:
            raise Conflict(
                "wrong_level",
                f"this ticket needs a container of binding level {t.level}: activate with --level {t.level}",
            )
        if t.state == ACTIVATED and t.container_id != container_id:
            other = tx.scalar(sql.Q_SERIAL, {"id": t.container_id})
            if str(other).startswith(codes.SERIAL_PREFIX_CLOUD + "-"):
                raise Conflict(
                    "ticket_bound_elsewhere",
                    f"This ticket is active in cloud container {other}. Take it out of the cloud first "
                    "('licentia vendor ticket cloud-deactivate TICKET', or its group's admin), then activate it here.",
                )
            raise Conflict(
                "ticket_bound_elsewhere",
                f"This ticket is active in container {other}. Deactivate it there first "
                "('licentia deactivate TICKET' on that machine, or 'licentia server deactivate TICKET' if a "
                "license server holds it), then activate it here.",
            )

    def _bind_ticket(
        self,
        tx: Tx,
        rows: _Rows,
        serial: str,
        sign_pub: str,
        container_id: uuid.UUID,
        firm: _Firm,
        now: int,
    ) -> Signed:
        """Sign a new license entry of the ticket for the container (a new activation, carrying
        what Central recorded of the ticket's use) and mark the ticket active there. The
        options are fixed at the first activation; the ticket's earlier activations end."""
        t = rows[0]
        changes: dict[str, Any] = {}
        options = t.options
        if t.first_activated is None:
            options = absolute_options(t.template, now).to_json()
            changes.update(first_activated=now, options=options)
        consumed, first_use = 0, None
        if t.activation_count:  # activated before: carry its use, end its earlier activation
            consumed, first_use = tx.one(sql.Q_TOTALS, {"tid": t.id})
            tx.execute(sql.U_END, {"tid": t.id, "at": now})
        number = t.activation_count + 1
        entry = LicenseEntry(
            firm_code=t.code,
            product_code=t.product_code,
            feature_map=_feature_map(rows),
            text=t.name,
            license_id=t.license_id,
            serial=serial,
            container_key=sign_pub,
            options=Options.from_json(options),
            issued=now,
            ticket=t.ticket,
            key_versions=tuple(t.key_versions),
            consumed_base=int(consumed),
            first_use=first_use,
            activation=number,
        )
        signed = _signed.sign("license", entry.payload(), self._firm_signer(firm))
        activation = {
            "id": uuid.uuid4(),
            "ticket_id": t.id,
            "container_id": container_id,
            "number": number,
            "digest": signed.digest,
            "units": 0,
            "online_units": 0,
            "first_use": None,
            "created": now,
            "ended": None,
        }
        tx.execute(sql.I_ACTIVATION, activation)
        changes.update(
            state=ACTIVATED, container_id=container_id, activated=now, entry=signed.text, activation_count=number
        )
        tx.execute(sql.U_TICKET, {"tid": t.id, **changes})
        return signed

    # ------------------------------------------------------------ cloud containers (Central holds them)

    def bind_cloud(
        self, tx: Tx, ticket: str, serial: str, sign_pub: str, container_id: uuid.UUID, now: int
    ) -> Signed | None:
        """Activate ``ticket`` into a cloud container that Central itself holds: no request,
        the same checks and the same firm-signed entry as any activation. None when the
        ticket is active in that container already."""
        rows = tx.all(sql.Q_TICKET, {"ticket": ticket})  # the ticket's row locked
        if not rows:
            raise unknown_ticket(ticket)
        t = rows[0]
        if t.state == ACTIVATED and t.container_id == container_id:
            return None
        self._check_ticket(tx, t, None, container_id, now)
        signed = self._bind_ticket(tx, rows, serial, sign_pub, container_id, _firm(rows), now)
        log.info("ticket %s activated in cloud container %s", ticket, serial)
        return signed

    @staticmethod
    def unbind_cloud(tx: Tx, ticket_id: uuid.UUID, now: int) -> None:
        """Take a ticket out of the cloud container that holds it: it may be activated anew."""
        tx.execute(sql.U_END, {"tid": ticket_id, "at": now})
        tx.execute(sql.U_TICKET, {"tid": ticket_id, "state": DEACTIVATED, "container_id": None})

    def _slot(self, tx: Tx, container_id: uuid.UUID, firm: _Firm, req: Request, *, new: bool = False) -> _Slot:
        """The container's slot for the firm (locked), at the position the request reports,
        its counters merged; a request that shows manipulation is handled here (``flag``)."""
        row = None if new else tx.first(sql.Q_SLOT, {"container": container_id, "firm": firm.id})
        p = req.position(firm.code)
        if row is None:
            slot = _Slot(uuid.uuid4(), 0, 0, 0, new=True)
        else:
            slot = _Slot(row.id, row.reported_seq, row.reported_vtime, row.issued_seq, row.reported_gen)
            known, reason = self._chain(tx, slot, req.digest, p, late_ok=False)
            if known:
                raise Conflict(
                    "superseded",
                    "This request was made before a later one that License Central has answered already: "
                    "it is superseded. Make a new request (run the command again) and use its answer.",
                )
            below = self._merge(tx, container_id, firm, p)
            reason = reason or (below[0] if below else None)
            if reason is not None:
                slot.flag = reason
                slot.notice = self._manipulated(tx, req.serial, req.sign_pub, container_id, firm, slot, req.digest)
        slot.reported_seq = max(slot.reported_seq, p.seq)
        slot.reported_vtime = max(slot.reported_vtime, p.vtime)
        return slot

    @staticmethod
    def _chain(tx: Tx, slot: _Slot, digest: str, p: SlotPosition, *, late_ok: bool) -> tuple[bool, str | None]:
        """Where a document stands in the slot's chain: (known to Central already, the
        manipulation it shows or None). ``late_ok``: a document that may arrive after later
        ones (a receipt) is not judged by its generation."""
        if p.gen is None:
            if slot.reported_gen > 0:
                return False, "a document without a generation after documents with one"
            return False, None
        wanted = [digest, *p.prev[:1]]
        links = {r.digest: r for r in tx.all(sql.Q_LINKS, {"slot": slot.id, "digests": wanted})}
        if digest in links:
            return True, None
        parent = links.get(p.prev[0]) if p.prev else None
        if parent is not None and parent.successor not in (None, digest):
            return False, f"fork: document {p.prev[0][:16]} already has the successor {parent.successor[:16]}"
        if not late_ok and p.gen <= slot.reported_gen:
            return False, f"generation {p.gen} is not above {slot.reported_gen} and the document is not in the chain"
        return False, None

    @staticmethod
    def _link(tx: Tx, slot: _Slot, digest: str, p: SlotPosition, now: int) -> None:
        """Record a document in the slot's chain: itself, its parent's successor, its ancestors."""
        if p.gen is None:
            return
        stmts = sql.I_LINK[tx.dialect.name]
        row = {"slot_id": slot.id, "digest": digest, "gen": p.gen, "successor": None, "created": now}
        tx.execute(stmts["doc"], row)
        if p.prev:
            tx.execute(stmts["parent"], {**row, "digest": p.prev[0], "gen": None, "successor": digest})
        if len(p.prev) > 1:
            tx.execute_many(stmts["ancestor"], [{**row, "digest": d, "gen": None} for d in p.prev[1:]])

    def _merge(self, tx: Tx, container_id: uuid.UUID, firm: _Firm | Row, p: SlotPosition) -> list[str]:
        """Merge a document's counters into the live activations they name (the maximum of
        units, the earliest first use); return how each fell below what Central recorded.
        The units a counter gained go into the usage store (source ``container``)."""
        if not p.counters:
            return []
        below = []
        gained = []
        for row in tx.all(sql.Q_COUNTED, {"container": container_id, "digests": sorted(p.counters)}):
            c = p.counters[row.digest]
            if c.units < row.units:
                below.append(f"units {c.units} below the {row.units} recorded under entry {row.digest[:16]}")
            if row.first_use is not None and (c.first_use is None or c.first_use > row.first_use):
                below.append(f"first use {c.first_use} after the {row.first_use} recorded under {row.digest[:16]}")
            firsts = [f for f in (c.first_use, row.first_use) if f is not None]
            units, first = max(c.units, row.units), (min(firsts) if firsts else None)
            if (units, first) != (row.units, row.first_use):
                tx.execute(sql.U_COUNTED, {"aid": row.id, "units": units, "first": first})
            if units > row.units:
                gained.append(
                    units_row(
                        source="container",
                        firm_id=firm.id,
                        firm_code=firm.code,
                        container_id=container_id,
                        ticket=row,
                        units=units - row.units,
                        at=self.now(),
                    )
                )
        write_units(tx, gained)
        return below

    def _manipulated(
        self,
        tx: Tx,
        serial: str,
        sign_pub: str,
        container_id: uuid.UUID,
        firm: _Firm,
        slot: _Slot,
        digest: str,
    ) -> dict[str, list[int]]:
        """Flag the slot for review and apply each active ticket's policy: re-issue its entry
        with Central's counts (rebase) or take it back and block the ticket (withdraw)."""
        now = self.now()
        log.warning("manipulation detected: container %s firm %s: %s", serial, firm.code, slot.flag)
        tx.execute(sql.U_FLAG, {"slot_id": slot.id, "at": now})
        tickets = [t for (t,) in tx.all(sql.Q_ACTIVE, {"firm": firm.id, "container": container_id})]

        def rebind(rows: _Rows) -> None:
            self._bind_ticket(tx, rows, serial, sign_pub, container_id, firm, now)

        reason = slot.flag or "manipulation"
        return self._flag_tickets(tx, serial, container_id, firm.id, firm.code, tickets, reason, digest, rebind)

    def _flag_tickets(
        self,
        tx: Tx,
        serial: str,
        container_id: uuid.UUID,
        firm_id: uuid.UUID,
        firm_code: int,
        tickets: Sequence[str],
        reason: str,
        digest: str,
        rebind: Callable[[_Rows], None] | None,
    ) -> dict[str, list[int]]:
        """Record a flag (``reason``, seen in the document ``digest``) for each of ``tickets``
        (of one firm, in the container) and apply its item's policy: ``withdraw`` (or a
        second flag within the item's window) ends the activation and blocks the ticket;
        ``rebase`` calls ``rebind`` (re-issue the entry), or without one only records the
        flag. A ticket not active in the container has nothing to withdraw: its flag is
        recorded. No tickets: one flag for the container."""
        now = self.now()
        notice: dict[str, list[int]] = {"rebased": [], "withdrawn": []}
        flag = {
            "time": now,
            "container_id": container_id,
            "firm_id": firm_id,
            "reason": reason,
            "document": digest,
            "cleared": None,
        }
        for ticket in tickets:
            rows = tx.all(sql.Q_TICKET, {"ticket": ticket})
            t = rows[0]
            here = t.state == ACTIVATED and t.container_id == container_id
            earlier = tx.scalar(sql.Q_FLAGS, {"tid": t.id, "since": now - t.flag_window_days * DAY})
            withdraw = here and (t.policy == Policy.withdraw.value or bool(earlier))
            action = Policy.withdraw.value if withdraw else Policy.rebase.value
            tx.execute(sql.I_FLAG, {**flag, "ticket_id": t.id, "action": action})
            if withdraw:
                tx.execute(sql.U_END, {"tid": t.id, "at": now})
                tx.execute(sql.U_TICKET, {"tid": t.id, "state": BLOCKED, "container_id": None})
                notice["withdrawn"].append(t.license_id)
            elif here:
                if rebind is not None:
                    rebind(rows)
                notice["rebased"].append(t.license_id)
        if not tickets:
            tx.execute(sql.I_FLAG, {**flag, "ticket_id": None, "action": Policy.rebase.value})
        _audit(tx, firm_code, now, {"serial": serial, "reason": reason, **notice})
        return notice

    def _signer(self, firm: _Firm) -> hazmat.Ed25519PrivateKey:
        return self._firm_signer(firm).key

    def _firm_signer(self, firm: _Firm) -> Signer:
        active = next(k for k in firm.keys if k.active)
        return self.ctx.signer(firm.code, active.kid, active.private_enc)

    def _full_state(
        self,
        tx: Tx,
        req: Request,
        container_id: uuid.UUID,
        firm: _Firm,
        slot: _Slot,
        now: int,
        known: list[_Entry] | None = None,
    ) -> str:
        """The signed update with every license of the firm in the container (``known``,
        or read here), stored as the answer to this request."""
        if known is None:
            known = self._entries(tx, container_id, firm)
        sealed = self._sealed_keys(req, firm, known)
        seq = self._advance_slot(tx, req, container_id, firm, slot, now)
        notice = slot.notice
        signed = _signed.update(
            self._firm_signer(firm),
            firm_code=firm.code,
            serial=req.serial,
            seq=seq,
            now=now,
            entries=[doc for doc, _ in known],
            sealed_keys=sealed,
            request_digest=req.digest,
            endorsements=[k.endorsement for k in firm.keys if k.endorsement],
            message=None if notice is None else _message(firm, req.serial, notice),
            manipulation=notice,
        )
        self._store_answer(tx, req, container_id, firm, signed.text, now)
        return signed.text

    def _entries(self, tx: Tx, container_id: uuid.UUID, firm: _Firm) -> list[_Entry]:
        """The signed entries of the firm's tickets active in the container, then those of
        a live proxy license server in it (``cloud_proxies``), with their digests."""
        rows = tx.all(sql.Q_STATE, {"firm": firm.id, "container": container_id})
        docs = [json.loads(text) for (text,) in rows]
        for (texts,) in tx.all(sql.Q_PROXIED, {"firm": firm.id, "container": container_id, "now": self.now()}):
            docs.extend(json.loads(text) for text in json.loads(texts))
        return [(doc, document_digest(doc)) for doc in docs]

    def _sealed_keys(self, req: Request, firm: _Firm, known: list[_Entry]) -> list[dict[str, Any]]:
        """Each entry's product keys, one per key version, sealed to the container's box key."""
        box_pub = b64d(req.box_pub)
        sealed: list[dict[str, Any]] = []
        for doc, digest in known:
            payload = doc["payload"]
            for version in payload["key_versions"]:
                key = self.ctx.product_key(firm.code, payload["product_code"], version, firm.secret_enc)
                sealed.append(exchange.seal_product_key(box_pub, req.serial, digest, version, key))
        return sealed

    def _advance_slot(
        self,
        tx: Tx,
        req: Request,
        container_id: uuid.UUID,
        firm: _Firm,
        slot: _Slot,
        now: int,
        *,
        issue: bool = True,
    ) -> int:
        """Write the slot's reported position, generation and (``issue``: an update is
        made) next sequence number, and the request in the slot's chain; return the number."""
        p = req.position(firm.code)
        seq = max(slot.issued_seq, p.seq) + 1 if issue else slot.issued_seq
        # after manipulation the restored line is the one that goes on: its generation counts
        gen = slot.reported_gen if p.gen is None else (p.gen if slot.flag else max(slot.reported_gen, p.gen))
        numbers = {
            "reported_seq": slot.reported_seq,
            "reported_vtime": slot.reported_vtime,
            "issued_seq": seq,
            "reported_gen": gen,
            "last_contact": now,
        }
        if slot.new:
            row = {"id": slot.id, "container_id": container_id, "firm_id": firm.id, "flagged": False, **numbers}
            tx.execute(sql.I_SLOT, row)
        else:
            tx.execute(sql.U_SLOT, {"slot_id": slot.id, **numbers})
        self._link(tx, slot, req.digest, p, now)
        return seq

    @staticmethod
    def _store_answer(tx: Tx, req: Request, container_id: uuid.UUID, firm: _Firm, text: str, now: int) -> None:
        row = {
            "digest": req.digest,
            "container_id": container_id,
            "firm_id": firm.id,
            "action": req.action,
            "response": text,
            "created": now,
        }
        tx.execute(sql.I_DONE, row)

    # ---------------------------------------------------------------- deactivate

    def _deactivate_tx(self, tx: Tx, doc: dict[str, Any]) -> _Outcome:
        container, receipt = self._verified_receipt(tx, doc)
        done = tx.scalar(sql.Q_RECEIPT_DONE, {"digest": receipt.digest})
        if done is not None:
            return _Outcome(response=done)
        firm, ticket = self._receipt_license(tx, receipt)
        _check_active_here(ticket, container, receipt)
        self._release(tx, ticket, container, firm, receipt)
        text = _deactivated(ticket, firm, container)
        row = {
            "digest": receipt.digest,
            "container_id": container.id,
            "ticket_id": ticket.id,
            "response": text,
            "created": self.now(),
        }
        tx.execute(sql.I_RECEIPT, row)
        log.info("ticket %s deactivated in %s", ticket.ticket, container.serial)
        return _Outcome(response=text)

    @staticmethod
    def _verified_receipt(tx: Tx, doc: dict[str, Any]) -> tuple[_Row, Receipt]:
        """The container a receipt names (row locked) and the receipt, verified with its key."""
        serial = doc["payload"]["serial"]
        container = tx.first(sql.Q_CONTAINER, {"serial": serial})
        if container is None:
            raise InvalidReceipt(f"receipt for unknown container {serial!r}")
        try:
            receipt = exchange.verify_receipt(doc, hazmat.Ed25519PublicKey.from_public_bytes(b64d(container.sign_pub)))
        except DocumentInvalid as exc:
            raise InvalidReceipt(f"receipt for {serial}: {exc.reason}") from None
        if receipt.serial != container.serial:  # pragma: no cover - looked up by this serial
            raise InvalidReceipt("receipt serial mismatch")
        return container, receipt

    @staticmethod
    def _receipt_license(tx: Tx, receipt: Receipt) -> tuple[_Row, _Row]:
        """The firm and the ticket (row locked) of the license a receipt names."""
        firm = tx.first(sql.Q_FIRM_ID, {"code": receipt.firm_code})
        ticket = None
        if firm is not None:
            ticket = tx.first(sql.Q_LICENSE, {"firm": firm.id, "license": receipt.license_id})
        if firm is None or ticket is None:
            raise InvalidReceipt(f"receipt names unknown license {receipt.firm_code}/{receipt.license_id}")
        if receipt.ticket is not None and _canonical(receipt.ticket) != ticket.ticket:
            raise InvalidReceipt(
                f"receipt names ticket {receipt.ticket!r} but license {receipt.license_id} is ticket {ticket.ticket}"
            )
        return firm, ticket

    def _release(self, tx: Tx, ticket: _Row, container: _Row, firm: _Row, receipt: Receipt) -> None:
        """Take the ticket out of the container; the slot learns the receipt's position, its
        chain and counters (a receipt may arrive after later documents: its generation is not
        judged, a fork or counters below Central's are flagged for review)."""
        now = self.now()
        row = tx.first(sql.Q_SLOT, {"container": container.id, "firm": firm.id})
        if row is not None:
            p = receipt.position
            slot = _Slot(row.id, row.reported_seq, row.reported_vtime, row.issued_seq, row.reported_gen)
            _, reason = self._chain(tx, slot, receipt.digest, p, late_ok=True)
            below = self._merge(tx, container.id, firm, p)
            reason = reason or (below[0] if below else None)
            if reason is not None:
                log.warning("manipulation detected: container %s firm %s: %s", container.serial, firm.code, reason)
                tx.execute(sql.U_FLAG, {"slot_id": slot.id, "at": now})
                flag = {
                    "time": now,
                    "container_id": container.id,
                    "firm_id": firm.id,
                    "ticket_id": ticket.id,
                    "action": Policy.rebase.value,
                    "reason": reason,
                    "document": receipt.digest,
                    "cleared": None,
                }
                tx.execute(sql.I_FLAG, flag)
                detail = {"serial": container.serial, "reason": reason, "receipt": ticket.ticket}
                _audit(tx, firm.code, now, detail)
            self._link(tx, slot, receipt.digest, p, now)
            numbers = {
                "reported_seq": max(slot.reported_seq, receipt.seq),
                "reported_vtime": max(slot.reported_vtime, receipt.vtime),
                "reported_gen": slot.reported_gen if p.gen is None else max(slot.reported_gen, p.gen),
                "last_contact": now,
            }
            tx.execute(sql.U_SLOT, {"slot_id": slot.id, **numbers})
        tx.execute(sql.U_END, {"tid": ticket.id, "at": now})
        tx.execute(sql.U_TICKET, {"tid": ticket.id, "state": DEACTIVATED, "container_id": None})


def _audit(tx: Tx, firm_code: int, now: int, detail: dict[str, Any]) -> None:
    """Central's own audit row: manipulation it saw."""
    row = {
        "time": now,
        "actor": "central",
        "role": "system",
        "firm_code": firm_code,
        "action": "container.manipulation",
        "detail": detail,
    }
    tx.execute(sql.I_AUDIT, row)
