"""The usage store by month on PostgreSQL: revision 0005 moves the events into monthly
partitions (and back on downgrade), events land in their month, a month made later takes
its rows out of the default partition, and retention drops a month whole once every firm's
retention has passed it, deleting the rest in batches. SQLite keeps one table."""

from __future__ import annotations

from typing import Any

import pytest
from central_helpers import DAY_S, Vendor, central_app, make_settings
from fastapi.testclient import TestClient
from sqlalchemy import select, text

from licentia.central import db, partitions
from licentia.central.models import UsageEvent
from licentia.central.services.retention import RetentionService
from tests.central.test_usage_retention import _events

pytestmark = pytest.mark.postgres


def where_rows_are(engine: Any) -> dict[int, str]:
    """Each event's access time and the table it is stored in."""
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT access_time, tableoid::regclass::text FROM usage_events")).all()
    return {int(t): name for t, name in rows}


def month_name(ts: int) -> str:
    return partitions.name_of(*partitions.month_of(ts))


def test_revision_0005_moves_the_events_into_months_and_back(tmp_path, pg_url, clock):
    with central_app(make_settings(tmp_path / "data", pg_url), clock) as app, TestClient(app) as client:
        Vendor(client, 1011)
        engine = app.state.central.db.engine
        db.downgrade(engine, "0004")
        with engine.connect() as conn:
            assert not partitions.partitioned(conn)
        now = clock()
        ages = [0, 1, 40, 80, 2000]  # 2000 days: older than any firm keeps: the default partition
        _events(engine, 1011, ages, now)
        before = sorted(tuple(r) for r in db_rows(engine))
        db.migrate(engine)
        with engine.connect() as conn:
            assert partitions.partitioned(conn)
            made = partitions.months(conn)
        assert sorted(tuple(r) for r in db_rows(engine)) == before  # every row, ids and all
        stored = where_rows_are(engine)
        for age in ages[:-1]:
            t = now - age * DAY_S
            assert partitions.month_of(t) in made and stored[t] == month_name(t)
        assert stored[now - 2000 * DAY_S] == partitions.DEFAULT
        # a new event gets a new id after the moved ones, in its month
        _events(engine, 1011, [0.5], now)
        ids = [r.id for r in db_rows(engine)]
        assert len(set(ids)) == len(ids) == 6 and max(ids) == ids[-1]
        db.downgrade(engine, "0004")
        with engine.connect() as conn:
            assert not partitions.partitioned(conn)
            names = conn.execute(text("SELECT tablename FROM pg_tables WHERE tablename LIKE 'usage_events%'")).all()
        assert [n for (n,) in names] == ["usage_events"]
        assert len(db_rows(engine)) == 6


def db_rows(engine: Any) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(select(UsageEvent).order_by(UsageEvent.id)).all())


def test_retention_drops_whole_months_and_makes_the_months_ahead(tmp_path, pg_url, clock):
    with central_app(make_settings(tmp_path / "data", pg_url), clock) as app, TestClient(app) as client:
        first, second = Vendor(client, 1012), Vendor(client, 1013)
        for vendor, days in ((first, 30), (second, 60)):
            r = client.patch(f"/api/v1/firms/{vendor.firm_code}", json={"usage_retention_days": days},
                             headers=vendor.headers)  # fmt: skip
            assert r.status_code == 200, r.text
        engine = app.state.central.db.engine
        now = clock()
        with engine.begin() as conn:  # the months of these events exist, whatever today's date
            partitions.ensure(conn, now - 200 * DAY_S, now)
        _events(engine, 1012, [1, 45, 150], now)
        _events(engine, 1013, [1, 45, 150], now)
        far = now + 130 * DAY_S  # a clock months ahead: the default partition
        _events(engine, 1012, [-130], now)
        assert where_rows_are(engine)[far] == partitions.DEFAULT
        ctx = app.state.central
        with ctx.db.session() as s:
            results = {r.firm_code: r.deleted for r in RetentionService(ctx, s).purge()}
        with engine.connect() as conn:
            months = partitions.months(conn)
        # no month that ended before the longest retention's cutoff (60 days) is left
        assert all(partitions.bounds(*m)[1] > now - 60 * DAY_S for m in months)
        assert partitions.month_of(now - 150 * DAY_S) not in months
        ahead = partitions.month_of(partitions.ahead(now))
        assert partitions.month_of(now) in months and ahead in months
        # what is left: firm 1012 keeps 30 days (45 deleted in a batch), firm 1013 keeps 60
        with engine.connect() as conn:
            left = conn.execute(select(UsageEvent.firm_code, UsageEvent.access_time)).all()
        assert sorted((code, round((now - t) / DAY_S)) for code, t in left) == [
            (1012, -130),
            (1012, 1),
            (1013, 1),
            (1013, 45),
        ]
        assert results == {1012: 1, 1013: 0}  # rows deleted one by one; the 150-day-old month went whole
        # months later the far event's month is made, and its row moves out of the default partition
        clock.advance(60 * DAY_S)
        with ctx.db.session() as s:
            RetentionService(ctx, s).purge()
        assert where_rows_are(engine)[far] == month_name(far)


def test_sqlite_keeps_one_table(tmp_path, clock):
    with central_app(make_settings(tmp_path / "data"), clock) as app, app.state.central.db.engine.connect() as conn:
        assert not partitions.partitioned(conn)
