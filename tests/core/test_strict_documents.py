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


def test_a_receipt_ticket_is_text_or_null(key):
    doc = exchange.build_receipt(
        serial="130-1111-2222-3333", sign_key=key, firm_code=FIRM, license_id=1, ticket=None, seq=1, vtime=T0
    )
    payload = {k: v for k, v in doc["payload"].items() if k not in ("type", "v")}
    assert exchange.verify_receipt(sign_document("receipt", {**payload, "ticket": "any text"}, key), key.public_key())
    with pytest.raises(DocumentInvalid):
        exchange.verify_receipt(sign_document("receipt", {**payload, "ticket": 7}, key), key.public_key())


# ---------------------------------------------------------------- each license, key version and sealed key once


def test_an_entry_lists_each_key_version_once(key):
    pins = {hazmat.key_id(key.public_key()): key.public_key()}
    assert LicenseEntry.verify(sign_document("license", _entry_payload(key_versions=[2, 1]), key), pins)
    with pytest.raises(DocumentInvalid, match="twice"):
        LicenseEntry.verify(sign_document("license", _entry_payload(key_versions=[1, 2, 1]), key), pins)


def test_an_update_holds_each_license_once(key):
    from licentia.core.documents import document_digest

    _, entry = _update(key)
    other = sign_document("license", _entry_payload(issued=T0 - 1), key)  # license 1 again, another digest
    for entries in ([entry, entry], [entry, other]):
        doc, _ = _update(key, entries=entries)
        with pytest.raises(DocumentInvalid, match="same license id"):
            exchange.verify_update(doc)
    sealed = {"license": document_digest(entry), "version": 1, "sealed": b64e(b"x" * 60)}
    exchange.verify_update(_update(key, entries=[entry], keys=[sealed])[0])
    doc, _ = _update(key, entries=[entry], keys=[sealed, dict(sealed, sealed=b64e(b"y" * 60))])
    with pytest.raises(DocumentInvalid, match="same entry and key version"):
        exchange.verify_update(doc)


# ---------------------------------------------------------------- firm-key endorsements


def test_an_endorsement_names_its_firm_code_as_a_whole_number():
    firm_one = hazmat.Ed25519PrivateKey.generate()
    rotated = hazmat.Ed25519PrivateKey.generate()
    pins = {hazmat.key_id(firm_one.public_key()): firm_one.public_key()}
    pub = b64e(hazmat.raw_public(rotated.public_key()))
    endorsed = hazmat.key_id(rotated.public_key())
    assert endorsed in exchange.accept_keys(
        1, pins, [sign_document("firm-key", {"firm_code": 1, "pub": pub}, firm_one)]
    )
    for named in (True, "1", None):  # True == 1 in Python: still no firm code
        doc = sign_document("firm-key", {"firm_code": named, "pub": pub}, firm_one)
        assert endorsed not in exchange.accept_keys(1, pins, [doc])


@pytest.mark.parametrize("pub", [None, 7, "AQ", "not base64!"], ids=["missing", "number", "short", "not-base64"])
def test_an_endorsement_that_verifies_without_a_key_refuses_the_list(key, pub):
    pins = {hazmat.key_id(key.public_key()): key.public_key()}
    payload = {"firm_code": FIRM} if pub is None else {"firm_code": FIRM, "pub": pub}
    with pytest.raises(DocumentInvalid):
        exchange.accept_keys(FIRM, pins, [sign_document("firm-key", payload, key)])
    unpinned = hazmat.Ed25519PrivateKey.generate()  # one that does not verify is skipped first
    assert exchange.accept_keys(FIRM, pins, [sign_document("firm-key", payload, unpinned)]) == pins


# ---------------------------------------------------------------- item ids given to License Central


@pytest.mark.parametrize(
    "text,expect",
    [
        ("  f-00002-145\t", "F-00002-145"),
        ("\n\r\x0b\x0cF-00002-145\x0c\x0b\r\n", "F-00002-145"),
        ("F-00002-145\x1f", None),
        ("\x1cF-00002-145", None),
        ("\x1dF-00002-145\x1e", None),
        ("\u00a0F-00002-145", None),
        ("\u2003F-00002-145", None),
        ("F-00002 -145", None),
    ],
    ids=["spaces-tab", "ascii-white-space", "us", "fs", "gs-rs", "no-break-space", "em-space", "inner-space"],
)
def test_an_item_id_loses_only_ascii_white_space_at_its_ends(text, expect):
    from licentia.central.services.catalog import BadInput, check_item_codes

    if expect is None:
        with pytest.raises(codes.InvalidCode):
            codes.normalize_item_id(text)
        with pytest.raises(BadInput):
            check_item_codes(text, 0, 1)
    else:
        assert codes.normalize_item_id(text) == expect
        assert check_item_codes(text, 0, 1) == expect


# ---------------------------------------------------------------- leases and borrow grants


@pytest.fixture(scope="module")
def served(key):
    """A license served by a license server whose container key is ``key``."""
    firm = hazmat.Ed25519PrivateKey.generate()
    payload = _entry_payload(
        container={"serial": "130-5RVR-7K2M-0001", "sign_pub": b64e(hazmat.raw_public(key.public_key()))}
    )
    pins = {hazmat.key_id(firm.public_key()): firm.public_key()}
    return LicenseEntry.verify(sign_document("license", payload, firm), pins)


def _signer(key):
    return lambda t, p: sign_document(t, p, key)


def _lease(key, entry, **changes):
    from licentia.core import grants

    doc = grants.build_lease(
        _signer(key),
        lease_id="l-1",
        client_lease_id="c-1",
        entry=entry,
        feature_code=0,
        mode="user",
        session=b64e(b"s" * 32),
        nonce="n",
        issued=T0,
        expires=T0 + 120,
        holder=b64e(b"h" * 32),
    )
    payload = {k: v for k, v in doc["payload"].items() if k not in ("type", "v")}
    payload.update(changes)
    return sign_document("lease", payload, key)


@pytest.mark.parametrize(
    "changes",
    [
        {"mode": "shared"},
        {"serial": "130-5rvr-7k2m-0001"},
        {"license": "A" * 64},
        {"firm_code": 0},
        {"product_code": -1},
        {"feature_code": 2**32},
        {"issued": -1},
        {"expires": -1},
        {"first_use": -1},
        {"grace_until": -1},
    ],
    ids=lambda c: next(iter(c)),
)
def test_a_lease_out_of_its_rules_is_refused(key, served, changes):
    from licentia.core import grants

    assert grants.verify_lease(_lease(key, served), served).mode == "user"
    assert grants.verify_lease(_lease(key, served, holder=None), served).holder is None  # an older lease
    with pytest.raises(DocumentInvalid):
        grants.verify_lease(_lease(key, served, **changes), served)


def _borrow(key, entry, change=None):
    from licentia.core import grants

    doc = grants.build_borrow(
        _signer(key),
        borrow_id="b-1",
        entry=entry,
        client_serial="130-C1NT-QX4V-0002",
        client_key="k",
        issued=T0,
        expires=T0 + 86400,
    )
    payload = {k: v for k, v in doc["payload"].items() if k not in ("type", "v")}
    if change:
        change(payload)
    return sign_document("borrow", payload, key)


@pytest.mark.parametrize(
    "change",
    [
        lambda p: p.update(serial="server"),
        lambda p: p.update(license="abc"),
        lambda p: p.update(firm_code=0),
        lambda p: p.update(product_code=2**32),
        lambda p: p["client"].update(serial="130-abc"),
        lambda p: p.update(issued=-1),
        lambda p: p.update(expires=-1),
    ],
    ids=["serial", "license", "firm-code", "product-code", "client-serial", "issued", "expires"],
)
def test_a_borrow_grant_out_of_its_rules_is_refused(key, served, change):
    from licentia.core import grants

    assert grants.verify_borrow(_borrow(key, served), served).client_serial == "130-C1NT-QX4V-0002"
    with pytest.raises(DocumentInvalid):
        grants.verify_borrow(_borrow(key, served, change), served)


@pytest.mark.parametrize("kind", ["borrow-return", "grace-return"])
@pytest.mark.parametrize(
    "changes", [{"serial": "client"}, {"firm_code": 0}, {"vtime": -1}], ids=["serial", "firm-code", "vtime"]
)
def test_a_return_receipt_out_of_its_rules_is_refused(key, kind, changes):
    from licentia.core import grants

    verify = grants.verify_return if kind == "borrow-return" else grants.verify_grace_return
    payload = {"serial": "130-C1NT-QX4V-0002", "firm_code": FIRM, "vtime": T0}
    payload["borrow_id" if kind == "borrow-return" else "lease_id"] = "x-1"
    client = b64e(hazmat.raw_public(key.public_key()))
    assert verify(sign_document(kind, payload, key), client).vtime == T0
    with pytest.raises(DocumentInvalid):
        verify(sign_document(kind, {**payload, **changes}, key), client)


def test_a_borrowed_license_is_checked_for_its_container_then_evaluated(key, served):
    from licentia.core import errors as E
    from licentia.core import grants
    from licentia.core.license import AccessRequest

    grant = grants.verify_borrow(_borrow(key, served), served)
    ask = AccessRequest(FIRM, 1)
    mine = {"serial": "130-C1NT-QX4V-0002", "sign_pub": "k"}
    assert grants.evaluate_borrowed(served, grant, ask, T0, 0, **mine).expires == T0 + 86400
    assert grants.evaluate_borrowed(served, grant, ask, T0 + 86400, 0, **mine).error is E.LicenseExpired
    assert grants.evaluate_borrowed(served, grant, ask, T0, T0 + 7201, **mine).error is E.ClockTampered
    assert grants.evaluate_borrowed(served, grant, AccessRequest(FIRM, 1, units=1), T0, 0, **mine).error is (
        E.UnitsExhausted
    )
    other = {"serial": "130-C1NT-QX4V-0003", "sign_pub": "k"}
    assert grants.evaluate_borrowed(served, grant, ask, T0, 0, **other).error is E.LicenseInvalid
