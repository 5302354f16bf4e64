"""A license server's usage log goes to a real License Central and comes back anchored:
`licentia server sync` (uploads only what is new), the offline way (export, depot submit,
anchor), a server that lost its anchor record, and the running server's periodic sync.

Central runs in a uvicorn thread on a free port with its own SQLite file; the license
server's container activates a real ticket there through the CLI; the events come from the
real seat engine of the license server. One injected clock serves both sides."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from licentia import _testing
from licentia.core.errors import ActivationError
from licentia.seats import Client, SeatEngine, SqliteSeatStore
from licentia.server import Settings, create_app
from licentia.server.core import LicenseServer, upload_usage
from tests.central.central_helpers import Clock, ServerThread, Vendor, central_app, count_rows, make_settings
from tests.cli.helpers import invoke
from tests.factory import machine_traits

FIRM = 4646


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def central(tmp_path, clock):
    _testing.install(clock=clock, traits=lambda: machine_traits(hostname="license-server"))
    with central_app(make_settings(tmp_path / "central"), clock) as app, ServerThread(app) as server:
        api = httpx.Client(base_url=server.url, timeout=30)
        vendor = Vendor(api, FIRM, options={"quantity": 3})
        try:
            yield server.url, vendor, app.state.central.db.engine
        finally:
            api.close()


@pytest.fixture
def data(central, tmp_path):
    url, vendor, _ = central
    (ticket,) = vendor.tickets(1)
    data = tmp_path / "server-data"
    out = invoke(["server", "activate", ticket, "--central", url, "--data", str(data)])
    assert out.code == 0, out.out + out.err
    return data


def make_events(server: LicenseServer, count: int) -> None:
    """``count`` events through the server's seat engine: accesses and releases, one denial."""
    clock = server.clock
    served, _ = server.served()
    (item,) = served
    entry = item.entry
    for i in range(count):
        client = Client(f"c{time.monotonic_ns()}-{i}", user=f"user{i}", host=f"ws{i}", ip=f"10.0.0.{i % 250}")
        if i % 5 == 4:
            server.engine.record_denial(
                client, firm_code=FIRM, product_code=99, invalid=True, reason="no license of product 99"
            )
            continue
        lease = server.engine.acquire(
            client,
            firm_code=entry.firm_code,
            product_code=entry.product_code,
            candidates=[item.seat_license()],
        )
        clock.advance(30)
        server.engine.release(lease.id)


def last_seq(data: Path) -> int:
    db = sqlite3.connect(data / "seats.db")
    try:
        return int(db.execute("SELECT MAX(seq) FROM events").fetchone()[0])
    finally:
        db.close()


def anchored(data: Path) -> int | None:
    server = LicenseServer(Settings(data_dir=data, discovery=False))
    try:
        anchor = server.engine.central_anchor()
        return None if anchor is None else anchor.seq
    finally:
        server.close()


def sync(data: Path) -> str:
    out = invoke(["server", "sync", "--data", str(data)], env={"COLUMNS": "300"})
    assert out.code == 0, out.out + out.err
    return " ".join(out.out.split())


def test_server_sync_uploads_the_log_and_then_only_what_is_new(central, data, clock, tmp_path):
    url, vendor, db = central
    server = LicenseServer(Settings(data_dir=data, discovery=False, clock=clock))
    try:
        make_events(server, 9)
    finally:
        server.close()
    first = last_seq(data)
    assert first >= 9
    said = sync(data)
    assert f"Usage log anchored at License Central through event {first} ({first} events uploaded)." in said
    assert "Container" in said  # the license sync ran after it
    assert anchored(data) == first
    stored = count_rows(db, "usage_events")
    assert stored > 0
    # the second sync uploads only the new events
    clock.advance(60)
    server = LicenseServer(Settings(data_dir=data, discovery=False, clock=clock))
    try:
        make_events(server, 4)
    finally:
        server.close()
    second = last_seq(data)
    said = sync(data)
    assert f"through event {second} ({second - first} events uploaded)." in said
    assert count_rows(db, "usage_events") > stored
    # nothing new: nothing uploaded, the anchor stays
    said = sync(data)
    assert f"through event {second} (0 events uploaded)." in said
    out = invoke(["server", "usage", "verify", "--data", str(data)], env={"COLUMNS": "300"})
    assert out.code == 0, out.out + out.err
    assert f"anchored at License Central through event {second} (" in out.out
    assert "usage log intact" in out.out


def test_offline_export_depot_submit_and_anchor(central, data, clock, tmp_path):
    url, vendor, db = central
    server = LicenseServer(Settings(data_dir=data, discovery=False, clock=clock))
    try:
        make_events(server, 6)
    finally:
        server.close()
    head = last_seq(data)
    upload, answer = tmp_path / "usage.json", tmp_path / "anchor.json"
    out = invoke(["server", "usage", "export", "-o", str(upload), "--data", str(data)])
    assert out.code == 0, out.out + out.err
    doc = json.loads(upload.read_bytes())
    assert doc["payload"]["type"] == "usage-upload" and doc["payload"]["head_seq"] == head
    assert anchored(data) is None  # exporting changes nothing
    out = invoke(["depot", "submit", str(upload), "--central", url, "-o", str(answer)])
    assert out.code == 0, out.out + out.err
    assert json.loads(answer.read_bytes())["payload"]["type"] == "usage-anchor"
    assert anchored(data) is None  # not recorded before `usage anchor`
    out = invoke(["server", "usage", "anchor", str(answer), "--data", str(data)])
    assert out.code == 0, out.out + out.err
    assert f"anchored at License Central through event {head}" in " ".join(out.out.split())
    assert anchored(data) == head
    # an online sync now has nothing to upload
    assert "(0 events uploaded)" in sync(data)
    # an anchor file for another log is refused, and the stored anchor stays
    other = json.loads(answer.read_bytes())
    other["payload"]["seq"] = 1
    answer.write_text(json.dumps(other))
    out = invoke(["server", "usage", "anchor", str(answer), "--data", str(data)])
    assert out.code != 0 and anchored(data) == head


def test_a_server_that_lost_its_anchor_uploads_again_from_centrals(central, data, clock):
    url, vendor, db = central
    server = LicenseServer(Settings(data_dir=data, discovery=False, clock=clock))
    try:
        make_events(server, 6)
        sync(data)
        first = last_seq(data)
        make_events(server, 3)
    finally:
        server.close()
    db_file = sqlite3.connect(data / "seats.db")
    db_file.execute("DELETE FROM meta WHERE key = 'central_anchor'")  # the anchor record is lost
    db_file.commit()
    t3 = int(db_file.execute("SELECT time FROM events WHERE seq = 3").fetchone()[0])
    db_file.close()
    # and retention pruning, without the anchor, dropped the oldest events: the next upload
    # starts at the pruning's anchor, where Central holds none
    store = SqliteSeatStore(data / "seats.db")
    try:
        assert SeatEngine(store, clock=lambda: t3 + 86401, retention_days=1).prune() >= 3
    finally:
        store.close()
    stored = count_rows(db, "usage_events")
    said = sync(data)
    second = last_seq(data)
    # Central said anchor_mismatch at `first`; the server uploaded again from there
    assert f"through event {second} ({second - first} events uploaded)." in said
    assert anchored(data) == second
    assert count_rows(db, "usage_events") > stored


def test_the_running_server_syncs_with_central_by_itself(central, data, clock):
    settings = Settings(data_dir=data, discovery=False, clock=clock, admin_token="adm", central_sync=0.2)
    server = LicenseServer(settings)
    make_events(server, 5)
    head = last_seq(data)
    with TestClient(create_app(settings, server=server)):
        deadline = time.monotonic() + 30
        while server.engine.central_anchor() is None or server.engine.central_anchor().seq < head:
            assert time.monotonic() < deadline, "the server did not upload its usage log"
            time.sleep(0.05)
        make_events(server, 2)
        deadline = time.monotonic() + 30
        while server.engine.central_anchor().seq < head + 2:
            assert time.monotonic() < deadline, "the server did not upload its new events"
            time.sleep(0.05)


def test_a_failing_upload_is_logged_and_never_stops_the_server(central, data, clock, caplog):
    url, vendor, db = central
    settings = Settings(data_dir=data, discovery=False, clock=clock, admin_token="adm", central_sync=0.1)
    server = LicenseServer(settings)
    make_events(server, 4)
    gap = sqlite3.connect(data / "seats.db")
    gap.execute("DELETE FROM events WHERE seq = 2")  # a damaged log cannot be uploaded
    gap.commit()
    gap.close()
    caplog.set_level("ERROR", logger="licentia.server")
    with TestClient(create_app(settings, server=server)) as client:
        deadline = time.monotonic() + 30
        while sum("sync with License Central failed" in r.getMessage() for r in caplog.records) < 2:
            assert time.monotonic() < deadline, "no failed sync was logged"
            time.sleep(0.05)
        assert client.get("/health").status_code == 200  # still serving, and trying again
        assert server.engine.central_anchor() is None
    assert any("misses event 2" in r.getMessage() for r in caplog.records)
    assert count_rows(db, "usage_events") == 0


def test_an_unreachable_central_stores_nothing(data, clock):
    from tests.conftest import free_port

    server = LicenseServer(Settings(data_dir=data, discovery=False, clock=clock))
    try:
        make_events(server, 2)
        with pytest.raises(ActivationError, match="could not go to License Central"):
            upload_usage(server.engine, server.runtime, f"http://127.0.0.1:{free_port()}")
        assert server.engine.central_anchor() is None
    finally:
        server.close()
