"""Signed documents: license entries, updates, requests and receipts.

Every document is a JSON envelope ``{"payload": {...}, "kid": "...", "sig": "..."}``.
The signature is Ed25519 over ``b"licentia/" + type + b"\\n" + canonical(payload)``,
so a signature made for one document type never verifies as another.
docs/formats.md is the reference; tests/vectors/ hold examples.
"""

from __future__ import annotations

from typing import Any

from . import hazmat
from .encoding import JsonRejected, b64d, b64e, canonical, check_tree, strict_loads
from .errors import DocumentInvalid as DocumentInvalid  # re-exported
from .errors import DocumentMalformed as DocumentMalformed

FORMAT_VERSION = 1
MAX_DOCUMENT_BYTES = 4 * 1024 * 1024
#: the largest whole number a document holds: every JSON reader (JavaScript's too) reads
#: it exactly
MAX_SAFE_INT = 2**53 - 1


def check_values(payload: Any) -> None:
    """Refuse what a document never holds: a number with a fraction or an exponent (a
    float), or a whole number beyond +-(2^53 - 1). Documents hold whole numbers only, so
    that every reader computes the same canonical bytes."""
    stack = [payload]
    while stack:
        item = stack.pop()
        kind = type(item)
        if kind is dict:
            stack.extend(item.values())
        elif kind is list:
            stack.extend(item)
        elif kind is float:
            raise DocumentInvalid("a document holds no fractional numbers")
        elif kind is int and not -MAX_SAFE_INT <= item <= MAX_SAFE_INT:
            raise DocumentInvalid("a number in the document is out of range")


def signing_message(doc_type: str, payload: dict[str, Any]) -> bytes:
    return b"licentia/" + doc_type.encode() + b"\n" + canonical(payload)


def sign_document(doc_type: str, payload: dict[str, Any], key: hazmat.Ed25519PrivateKey) -> dict[str, Any]:
    payload = dict(payload)
    payload["type"] = doc_type
    payload["v"] = FORMAT_VERSION
    check_values(payload)
    sig = hazmat.sign(key, signing_message(doc_type, payload))
    return {"payload": payload, "kid": hazmat.key_id(key.public_key()), "sig": b64e(sig)}


def document_digest(doc: dict[str, Any]) -> str:
    """SHA-256 (hex) over the canonical envelope: what identifies a document."""
    return hazmat.sha256(canonical(doc)).hex()


def parse(data: bytes | str | dict[str, Any]) -> dict[str, Any]:
    """Parse an envelope's structure (no signature check). JSON text goes through
    ``encoding.strict_loads`` (depth, numbers, surrogates, duplicate keys) and a parsed
    value through the same checks: whatever comes in, only ``DocumentInvalid`` comes out."""
    try:
        if isinstance(data, str):
            data = data.encode("utf-8", "surrogatepass")  # the limit counts bytes
        if isinstance(data, bytes):
            if len(data) > MAX_DOCUMENT_BYTES:
                raise DocumentInvalid("document too large")
            data = strict_loads(data)
        elif isinstance(data, dict):
            check_tree(data)
        else:
            raise DocumentInvalid("not a signed envelope")
    except JsonRejected as exc:
        raise DocumentMalformed(f"not acceptable JSON: {exc}") from None
    if not isinstance(data, dict) or set(data) != {"payload", "kid", "sig"}:
        raise DocumentInvalid("not a signed envelope")
    payload = data["payload"]
    if not isinstance(payload, dict) or not isinstance(data["kid"], str) or not isinstance(data["sig"], str):
        raise DocumentInvalid("envelope fields have wrong types")
    if type(payload.get("v")) is not int or payload["v"] != FORMAT_VERSION:  # true is no version
        raise DocumentInvalid(f"unsupported format version {payload.get('v')!r}")
    check_values(payload)
    return data


def doc_type(doc: dict[str, Any]) -> str:
    return str(doc["payload"].get("type"))


def verify_document(
    doc: dict[str, Any], expected_type: str, keys: dict[str, hazmat.Ed25519PublicKey] | hazmat.Ed25519PublicKey
) -> dict[str, Any]:
    """Check type and signature; return the payload. ``keys`` maps key id to key."""
    doc = parse(doc)
    payload: dict[str, Any] = doc["payload"]
    if payload.get("type") != expected_type:
        raise DocumentInvalid(f"expected a {expected_type} document, got {payload.get('type')!r}")
    if isinstance(keys, hazmat.Ed25519PublicKey):
        keys = {hazmat.key_id(keys): keys}
    key = keys.get(doc["kid"])
    if key is None:
        raise DocumentInvalid(f"signed by unknown key {doc['kid']!r}")
    try:
        sig = b64d(doc["sig"])
    except ValueError:
        raise DocumentInvalid("signature is not base64") from None
    if not hazmat.verify(key, sig, signing_message(expected_type, payload)):
        raise DocumentInvalid("bad signature")
    return payload


def require(payload: dict[str, Any], name: str, kind: type | tuple[type, ...], *, optional: bool = False) -> Any:
    """Fetch a typed field from a verified payload (bool is never an int here)."""
    if name not in payload or payload[name] is None:
        if optional:
            return None
        raise DocumentInvalid(f"field {name!r} missing")
    value = payload[name]
    if isinstance(value, bool) and kind in (int, (int,)):
        raise DocumentInvalid(f"field {name!r} has wrong type")
    if not isinstance(value, kind):
        raise DocumentInvalid(f"field {name!r} has wrong type")
    return value
