"""The signed envelope: what parse() takes, what verify_document() checks, and the reason
each refusal gives the log (the caller only sees the generic error)."""

from __future__ import annotations

import json

import pytest

from licentia.core import hazmat
from licentia.core.documents import (
    FORMAT_VERSION,
    MAX_DOCUMENT_BYTES,
    DocumentInvalid,
    DocumentMalformed,
    doc_type,
    parse,
    require,
    sign_document,
    signing_message,
    verify_document,
)

KEY = hazmat.Ed25519PrivateKey.generate()
PUB = KEY.public_key()
KID = hazmat.key_id(PUB)


def lease(**payload):
    return sign_document("lease", {"lease_id": "l1", **payload}, KEY)


def reason(call, *args):
    with pytest.raises(DocumentInvalid) as info:
        call(*args)
    return info.value.reason


def test_a_signed_document_is_an_envelope_of_payload_kid_and_sig():
    doc = lease(n=1)
    assert set(doc) == {"payload", "kid", "sig"} and doc["kid"] == KID
    assert doc["payload"] == {"lease_id": "l1", "n": 1, "type": "lease", "v": FORMAT_VERSION}
    assert doc_type(doc) == "lease"
    assert verify_document(doc, "lease", PUB) == doc["payload"]
    assert verify_document(json.dumps(doc), "lease", {KID: PUB}) == doc["payload"]
    assert parse(json.dumps(doc).encode()) == doc
    assert signing_message("lease", {"a": 1}) == b'licentia/lease\n{"a":1}'


@pytest.mark.parametrize(
    "envelope",
    [
        [1, 2, 3],
        "a JSON string",
        {"payload": {"v": 1}, "kid": "k"},
        {"payload": {"v": 1}, "kid": "k", "sig": "s", "extra": 1},
        {"payload": {"v": 1}, "key": "k", "sig": "s"},
    ],
    ids=["list", "string", "missing-sig", "extra-field", "renamed-field"],
)
def test_only_the_three_envelope_fields_are_an_envelope(envelope):
    if not isinstance(envelope, str):  # a str is read as JSON text
        assert reason(parse, envelope) == "not a signed envelope"
    assert reason(parse, json.dumps(envelope)) == "not a signed envelope"


@pytest.mark.parametrize(
    "fields",
    [
        {"payload": [1], "kid": "k", "sig": "s"},
        {"payload": {"v": 1}, "kid": 1, "sig": "s"},
        {"payload": {"v": 1}, "kid": "k", "sig": 1},
        {"payload": {"v": 1}, "kid": None, "sig": None},
    ],
    ids=["payload", "kid", "sig", "kid-and-sig"],
)
def test_each_envelope_field_has_its_type(fields):
    assert reason(parse, fields) == "envelope fields have wrong types"


@pytest.mark.parametrize("version", [None, 0, 2, "1", 1.5])
def test_only_the_known_format_version_is_read(version):
    payload = {"type": "lease"} if version is None else {"type": "lease", "v": version}
    assert reason(parse, {"payload": payload, "kid": "k", "sig": "s"}) == f"unsupported format version {version!r}"


def test_the_size_limit_is_checked_before_the_text_is_read():
    text = json.dumps(lease())
    at_limit = text + " " * (MAX_DOCUMENT_BYTES - len(text))
    assert len(at_limit) == MAX_DOCUMENT_BYTES
    assert parse(at_limit) == lease() | {"sig": json.loads(text)["sig"]}
    assert parse(at_limit.encode())["kid"] == KID
    assert reason(parse, at_limit + " ") == "document too large"
    assert reason(parse, (at_limit + " ").encode()) == "document too large"


def test_text_that_is_not_acceptable_json_is_malformed():
    with pytest.raises(DocumentMalformed) as info:
        parse('{"payload": {}, "payload": {}}')
    assert info.value.reason.startswith("not acceptable JSON: ")


def test_verify_names_why_a_document_is_refused():
    doc = lease()
    assert reason(verify_document, doc, "borrow", PUB) == "expected a borrow document, got 'lease'"
    other = hazmat.Ed25519PrivateKey.generate().public_key()
    assert reason(verify_document, doc, "lease", other) == f"signed by unknown key {KID!r}"
    assert reason(verify_document, doc, "lease", {}) == f"signed by unknown key {KID!r}"
    assert reason(verify_document, {**doc, "sig": "a"}, "lease", PUB) == "signature is not base64"
    flipped = {**doc, "payload": {**doc["payload"], "lease_id": "l2"}}
    assert reason(verify_document, flipped, "lease", PUB) == "bad signature"
    # a signature made for one type never verifies as another, even with the type field changed
    retyped = {**doc, "payload": {**doc["payload"], "type": "borrow"}}
    assert reason(verify_document, retyped, "borrow", PUB) == "bad signature"
    assert doc_type(retyped) == "borrow"


def test_require_reads_a_typed_field_and_bool_is_never_an_int():
    payload = {"n": 3, "s": "x", "b": True, "none": None, "f": 1.5}
    assert require(payload, "n", int) == 3
    assert require(payload, "s", (str, int)) == "x"
    assert require(payload, "b", bool) is True
    assert require(payload, "missing", int, optional=True) is None
    assert require(payload, "none", str, optional=True) is None
    assert reason(require, payload, "missing", int) == "field 'missing' missing"
    assert reason(require, payload, "none", int) == "field 'none' missing"
    assert reason(require, payload, "b", int) == "field 'b' has wrong type"
    with pytest.raises(DocumentInvalid, match="field 'b' has wrong type"):
        require(payload, "b", (int,))
    assert reason(require, payload, "f", int) == "field 'f' has wrong type"
    assert reason(require, payload, "s", (int, dict)) == "field 's' has wrong type"


def test_a_text_with_a_lone_surrogate_is_refused_as_a_document():
    """A document given as a Python text holding a lone surrogate (not UTF-8 at all) is a
    DocumentInvalid like any other refusal, never a UnicodeEncodeError (mutation testing:
    the text is encoded with ``surrogatepass`` so that the strict reader sees the bytes)."""
    for text in ('{"kid":"k","payload":{"v":1,"a":"\ud800"},"sig":"s"}', '"\udfff"'):
        with pytest.raises(DocumentInvalid):
            parse(text)
