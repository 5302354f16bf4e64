"""Starting without migrating (``serve --no-migrate``, ``LICENTIA_MIGRATE=0``), migrations
that take turns on PostgreSQL, and the readiness probe ``GET /ready`` beside the liveness
probe ``GET /health``."""

from __future__ import annotations

import logging
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from central_helpers import ADMIN_KEY, MASTER_KEY, Clock, ServerThread, central_app, make_settings, serve_process
from fastapi.testclient import TestClient
from sqlalchemy import inspect

from licentia.central import db
from licentia.central.app import create_cloud_app
from licentia.central.settings import Settings, SettingsError
from tests.conftest import child_env, free_port

HEAD = db.head_revision()
BEFORE = "0009"
KEYS = {"LICENTIA_ADMIN_KEY": ADMIN_KEY, "LICENTIA_MASTER_KEY": MASTER_KEY}
NOT_RUN = "this start does not migrate (--no-migrate or LICENTIA_MIGRATE=0): run licentia central migrate first"


def licentia(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "licentia", *args],
        env=child_env({"COLUMNS": "300", **KEYS, **(env or {})}),
        capture_output=True,
        text=True,
        timeout=120,
    )


def at(url: str, revision: str | None) -> None:
    """Put the database at ``revision`` (None: no schema)."""
    database = db.Database(url, pool_size=1)
    try:
        if revision is None:
            db.downgrade(database.engine, "base")
        elif db.current_revision(database.engine) is None:
            db.migrate(database.engine, revision)
        else:
            db.downgrade(database.engine, revision)
    finally:
        database.dispose()


def revision_of(url: str) -> str | None:
    database = db.Database(url, pool_size=1)
    try:
        return db.current_revision(database.engine)
    finally:
        database.dispose()


def test_the_head_is_the_newest_migration():
    newest = max(p.name for p in db.MIGRATIONS.joinpath("versions").glob("0*.py"))
    assert newest.startswith(HEAD + "_") and BEFORE < HEAD
    assert db.schema_lag(HEAD) is None and db.schema_lag(BEFORE) == db.schema_lag(None) == "behind"
    assert db.schema_lag("ffff") == "newer"


def test_migrate_switch(tmp_path):
    assert Settings.from_env({}).migrate is True
    for on in ("1", "true", "Yes", " on ", ""):
        assert Settings.from_env({"LICENTIA_MIGRATE": on}).migrate is True
    for off in ("0", "false", "NO", "off"):
        assert Settings.from_env({"LICENTIA_MIGRATE": off}).migrate is False
    with pytest.raises(SettingsError, match="LICENTIA_MIGRATE is 1 or 0"):
        Settings.from_env({"LICENTIA_MIGRATE": "later"})


def test_serve_no_migrate_refuses_a_database_not_at_the_head_and_starts_one_that_is(tmp_path):
    data = tmp_path / "d"
    url = f"sqlite:///{(data / 'central.db').resolve()}"

    def refused() -> str:
        port = free_port()
        proc = licentia("central", "serve", "--data", str(data), "--port", str(port), "--no-migrate")
        assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1, lines
        return lines[0]

    assert refused() == f"error: the database has no schema yet, and {NOT_RUN}"
    assert "alembic_version" not in inspect(db.make_engine(url)).get_table_names()  # nothing migrated

    at(url, BEFORE)
    assert refused() == f"error: the database is at schema revision {BEFORE}, not the newest {HEAD}, and {NOT_RUN}"
    assert revision_of(url) == BEFORE

    proc = licentia("central", "migrate", "--data", str(data))
    assert proc.returncode == 0 and proc.stdout.strip() == f"database at revision {HEAD}", proc.stderr
    port = free_port()
    with serve_process(data, port, "--no-migrate", env=KEYS) as server:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, server.stderr.read()
            try:
                ready = httpx.get(base + "/ready", timeout=5)
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline, "central serve --no-migrate did not start"
                time.sleep(0.1)
        assert ready.status_code == 200 and ready.json() == {"status": "ready", "revision": HEAD}


def test_the_asgi_factories_respect_LICENTIA_MIGRATE(tmp_path, monkeypatch):
    from licentia.central.asgi import app_from_env, cloud_app_from_env

    data = tmp_path / "d"
    url = f"sqlite:///{(data / 'central.db').resolve()}"
    for name, value in {**KEYS, "LICENTIA_DATA": str(data), "LICENTIA_MIGRATE": "0"}.items():
        monkeypatch.setenv(name, value)
    for factory in (app_from_env, cloud_app_from_env):
        with pytest.raises(db.SchemaNotCurrent, match="has no schema yet, .* run licentia central migrate first"):
            factory()
    at(url, BEFORE)
    with pytest.raises(db.SchemaNotCurrent, match=f"at schema revision {BEFORE}, not the newest {HEAD}"):
        app_from_env()
    assert revision_of(url) == BEFORE

    monkeypatch.setenv("LICENTIA_MIGRATE", "1")  # the default: migrates on start
    app = app_from_env()
    app.state.central.db.dispose()
    assert revision_of(url) == HEAD
    monkeypatch.setenv("LICENTIA_MIGRATE", "0")
    for factory in (app_from_env, cloud_app_from_env):
        app = factory()
        app.state.central.db.dispose()

    with db.make_engine(url).begin() as conn:  # a newer version of licentia migrated it
        conn.exec_driver_sql("UPDATE alembic_version SET version_num = 'ffff'")
    with pytest.raises(db.SchemaNotCurrent) as refused:
        app_from_env()
    assert str(refused.value) == (
        f"the database's schema is at revision ffff, newer than this version of licentia knows ({HEAD}): "
        "run the version that migrated it"
    )


@pytest.mark.slow
@pytest.mark.postgres
def test_two_migrations_at_once_take_turns_on_postgresql(tmp_path, pg_url):
    """Two `licentia central migrate` runs started while the migration lock is held
    both wait for it; once it is free, one migrates and the other finds nothing to do."""
    import psycopg
    from sqlalchemy.engine import make_url

    u = make_url(pg_url)
    with psycopg.connect(host=u.host, port=u.port, user=u.username, dbname=u.database, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (db.MIGRATION_LOCK,))
        procs = [
            subprocess.Popen(
                [sys.executable, "-m", "licentia", "central", "migrate", "--data", str(tmp_path / f"d{i}")],
                env=child_env({"LICENTIA_DATABASE_URL": pg_url, "COLUMNS": "300"}),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for i in range(2)
        ]
        try:
            waiting = 0
            deadline = time.monotonic() + 60
            while waiting < 2:
                assert all(p.poll() is None for p in procs), [p.communicate() for p in procs]
                assert time.monotonic() < deadline, "the migrations did not wait for the lock"
                time.sleep(0.1)
                waiting = holder.execute(
                    "SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database "
                    "WHERE l.locktype = 'advisory' AND NOT l.granted AND d.datname = %s",
                    (u.database,),
                ).fetchone()[0]
            tables = holder.execute(
                "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"
            ).fetchone()[0]
            assert tables == 0  # neither ran while the lock was held
            holder.execute("SELECT pg_advisory_unlock(%s)", (db.MIGRATION_LOCK,))
            outs = [p.communicate(timeout=120) for p in procs]
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
                    p.wait()
        for p, (out, err) in zip(procs, outs, strict=True):
            assert p.returncode == 0, err
            assert out.strip() == f"database at revision {HEAD}"
        rows = holder.execute("SELECT version_num FROM alembic_version").fetchall()
        assert rows == [(HEAD,)]
    database = db.Database(pg_url, pool_size=1)
    try:
        with database.engine.connect() as conn:
            assert db.schema_diffs(conn) == []
    finally:
        database.dispose()


# ---------------------------------------------------------------- GET /ready


def test_ready_follows_the_schema_and_health_does_not(tmp_path, caplog):
    settings = make_settings(tmp_path / "d")
    with central_app(settings, Clock()) as app, TestClient(app) as client:
        url = settings.db_url
        assert client.get("/ready").json() == {"status": "ready", "revision": HEAD}
        at(url, BEFORE)
        with caplog.at_level(logging.WARNING, logger="licentia.central"):
            r = client.get("/ready")
        assert r.status_code == 503 and r.json() == {
            "status": "not ready",
            "reason": "database schema behind this version",
        }
        assert any(BEFORE in m and HEAD in m for m in caplog.messages), caplog.messages  # the details: in the log
        assert client.get("/health").json() == {"status": "ok"}
        with db.make_engine(url).begin() as conn:
            conn.exec_driver_sql("UPDATE alembic_version SET version_num = 'ffff'")
        r = client.get("/ready")
        assert r.status_code == 503 and r.json() == {
            "status": "not ready",
            "reason": "database schema newer than this version",
        }
        with db.make_engine(url).begin() as conn:
            conn.exec_driver_sql(f"UPDATE alembic_version SET version_num = '{BEFORE}'")  # as it was
        at(url, None)
        assert client.get("/ready").json()["reason"] == "database schema behind this version"
        at(url, HEAD)
        r = client.get("/ready")
        assert r.status_code == 200 and r.json() == {"status": "ready", "revision": HEAD}
        spec = client.get("/openapi.json").json()["paths"]["/ready"]["get"]
        assert {"200", "503"} <= set(spec["responses"])


def test_the_cloud_leases_app_has_both_probes(tmp_path):
    settings = make_settings(tmp_path / "d")
    with central_app(settings, Clock()):
        pass
    app = create_cloud_app(settings, clock=Clock())
    try:
        with TestClient(app) as client:
            assert client.get("/health").json() == {"status": "ok"}
            assert client.get("/ready").json() == {"status": "ready", "revision": HEAD}
            at(settings.db_url, BEFORE)
            r = client.get("/ready")
            assert r.status_code == 503 and r.json()["status"] == "not ready"
    finally:
        app.state.central.db.dispose()


def _pg_admin(url: str):  # a psycopg connection to the cluster's maintenance database, and the test's
    import psycopg
    from sqlalchemy.engine import make_url

    u = make_url(url)
    return psycopg.connect(host=u.host, port=u.port, user=u.username, dbname="postgres", autocommit=True), u.database


@pytest.mark.postgres
def test_ready_answers_503_when_the_postgresql_database_is_gone(tmp_path, pg_url, caplog):
    with central_app(make_settings(tmp_path / "d", pg_url), Clock()) as app, TestClient(app) as client:
        assert client.get("/ready").json() == {"status": "ready", "revision": HEAD}
        admin, name = _pg_admin(pg_url)
        with admin:
            admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
            with caplog.at_level(logging.WARNING, logger="licentia.central"):
                r = client.get("/ready")
            assert r.status_code == 503 and r.json() == {"status": "not ready", "reason": "database unavailable"}
            assert any(m.startswith("not ready: the database does not answer:") for m in caplog.messages)
            assert client.get("/health").json() == {"status": "ok"}  # liveness: the process answers
            admin.execute(f'CREATE DATABASE "{name}"')  # back, but empty
        r = client.get("/ready")
        assert r.status_code == 503 and r.json()["reason"] == "database schema behind this version"
        at(pg_url, HEAD)
        assert client.get("/ready").json() == {"status": "ready", "revision": HEAD}


@pytest.mark.postgres
def test_ready_gives_up_on_a_database_that_hangs_and_checks_once_at_a_time(tmp_path, pg_url):
    """A database that does not answer (here: alembic_version locked by another
    transaction): /ready answers 503 after READY_TIMEOUT seconds, and probes that come
    meanwhile wait for the one check under way instead of starting their own."""
    import psycopg
    from sqlalchemy.engine import make_url

    from licentia.central.app import READY_TIMEOUT

    u = make_url(pg_url)
    with central_app(make_settings(tmp_path / "d", pg_url), Clock()) as app, ServerThread(app) as srv:
        assert httpx.get(srv.url + "/ready").status_code == 200
        admin, _name = _pg_admin(pg_url)
        with admin, psycopg.connect(host=u.host, port=u.port, user=u.username, dbname=u.database) as locker:
            locker.execute("LOCK TABLE alembic_version IN ACCESS EXCLUSIVE MODE")

            def blocked() -> int:
                return admin.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND wait_event_type = 'Lock'",
                    (u.database,),
                ).fetchone()[0]

            started = time.monotonic()
            with ThreadPoolExecutor(3) as pool:
                probes = [pool.submit(httpx.get, srv.url + "/ready", timeout=30) for _ in range(3)]
                deadline = time.monotonic() + READY_TIMEOUT
                while not blocked() and time.monotonic() < deadline:
                    time.sleep(0.05)
                answers = [p.result() for p in probes]
                assert blocked() == 1  # one check for the three probes, still waiting for the database
            assert time.monotonic() - started >= READY_TIMEOUT
            for r in answers:
                assert r.status_code == 503 and r.json() == {"status": "not ready", "reason": "database unavailable"}
            locker.rollback()
        deadline = time.monotonic() + 30
        while (r := httpx.get(srv.url + "/ready", timeout=30)).status_code != 200:
            assert time.monotonic() < deadline, r.text
            time.sleep(0.1)
        assert r.json() == {"status": "ready", "revision": HEAD}
