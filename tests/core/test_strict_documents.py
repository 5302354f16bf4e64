"""The rules docs/formats.md states for every reader, held by licentia's own: a document
holds whole numbers within +-(2^53 - 1) and no fractions, its size counts UTF-8 bytes,
nested documents are JSON objects, codes are ASCII and in their one canonical spelling,
and every field of requests, updates, entries and receipts is in range."""

from __future__ import annotations

import os
from typing import Any

import pytest

from licentia.core import codes, exchange, hazmat
from licentia.core.documents import (
    MAX_DOCUMENT_BYTES,
    MAX_SAFE_INT,
    DocumentInvalid,
    parse,
    sign_document,
    signing_message,
    verify_document,
)
from licentia.core.encoding import b64e
from licentia.core.license import LicenseEntry, Options

FIRM = 10101
T0 = 1_800_000_000


def _forged(doc_type: str, payload: dict[str, Any], key: hazmat.Ed25519PrivateKey) -> dict[str, Any]:
    """A validly signed envelope over a payload sign_document would refuse to sign."""
    payload = {**payload, "type": doc_type, "v": 1}
    sig = hazmat.sign(key, signing_message(doc_type, payload))
    return {"payload": payload, "kid": hazmat.key_id(key.public_key()), "sig": b64e(sig)}


@pytest.fixture(scope="module")
def key():
    return hazmat.Ed25519PrivateKey.generate()


@pytest.mark.parametrize("value", [1.5, 1.0, 1e16, MAX_SAFE_INT + 1, -MAX_SAFE_INT - 1, 2**63 - 1], ids=str)
def test_a_fraction_or_a_number_beyond_2_to_53_is_neither_signed_nor_read(key, value):
    with pytest.raises(DocumentInvalid):
        sign_document("note", {"n": [{"deep": value}]}, key)
    with pytest.raises(DocumentInvalid):
        verify_document(_forged("note", {"n": [{"deep": value}]}, key), "note", key.public_key())


@pytest.mark.parametrize("value", [MAX_SAFE_INT, -MAX_SAFE_INT, 0], ids=str)
def test_whole_numbers_up_to_2_to_53_minus_1_are_read(key, value):
    doc = sign_document("note", {"n": value}, key)
    assert verify_document(doc, "note", key.public_key())["n"] == value


def test_the_size_limit_counts_utf8_bytes_not_characters():
    text = '{"payload": "' + "é" * (MAX_DOCUMENT_BYTES // 2 + 8) + '", "kid": "", "sig": ""}'
    assert len(text) < MAX_DOCUMENT_BYTES < len(text.encode())
    with pytest.raises(DocumentInvalid, match="too large"):
        parse(text)


@pytest.mark.parametrize("value", [["payload"], 5, None, b"[]"], ids=["list", "int", "none", "bytes-list"])
def test_only_an_object_is_an_envelope(value):
    with pytest.raises(DocumentInvalid, match="not a signed envelope"):
        parse(value)


@pytest.mark.parametrize("text", ["ı", "ſ", "Ⅰ", "０"], ids=["dotless-i", "long-s", "roman-one", "fullwidth-zero"])
def test_a_code_with_a_non_ascii_character_is_refused(text):
    ticket = codes.new_ticket_id()
    with pytest.raises(codes.InvalidCode, match="ASCII"):
        codes.normalize_ticket(text + ticket[1:])


# ---------------------------------------------------------------- requests


@pytest.fixture(scope="module")
def request_payload(key):
    doc = exchange.build_request(
        serial=codes.new_serial(),
        level="medium",
        sign_key=key,
        box_pub=hazmat.raw_public(hazmat.X25519PrivateKey.generate().public_key()),
        slots={FIRM: exchange.SlotPosition(3, T0, 2, (), {})},
        action="activate",
        now=T0,
        ticket=codes.new_ticket_id().lower(),  # built in its canonical form whatever the spelling given
    )
    assert exchange.verify_request(doc).ticket == doc["payload"]["ticket"]
    assert doc["payload"]["ticket"] == doc["payload"]["ticket"].upper()
    return {k: v for k, v in doc["payload"].items() if k not in ("type", "v")}


@pytest.mark.parametrize(
    "change",
    [
        lambda p: p.update(ticket=p["ticket"].lower()),
        lambda p: p.update(ticket=p["ticket"].replace("-", "")),
        lambda p: p.update(slots={"010101": p["slots"][str(FIRM)]}),
        lambda p: p.update(slots={"0": p["slots"][str(FIRM)]}),
        lambda p: p.update(slots={"4294967296": p["slots"][str(FIRM)]}),
        lambda p: p.pop("nonce"),
        lambda p: p.update(nonce=b64e(os.urandom(8))),
        lambda p: p.update(nonce="not base64!"),
        lambda p: p.update(created=-1),
    ],
    ids=[
        "ticket-lower-case",
        "ticket-without-dashes",
        "slot-leading-zero",
        "slot-zero",
        "slot-beyond-32-bits",
        "no-nonce",
        "short-nonce",
        "nonce-not-base64",
        "created-negative",
    ],
)
def test_a_request_out_of_its_rules_is_refused(key, request_payload, change):
    payload = {**request_payload, "slots": dict(request_payload["slots"])}
    change(payload)
    with pytest.raises(DocumentInvalid):
        exchange.verify_request(sign_document("request", payload, key))


# ---------------------------------------------------------------- entries and updates


def _entry_payload(**changes):
    entry = LicenseEntry(
        firm_code=FIRM,
        product_code=1,
        feature_map=1,
        text="Grüße",
        license_id=1,
        serial="130-1111-2222-3333",
        container_key=b64e(b"k" * 32),
        options=Options(),
        issued=T0,
        ticket=codes.new_ticket_id(),
        key_versions=(1,),
    )
    payload = entry.payload()
    payload.update(changes)
    return payload


@pytest.mark.parametrize(
    "changes",
    [
        {"license_id": 0},
        {"issued": -1},
        {"ticket": "00000-00000-00000-00000-0000O"},  # the letter O for zero: read, but not canonical
        {"ticket": "not a ticket"},
        {"options": {**Options().to_json(), "seats_per_user": 1}},
    ],
    ids=["license-id-zero", "issued-negative", "ticket-not-canonical", "ticket-not-a-ticket", "unknown-option"],
)
def test_an_entry_out_of_its_rules_is_refused(key, changes):
    pins = {hazmat.key_id(key.public_key()): key.public_key()}
    assert LicenseEntry.verify(sign_document("license", _entry_payload(), key), pins).text == "Grüße"
    with pytest.raises(DocumentInvalid):
        LicenseEntry.verify(sign_document("license", _entry_payload(**changes), key), pins)


def _update(key, *, entries=None, keys=None, **changes):
    entry = sign_document("license", _entry_payload(), key)
    payload = {
        "firm_code": FIRM,
        "firm_pub": b64e(hazmat.raw_public(key.public_key())),
        "serial": "130-1111-2222-3333",
        "seq": 1,
        "time": T0,
        "entries": [entry] if entries is None else entries,
        "keys": [] if keys is None else keys,
        "endorsements": [],
        "request": None,
        "message": None,
        "manipulation": None,
    }
    payload.update(changes)
    return sign_document("update", payload, key), entry


def test_an_update_within_its_rules_is_read(key):
    from licentia.core.documents import document_digest

    _, entry = _update(key)
    sealed = {"license": document_digest(entry), "version": 1, "sealed": b64e(b"x" * 60)}
    doc, _ = _update(key, entries=[entry], keys=[sealed], request="e" * 64)
    update = exchange.verify_update(doc)
    assert (update.firm_code, update.time, update.request, len(update.sealed_keys)) == (FIRM, T0, "e" * 64, 1)


@pytest.mark.parametrize(
    "changes",
    [
        {"firm_code": 0, "entries": []},
        {"serial": "130-1111-2222-333"},
        {"time": -1},
        {"request": "E" * 64},
        {"request": "e" * 63},
        {"entries": ["{}"]},
        {"endorsements": ["{}"]},
        {"keys": [{"license": "a" * 64, "version": 1, "sealed": "AA"}]},
        {"keys": ["AA"]},
    ],
    ids=[
        "firm-code-zero",
        "serial",
        "time-negative",
        "request-upper-case",
        "request-short",
        "entry-as-text",
        "endorsement-as-text",
        "key-for-no-entry",
        "key-as-text",
    ],
)
def test_an_update_out_of_its_rules_is_refused(key, changes):
    doc, _ = _update(key, **changes)
    with pytest.raises(DocumentInvalid):
        exchange.verify_update(doc)


@pytest.mark.parametrize("version", [2, "1", True, 1.0, None], ids=["not-listed", "text", "bool", "float", "none"])
def test_a_sealed_key_names_one_of_its_entrys_key_versions(key, version):
    from licentia.core.documents import document_digest

    _, entry = _update(key)
    sealed = {"license": document_digest(entry), "version": version, "sealed": b64e(b"x" * 60)}
    payload = _update(key)[0]["payload"]
    payload = {k: v for k, v in payload.items() if k not in ("type", "v")}
    payload["entries"], payload["keys"] = [entry], [sealed]
    doc = _forged("update", payload, key)  # a float is refused before any field is read
    with pytest.raises(DocumentInvalid):
        exchange.verify_update(doc)


# ---------------------------------------------------------------- receipts


@pytest.mark.parametrize(
    "serial,firm", [("not-a-serial", FIRM), ("130-1111-2222-3333", 0)], ids=["serial", "firm-code"]
)
def test_a_receipt_names_a_serial_and_a_firm_code(key, serial, firm):
    doc = exchange.build_receipt(
        serial=serial, sign_key=key, firm_code=firm, license_id=1, ticket=None, seq=1, vtime=T0
    )
    with pytest.raises(DocumentInvalid):
        exchange.verify_receipt(doc, key.public_key())
