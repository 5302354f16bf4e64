"""The attack of the usage issue, end to end: the operator of a license server rewrites
events of its usage log and signs the head again with the server container's key (which
its machine holds). Before anchoring, `licentia server usage verify` called that log
intact and nothing else could tell. Now:

- while the server keeps Central's anchor, `usage verify` fails on the rewritten event;
- with the anchor record removed too, the local check can no longer tell (the key is the
  operator's), but the next `licentia server sync` shows Central a log that differs from
  the one it anchored: Central refuses it, stores nothing of it, keeps the events it had,
  flags the server for the vendor and, under the item's `withdraw` policy, takes the
  license back, which the same sync removes from the server.

Central runs in a uvicorn thread with its own SQLite file; the server's container
activates a real ticket through the CLI; the events come from the server's seat engine.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from sqlalchemy import select

from licentia.central.models import UsageEvent
from licentia.core import anchoring
from licentia.seats import usage
from licentia.server import Settings
from licentia.server.core import LicenseServer
from tests.cli.helpers import invoke
from tests.server.test_usage_sync import central, clock, last_seq, make_events  # noqa: F401 - the fixtures


def _rewrite(data: Path, seq: int, user: str) -> None:
    """What the operator does: change event ``seq``, chain every later event again, and
    sign a new head with the server container's key."""
    db = sqlite3.connect(data / "seats.db")
    try:
        rows = db.execute("SELECT seq, body FROM events WHERE seq >= ? ORDER BY seq", (seq,)).fetchall()
        before = db.execute("SELECT hash FROM events WHERE seq = ?", (seq - 1,)).fetchone()
        prev = before[0] if before else anchoring.GENESIS
        for n, body in rows:
            if n == seq:
                doc = json.loads(body)
                doc["userIdentification"] = user
                body = usage.encode(n, {k: v for k, v in doc.items() if k != "seq"})
            prev = anchoring.chain(prev, body)
            db.execute("UPDATE events SET body = ?, hash = ? WHERE seq = ?", (body, prev, n))
        db.commit()
    finally:
        db.close()
    server = LicenseServer(Settings(data_dir=data, discovery=False))
    try:  # the head, signed again with the container's key
        with server.engine.store.transaction() as tx:
            last, digest = tx.last_event()
            server.engine._sign_head(tx, last, digest, server.clock())
    finally:
        server.close()


def _drop_anchor(data: Path) -> None:
    db = sqlite3.connect(data / "seats.db")
    try:
        db.execute("DELETE FROM meta WHERE key = ?", (usage.CENTRAL_ANCHOR,))
        db.commit()
    finally:
        db.close()


def _verify(data: Path) -> tuple[int, str]:
    out = invoke(["server", "usage", "verify", "--data", str(data)], env={"COLUMNS": "300"})
    return out.code, " ".join((out.out + out.err).split())


def test_a_rewritten_and_resigned_log_is_caught_and_the_license_taken_back(central, clock, tmp_path):  # noqa: F811
    url, vendor, db = central
    r = vendor.post(
        "/items",
        {"name": "Floating Strict", "product_code": 8, "options": {"quantity": 2}, "on_manipulation": "withdraw"},
    )
    assert r.status_code == 201, r.text
    (ticket,) = vendor.tickets(1, items=[r.json()["item_id"]])
    data = tmp_path / "server-data"
    out = invoke(["server", "activate", ticket, "--central", url, "--data", str(data)])
    assert out.code == 0, out.out + out.err
    server = LicenseServer(Settings(data_dir=data, discovery=False, clock=clock))
    try:
        serial = server.served()[0][0].container.serial
        make_events(server, 9)
    finally:
        server.close()
    out = invoke(["server", "sync", "--data", str(data)], env={"COLUMNS": "300"})
    assert out.code == 0, out.out + out.err
    anchored = last_seq(data)
    with db.connect() as conn:
        stored = sorted(conn.execute(select(UsageEvent.seq, UsageEvent.user_ident)).all())
    assert ("user0@ws0" in {u for _, u in stored}) and len(stored) >= 5

    # the operator rewrites who used the first seat and signs the head again
    _rewrite(data, 1, "nobody@nowhere")
    code, said = _verify(data)
    assert code != 0, said  # the anchor Central signed no longer matches
    assert f"event {1}" in said or "anchor" in said, said

    # ... and removes the anchor record as well: locally, nothing can tell any more
    _drop_anchor(data)
    code, said = _verify(data)
    assert code == 0 and "usage log intact" in said, said

    # the next contact with Central shows it
    out = invoke(["server", "sync", "--data", str(data)], env={"COLUMNS": "300"})
    said = " ".join((out.out + out.err).split())
    assert out.code != 0, said
    assert "usage_chain_broken" in said or "rewritten" in said or "broken" in said, said
    with db.connect() as conn:  # Central kept what it had and stored nothing of the rewrite
        assert sorted(conn.execute(select(UsageEvent.seq, UsageEvent.user_ident)).all()) == stored
    shown = vendor.get(f"/containers/{serial}")
    assert shown.status_code == 200, shown.text
    assert "usage log" in json.dumps(shown.json()["flags"]).lower(), shown.json()["flags"]
    assert shown.json()["usage"]["anchored_seq"] == anchored
    # withdraw: the ticket is blocked, and the server no longer holds the license
    assert vendor.get(f"/tickets/{ticket}").json()["state"] == "blocked"
    server = LicenseServer(Settings(data_dir=data, discovery=False, clock=clock))
    try:
        served, _ = server.served()
        assert served == []
    finally:
        server.close()
