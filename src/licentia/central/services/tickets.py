"""Orders and tickets: one license = one ticket, with a license id unique per firm;
and the public, rate-limited ticket info the activation wizard reads."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ...core import codes
from ...core.errors import BadInput, Conflict, InvalidItems, InvalidTicket, NotFound
from ..db import run_read, run_write
from ..models import Activation, Container, Customer, Firm, Flag, Item, Ticket, TicketItem, TicketState
from .attempts import AttemptService
from .base import Actor, Context, Service
from .catalog import PAGE_SIZE, CatalogService, bump_counter, item_expired, page

MAX_ORDER = 1000
STATES = tuple(s.value for s in TicketState)
TYPO = "This ticket id is mistyped: {reason}. Check it against the one you were given."


def normalize(text: str) -> str:
    """The canonical ticket id, or InvalidTicket (400) before any database lookup."""
    try:
        return codes.normalize_ticket(text)
    except codes.InvalidCode as exc:
        raise InvalidTicket(TYPO.format(reason=str(exc).rstrip("."))) from None


def feature_map(items: list[Item]) -> int:
    fmap = 0
    for item in items:
        fmap |= item.feature_map
    return fmap


def base_item(chosen: list[Item]) -> Item:
    """The one base item of a ticket's items; the others must be its modules."""
    bases = [i for i in chosen if i.module_of_id is None]
    if len(bases) != 1:
        raise InvalidItems("A ticket licenses one base item plus any of its module items.")
    base = bases[0]
    for item in chosen:
        if item.module_of_id is not None and item.module_of_id != base.id:
            raise InvalidItems(f"Module item {item.item_id} does not belong to base item {base.item_id}.")
    return base


class TicketService(Service):
    def __init__(self, ctx: Context, session: Session, *, catalog: CatalogService, attempts: AttemptService):
        super().__init__(ctx, session)
        self.catalog = catalog
        self.attempts = attempts

    def create_order(
        self, actor: Actor, *, firm_code: int | None, customer: str, items: list[str], count: int = 1
    ) -> dict[str, Any]:
        if not items:
            raise BadInput("An order names at least one item.")
        if not isinstance(count, int) or not 1 <= count <= MAX_ORDER:
            raise BadInput(f"quantity_of_licenses is from 1 to {MAX_ORDER}.")

        def tx() -> dict[str, Any]:
            firm = self.scoped_firm(actor, firm_code)
            cust = self.catalog.customer(firm, customer)
            chosen = self._order_items(firm, items)
            base = base_item(chosen)
            dead = [i.item_id for i in chosen if item_expired(i, self.now())]
            if dead:
                raise Conflict("item_expired", f"Item {dead[0]} has expired: it can no longer be sold.")
            order = uuid.uuid4()
            made = self._make_tickets(firm, cust, base, chosen, order, count)
            item_ids = sorted(i.item_id for i in chosen)
            self.audit(
                actor,
                "tickets.create",
                firm.code,
                order=str(order),
                customer=cust.number,
                items=item_ids,
                tickets=[t.ticket for t in made],
                license_ids=[t.license_id for t in made],
            )
            return {
                "order": str(order),
                "firm_code": firm.code,
                "customer": cust.number,
                "items": item_ids,
                "tickets": [{"ticket": t.ticket, "license_id": t.license_id} for t in made],
            }

        return run_write(self.session, tx)

    def _order_items(self, firm: Firm, item_ids: list[str]) -> list[Item]:
        """The items an order names, each once, in the order first named."""
        resolved: dict[uuid.UUID, Item] = {}
        for item_id in item_ids:
            item = self.catalog.item(firm, item_id)
            resolved[item.id] = item
        return list(resolved.values())

    def _make_tickets(
        self, firm: Firm, customer: Customer, base: Item, chosen: list[Item], order: uuid.UUID, count: int
    ) -> list[Ticket]:
        """``count`` new tickets with the next license ids of the firm, each licensing ``chosen``."""
        last = bump_counter(self.session, firm, Firm.license_counter, count)
        now = self.now()
        made = []
        for n in range(count):
            ticket = Ticket(
                ticket=codes.new_ticket_id(),
                firm_id=firm.id,
                license_id=last - count + 1 + n,
                order_id=order,
                customer_id=customer.id,
                item_id=base.id,
                state=TicketState.new.value,
                created=now,
            )
            self.session.add(ticket)
            self.session.flush()
            for item in chosen:
                self.session.add(TicketItem(ticket_id=ticket.id, item_id=item.id))
            made.append(ticket)
        self.session.flush()
        return made

    def get(self, actor: Actor, text: str) -> dict[str, Any]:
        ticket_id = normalize(text)

        def tx() -> dict[str, Any]:
            ticket, firm = self._scoped(actor, ticket_id)
            return self.view(ticket, firm)

        return run_read(self.session, tx)

    def list_tickets(
        self,
        actor: Actor,
        *,
        firm_code: int | None = None,
        customer: str | None = None,
        item: str | None = None,
        state: str | None = None,
        limit: int = PAGE_SIZE,
        offset: int = 0,
    ) -> list[dict[str, Any]]:
        """A page of the firm's tickets, newest first (highest license id first): all of
        them, or those of one customer, those licensing one item (base or module item),
        those in one state. A customer or item the firm does not have is a NotFound, so a
        mistyped filter is not mistaken for an empty list."""
        limit, offset = page(limit, offset)
        if state is not None and state not in STATES:
            raise BadInput(f"state is one of {', '.join(STATES)}.")

        def tx() -> list[dict[str, Any]]:
            firm = self.scoped_firm(actor, firm_code)
            stmt = (
                select(Ticket, Customer.number, Item.item_id, Container.serial)
                .join(Customer, Customer.id == Ticket.customer_id)
                .join(Item, Item.id == Ticket.item_id)
                .outerjoin(Container, Container.id == Ticket.container_id)
                .where(Ticket.firm_id == firm.id)
            )
            if customer is not None:
                stmt = stmt.where(Ticket.customer_id == self.catalog.customer(firm, customer).id)
            if item is not None:
                licensed = select(TicketItem.ticket_id).where(TicketItem.item_id == self.catalog.item(firm, item).id)
                stmt = stmt.where(Ticket.id.in_(licensed))
            if state is not None:
                stmt = stmt.where(Ticket.state == state)
            rows = self.session.execute(stmt.order_by(Ticket.license_id.desc()).limit(limit).offset(offset)).all()
            items: dict[uuid.UUID, list[str]] = {}
            if rows:
                for ticket_id, item_id in self.session.execute(
                    select(TicketItem.ticket_id, Item.item_id)
                    .join(Item, Item.id == TicketItem.item_id)
                    .where(TicketItem.ticket_id.in_([t.id for t, *_ in rows]))
                ):
                    items.setdefault(ticket_id, []).append(item_id)
            return [
                {
                    "ticket": t.ticket,
                    "license_id": t.license_id,
                    "firm_code": firm.code,
                    "order": str(t.order_id),
                    "customer": number,
                    "item": base,
                    "items": sorted(items.get(t.id, [base])),
                    "state": t.state,
                    "serial": serial if t.state in (TicketState.activated.value, TicketState.revoked.value) else None,
                    "created": t.created,
                    "first_activated": t.first_activated,
                    "activated": t.activated,
                    "revoked": t.revoked,
                }
                for t, number, base, serial in rows
            ]

        return run_read(self.session, tx)

    def revoke(self, actor: Actor, text: str) -> dict[str, Any]:
        ticket_id = normalize(text)

        def tx() -> dict[str, Any]:
            ticket, firm = self._scoped(actor, ticket_id, lock=True)
            if ticket.state != TicketState.revoked.value:
                before = ticket.state
                ticket.state = TicketState.revoked.value
                ticket.revoked = self.now()
                self.session.flush()
                self.audit(actor, "ticket.revoke", firm.code, ticket=ticket.ticket, state_before=before)
            return self.view(ticket, firm)

        return run_write(self.session, tx)

    def public_info(self, text: str, address: str) -> dict[str, Any]:
        """Public: what a ticket needs (level), for the activation wizard. An unknown
        ticket counts as a failed attempt of the address and the ticket."""
        ticket_id = normalize(text)  # a typo is answered before any database lookup
        self.attempts.check(address, ticket_id)
        try:
            return self._info(ticket_id)
        except NotFound:
            self.attempts.record("info", address, ticket_id)
            raise

    def _info(self, ticket_id: str) -> dict[str, Any]:
        def tx() -> dict[str, Any]:
            row = self.session.execute(
                select(Ticket, Firm.code, Item.product_code, Item.level)
                .join(Firm, Ticket.firm_id == Firm.id)
                .join(Item, Ticket.item_id == Item.id)
                .where(Ticket.ticket == ticket_id)
            ).first()
            if row is None:
                raise unknown_ticket(ticket_id)
            ticket, firm_code, product, level = row
            return {
                "ticket": ticket.ticket,
                "firm_code": firm_code,
                "product_code": product,
                "level": level,
                "state": ticket.state,
            }

        return run_read(self.session, tx)

    # ---------------------------------------------------------------- helpers

    def _scoped(self, actor: Actor, ticket_id: str, *, lock: bool = False) -> tuple[Ticket, Firm]:
        stmt = select(Ticket).where(Ticket.ticket == ticket_id)
        if lock:
            stmt = stmt.with_for_update()
        ticket = self.session.scalars(stmt).first()
        if ticket is None or (not actor.admin and ticket.firm_id != actor.firm_id):
            raise NotFound("ticket", f"There is no ticket {ticket_id} for this API key. Check the ticket id.")
        return ticket, self.session.get_one(Firm, ticket.firm_id)

    def view(self, ticket: Ticket, firm: Firm) -> dict[str, Any]:
        items = list(self.session.scalars(select(Item).join(TicketItem).where(TicketItem.ticket_id == ticket.id)))
        base = next(i for i in items if i.id == ticket.item_id)
        consumed, first_use = self.session.execute(
            select(
                func.coalesce(func.sum(Activation.units + Activation.online_units), 0), func.min(Activation.first_use)
            ).where(Activation.ticket_id == ticket.id)
        ).one()
        flags = self.session.scalar(select(func.count()).select_from(Flag).where(Flag.ticket_id == ticket.id))
        serial = None
        if ticket.container_id is not None:
            serial = self.session.scalar(select(Container.serial).where(Container.id == ticket.container_id))
        return {
            "ticket": ticket.ticket,
            "license_id": ticket.license_id,
            "firm_code": firm.code,
            "order": str(ticket.order_id),
            "customer": ticket.customer.number,
            "item": base.item_id,
            "items": sorted(i.item_id for i in items),
            "product_code": base.product_code,
            "feature_map": feature_map(items),
            "level": base.level,
            "state": ticket.state,
            "serial": serial if ticket.state in (TicketState.activated.value, TicketState.revoked.value) else None,
            "options": ticket.options,
            "created": ticket.created,
            "first_activated": ticket.first_activated,
            "activated": ticket.activated,
            "revoked": ticket.revoked,
            # what the ticket's containers reported: units consumed over every activation,
            # the first use ever, and how often Central saw its container's files restored
            "consumed": int(consumed),
            "first_use": first_use,
            "activations": ticket.activation_count,
            "flags": int(flags or 0),
        }


def unknown_ticket(ticket_id: str) -> NotFound:
    return NotFound(
        "ticket",
        "This ticket is not known to Central. Check the ticket id you were given.",
        reason=f"unknown ticket {ticket_id}",
    )
