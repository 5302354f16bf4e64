"""Hypothesis strategies for documents from outside: JSON values with everything a hostile
client can put in them (non-finite and huge numbers, lone surrogates, deep nesting), and
signed envelopes that are structurally valid (a ``kid`` matching the ``sign_pub`` they
carry, a good signature over the payload) around such values. ``make fuzz`` runs the
properties that use them with many more examples."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import strategies as st

from licentia.core import codes, exchange, hazmat
from licentia.core.documents import FORMAT_VERSION, signing_message
from licentia.core.encoding import b64e, canonical

#: numbers JSON text can carry, in range and out of it
numbers = st.one_of(
    st.integers(),
    st.integers(min_value=2**63 - 2, max_value=2**70),
    st.integers(min_value=-(2**70), max_value=-(2**63) + 2),
    st.floats(allow_nan=True, allow_infinity=True),
)
#: strings with lone surrogates now and then (they do not encode as UTF-8)
strings = st.one_of(st.text(max_size=40), st.text(alphabet=st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF),
                                                    min_size=1, max_size=3))
scalars = st.one_of(st.none(), st.booleans(), numbers, strings)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(strings, inner, max_size=4)),
    max_leaves=20,
)
def nested(depth: int) -> Any:
    value: Any = 0
    for i in range(depth):
        value = [value] if i % 2 else {"k": value}
    return value


def render(value: Any) -> str:
    """JSON text of any value above: NaN and Infinity as their tokens, surrogates escaped."""
    return json.dumps(value, allow_nan=True, ensure_ascii=True)


def signed_text(payload: dict[str, Any], key: hazmat.Ed25519PrivateKey, doc_type: str = "request") -> str:
    """A signed envelope around ``payload``: the signature is over the canonical payload
    where one exists, else over its best rendering (a hostile client signs what it likes)."""
    payload = {**payload, "type": doc_type, "v": FORMAT_VERSION}
    try:
        message = signing_message(doc_type, payload)
    except (ValueError, UnicodeEncodeError):
        message = b"licentia/" + doc_type.encode() + b"\n" + render(payload).encode()
    signature = hazmat.sign(key, message)
    return render({"payload": payload, "kid": hazmat.key_id(key.public_key()), "sig": b64e(signature)})


def request_payload(key: hazmat.Ed25519PrivateKey) -> dict[str, Any]:
    """The payload of a genuine activation request made with ``key``."""
    doc = exchange.build_request(serial=codes.new_serial(), level="medium", sign_key=key,
                                 box_pub=hazmat.raw_public(hazmat.X25519PrivateKey.generate().public_key()),
                                 slots={}, action="activate", now=1_800_000_000,
                                 ticket=codes.new_ticket_id())
    payload = dict(doc["payload"])
    payload.pop("type")
    payload.pop("v")
    return payload


def hostile_requests(key: hazmat.Ed25519PrivateKey) -> st.SearchStrategy[str]:
    """Genuine activation requests with one field replaced or added by any JSON value,
    signed by ``key`` (whose public key they carry): every check but the payload passes."""
    base = request_payload(key)
    fields = st.sampled_from(sorted(base) + ["extra"])
    return st.tuples(fields, json_values).map(lambda fv: signed_text({**base, fv[0]: fv[1]}, key))


__all__ = ["canonical", "hostile_requests", "json_values", "nested", "numbers", "render", "request_payload",
           "scalars", "signed_text", "strings"]
