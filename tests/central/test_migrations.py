"""The migrations: upgrade, downgrade, upgrade; models and migrations agree."""

from __future__ import annotations

from typing import Any

import pytest
from central_helpers import Vendor, central_app, make_settings
from fastapi.testclient import TestClient
from sqlalchemy import insert, inspect, select

from licentia.central import db
from licentia.central.models import Base, Ticket, UsageDay, UsageEvent, UsageRollupState

HEAD = "0010"


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
            diffs = db.schema_diffs(conn)
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


def _check_rollup_fill(settings: Any, clock: Any) -> None:
    """Down to 0003 and up again with events in the store: revision 0004 fills the product
    view's rollup from them, and leaves the billing job's state empty (its first run
    computes every day)."""
    with central_app(settings, clock) as app, TestClient(app) as client:
        vendor = Vendor(client, 1009)
        tickets = vendor.tickets(2)
        engine = app.state.central.db.engine
        with engine.begin() as conn:
            rows = conn.execute(select(Ticket).where(Ticket.ticket.in_(tickets))).all()
            conn.execute(
                insert(UsageEvent),
                [
                    {
                        "firm_id": t.firm_id,
                        "source": "server",
                        "access_time": clock() - 86400 * days,
                        "seconds": 60 * days,
                        "success": 1,
                        "fail": 0,
                        "invalid": 0,
                        "firm_code": 1009,
                        "product_code": 7,
                        "feature_code": 0,
                        "feature_map": 0,
                        "license_id": t.license_id,
                        "ticket_id": t.id,
                        "customer_id": t.customer_id,
                        "item_id": t.item_id,
                        "user_ident": "u",
                        "host": "",
                        "address": "",
                        "mode": "user",
                        "units": 0,
                    }
                    for t in rows
                    for days in (1, 1, 2)
                ],
            )
        db.downgrade(engine, "0003")
        db.migrate(engine)
        with engine.connect() as conn:
            got = conn.execute(select(UsageDay.ticket_id, UsageDay.day, UsageDay.seconds, UsageDay.success)).all()
            assert conn.execute(select(UsageRollupState)).all() == []
        today = clock() // 86400
        expected = [(t.id, today - 1, 120, 2) for t in rows] + [(t.id, today - 2, 120, 1) for t in rows]
        assert sorted(got, key=repr) == sorted(expected, key=repr)


def test_revision_0004_fills_the_rollup_on_sqlite(tmp_path, clock):
    _check_rollup_fill(make_settings(tmp_path / "data"), clock)


@pytest.mark.postgres
def test_revision_0004_fills_the_rollup_on_postgresql(tmp_path, pg_url, clock):
    _check_rollup_fill(make_settings(tmp_path / "data", pg_url), clock)
