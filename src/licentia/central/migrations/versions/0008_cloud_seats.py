"""Cloud seats: the leases of cloud licenses (the seat engine's, in Central's database),
their usage log, its values, and one lock row per license.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "cloud_leases",
        sa.Column("n", BigId, autoincrement=True, nullable=False),
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("client_lease_id", sa.String(length=128), nullable=False),
        sa.Column("license_key", sa.String(length=160), nullable=False),
        sa.Column("firm_code", sa.BigInteger(), nullable=False),
        sa.Column("product_code", sa.BigInteger(), nullable=False),
        sa.Column("license_id", sa.BigInteger(), nullable=False),
        sa.Column("feature_code", sa.BigInteger(), nullable=False),
        sa.Column("feature_map", sa.BigInteger(), nullable=False),
        sa.Column("ticket", sa.String(length=32), nullable=True),
        sa.Column("mode", sa.String(length=16), nullable=False),
        sa.Column("seat", sa.String(length=512), nullable=False),
        sa.Column("user_name", sa.String(length=256), nullable=False),
        sa.Column("host", sa.String(length=256), nullable=False),
        sa.Column("ip", sa.String(length=64), nullable=False),
        sa.Column("groups", sa.Text(), nullable=False),
        sa.Column("pid", sa.BigInteger(), nullable=False),
        sa.Column("access_time", sa.BigInteger(), nullable=False),
        sa.Column("renewed", sa.BigInteger(), nullable=False),
        sa.Column("expires", sa.BigInteger(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("end_time", sa.BigInteger(), nullable=True),
        sa.Column("linger_until", sa.BigInteger(), nullable=True),
        sa.Column("live_until", sa.BigInteger(), nullable=False),
        sa.Column("borrower", sa.Text(), nullable=True),
        sa.Column("first_use", sa.BigInteger(), nullable=True),
        sa.Column("holder", sa.String(length=64), nullable=True),
        sa.Column("proof_counter", sa.BigInteger(), nullable=False),
        sa.Column("machine", sa.String(length=256), nullable=True),
        sa.Column("grace_until", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("n", name=op.f("pk_cloud_leases")),
        sa.UniqueConstraint("id", name=op.f("uq_cloud_leases_id")),
    )
    op.create_index("ix_cloud_leases_client", "cloud_leases", ["client_lease_id", "access_time"])
    op.create_index("ix_cloud_leases_live", "cloud_leases", ["license_key", "live_until", "seat", "mode"])
    op.create_index(
        "ix_cloud_leases_machine", "cloud_leases", ["license_key", "machine", "mode", "state", "live_until"]
    )
    op.create_index("ix_cloud_leases_until", "cloud_leases", ["live_until"])
    op.create_table(
        "cloud_seat_events",
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("time", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("lease_id", sa.String(length=64), nullable=True),
        sa.Column("access_time", sa.BigInteger(), nullable=True),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_cloud_seat_events")),
    )
    op.create_index("ix_cloud_seat_events_lease", "cloud_seat_events", ["lease_id"])
    op.create_index("ix_cloud_seat_events_time", "cloud_seat_events", ["time"])
    op.create_table(
        "cloud_seat_locks",
        sa.Column("license_key", sa.String(length=160), nullable=False),
        sa.PrimaryKeyConstraint("license_key", name=op.f("pk_cloud_seat_locks")),
    )
    op.create_table(
        "cloud_seat_meta",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_cloud_seat_meta")),
    )


def downgrade() -> None:
    op.drop_table("cloud_seat_meta")
    op.drop_table("cloud_seat_locks")
    op.drop_index("ix_cloud_seat_events_time", table_name="cloud_seat_events")
    op.drop_index("ix_cloud_seat_events_lease", table_name="cloud_seat_events")
    op.drop_table("cloud_seat_events")
    op.drop_index("ix_cloud_leases_until", table_name="cloud_leases")
    op.drop_index("ix_cloud_leases_machine", table_name="cloud_leases")
    op.drop_index("ix_cloud_leases_live", table_name="cloud_leases")
    op.drop_index("ix_cloud_leases_client", table_name="cloud_leases")
    op.drop_table("cloud_leases")
