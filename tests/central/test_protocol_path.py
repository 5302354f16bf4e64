"""The protocol's own ways: the driver-connection layer (``protocol_db``), the documents
Central signs without encoding them twice (``services._signed``), the short way in for
protocol POSTs (``api.lane``) and SQLite's background checkpoints (``db.Checkpointer``)."""

from __future__ import annotations

import json
import logging
import sqlite3
import time
import uuid

import pytest
from central_helpers import FakeContainer, Vendor, central_app, error_code, make_settings
from sqlalchemy import select
from sqlalchemy.exc import DBAPIError, OperationalError

from licentia.central.db import Checkpointer, Database
from licentia.central.models import Container, Item, Ticket
from licentia.central.protocol_db import ProtocolDB, Tx, protocol_for
from licentia.central.services import _protocol_sql as sql
from licentia.central.services import _signed
from licentia.core import errors, exchange, hazmat
from licentia.core.documents import document_digest, sign_document
from licentia.core.encoding import canonical
from licentia.core.license import LicenseEntry, Options

ACT = "/api/v1/activations"

# ---------------------------------------------------------------- signed documents


@pytest.fixture
def signer() -> _signed.Signer:
    return _signed.Signer.of(hazmat.Ed25519PrivateKey.generate())


def _same(signed: _signed.Signed, doc: dict) -> None:
    """Central's signed document is core's, byte for byte, with its digest."""
    assert signed.doc == doc
    assert signed.text.encode() == canonical(doc)
    assert signed.digest == document_digest(doc)
    assert json.loads(signed.text) == doc


def test_signer_names_the_key_like_core(signer):
    assert signer.kid == hazmat.key_id(signer.key.public_key())
    assert signer.public == exchange.b64e(hazmat.raw_public(signer.key.public_key()))


@pytest.mark.parametrize("text", ["Product", 'Prodükt «ß» \u2028 \\ " / \t', ""])
def test_a_license_entry_is_the_one_core_signs(signer, text):
    entry = LicenseEntry(
        firm_code=20001,
        product_code=7,
        feature_map=5,
        text=text,
        license_id=3,
        serial="M-TEST",
        container_key="a" * 43,
        options=Options.from_json({"expires": 1_700_000_000, "units": 10, "quantity": 1}),
        issued=1_690_000_000,
        ticket=None,
        key_versions=(1, 2),
        consumed_base=4,
        first_use=None,
        activation=2,
    )
    _same(_signed.sign("license", entry.payload(), signer), entry.sign(signer.key))


def test_an_update_and_an_ack_are_the_ones_core_signs(signer):
    entry = sign_document("license", {"firm_code": 20001, "text": "x"}, signer.key)
    args = {
        "firm_code": 20001,
        "serial": "M-TEST",
        "seq": 4,
        "now": 1_700_000_000,
        "entries": [entry],
        "sealed_keys": [{"license": "d" * 64, "version": 1, "sealed": "abc"}],
        "request_digest": "e" * 64,
        "message": "Manipulation detected: «restored»",
        "manipulation": {"rebased": [1], "withdrawn": []},
    }
    endorsements = [sign_document("firm-key", {"firm_code": 20001, "pub": "p"}, signer.key)]
    core = exchange.build_update(firm_key=signer.key, endorsements=endorsements, **args)  # type: ignore[arg-type]
    _same(_signed.update(signer, endorsements=endorsements, **args), core)  # type: ignore[arg-type]
    ack = {"firm_code": 20001, "serial": "M-TEST", "now": 5, "request_digest": "f" * 64, "recorded": {"a" * 64: 3}}
    _same(_signed.ack(signer, **ack), exchange.build_ack(firm_key=signer.key, **ack))  # type: ignore[arg-type]


def test_a_float_is_refused_like_core(signer):
    with pytest.raises(errors.DocumentInvalid):
        _signed.sign("license", {"x": 1.5}, signer)


# ---------------------------------------------------------------- the driver-connection layer


@pytest.fixture
def db(app):
    return app.state.central.db


def test_rows_come_back_as_the_orm_wrote_them(client, db):
    """UUIDs, JSON and flags pass through the column types' own conversions."""
    vendor = Vendor(client, 20001)
    (ticket,) = vendor.tickets(1)
    rows = protocol_for(db.engine).run(lambda tx: tx.all(sql.Q_TICKET, {"ticket": ticket}))
    with db.session() as s:
        orm = s.scalars(select(Ticket).where(Ticket.ticket == ticket)).one()
        item = s.get(Item, orm.item_id)
        assert item is not None
        first = rows[0]
        assert (first.id, first.firm_id, first.ticket, first.state) == (orm.id, orm.firm_id, orm.ticket, orm.state)
        assert isinstance(first.id, uuid.UUID)
        assert first.template == item.options and first.key_versions == item.key_versions
        assert any(r.active is True for r in rows) and all(isinstance(r.active, bool) for r in rows)


def test_writes_are_read_back_by_the_orm_and_a_list_parameter_expands(db):
    cid = uuid.uuid4()
    row = {"id": cid, "serial": "M-ROW", "level": "medium", "sign_pub": "s", "box_pub": "b", "created": 1}

    def write(tx: Tx) -> list:
        inserted = tx.first(sql.I_CONTAINER[tx.dialect.name], row)
        again = tx.first(sql.I_CONTAINER[tx.dialect.name], {**row, "id": uuid.uuid4()})
        assert again is None  # the serial is known: nothing inserted
        return [inserted.id]

    assert protocol_for(db.engine).run(write) == [cid]
    with db.session() as s:
        stored = s.get(Container, cid)
        assert stored is not None and stored.serial == "M-ROW"
    found = protocol_for(db.engine).run(
        lambda tx: tx.all(sql.Q_LINKS, {"slot": uuid.uuid4(), "digests": ["a" * 64, "b" * 64]})
    )
    assert found == []


def test_an_error_rolls_the_transaction_back(db):
    row = {"id": uuid.uuid4(), "serial": "M-GONE", "level": "medium", "sign_pub": "s", "box_pub": "b", "created": 1}

    def write_then_refuse(tx: Tx) -> None:
        tx.execute(sql.I_CONTAINER[tx.dialect.name], row)
        raise errors.Conflict("refused", "no")

    with pytest.raises(errors.Conflict):
        protocol_for(db.engine).run(write_then_refuse)
    with db.session() as s:
        assert s.scalars(select(Container).where(Container.serial == "M-GONE")).first() is None


def test_a_locked_database_is_retried_then_unavailable(db, caplog):
    caplog.set_level(logging.INFO, logger="licentia.central")
    calls = []

    def locked_once(tx: Tx) -> str:
        calls.append(1)
        if len(calls) == 1:
            raise sqlite3.OperationalError("database is locked")
        return "done"

    assert protocol_for(db.engine).run(locked_once) == "done" and len(calls) == 2
    assert "write transaction retried (1)" in caplog.text

    def always_locked(tx: Tx) -> None:
        raise sqlite3.OperationalError("database is locked")

    with pytest.raises(errors.Unavailable):
        protocol_for(db.engine).run(always_locked, attempts=3)


def test_other_driver_errors_leave_as_sqlalchemy_errors(db):
    def bad(tx: Tx) -> None:
        tx._cursor.execute("SELECT * FROM no_such_table")

    with pytest.raises(DBAPIError) as caught:
        protocol_for(db.engine).run(bad)
    assert isinstance(caught.value, OperationalError) and not caught.value.connection_invalidated


def test_a_statement_without_a_value_for_a_parameter_is_refused(tmp_path):
    database = Database(f"sqlite:///{tmp_path / 'x.db'}")
    try:
        with pytest.raises(TypeError, match="no value for the parameter"):
            ProtocolDB(database.engine).compiled(sql.Q_SLOT, {"container": uuid.uuid4()})
    finally:
        database.dispose()


# ---------------------------------------------------------------- the short way in


def test_protocol_posts_are_answered_by_the_lane_like_the_route(app, client, clock):
    vendor = Vendor(client, 20001)
    (ticket,) = vendor.tickets(1)
    box = FakeContainer()
    doc = box.request("activate", ticket=ticket, now=clock.now)
    r = client.post(ACT, content=json.dumps(doc), headers={"Content-Type": "application/json"})
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    assert r.content == canonical(r.json())
    box.apply(r.json())
    # the FastAPI route gives the same bytes (the replay of the same request)
    from starlette.requests import Request

    from licentia.central.api import routes

    scope = {"type": "http", "method": "POST", "path": ACT, "headers": [], "client": ("203.0.113.7", 1), "app": app}
    body = json.dumps(doc).encode()

    async def receive() -> dict:
        return {"type": "http.request", "body": body, "more_body": False}

    import asyncio

    routed = asyncio.run(routes.activate(Request(scope, receive)))
    assert routed.body == r.content
    # errors keep their shape; other methods still reach FastAPI
    bad = client.post(ACT, content=b"{not json")
    assert bad.status_code == 400 and error_code(bad) == "malformed_input"
    assert client.get(ACT).status_code == 405


# ---------------------------------------------------------------- SQLite checkpoints


def test_the_write_ahead_log_is_copied_back_in_the_background(tmp_path):
    path = tmp_path / "wal.db"
    database = Database(f"sqlite:///{path}", pool_size=1)
    assert database.checkpointer is not None
    database.checkpointer.stop()  # this test runs its own, faster one
    with database.engine.begin() as conn:
        assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == 0
        conn.exec_driver_sql("CREATE TABLE t (x TEXT)")
        conn.exec_driver_sql(
            "INSERT INTO t SELECT hex(randomblob(500)) FROM (SELECT 1 UNION SELECT 2) a, "
            + ", ".join(["(SELECT 1 UNION SELECT 2)"] * 9)
        )
    before = path.stat().st_size
    checkpointer = Checkpointer(str(path), interval=0.05)
    try:
        deadline = time.monotonic() + 10
        while path.stat().st_size <= before and time.monotonic() < deadline:
            time.sleep(0.05)
        assert path.stat().st_size > before  # the rows reached the database file
    finally:
        checkpointer.stop()
        database.checkpointer = None
        database.dispose()
    assert not checkpointer._thread.is_alive()


@pytest.mark.postgres
def test_the_same_on_postgresql(tmp_path, pg_url, clock):
    import psycopg
    from fastapi.testclient import TestClient

    with central_app(make_settings(tmp_path / "data", pg_url), clock) as app, TestClient(app) as client:
        db = app.state.central.db
        test_rows_come_back_as_the_orm_wrote_them(client, db)
        test_writes_are_read_back_by_the_orm_and_a_list_parameter_expands(db)
        test_an_error_rolls_the_transaction_back(db)
        calls = []

        def deadlocked_once(tx: Tx) -> str:
            calls.append(1)
            if len(calls) == 1:
                raise psycopg.errors.DeadlockDetected("deadlock detected")
            return "done"

        assert protocol_for(db.engine).run(deadlocked_once) == "done" and len(calls) == 2
