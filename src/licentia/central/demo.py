"""Demo data for ``licentia central serve --demo``: on an empty database, a firm
(10101, "Demo Software"), an item, a customer and one ticket."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import func, select

from .models import Customer, Firm, Role, Ticket, TicketState
from .services import CatalogService, Context, FirmService, TicketService
from .services._base import Actor

FIRM_CODE = 10101
FIRM_NAME = "Demo Software"
ITEM_ID = "F-00001-1"
CUSTOMER = "DEMO-1"
ACTOR = Actor("demo-seed", Role.admin)


@dataclass(frozen=True)
class Demo:
    seeded: bool  # False: the database was not empty
    ticket: str | None
    pem_path: Path | None


def seed(ctx: Context) -> Demo:
    with ctx.db.session() as session:
        with session.begin():
            firms = session.scalar(select(func.count()).select_from(Firm)) or 0
        if firms == 0:
            FirmService(ctx, session).create(ACTOR, code=FIRM_CODE, name=FIRM_NAME)
            CatalogService(ctx, session).create_item(
                ACTOR,
                firm_code=FIRM_CODE,
                item_id=ITEM_ID,
                name="Demo Product",
                product_code=1,
                feature_map=0xFFFFFFFF,
                level="medium",
                options={"expires_days": 30, "units": 1000},
            )
            CatalogService(ctx, session).create_customer(
                ACTOR, firm_code=FIRM_CODE, number=CUSTOMER, name="Demo Customer", email="demo@example.com"
            )
            order = TicketService(ctx, session).create_order(
                ACTOR, firm_code=FIRM_CODE, customer=CUSTOMER, items=[ITEM_ID], count=1
            )
            ticket: str | None = order["tickets"][0]["ticket"]
            seeded = True
        else:
            seeded = False
            with session.begin():
                ticket = session.scalar(
                    select(Ticket.ticket)
                    .join(Firm, Ticket.firm_id == Firm.id)
                    .join(Customer, Ticket.customer_id == Customer.id)
                    .where(Firm.code == FIRM_CODE, Customer.number == CUSTOMER, Ticket.state == TicketState.new.value)
                    .order_by(Ticket.license_id)
                    .limit(1)
                )
                has_firm = session.scalar(select(Firm.id).where(Firm.code == FIRM_CODE)) is not None
            if not has_firm:
                return Demo(False, None, None)
        pem = FirmService(ctx, session).public_pem(FIRM_CODE)
    path = ctx.settings.data_dir / f"firm-{FIRM_CODE}.pem"
    path.write_text(pem)
    return Demo(seeded, ticket, path)
