"""Concurrent orders and activations against a real uvicorn server, on SQLite and
PostgreSQL; and the whole activation flow on PostgreSQL."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from central_helpers import (
    Clock,
    FakeContainer,
    ServerThread,
    Vendor,
    central_app,
    dump_state,
    error_code,
    make_settings,
)
from fastapi.testclient import TestClient
from sqlalchemy.exc import ProgrammingError

from licentia.core import exchange

THREADS = 8


@pytest.fixture(
    params=[
        "sqlite",
        pytest.param("postgresql", marks=pytest.mark.postgres),
        pytest.param("postgresql-on-loop", marks=pytest.mark.postgres),
    ]
)
def backend(request, tmp_path):
    """(database URL, protocol threads): PostgreSQL with protocol threads and on the event loop."""
    if request.param == "sqlite":
        return None, 2
    return request.getfixturevalue("pg_url"), 0 if request.param.endswith("on-loop") else 2


def test_concurrent_orders_and_activations(tmp_path, backend):
    backend_url, threads = backend
    clock = Clock()
    settings = make_settings(tmp_path / "data", backend_url).with_changes(protocol_threads=threads)
    with central_app(settings, clock) as app:
        assert (app.state.protocol_executor is None) == (backend_url is None or threads == 0)
        with ServerThread(app) as srv, httpx.Client(base_url=srv.url, timeout=60) as setup:
            vendor = Vendor(setup, 60606)

            def order(_: int) -> list[dict]:
                with httpx.Client(base_url=srv.url, timeout=60) as c:
                    r = c.post(
                        "/api/v1/tickets",
                        json={"customer": vendor.customer, "items": [vendor.item], "quantity_of_licenses": 3},
                        headers=vendor.headers,
                    )
                    assert r.status_code == 201, r.text
                    return r.json()["tickets"]

            with ThreadPoolExecutor(THREADS) as pool:
                orders = list(pool.map(order, range(THREADS)))
            tickets = [t for o in orders for t in o]
            ids = sorted(t["license_id"] for t in tickets)
            assert ids == list(range(1, 3 * THREADS + 1))  # unique, none lost

            # each thread its own container, activating its own tickets
            def activate_own(n: int) -> list[int]:
                box = FakeContainer()
                seqs = []
                with httpx.Client(base_url=srv.url, timeout=60) as c:
                    for t in orders[n][:2]:
                        doc = box.request("activate", ticket=t["ticket"], now=clock.now)
                        r = c.post("/api/v1/activations", json=doc)
                        assert r.status_code == 200, r.text
                        seqs.append(box.apply(r.json()).seq)
                return seqs

            with ThreadPoolExecutor(THREADS) as pool:
                assert list(pool.map(activate_own, range(THREADS))) == [[1, 2]] * THREADS

            # all threads activating into ONE container at once: no update may be lost
            shared = FakeContainer()
            last = [o[2]["ticket"] for o in orders]

            def activate_shared(ticket: str) -> dict:
                with httpx.Client(base_url=srv.url, timeout=60) as c:
                    r = c.post("/api/v1/activations", json=shared.request("activate", ticket=ticket, now=clock.now))
                    assert r.status_code == 200, r.text
                    return r.json()

            with ThreadPoolExecutor(THREADS) as pool:
                updates = [exchange.verify_update(u) for u in pool.map(activate_shared, last)]
            assert sorted(u.seq for u in updates) == list(range(1, THREADS + 1))
            newest = max(updates, key=lambda u: u.seq)
            assert sorted(e.ticket for e in newest.entries) == sorted(last)
            states = {setup.get(f"/api/v1/tickets/{t['ticket']}/info").json()["state"] for t in tickets}
            assert states == {"activated"}


def _drop_connections(url: str) -> None:
    import psycopg
    from sqlalchemy.engine import make_url

    u = make_url(url)
    with psycopg.connect(host=u.host, port=u.port, user=u.username, dbname="postgres", autocommit=True) as conn:
        n = conn.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()",
            (u.database,),
        ).fetchone()[0]
    assert n >= 1


@pytest.mark.postgres
def test_whole_flow_on_postgresql(tmp_path, pg_url):
    clock = Clock()
    with central_app(make_settings(tmp_path / "data", pg_url), clock) as app:
        engine = app.state.central.db.engine
        with TestClient(app) as client:
            vendor = Vendor(client, 70707)
            t1, t2 = vendor.tickets(2)
            box = FakeContainer()
            doc = box.request("activate", ticket=t1, now=clock.now)
            r1 = client.post("/api/v1/activations", json=doc)
            assert r1.status_code == 200, r1.text
            u1 = box.apply(r1.json(), vendor.pinned())
            before = dump_state(engine)
            again = client.post("/api/v1/activations", content=json.dumps(doc))
            assert again.content == r1.content and dump_state(engine) == before
            doc2 = box.request("activate", ticket=t2, now=clock.now)
            u2 = box.apply(client.post("/api/v1/activations", json=doc2).json())
            assert [e.ticket for e in u2.entries] == [t1, t2] and len(box.product_keys(u2)) == 4
            clock.advance(3600)
            _drop_connections(pg_url)  # e.g. a database restart: Central reconnects and runs the work again
            u3 = box.apply(client.post("/api/v1/sync", json=box.request("sync", firm_code=70707, now=clock.now)).json())
            assert u3.seq == 3 and u3.time == clock.now
            receipt = box.receipt(70707, u1.entries[0].license_id, t1)
            r = client.post("/api/v1/deactivations", json={"receipt": receipt})
            assert r.status_code == 200 and r.json()["state"] == "deactivated"
            after = dump_state(engine)
            assert client.post("/api/v1/deactivations", json={"receipt": receipt}).content == r.content
            assert dump_state(engine) == after
            _drop_connections(pg_url)
            assert vendor.get(f"/tickets/{t2}").json()["state"] == "activated"
            assert vendor.post(f"/tickets/{t2}/revoke").json()["state"] == "revoked"
            u4 = box.apply(client.post("/api/v1/sync", json=box.request("sync", firm_code=70707, now=clock.now)).json())
            assert u4.entries == ()
            r = client.post("/api/v1/activations", json=FakeContainer().request("activate", ticket=t2, now=clock.now))
            assert r.status_code == 409 and error_code(r) == "ticket_revoked"
            # the audit log refuses changes on PostgreSQL too
            with (
                engine.connect() as conn,
                pytest.raises(ProgrammingError, match="audit_log is append-only"),  # the trigger's RAISE EXCEPTION
            ):
                conn.exec_driver_sql("UPDATE audit_log SET action = 'x'")
