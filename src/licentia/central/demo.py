"""Demo data for ``licentia central serve --demo``: on an empty database, a firm
(10101, "Demo Software"), an item, a customer and one ticket."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from .models import Customer, Firm, Role, Ticket, TicketState
from .services import Actor, AttemptService, CatalogService, Context, FirmService, TicketService

FIRM_CODE = 10101
FIRM_NAME = "Demo Software"
ITEM_ID = "F-00001-1"
CUSTOMER = "DEMO-1"
CUSTOMER_NAME = "Demo Customer"
ACTOR = Actor("demo-seed", Role.admin)


@dataclass(frozen=True)
class Demo:
    seeded: bool  # False: the database was not empty
    ticket: str | None
    pem_path: Path | None


def seed(ctx: Context) -> Demo:
    """Seed an empty database; on one that is not, find the demo customer's first unused ticket."""
    with ctx.db.session() as session:
        with session.begin():
            empty = not session.scalar(select(func.count()).select_from(Firm))
        if empty:
            ticket: str | None = _seed(ctx, session)
        else:
            with session.begin():
                if session.scalar(select(Firm.id).where(Firm.code == FIRM_CODE)) is None:
                    return Demo(False, None, None)
                ticket = _unused_ticket(session)
        pem = FirmService(ctx, session).public_pem(FIRM_CODE)
    path = ctx.settings.data_dir / f"firm-{FIRM_CODE}.pem"
    path.write_text(pem)
    return Demo(empty, ticket, path)


def _seed(ctx: Context, session: Session) -> str:
    """The demo firm, item, customer and one ticket: that ticket."""
    catalog = CatalogService(ctx, session)
    tickets = TicketService(ctx, session, catalog=catalog, attempts=AttemptService(ctx, session))
    FirmService(ctx, session).create(ACTOR, code=FIRM_CODE, name=FIRM_NAME)
    catalog.create_item(
        ACTOR,
        firm_code=FIRM_CODE,
        item_id=ITEM_ID,
        name="Demo Product",
        product_code=1,
        feature_map=0xFFFFFFFF,
        level="medium",
        options={"expires_days": 30, "units": 1000},
    )
    catalog.create_customer(ACTOR, firm_code=FIRM_CODE, number=CUSTOMER, name=CUSTOMER_NAME, email="demo@example.com")
    order = tickets.create_order(ACTOR, firm_code=FIRM_CODE, customer=CUSTOMER, items=[ITEM_ID], count=1)
    return str(order["tickets"][0]["ticket"])


def _unused_ticket(session: Session) -> str | None:
    return session.scalar(
        select(Ticket.ticket)
        .join(Firm, Ticket.firm_id == Firm.id)
        .join(Customer, Ticket.customer_id == Customer.id)
        .where(Firm.code == FIRM_CODE, Customer.number == CUSTOMER, Ticket.state == TicketState.new.value)
        .order_by(Ticket.license_id)
        .limit(1)
    )
