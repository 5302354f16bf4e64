"""Product-key files: a product key handed to the vendor, signed by the firm key.

License Central derives a product key per (firm, product, key version) and gives it
to the vendor's build (``GET /api/v1/firms/{code}/products/{product}/keys/{version}``
or ``licentia vendor product-key export``) as a signed envelope of type
``product-key``::

    {"payload": {"type": "product-key", "v": 1, "firm_code": 10101, "product_code": 1,
                 "version": 2, "key": "<base64url, 32 bytes>"},
     "kid": "...", "sig": "..."}

The key is in clear inside the document: a key file is a secret of the vendor's build
machine (keep it 0600, never ship it). The signature lets ``licentia protect`` check
that the key really is the firm's, for the firm key it pins in the protected package.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import codes, hazmat
from .documents import DocumentInvalid, parse, require, sign_document, verify_document
from .encoding import b64d, b64e

DOC_TYPE = "product-key"
KEY_BYTES = 32


@dataclass(frozen=True)
class ProductKey:
    """A verified product key."""

    firm_code: int
    product_code: int
    version: int
    key: bytes = field(repr=False)


def build(
    firm_code: int, product_code: int, version: int, key: bytes, firm_key: hazmat.Ed25519PrivateKey
) -> dict[str, Any]:
    """The signed product-key document (what Central returns and key files hold)."""
    codes.check_firm_code(firm_code)
    codes.check_product_code(product_code)
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ValueError("a key version is an integer >= 1")
    if len(key) != KEY_BYTES:
        raise ValueError("a product key is 32 bytes")
    payload = {"firm_code": firm_code, "product_code": product_code, "version": version, "key": b64e(key)}
    return sign_document(DOC_TYPE, payload, firm_key)


def dumps(doc: dict[str, Any]) -> bytes:
    return (json.dumps(doc, indent=1, sort_keys=True) + "\n").encode()


def load(source: bytes | str | os.PathLike[str] | dict[str, Any]) -> dict[str, Any]:
    """Parse a key file (path, JSON text/bytes or an already parsed envelope); no signature check."""
    if isinstance(source, os.PathLike):
        source = Path(source).read_bytes()
    return parse(source)


def verify(
    doc: bytes | str | dict[str, Any],
    firm_keys: dict[str, hazmat.Ed25519PublicKey] | hazmat.Ed25519PublicKey,
    *,
    firm_code: int | None = None,
    product_code: int | None = None,
    version: int | None = None,
) -> ProductKey:
    """Check the firm's signature and, when given, that the key is for this firm/product/version.

    Raises ``DocumentInvalid`` (its ``reason`` says which check failed: the vendor is the
    reader here, not an attacker).
    """
    payload = verify_document(parse(doc), DOC_TYPE, firm_keys)
    firm = require(payload, "firm_code", int)
    product = require(payload, "product_code", int)
    ver = require(payload, "version", int)
    try:
        codes.check_firm_code(firm)
        codes.check_product_code(product)
        key = b64d(require(payload, "key", str))
    except (codes.InvalidCode, ValueError) as exc:
        raise DocumentInvalid(f"bad product-key document: {exc}") from None
    if ver < 1 or len(key) != KEY_BYTES:
        raise DocumentInvalid("bad product-key document: version or key length")
    expected = (("firm", firm_code, firm), ("product", product_code, product), ("key version", version, ver))
    for name, want, got in expected:
        if want is not None and want != got:
            raise DocumentInvalid(f"this product key is for {name} {got}, not {want}")
    return ProductKey(firm, product, ver, key)


def keys_from_pem(pem: str | bytes) -> dict[str, hazmat.Ed25519PublicKey]:
    """Every Ed25519 public key in a PEM text (one or more blocks), by key id."""
    data = pem.encode() if isinstance(pem, str) else pem
    keys = {}
    for chunk in data.split(b"-----END PUBLIC KEY-----"):
        if b"-----BEGIN PUBLIC KEY-----" in chunk:
            block = chunk[chunk.index(b"-----BEGIN") :] + b"-----END PUBLIC KEY-----\n"
            key = hazmat.load_public_pem(block)
            keys[hazmat.key_id(key)] = key
    if not keys:
        raise ValueError("no PEM public key found")
    return keys
