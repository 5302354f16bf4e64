"""What vendors see and do about containers: a container's slot for their firm,
and clearing a slot flagged for manipulation."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from ...core import codes
from ...core.errors import BadInput, NotFound
from ..db import run_read, run_write
from ..models import AuditEntry, Container, ContainerFirm, Firm, Ticket, TicketState
from .base import Actor, Service


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
            return {
                "serial": container.serial,
                "level": container.level,
                "firm_code": firm.code,
                "reported_seq": slot.reported_seq,
                "reported_vtime": slot.reported_vtime,
                "issued_seq": slot.issued_seq,
                "flagged": slot.flagged,
                "flagged_at": slot.flagged_at,
                "tickets": list(tickets),
            }

        return run_read(self.session, tx)

    def clear(self, actor: Actor, serial: str, firm_code: int | None = None) -> dict[str, Any]:
        """Lift a manipulation flag. The reported position starts again from the
        container's next request; sequence numbers issued stay (they only grow)."""
        serial = check_serial(serial)

        def tx() -> dict[str, Any]:
            firm = self.scoped_firm(actor, firm_code)
            container, slot = self._slot(serial, firm, lock=True)
            was = slot.flagged
            slot.flagged = False
            slot.flagged_at = None
            slot.reported_seq = 0
            slot.reported_vtime = 0
            self.audit(actor, "container.clear", firm.code, serial=serial, was_flagged=was)
            return {"serial": serial, "firm_code": firm.code, "flagged": False, "was_flagged": was}

        return run_write(self.session, tx)


class AuditService(Service):
    def list(self, actor: Actor, *, firm_code: int | None = None, limit: int = 100) -> list[dict[str, Any]]:
        limit = max(1, min(limit, 1000))

        def tx() -> list[dict[str, Any]]:
            stmt = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit)
            if not actor.admin:
                stmt = stmt.where(AuditEntry.firm_code == actor.firm_code)
                if firm_code is not None and firm_code != actor.firm_code:
                    return []
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
