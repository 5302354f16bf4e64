"""Retention of the usage store: each firm's events go once they are older than its
retention (400 days unless it says otherwise), in batches, and nothing younger goes."""

from __future__ import annotations

import subprocess
import time
import uuid
from typing import Any

import pytest
from central_helpers import ADMIN_KEY, DAY_S, MASTER_KEY, PYTHON, Clock, Vendor, central_app, child_env, make_settings
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, func, insert, select, update

from licentia.central.models import Firm, Ticket, UsageBillingDay, UsageDay, UsageEvent
from licentia.central.services.retention import DEFAULT_DAYS, RetentionService


def _firm_id(engine: Any, code: int) -> uuid.UUID:
    with engine.connect() as conn:
        return conn.execute(select(Firm.id).where(Firm.code == code)).scalar_one()


def _events(engine: Any, firm_code: int, ages_days: list[float], now: int) -> None:
    firm_id = _firm_id(engine, firm_code)
    rows = [
        {
            "firm_id": firm_id,
            "source": "server",
            "access_time": now - int(age * DAY_S),
            "release_time": None,
            "seconds": 0,
            "success": 1,
            "fail": 0,
            "invalid": 0,
            "firm_code": firm_code,
            "product_code": 7,
            "feature_code": 0,
            "feature_map": 0,
            "license_id": 1,
            "user_ident": f"user{i}@host",
            "host": "host",
            "address": "127.0.0.1",
            "mode": "user",
            "units": 0,
        }
        for i, age in enumerate(ages_days)
    ]
    with engine.begin() as conn:
        conn.execute(insert(UsageEvent), rows)


def _ages(engine: Any, firm_code: int, now: int) -> list[float]:
    with engine.connect() as conn:
        times = conn.execute(select(UsageEvent.access_time).where(UsageEvent.firm_code == firm_code)).scalars()
        return sorted((now - t) / DAY_S for t in times)


def test_each_firm_keeps_its_events_for_its_retention_and_no_longer(app, client, engine, clock):
    Vendor(client, 1001)
    second = Vendor(client, 1002)
    r = client.patch("/api/v1/firms/1002", json={"usage_retention_days": 30}, headers=second.headers)
    assert r.status_code == 200 and r.json()["usage_retention_days"] == 30, r.text
    now = clock()
    ages = [1, 29.9, 30.1, 100, 399.9, 400.1, 500, 700, 800, 900, 1000]
    _events(engine, 1001, ages, now)
    _events(engine, 1002, ages, now)

    ctx = app.state.central
    with ctx.db.session() as s:
        results = {r.firm_code: r for r in RetentionService(ctx, s).purge(batch=2)}  # several batches

    assert results[1001].retention_days == DEFAULT_DAYS == 400
    assert results[1001].deleted == 6  # 400.1 ... 1000 days old
    assert _ages(engine, 1001, now) == [1, 29.9, 30.1, 100, 399.9]
    assert results[1002].deleted == 9  # 30.1 ... 1000 days old
    assert _ages(engine, 1002, now) == [1, 29.9]

    with ctx.db.session() as s:  # a second run finds nothing more
        assert all(r.deleted == 0 for r in RetentionService(ctx, s).purge())
    assert _ages(engine, 1001, now) == [1, 29.9, 30.1, 100, 399.9]


@pytest.mark.parametrize("days", [0, 3651, -1, "30", 30.5, True])
def test_a_retention_out_of_range_is_refused_and_changes_nothing(client, days):
    vendor = Vendor(client, 1003)
    r = client.patch("/api/v1/firms/1003", json={"usage_retention_days": days}, headers=vendor.headers)
    assert r.status_code == 422, r.text
    assert client.get("/api/v1/firms/1003", headers=vendor.headers).json()["usage_retention_days"] == DEFAULT_DAYS


def test_a_vendor_cannot_set_another_firms_retention(client):
    Vendor(client, 1004)
    other = Vendor(client, 1005)
    r = client.patch("/api/v1/firms/1004", json={"usage_retention_days": 5}, headers=other.headers)
    assert r.status_code == 403, r.text
    admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
    assert client.get("/api/v1/firms/1004", headers=admin).json()["usage_retention_days"] == DEFAULT_DAYS


def test_central_purges_while_it_serves(tmp_path):
    """The serving app runs the retention by itself at its interval."""
    settings = make_settings(tmp_path / "data", usage_purge_interval=0.2)
    clock = Clock()
    with central_app(settings, clock) as app, TestClient(app) as client:  # the lifespan runs the purger
        Vendor(client, 1006)
        engine = app.state.central.db.engine
        _events(engine, 1006, [1, 401, 900], clock())
        deadline = time.monotonic() + 30
        while _ages(engine, 1006, clock()) != [1] and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _ages(engine, 1006, clock()) == [1]


def test_usage_purge_command(tmp_path):
    """`licentia central usage purge` deletes what is past retention and says how much."""
    data = tmp_path / "data"
    settings = make_settings(data)
    now = int(time.time())  # the command reads the real clock
    with central_app(settings, Clock(now)) as app, TestClient(app) as client:
        Vendor(client, 1007)
        _events(app.state.central.db.engine, 1007, [2, 450, 451], now)
    env = child_env({"LICENTIA_ADMIN_KEY": ADMIN_KEY, "LICENTIA_MASTER_KEY": MASTER_KEY, "COLUMNS": "200"})
    done = subprocess.run(
        [PYTHON, "-m", "licentia", "central", "usage", "purge", "--data", str(data)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "firm 1007: 2 event(s) older than 400 days deleted" in done.stdout, done.stdout
    engine = create_engine(settings.db_url)
    try:
        assert [round(a) for a in _ages(engine, 1007, now)] == [2]
    finally:
        engine.dispose()


def test_usage_rollup_command_rebuilds_both_rollups_from_the_events(tmp_path):
    """After events are written straight into the store (a bulk load), `licentia central
    usage rollup` fills the product view's rollup and the billing view's days."""
    data = tmp_path / "data"
    settings = make_settings(data)
    now = int(time.time())  # the command reads the real clock
    with central_app(settings, Clock(now)) as app, TestClient(app) as client:
        vendor = Vendor(client, 1008)
        (ticket,) = vendor.tickets()
        engine = app.state.central.db.engine
        with engine.begin() as conn:
            t = conn.execute(select(Ticket).where(Ticket.ticket == ticket)).one()
        _events(engine, 1008, [2, 3, 3.5], now)
        with engine.begin() as conn:
            conn.execute(update(UsageEvent).values(ticket_id=t.id, customer_id=t.customer_id, item_id=t.item_id))
    env = child_env({"LICENTIA_ADMIN_KEY": ADMIN_KEY, "LICENTIA_MASTER_KEY": MASTER_KEY, "COLUMNS": "200"})
    command = [PYTHON, "-m", "licentia", "central", "usage", "rollup", "--data", str(data)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "product view rollup rebuilt: 3 row(s)" in done.stdout, done.stdout  # three users
    engine = create_engine(settings.db_url)
    try:
        with engine.connect() as conn:
            assert conn.execute(select(func.sum(UsageDay.success))).scalar_one() == 3
            days = conn.execute(select(UsageBillingDay.day, UsageBillingDay.sessions)).all()
        # three sessions still open: every day from the first one's to yesterday, each held
        first, today = (now - int(3.5 * DAY_S)) // DAY_S, now // DAY_S
        assert sorted(day for day, _ in days) == list(range(first, today))
        assert sum(sessions for _, sessions in days) == 3
    finally:
        engine.dispose()
    bad = subprocess.run([*command, "--firm", "999999"], env=env, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1 and "no firm 999999" in bad.stdout + bad.stderr
