"""Alembic environment for Central. Central runs it programmatically
(``licentia.central.db.migrate``) with a connection in ``config.attributes``;
developers can also run ``alembic -c src/licentia/central/migrations/alembic.ini
-x url=sqlite:///path/central.db upgrade head``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from alembic import context

from licentia.central.db import MIGRATION_LOCK, make_engine
from licentia.central.models import Base

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

config = context.config
target_metadata = Base.metadata


def _run(connection: Connection) -> None:
    if connection.dialect.name == "postgresql":
        # held for the migration's transaction: workers starting together, replicas and
        # `licentia central migrate` runs migrate one after the other
        connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})")
    context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option("sqlalchemy.url")
    if not url:
        raise SystemExit("give the database with -x url=...")
    engine = make_engine(url, pool_size=1)
    with engine.execution_options(licentia_begin="IMMEDIATE").begin() as conn:
        _run(conn)
    engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline (SQL script) mode is not supported; run against a database")
run_migrations_online()
