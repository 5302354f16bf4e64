"""The usage upload a license server signs and the anchor Central signs back
(core/anchoring): round trips, every refused field, the chain, each event's checks, and
a property: any byte changed in an upload is refused."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from licentia.core import anchoring, codes, hazmat
from licentia.core.documents import DocumentInvalid, document_digest, sign_document
from licentia.core.encoding import canonical

KEY = hazmat.Ed25519PrivateKey.generate()
OTHER = hazmat.Ed25519PrivateKey.generate()
FIRM = hazmat.Ed25519PrivateKey.generate()
SERIAL = codes.new_serial()
T = 1_780_000_000


def event(seq: int, kind: str = "access", **changes: Any) -> str:
    """The canonical body text of one event, as seats/usage.encode writes it."""
    final = kind in anchoring.FINAL_KINDS
    body: dict[str, Any] = {
        "seq": seq,
        "event": kind,
        "time": T + seq,
        "leaseId": None if kind == "deny" else f"lease-{seq}",
        "mode": "user",
        "accessTime": T,
        "releaseTime": T + seq if final else None,
        "seconds": seq if final else 0,
        "success": 0 if kind == "deny" else 1,
        "fail": 1 if kind == "deny" else 0,
        "invalid": 0,
        "firmCode": 20001,
        "productCode": 7,
        "featureCode": 1,
        "featureMap": 3,
        "ticketLicenseId": 1,
        "userIdentification": "ann",
        "host": "pc-1",
        "ip": "10.0.0.5",
        "seat": None if kind == "deny" else f"seat-{seq}",
    }
    body.update(changes)
    return canonical(body).decode()


def bodies(first: int, count: int) -> list[str]:
    return [event(s) for s in range(first, first + count)]


def upload(base_seq: int = 0, base_hash: str = anchoring.GENESIS, events: list[str] | None = None, **kw: Any) -> dict:
    events = bodies(base_seq + 1, 3) if events is None else events
    return anchoring.build_upload(
        sign_key=kw.pop("key", KEY),
        serial=kw.pop("serial", SERIAL),
        time=kw.pop("time", T + 100),
        base_seq=base_seq,
        base_hash=base_hash,
        bodies=events,
        **kw,
    )


def resigned(doc: dict, key: hazmat.Ed25519PrivateKey = KEY, **changes: Any) -> dict:
    """The upload's payload with ``changes`` (None: the field removed), signed again."""
    payload = {k: v for k, v in doc["payload"].items() if k not in ("type", "v")}
    for name, value in changes.items():
        if value is None:
            payload.pop(name, None)
        else:
            payload[name] = value
    return sign_document(anchoring.UPLOAD_TYPE, payload, key)


# ---------------------------------------------------------------- round trips


def test_an_upload_verifies_with_its_fields_and_events():
    events = bodies(1, 3)
    doc = upload(events=events, pseudonymised=True)
    up = anchoring.verify_upload(canonical(doc), KEY.public_key())
    assert (up.serial, up.time, up.base_seq, up.base_hash) == (SERIAL, T + 100, 0, anchoring.GENESIS)
    assert up.bodies == tuple(events) and up.first_seq == 1
    assert (up.head_seq, up.head_hash) == (3, anchoring.extend(anchoring.GENESIS, events))
    assert up.pseudonymised is True
    assert up.digest == document_digest(doc)
    assert [e.seq for e in up.events] == [1, 2, 3]
    first = up.events[0]
    assert (first.kind, first.lease_id, first.seat, first.user, first.host, first.ip) == (
        "access",
        "lease-1",
        "seat-1",
        "ann",
        "pc-1",
        "10.0.0.5",
    )
    assert anchoring.upload_serial(canonical(doc)) == SERIAL


def test_the_chain_is_sha256_over_the_previous_hash_and_the_body():
    body = event(1)
    expected = hazmat.sha256(bytes(32) + body.encode()).hex()
    assert anchoring.chain(anchoring.GENESIS, body) == expected
    assert anchoring.extend(expected, [event(2)]) == anchoring.chain(expected, event(2))
    assert anchoring.extend(anchoring.GENESIS, []) == anchoring.GENESIS


def test_an_upload_from_a_pruned_base_verifies():
    base = anchoring.extend(anchoring.GENESIS, bodies(1, 5))
    up = anchoring.verify_upload(upload(5, base, bodies(6, 2)), KEY.public_key())
    assert (up.base_seq, up.head_seq) == (5, 7)
    assert up.head_hash == anchoring.extend(anchoring.GENESIS, bodies(1, 7))


def test_an_anchor_verifies_with_the_firm_key_and_only_with_it():
    doc = anchoring.build_anchor(
        firm_key=FIRM, serial=SERIAL, firm_code=20001, seq=3, digest="ab" * 32, time=T, upload="cd" * 32
    )
    keys = {hazmat.key_id(hazmat.raw_public(FIRM.public_key())): FIRM.public_key()}
    anchor = anchoring.verify_anchor(canonical(doc), keys)
    assert anchor == anchoring.Anchor(SERIAL, 20001, 3, "ab" * 32, T, "cd" * 32)
    assert anchoring.anchor_firm(canonical(doc)) == 20001
    with pytest.raises(DocumentInvalid):
        anchoring.verify_anchor(doc, {hazmat.key_id(hazmat.raw_public(KEY.public_key())): KEY.public_key()})
    with pytest.raises(DocumentInvalid):  # an upload is no anchor, even under the same key
        anchoring.verify_anchor(upload(key=FIRM), keys)


@pytest.mark.parametrize(
    "changes",
    [
        {"seq": -1},
        {"hash": "AB" * 32},
        {"hash": "ab" * 31},
        {"upload": "zz" * 32},
        {"time": -5},
        {"serial": "not-a-serial"},
        {"firm_code": 0},
        {"seq": True},
        {"hash": None},
    ],
    ids=repr,
)
def test_an_anchor_with_a_bad_field_is_refused(changes):
    payload = anchoring.anchor_payload(
        serial=SERIAL, firm_code=20001, seq=3, digest="ab" * 32, time=T, upload="cd" * 32
    )
    for name, value in changes.items():
        if value is None:
            payload.pop(name)
        else:
            payload[name] = value
    doc = sign_document(anchoring.ANCHOR_TYPE, payload, FIRM)
    with pytest.raises(DocumentInvalid):
        anchoring.verify_anchor(doc, {hazmat.key_id(hazmat.raw_public(FIRM.public_key())): FIRM.public_key()})


# ---------------------------------------------------------------- refused uploads


def test_an_upload_signed_by_another_key_is_refused():
    with pytest.raises(DocumentInvalid):
        anchoring.verify_upload(upload(key=OTHER), KEY.public_key())


def test_another_document_type_is_refused():
    payload = {k: v for k, v in upload()["payload"].items() if k not in ("type", "v")}
    with pytest.raises(DocumentInvalid):
        anchoring.verify_upload(sign_document("usage-head", payload, KEY), KEY.public_key())


TOO_MANY_BYTES = [event(s, host="h" * 250, userIdentification="u" * 250, ip="i" * 250) for s in range(1, 400)]


@pytest.mark.parametrize(
    "changes",
    [
        {"serial": "130-XXXX"},
        {"serial": 5},
        {"serial": None},
        {"time": -1},
        {"time": "1"},
        {"time": None},
        {"base_seq": -1},
        {"base_seq": True},
        {"base_seq": None},
        {"base_hash": "AB" * 32},
        {"base_hash": "ab" * 33},
        {"base_hash": None},
        {"head_hash": "xy" * 32},
        {"head_hash": None},
        {"head_seq": 4},
        {"head_seq": 2},
        {"head_seq": None},
        {"events": []},
        {"events": "text"},
        {"events": None},
        {"events": [1, 2, 3]},
        {"pseudonymised": 0},
        {"pseudonymised": None},
    ],
    ids=repr,
)
def test_every_bad_field_of_an_upload_is_refused(changes):
    with pytest.raises(DocumentInvalid):
        anchoring.verify_upload(resigned(upload(), **changes), KEY.public_key())


def test_too_many_events_or_bytes_in_one_upload_are_refused():
    many = bodies(1, anchoring.MAX_EVENTS + 1)
    doc = resigned(
        upload(),
        events=many,
        head_seq=len(many),
        head_hash=anchoring.extend(anchoring.GENESIS, many),
    )
    with pytest.raises(DocumentInvalid, match="1 to 1000 events"):
        anchoring.verify_upload(doc, KEY.public_key())
    assert sum(len(b) for b in TOO_MANY_BYTES) > anchoring.MAX_EVENT_BYTES
    big = upload(events=TOO_MANY_BYTES)
    with pytest.raises(DocumentInvalid, match="too many bytes"):
        anchoring.verify_upload(big, KEY.public_key())
    # the limits themselves are allowed
    exact = bodies(1, anchoring.MAX_EVENTS)
    assert anchoring.verify_upload(upload(events=exact), KEY.public_key()).head_seq == anchoring.MAX_EVENTS


def test_events_that_do_not_hash_to_the_stated_head_are_refused():
    doc = upload()
    events = list(doc["payload"]["events"])
    events[1] = event(2, userIdentification="bob")  # a valid event, but not the one the head was made over
    with pytest.raises(DocumentInvalid, match="do not hash"):
        anchoring.verify_upload(resigned(doc, events=events), KEY.public_key())
    # another base under the same events: the head no longer follows
    with pytest.raises(DocumentInvalid, match="do not hash"):
        anchoring.verify_upload(resigned(doc, base_hash="11" * 32), KEY.public_key())
    # the events reordered
    with pytest.raises(DocumentInvalid):
        anchoring.verify_upload(resigned(doc, events=events[::-1]), KEY.public_key())


# ---------------------------------------------------------------- one event


def test_read_event_reads_every_field():
    e = anchoring.read_event(event(4, "release", ticket="ABCD"), 4)
    assert (e.seq, e.kind, e.time, e.lease_id, e.mode) == (4, "release", T + 4, "lease-4", "user")
    assert (e.access_time, e.release_time, e.seconds) == (T, T + 4, 4)
    assert (e.success, e.fail, e.invalid) == (1, 0, 0)
    assert (e.firm_code, e.product_code, e.feature_code, e.feature_map, e.license_id) == (20001, 7, 1, 3, 1)
    assert (e.user, e.host, e.ip, e.seat, e.ticket) == ("ann", "pc-1", "10.0.0.5", "seat-4", "ABCD")
    deny = anchoring.read_event(event(5, "deny"), 5)
    assert deny.lease_id is None and deny.fail == 1 and deny.seat is None
    older = json.loads(event(6))
    del older["seat"]
    assert anchoring.read_event(canonical(older).decode(), 6).seat is None


def _text(**changes: Any) -> str:
    body = json.loads(event(1))
    for name, value in changes.items():
        if value is ...:
            body.pop(name)
        else:
            body[name] = value
    return canonical(body).decode()


@pytest.mark.parametrize(
    "text",
    [
        pytest.param(event(1).replace(",", ", ", 1), id="not canonical: a space"),
        pytest.param(json.dumps(json.loads(event(1))), id="not canonical: key order and spaces"),
        pytest.param("[1, 2]", id="not an object"),
        pytest.param("{", id="not JSON"),
        pytest.param(_text(seq=2), id="another seq"),
        pytest.param(_text(seq=True), id="seq true"),
        pytest.param(_text(seq=...), id="no seq"),
        pytest.param(_text(event="steal"), id="unknown kind"),
        pytest.param(_text(event=...), id="no kind"),
        pytest.param(_text(success=1, fail=1), id="two flags"),
        pytest.param(_text(success=0), id="no flag"),
        pytest.param(_text(success=2, fail=0), id="flag 2"),
        pytest.param(_text(invalid=...), id="flag missing"),
        pytest.param(_text(leaseId=None), id="access without lease"),
        pytest.param(_text(leaseId="l" * 129), id="lease id too long"),
        pytest.param(_text(leaseId=5), id="lease id a number"),
        pytest.param(_text(host="h" * 257), id="host too long"),
        pytest.param(_text(userIdentification=None), id="user missing"),
        pytest.param(_text(mode=1), id="mode a number"),
        pytest.param(_text(ip=...), id="ip missing"),
        pytest.param(_text(seat="s" * 257), id="seat too long"),
        pytest.param(_text(seat=3), id="seat a number"),
        pytest.param(_text(releaseTime=T - 1), id="released before access"),
        pytest.param(_text(accessTime=-1), id="negative access"),
        pytest.param(_text(time=1.5), id="float time"),
        pytest.param(_text(seconds="1"), id="text seconds"),
        pytest.param(_text(productCode=2**53), id="number too large"),
        pytest.param(_text(featureMap=True), id="bool feature map"),
        pytest.param(_text(firmCode=0), id="bad firm code"),
        pytest.param(_text(ticketLicenseId=...), id="no license id"),
        pytest.param(_text(ticket="t" * 33), id="ticket too long"),
        pytest.param(_text(host="x" * 256, reason="r" * 4000), id="body too long"),
        pytest.param(_text(accessTime=300_000_000_000), id="access after the year 9999"),
        pytest.param(_text(time=253_402_300_800), id="time after the year 9999"),
        pytest.param(event(1, "release", releaseTime=300_000_000_000), id="release after the year 9999"),
        pytest.param(_text(seconds=2**53 - 1), id="seconds longer than the calendar"),
        pytest.param(event(1, "release", releaseTime=None, time=T - 1), id="final event before its access"),
    ],
)
def test_read_event_refuses(text):
    with pytest.raises(DocumentInvalid):
        anchoring.read_event(text, 1)


def test_the_last_second_of_the_year_9999_is_read():
    last = anchoring.MAX_TIME
    assert last == 253_402_300_799
    e = anchoring.read_event(event(2, "release", time=last, accessTime=last - 5, releaseTime=last, seconds=5), 2)
    assert (e.time, e.access_time, e.release_time) == (last, last - 5, last)


def test_an_upload_with_one_bad_event_is_refused_whole():
    events = [event(1), _text(seq=2, event="steal"), event(3)]
    with pytest.raises(DocumentInvalid, match="unknown kind"):
        anchoring.verify_upload(upload(events=events), KEY.public_key())


# ---------------------------------------------------------------- any byte changed


GENUINE = canonical(upload(events=[event(1), event(2, "release"), event(3, "deny")]))


def test_the_genuine_bytes_verify():
    assert anchoring.verify_upload(GENUINE, KEY.public_key()).head_seq == 3


@settings(deadline=None)
@given(st.data())
def test_any_byte_changed_in_an_upload_is_refused(data):
    at = data.draw(st.integers(0, len(GENUINE) - 1), label="at")
    byte = data.draw(st.integers(0, 255).filter(lambda b: b != GENUINE[at]), label="byte")
    changed = GENUINE[:at] + bytes([byte]) + GENUINE[at + 1 :]
    with pytest.raises(DocumentInvalid):
        anchoring.verify_upload(changed, KEY.public_key())


# ---------------------------------------------------------------- at the bounds (mutation testing's survivors)


def test_an_upload_and_an_anchor_at_time_zero_are_read():
    """Time 0 is a time (the refusals are of negative ones); an upload is not pseudonymised
    unless its builder says so."""
    up = anchoring.verify_upload(canonical(upload(time=0)), KEY.public_key())
    assert up.time == 0 and up.pseudonymised is False
    doc = anchoring.build_anchor(
        firm_key=FIRM, serial=SERIAL, firm_code=20001, seq=0, digest="ab" * 32, time=0, upload="cd" * 32
    )
    keys = {hazmat.key_id(hazmat.raw_public(FIRM.public_key())): FIRM.public_key()}
    assert anchoring.verify_anchor(doc, keys).time == 0
    with pytest.raises(DocumentInvalid):
        anchoring.verify_upload(resigned(upload(), time=-1), KEY.public_key())
