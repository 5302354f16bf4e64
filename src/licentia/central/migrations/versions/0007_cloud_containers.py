"""Cloud containers: a container Central holds for one account (personal) or one
customer's group (enterprise), and the items whose tickets may go into one.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("items", sa.Column("cloud", sa.Boolean(), nullable=False, server_default=sa.false()))
    op.create_table(
        "cloud_containers",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("firm_id", sa.Uuid(), nullable=False),
        sa.Column("container_id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=True),
        sa.Column("group_id", sa.Uuid(), nullable=True),
        sa.Column("keys_enc", sa.LargeBinary(), nullable=False),
        sa.Column("created", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"], name=op.f("fk_cloud_containers_account_id_accounts")),
        sa.ForeignKeyConstraint(
            ["container_id"], ["containers.id"], name=op.f("fk_cloud_containers_container_id_containers")
        ),
        sa.ForeignKeyConstraint(["firm_id"], ["firms.id"], name=op.f("fk_cloud_containers_firm_id_firms")),
        sa.ForeignKeyConstraint(
            ["group_id"], ["account_groups.id"], name=op.f("fk_cloud_containers_group_id_account_groups")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cloud_containers")),
        sa.UniqueConstraint("account_id", name=op.f("uq_cloud_containers_account_id")),
        sa.UniqueConstraint("container_id", name=op.f("uq_cloud_containers_container_id")),
        sa.UniqueConstraint("group_id", name=op.f("uq_cloud_containers_group_id")),
    )


def downgrade() -> None:
    op.drop_table("cloud_containers")
    # a plain ALTER TABLE ... DROP COLUMN (SQLite 3.35 and later too): a batch would copy
    # the items table, and dropping the old one fails while tickets refer to it
    op.drop_column("items", "cloud")
