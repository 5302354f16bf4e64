"""Receipts and usage acknowledgements: what the verifiers read from a signed document,
field by field, and which signed contents they still refuse."""

import pytest

from licentia.core import exchange, hazmat
from licentia.core.documents import DocumentInvalid, document_digest, sign_document

FIRM = 10101
DIGEST_A, DIGEST_B = "a" * 64, "0123456789abcdef" * 4


@pytest.fixture(scope="module")
def firm_key():
    return hazmat.Ed25519PrivateKey.generate()


@pytest.fixture(scope="module")
def container_key():
    return hazmat.Ed25519PrivateKey.generate()


def _pins(key):
    return {hazmat.key_id(key.public_key()): key.public_key()}


def _ack_payload(**changes):
    payload = {"firm_code": FIRM, "serial": "130-1111-2222-3333", "time": 1_800_000_000, "request": "f" * 64}
    payload["recorded"] = {DIGEST_A: 0, DIGEST_B: 17}
    payload.update(changes)
    return payload


def test_an_acknowledgement_reads_back_every_field(firm_key):
    doc = exchange.build_ack(
        firm_code=FIRM,
        firm_key=firm_key,
        serial="130-1111-2222-3333",
        now=1_800_000_000,
        request_digest="f" * 64,
        recorded={DIGEST_A: 0, DIGEST_B: 17},
    )
    ack = exchange.verify_ack(doc, _pins(firm_key))
    assert ack == exchange.Ack(FIRM, "130-1111-2222-3333", 1_800_000_000, "f" * 64, {DIGEST_A: 0, DIGEST_B: 17})
    assert isinstance(ack.recorded, dict) and ack.recorded is not doc["payload"]["recorded"]


@pytest.mark.parametrize(
    "recorded",
    [
        {DIGEST_A: -1},  # a count below zero
        {DIGEST_A: True},  # a boolean is no count
        {DIGEST_A: "1"},
        {"A" * 64: 1},  # not a lower-case hex digest
        {"a" * 63: 1},
        {DIGEST_A: 1, "not a digest": 1},
    ],
    ids=["negative", "bool", "text", "upper-case", "short", "one-bad-key"],
)
def test_an_acknowledgement_with_bad_recorded_counts_is_refused(firm_key, recorded):
    doc = sign_document("report-ack", _ack_payload(recorded=recorded), firm_key)
    with pytest.raises(DocumentInvalid, match="bad recorded counters"):
        exchange.verify_ack(doc, _pins(firm_key))


@pytest.mark.parametrize("missing", ["firm_code", "serial", "time", "request", "recorded"])
def test_an_acknowledgement_without_a_field_is_refused(firm_key, missing):
    payload = _ack_payload()
    del payload[missing]
    with pytest.raises(DocumentInvalid, match=missing):
        exchange.verify_ack(sign_document("report-ack", payload, firm_key), _pins(firm_key))


def test_an_acknowledgement_signed_by_another_key_is_refused(firm_key):
    doc = sign_document("report-ack", _ack_payload(), hazmat.Ed25519PrivateKey.generate())
    with pytest.raises(DocumentInvalid):
        exchange.verify_ack(doc, _pins(firm_key))


def _receipt(container_key, **position):
    return exchange.build_receipt(
        serial="130-1111-2222-3333",
        sign_key=container_key,
        firm_code=FIRM,
        license_id=42,
        ticket="22222-22222-22222-22222-22222",
        seq=9,
        vtime=1_800_000_500,
        position=exchange.SlotPosition(9, 1_800_000_500, **position) if position else None,
    )


def test_a_receipt_reads_back_every_field(container_key):
    counters = exchange.SlotPosition.from_json(
        {"seq": 9, "vtime": 1, "gen": 4, "prev": [DIGEST_B], "counters": {DIGEST_A: {"units": 3}}}
    ).counters
    doc = _receipt(container_key, gen=4, prev=(DIGEST_B,), counters=counters)
    r = exchange.verify_receipt(doc, container_key.public_key())
    assert (r.serial, r.firm_code, r.license_id, r.ticket, r.seq, r.vtime) == (
        "130-1111-2222-3333",
        FIRM,
        42,
        "22222-22222-22222-22222-22222",
        9,
        1_800_000_500,
    )
    assert r.digest == document_digest(doc)
    assert r.document == doc
    assert (r.position.seq, r.position.vtime, r.position.gen, r.position.prev) == (9, 1_800_000_500, 4, (DIGEST_B,))
    assert r.position.counters[DIGEST_A].units == 3


def test_a_receipt_without_a_ticket_or_a_generation_reads_as_such(container_key):
    doc = exchange.build_receipt(
        serial="130-1111-2222-3333", sign_key=container_key, firm_code=FIRM, license_id=1, ticket=None, seq=2, vtime=5
    )
    r = exchange.verify_receipt(doc, container_key.public_key())
    assert r.ticket is None
    assert (r.position.seq, r.position.vtime, r.position.gen, r.position.prev) == (2, 5, None, ())


@pytest.mark.parametrize(
    "change",
    [{"ticket": 5}, {"seq": "9"}, {"license_id": True}, {"serial": None}, {"vtime": -1}, {"gen": -1}],
    ids=["ticket-not-text", "seq-text", "license-bool", "no-serial", "negative-time", "negative-gen"],
)
def test_a_receipt_with_a_bad_field_is_refused(container_key, change):
    payload = dict(_receipt(container_key, gen=1)["payload"])
    payload.update(change)
    payload.pop("type"), payload.pop("v")
    with pytest.raises(DocumentInvalid):
        exchange.verify_receipt(sign_document("receipt", payload, container_key), container_key.public_key())


def test_a_receipt_signed_by_another_container_is_refused(container_key):
    doc = _receipt(hazmat.Ed25519PrivateKey.generate())
    with pytest.raises(DocumentInvalid):
        exchange.verify_receipt(doc, container_key.public_key())


def _position(**changes):
    v = {"seq": 0, "vtime": 0, "gen": 0, "prev": [DIGEST_A] * exchange.CHAIN_DEPTH, "counters": {}}
    v["counters"] = {DIGEST_B: {"units": 0, "first_use": 0}}
    v.update(changes)
    return v


def test_a_slot_position_at_every_lower_bound_reads_back():
    p = exchange.SlotPosition.from_json(_position())
    assert (p.seq, p.vtime, p.gen, p.prev) == (0, 0, 0, (DIGEST_A,) * exchange.CHAIN_DEPTH)
    assert p.counters == {DIGEST_B: exchange.Counter(0, 0)}
    assert exchange.SlotPosition.from_json({"seq": 3, "vtime": 4}) == exchange.SlotPosition(3, 4)


@pytest.mark.parametrize(
    "changes,reason",
    [
        ({"seq": -1}, "bad slot"),
        ({"vtime": -1}, "bad slot"),
        ({"gen": -1}, "bad slot"),
        ({"prev": [DIGEST_A] * (exchange.CHAIN_DEPTH + 1)}, "bad chain"),
        ({"prev": ["A" * 64]}, "bad chain"),
        ({"counters": {"x": {"units": 1}}}, "bad counter"),
        ({"counters": {DIGEST_A: 1}}, "bad counter"),
        ({"counters": {DIGEST_A: {"units": -1}}}, "bad counter"),
        ({"counters": {DIGEST_A: {"units": 1, "first_use": -1}}}, "bad counter"),
        ({"counters": {DIGEST_A: {"first_use": 1}}}, "units"),
    ],
    ids=[
        "seq",
        "vtime",
        "gen",
        "chain-too-long",
        "chain-not-a-digest",
        "counter-key",
        "counter-not-object",
        "units",
        "first-use",
        "no-units",
    ],
)
def test_a_slot_position_out_of_bounds_is_refused(changes, reason):
    with pytest.raises(DocumentInvalid, match=reason):
        exchange.SlotPosition.from_json(_position(**changes))


def test_a_slot_position_that_is_no_object_is_refused():
    with pytest.raises(DocumentInvalid, match="bad slot"):
        exchange.SlotPosition.from_json([0, 0])


def test_an_acknowledgement_at_time_zero_is_read_and_before_it_refused(firm_key):
    assert exchange.verify_ack(sign_document("report-ack", _ack_payload(time=0), firm_key), _pins(firm_key)).time == 0
    with pytest.raises(DocumentInvalid, match="bad time"):
        exchange.verify_ack(sign_document("report-ack", _ack_payload(time=-1), firm_key), _pins(firm_key))


# ---------------------------------------------------------------- requests and updates at their bounds


def _request(sign_key, **changes):
    box = hazmat.X25519PrivateKey.generate()
    doc = exchange.build_request(
        serial="130-1111-2222-3333",
        level="medium",
        sign_key=sign_key,
        box_pub=hazmat.raw_public(box.public_key()),
        slots={},
        action="sync",
        now=1_800_000_000,
        firm_code=FIRM,
    )
    payload = {k: v for k, v in doc["payload"].items() if k not in ("type", "v")}
    payload.update(changes)
    return sign_document("request", payload, sign_key)


def test_a_request_reads_back_its_time_and_document(container_key):
    for created in (0, 1, 1_800_000_000):
        doc = _request(container_key, created=created)
        req = exchange.verify_request(doc)
        assert req.created == created
        assert req.document == doc and req.digest == document_digest(doc)


def test_a_request_created_before_time_zero_is_refused(container_key):
    with pytest.raises(DocumentInvalid, match="creation time"):
        exchange.verify_request(_request(container_key, created=-1))


@pytest.mark.parametrize("firm", ["1", "4294967295"])
def test_a_request_with_a_slot_of_the_first_or_the_last_firm_code_is_read(container_key, firm):
    slot = exchange.SlotPosition(3, 1_800_000_000).to_json()
    req = exchange.verify_request(_request(container_key, slots={firm: slot}))
    assert set(req.slots) == {int(firm)} and req.slots[int(firm)].seq == 3


@pytest.mark.parametrize("firm", ["0", "4294967296", "01", "+1", "1 ", "１"])
def test_a_request_with_a_slot_that_is_no_firm_code_is_refused(container_key, firm):
    slot = exchange.SlotPosition(3, 1_800_000_000).to_json()
    with pytest.raises(DocumentInvalid, match="bad slot"):
        exchange.verify_request(_request(container_key, slots={firm: slot}))


def _update(firm_key, request_digest=None, **changes):
    doc = exchange.build_update(
        firm_code=FIRM,
        firm_key=firm_key,
        serial="130-1111-2222-3333",
        seq=1,
        now=1_800_000_000,
        entries=[],
        sealed_keys=[],
        request_digest=request_digest,
    )
    if not changes:
        return doc
    payload = {k: v for k, v in doc["payload"].items() if k not in ("type", "v")}
    payload.update(changes)
    return sign_document("update", payload, firm_key)


def test_an_update_reads_back_its_time_notice_and_document(firm_key):
    for time in (0, 1):
        doc = _update(firm_key, time=time, manipulation={"rebased": [4], "withdrawn": [5, 6]})
        update = exchange.verify_update(doc)
        assert update.time == time
        assert update.manipulation == {"rebased": [4], "withdrawn": [5, 6]}
        assert update.document == doc and update.digest == document_digest(doc)
    only_rebased = exchange.verify_update(_update(firm_key, manipulation={"rebased": [4]}))
    assert only_rebased.manipulation == {"rebased": [4]}


def test_an_update_before_time_zero_or_with_an_unknown_notice_is_refused(firm_key):
    with pytest.raises(DocumentInvalid, match="bad time"):
        exchange.verify_update(_update(firm_key, time=-1))
    with pytest.raises(DocumentInvalid, match="manipulation"):
        exchange.verify_update(_update(firm_key, manipulation={"rebased": [4], "restored": [5]}))


def test_an_update_names_the_request_it_answers(firm_key):
    digest = "ab" * 32
    doc = _update(firm_key, request_digest=digest)
    assert doc["payload"]["request"] == digest
    assert exchange.verify_update(doc).request == digest
    assert exchange.verify_update(_update(firm_key)).request is None


@pytest.mark.parametrize("value", [0, -1, True, 1.0, "1", None])
def test_a_key_version_is_a_whole_number_from_one(value):
    with pytest.raises(ValueError, match="^a key version is a whole number from 1$"):
        exchange.key_version(value)


def test_key_versions_from_one_are_read():
    assert [exchange.key_version(v) for v in (1, 2, 2**31)] == [1, 2, 2**31]
