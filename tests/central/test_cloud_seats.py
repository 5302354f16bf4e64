"""Cloud seats: the seat engine (``licentia.seats``) on Central's own database. The same
engine as a license server's, on SQLite and PostgreSQL; on PostgreSQL two Central
processes take seats of one license at once and never give out more than it has."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest
from central_helpers import central_app, make_settings

from licentia.central.cloud_seats import CentralSeatStore
from licentia.central.db import Database
from licentia.core import errors as E
from licentia.core import hazmat
from licentia.core.documents import sign_document
from licentia.seats import Client, SeatEngine
from licentia.seats.model import SeatLicense
from tests.conftest import child_env

KEY = hazmat.Ed25519PrivateKey.generate()
LICENSE = SeatLicense(key="140-AAAA-BBBB-CCCC/7", firm_code=61001, product_code=9, license_id=7, quantity=3)


def engine_on(url: str, clock: Any) -> tuple[SeatEngine, Database]:
    db = Database(url)
    engine = SeatEngine(CentralSeatStore(db), clock=clock, ttl=120, signer=lambda t, p: sign_document(t, p, KEY))
    return engine, db


def client(n: int) -> Client:
    return Client(client_lease_id=f"c{n}", user=f"user{n}", host=f"host{n}", ip="203.0.113.9")


def take(engine: SeatEngine, n: int) -> Any:
    return engine.acquire(client(n), firm_code=61001, product_code=9, candidates=[LICENSE])


def check_the_engine(url: str, clock: Any) -> None:
    engine, db = engine_on(url, clock)
    try:
        leases = [take(engine, n) for n in range(3)]
        with pytest.raises(E.Refusal) as refused:
            take(engine, 3)
        assert refused.value.error is E.SeatsExhausted
        assert take(engine, 0).id == leases[0].id  # a reconnect gets its own seat back
        assert engine.seats_in_use([LICENSE.key]) == {LICENSE.key: 3}
        engine.release(leases[1].id)
        fourth = take(engine, 3)
        assert fourth.id not in {lease.id for lease in leases}
        clock.advance(121)  # nobody renewed: every lease runs out
        engine.sweep()
        assert engine.seats_in_use([LICENSE.key]) == {LICENSE.key: 0}
        kinds = [e["event"] for e in engine.usage(0, clock() + 1, events=True)]
        assert kinds.count("access") == 4 and "release" in kinds and kinds.count("expire") == 3, kinds
    finally:
        db.dispose()


def test_the_seat_engine_on_centrals_sqlite_database(tmp_path, clock):
    settings = make_settings(tmp_path / "data")
    with central_app(settings, clock):
        pass  # the schema, migrated
    check_the_engine(settings.db_url, clock)


@pytest.mark.postgres
def test_the_seat_engine_on_postgresql(tmp_path, pg_url, clock):
    with central_app(make_settings(tmp_path / "data", pg_url), clock):
        pass
    check_the_engine(pg_url, clock)


TAKER = """
import json, sys, time
from licentia.central.cloud_seats import CentralSeatStore
from licentia.central.db import Database
from licentia.core import errors as E
from licentia.seats import Client, SeatEngine
from licentia.seats.model import SeatLicense

url, first, count, start = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
lic = SeatLicense(key="140-AAAA-BBBB-CCCC/7", firm_code=61001, product_code=9, license_id=7, quantity=3)
db = Database(url)
engine = SeatEngine(CentralSeatStore(db), clock=lambda: 1_800_000_000, ttl=3600)
while time.time() < start:
    time.sleep(0.001)
granted = []
for n in range(first, first + count):
    c = Client(client_lease_id=f"c{n}", user=f"u{n}", host=f"h{n}", ip="203.0.113.9")
    try:
        granted.append(engine.acquire(c, firm_code=61001, product_code=9, candidates=[lic]).id)
    except E.Refusal:
        pass
db.dispose()
print(json.dumps(granted))
"""


@pytest.mark.postgres
def test_two_processes_never_give_out_more_seats_than_the_license_has(tmp_path, pg_url, clock):
    import time

    with central_app(make_settings(tmp_path / "data", pg_url), clock):
        pass
    script = tmp_path / "taker.py"
    script.write_text(TAKER)
    granted: list[str] = []
    for round_ in range(4):  # each round a fresh license: the race at its last seats, again
        key = f"140-AAAA-BBBB-CCCC/{round_ + 10}"
        text = TAKER.replace("140-AAAA-BBBB-CCCC/7", key).replace("license_id=7", f"license_id={round_ + 10}")
        script.write_text(text)
        start = time.time() + 1.5  # both processes start taking at once
        procs = [
            subprocess.Popen(
                [sys.executable, str(script), pg_url, str(1000 * round_ + 100 * i), "12", str(start)],
                env=child_env(),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for i in range(2)
        ]
        got = []
        for p in procs:
            out, err = p.communicate(timeout=120)
            assert p.returncode == 0, err
            got += json.loads(out)
        assert len(got) == 3, f"round {round_}: {len(got)} seats given out of a license of 3"
        granted += got
    db = Database(pg_url)
    try:
        with db.engine.connect() as conn:
            live = conn.exec_driver_sql("SELECT license_key, count(*) FROM cloud_leases GROUP BY license_key").all()
    finally:
        db.dispose()
    assert sorted(n for _, n in live) == [3, 3, 3, 3]
    assert len(set(granted)) == 12
