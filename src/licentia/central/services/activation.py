"""The activation protocol: activate, sync and deactivate, authorized by the ticket
or the container's own signature, never by an API key.

Every answer to a request is the FULL state of one firm in one container: every
ticket of that firm activated there, signed license entries (kept from activation),
product keys sealed to the container, the next sequence number and Central's time.
The same request again returns the stored answer byte for byte, with no change.

Manipulation: a container that reports an older sequence number for a firm than
Central saw before, together with a newer virtual time, has had old files restored;
its slot for that firm is flagged and refused until the vendor clears it.

Activation and sync are the hot path: they run prepared Core statements on the
Session's connection, inside the Session's write transaction, without the ORM unit
of work (a few times faster). Row locks (FOR UPDATE) on the container, the ticket
and the container's firm slot serialize concurrent writers on PostgreSQL; SQLite
serializes them with BEGIN IMMEDIATE.
"""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection, Row

from ...core import hazmat, codes, exchange
from ...core.encoding import b64d
from ...core.documents import DocumentInvalid, document_digest, parse
from ...core.exchange import Request
from ...core.license import LicenseEntry, Options
from ..db import run_write
from ...core.errors import (
    ServiceError,
    Conflict,
    InvalidReceipt,
    InvalidRequest,
    KeyMismatch,
    Manipulation,
    NotFound,
    TooManyAttempts,
)
from ..keys import SecretBox
from ..models import (
    Attempt,
    Container,
    ContainerFirm,
    Firm,
    FirmKey,
    Item,
    ProcessedReceipt,
    ProcessedRequest,
    Ticket,
    TicketItem,
    TicketState,
)
from ._base import Service
from .attempts import ADDRESS, TICKET, AttemptService
from .catalog import absolute_options
from .tickets import TicketService, normalize, unknown_ticket

log = logging.getLogger("licentia.central")

#: Failures that count toward the rate limit: guesses and forgeries, not honest states.
COUNTED = (InvalidRequest, InvalidReceipt, KeyMismatch)
ACTIVATED = TicketState.activated.value

# ---------------------------------------------------------------- prepared statements

_c, _cf, _t, _ti = Container.__table__, ContainerFirm.__table__, Ticket.__table__, TicketItem.__table__
_f, _fk, _pr, _at = Firm.__table__, FirmKey.__table__, ProcessedRequest.__table__, Attempt.__table__
_base, _mod = Item.__table__.alias("base"), Item.__table__.alias("module")

def _attempts(scope: str, key: str) -> Any:
    return (
        select(func.count())
        .select_from(_at)
        .where(_at.c.scope == scope, _at.c.key == bindparam(key), _at.c.time > bindparam("since"))
        .scalar_subquery()
    )


#: One statement for the two checks every request starts with: the stored answer
#: (idempotency) and the failed attempts of this address and ticket (rate limit).
Q_START = select(
    select(_pr.c.response).where(_pr.c.digest == bindparam("digest")).scalar_subquery(),
    _attempts(ADDRESS, "address"),
    _attempts(TICKET, "ticket"),
)
Q_CONTAINER = (
    select(_c.c.id, _c.c.sign_pub, _c.c.box_pub).where(_c.c.serial == bindparam("serial")).with_for_update()
)
#: The firm's keys ride along with the ticket or firm row (one query, not two).
_KEY_COLUMNS = (
    _fk.c.kid,
    _fk.c.active,
    _fk.c.private_enc,
    _fk.c.endorsement,
    _fk.c.created_seq,
)
Q_TICKET = (
    select(
        _t.c.id,
        _t.c.state,
        _t.c.container_id,
        _t.c.license_id,
        _t.c.first_activated,
        _t.c.options,
        _t.c.firm_id,
        _f.c.code,
        _f.c.secret_enc,
        _base.c.name,
        _base.c.product_code,
        _base.c.level,
        _base.c.key_versions,
        _base.c.options.label("template"),
        _mod.c.id.label("item"),
        _mod.c.feature_map,
        *_KEY_COLUMNS,
    )
    .select_from(
        _t.join(_f, _f.c.id == _t.c.firm_id)
        .join(_base, _base.c.id == _t.c.item_id)
        .join(_ti, _ti.c.ticket_id == _t.c.id)
        .join(_mod, _mod.c.id == _ti.c.item_id)
        .join(_fk, _fk.c.firm_id == _t.c.firm_id)
    )
    .where(_t.c.ticket == bindparam("ticket"))
    .with_for_update(of=_t)
)
Q_SERIAL = select(_c.c.serial).where(_c.c.id == bindparam("id"))
Q_FIRM = (
    select(_f.c.id, _f.c.code, _f.c.secret_enc, *_KEY_COLUMNS)
    .select_from(_f.join(_fk, _fk.c.firm_id == _f.c.id))
    .where(_f.c.code == bindparam("code"))
)
Q_SLOT = (
    select(_cf.c.id, _cf.c.reported_seq, _cf.c.reported_vtime, _cf.c.issued_seq, _cf.c.flagged)
    .where(_cf.c.container_id == bindparam("container"), _cf.c.firm_id == bindparam("firm"))
    .with_for_update()
)
Q_STATE = (
    select(_t.c.entry)
    .where(_t.c.firm_id == bindparam("firm"), _t.c.container_id == bindparam("container"), _t.c.state == ACTIVATED)
    .order_by(_t.c.license_id)
)
U_SLOT = update(_cf).where(_cf.c.id == bindparam("slot_id"))
U_FLAG = update(_cf).where(_cf.c.id == bindparam("slot_id")).values(flagged=True, flagged_at=bindparam("at"))
U_BOX = update(_c).where(_c.c.id == bindparam("cid")).values(box_pub=bindparam("box"))
#: SET columns come from the parameter names (Core's executemany form): built once.
U_TICKET = update(_t).where(_t.c.id == bindparam("tid"))
I_SLOT, I_DONE = insert(_cf), insert(_pr)
#: Register a container unless its serial is known (then: look it up, locked).
# RETURNING says whether the row was inserted: rowcount is not reliable for
# INSERT ... ON CONFLICT DO NOTHING on every driver (psycopg reports -1 here).
I_CONTAINER = {
    "sqlite": sqlite_insert(_c).on_conflict_do_nothing(index_elements=["serial"]).returning(_c.c.id),
    "postgresql": pg_insert(_c).on_conflict_do_nothing(index_elements=["serial"]).returning(_c.c.id),
}


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


def _keys(rows: list[Row[Any]]) -> list[_Key]:
    """The firm's keys from joined rows, oldest first, each once."""
    seen: dict[str, tuple[int, _Key]] = {}
    for r in rows:
        seen.setdefault(r.kid, (r.created_seq, _Key(r.kid, r.active, r.private_enc, r.endorsement)))
    return [k for _, k in sorted(seen.values(), key=lambda item: item[0])]


class ActivationService(Service):
    def __init__(self, ctx: Any, session: Any):
        super().__init__(ctx, session)
        self.attempts = AttemptService(ctx, session)

    # ---------------------------------------------------------------- public entry points

    def activate(self, body: bytes, address: str) -> str:
        return self._exchange(body, address, "activate")

    def sync(self, body: bytes, address: str) -> str:
        return self._exchange(body, address, "sync")

    def deactivate(self, body: bytes, address: str) -> str:
        self.attempts.check(address)
        ticket_hint: str | None = None
        try:
            doc = self._receipt_envelope(body)
            hint = doc["payload"].get("ticket")
            ticket_hint = _canonical(hint) if isinstance(hint, str) else None
            if ticket_hint is not None:
                self.attempts.check(address, ticket_hint)
            outcome = run_write(self.session, lambda: self._deactivate_tx(doc))
        except ServiceError as exc:
            self._count(exc, "deactivate", address, ticket_hint)
            raise
        assert outcome.response is not None
        return outcome.response

    def ticket_info(self, text: str, address: str) -> dict[str, Any]:
        ticket_id = normalize(text)  # a typo is answered before any database lookup
        self.attempts.check(address, ticket_id)
        try:
            return TicketService(self.ctx, self.session).info(ticket_id)
        except NotFound:
            self.attempts.record("info", address, ticket_id)
            raise

    # ---------------------------------------------------------------- activate / sync

    def _exchange(self, body: bytes, address: str, action: str) -> str:
        try:
            req = exchange.verify_request(body)
        except DocumentInvalid as exc:
            hint = _ticket_hint(body)  # unverified: counted against, never trusted
            self.attempts.check(address, hint)
            self.attempts.record(action, address, hint)
            raise InvalidRequest(f"{action} request rejected: {exc.reason}") from None
        try:
            if req.action != action:
                self.attempts.check(address, req.ticket)
                raise InvalidRequest(f"a {req.action!r} request was sent to the {action} endpoint")
            if action == "sync" and req.firm_code is None:
                self.attempts.check(address, req.ticket)
                raise InvalidRequest("sync request without firm_code")
            tx = self._activate_tx if action == "activate" else self._sync_tx
            outcome = run_write(self.session, lambda: tx(req, address))
        except ServiceError as exc:
            self._count(exc, action, address, req.ticket)
            raise
        if outcome.error is not None:
            raise outcome.error
        assert outcome.response is not None
        return outcome.response

    def _count(self, exc: ServiceError, action: str, address: str, ticket: str | None) -> None:
        if isinstance(exc, COUNTED) or exc.code == "unknown_ticket":
            self.attempts.record(action, address, ticket)

    def _start(self, conn: Connection, req: Request, address: str) -> str | None:
        """Rate limit, then the stored answer to this very request (if any)."""
        s = self.ctx.settings
        params = {"digest": req.digest, "since": self.now() - s.attempt_window, "address": address, "ticket": req.ticket}
        done, by_address, by_ticket = conn.execute(Q_START, params).one()
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
        rows = conn.execute(Q_TICKET, {"ticket": req.ticket}).all()
        if not rows:
            raise unknown_ticket(str(req.ticket))
        t = rows[0]
        if t.state == TicketState.revoked.value:
            raise Conflict("ticket_revoked", "This ticket has been revoked. Contact the vendor.")
        if t.level != req.level:
            raise Conflict(
                "wrong_level",
                f"this ticket needs a container of binding level {t.level}: activate with --level {t.level}",
            )
        if t.state == ACTIVATED and t.container_id != container_id:
            other = conn.execute(Q_SERIAL, {"id": t.container_id}).scalar()
            raise Conflict(
                "ticket_bound_elsewhere",
                f"This ticket is active in container {other}. Deactivate it there first "
                "('licentia deactivate'), then activate it here.",
            )
        slot, flagged = self._slot(conn, container_id, t.firm_id, t.code, req, new=new_container)
        if flagged is not None:
            return _Outcome(error=flagged)
        keys = _keys(rows)
        changes: dict[str, Any] = {}
        options = t.options
        if t.first_activated is None:
            options = absolute_options(t.template, now).to_json()
            changes.update(first_activated=now, options=options)
        fmap = 0
        for row in {r.item: r for r in rows}.values():
            fmap |= row.feature_map
        entry = LicenseEntry(
            firm_code=t.code,
            product_code=t.product_code,
            feature_map=fmap,
            text=t.name,
            license_id=t.license_id,
            serial=req.serial,
            container_key=req.sign_pub,
            options=Options.from_json(options),
            issued=now,
            ticket=req.ticket,
            key_versions=tuple(t.key_versions),
        )
        signed = entry.sign(self._signer(t.code, keys))
        changes.update(state=ACTIVATED, container_id=container_id, activated=now, entry=dump(signed))
        conn.execute(U_TICKET, {"tid": t.id, **changes})
        log.info("ticket %s activated in %s", req.ticket, req.serial)
        # a container registered just now holds this ticket and nothing else
        known = [signed] if new_container else None
        text = self._full_state(conn, req, container_id, t.firm_id, t.code, t.secret_enc, keys, slot, now, known)
        return _Outcome(response=text)

    def _sync_tx(self, req: Request, address: str) -> _Outcome:
        conn = self.session.connection()
        done = self._start(conn, req, address)
        if done is not None:
            return _Outcome(response=done)
        container_id, _ = self._container(conn, req, register=False)
        rows = conn.execute(Q_FIRM, {"code": req.firm_code}).all()
        if not rows:
            raise NotFound("firm", f"There is no firm {req.firm_code} in Central. Check the firm code.")
        firm = rows[0]
        slot, flagged = self._slot(conn, container_id, firm.id, firm.code, req)
        if flagged is not None:
            return _Outcome(error=flagged)
        keys = _keys(rows)
        text = self._full_state(conn, req, container_id, firm.id, firm.code, firm.secret_enc, keys, slot, self.now())
        return _Outcome(response=text)

    def _container(self, conn: Connection, req: Request, *, register: bool) -> tuple[uuid.UUID, bool]:
        """The container's id (row locked), and whether this request registered it."""
        if register:
            new_id = uuid.uuid4()
            inserted = conn.execute(
                I_CONTAINER[conn.dialect.name],
                {
                    "id": new_id,
                    "serial": req.serial,
                    "level": req.level,
                    "sign_pub": req.sign_pub,
                    "box_pub": req.box_pub,
                    "created": self.now(),
                },
            ).first()
            if inserted is not None:
                return new_id, True
        row = conn.execute(Q_CONTAINER, {"serial": req.serial}).first()
        if row is None:
            raise NotFound(
                "container",
                f"Container {req.serial} has no licenses from Central yet: activate a ticket first.",
            )
        if row.sign_pub != req.sign_pub:
            raise KeyMismatch(f"request for {req.serial} signed by a key other than the registered one")
        if row.box_pub != req.box_pub:  # signed by the registered key: the container's own choice
            conn.execute(U_BOX, {"cid": row.id, "box": req.box_pub})
        return row.id, False

    def _slot(
        self,
        conn: Connection,
        container_id: uuid.UUID,
        firm_id: uuid.UUID,
        firm_code: int,
        req: Request,
        *,
        new: bool = False,
    ) -> tuple[_Slot, ServiceError | None]:
        row = None if new else conn.execute(Q_SLOT, {"container": container_id, "firm": firm_id}).first()
        if row is None:
            slot = _Slot(uuid.uuid4(), 0, 0, 0, new=True)
        else:
            if row.flagged:
                raise Manipulation(req.serial, firm_code)
            slot = _Slot(row.id, row.reported_seq, row.reported_vtime, row.issued_seq)
            p = req.position(firm_code)
            if p.seq < slot.reported_seq and p.vtime > slot.reported_vtime:
                conn.execute(U_FLAG, {"slot_id": slot.id, "at": self.now()})
                reason = (
                    f"{req.serial} firm {firm_code}: seq {p.seq} < {slot.reported_seq} "
                    f"with vtime {p.vtime} > {slot.reported_vtime}"
                )
                return slot, Manipulation(req.serial, firm_code, reason=reason)
        p = req.position(firm_code)
        slot.reported_seq = max(slot.reported_seq, p.seq)
        slot.reported_vtime = max(slot.reported_vtime, p.vtime)
        return slot, None

    def _signer(self, firm_code: int, keys: list[_Key]) -> hazmat.Ed25519PrivateKey:
        active = next(k for k in keys if k.active)
        return self.ctx.signing_key(firm_code, active.kid, active.private_enc)

    def _full_state(
        self,
        conn: Connection,
        req: Request,
        container_id: uuid.UUID,
        firm_id: uuid.UUID,
        firm_code: int,
        secret_enc: bytes,
        keys: list[_Key],
        slot: _Slot,
        now: int,
        known: list[dict[str, Any]] | None = None,
    ) -> str:
        secret = self.ctx.open_secret(firm_code, SecretBox.PRODUCT_SECRET, secret_enc)
        box_pub = b64d(req.box_pub)
        if known is None:
            rows = conn.execute(Q_STATE, {"firm": firm_id, "container": container_id})
            known = [json.loads(text) for (text,) in rows]
        sealed: list[dict[str, Any]] = []
        for doc in known:
            payload = doc["payload"]
            digest = document_digest(doc)
            for version in payload["key_versions"]:
                key = exchange.derive_product_key(secret, firm_code, payload["product_code"], version)
                sealed.append(exchange.seal_product_key(box_pub, req.serial, digest, version, key))
        seq = max(slot.issued_seq, req.position(firm_code).seq) + 1
        numbers = {"reported_seq": slot.reported_seq, "reported_vtime": slot.reported_vtime, "issued_seq": seq}
        if slot.new:
            conn.execute(
                I_SLOT, {"id": slot.id, "container_id": container_id, "firm_id": firm_id, "flagged": False, **numbers}
            )
        else:
            conn.execute(U_SLOT, {"slot_id": slot.id, **numbers})
        doc = exchange.build_update(
            firm_code=firm_code,
            firm_key=self._signer(firm_code, keys),
            serial=req.serial,
            seq=seq,
            now=now,
            entries=known,
            sealed_keys=sealed,
            request_digest=req.digest,
            endorsements=[k.endorsement for k in keys if k.endorsement],
        )
        text = dump(doc)
        conn.execute(
            I_DONE,
            {
                "digest": req.digest,
                "container_id": container_id,
                "firm_id": firm_id,
                "action": req.action,
                "response": text,
                "created": now,
            },
        )
        return text

    # ---------------------------------------------------------------- deactivate

    @staticmethod
    def _receipt_envelope(body: bytes) -> dict[str, Any]:
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

    def _deactivate_tx(self, doc: dict[str, Any]) -> _Outcome:
        serial = doc["payload"]["serial"]
        s = self.session
        container = s.scalars(select(Container).where(Container.serial == serial).with_for_update()).first()
        if container is None:
            raise InvalidReceipt(f"receipt for unknown container {serial!r}")
        try:
            receipt = exchange.verify_receipt(doc, hazmat.Ed25519PublicKey.from_public_bytes(b64d(container.sign_pub)))
        except DocumentInvalid as exc:
            raise InvalidReceipt(f"receipt for {serial}: {exc.reason}") from None
        if receipt.serial != container.serial:  # pragma: no cover - looked up by this serial
            raise InvalidReceipt("receipt serial mismatch")
        done = s.get(ProcessedReceipt, receipt.digest)
        if done is not None:
            return _Outcome(response=done.response)
        firm = s.scalars(select(Firm).where(Firm.code == receipt.firm_code)).first()
        ticket = None
        if firm is not None:
            ticket = s.scalars(
                select(Ticket).where(Ticket.firm_id == firm.id, Ticket.license_id == receipt.license_id).with_for_update()
            ).first()
        if firm is None or ticket is None:
            raise InvalidReceipt(f"receipt names unknown license {receipt.firm_code}/{receipt.license_id}")
        if receipt.ticket is not None and _canonical(receipt.ticket) != ticket.ticket:
            raise InvalidReceipt(
                f"receipt names ticket {receipt.ticket!r} but license {receipt.license_id} is ticket {ticket.ticket}"
            )
        if ticket.state != ACTIVATED or ticket.container_id != container.id:
            raise Conflict(
                "not_active_here",
                f"License {receipt.license_id} is not active in container {container.serial}: nothing to deactivate.",
            )
        ticket.state = TicketState.deactivated.value
        ticket.container_id = None
        slot = s.scalars(
            select(ContainerFirm)
            .where(ContainerFirm.container_id == container.id, ContainerFirm.firm_id == firm.id)
            .with_for_update()
        ).first()
        if slot is not None:
            slot.reported_seq = max(slot.reported_seq, receipt.seq)
            slot.reported_vtime = max(slot.reported_vtime, receipt.vtime)
        text = dump(
            {
                "ticket": ticket.ticket,
                "license_id": ticket.license_id,
                "firm_code": firm.code,
                "serial": container.serial,
                "state": TicketState.deactivated.value,
            }
        )
        s.add(
            ProcessedReceipt(
                digest=receipt.digest, container_id=container.id, ticket_id=ticket.id, response=text, created=self.now()
            )
        )
        s.flush()
        log.info("ticket %s deactivated in %s", ticket.ticket, container.serial)
        return _Outcome(response=text)
