"""The activation protocol: activate, sync and deactivate, authorized by the ticket
or the container's own signature, never by an API key.

Every answer to a request is the FULL state of one firm in one container: every
ticket of that firm activated there, signed license entries (kept from activation),
product keys sealed to the container, the next sequence number and Central's time.
The same request again returns the stored answer byte for byte, with no change.

Manipulation: a container that reports an older sequence number for a firm than
Central saw before, together with a newer virtual time, has had old files restored;
its slot for that firm is flagged and refused until the vendor clears it.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from ...core import _crypto, codes, exchange
from ...core._encoding import b64d
from ...core.documents import DocumentInvalid, document_digest, parse
from ...core.exchange import Request
from ...core.license import LicenseEntry, Options
from ..db import run_write
from ..errors import (
    CentralError,
    Conflict,
    InvalidReceipt,
    InvalidRequest,
    KeyMismatch,
    Manipulation,
    NotFound,
)
from ..models import (
    Container,
    ContainerFirm,
    Firm,
    Item,
    ProcessedReceipt,
    ProcessedRequest,
    Ticket,
    TicketItem,
    TicketState,
)
from ._base import Service
from .attempts import AttemptService
from .catalog import absolute_options
from .firms import FirmService
from .tickets import feature_map, unknown_ticket

log = logging.getLogger("licentia.central")

#: Failures that count toward the rate limit: guesses and forgeries, not honest states.
COUNTED = (InvalidRequest, InvalidReceipt, KeyMismatch)


def _canonical(ticket: str) -> str | None:
    try:
        return codes.normalize_ticket(ticket)
    except codes.InvalidCode:
        return None


def dump(doc: dict[str, Any]) -> str:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


@dataclass
class _Outcome:
    response: str | None = None
    error: CentralError | None = None  # raised after the transaction commits (a flag)


class ActivationService(Service):
    def __init__(self, ctx: Any, session: Any):
        super().__init__(ctx, session)
        self.attempts = AttemptService(ctx, session)
        self.firms = FirmService(ctx, session)

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
            ticket_hint = hint if isinstance(hint, str) else None
            if ticket_hint is not None:
                self.attempts.check(address, ticket_hint)
            outcome = run_write(self.session, lambda: self._deactivate_tx(doc))
        except CentralError as exc:
            self._count(exc, "deactivate", address, ticket_hint)
            raise
        assert outcome.response is not None
        return outcome.response

    # ---------------------------------------------------------------- activate / sync

    def _exchange(self, body: bytes, address: str, action: str) -> str:
        try:
            req = exchange.verify_request(body)
        except DocumentInvalid as exc:
            self.attempts.check(address)
            self.attempts.record(action, address)
            raise InvalidRequest(f"{action} request rejected: {exc.reason}") from None
        self.attempts.check(address, req.ticket)
        try:
            if req.action != action:
                raise InvalidRequest(f"a {req.action!r} request was sent to the {action} endpoint")
            if action == "sync" and req.firm_code is None:
                raise InvalidRequest("sync request without firm_code")
            tx = self._activate_tx if action == "activate" else self._sync_tx
            outcome = run_write(self.session, lambda: tx(req))
        except CentralError as exc:
            self._count(exc, action, address, req.ticket)
            raise
        if outcome.error is not None:
            raise outcome.error
        assert outcome.response is not None
        return outcome.response

    def _count(self, exc: CentralError, action: str, address: str, ticket: str | None) -> None:
        if isinstance(exc, COUNTED) or exc.code == "unknown_ticket":
            self.attempts.record(action, address, ticket)

    def _activate_tx(self, req: Request) -> _Outcome:
        done = self.session.get(ProcessedRequest, req.digest)
        if done is not None:
            return _Outcome(response=done.response)
        now = self.now()
        container = self._container(req, register=True)
        ticket = self.session.scalars(select(Ticket).where(Ticket.ticket == req.ticket).with_for_update()).first()
        if ticket is None:
            raise unknown_ticket(str(req.ticket))
        firm = self.session.get(Firm, ticket.firm_id)
        assert firm is not None
        base = self.session.get(Item, ticket.item_id)
        assert base is not None
        if ticket.state == TicketState.revoked.value:
            raise Conflict("ticket_revoked", "This ticket has been revoked. Contact the vendor.")
        if base.level != req.level:
            raise Conflict(
                "wrong_level",
                f"this ticket needs a container of binding level {base.level}: activate with --level {base.level}",
            )
        if ticket.state == TicketState.activated.value and ticket.container_id != container.id:
            other = self.session.scalar(select(Container.serial).where(Container.id == ticket.container_id))
            raise Conflict(
                "ticket_bound_elsewhere",
                f"This ticket is active in container {other}. Deactivate it there first "
                "('licentia deactivate'), then activate it here.",
            )
        slot, flagged = self._slot(container, firm, req)
        if flagged is not None:
            return _Outcome(error=flagged)
        if ticket.first_activated is None:
            ticket.first_activated = now
            ticket.options = absolute_options(base.options, now).to_json()
        items = list(self.session.scalars(select(Item).join(TicketItem).where(TicketItem.ticket_id == ticket.id)))
        entry = LicenseEntry(
            firm_code=firm.code,
            product_code=base.product_code,
            feature_map=feature_map(items),
            text=base.name,
            license_id=ticket.license_id,
            serial=container.serial,
            container_key=container.sign_pub,
            options=Options.from_json(ticket.options),
            issued=now,
            ticket=ticket.ticket,
            key_versions=tuple(base.key_versions),
        )
        ticket.entry = dump(entry.sign(self.firms.signing_key(firm)))
        ticket.state = TicketState.activated.value
        ticket.container_id = container.id
        ticket.activated = now
        self.session.flush()
        log.info("ticket %s activated in %s", ticket.ticket, container.serial)
        return _Outcome(response=self._full_state(req, container, firm, slot, now))

    def _sync_tx(self, req: Request) -> _Outcome:
        done = self.session.get(ProcessedRequest, req.digest)
        if done is not None:
            return _Outcome(response=done.response)
        container = self._container(req, register=False)
        assert req.firm_code is not None
        firm = self.firm_by_code(req.firm_code)
        slot, flagged = self._slot(container, firm, req)
        if flagged is not None:
            return _Outcome(error=flagged)
        return _Outcome(response=self._full_state(req, container, firm, slot, self.now()))

    def _container(self, req: Request, *, register: bool) -> Container:
        container = self.session.scalars(
            select(Container).where(Container.serial == req.serial).with_for_update()
        ).first()
        if container is None:
            if not register:
                raise NotFound(
                    "container",
                    f"Container {req.serial} has no licenses from Central yet: activate a ticket first.",
                )
            container = Container(
                serial=req.serial, level=req.level, sign_pub=req.sign_pub, box_pub=req.box_pub, created=self.now()
            )
            self.session.add(container)
            self.session.flush()
            return container
        if container.sign_pub != req.sign_pub:
            raise KeyMismatch(f"request for {req.serial} signed by a key other than the registered one")
        if container.box_pub != req.box_pub:  # signed by the registered key: the container's own choice
            container.box_pub = req.box_pub
        return container

    def _slot(self, container: Container, firm: Firm, req: Request) -> tuple[ContainerFirm, CentralError | None]:
        slot = self.session.scalars(
            select(ContainerFirm)
            .where(ContainerFirm.container_id == container.id, ContainerFirm.firm_id == firm.id)
            .with_for_update()
        ).first()
        if slot is None:
            slot = ContainerFirm(
                container_id=container.id,
                firm_id=firm.id,
                reported_seq=0,
                reported_vtime=0,
                issued_seq=0,
                flagged=False,
            )
            self.session.add(slot)
            self.session.flush()
        if slot.flagged:
            raise Manipulation(container.serial, firm.code)
        p = req.position(firm.code)
        if p.seq < slot.reported_seq and p.vtime > slot.reported_vtime:
            slot.flagged = True
            slot.flagged_at = self.now()
            reason = (
                f"{container.serial} firm {firm.code}: seq {p.seq} < {slot.reported_seq} "
                f"with vtime {p.vtime} > {slot.reported_vtime}"
            )
            return slot, Manipulation(container.serial, firm.code, reason=reason)
        slot.reported_seq = max(slot.reported_seq, p.seq)
        slot.reported_vtime = max(slot.reported_vtime, p.vtime)
        return slot, None

    def _full_state(self, req: Request, container: Container, firm: Firm, slot: ContainerFirm, now: int) -> str:
        tickets = self.session.scalars(
            select(Ticket)
            .where(
                Ticket.firm_id == firm.id,
                Ticket.container_id == container.id,
                Ticket.state == TicketState.activated.value,
            )
            .order_by(Ticket.license_id)
        ).all()
        secret = self.firms.product_secret(firm)
        box_pub = b64d(container.box_pub)
        entries: list[dict[str, Any]] = []
        sealed: list[dict[str, Any]] = []
        for ticket in tickets:
            assert ticket.entry is not None
            doc = json.loads(ticket.entry)
            payload = doc["payload"]
            digest = document_digest(doc)
            entries.append(doc)
            for version in payload["key_versions"]:
                key = exchange.derive_product_key(secret, firm.code, payload["product_code"], version)
                sealed.append(exchange.seal_product_key(box_pub, container.serial, digest, version, key))
        seq = max(slot.issued_seq, req.position(firm.code).seq) + 1
        slot.issued_seq = seq
        update = exchange.build_update(
            firm_code=firm.code,
            firm_key=self.firms.signing_key(firm),
            serial=container.serial,
            seq=seq,
            now=now,
            entries=entries,
            sealed_keys=sealed,
            request_digest=req.digest,
            endorsements=self.firms.endorsements(firm),
        )
        text = dump(update)
        self.session.add(
            ProcessedRequest(
                digest=req.digest,
                container_id=container.id,
                firm_id=firm.id,
                action=req.action,
                response=text,
                created=now,
            )
        )
        self.session.flush()
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
        container = self.session.scalars(select(Container).where(Container.serial == serial).with_for_update()).first()
        if container is None:
            raise InvalidReceipt(f"receipt for unknown container {serial!r}")
        try:
            receipt = exchange.verify_receipt(doc, _crypto.Ed25519PublicKey.from_public_bytes(b64d(container.sign_pub)))
        except DocumentInvalid as exc:
            raise InvalidReceipt(f"receipt for {serial}: {exc.reason}") from None
        if receipt.serial != container.serial:  # pragma: no cover - looked up by this serial
            raise InvalidReceipt("receipt serial mismatch")
        done = self.session.get(ProcessedReceipt, receipt.digest)
        if done is not None:
            return _Outcome(response=done.response)
        firm = self.session.scalars(select(Firm).where(Firm.code == receipt.firm_code)).first()
        ticket = None
        if firm is not None:
            ticket = self.session.scalars(
                select(Ticket).where(Ticket.firm_id == firm.id, Ticket.license_id == receipt.license_id).with_for_update()
            ).first()
        if firm is None or ticket is None:
            raise InvalidReceipt(f"receipt names unknown license {receipt.firm_code}/{receipt.license_id}")
        if receipt.ticket is not None and _canonical(receipt.ticket) != ticket.ticket:
            raise InvalidReceipt(
                f"receipt names ticket {receipt.ticket!r} but license {receipt.license_id} is ticket {ticket.ticket}"
            )
        if ticket.state != TicketState.activated.value or ticket.container_id != container.id:
            raise Conflict(
                "not_active_here",
                f"License {receipt.license_id} is not active in container {container.serial}: nothing to deactivate.",
            )
        ticket.state = TicketState.deactivated.value
        ticket.container_id = None
        slot = self.session.scalars(
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
        self.session.add(
            ProcessedReceipt(
                digest=receipt.digest, container_id=container.id, ticket_id=ticket.id, response=text, created=self.now()
            )
        )
        self.session.flush()
        log.info("ticket %s deactivated in %s", ticket.ticket, container.serial)
        return _Outcome(response=text)
