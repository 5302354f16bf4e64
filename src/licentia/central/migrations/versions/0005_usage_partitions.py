"""The usage store by month on PostgreSQL: ``usage_events`` becomes a table partitioned by
range of ``access_time``, one partition a UTC month, from the oldest month a firm keeps to
three months ahead, with a default partition; its rows move over. Its primary key becomes
``(id, access_time)`` and its unique key ``(container_id, seq, access_time)`` (PostgreSQL
needs the partition key in both). Nothing changes on SQLite. See central/partitions.py.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import time

from alembic import op

from licentia.central import partitions

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

OLD = "usage_events_unpartitioned"
INDEXES = {
    "ix_usage_events_session": "(container_id, lease_id)",
    "ix_usage_events_firm_time": "(firm_id, access_time, id)",
    "ix_usage_events_customer_time": "(firm_id, customer_id, access_time, id)",
    "ix_usage_events_item_time": "(firm_id, item_id, access_time, id)",
    "ix_usage_events_ticket_time": "(ticket_id, access_time)",
    "ix_usage_events_release": "(firm_id, release_time)",
    "ix_usage_events_open": "(firm_id, customer_id, item_id) WHERE release_time IS NULL AND success > 0",
}
FKS = {
    "fk_usage_events_container_id_containers": "(container_id) REFERENCES containers (id)",
    "fk_usage_events_customer_id_customers": "(customer_id) REFERENCES customers (id)",
    "fk_usage_events_firm_id_firms": "(firm_id) REFERENCES firms (id)",
    "fk_usage_events_item_id_items": "(item_id) REFERENCES items (id)",
    "fk_usage_events_ticket_id_tickets": "(ticket_id) REFERENCES tickets (id)",
}
COLUMNS = """
    id BIGINT NOT NULL DEFAULT nextval('usage_events_id_seq'),
    firm_id UUID NOT NULL,
    source VARCHAR(16) NOT NULL,
    container_id UUID,
    seq BIGINT,
    lease_id VARCHAR(128),
    access_time BIGINT NOT NULL,
    release_time BIGINT,
    seconds BIGINT NOT NULL,
    success INTEGER NOT NULL,
    fail INTEGER NOT NULL,
    invalid INTEGER NOT NULL,
    firm_code BIGINT NOT NULL,
    product_code BIGINT NOT NULL,
    feature_code BIGINT NOT NULL,
    feature_map BIGINT NOT NULL,
    license_id BIGINT NOT NULL,
    ticket_id UUID,
    customer_id UUID,
    item_id UUID,
    user_ident VARCHAR(256) NOT NULL,
    host VARCHAR(256) NOT NULL,
    address VARCHAR(256) NOT NULL,
    mode VARCHAR(16) NOT NULL,
    seat VARCHAR(256),
    units BIGINT NOT NULL
"""


def _set_aside() -> None:
    """Rename the table and its constraints and indexes out of the way of the new ones."""
    op.execute(f"ALTER TABLE usage_events RENAME TO {OLD}")
    for name in INDEXES:
        op.execute(f"ALTER INDEX {name} RENAME TO {name}_old")
    for name in (*FKS, "pk_usage_events", "uq_usage_events_container_id"):
        op.execute(f"ALTER TABLE {OLD} RENAME CONSTRAINT {name} TO {name}_old")


def _finish(keys: str) -> None:
    """Constraints and indexes on the new usage_events, the rows over, the old table gone."""
    op.execute(f"ALTER TABLE usage_events ADD {keys}")
    for name, spec in FKS.items():
        op.execute(f"ALTER TABLE usage_events ADD CONSTRAINT {name} FOREIGN KEY {spec}")
    for name, spec in INDEXES.items():
        columns, _, where = spec.partition(" WHERE ")
        op.execute(f"CREATE INDEX {name} ON usage_events {columns}" + (f" WHERE {where}" if where else ""))
    names = ", ".join(line.split()[0] for line in COLUMNS.strip().splitlines())
    op.execute(f"INSERT INTO usage_events ({names}) SELECT {names} FROM {OLD}")  # noqa: S608 - our names
    op.execute("ALTER SEQUENCE usage_events_id_seq OWNED BY usage_events.id")
    op.execute(f"DROP TABLE {OLD}")
    op.execute("ANALYZE usage_events")


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    _set_aside()
    op.execute(f"CREATE TABLE usage_events ({COLUMNS}) PARTITION BY RANGE (access_time)")
    op.execute(f"CREATE TABLE {partitions.DEFAULT} PARTITION OF usage_events DEFAULT")
    conn = op.get_bind()
    now = int(time.time())
    # every month some firm still keeps, and the months ahead (older events: the default partition)
    kept = int(conn.exec_driver_sql("SELECT coalesce(max(usage_retention_days), 400) FROM firms").scalar() or 400)
    partitions.ensure(conn, now - kept * 86400, partitions.ahead(now))
    _finish(
        "CONSTRAINT pk_usage_events PRIMARY KEY (id, access_time), "
        "ADD CONSTRAINT uq_usage_events_container_id UNIQUE (container_id, seq, access_time)"
    )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    _set_aside()
    op.execute(f"CREATE TABLE usage_events ({COLUMNS})")
    _finish(
        "CONSTRAINT pk_usage_events PRIMARY KEY (id), "
        "ADD CONSTRAINT uq_usage_events_container_id UNIQUE (container_id, seq)"
    )
