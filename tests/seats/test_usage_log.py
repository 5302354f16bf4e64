"""The usage log: the reporting view, the signed hash chain that shows changes and removals, retention."""

from __future__ import annotations

import json
import sqlite3

from licentia.core import hazmat
from tests.factory import T0
from tests.seats.helpers import F, acquire, cl


def test_usage_view_has_the_reporting_fields(make, clock):
    eng = make(ttl=600)
    a = acquire(eng, cl(1), feature=3)
    clock.advance(359)
    eng.renew(a.id, "c1")
    eng.release(a.id, "c1")
    eng.record_denial(cl(2), firm_code=F, product_code=9, invalid=True, reason="no license")
    rows = eng.usage(T0, T0 + 1000)
    assert len(rows) == 2
    done = next(r for r in rows if r["success"])
    assert done["seconds"] == 359 and done["releaseTime"] and done["featureCode"] == 3
    assert done["ticketLicenseId"] == 1 and done["userIdentification"] == "alice@h1" and done["firmCode"] == F
    deny = next(r for r in rows if not r["success"])
    assert deny["invalid"] == 1 and deny["fail"] == 0 and "releaseTime" not in deny
    kinds = [e["event"] for e in eng.usage(T0, T0 + 1000, events=True)]
    assert kinds == ["access", "renew", "release", "deny"]


def test_usage_log_verifies_and_detects_changes_and_removals(make, clock, key, tmp_path):
    eng = make()
    for i in range(5):
        eng.release(acquire(eng, cl(i)).id)
    pub = key.public_key()
    assert eng.verify_usage(pub)["ok"]
    assert not eng.verify_usage(hazmat.Ed25519PrivateKey.generate().public_key())["ok"]
    db = sqlite3.connect(tmp_path / "seats.db")
    body = json.loads(db.execute("SELECT body FROM events WHERE seq = 3").fetchone()[0])
    body["seconds"] = 99999
    db.execute("UPDATE events SET body = ? WHERE seq = 3", (json.dumps(body, sort_keys=True, separators=(",", ":")),))
    db.commit()
    result = eng.verify_usage(pub)
    assert not result["ok"] and any("event 3" in p for p in result["problems"])
    db.close()


def test_usage_log_detects_a_removed_event_and_a_cut_tail(make, key, tmp_path):
    eng = make()
    for i in range(4):
        eng.release(acquire(eng, cl(i)).id)
    pub = key.public_key()
    db = sqlite3.connect(tmp_path / "seats.db")
    db.execute("DELETE FROM events WHERE seq = 2")
    db.commit()
    assert any("missing" in p for p in eng.verify_usage(pub)["problems"])
    last = db.execute("SELECT MAX(seq) FROM events").fetchone()[0]
    db.execute("DELETE FROM events WHERE seq = ?", (last,))
    db.commit()
    assert any("cut" in p for p in eng.verify_usage(pub)["problems"])
    db.close()


def test_retention_prunes_and_keeps_the_chain_verifiable(make, clock, key):
    eng = make(retention_days=1)
    for i in range(3):
        eng.release(acquire(eng, cl(i)).id)
    clock.advance(2 * 86400)
    eng.release(acquire(eng, cl(9)).id)
    clock.advance(12 * 3600)  # half a day later: the access before is within the day kept
    eng.release(acquire(eng, cl(10)).id)
    assert eng.prune() == 6
    result = eng.verify_usage(key.public_key())
    assert result["ok"], result
    assert result["events"] == 4, result  # the last two accesses and releases; the pruned six are anchored
    assert eng.prune() == 0  # nothing more is older than a day
    clock.advance(12 * 3600 + 1)
    assert eng.prune() == 2  # now the first of the two is
    assert eng.verify_usage(key.public_key())["ok"]


def test_a_client_cannot_plant_a_spreadsheet_formula_in_the_csv_report(make, clock):
    import csv
    import io

    from licentia.seats.usage import to_csv

    eng = make()
    planted = ['=HYPERLINK("http://127.0.0.1/x","open")', "+1+1", "-2+3", "@SUM(A1)", "\tx", "\rx"]
    for n, name in enumerate(planted):
        a = acquire(eng, cl(n + 1, user=name, host="h"), licenses=None)
        eng.release(a.id, f"c{n + 1}")
    rows = list(csv.DictReader(io.StringIO(to_csv(eng.usage(T0, T0 + 1000)))))
    cells = [row["userIdentification"] for row in rows]
    assert sorted(cells) == sorted(("'" + name + "@h").replace("\r", " ") for name in planted)
    assert all(not c.startswith(("=", "+", "-", "@", "\t", "\r")) for row in rows for c in row.values())
