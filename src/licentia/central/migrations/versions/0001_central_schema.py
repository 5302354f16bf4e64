"""Central schema: firms, keys, API keys, items, customers, tickets, containers,
answered requests and receipts, the append-only audit log, failed attempts.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_SQLITE_TRIGGERS = [
    """CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
       BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END""",
    """CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
       BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END""",
]
_PG_TRIGGERS = [
    """CREATE FUNCTION licentia_audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
       BEGIN RAISE EXCEPTION 'audit_log is append-only'; END $$""",
    """CREATE TRIGGER audit_log_no_change BEFORE UPDATE OR DELETE ON audit_log
       FOR EACH ROW EXECUTE FUNCTION licentia_audit_log_append_only()""",
    """CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
       FOR EACH STATEMENT EXECUTE FUNCTION licentia_audit_log_append_only()""",
]


def _add_triggers() -> None:
    dialect = op.get_bind().dialect.name
    for statement in _SQLITE_TRIGGERS if dialect == "sqlite" else _PG_TRIGGERS if dialect == "postgresql" else []:
        op.execute(statement)


def _drop_triggers() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        op.execute("DROP TRIGGER IF EXISTS audit_log_no_update")
        op.execute("DROP TRIGGER IF EXISTS audit_log_no_delete")
    elif dialect == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS audit_log_no_change ON audit_log")
        op.execute("DROP TRIGGER IF EXISTS audit_log_no_truncate ON audit_log")
        op.execute("DROP FUNCTION IF EXISTS licentia_audit_log_append_only()")


def upgrade() -> None:
    op.create_table(
        "attempts",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("time", sa.BigInteger(), nullable=False),
        sa.Column("scope", sa.String(length=8), nullable=False),
        sa.Column("key", sa.String(length=128), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_attempts")),
    )
    op.create_index("ix_attempts_scope_key_time", "attempts", ["scope", "key", "time"], unique=False)
    op.create_table(
        "audit_log",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("time", sa.BigInteger(), nullable=False),
        sa.Column("actor", sa.String(length=32), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("firm_code", sa.BigInteger(), nullable=True),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
    )
    op.create_table(
        "containers",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("serial", sa.String(length=32), nullable=False),
        sa.Column("level", sa.String(length=16), nullable=False),
        sa.Column("sign_pub", sa.String(length=64), nullable=False),
        sa.Column("box_pub", sa.String(length=64), nullable=False),
        sa.Column("created", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_containers")),
        sa.UniqueConstraint("serial", name=op.f("uq_containers_serial")),
    )
    op.create_table(
        "firms",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("code", sa.BigInteger(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("secret_enc", sa.LargeBinary(), nullable=False),
        sa.Column("license_counter", sa.BigInteger(), nullable=False),
        sa.Column("item_counter", sa.Integer(), nullable=False),
        sa.Column("customer_counter", sa.Integer(), nullable=False),
        sa.Column("created", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_firms")),
        sa.UniqueConstraint("code", name=op.f("uq_firms_code")),
    )
    op.create_table(
        "api_keys",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("key_id", sa.String(length=16), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("firm_id", sa.Uuid(), nullable=True),
        sa.Column("label", sa.String(length=200), nullable=True),
        sa.Column("revoked", sa.Boolean(), nullable=False),
        sa.Column("created", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["firm_id"], ["firms.id"], name=op.f("fk_api_keys_firm_id_firms")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_keys")),
        sa.UniqueConstraint("key_hash", name=op.f("uq_api_keys_key_hash")),
        sa.UniqueConstraint("key_id", name=op.f("uq_api_keys_key_id")),
    )
    op.create_table(
        "container_firms",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("container_id", sa.Uuid(), nullable=False),
        sa.Column("firm_id", sa.Uuid(), nullable=False),
        sa.Column("reported_seq", sa.BigInteger(), nullable=False),
        sa.Column("reported_vtime", sa.BigInteger(), nullable=False),
        sa.Column("issued_seq", sa.BigInteger(), nullable=False),
        sa.Column("flagged", sa.Boolean(), nullable=False),
        sa.Column("flagged_at", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(
            ["container_id"], ["containers.id"], name=op.f("fk_container_firms_container_id_containers")
        ),
        sa.ForeignKeyConstraint(["firm_id"], ["firms.id"], name=op.f("fk_container_firms_firm_id_firms")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_container_firms")),
        sa.UniqueConstraint("container_id", "firm_id", name=op.f("uq_container_firms_container_id")),
    )
    op.create_table(
        "customers",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("firm_id", sa.Uuid(), nullable=False),
        sa.Column("number", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=True),
        sa.Column("created", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["firm_id"], ["firms.id"], name=op.f("fk_customers_firm_id_firms")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_customers")),
        sa.UniqueConstraint("firm_id", "number", name=op.f("uq_customers_firm_id")),
    )
    op.create_table(
        "firm_keys",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("firm_id", sa.Uuid(), nullable=False),
        sa.Column("kid", sa.String(length=16), nullable=False),
        sa.Column("public_pem", sa.Text(), nullable=False),
        sa.Column("private_enc", sa.LargeBinary(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("retired", sa.Boolean(), nullable=False),
        sa.Column("endorsement", sa.JSON(), nullable=True),
        sa.Column("created_seq", sa.Integer(), nullable=False),
        sa.Column("created", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["firm_id"], ["firms.id"], name=op.f("fk_firm_keys_firm_id_firms")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_firm_keys")),
        sa.UniqueConstraint("firm_id", "kid", name=op.f("uq_firm_keys_firm_id")),
    )
    op.create_table(
        "items",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("firm_id", sa.Uuid(), nullable=False),
        sa.Column("item_id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("product_code", sa.BigInteger(), nullable=False),
        sa.Column("feature_map", sa.BigInteger(), nullable=False),
        sa.Column("level", sa.String(length=16), nullable=False),
        sa.Column("key_versions", sa.JSON(), nullable=False),
        sa.Column("options", sa.JSON(), nullable=False),
        sa.Column("module_of_id", sa.Uuid(), nullable=True),
        sa.Column("created", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["firm_id"], ["firms.id"], name=op.f("fk_items_firm_id_firms")),
        sa.ForeignKeyConstraint(["module_of_id"], ["items.id"], name=op.f("fk_items_module_of_id_items")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_items")),
        sa.UniqueConstraint("firm_id", "item_id", name=op.f("uq_items_firm_id")),
    )
    op.create_table(
        "processed_requests",
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("container_id", sa.Uuid(), nullable=False),
        sa.Column("firm_id", sa.Uuid(), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("response", sa.Text(), nullable=False),
        sa.Column("created", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["container_id"], ["containers.id"], name=op.f("fk_processed_requests_container_id_containers")
        ),
        sa.ForeignKeyConstraint(["firm_id"], ["firms.id"], name=op.f("fk_processed_requests_firm_id_firms")),
        sa.PrimaryKeyConstraint("digest", name=op.f("pk_processed_requests")),
    )
    op.create_table(
        "tickets",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("ticket", sa.String(length=32), nullable=False),
        sa.Column("firm_id", sa.Uuid(), nullable=False),
        sa.Column("license_id", sa.BigInteger(), nullable=False),
        sa.Column("order_id", sa.Uuid(), nullable=False),
        sa.Column("customer_id", sa.Uuid(), nullable=False),
        sa.Column("item_id", sa.Uuid(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("container_id", sa.Uuid(), nullable=True),
        sa.Column("options", sa.JSON(), nullable=True),
        sa.Column("first_activated", sa.BigInteger(), nullable=True),
        sa.Column("activated", sa.BigInteger(), nullable=True),
        sa.Column("entry", sa.Text(), nullable=True),
        sa.Column("created", sa.BigInteger(), nullable=False),
        sa.Column("revoked", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(["container_id"], ["containers.id"], name=op.f("fk_tickets_container_id_containers")),
        sa.ForeignKeyConstraint(["customer_id"], ["customers.id"], name=op.f("fk_tickets_customer_id_customers")),
        sa.ForeignKeyConstraint(["firm_id"], ["firms.id"], name=op.f("fk_tickets_firm_id_firms")),
        sa.ForeignKeyConstraint(["item_id"], ["items.id"], name=op.f("fk_tickets_item_id_items")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tickets")),
        sa.UniqueConstraint("firm_id", "license_id", name=op.f("uq_tickets_firm_id")),
        sa.UniqueConstraint("ticket", name=op.f("uq_tickets_ticket")),
    )
    op.create_index("ix_tickets_container_state", "tickets", ["container_id", "firm_id", "state"], unique=False)
    op.create_table(
        "processed_receipts",
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("container_id", sa.Uuid(), nullable=False),
        sa.Column("ticket_id", sa.Uuid(), nullable=False),
        sa.Column("response", sa.Text(), nullable=False),
        sa.Column("created", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["container_id"], ["containers.id"], name=op.f("fk_processed_receipts_container_id_containers")
        ),
        sa.ForeignKeyConstraint(["ticket_id"], ["tickets.id"], name=op.f("fk_processed_receipts_ticket_id_tickets")),
        sa.PrimaryKeyConstraint("digest", name=op.f("pk_processed_receipts")),
    )
    op.create_table(
        "ticket_items",
        sa.Column("ticket_id", sa.Uuid(), nullable=False),
        sa.Column("item_id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(["item_id"], ["items.id"], name=op.f("fk_ticket_items_item_id_items")),
        sa.ForeignKeyConstraint(["ticket_id"], ["tickets.id"], name=op.f("fk_ticket_items_ticket_id_tickets")),
        sa.PrimaryKeyConstraint("ticket_id", "item_id", name=op.f("pk_ticket_items")),
    )
    _add_triggers()


def downgrade() -> None:
    _drop_triggers()
    op.drop_table("ticket_items")
    op.drop_table("processed_receipts")
    op.drop_index("ix_tickets_container_state", table_name="tickets")
    op.drop_table("tickets")
    op.drop_table("processed_requests")
    op.drop_table("items")
    op.drop_table("firm_keys")
    op.drop_table("customers")
    op.drop_table("container_firms")
    op.drop_table("api_keys")
    op.drop_table("firms")
    op.drop_table("containers")
    op.drop_table("audit_log")
    op.drop_index("ix_attempts_scope_key_time", table_name="attempts")
    op.drop_table("attempts")
