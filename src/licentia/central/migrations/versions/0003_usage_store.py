"""The usage store: one table of usage events from every source (license servers'
anchored logs first), the anchors of each license server's usage log, and each firm's
usage retention (400 days unless the firm says otherwise).

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.add_column("firms", sa.Column("usage_retention_days", sa.Integer(), nullable=False, server_default="400"))
    op.create_table(
        "usage_events",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("firm_id", sa.Uuid(), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("container_id", sa.Uuid(), nullable=True),
        sa.Column("seq", sa.BigInteger(), nullable=True),
        sa.Column("lease_id", sa.String(length=128), nullable=True),
        sa.Column("access_time", sa.BigInteger(), nullable=False),
        sa.Column("release_time", sa.BigInteger(), nullable=True),
        sa.Column("seconds", sa.BigInteger(), nullable=False),
        sa.Column("success", sa.Integer(), nullable=False),
        sa.Column("fail", sa.Integer(), nullable=False),
        sa.Column("invalid", sa.Integer(), nullable=False),
        sa.Column("firm_code", sa.BigInteger(), nullable=False),
        sa.Column("product_code", sa.BigInteger(), nullable=False),
        sa.Column("feature_code", sa.BigInteger(), nullable=False),
        sa.Column("feature_map", sa.BigInteger(), nullable=False),
        sa.Column("license_id", sa.BigInteger(), nullable=False),
        sa.Column("ticket_id", sa.Uuid(), nullable=True),
        sa.Column("customer_id", sa.Uuid(), nullable=True),
        sa.Column("item_id", sa.Uuid(), nullable=True),
        sa.Column("user_ident", sa.String(length=256), nullable=False),
        sa.Column("host", sa.String(length=256), nullable=False),
        sa.Column("address", sa.String(length=256), nullable=False),
        sa.Column("mode", sa.String(length=16), nullable=False),
        sa.Column("seat", sa.String(length=256), nullable=True),
        sa.Column("units", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["container_id"], ["containers.id"], name=op.f("fk_usage_events_container_id_containers")
        ),
        sa.ForeignKeyConstraint(["customer_id"], ["customers.id"], name=op.f("fk_usage_events_customer_id_customers")),
        sa.ForeignKeyConstraint(["firm_id"], ["firms.id"], name=op.f("fk_usage_events_firm_id_firms")),
        sa.ForeignKeyConstraint(["item_id"], ["items.id"], name=op.f("fk_usage_events_item_id_items")),
        sa.ForeignKeyConstraint(["ticket_id"], ["tickets.id"], name=op.f("fk_usage_events_ticket_id_tickets")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_usage_events")),
        sa.UniqueConstraint("container_id", "seq", name=op.f("uq_usage_events_container_id")),
    )
    op.create_index("ix_usage_events_session", "usage_events", ["container_id", "lease_id"], unique=False)
    op.create_index("ix_usage_events_firm_time", "usage_events", ["firm_id", "access_time"], unique=False)
    op.create_index("ix_usage_events_customer_time", "usage_events", ["customer_id", "access_time"], unique=False)
    op.create_index("ix_usage_events_item_time", "usage_events", ["item_id", "access_time"], unique=False)
    op.create_table(
        "usage_anchors",
        sa.Column("container_id", sa.Uuid(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.Column("time", sa.BigInteger(), nullable=False),
        sa.Column("upload", sa.String(length=64), nullable=False),
        sa.Column("superseded", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(
            ["container_id"], ["containers.id"], name=op.f("fk_usage_anchors_container_id_containers")
        ),
        sa.PrimaryKeyConstraint("container_id", "seq", name=op.f("pk_usage_anchors")),
    )


def downgrade() -> None:
    op.drop_table("usage_anchors")
    op.drop_index("ix_usage_events_item_time", table_name="usage_events")
    op.drop_index("ix_usage_events_customer_time", table_name="usage_events")
    op.drop_index("ix_usage_events_firm_time", table_name="usage_events")
    op.drop_index("ix_usage_events_session", table_name="usage_events")
    op.drop_table("usage_events")
    with op.batch_alter_table("firms") as batch:
        batch.drop_column("usage_retention_days")
