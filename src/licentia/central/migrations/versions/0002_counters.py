"""Counters that answer to Central: activations (one per signed entry, with merged
counters), the chain of each container slot's documents, manipulation flags for review,
idempotency keys, the highest generation and last contact of each slot, each ticket's activation count, and
each item's policy on manipulation.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import hashlib
import json
import uuid

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def _digest(entry_text: str) -> str:
    """The digest of a stored signed entry: SHA-256 over its canonical JSON (docs/formats.md)."""
    doc = json.loads(entry_text)
    canonical = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    return hashlib.sha256(canonical).hexdigest()


def upgrade() -> None:
    op.add_column("container_firms", sa.Column("reported_gen", sa.BigInteger(), nullable=False, server_default="0"))
    op.add_column("container_firms", sa.Column("last_contact", sa.BigInteger(), nullable=True))
    op.add_column("tickets", sa.Column("activation_count", sa.Integer(), nullable=False, server_default="0"))
    op.add_column("items", sa.Column("policy", sa.String(length=16), nullable=False, server_default="rebase"))
    op.add_column("items", sa.Column("flag_window_days", sa.Integer(), nullable=False, server_default="90"))
    op.create_table(
        "activations",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("ticket_id", sa.Uuid(), nullable=False),
        sa.Column("container_id", sa.Uuid(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("units", sa.BigInteger(), nullable=False),
        sa.Column("online_units", sa.BigInteger(), nullable=False),
        sa.Column("first_use", sa.BigInteger(), nullable=True),
        sa.Column("created", sa.BigInteger(), nullable=False),
        sa.Column("ended", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(
            ["container_id"], ["containers.id"], name=op.f("fk_activations_container_id_containers")
        ),
        sa.ForeignKeyConstraint(["ticket_id"], ["tickets.id"], name=op.f("fk_activations_ticket_id_tickets")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_activations")),
        sa.UniqueConstraint("digest", name=op.f("uq_activations_digest")),
    )
    op.create_index("ix_activations_ticket", "activations", ["ticket_id"], unique=False)
    op.create_table(
        "idempotency_keys",
        sa.Column("scope", sa.String(length=160), nullable=False),
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("params", sa.String(length=64), nullable=False),
        sa.Column("response", sa.Text(), nullable=False),
        sa.Column("created", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("scope", "key", name=op.f("pk_idempotency_keys")),
    )
    op.create_index("ix_idempotency_keys_created", "idempotency_keys", ["created"], unique=False)
    op.create_table(
        "chain_links",
        sa.Column("slot_id", sa.Uuid(), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("gen", sa.BigInteger(), nullable=True),
        sa.Column("successor", sa.String(length=64), nullable=True),
        sa.Column("created", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["slot_id"], ["container_firms.id"], name=op.f("fk_chain_links_slot_id_container_firms")
        ),
        sa.PrimaryKeyConstraint("slot_id", "digest", name=op.f("pk_chain_links")),
    )
    op.create_table(
        "manipulation_flags",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("time", sa.BigInteger(), nullable=False),
        sa.Column("container_id", sa.Uuid(), nullable=False),
        sa.Column("firm_id", sa.Uuid(), nullable=False),
        sa.Column("ticket_id", sa.Uuid(), nullable=True),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("document", sa.String(length=64), nullable=False),
        sa.Column("cleared", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(
            ["container_id"], ["containers.id"], name=op.f("fk_manipulation_flags_container_id_containers")
        ),
        sa.ForeignKeyConstraint(["firm_id"], ["firms.id"], name=op.f("fk_manipulation_flags_firm_id_firms")),
        sa.ForeignKeyConstraint(["ticket_id"], ["tickets.id"], name=op.f("fk_manipulation_flags_ticket_id_tickets")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_manipulation_flags")),
    )
    op.create_index("ix_manipulation_flags_ticket_time", "manipulation_flags", ["ticket_id", "time"], unique=False)
    # every ticket activated before counters existed: its current entry is activation 1
    conn = op.get_bind()
    tickets = sa.table(
        "tickets",
        sa.column("id", sa.Uuid()),
        sa.column("state", sa.String()),
        sa.column("container_id", sa.Uuid()),
        sa.column("entry", sa.Text()),
        sa.column("activated", sa.BigInteger()),
        sa.column("first_activated", sa.BigInteger()),
        sa.column("activation_count", sa.Integer()),
    )
    activations = sa.table(
        "activations",
        sa.column("id", sa.Uuid()),
        sa.column("ticket_id", sa.Uuid()),
        sa.column("container_id", sa.Uuid()),
        sa.column("number", sa.Integer()),
        sa.column("digest", sa.String()),
        sa.column("units", sa.BigInteger()),
        sa.column("online_units", sa.BigInteger()),
        sa.column("first_use", sa.BigInteger()),
        sa.column("created", sa.BigInteger()),
        sa.column("ended", sa.BigInteger()),
    )
    conn.execute(tickets.update().where(tickets.c.first_activated.is_not(None)).values(activation_count=1))
    rows = conn.execute(
        sa.select(tickets.c.id, tickets.c.container_id, tickets.c.entry, tickets.c.activated).where(
            tickets.c.state == "activated", tickets.c.entry.is_not(None), tickets.c.container_id.is_not(None)
        )
    ).all()
    for tid, cid, entry, activated in rows:
        conn.execute(
            activations.insert().values(
                id=uuid.uuid4(),
                ticket_id=tid,
                container_id=cid,
                number=1,
                digest=_digest(entry),
                units=0,
                online_units=0,
                first_use=None,
                created=activated or 0,
                ended=None,
            )
        )


def downgrade() -> None:
    # tickets blocked after manipulation were "revoked" until cleared in the schema before
    op.execute("UPDATE tickets SET state = 'revoked' WHERE state = 'blocked'")
    op.drop_index("ix_manipulation_flags_ticket_time", table_name="manipulation_flags")
    op.drop_table("manipulation_flags")
    op.drop_table("chain_links")
    op.drop_index("ix_idempotency_keys_created", table_name="idempotency_keys")
    op.drop_table("idempotency_keys")
    op.drop_index("ix_activations_ticket", table_name="activations")
    op.drop_table("activations")
    with op.batch_alter_table("items") as batch:
        batch.drop_column("flag_window_days")
        batch.drop_column("policy")
    with op.batch_alter_table("tickets") as batch:
        batch.drop_column("activation_count")
    with op.batch_alter_table("container_firms") as batch:
        batch.drop_column("last_contact")
        batch.drop_column("reported_gen")
