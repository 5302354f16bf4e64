"""Hypothesis strategies for documents from outside: JSON values with everything a hostile
client can put in them (non-finite and huge numbers, lone surrogates, deep nesting), and
signed envelopes that are structurally valid (a ``kid`` matching the ``sign_pub`` they
carry, a good signature over the payload) around such values. For the properties under
tests/fuzz: genuine payloads with one change anywhere inside, signed again by the key their
reader trusts; the texts that broke parsers before; identifiers near genuine ones; TOML
text as an administrator writes it. ``make fuzz`` runs the properties that use them with
many more examples."""

from __future__ import annotations

import datetime as _dt
import json
import math
from collections.abc import Callable, Iterable
from typing import Any

from hypothesis import example
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
strings = st.one_of(
    st.text(max_size=40),
    st.text(alphabet=st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), min_size=1, max_size=3),
)
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
    doc = exchange.build_request(
        serial=codes.new_serial(),
        level="medium",
        sign_key=key,
        box_pub=hazmat.raw_public(hazmat.X25519PrivateKey.generate().public_key()),
        slots={},
        action="activate",
        now=1_800_000_000,
        ticket=codes.new_ticket_id(),
    )
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


__all__ = [
    "canonical",
    "hostile_requests",
    "json_values",
    "nested",
    "numbers",
    "render",
    "request_payload",
    "scalars",
    "signed_text",
    "strings",
]


# ---------------------------------------------------------------- every parser of outside input (tests/fuzz)
#
# The fuzz properties build structurally valid inputs around genuine documents: one change
# somewhere in a genuine payload, signed again with the key its reader trusts, so that every
# check but the one the change targets passes, and the checks behind the signature are reached.

#: text a strict reader lets through (no lone surrogate)
plain_text = st.text(alphabet=st.characters(exclude_categories=("Cs",)), max_size=40)
#: JSON values a strict reader lets through: what a verified payload may hold
accepted_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    plain_text,
)
accepted_json = st.recursive(
    accepted_scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(plain_text, inner, max_size=4)),
    max_leaves=20,
)

#: the values that broke parsers before, as a lenient reader makes them (1e400 is inf there)
PINNED_VALUES: dict[str, Any] = {
    "nan": math.nan,
    "inf": math.inf,
    "-inf": -math.inf,
    "lone-surrogate": "\ud800",
    "surrogate-inside": "a\udfffb",
    "2**63": 2**63,
    "-2**63-1": -(2**63) - 1,
    "2**64": 2**64,
    "depth-40": nested(40),
}
#: any JSON value, the pinned ones more often than chance would give them
hostile_values = st.one_of(json_values, st.sampled_from(list(PINNED_VALUES.values())))
#: what a change puts in a document: more often a value a strict reader takes (so that the
#: checks behind the reader are reached: near values of the usual types too) than one it refuses
change_values = st.one_of(
    accepted_json,
    st.one_of(st.integers(min_value=-2, max_value=2**33), st.sampled_from(["", "x", "ab" * 32, [], {}, [1], 0.5])),
    hostile_values,
)

_DROP = object()
_HOLE = "\x00hole\x00"


def json_paths(value: Any, *, skip: Iterable[str] = ()) -> list[tuple[Any, ...]]:
    """Every place inside a JSON value, the root () first; the subtrees under keys in
    ``skip`` are not entered (their key is still a place)."""
    skip = frozenset(skip)
    out: list[tuple[Any, ...]] = []
    stack: list[tuple[tuple[Any, ...], Any]] = [((), value)]
    while stack:
        path, item = stack.pop()
        out.append(path)
        if path and path[-1] in skip:
            continue
        if isinstance(item, dict):
            stack.extend((path + (k,), v) for k, v in item.items())
        elif isinstance(item, list):
            stack.extend((path + (i,), v) for i, v in enumerate(item))
    return sorted(out, key=len)


def replaced(value: Any, path: tuple[Any, ...], new: Any) -> Any:
    """A copy of ``value`` with the place at ``path`` set to ``new`` (removed for ``_DROP``;
    a new key of an object is added)."""
    if not path:
        return new
    head, rest = path[0], path[1:]
    out: Any = dict(value) if isinstance(value, dict) else list(value)
    if rest:
        out[head] = replaced(value[head], rest, new)
    elif new is _DROP:
        del out[head]
    else:
        out[head] = new
    return out


def one_change(
    base: Any,
    values: st.SearchStrategy[Any] = change_values,
    *,
    skip: Iterable[str] = (),
    keys: st.SearchStrategy[str] = strings,
) -> st.SearchStrategy[Any]:
    """``base`` itself, or ``base`` with one change anywhere inside: a value replaced by any
    of ``values``, a key or an item removed, or a key (any of ``keys``) added."""
    places = json_paths(base, skip=skip)
    inner = [p for p in places if p]
    objects = [p for p in places if isinstance(_at(base, p), dict)]
    choices = [st.just(base)]
    if inner:
        choices += [
            st.tuples(st.sampled_from(inner), values).map(lambda pv: replaced(base, pv[0], pv[1])),
            st.sampled_from(inner).map(lambda p: replaced(base, p, _DROP)),
        ]
    if objects:
        choices.append(
            st.tuples(st.sampled_from(objects), keys, values).map(lambda t: replaced(base, t[0] + (t[1],), t[2]))
        )
    return st.one_of(*choices)


def _at(value: Any, path: tuple[Any, ...]) -> Any:
    for step in path:
        value = value[step]
    return value


def envelope(payload: dict[str, Any], key: hazmat.Ed25519PrivateKey, doc_type: str) -> dict[str, Any]:
    """A signed envelope around exactly ``payload`` (its ``type`` and ``v`` as they are), the
    signature as a lenient reader would check it (over the best rendering where the payload
    has no canonical form)."""
    try:
        message = signing_message(doc_type, payload)
    except (ValueError, UnicodeEncodeError, TypeError):
        message = b"licentia/" + doc_type.encode() + b"\n" + render(payload).encode()
    except RecursionError:
        message = b"licentia/" + doc_type.encode() + b"\n"
    return {"payload": payload, "kid": hazmat.key_id(key.public_key()), "sig": b64e(hazmat.sign(key, message))}


def genuine_payload(doc: dict[str, Any]) -> dict[str, Any]:
    """The payload of a genuine signed document, ``type`` and ``v`` included."""
    return json.loads(json.dumps(doc["payload"]))


def hostile_documents(
    payload: dict[str, Any],
    key: hazmat.Ed25519PrivateKey,
    doc_type: str,
    *,
    keys: Iterable[hazmat.Ed25519PrivateKey] = (),
    skip: Iterable[str] = (),
) -> st.SearchStrategy[dict[str, Any]]:
    """Envelopes (as a lenient reader parses them) around a genuine ``payload``: one change in
    the payload, signed again with ``key`` (or one of ``keys``: another signer), or one change
    in the genuine envelope itself (kid, sig, its shape)."""
    signers = st.sampled_from([key, *keys])
    genuine = envelope(payload, key, doc_type)
    return st.one_of(
        st.tuples(one_change(payload, skip=skip), signers).map(lambda pk: envelope(pk[0], pk[1], doc_type)),
        one_change(genuine, skip=("payload",)),
    )


def as_text(doc: Any) -> str:
    return render(doc)


def pinned_texts(
    payload: dict[str, Any], key: hazmat.Ed25519PrivateKey, doc_type: str, field: str
) -> dict[str, str | bytes]:
    """The genuine envelope with ``field`` of its payload set to each value that broke parsers
    before, in the text a hostile client sends (signed as a lenient reader would read it):
    NaN, Infinity, 1e400, a lone surrogate (escaped, and raw in UTF-8), whole numbers past
    2**63, deep nesting, and ``field`` twice. A strict reader refuses every one unread."""
    tokens: dict[str, tuple[str, Any]] = {
        "NaN": ("NaN", math.nan),
        "Infinity": ("Infinity", math.inf),
        "-Infinity": ("-Infinity", -math.inf),
        "1e400": ("1e400", math.inf),
        "lone-surrogate": ('"\\ud800"', "\ud800"),
        "2**63": (str(2**63), 2**63),
        "-2**63-1": (str(-(2**63) - 1), -(2**63) - 1),
        "2**64": (str(2**64), 2**64),
        "depth-40": (render(nested(40)), nested(40)),
        "depth-100000": ("[" * 100_000 + "]" * 100_000, None),
        "duplicate-key": (f"0, {json.dumps(field)}: {render(payload.get(field))}", payload.get(field)),
    }
    out: dict[str, str | bytes] = {}
    for name, (token, value) in tokens.items():
        doc = envelope({**payload, field: value}, key, doc_type)
        doc["payload"] = {**doc["payload"], field: _HOLE}
        out[name] = render(doc).replace(render(_HOLE), token, 1)
    out["surrogate-utf8"] = str(out["lone-surrogate"]).encode().replace(b'"\\ud800"', b'"\xed\xa0\x80"')
    return out


def pinned_documents(
    payload: dict[str, Any], key: hazmat.Ed25519PrivateKey, doc_type: str, field: str
) -> dict[str, dict[str, Any]]:
    """The pinned texts as a lenient reader parses them (for readers that take a parsed
    envelope): what a caller that parsed the JSON itself may pass."""
    out = {}
    for name, text in pinned_texts(payload, key, doc_type, field).items():
        if name not in ("depth-100000", "duplicate-key", "surrogate-utf8"):
            out[name] = json.loads(text)
    return out


def pin(values: Iterable[Any], *, rows: bool = False) -> Callable[[Any], Any]:
    """Each of ``values`` as an explicit example of a one-argument property (``rows``: each
    value is the tuple of a property's arguments)."""

    def apply(test: Any) -> Any:
        for value in values:
            test = example(*value)(test) if rows else example(value)(test)
        return test

    return apply


# ---------------------------------------------------------------- identifiers

#: characters str.isdigit() takes that int() may not (superscripts, other scripts' digits)
odd_digits = st.sampled_from(["²", "³", "¹", "٣", "०", "９", "𝟙", "①"])


def near(genuine: str) -> st.SearchStrategy[str]:
    """``genuine`` with one character replaced, inserted or removed, lowercased, or padded."""
    alphabet = st.one_of(st.sampled_from(codes.ALPHABET + "OILoil- \t\n"), odd_digits, st.characters())
    n = len(genuine)
    return st.one_of(
        st.tuples(st.integers(0, n - 1), alphabet).map(lambda ic: genuine[: ic[0]] + ic[1] + genuine[ic[0] + 1 :]),
        st.tuples(st.integers(0, n), alphabet).map(lambda ic: genuine[: ic[0]] + ic[1] + genuine[ic[0] :]),
        st.integers(0, n - 1).map(lambda i: genuine[:i] + genuine[i + 1 :]),
        st.just(genuine.lower()),
        st.sampled_from(["", " ", "\n", "\x00"]).map(lambda pad: genuine + pad),
    )


# ---------------------------------------------------------------- TOML text

_BARE = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")


def toml_string(text: str) -> str:
    out = ['"']
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return "".join(out) + '"'


def toml_key(key: str) -> str:
    return key if key and set(key) <= _BARE else toml_string(key)


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return "nan" if value != value else ("inf" if value > 0 else "-inf") if math.isinf(value) else repr(value)
    if isinstance(value, str):
        return toml_string(value)
    if isinstance(value, (_dt.date, _dt.time)):  # datetime is a date
        return value.isoformat()
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return "{" + ", ".join(f"{toml_key(k)} = {toml_value(v)}" for k, v in value.items()) + "}"


def toml_text(doc: dict[str, Any]) -> str:
    """TOML text of ``doc`` as an administrator writes it: plain keys first, then a table per
    object and an array of tables per list of objects (inline tables further down)."""
    lines = [
        f"{toml_key(k)} = {toml_value(v)}"
        for k, v in doc.items()
        if not isinstance(v, dict) and not (isinstance(v, list) and v and all(isinstance(x, dict) for x in v))
    ]
    for k, v in doc.items():
        if isinstance(v, dict):
            lines += ["", f"[{toml_key(k)}]"] + [f"{toml_key(kk)} = {toml_value(vv)}" for kk, vv in v.items()]
        elif isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
            for item in v:
                lines += ["", f"[[{toml_key(k)}]]"] + [f"{toml_key(kk)} = {toml_value(vv)}" for kk, vv in item.items()]
    return "\n".join(lines) + "\n"


#: TOML text strings (a lone surrogate has no TOML form)
toml_strings = st.one_of(plain_text, st.sampled_from(["", "*", "10101:1", "10101:*", "10.0.0.0/8", "::1", "3d", "12h"]))
toml_scalars = st.one_of(
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.integers(min_value=2**63, max_value=2**80),
    st.floats(),
    toml_strings,
    st.dates(),
    st.datetimes(),
    st.times(),
)
toml_values = st.recursive(
    toml_scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(toml_strings, inner, max_size=4)),
    max_leaves=12,
)
#: what broke TOML readers before, as text that a TOML reader may meet
PINNED_TOML = {
    "nan": "nan",
    "inf": "inf",
    "-inf": "-inf",
    "1e400": "1e400",
    "2**63": str(2**63),
    "2**64": str(2**64),
    "-2**64": str(-(2**64)),
    "4301-digits": "1" * 4301,
    "escaped-surrogate": '"\\ud800"',
    "depth-40": "[" * 40 + "]" * 40,
    "depth-100000": "[" * 100_000 + "]" * 100_000,
}


def pinned_toml_texts(doc: dict[str, Any], path: tuple[Any, ...]) -> dict[str, str | bytes]:
    """The TOML text of ``doc`` with the value at ``path`` set to each of ``PINNED_TOML``, set
    twice (a duplicate key), and as a raw lone surrogate (text) or invalid UTF-8 (bytes)."""
    text = toml_text(replaced(doc, path, _HOLE))
    hole = toml_string(_HOLE)
    out: dict[str, str | bytes] = {name: text.replace(hole, token, 1) for name, token in PINNED_TOML.items()}
    out["duplicate-key"] = text.replace(hole, f"1\n{toml_key(str(path[-1]))} = 2", 1)
    out["raw-surrogate"] = text.replace(hole, '"\ud800"', 1)
    out["invalid-utf8"] = text.replace(hole, '"@"', 1).encode().replace(b"@", b"\xed\xa0\x80")
    return out


def toml_docs_like(shape: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    """TOML documents around a genuine one: ``shape`` with one change anywhere inside."""
    return one_change(shape, toml_values, keys=toml_strings)


__all__ += [
    "PINNED_TOML",
    "PINNED_VALUES",
    "accepted_json",
    "as_text",
    "change_values",
    "envelope",
    "genuine_payload",
    "hostile_documents",
    "hostile_values",
    "json_paths",
    "near",
    "odd_digits",
    "one_change",
    "pin",
    "pinned_documents",
    "pinned_texts",
    "pinned_toml_texts",
    "plain_text",
    "replaced",
    "toml_docs_like",
    "toml_key",
    "toml_string",
    "toml_text",
    "toml_value",
    "toml_values",
]
