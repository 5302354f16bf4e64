"""Requests, updates, receipts and usage-report acknowledgements under any input: the
verified document or ``DocumentInvalid``, never another exception.

Each reader gets its genuine document with one change anywhere inside (a field, a slot, a
counter, a license entry, an endorsement), signed again by the key it trusts (the
container's own key for requests and receipts, the firm key for updates, entries,
endorsements and acknowledgements), so the checks behind the signature are reached; texts
a strict reader refuses must be refused unread (``DocumentMalformed``). tests/core/
test_document_properties.py covers a request's top-level fields. ``make fuzz`` runs them
with many more examples."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import Phase, example, given, settings
from hypothesis import strategies as st

from licentia.core import codes, exchange, hazmat
from licentia.core.documents import DocumentInvalid, DocumentMalformed, document_digest
from licentia.core.encoding import JsonRejected, b64e, strict_loads
from licentia.core.license import LicenseEntry, Options
from tests.factory import T0
from tests.strategies import (
    as_text,
    envelope,
    genuine_payload,
    hostile_documents,
    odd_digits,
    one_change,
    pin,
    pinned_texts,
    render,
)

FIRM_CODE = 10101
FIRM = hazmat.Ed25519PrivateKey.generate()
NEXT = hazmat.Ed25519PrivateKey.generate()  # the firm's rotated key, endorsed by FIRM
OTHER = hazmat.Ed25519PrivateKey.generate()  # nobody's
CONTAINER = hazmat.Ed25519PrivateKey.generate()
BOX = hazmat.X25519PrivateKey.generate()
SERIAL = codes.new_serial()
SIGN_PUB = b64e(hazmat.raw_public(CONTAINER.public_key()))
DIGEST = "ab" * 32


def refused_unread(data: Any) -> bool:
    """Whether a strict reader refuses ``data`` before anything is read from it."""
    if isinstance(data, dict):
        return False
    try:
        strict_loads(data)
    except JsonRejected:
        return True
    return False


def texts(docs: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[Any]:
    """Documents as text, as bytes, or as a parsed envelope; and any text or bytes at all."""
    return st.one_of(
        docs.map(as_text),
        docs.map(lambda d: as_text(d).encode()),
        docs,
        st.one_of(st.text(max_size=100), st.binary(max_size=100)),
    )


# ---------------------------------------------------------------- requests: slots and counters

POSITION = exchange.SlotPosition(3, T0, 4, (DIGEST, "cd" * 32), {DIGEST: exchange.Counter(5, T0)})
REQUEST = exchange.build_request(
    serial=SERIAL,
    level="medium",
    sign_key=CONTAINER,
    box_pub=hazmat.raw_public(BOX.public_key()),
    slots={FIRM_CODE: POSITION},
    action="report",
    now=T0,
    firm_code=FIRM_CODE,
)
REQUEST_PAYLOAD = genuine_payload(REQUEST)
#: slot keys: firm codes, and what str.isdigit() takes that int() does not read as one
slot_keys = st.one_of(st.integers(0, 2**70).map(str), st.text(odd_digits, min_size=1, max_size=3), st.text(max_size=5))
requests = st.one_of(
    hostile_documents(REQUEST_PAYLOAD, CONTAINER, "request"),
    st.tuples(slot_keys, one_change(REQUEST_PAYLOAD["slots"][str(FIRM_CODE)])).map(
        lambda kv: envelope({**REQUEST_PAYLOAD, "slots": {kv[0]: kv[1]}}, CONTAINER, "request")
    ),
)


def _slot_key_int_refuses(data: Any) -> bool:
    """A slot key str.isdigit() takes and int() refuses (the known failure below)."""
    try:
        doc = data if isinstance(data, dict) else json.loads(data)
        keys = list(doc["payload"]["slots"])
    except (ValueError, KeyError, TypeError, RecursionError):
        return False
    for key in keys:
        if isinstance(key, str) and key.isdigit():
            try:
                int(key)
            except ValueError:
                return True
    return False


def verified_request(data: Any) -> None:
    try:
        request = exchange.verify_request(data)
    except DocumentInvalid as exc:
        assert isinstance(exc, DocumentMalformed) or not refused_unread(data)
        return
    assert not refused_unread(data)
    assert codes.check_serial(request.serial) == request.serial and request.level in exchange.LEVELS
    for firm, position in request.slots.items():
        assert type(firm) is int and firm >= 0 and position.seq >= 0 and position.vtime >= 0
        assert all(c.units >= 0 for c in position.counters.values())
    assert request.digest == document_digest(request.document)


@settings(deadline=None)
@given(texts(requests))
@pin(pinned_texts(REQUEST_PAYLOAD, CONTAINER, "request", "slots").values())
def test_a_request_with_any_slot_gives_the_request_or_the_typed_error(data):
    verified_request(data)


SUPERSCRIPT_SLOT = render(envelope({**REQUEST_PAYLOAD, "slots": {"²": {"seq": 1, "vtime": 1}}}, CONTAINER, "request"))


@settings(deadline=None, phases=[Phase.explicit])
@given(texts(requests))
@example(SUPERSCRIPT_SLOT)
def test_a_request_with_a_superscript_slot_key_is_a_typed_error(data):
    verified_request(data)


# ---------------------------------------------------------------- updates

ENTRY = LicenseEntry(
    firm_code=FIRM_CODE,
    product_code=1,
    feature_map=0xFF,
    text="Product",
    license_id=7,
    serial=SERIAL,
    container_key=SIGN_PUB,
    options=Options(expires=T0 + 86400, units=10, data=b"x"),
    issued=T0,
    ticket=codes.new_ticket_id(),
    key_versions=(1, 2),
).sign(FIRM)
ENTRY_PAYLOAD = genuine_payload(ENTRY)
ENDORSEMENT = exchange.endorse_key(FIRM, FIRM_CODE, NEXT.public_key())
ENDORSEMENT_PAYLOAD = genuine_payload(ENDORSEMENT)


def _update_payload(entries: list[dict[str, Any]], endorsements: list[dict[str, Any]]) -> dict[str, Any]:
    sealed = exchange.seal_product_key(
        hazmat.raw_public(BOX.public_key()), SERIAL, document_digest(ENTRY), 1, bytes(32)
    )
    doc = exchange.build_update(
        firm_code=FIRM_CODE,
        firm_key=FIRM,
        serial=SERIAL,
        seq=2,
        now=T0,
        entries=entries,
        sealed_keys=[sealed],
        request_digest=DIGEST,
        endorsements=endorsements,
        message="m",
        manipulation={"rebased": [7], "withdrawn": []},
    )
    return genuine_payload(doc)


UPDATE_PAYLOAD = _update_payload([ENTRY], [ENDORSEMENT])


def hostile_updates(
    update_payload: dict[str, Any],
    entry: dict[str, Any],
    endorsement: dict[str, Any],
    signer: hazmat.Ed25519PrivateKey = FIRM,
) -> st.SearchStrategy[dict[str, Any]]:
    """Updates with one change in the update, or in its entry or its endorsement (signed
    again by the firm key, or by a key nobody trusts), the update signed again by the firm."""
    nested_signers = st.sampled_from([FIRM, OTHER, NEXT])

    def with_entry(payload_key: tuple[dict[str, Any], hazmat.Ed25519PrivateKey]) -> dict[str, Any]:
        return envelope(
            {**update_payload, "entries": [envelope(payload_key[0], payload_key[1], "license")]}, signer, "update"
        )

    def with_endorsement(payload_key: tuple[dict[str, Any], hazmat.Ed25519PrivateKey]) -> dict[str, Any]:
        doc = envelope(payload_key[0], payload_key[1], "firm-key")
        return envelope({**update_payload, "endorsements": [doc]}, signer, "update")

    return st.one_of(
        hostile_documents(update_payload, signer, "update", keys=[OTHER, NEXT], skip=("entries", "endorsements")),
        st.tuples(one_change(genuine_payload(entry)), nested_signers).map(with_entry),
        st.tuples(one_change(genuine_payload(endorsement)), nested_signers).map(with_endorsement),
    )


UPDATE_PINS = {
    f"{field}-{name}": text
    for field in ("seq", "entries", "keys")
    for name, text in pinned_texts(UPDATE_PAYLOAD, FIRM, "update", field).items()
}


@pytest.mark.parametrize("pinned", ["first-use", "pinned"])
@settings(deadline=None)
@given(texts(hostile_updates(UPDATE_PAYLOAD, ENTRY, ENDORSEMENT)))
@pin(UPDATE_PINS.values())
def test_an_update_gives_the_update_or_the_typed_error(pinned, data):
    keys = {hazmat.key_id(FIRM.public_key()): FIRM.public_key()} if pinned == "pinned" else None
    try:
        update = exchange.verify_update(data, keys)
    except DocumentInvalid as exc:
        assert isinstance(exc, DocumentMalformed) or not refused_unread(data)
        return
    assert not refused_unread(data)
    assert update.seq >= 1 and all(isinstance(s, dict) for s in update.sealed_keys)
    assert all(e.firm_code == update.firm_code and e.serial == update.serial for e in update.entries)
    assert update.digest == document_digest(update.document)
    if keys:  # signed by a pinned key, or one a pinned key endorsed
        assert update.document["kid"] in {hazmat.key_id(FIRM.public_key()), hazmat.key_id(NEXT.public_key())}


@settings(deadline=None)
@given(texts(hostile_updates(UPDATE_PAYLOAD, ENTRY, ENDORSEMENT)))
@pin(pinned_texts(UPDATE_PAYLOAD, FIRM, "update", "firm_code").values())
def test_the_firm_an_update_names_is_a_whole_number_or_the_typed_error(data):
    try:
        firm = exchange.parse_update_firm(data)
    except DocumentInvalid:
        return
    assert type(firm) is int


# ---------------------------------------------------------------- receipts

RECEIPT = exchange.build_receipt(
    serial=SERIAL,
    sign_key=CONTAINER,
    firm_code=FIRM_CODE,
    license_id=7,
    ticket=None,
    seq=4,
    vtime=T0,
    position=POSITION,
)
RECEIPT_PAYLOAD = genuine_payload(RECEIPT)


@settings(deadline=None)
@given(texts(hostile_documents(RECEIPT_PAYLOAD, CONTAINER, "receipt", keys=[OTHER])))
@pin(pinned_texts(RECEIPT_PAYLOAD, CONTAINER, "receipt", "counters").values())
def test_a_receipt_gives_the_receipt_or_the_typed_error(data):
    try:
        receipt = exchange.verify_receipt(data, CONTAINER.public_key())
    except DocumentInvalid as exc:
        assert isinstance(exc, DocumentMalformed) or not refused_unread(data)
        return
    assert not refused_unread(data)
    assert receipt.seq >= 0 and receipt.vtime >= 0 and receipt.position.seq == receipt.seq
    assert receipt.document["kid"] == hazmat.key_id(CONTAINER.public_key())


# ---------------------------------------------------------------- usage-report acknowledgements

ACK = exchange.build_ack(
    firm_code=FIRM_CODE, firm_key=FIRM, serial=SERIAL, now=T0, request_digest=DIGEST, recorded={DIGEST: 3}
)
ACK_PAYLOAD = genuine_payload(ACK)
ACK_KEYS = {hazmat.key_id(k.public_key()): k.public_key() for k in (FIRM, NEXT)}


@settings(deadline=None)
@given(texts(hostile_documents(ACK_PAYLOAD, FIRM, "report-ack", keys=[OTHER, NEXT])))
@pin(pinned_texts(ACK_PAYLOAD, FIRM, "report-ack", "recorded").values())
def test_an_acknowledgement_gives_the_ack_or_the_typed_error(data):
    try:
        ack = exchange.verify_ack(data, ACK_KEYS)
    except DocumentInvalid as exc:
        assert isinstance(exc, DocumentMalformed) or not refused_unread(data)
        return
    assert not refused_unread(data)
    assert all(type(u) is int and u >= 0 and len(d) == 64 for d, u in ack.recorded.items())


def test_the_genuine_documents_verify():
    """The bases the properties change: each verifies untouched (so a change is what a refusal is about)."""
    assert exchange.verify_request(REQUEST).slots[FIRM_CODE] == POSITION
    update = exchange.verify_update(
        envelope(UPDATE_PAYLOAD, FIRM, "update"), {hazmat.key_id(FIRM.public_key()): FIRM.public_key()}
    )
    assert [e.license_id for e in update.entries] == [7]
    assert exchange.verify_receipt(RECEIPT, CONTAINER.public_key()).license_id == 7
    assert exchange.verify_ack(ACK, ACK_KEYS).recorded == {DIGEST: 3}
