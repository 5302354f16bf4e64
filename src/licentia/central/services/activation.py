"""The activation protocol: activate, sync and deactivate, authorized by the ticket
or the container's own signature, never by an API key.

Every answer to a request is the FULL state of one firm in one container: every
ticket of that firm activated there, signed license entries (kept from activation),
product keys sealed to the container, the next sequence number and Central's time.
The same request again returns the stored answer byte for byte, with no change.

Manipulation: a container that reports an older sequence number for a firm than
Central saw before, together with a newer virtual time, has had old files restored;
its slot for that firm is flagged and refused until the vendor clears it.

Activation and sync are the hot path: they run prepared Core statements
(``_protocol_sql``) on the Session's connection, inside the Session's write
transaction, without the ORM unit of work (a few times faster). Row locks (FOR
UPDATE) on the container, the ticket and the container's firm slot serialize
concurrent writers on PostgreSQL; SQLite serializes them with BEGIN IMMEDIATE.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.engine import Connection, Row
from sqlalchemy.orm import Session

from ...core import codes, exchange, hazmat
from ...core.documents import DocumentInvalid, document_digest, parse
from ...core.encoding import b64d
from ...core.errors import (
    Conflict,
    InvalidReceipt,
    InvalidRequest,
    KeyMismatch,
    Manipulation,
    NotFound,
    ServiceError,
    TooManyAttempts,
)
from ...core.exchange import Receipt, Request, SlotPosition
from ...core.license import LicenseEntry, Options
from ..db import run_write
from ..keys import SecretBox
from ..models import Container, ContainerFirm, Firm, ProcessedReceipt, Ticket, TicketState
from . import _protocol_sql as sql
from .attempts import AttemptService
from .base import Context, Service
from .catalog import absolute_options
from .tickets import unknown_ticket

if TYPE_CHECKING:
    from typing import Unpack

    #: A row of a joined query: the ticket or firm, one row per firm key (and item).
    _Row = Row[Unpack[tuple[Any, ...]]]
    _Rows = Sequence[_Row]

log = logging.getLogger("licentia.central")

#: Failures that count toward the rate limit: guesses and forgeries, not honest states.
COUNTED = (InvalidRequest, InvalidReceipt, KeyMismatch)
ACTIVATED = sql.ACTIVATED
DEACTIVATED = TicketState.deactivated.value


def _canonical(ticket: str) -> str | None:
    try:
        return codes.normalize_ticket(ticket)
    except codes.InvalidCode:
        return None


def _ticket_hint(body: bytes) -> str | None:
    """The ticket a rejected document names, if it names a well-formed one."""
    try:
        ticket = json.loads(body)["payload"]["ticket"]
    except (ValueError, UnicodeDecodeError, KeyError, TypeError):
        return None
    return _canonical(ticket) if isinstance(ticket, str) else None


def dump(doc: dict[str, Any]) -> str:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


@dataclass
class _Outcome:
    response: str | None = None
    error: ServiceError | None = None  # raised after the transaction commits (a flag)

    def result(self) -> str:
        if self.error is not None:
            raise self.error
        assert self.response is not None
        return self.response


@dataclass
class _Slot:
    id: uuid.UUID
    reported_seq: int
    reported_vtime: int
    issued_seq: int
    new: bool = False  # inserted, with its final numbers, when the update is made


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
    secret_enc: bytes
    keys: list[_Key]


def _firm(rows: _Rows) -> _Firm:
    """The firm of joined ticket or firm rows (one row per firm key)."""
    first = rows[0]
    return _Firm(first.firm_id, first.code, first.secret_enc, _keys(rows))


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


def _entry(rows: _Rows, req: Request, options: dict[str, Any], now: int) -> LicenseEntry:
    """The license entry a ticket's joined rows make for the requesting container."""
    t = rows[0]
    return LicenseEntry(
        firm_code=t.code,
        product_code=t.product_code,
        feature_map=_feature_map(rows),
        text=t.name,
        license_id=t.license_id,
        serial=req.serial,
        container_key=req.sign_pub,
        options=Options.from_json(options),
        issued=now,
        ticket=req.ticket,
        key_versions=tuple(t.key_versions),
    )


def _restored(p: SlotPosition, slot: _Slot) -> bool:
    """An older sequence number with a newer virtual time: old files put back."""
    return p.seq < slot.reported_seq and p.vtime > slot.reported_vtime


def _receipt_envelope(body: bytes) -> dict[str, Any]:
    """The receipt document of a deactivation body, parsed but not yet verified."""
    try:
        outer = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidReceipt(f"body is not JSON: {exc}") from None
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


def _check_active_here(ticket: Ticket, container: Container, receipt: Receipt) -> None:
    if ticket.state != ACTIVATED or ticket.container_id != container.id:
        raise Conflict(
            "not_active_here",
            f"License {receipt.license_id} is not active in container {container.serial}: nothing to deactivate.",
        )


def _deactivated(ticket: Ticket, firm: Firm, container: Container) -> str:
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


class ActivationService(Service):
    def __init__(self, ctx: Context, session: Session, *, attempts: AttemptService):
        super().__init__(ctx, session)
        self.attempts = attempts

    # ---------------------------------------------------------------- public entry points

    def activate(self, body: bytes, address: str) -> str:
        return self._exchange(body, address, "activate", self._activate_tx)

    def sync(self, body: bytes, address: str) -> str:
        return self._exchange(body, address, "sync", self._sync_tx)

    def deactivate(self, body: bytes, address: str) -> str:
        self.attempts.check(address)
        ticket_hint: str | None = None
        try:
            doc = _receipt_envelope(body)
            ticket_hint = _receipt_ticket_hint(doc)
            if ticket_hint is not None:
                self.attempts.check(address, ticket_hint)
            outcome = run_write(self.session, lambda: self._deactivate_tx(doc))
        except ServiceError as exc:
            self._count(exc, "deactivate", address, ticket_hint)
            raise
        return outcome.result()

    # ---------------------------------------------------------------- activate / sync

    def _exchange(
        self, body: bytes, address: str, action: str, tx: Callable[[Request, str], _Outcome]
    ) -> str:
        req = self._verified(body, address, action)
        try:
            self._check_action(req, action, address)
            outcome = run_write(self.session, lambda: tx(req, address))
        except ServiceError as exc:
            self._count(exc, action, address, req.ticket)
            raise
        return outcome.result()

    def _verified(self, body: bytes, address: str, action: str) -> Request:
        """The signed request of ``body``; a forgery counts against the address (and the ticket it names)."""
        try:
            return exchange.verify_request(body)
        except DocumentInvalid as exc:
            hint = _ticket_hint(body)  # unverified: counted against, never trusted
            self.attempts.check(address, hint)
            self.attempts.record(action, address, hint)
            raise InvalidRequest(f"{action} request rejected: {exc.reason}") from None

    def _check_action(self, req: Request, action: str, address: str) -> None:
        if req.action != action:
            problem = f"a {req.action!r} request was sent to the {action} endpoint"
        elif action == "sync" and req.firm_code is None:
            problem = "sync request without firm_code"
        else:
            return
        self.attempts.check(address, req.ticket)
        raise InvalidRequest(problem)

    def _count(self, exc: ServiceError, action: str, address: str, ticket: str | None) -> None:
        if isinstance(exc, COUNTED) or exc.code == "unknown_ticket":
            self.attempts.record(action, address, ticket)

    def _start(self, conn: Connection, req: Request, address: str) -> str | None:
        """Rate limit, then the stored answer to this very request (if any)."""
        s = self.ctx.settings
        since = self.now() - s.attempt_window
        params = {"digest": req.digest, "since": since, "address": address, "ticket": req.ticket}
        done, by_address, by_ticket = conn.execute(sql.Q_START, params).one()
        if by_address >= s.attempts_per_address or by_ticket >= s.attempts_per_ticket:
            raise TooManyAttempts(s.attempt_window)
        return done  # type: ignore[no-any-return]

    def _activate_tx(self, req: Request, address: str) -> _Outcome:
        conn = self.session.connection()
        done = self._start(conn, req, address)
        if done is not None:
            return _Outcome(response=done)
        now = self.now()
        container_id, new_container = self._container(conn, req, register=True)
        rows = self._ticket_rows(conn, req)
        self._check_ticket(conn, rows[0], req, container_id)
        firm = _firm(rows)
        slot, flagged = self._slot(conn, container_id, firm, req, new=new_container)
        if flagged is not None:
            return _Outcome(error=flagged)
        signed = self._bind_ticket(conn, rows, req, container_id, firm, now)
        log.info("ticket %s activated in %s", req.ticket, req.serial)
        known = [signed] if new_container else None  # a container registered just now holds this ticket alone
        return _Outcome(response=self._full_state(conn, req, container_id, firm, slot, now, known))

    def _sync_tx(self, req: Request, address: str) -> _Outcome:
        conn = self.session.connection()
        done = self._start(conn, req, address)
        if done is not None:
            return _Outcome(response=done)
        container_id, _ = self._container(conn, req, register=False)
        rows = conn.execute(sql.Q_FIRM, {"code": req.firm_code}).all()
        if not rows:
            raise NotFound("firm", f"There is no firm {req.firm_code} in Central. Check the firm code.")
        firm = _firm(rows)
        slot, flagged = self._slot(conn, container_id, firm, req)
        if flagged is not None:
            return _Outcome(error=flagged)
        return _Outcome(response=self._full_state(conn, req, container_id, firm, slot, self.now()))

    def _container(self, conn: Connection, req: Request, *, register: bool) -> tuple[uuid.UUID, bool]:
        """The container's id (row locked), and whether this request registered it."""
        if register:
            new_id = self._register(conn, req)
            if new_id is not None:
                return new_id, True
        row = conn.execute(sql.Q_CONTAINER, {"serial": req.serial}).first()
        if row is None:
            raise NotFound(
                "container",
                f"Container {req.serial} has no licenses from Central yet: activate a ticket first.",
            )
        if row.sign_pub != req.sign_pub:
            raise KeyMismatch(f"request for {req.serial} signed by a key other than the registered one")
        if row.box_pub != req.box_pub:  # signed by the registered key: the container's own choice
            conn.execute(sql.U_BOX, {"cid": row.id, "box": req.box_pub})
        return row.id, False

    def _register(self, conn: Connection, req: Request) -> uuid.UUID | None:
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
        inserted = conn.execute(sql.I_CONTAINER[conn.dialect.name], params).first()
        return None if inserted is None else new_id

    @staticmethod
    def _ticket_rows(conn: Connection, req: Request) -> _Rows:
        """The requested ticket (row locked) joined with its firm, items and firm keys."""
        rows = conn.execute(sql.Q_TICKET, {"ticket": req.ticket}).all()
        if not rows:
            raise unknown_ticket(str(req.ticket))
        return rows

    @staticmethod
    def _check_ticket(conn: Connection, t: _Row, req: Request, container_id: uuid.UUID) -> None:
        """Refuse a revoked ticket, a container of the wrong level, a ticket active elsewhere."""
        if t.state == TicketState.revoked.value:
            raise Conflict("ticket_revoked", "This ticket has been revoked. Contact the vendor.")
        if t.level != req.level:
            raise Conflict(
                "wrong_level",
                f"this ticket needs a container of binding level {t.level}: activate with --level {t.level}",
            )
        if t.state == ACTIVATED and t.container_id != container_id:
            other = conn.execute(sql.Q_SERIAL, {"id": t.container_id}).scalar()
            raise Conflict(
                "ticket_bound_elsewhere",
                f"This ticket is active in container {other}. Deactivate it there first "
                "('licentia deactivate'), then activate it here.",
            )

    def _bind_ticket(
        self,
        conn: Connection,
        rows: _Rows,
        req: Request,
        container_id: uuid.UUID,
        firm: _Firm,
        now: int,
    ) -> dict[str, Any]:
        """Sign the ticket's license entry for the container and mark the ticket active there.
        The options are fixed at the first activation."""
        t = rows[0]
        changes: dict[str, Any] = {}
        options = t.options
        if t.first_activated is None:
            options = absolute_options(t.template, now).to_json()
            changes.update(first_activated=now, options=options)
        signed = _entry(rows, req, options, now).sign(self._signer(firm))
        changes.update(state=ACTIVATED, container_id=container_id, activated=now, entry=dump(signed))
        conn.execute(sql.U_TICKET, {"tid": t.id, **changes})
        return signed

    def _slot(
        self, conn: Connection, container_id: uuid.UUID, firm: _Firm, req: Request, *, new: bool = False
    ) -> tuple[_Slot, ServiceError | None]:
        """The container's slot for the firm (locked), at the position the request reports;
        or the slot and the manipulation it was just flagged for."""
        row = None if new else conn.execute(sql.Q_SLOT, {"container": container_id, "firm": firm.id}).first()
        p = req.position(firm.code)
        if row is None:
            slot = _Slot(uuid.uuid4(), 0, 0, 0, new=True)
        else:
            if row.flagged:
                raise Manipulation(req.serial, firm.code)
            slot = _Slot(row.id, row.reported_seq, row.reported_vtime, row.issued_seq)
            if _restored(p, slot):
                return slot, self._flag(conn, slot, req, firm.code, p)
        slot.reported_seq = max(slot.reported_seq, p.seq)
        slot.reported_vtime = max(slot.reported_vtime, p.vtime)
        return slot, None

    def _flag(self, conn: Connection, slot: _Slot, req: Request, firm_code: int, p: SlotPosition) -> Manipulation:
        conn.execute(sql.U_FLAG, {"slot_id": slot.id, "at": self.now()})
        reason = (
            f"{req.serial} firm {firm_code}: seq {p.seq} < {slot.reported_seq} "
            f"with vtime {p.vtime} > {slot.reported_vtime}"
        )
        return Manipulation(req.serial, firm_code, reason=reason)

    def _signer(self, firm: _Firm) -> hazmat.Ed25519PrivateKey:
        active = next(k for k in firm.keys if k.active)
        return self.ctx.signing_key(firm.code, active.kid, active.private_enc)

    def _full_state(
        self,
        conn: Connection,
        req: Request,
        container_id: uuid.UUID,
        firm: _Firm,
        slot: _Slot,
        now: int,
        known: list[dict[str, Any]] | None = None,
    ) -> str:
        """The signed update with every license of the firm in the container (``known``,
        or read here), stored as the answer to this request."""
        if known is None:
            known = self._entries(conn, container_id, firm)
        sealed = self._sealed_keys(req, firm, known)
        seq = self._advance_slot(conn, req, container_id, firm, slot)
        doc = exchange.build_update(
            firm_code=firm.code,
            firm_key=self._signer(firm),
            serial=req.serial,
            seq=seq,
            now=now,
            entries=known,
            sealed_keys=sealed,
            request_digest=req.digest,
            endorsements=[k.endorsement for k in firm.keys if k.endorsement],
        )
        text = dump(doc)
        self._store_answer(conn, req, container_id, firm, text, now)
        return text

    @staticmethod
    def _entries(conn: Connection, container_id: uuid.UUID, firm: _Firm) -> list[dict[str, Any]]:
        """The signed entries of the firm's tickets active in the container."""
        rows = conn.execute(sql.Q_STATE, {"firm": firm.id, "container": container_id})
        return [json.loads(text) for (text,) in rows]

    def _sealed_keys(self, req: Request, firm: _Firm, known: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Each entry's product keys, one per key version, sealed to the container's box key."""
        secret = self.ctx.open_secret(firm.code, SecretBox.PRODUCT_SECRET, firm.secret_enc)
        box_pub = b64d(req.box_pub)
        sealed: list[dict[str, Any]] = []
        for doc in known:
            payload = doc["payload"]
            digest = document_digest(doc)
            for version in payload["key_versions"]:
                key = exchange.derive_product_key(secret, firm.code, payload["product_code"], version)
                sealed.append(exchange.seal_product_key(box_pub, req.serial, digest, version, key))
        return sealed

    @staticmethod
    def _advance_slot(conn: Connection, req: Request, container_id: uuid.UUID, firm: _Firm, slot: _Slot) -> int:
        """Write the slot's reported position and its next sequence number; return that number."""
        seq = max(slot.issued_seq, req.position(firm.code).seq) + 1
        numbers = {"reported_seq": slot.reported_seq, "reported_vtime": slot.reported_vtime, "issued_seq": seq}
        if slot.new:
            row = {"id": slot.id, "container_id": container_id, "firm_id": firm.id, "flagged": False, **numbers}
            conn.execute(sql.I_SLOT, row)
        else:
            conn.execute(sql.U_SLOT, {"slot_id": slot.id, **numbers})
        return seq

    @staticmethod
    def _store_answer(
        conn: Connection, req: Request, container_id: uuid.UUID, firm: _Firm, text: str, now: int
    ) -> None:
        row = {
            "digest": req.digest,
            "container_id": container_id,
            "firm_id": firm.id,
            "action": req.action,
            "response": text,
            "created": now,
        }
        conn.execute(sql.I_DONE, row)

    # ---------------------------------------------------------------- deactivate

    def _deactivate_tx(self, doc: dict[str, Any]) -> _Outcome:
        container, receipt = self._verified_receipt(doc)
        done = self.session.get(ProcessedReceipt, receipt.digest)
        if done is not None:
            return _Outcome(response=done.response)
        firm, ticket = self._receipt_license(receipt)
        _check_active_here(ticket, container, receipt)
        self._release(ticket, container, firm, receipt)
        text = _deactivated(ticket, firm, container)
        self.session.add(
            ProcessedReceipt(
                digest=receipt.digest, container_id=container.id, ticket_id=ticket.id, response=text, created=self.now()
            )
        )
        self.session.flush()
        log.info("ticket %s deactivated in %s", ticket.ticket, container.serial)
        return _Outcome(response=text)

    def _verified_receipt(self, doc: dict[str, Any]) -> tuple[Container, Receipt]:
        """The container a receipt names (row locked) and the receipt, verified with its key."""
        serial = doc["payload"]["serial"]
        stmt = select(Container).where(Container.serial == serial).with_for_update()
        container = self.session.scalars(stmt).first()
        if container is None:
            raise InvalidReceipt(f"receipt for unknown container {serial!r}")
        try:
            receipt = exchange.verify_receipt(doc, hazmat.Ed25519PublicKey.from_public_bytes(b64d(container.sign_pub)))
        except DocumentInvalid as exc:
            raise InvalidReceipt(f"receipt for {serial}: {exc.reason}") from None
        if receipt.serial != container.serial:  # pragma: no cover - looked up by this serial
            raise InvalidReceipt("receipt serial mismatch")
        return container, receipt

    def _receipt_license(self, receipt: Receipt) -> tuple[Firm, Ticket]:
        """The firm and the ticket (row locked) of the license a receipt names."""
        s = self.session
        firm = s.scalars(select(Firm).where(Firm.code == receipt.firm_code)).first()
        ticket = None
        if firm is not None:
            stmt = select(Ticket).where(Ticket.firm_id == firm.id, Ticket.license_id == receipt.license_id)
            ticket = s.scalars(stmt.with_for_update()).first()
        if firm is None or ticket is None:
            raise InvalidReceipt(f"receipt names unknown license {receipt.firm_code}/{receipt.license_id}")
        if receipt.ticket is not None and _canonical(receipt.ticket) != ticket.ticket:
            raise InvalidReceipt(
                f"receipt names ticket {receipt.ticket!r} but license {receipt.license_id} is ticket {ticket.ticket}"
            )
        return firm, ticket

    def _release(self, ticket: Ticket, container: Container, firm: Firm, receipt: Receipt) -> None:
        """Take the ticket out of the container; the slot learns the receipt's position."""
        ticket.state = DEACTIVATED
        ticket.container_id = None
        slot = self.session.scalars(
            select(ContainerFirm)
            .where(ContainerFirm.container_id == container.id, ContainerFirm.firm_id == firm.id)
            .with_for_update()
        ).first()
        if slot is not None:
            slot.reported_seq = max(slot.reported_seq, receipt.seq)
            slot.reported_vtime = max(slot.reported_vtime, receipt.vtime)
