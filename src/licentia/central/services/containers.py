"""What vendors see and do about containers: a container's slot for their firm (with the
usage log a license server in it anchored at Central), and clearing a slot flagged for
manipulation (which also sets the usage anchors aside: the next upload starts a new chain)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, select, update

from ...core import codes
from ...core.errors import BadInput, NotFound
from ..db import run_read, run_write
from ..models import AuditEntry, Container, ContainerFirm, Firm, Flag, Ticket, TicketState, UsageAnchor, UsageEvent
from .base import Actor, Service, check_code
from .catalog import PAGE_SIZE, page
from .usage import CHAIN_BROKEN


def check_serial(serial: str) -> str:
    try:
        return codes.check_serial(serial.strip().upper())
    except codes.InvalidCode:
        raise BadInput(f"{serial!r} is not a container serial (like 130-XXXX-XXXX-XXXX).") from None


class ContainerService(Service):
    def _slot(self, serial: str, firm: Firm, *, lock: bool = False) -> tuple[Container, ContainerFirm]:
        stmt = (
            select(Container, ContainerFirm)
            .join(ContainerFirm, ContainerFirm.container_id == Container.id)
            .where(Container.serial == serial, ContainerFirm.firm_id == firm.id)
        )
        if lock:
            stmt = stmt.with_for_update()
        row = self.session.execute(stmt).first()
        if row is None:
            raise NotFound("container", f"Container {serial} has never held a license of firm {firm.code}.")
        return row[0], row[1]

    def show(self, actor: Actor, serial: str, firm_code: int | None = None) -> dict[str, Any]:
        serial = check_serial(serial)

        def tx() -> dict[str, Any]:
            firm = self.scoped_firm(actor, firm_code)
            container, slot = self._slot(serial, firm)
            tickets = self.session.scalars(
                select(Ticket.ticket)
                .where(
                    Ticket.firm_id == firm.id,
                    Ticket.container_id == container.id,
                    Ticket.state == TicketState.activated.value,
                )
                .order_by(Ticket.license_id)
            )
            flags = self.session.execute(
                select(Flag, Ticket.ticket)
                .outerjoin(Ticket, Ticket.id == Flag.ticket_id)
                .where(Flag.container_id == container.id, Flag.firm_id == firm.id)
                .order_by(Flag.id)
            ).all()
            live = (UsageAnchor.container_id == container.id, UsageAnchor.superseded.is_(None))
            latest = self.session.execute(
                select(UsageAnchor.seq, UsageAnchor.time).where(*live).order_by(UsageAnchor.seq.desc()).limit(1)
            ).first()
            first = self.session.scalar(select(func.min(UsageAnchor.seq)).where(*live))
            stored = self.session.scalar(
                select(func.count())
                .select_from(UsageEvent)
                .where(UsageEvent.container_id == container.id, UsageEvent.firm_id == firm.id)
            )
            return {
                "serial": container.serial,
                "level": container.level,
                "firm_code": firm.code,
                "reported_seq": slot.reported_seq,
                "reported_vtime": slot.reported_vtime,
                "reported_gen": slot.reported_gen,
                "issued_seq": slot.issued_seq,
                "last_contact": slot.last_contact,
                "flagged": slot.flagged,
                "flagged_at": slot.flagged_at,
                "tickets": list(tickets),
                # manipulation Central saw, newest last: what it did about each ticket
                "flags": [
                    {
                        "time": f.time,
                        "ticket": t,
                        "action": f.action,
                        "reason": f.reason,
                        "cleared": f.cleared,
                    }
                    for f, t in flags
                ],
                # a license server's usage log at Central: anchored through event ``anchored_seq``
                # (at ``anchored_at``, Central's time) from ``first_anchored_seq`` on, and the rows of
                # the firm's usage stored from it
                "usage": {
                    "anchored_seq": None if latest is None else latest.seq,
                    "anchored_at": None if latest is None else latest.time,
                    "first_anchored_seq": first,
                    "events": int(stored or 0),
                },
            }

        return run_read(self.session, tx)

    def list_containers(
        self, actor: Actor, firm_code: int | None = None, *, limit: int = PAGE_SIZE, offset: int = 0
    ) -> list[dict[str, Any]]:
        """A page of the containers that have held a license of the firm, newest first (by
        when Central first saw each): its level, when Central first saw it, its last
        contact for the firm, how many of the firm's licenses it holds now, and its
        manipulation flags for the firm."""
        limit, offset = page(limit, offset)

        def tx() -> list[dict[str, Any]]:
            firm = self.scoped_firm(actor, firm_code)
            rows = self.session.execute(
                select(Container, ContainerFirm)
                .join(ContainerFirm, ContainerFirm.container_id == Container.id)
                .where(ContainerFirm.firm_id == firm.id)
                .order_by(Container.created.desc(), Container.serial)
                .limit(limit)
                .offset(offset)
            ).all()
            ids = [c.id for c, _ in rows]
            held: dict[Any, int] = {}
            flags: dict[Any, tuple[int, int]] = {}
            if ids:
                held = {
                    cid: int(n)
                    for cid, n in self.session.execute(
                        select(Ticket.container_id, func.count())
                        .where(
                            Ticket.container_id.in_(ids),
                            Ticket.firm_id == firm.id,
                            Ticket.state == TicketState.activated.value,
                        )
                        .group_by(Ticket.container_id)
                    )
                }
                flags = {
                    cid: (int(total), int(total) - int(cleared))
                    for cid, total, cleared in self.session.execute(
                        select(Flag.container_id, func.count(), func.count(Flag.cleared))
                        .where(Flag.container_id.in_(ids), Flag.firm_id == firm.id)
                        .group_by(Flag.container_id)
                    )
                }
            return [
                {
                    "serial": container.serial,
                    "level": container.level,
                    "firm_code": firm.code,
                    "first_seen": container.created,
                    "last_contact": slot.last_contact,
                    # the firm's licenses in it now: its tickets activated there
                    "licenses": held.get(container.id, 0),
                    "flagged": slot.flagged,
                    "flagged_at": slot.flagged_at,
                    # manipulation Central saw for the firm: all of it, and what is not yet reviewed
                    "flags": flags.get(container.id, (0, 0))[0],
                    "open_flags": flags.get(container.id, (0, 0))[1],
                }
                for container, slot in rows
            ]

        return run_read(self.session, tx)

    def _resets_anchors(self, container_id: Any, firm_id: Any, cleared: Sequence[Flag]) -> bool:
        """Whether a firm's clear sets the container's usage anchors aside: when it is the
        only firm with a slot there, or when it cleared a chain break and no other firm's
        break there is still open (every firm relies on the one usage log's anchors)."""
        others = self.session.scalar(
            select(func.count())
            .select_from(ContainerFirm)
            .where(ContainerFirm.container_id == container_id, ContainerFirm.firm_id != firm_id)
        )
        if not others:
            return True
        if not any(f.reason.startswith(CHAIN_BROKEN) for f in cleared):
            return False
        still_open = self.session.scalar(
            select(func.count())
            .select_from(Flag)
            .where(Flag.container_id == container_id, Flag.cleared.is_(None), Flag.reason.startswith(CHAIN_BROKEN))
        )
        return not still_open

    def clear(self, actor: Actor, serial: str, firm_code: int | None = None) -> dict[str, Any]:
        """Mark the container's flags reviewed and unblock the tickets withdrawn from it (they
        can be activated again, with the use Central recorded). The usage anchors of the
        container are superseded, so a license server's next upload starts a new chain there,
        when no other firm relies on them (``_resets_anchors``)."""
        serial = check_serial(serial)

        def tx() -> dict[str, Any]:
            firm = self.scoped_firm(actor, firm_code)
            container, slot = self._slot(serial, firm, lock=True)
            was = slot.flagged
            now = self.now()
            slot.flagged = False
            slot.flagged_at = None
            open_flags = self.session.scalars(
                select(Flag)
                .where(Flag.container_id == container.id, Flag.firm_id == firm.id, Flag.cleared.is_(None))
                .with_for_update()
            ).all()
            blocked = {f.ticket_id for f in open_flags if f.ticket_id is not None}
            unblocked = []
            for ticket in self.session.scalars(
                select(Ticket)
                .where(Ticket.id.in_(blocked), Ticket.state == TicketState.blocked.value)
                .with_for_update()
            ):
                ticket.state = TicketState.deactivated.value
                unblocked.append(ticket.ticket)
            for f in open_flags:
                f.cleared = now
            superseded: Sequence[Any] = []
            if self._resets_anchors(container.id, firm.id, open_flags):
                # the usage log's anchors are set aside: the server's next upload starts a new chain
                superseded = self.session.execute(
                    update(UsageAnchor)
                    .where(UsageAnchor.container_id == container.id, UsageAnchor.superseded.is_(None))
                    .values(superseded=now)
                    .returning(UsageAnchor.seq),
                    execution_options={"synchronize_session": False},
                ).all()
            self.audit(
                actor,
                "container.clear",
                firm.code,
                serial=serial,
                was_flagged=was,
                unblocked=unblocked,
                anchors_superseded=len(superseded),
            )
            return {
                "serial": serial,
                "firm_code": firm.code,
                "flagged": False,
                "was_flagged": was,
                "unblocked": sorted(unblocked),
                "anchors_superseded": len(superseded),
            }

        return run_write(self.session, tx)


class AuditService(Service):
    def list(self, actor: Actor, *, firm_code: int | None = None, limit: int = 100) -> list[dict[str, Any]]:
        limit = max(1, min(limit, 1000))
        if firm_code is not None:
            firm_code = check_code(firm_code)  # a firm code is 1..2^32-1: 400 before any query

        def tx() -> list[dict[str, Any]]:
            stmt = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit)
            if not actor.admin:
                if firm_code is not None:
                    self.require_firm_access(actor, firm_code)  # another firm: 403, as every list answers
                stmt = stmt.where(AuditEntry.firm_code == actor.firm_code)
            elif firm_code is not None:
                stmt = stmt.where(AuditEntry.firm_code == firm_code)
            return [
                {
                    "id": e.id,
                    "time": e.time,
                    "actor": e.actor,
                    "role": e.role,
                    "firm_code": e.firm_code,
                    "action": e.action,
                    "detail": e.detail,
                }
                for e in self.session.scalars(stmt)
            ]

        return run_read(self.session, tx)
