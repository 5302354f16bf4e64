"""The migrations: upgrade, downgrade, upgrade; models and migrations agree."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from licentia.central import db
from licentia.central.models import Base

HEAD = "0004"


def _check_roundtrip(url: str) -> None:
    database = db.Database(url, pool_size=2)
    engine = database.engine
    try:
        db.migrate(engine)
        assert db.current_revision(engine) == HEAD
        tables = set(inspect(engine).get_table_names())
        assert set(Base.metadata.tables) <= tables
        db.downgrade(engine, "base")
        assert db.current_revision(engine) is None
        assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
        db.migrate(engine)
        with engine.connect() as conn:
            diffs = compare_metadata(MigrationContext.configure(conn), Base.metadata)
        assert diffs == []
        db.migrate(engine)  # at head: nothing to do
        assert db.current_revision(engine) == HEAD
        with engine.connect() as conn:
            conn.exec_driver_sql(
                "INSERT INTO audit_log (time, actor, role, firm_code, action, detail) "
                "VALUES (1, 'x', 'admin', NULL, 'test', '{}')"
            )
            conn.commit()
            for statement in ("UPDATE audit_log SET action = 'y'", "DELETE FROM audit_log"):
                try:
                    conn.exec_driver_sql(statement)
                except Exception as exc:  # noqa: BLE001
                    assert "append-only" in str(exc)
                    conn.rollback()
                else:
                    raise AssertionError(f"{statement} was allowed")
    finally:
        database.dispose()


def test_sqlite_upgrade_downgrade_upgrade(tmp_path):
    _check_roundtrip(f"sqlite:///{tmp_path / 'm.db'}")


@pytest.mark.postgres
def test_postgresql_upgrade_downgrade_upgrade(pg_url):
    _check_roundtrip(pg_url)
