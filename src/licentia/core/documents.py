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


def signing_message(doc_type: str, payload: dict[str, Any]) -> bytes:
    return b"licentia/" + doc_type.encode() + b"\n" + canonical(payload)


def sign_document(doc_type: str, payload: dict[str, Any], key: hazmat.Ed25519PrivateKey) -> dict[str, Any]:
    payload = dict(payload)
    payload["type"] = doc_type
    payload["v"] = FORMAT_VERSION
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
        if isinstance(data, (bytes, str)):
            if len(data) > MAX_DOCUMENT_BYTES:
                raise DocumentInvalid("document too large")
            data = strict_loads(data)
        else:
            check_tree(data)
    except JsonRejected as exc:
        raise DocumentMalformed(f"not acceptable JSON: {exc}") from None
    if not isinstance(data, dict) or set(data) != {"payload", "kid", "sig"}:
        raise DocumentInvalid("not a signed envelope")
    payload = data["payload"]
    if not isinstance(payload, dict) or not isinstance(data["kid"], str) or not isinstance(data["sig"], str):
        raise DocumentInvalid("envelope fields have wrong types")
    if type(payload.get("v")) is not int or payload["v"] != FORMAT_VERSION:  # true is no version
        raise DocumentInvalid(f"unsupported format version {payload.get('v')!r}")
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
