"""Usage reporting at database speed: the usage store's time indexes lead with the firm and
end with the row id (a view's page is one range of one index), an index on the ticket (the
item filter of module items), indexes for the sessions held into a period (released after
it starts, or still open), the product view's rollup ``usage_days`` (filled from the events
already stored), and the billing view's rollup ``usage_billing_days`` with the stale days
its job computes and the job's state.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

OLD = {
    "ix_usage_events_firm_time": ["firm_id", "access_time"],
    "ix_usage_events_customer_time": ["customer_id", "access_time"],
    "ix_usage_events_item_time": ["item_id", "access_time"],
}
NEW = {
    "ix_usage_events_firm_time": ["firm_id", "access_time", "id"],
    "ix_usage_events_customer_time": ["firm_id", "customer_id", "access_time", "id"],
    "ix_usage_events_item_time": ["firm_id", "item_id", "access_time", "id"],
    "ix_usage_events_ticket_time": ["ticket_id", "access_time"],
    "ix_usage_events_release": ["firm_id", "release_time"],
}
OPEN = "release_time IS NULL AND success > 0"
#: the rollup of the events already stored (the same grouping the upload path maintains)
FILL = """
INSERT INTO usage_days (firm_id, item_id, day, customer_id, ticket_id, license_id, product_code,
                        feature_code, user_ident, firm_code, seconds, success, fail, invalid, units)
SELECT firm_id, item_id, access_time / 86400, customer_id, ticket_id, license_id, product_code,
       feature_code, user_ident, firm_code, sum(seconds), sum(success), sum(fail), sum(invalid), sum(units)
FROM usage_events
WHERE ticket_id IS NOT NULL AND customer_id IS NOT NULL AND item_id IS NOT NULL
GROUP BY firm_id, item_id, access_time / 86400, customer_id, ticket_id, license_id, product_code,
         feature_code, user_ident, firm_code
"""


def _indexes(which: dict[str, list[str]]) -> None:
    for name, columns in which.items():
        op.create_index(name, "usage_events", columns, unique=False)


def _scoped_day(name: str) -> sa.Table:
    """The columns a billing rollup row and a stale mark share (their key, and the firm)."""
    return op.create_table(
        name,
        sa.Column("customer_id", sa.Uuid(), nullable=False),
        sa.Column("item_id", sa.Uuid(), nullable=False),
        sa.Column("day", sa.Integer(), nullable=False),
        sa.Column("firm_id", sa.Uuid(), nullable=False),
        *_BILLING.get(name, ()),
        sa.ForeignKeyConstraint(["customer_id"], ["customers.id"], name=op.f(f"fk_{name}_customer_id_customers")),
        sa.ForeignKeyConstraint(["firm_id"], ["firms.id"], name=op.f(f"fk_{name}_firm_id_firms")),
        sa.ForeignKeyConstraint(["item_id"], ["items.id"], name=op.f(f"fk_{name}_item_id_items")),
        sa.PrimaryKeyConstraint("customer_id", "item_id", "day", name=op.f(f"pk_{name}")),
    )


_BILLING = {
    "usage_billing_days": [
        sa.Column(name, sa.BigInteger(), nullable=False)
        for name in ("firm_code", "peak_seats", "seat_seconds", "sessions", "units", "refusals")
    ]
}


def upgrade() -> None:
    for name in OLD:
        op.drop_index(name, table_name="usage_events")
    _indexes(NEW)
    op.create_table(
        "usage_days",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("firm_id", sa.Uuid(), nullable=False),
        sa.Column("item_id", sa.Uuid(), nullable=False),
        sa.Column("day", sa.Integer(), nullable=False),
        sa.Column("customer_id", sa.Uuid(), nullable=False),
        sa.Column("ticket_id", sa.Uuid(), nullable=False),
        sa.Column("license_id", sa.BigInteger(), nullable=False),
        sa.Column("product_code", sa.BigInteger(), nullable=False),
        sa.Column("feature_code", sa.BigInteger(), nullable=False),
        sa.Column("user_ident", sa.String(length=256), nullable=False),
        sa.Column("firm_code", sa.BigInteger(), nullable=False),
        sa.Column("seconds", sa.BigInteger(), nullable=False),
        sa.Column("success", sa.BigInteger(), nullable=False),
        sa.Column("fail", sa.BigInteger(), nullable=False),
        sa.Column("invalid", sa.BigInteger(), nullable=False),
        sa.Column("units", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["customer_id"], ["customers.id"], name=op.f("fk_usage_days_customer_id_customers")),
        sa.ForeignKeyConstraint(["firm_id"], ["firms.id"], name=op.f("fk_usage_days_firm_id_firms")),
        sa.ForeignKeyConstraint(["item_id"], ["items.id"], name=op.f("fk_usage_days_item_id_items")),
        sa.ForeignKeyConstraint(["ticket_id"], ["tickets.id"], name=op.f("fk_usage_days_ticket_id_tickets")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_usage_days")),
        sa.UniqueConstraint(
            "firm_id",
            "item_id",
            "day",
            "customer_id",
            "ticket_id",
            "license_id",
            "product_code",
            "feature_code",
            "user_ident",
            name=op.f("uq_usage_days_firm_id"),
        ),
    )
    op.create_index("ix_usage_days_customer", "usage_days", ["firm_id", "customer_id", "day"], unique=False)
    op.create_index("ix_usage_days_ticket", "usage_days", ["ticket_id", "day"], unique=False)
    op.execute(FILL)
    op.create_index(
        "ix_usage_events_open",
        "usage_events",
        ["firm_id", "customer_id", "item_id"],
        unique=False,
        sqlite_where=sa.text(OPEN),
        postgresql_where=sa.text(OPEN),
    )
    _scoped_day("usage_billing_days")
    op.create_index("ix_usage_billing_days_firm", "usage_billing_days", ["firm_id", "day"], unique=False)
    _scoped_day("usage_billing_stale")
    op.create_table(
        "usage_rollup_state",
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("value", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_usage_rollup_state")),
    )
    # no job state yet: the billing view computes every day from the events until the
    # job's first run, which computes every day of the events already stored


def downgrade() -> None:
    op.drop_table("usage_rollup_state")
    op.drop_table("usage_billing_stale")
    op.drop_index("ix_usage_billing_days_firm", table_name="usage_billing_days")
    op.drop_table("usage_billing_days")
    op.drop_index("ix_usage_events_open", table_name="usage_events")
    op.drop_index("ix_usage_days_ticket", table_name="usage_days")
    op.drop_index("ix_usage_days_customer", table_name="usage_days")
    op.drop_table("usage_days")
    for name in NEW:
        op.drop_index(name, table_name="usage_events")
    _indexes(OLD)
