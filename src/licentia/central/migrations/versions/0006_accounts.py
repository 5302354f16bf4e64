"""Cloud accounts: people who sign in (per firm), customers' groups and their members,
devices linked by their machine container key, sessions (stored as hashes) and device
sign-ins in progress.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "accounts",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("firm_id", sa.Uuid(), nullable=False),
        sa.Column("login", sa.String(length=254), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("role", sa.String(length=24), nullable=False),
        sa.Column("customer_id", sa.Uuid(), nullable=True),
        sa.Column("password_hash", sa.String(length=200), nullable=True),
        sa.Column("disabled", sa.Boolean(), nullable=False),
        sa.Column("created", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["customer_id"], ["customers.id"], name=op.f("fk_accounts_customer_id_customers")),
        sa.ForeignKeyConstraint(["firm_id"], ["firms.id"], name=op.f("fk_accounts_firm_id_firms")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_accounts")),
        sa.UniqueConstraint("firm_id", "login", name=op.f("uq_accounts_firm_id")),
    )
    op.create_index("ix_accounts_customer", "accounts", ["customer_id"])
    op.create_table(
        "account_groups",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("firm_id", sa.Uuid(), nullable=False),
        sa.Column("customer_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("created", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customers.id"], name=op.f("fk_account_groups_customer_id_customers")
        ),
        sa.ForeignKeyConstraint(["firm_id"], ["firms.id"], name=op.f("fk_account_groups_firm_id_firms")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_account_groups")),
        sa.UniqueConstraint("customer_id", "name", name=op.f("uq_account_groups_customer_id")),
    )
    op.create_table(
        "group_members",
        sa.Column("group_id", sa.Uuid(), nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("admin", sa.Boolean(), nullable=False),
        sa.Column("added", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"], name=op.f("fk_group_members_account_id_accounts")),
        sa.ForeignKeyConstraint(
            ["group_id"], ["account_groups.id"], name=op.f("fk_group_members_group_id_account_groups")
        ),
        sa.PrimaryKeyConstraint("group_id", "account_id", name=op.f("pk_group_members")),
    )
    op.create_index("ix_group_members_account", "group_members", ["account_id"])
    op.create_table(
        "cloud_devices",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("firm_id", sa.Uuid(), nullable=False),
        sa.Column("serial", sa.String(length=32), nullable=False),
        sa.Column("sign_pub", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("linked", sa.BigInteger(), nullable=False),
        sa.Column("unlinked", sa.BigInteger(), nullable=True),
        sa.Column("address", sa.String(length=64), nullable=False),
        sa.Column("seen", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"], name=op.f("fk_cloud_devices_account_id_accounts")),
        sa.ForeignKeyConstraint(["firm_id"], ["firms.id"], name=op.f("fk_cloud_devices_firm_id_firms")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cloud_devices")),
    )
    op.create_index("ix_cloud_devices_account", "cloud_devices", ["account_id", "unlinked"])
    op.create_table(
        "account_sessions",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("device_id", sa.Uuid(), nullable=True),
        sa.Column("csrf", sa.String(length=64), nullable=True),
        sa.Column("address", sa.String(length=64), nullable=False),
        sa.Column("created", sa.BigInteger(), nullable=False),
        sa.Column("seen", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"], name=op.f("fk_account_sessions_account_id_accounts")),
        sa.ForeignKeyConstraint(
            ["device_id"], ["cloud_devices.id"], name=op.f("fk_account_sessions_device_id_cloud_devices")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_account_sessions")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_account_sessions_token_hash")),
    )
    op.create_index("ix_account_sessions_account", "account_sessions", ["account_id"])
    op.create_table(
        "device_authorizations",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("code_hash", sa.String(length=64), nullable=False),
        sa.Column("user_code", sa.String(length=8), nullable=False),
        sa.Column("firm_id", sa.Uuid(), nullable=False),
        sa.Column("device_name", sa.String(length=200), nullable=False),
        sa.Column("serial", sa.String(length=32), nullable=False),
        sa.Column("sign_pub", sa.String(length=64), nullable=False),
        sa.Column("address", sa.String(length=64), nullable=False),
        sa.Column("created", sa.BigInteger(), nullable=False),
        sa.Column("expires", sa.BigInteger(), nullable=False),
        sa.Column("state", sa.String(length=10), nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=True),
        sa.Column("polled", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_device_authorizations_account_id_accounts")
        ),
        sa.ForeignKeyConstraint(["firm_id"], ["firms.id"], name=op.f("fk_device_authorizations_firm_id_firms")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_device_authorizations")),
        sa.UniqueConstraint("code_hash", name=op.f("uq_device_authorizations_code_hash")),
        sa.UniqueConstraint("user_code", name=op.f("uq_device_authorizations_user_code")),
    )
    op.create_index("ix_device_authorizations_address", "device_authorizations", ["address", "created"])


def downgrade() -> None:
    op.drop_index("ix_device_authorizations_address", table_name="device_authorizations")
    op.drop_table("device_authorizations")
    op.drop_index("ix_account_sessions_account", table_name="account_sessions")
    op.drop_table("account_sessions")
    op.drop_index("ix_cloud_devices_account", table_name="cloud_devices")
    op.drop_table("cloud_devices")
    op.drop_index("ix_group_members_account", table_name="group_members")
    op.drop_table("group_members")
    op.drop_table("account_groups")
    op.drop_index("ix_accounts_customer", table_name="accounts")
    op.drop_table("accounts")
