"""The document parser under any input: only its typed error ever comes out.

Properties over arbitrary JSON values (tests/strategies.py) placed in otherwise genuine,
correctly self-signed requests, and over arbitrary text; the cases found by hand are
pinned as explicit examples. ``make fuzz`` runs them with the ``fuzz`` profile."""

from __future__ import annotations

import contextlib
import json

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from licentia.core import exchange, hazmat
from licentia.core.documents import DocumentInvalid, DocumentMalformed, parse
from licentia.core.encoding import JsonRejected, canonical, strict_loads
from tests.strategies import hostile_requests, json_values, nested, render, request_payload, signed_text

KEY = hazmat.Ed25519PrivateKey.generate()
BASE = request_payload(KEY)

#: the values that once reached the canonical encoder raw (a 500 on an open endpoint)
PINNED = {
    "nan": float("nan"),
    "inf": float("inf"),
    "-inf": float("-inf"),
    "1e400": 1e400,
    "lone-surrogate": "\ud800",
    "surrogate-inside": "a\udfffb",
    "2**64": 2**64,
    "-2**64": -(2**64),
    "depth-40": nested(40),
}


@pytest.mark.parametrize("value", list(PINNED.values()), ids=list(PINNED))
@pytest.mark.parametrize("field", ["nonce", "extra", "slots"])
def test_pinned_hostile_values_in_a_self_signed_request_are_typed_errors(field, value):
    text = signed_text({**BASE, field: value}, KEY)
    with pytest.raises(DocumentInvalid) as info:
        exchange.verify_request(text)
    assert isinstance(info.value, DocumentMalformed)  # refused by the parser, before any field is read
    with pytest.raises(DocumentMalformed):
        exchange.verify_request(text.encode())


@pytest.mark.parametrize("depth", [33, 2000, 200_000])
def test_deep_nesting_in_a_self_signed_request_is_a_typed_error(depth):
    text = signed_text({**BASE, "extra": "DEEP"}, KEY).replace('"DEEP"', "[" * depth + "]" * depth)
    with pytest.raises(DocumentMalformed):
        exchange.verify_request(text)


def test_the_genuine_request_still_verifies():
    assert exchange.verify_request(signed_text(BASE, KEY)).serial == BASE["serial"]


@settings(deadline=None)  # examples: the profile (make fuzz: many more)
@given(hostile_requests(KEY))
def test_any_value_in_a_self_signed_request_gives_a_request_or_the_typed_error(text):
    with contextlib.suppress(DocumentInvalid):
        exchange.verify_request(text)


@settings(deadline=None)  # examples: the profile (make fuzz: many more)
@given(st.one_of(st.text(max_size=200), st.binary(max_size=200), json_values.map(render)))
@example('{"a": NaN}')
@example('{"a": 1, "a": 2}')
@example('"\\ud800"')
@example("[" * 100_000)
@example(b"\xed\xa0\x80")  # a surrogate encoded in UTF-8: not valid UTF-8
def test_strict_loads_refuses_with_its_own_error_or_gives_what_canonical_can_sign(data):
    try:
        value = strict_loads(data)
    except JsonRejected:
        return
    assert strict_loads(canonical(value)) == value  # a value that came in can be signed and read back


@settings(deadline=None)  # examples: the profile (make fuzz: many more)
@given(json_values)
def test_a_parsed_value_given_to_parse_meets_the_same_rules(value):
    """Callers that parsed JSON themselves get the same checks (a dict handed to parse())."""
    doc = {"payload": {"v": 1, "x": value}, "kid": "k", "sig": "s"}
    try:
        parse(doc)
    except DocumentInvalid:
        return
    canonical(doc)  # whatever parse() accepts, the signature check can encode
    assert strict_loads(json.dumps(doc)) == doc
