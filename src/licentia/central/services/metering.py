"""Online metering: each unit consumption of a license whose item meters ``online`` is a
container-signed call that Central counts atomically.

The call names the container (its registered key verifies the signature), the live
entry it consumes under (its digest), the units and an idempotency key. Central locks
the ticket's row, checks the units ordered against everything consumed over every
activation (units the containers counted plus units counted here), adds the units to
the entry's activation and answers a firm-signed count. The answer is kept under the
idempotency key, scoped to the container and the entry, for ``KEEP`` seconds: a retry
gets it again and charges nothing; the same key with other parameters is refused
(409 ``idempotency_key_reused``).
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, delete, insert, select, update

from ...core import hazmat
from ...core.documents import DocumentInvalid, DocumentMalformed, parse, require, sign_document, verify_document
from ...core.encoding import b64d, canonical
from ...core.errors import Conflict, InvalidRequest, MalformedInput, ServiceError
from ...core.exchange import is_digest
from ..db import run_write
from ..models import Activation, Container, IdempotencyKey, Item, Ticket
from . import _protocol_sql as sql
from .activation import ACTIVATED, ActivationService, _firm, dump
from .rollup import OnConnection, units_row, write_units

log = logging.getLogger("licentia.central")

#: idempotency keys are kept at least this long (two days: a day's retries, and a margin)
KEEP = 2 * 86400
#: one call in this many also purges expired idempotency keys
PURGE_EVERY = 200

_c, _t, _a, _k = (sql.table_of(m) for m in (Container, Ticket, Activation, IdempotencyKey))
_i = sql.table_of(Item)
Q_KEY_OF = select(_c.c.id, _c.c.sign_pub).where(_c.c.serial == bindparam("serial"))
Q_IDEM = select(_k.c.params, _k.c.response).where(_k.c.scope == bindparam("scope"), _k.c.key == bindparam("key"))
#: The live activation of an entry in a container, with its ticket (row locked: one
#: consumption of a ticket at a time, across every activation and worker).
Q_METERED = (
    select(
        _a.c.id,
        _t.c.id.label("tid"),
        _t.c.options,
        _t.c.license_id,
        _t.c.firm_id,
        _t.c.customer_id,
        _t.c.item_id,
        _i.c.product_code,
    )
    .select_from(_a.join(_t, _t.c.id == _a.c.ticket_id).join(_i, _i.c.id == _t.c.item_id))
    .where(
        _a.c.digest == bindparam("digest"),
        _a.c.container_id == bindparam("container"),
        _a.c.ended.is_(None),
        _t.c.state == ACTIVATED,
    )
    .with_for_update(of=(_t, _a))
)
#: Added in the statement (never read-modify-write across statements).
U_ONLINE = (
    update(_a)
    .where(_a.c.id == bindparam("aid"))
    .values(online_units=_a.c.online_units + bindparam("add"))
    .returning(_a.c.online_units)
)
I_IDEM = insert(_k)
D_IDEM = delete(_k).where(_k.c.created < bindparam("before"))


@dataclass(frozen=True)
class Counted:
    """Units counted: the activation and ticket they were counted on, the activation's
    online units after, the units left, the firm's rows, Central's time."""

    act: Any
    online: int
    left: int
    firm: Any
    now: int


class MeteringService(ActivationService):
    """Online consumption of units (the activation service's helpers: firm signer, rate limit)."""

    def count(
        self,
        conn: Any,
        scope: str,
        idem: str,
        params: str,
        container_id: uuid.UUID,
        serial: str,
        entry: str,
        units: int,
        firm_code: int,
        source: str,
        user: str = "",
    ) -> Counted | str:
        """Count ``units`` on the live entry ``entry`` of a container, inside the caller's
        write transaction, under an idempotency key (``scope``: whose and of what): the
        stored answer of an earlier call with that key (a retry), else what was counted.
        The ticket's row is locked first: one consumption of a ticket at a time, across
        every activation, worker and Central process. Conflict when the key was used with
        other ``params``, the entry is not live there, or too few units are left."""
        seen = conn.execute(Q_IDEM, {"scope": scope, "key": idem}).first()
        if seen is not None:
            if seen.params != params:
                raise Conflict(
                    "idempotency_key_reused",
                    "This idempotency key was used for another consumption: make a new key for a new call.",
                )
            return str(seen.response)
        act = conn.execute(Q_METERED, {"digest": entry, "container": container_id}).first()
        if act is None:
            raise Conflict("not_active_here", f"This license is not active in container {serial}: sync, then retry.")
        ordered = (act.options or {}).get("units")
        if ordered is None:
            raise Conflict("no_unit_counter", "This license has no unit counter.")
        consumed = int(conn.execute(sql.Q_TOTALS, {"tid": act.tid}).one()[0])
        left = ordered - consumed
        if units > left:
            raise Conflict("units_exhausted", f"{max(left, 0)} units left, {units} asked for.")
        online = int(conn.execute(U_ONLINE, {"aid": act.id, "add": units}).scalar_one())
        now = self.now()
        rows = conn.execute(sql.Q_FIRM, {"code": firm_code}).all()
        if not rows or rows[0].firm_id != act.firm_id:
            raise InvalidRequest(f"consumption from {serial}: firm {firm_code} does not issue this license")
        counted = units_row(
            source=source,
            firm_id=act.firm_id,
            firm_code=firm_code,
            container_id=container_id,
            ticket=act,
            units=units,
            at=now,
            user=user,
        )
        write_units(OnConnection(conn), [counted])
        return Counted(act, online, left - units, _firm(rows), now)

    @staticmethod
    def keep(conn: Any, scope: str, idem: str, params: str, response: str, now: int) -> None:
        """Keep a consumption's answer under its idempotency key (a retry gets it again)."""
        conn.execute(I_IDEM, {"scope": scope, "key": idem, "params": params, "response": response, "created": now})
        if uuid.uuid4().int % PURGE_EVERY == 0:
            conn.execute(D_IDEM, {"before": now - KEEP})

    def consume(self, body: bytes, address: str) -> str:
        self.attempts.check(address)
        try:
            doc = parse(body)
        except DocumentMalformed as exc:  # not JSON we accept: refused before it is read, not counted here
            raise MalformedInput(f"consumption: {exc.reason}") from None
        except DocumentInvalid as exc:
            self.attempts.record("consume", address, None)
            raise InvalidRequest(f"consumption rejected: {exc.reason}") from None
        try:
            return run_write(self.session, lambda: self._consume_tx(doc))
        except ServiceError as exc:
            if isinstance(exc, InvalidRequest):
                self.attempts.record("consume", address, None)
            raise

    def _consume_tx(self, doc: dict[str, Any]) -> str:
        conn = self.session.connection()
        serial = doc["payload"].get("serial")
        row = conn.execute(Q_KEY_OF, {"serial": serial}).first() if isinstance(serial, str) else None
        if row is None:
            raise InvalidRequest(f"consumption for unknown container {serial!r}")
        try:
            key = hazmat.Ed25519PublicKey.from_public_bytes(b64d(row.sign_pub))
            payload = verify_document(doc, "consume", key)
            firm_code = require(payload, "firm_code", int)
            entry = require(payload, "entry", str)
            units = require(payload, "units", int)
            idem = require(payload, "key", str)
        except (DocumentInvalid, ValueError) as exc:
            raise InvalidRequest(f"consumption from {serial}: {getattr(exc, 'reason', exc)}") from None
        if units < 1 or not 1 <= len(idem) <= 64 or not is_digest(entry):
            raise InvalidRequest(f"consumption from {serial}: bad units, key or entry")
        scope = f"consume|{serial}|{entry}"
        params = hazmat.sha256(canonical({"firm_code": firm_code, "entry": entry, "units": units})).hex()
        counted = self.count(conn, scope, idem, params, row.id, serial, entry, units, firm_code, "online")
        if isinstance(counted, str):
            return counted
        act, now = counted.act, counted.now
        answer = {
            "serial": serial,
            "firm_code": firm_code,
            "license_id": act.license_id,
            "entry": entry,
            "key": idem,
            "units": units,
            "online": counted.online,
            "left": counted.left,
            "time": now,
        }
        text = dump(sign_document("consumption", answer, self._signer(counted.firm)))
        self.keep(conn, scope, idem, params, text, now)
        log.info("consumed %s units of license %s in %s (key %s)", units, counted.act.license_id, serial, idem)
        return text
