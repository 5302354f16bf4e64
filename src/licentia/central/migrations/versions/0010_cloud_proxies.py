"""Proxy license servers: a license server linked to a group's enterprise cloud container,
holding a stated number of its seats (``cloud_proxies``).

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "cloud_proxies",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("firm_id", sa.Uuid(), nullable=False),
        sa.Column("group_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("seats", sa.Integer(), nullable=False),
        sa.Column("created", sa.BigInteger(), nullable=False),
        sa.Column("created_by", sa.String(length=254), nullable=False),
        sa.Column("code_hash", sa.String(length=64), nullable=True),
        sa.Column("code_expires", sa.BigInteger(), nullable=True),
        sa.Column("container_id", sa.Uuid(), nullable=True),
        sa.Column("token_hash", sa.String(length=64), nullable=True),
        sa.Column("linked", sa.BigInteger(), nullable=True),
        sa.Column("address", sa.String(length=64), nullable=True),
        sa.Column("refreshed", sa.BigInteger(), nullable=True),
        sa.Column("until", sa.BigInteger(), nullable=True),
        sa.Column("entries", sa.Text(), nullable=True),
        sa.Column("ended", sa.BigInteger(), nullable=True),
        sa.Column("ended_by", sa.String(length=16), nullable=True),
        sa.ForeignKeyConstraint(["firm_id"], ["firms.id"], name=op.f("fk_cloud_proxies_firm_id_firms")),
        sa.ForeignKeyConstraint(
            ["group_id"], ["account_groups.id"], name=op.f("fk_cloud_proxies_group_id_account_groups")
        ),
        sa.ForeignKeyConstraint(
            ["container_id"], ["containers.id"], name=op.f("fk_cloud_proxies_container_id_containers")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cloud_proxies")),
        sa.UniqueConstraint("group_id", "name", name=op.f("uq_cloud_proxies_group_id")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_cloud_proxies_token_hash")),
    )
    op.create_index("ix_cloud_proxies_container", "cloud_proxies", ["container_id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_cloud_proxies_container", table_name="cloud_proxies")
    op.drop_table("cloud_proxies")
