"""Cloud leases: the device holding each cloud lease (a device's leases are counted across
licenses), the machine proofs Central accepted (each accepted once), and who ended a
device's link (a person's unlinks of other devices are counted as swaps).

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("cloud_leases", sa.Column("device", sa.String(length=32), nullable=True))
    op.create_index("ix_cloud_leases_device", "cloud_leases", ["device", "live_until"], unique=False)
    op.create_table(
        "cloud_proofs",
        sa.Column("nonce", sa.String(length=96), nullable=False),
        sa.Column("until", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("nonce", name=op.f("pk_cloud_proofs")),
    )
    op.create_index("ix_cloud_proofs_until", "cloud_proofs", ["until"], unique=False)
    op.add_column("cloud_devices", sa.Column("unlinked_by", sa.String(length=8), nullable=True))


def downgrade() -> None:
    op.drop_column("cloud_devices", "unlinked_by")
    op.drop_index("ix_cloud_proofs_until", table_name="cloud_proofs")
    op.drop_table("cloud_proofs")
    op.drop_index("ix_cloud_leases_device", table_name="cloud_leases")
    op.drop_column("cloud_leases", "device")
