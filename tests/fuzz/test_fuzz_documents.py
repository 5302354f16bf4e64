"""The strict JSON reader, the envelope checks and product-key documents under any input.

tests/core/test_document_properties.py covers ``parse`` and requests over arbitrary values;
here ``strict_loads`` is held against a plain reference reader on texts built to hold
duplicate keys (also behind string values that look like keys), and the signature check and
the product-key reader get genuine documents with one change anywhere, signed again by the
firm key. ``make fuzz`` runs them with many more examples."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import Phase, example, given, settings
from hypothesis import strategies as st

from licentia.core import hazmat, keyfile
from licentia.core.documents import MAX_SAFE_INT, DocumentInvalid, DocumentMalformed, signing_message, verify_document
from licentia.core.encoding import MAX_DEPTH, MAX_INT, JsonRejected, b64d, strict_loads
from tests.strategies import (
    as_text,
    envelope,
    genuine_payload,
    hostile_documents,
    near,
    nested,
    pin,
    pinned_texts,
    render,
)

# ---------------------------------------------------------------- strict_loads against a reference reader


class _Refused(Exception):
    pass


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    if len({k for k, _ in pairs}) != len(pairs):
        raise _Refused("duplicate key")
    return dict(pairs)


def _refuse_constant(name: str) -> Any:
    raise _Refused(name)


def reference(text: str) -> Any:
    """What strict_loads promises, written the slow, obvious way."""
    try:
        value = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_refuse_constant)
    except (ValueError, RecursionError):
        raise _Refused("not JSON") from None

    def walk(item: Any, depth: int) -> None:
        if isinstance(item, (dict, list)):
            if depth + 1 > MAX_DEPTH:
                raise _Refused("too deep")
            for key in item if isinstance(item, dict) else ():
                walk(key, depth + 1)
            for child in item.values() if isinstance(item, dict) else item:
                walk(child, depth + 1)
        elif isinstance(item, str):
            if any(0xD800 <= ord(c) <= 0xDFFF for c in item):
                raise _Refused("surrogate")
        elif isinstance(item, bool) or item is None:
            pass
        elif isinstance(item, int):
            if not -MAX_INT - 1 <= item <= MAX_INT:
                raise _Refused("out of range")
        elif not math.isfinite(item):
            raise _Refused("non-finite")

    walk(value, 0)
    return value


#: keys from a small set, so that objects often repeat one; some look like the end of a key
_keys = st.sampled_from(["a", "b", "k", 'x":', 'y" :', "\\", "\u00e9", "\\ud800", "\\uDFFF", "type"])
_space = st.sampled_from(["", " ", "\n", "\t", "\r\n "])
_tokens = st.one_of(
    st.sampled_from(
        [
            "NaN",
            "Infinity",
            "-Infinity",
            "1e400",
            "-1e400",
            "1E5",
            "-0",
            "0.5e-3",
            str(2**63 - 1),
            str(2**63),
            str(-(2**63)),
            str(-(2**63) - 1),
            "true",
            "false",
            "null",
            '"\\ud800"',
            '"a\\udfffb"',
            '"\\ud83d\\ude00"',
            '"\\":"',
            '"\\u0000"',
        ]
    ),
    st.integers().map(str),
    st.floats().map(lambda f: json.dumps(f, allow_nan=True)),
    st.text(max_size=8).map(lambda s: json.dumps(s, ensure_ascii=False) if s.isprintable() else json.dumps(s)),
)


def _object(pairs: list[tuple[str, str]], sp: str) -> str:
    return "{" + ",".join(f'{sp}"{k}"{sp}:{sp}{v}' for k, v in pairs) + sp + "}"


json_texts = st.recursive(
    _tokens,
    lambda inner: st.one_of(
        st.tuples(st.lists(inner, max_size=4), _space).map(lambda ls: "[" + ls[1] + ",".join(ls[0]) + "]"),
        st.tuples(st.lists(st.tuples(_keys, inner), max_size=4), _space).map(lambda ps: _object(*ps)),
    ),
    max_leaves=16,
)


@settings(deadline=None)
@given(st.one_of(json_texts, json_texts.map(lambda t: "[" * 30 + t + "]" * 30)))
@pin(
    [
        '{"a": 1, "a": 2}',
        '{"a": 1, "x\\":": {"a": 2, "a": 3}}',
        '{"b": "\\":", "b": 1}',
        "[" * 32 + "]" * 32,
        "[" * 33 + "]" * 33,
        '{"a": NaN}',
        "[1e400]",
        f"[{2**63}]",
        '["\\ud800"]',
        '{"\\ud800": 1}',
    ]
)
def test_strict_loads_refuses_exactly_what_it_promises_to(text):
    """The fast path (one parse, a key count) takes and refuses exactly the texts the
    obvious reader does: no duplicate key slips through behind a string that looks like one."""
    try:
        expected = reference(text)
    except _Refused:
        with pytest.raises(JsonRejected):
            strict_loads(text)
        with pytest.raises(JsonRejected):
            strict_loads(text.encode("utf-8"))
        return
    assert strict_loads(text) == expected
    assert strict_loads(text.encode("utf-8")) == expected


# ---------------------------------------------------------------- the signature check

FIRM = hazmat.Ed25519PrivateKey.generate()
OTHER = hazmat.Ed25519PrivateKey.generate()
KID = hazmat.key_id(FIRM.public_key())
SOME = {"type": "license", "v": 1, "firm_code": 10101, "list": [1, "a", None], "nested": {"k": [True]}}


@pytest.mark.parametrize("keys", ["map", "key", "none"])
@settings(deadline=None)
@given(
    st.one_of(
        hostile_documents(SOME, FIRM, "license", keys=[OTHER]), hostile_documents(SOME, FIRM, "update", keys=[OTHER])
    )
)
@pin(
    json.loads(t)
    for n, t in pinned_texts(SOME, FIRM, "license", "list").items()
    if n not in ("depth-100000", "duplicate-key", "surrogate-utf8")
)
def test_verify_document_gives_a_payload_signed_by_a_known_key_or_the_typed_error(keys, doc):
    trusted = {"map": {KID: FIRM.public_key()}, "key": FIRM.public_key(), "none": {}}[keys]
    try:
        payload = verify_document(doc, "license", trusted)
    except DocumentInvalid:
        return
    assert keys != "none"
    assert payload["type"] == "license" and doc["kid"] == KID
    assert hazmat.verify(FIRM.public_key(), b64d(doc["sig"]), signing_message("license", payload))


# ---------------------------------------------------------------- product-key documents

KEY_DOC = keyfile.build(10101, 7, 2, bytes(range(32)), FIRM)
KEY_PAYLOAD = genuine_payload(KEY_DOC)
KEY_TEXTS = {
    f"{field}-{name}": text
    for field in ("key", "version", "firm_code")
    for name, text in pinned_texts(KEY_PAYLOAD, FIRM, "product-key", field).items()
}
product_key_docs = st.one_of(
    hostile_documents(KEY_PAYLOAD, FIRM, "product-key", keys=[OTHER]).map(as_text),
    st.builds(lambda n: keyfile.build(10101, 7, n, bytes(32), FIRM), st.integers(1, MAX_SAFE_INT)).map(as_text),
    st.text(max_size=100),
    st.binary(max_size=100),
)


expectations = st.tuples(st.sampled_from([None, 10101, 1]), st.sampled_from([None, 7]), st.sampled_from([None, 2]))


@settings(deadline=None)
@given(st.tuples(product_key_docs, expectations))
@pin((text, (None, None, None)) for text in KEY_TEXTS.values())
def test_a_product_key_document_gives_the_firms_key_or_the_typed_error(case):
    text, (firm, product, version) = case
    try:
        doc = keyfile.load(text)
    except DocumentInvalid:
        with pytest.raises(DocumentInvalid):
            keyfile.verify(text, FIRM.public_key())
        return
    try:
        key = keyfile.verify(doc, {KID: FIRM.public_key()}, firm_code=firm, product_code=product, version=version)
    except DocumentInvalid:
        return
    assert len(key.key) == keyfile.KEY_BYTES and key.version >= 1
    assert firm in (None, key.firm_code) and product in (None, key.product_code) and version in (None, key.version)
    assert keyfile.verify(text, FIRM.public_key()) == key


@pytest.mark.parametrize("name", list(KEY_TEXTS))
def test_the_pinned_product_key_texts_are_refused_unread(name):
    with pytest.raises(DocumentMalformed):
        keyfile.load(KEY_TEXTS[name])


@pytest.fixture(scope="module")
def key_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("keyfile") / "product.key"


@settings(deadline=None)
@given(st.one_of(hostile_documents(KEY_PAYLOAD, FIRM, "product-key").map(as_text), st.binary(max_size=200)))
@pin(text.encode() if isinstance(text, str) else text for text in KEY_TEXTS.values())
def test_a_product_key_file_gives_its_document_or_the_typed_error(key_path, data):
    key_path.write_bytes(data.encode() if isinstance(data, str) else data)
    try:
        doc = keyfile.load(key_path)
    except DocumentInvalid:
        return
    assert set(doc) == {"payload", "kid", "sig"}


PEM = hazmat.public_pem(FIRM.public_key())
#: an Ed25519 key's PEM with one character of its algorithm identifier changed (every
#: Ed25519 PEM starts with these characters): the OID becomes 0.3.101.112
UNKNOWN_ALGORITHM = PEM.replace("MCowBQYDK2Vw", "MCowBQYDA2Vw")

pems = st.one_of(
    st.text(max_size=200),
    st.tuples(st.integers(0, len(PEM) - 1), st.characters()).map(lambda ic: PEM[: ic[0]] + ic[1] + PEM[ic[0] + 1 :]),
    st.integers(0, len(PEM)).map(lambda i: PEM[:i]),
    st.just(PEM + PEM),
)


def firm_keys_from_pem(pem: str) -> None:
    try:
        keys = keyfile.keys_from_pem(pem)
    except ValueError:  # its documented error (CryptoError is one): every caller catches ValueError
        return
    assert keys and all(kid == hazmat.key_id(k) for kid, k in keys.items())


@settings(deadline=None)
@given(pems)
@pin(
    [
        PEM,
        "-----BEGIN PUBLIC KEY-----\n",
        "-----BEGIN PUBLIC KEY-----\n\ud800\n-----END PUBLIC KEY-----\n",
        "-----BEGIN PUBLIC KEY-----" * 3 + "-----END PUBLIC KEY-----",
    ]
)
def test_a_firm_key_pem_gives_its_keys_or_a_typed_error(pem):
    firm_keys_from_pem(pem)


@settings(deadline=None, phases=[Phase.explicit])
@given(pems)
@example(UNKNOWN_ALGORITHM)
def test_a_firm_key_pem_of_an_unknown_algorithm_is_a_typed_error(pem):
    firm_keys_from_pem(pem)


def test_the_pinned_texts_hold_what_they_are_named_for():
    texts = pinned_texts(SOME, FIRM, "license", "list")
    assert '"list": NaN' in texts["NaN"] and '"list": 1e400' in texts["1e400"]
    assert '"list": 0, "list": [1' in texts["duplicate-key"] and render(nested(40)) in texts["depth-40"]
    assert json.loads(texts["2**64"])["payload"]["list"] == 2**64


# ---------------------------------------------------------------- one spelling per signature

GENUINE = envelope(SOME, FIRM, "license")
#: the genuine signature spelt otherwise: its padding written out, or characters base64url
#: does not have inside it (the decoder skips them): the same bytes, another document digest
RESPELT = {"padding": GENUINE["sig"] + "==", "skipped-characters": GENUINE["sig"][:8] + "!!!!" + GENUINE["sig"][8:]}


def verified_spelling(sig: str) -> None:
    try:
        verify_document({**GENUINE, "sig": sig}, "license", FIRM.public_key())
    except DocumentInvalid:
        return
    assert sig == GENUINE["sig"], "another spelling of the signature verifies (a new digest for the same document)"


@settings(deadline=None)
@given(st.one_of(near(GENUINE["sig"]), st.text(alphabet="-_=!. \n", max_size=6).map(lambda t: GENUINE["sig"] + t)))
def test_a_signature_verifies_in_one_spelling_or_is_refused(sig):
    verified_spelling(sig)


@settings(deadline=None, phases=[Phase.explicit])
@given(st.text())
@example(RESPELT["padding"])
@example(RESPELT["skipped-characters"])
def test_another_spelling_of_a_signature_is_refused(sig):
    verified_spelling(sig)
