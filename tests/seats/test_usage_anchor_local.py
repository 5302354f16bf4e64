"""The license server's side of anchoring its usage log at License Central: the uploads
after the stored anchor, recording an anchor (and refusing a wrong one, storing nothing),
pruning that stops at the anchor, and verification against it."""

from __future__ import annotations

import json
import sqlite3

import pytest

from licentia.core import anchoring, codes, hazmat
from licentia.core.documents import document_digest, sign_document
from licentia.core.encoding import canonical
from licentia.core.errors import ActivationError, LicenseInvalid
from licentia.seats.usage import CENTRAL_ANCHOR, HEAD_TYPE, Pseudonymiser
from tests.factory import T0
from tests.seats.helpers import F, acquire, cl

SERIAL = codes.new_serial()


@pytest.fixture
def firm_key():
    return hazmat.Ed25519PrivateKey.generate()


@pytest.fixture
def keys(firm_key):
    pub = firm_key.public_key()
    return {F: {hazmat.key_id(pub): pub}}


def sign_with(key):
    return lambda doc_type, payload: sign_document(doc_type, payload, key)


def events(eng, n: int) -> None:
    """``n`` events: accesses and releases."""
    made = 0
    i = 0
    while made < n:
        lease = acquire(eng, cl(i, user=f"u{i}"))
        made += 1
        if made < n:
            eng.release(lease.id)
            made += 1
        i += 1


def anchor_for(firm_key, doc, *, serial=SERIAL, seq=None, digest=None, time=T0 + 5, firm=F):
    p = doc["payload"]
    return anchoring.build_anchor(
        firm_key=firm_key,
        serial=serial,
        firm_code=firm,
        seq=p["head_seq"] if seq is None else seq,
        digest=p["head_hash"] if digest is None else digest,
        time=time,
        upload=document_digest(doc),
    )


def meta(tmp_path, name):
    db = sqlite3.connect(tmp_path / "seats.db")
    try:
        row = db.execute("SELECT value FROM meta WHERE key = ?", (name,)).fetchone()
        return None if row is None else row[0]
    finally:
        db.close()


def test_uploads_are_chunks_of_the_whole_log_that_central_can_verify(make, key):
    eng = make()
    events(eng, 12)
    docs = list(eng.usage_uploads(sign_with(key), SERIAL, max_events=5))
    ups = [anchoring.verify_upload(d, key.public_key()) for d in docs]
    assert [(u.base_seq, u.head_seq) for u in ups] == [(0, 5), (5, 10), (10, 12)]
    assert ups[0].base_hash == anchoring.GENESIS
    assert ups[1].base_hash == ups[0].head_hash and ups[2].base_hash == ups[1].head_hash
    assert ups[2].head_hash == eng.usage_hash(12)
    assert all(u.serial == SERIAL and not u.pseudonymised for u in ups)
    assert [e.seat for e in ups[0].events][:1] == [ups[0].events[0].lease_id]  # a user seat: the lease's own
    # a byte limit splits too (one event at least per upload)
    small = list(eng.usage_uploads(sign_with(key), SERIAL, max_bytes=1))
    assert [len(d["payload"]["events"]) for d in small] == [1] * 12


def test_uploads_of_a_pseudonymised_log_say_so(make, key, tmp_path):
    eng = make(pseudonymiser=Pseudonymiser.from_file(tmp_path / "pseudonym.key"))
    events(eng, 3)
    (doc,) = eng.usage_uploads(sign_with(key), SERIAL)
    assert anchoring.verify_upload(doc, key.public_key()).pseudonymised is True


def test_uploads_start_after_the_recorded_anchor(make, key, firm_key, keys, tmp_path):
    eng = make()
    events(eng, 7)
    first = next(eng.usage_uploads(sign_with(key), SERIAL, max_events=4))
    anchor = eng.record_anchor(anchor_for(firm_key, first), serial=SERIAL, firm_keys=keys)
    assert (anchor.seq, anchor.hash) == (4, eng.usage_hash(4))
    assert eng.central_anchor().seq == 4
    (rest,) = eng.usage_uploads(sign_with(key), SERIAL)
    up = anchoring.verify_upload(rest, key.public_key())
    assert (up.base_seq, up.base_hash, up.head_seq) == (4, eng.usage_hash(4), 7)
    eng.record_anchor(anchor_for(firm_key, rest), serial=SERIAL, firm_keys=keys)
    assert list(eng.usage_uploads(sign_with(key), SERIAL)) == []  # everything is anchored
    events(eng, 2)
    (new,) = eng.usage_uploads(sign_with(key), SERIAL)
    assert (new["payload"]["base_seq"], new["payload"]["head_seq"]) == (7, 9)
    # an explicit base (Central's anchored sequence after an anchor_mismatch) starts there
    (again,) = eng.usage_uploads(sign_with(key), SERIAL, base=(2, eng.usage_hash(2)))
    assert (again["payload"]["base_seq"], again["payload"]["head_seq"]) == (2, 9)
    assert anchoring.verify_upload(again, key.public_key()).head_hash == eng.usage_hash(9)


def test_an_older_anchor_keeps_the_newer_one(make, key, firm_key, keys, tmp_path):
    eng = make()
    events(eng, 6)
    a, b = eng.usage_uploads(sign_with(key), SERIAL, max_events=3)
    older = anchor_for(firm_key, a)
    eng.record_anchor(anchor_for(firm_key, b), serial=SERIAL, firm_keys=keys)
    kept = meta(tmp_path, CENTRAL_ANCHOR)
    assert eng.record_anchor(older, serial=SERIAL, firm_keys=keys).seq == 6
    assert meta(tmp_path, CENTRAL_ANCHOR) == kept


def test_a_wrong_anchor_is_refused_and_nothing_is_stored(make, key, firm_key, keys, tmp_path):
    eng = make()
    events(eng, 5)
    (doc,) = eng.usage_uploads(sign_with(key), SERIAL)
    other_firm_key = hazmat.Ed25519PrivateKey.generate()
    cases = [
        (anchor_for(firm_key, doc, serial=codes.new_serial()), ActivationError, "not this one"),  # another server's
        (anchor_for(firm_key, doc, digest="ab" * 32), ActivationError, "does not match"),  # a forked chain
        (anchor_for(firm_key, doc, seq=3), ActivationError, "does not match"),  # head hash at another event
        (anchor_for(firm_key, doc, seq=9, digest=eng.usage_hash(5)), ActivationError, "does not hold"),  # beyond
        (anchor_for(other_firm_key, doc), LicenseInvalid, "verifies"),  # signed by a key the slot does not know
        (anchor_for(firm_key, doc, firm=F + 1), LicenseInvalid, "verifies"),  # a firm the container has no slot of
        ({**anchor_for(firm_key, doc), "sig": anchor_for(firm_key, doc, seq=4)["sig"]}, LicenseInvalid, "verifies"),
        (doc, LicenseInvalid, "verifies"),  # the upload itself is no anchor
        ({"payload": "x"}, LicenseInvalid, "verifies"),
    ]
    before = (meta(tmp_path, CENTRAL_ANCHOR), meta(tmp_path, "usage_head"))
    for bad, error, words in cases:
        with pytest.raises(error, match=words):
            eng.record_anchor(bad, serial=SERIAL, firm_keys=keys)
        assert (meta(tmp_path, CENTRAL_ANCHOR), meta(tmp_path, "usage_head")) == before
    assert eng.central_anchor() is None
    good = eng.record_anchor(anchor_for(firm_key, doc), serial=SERIAL, firm_keys=keys)
    assert good.seq == 5


def test_pruning_never_drops_an_event_after_the_anchor(make, clock, key, firm_key, keys, tmp_path):
    eng = make(retention_days=1)
    events(eng, 6)
    first = next(eng.usage_uploads(sign_with(key), SERIAL, max_events=2))
    eng.record_anchor(anchor_for(firm_key, first), serial=SERIAL, firm_keys=keys)  # through event 2
    clock.advance(3 * 86400)
    events(eng, 1)
    assert eng.prune() == 2  # events 1 and 2 only: 3..6 are older than a day but not anchored yet
    db = sqlite3.connect(tmp_path / "seats.db")
    assert [r[0] for r in db.execute("SELECT seq FROM events ORDER BY seq")] == [3, 4, 5, 6, 7]
    assert eng.prune() == 0
    # the upload still starts at the anchor, and once 3..7 are anchored they may go
    (rest,) = eng.usage_uploads(sign_with(key), SERIAL)
    assert (rest["payload"]["base_seq"], rest["payload"]["head_seq"]) == (2, 7)
    eng.record_anchor(anchor_for(firm_key, rest), serial=SERIAL, firm_keys=keys)
    assert eng.prune() == 4  # 3..6: the new event 7 is within the day
    assert [r[0] for r in db.execute("SELECT seq FROM events ORDER BY seq")] == [7]
    db.close()
    result = eng.verify_usage(key.public_key(), anchor_keys=keys)
    assert result["ok"], result
    assert result["anchor"]["seq"] == 7


def test_without_an_anchor_pruning_works_as_before_and_the_upload_starts_at_its_anchor(make, clock, key, tmp_path):
    eng = make(retention_days=1)
    events(eng, 4)
    clock.advance(2 * 86400)
    events(eng, 2)
    assert eng.prune() == 4
    (doc,) = eng.usage_uploads(sign_with(key), SERIAL)
    up = anchoring.verify_upload(doc, key.public_key())
    assert (up.base_seq, up.head_seq) == (4, 6)
    assert up.base_hash == json.loads(meta(tmp_path, "usage_anchor"))["hash"]


def test_verify_reports_the_anchor_and_catches_a_rewritten_anchored_event(make, key, firm_key, keys, tmp_path):
    eng = make()
    events(eng, 6)
    doc = next(eng.usage_uploads(sign_with(key), SERIAL, max_events=4))
    eng.record_anchor(anchor_for(firm_key, doc, time=T0 + 77), serial=SERIAL, firm_keys=keys)
    result = eng.verify_usage(key.public_key(), anchor_keys=keys)
    assert result["ok"], result
    assert result["anchor"] == {"seq": 4, "time": T0 + 77, "hash": eng.usage_hash(4)}
    # the server's owner holds the container key: rewrite event 2, recompute the chain, sign a new head
    db = sqlite3.connect(tmp_path / "seats.db")
    rows = db.execute("SELECT seq, body FROM events ORDER BY seq").fetchall()
    prev = anchoring.GENESIS
    for seq, body in rows:
        if seq == 2:
            changed = json.loads(body)
            changed["seconds"] = 1
            changed["releaseTime"] = changed["accessTime"] + 1
            body = canonical(changed).decode()
        prev = anchoring.chain(prev, body)
        db.execute("UPDATE events SET body = ?, hash = ? WHERE seq = ?", (body, prev, seq))
    head = {"seq": 6, "hash": prev, "anchor_seq": 0, "anchor_hash": anchoring.GENESIS, "time": T0}
    db.execute("UPDATE meta SET value = ? WHERE key = 'usage_head'", (json.dumps(sign_document(HEAD_TYPE, head, key)),))
    db.commit()
    db.close()
    result = eng.verify_usage(key.public_key(), anchor_keys=keys)
    assert not result["ok"]
    assert result["problems"] == [
        "the log differs from what License Central anchored through event 4: an event up to it was changed"
    ]
    # a rewrite after the anchor is the chain's and head's business; the anchor still holds
    assert result["anchor"]["seq"] == 4


def test_verify_catches_a_cut_log_and_a_forged_anchor(make, key, firm_key, keys, tmp_path):
    eng = make()
    events(eng, 4)
    (doc,) = eng.usage_uploads(sign_with(key), SERIAL)
    eng.record_anchor(anchor_for(firm_key, doc), serial=SERIAL, firm_keys=keys)
    db = sqlite3.connect(tmp_path / "seats.db")
    saved = db.execute("SELECT value FROM meta WHERE key = ?", (CENTRAL_ANCHOR,)).fetchone()[0]
    forged = anchor_for(hazmat.Ed25519PrivateKey.generate(), doc)
    db.execute("UPDATE meta SET value = ? WHERE key = ?", (json.dumps(forged), CENTRAL_ANCHOR))
    db.commit()
    assert any("does not verify" in p for p in eng.verify_usage(key.public_key(), anchor_keys=keys)["problems"])
    db.execute("UPDATE meta SET value = ? WHERE key = ?", (saved, CENTRAL_ANCHOR))
    db.execute("DELETE FROM events WHERE seq >= 3")  # the anchored tail cut (and the head with it)
    head = {"seq": 2, "hash": eng.usage_hash(2), "anchor_seq": 0, "anchor_hash": anchoring.GENESIS, "time": T0}
    db.execute("UPDATE meta SET value = ? WHERE key = 'usage_head'", (json.dumps(sign_document(HEAD_TYPE, head, key)),))
    db.commit()
    db.close()
    problems = eng.verify_usage(key.public_key(), anchor_keys=keys)["problems"]
    assert problems == ["the log lacks event 4, which License Central anchored (it was cut)"]


def test_a_gap_in_the_log_stops_the_upload(make, key, tmp_path):
    eng = make()
    events(eng, 4)
    db = sqlite3.connect(tmp_path / "seats.db")
    db.execute("DELETE FROM events WHERE seq = 2")
    db.commit()
    db.close()
    with pytest.raises(ActivationError, match="misses event 2"):
        list(eng.usage_uploads(sign_with(key), SERIAL))


def test_denials_of_a_firm_make_events_central_reads(make, key):
    eng = make()
    eng.record_denial(cl(1), firm_code=F, product_code=3, invalid=True, reason="none")
    (doc,) = eng.usage_uploads(sign_with(key), SERIAL)
    (event,) = anchoring.verify_upload(doc, key.public_key()).events
    assert event.kind == "deny" and event.seat is None and event.lease_id is None


def test_a_refused_anchor_says_what_to_do_and_logs_why(make, key, firm_key, keys, caplog):
    eng = make()
    events(eng, 2)
    (doc,) = eng.usage_uploads(sign_with(key), SERIAL)
    with caplog.at_level("WARNING", logger="licentia.seats"), pytest.raises(LicenseInvalid) as info:
        eng.record_anchor(anchor_for(firm_key, doc, firm=F + 1), serial=SERIAL, firm_keys=keys)
    assert str(info.value) == (
        "this is no License Central anchor of this server's usage log that verifies: use the anchor file "
        "License Central gave, unchanged"
    )
    why = "no slot of the server's container knows the firm that signed it"
    assert info.value.reason == f"usage anchor: {why}"
    assert [r.getMessage() for r in caplog.records] == [f"usage anchor refused: {why}"]
    caplog.clear()
    with caplog.at_level("INFO", logger="licentia.seats"):
        eng.record_anchor(anchor_for(firm_key, doc), serial=SERIAL, firm_keys=keys)
    assert [r.getMessage() for r in caplog.records] == ["usage log anchored at License Central through event 2"]
