"""Documents Central signs on the protocol path, made so that each is encoded once.

``core.documents.sign_document`` returns the envelope as an object; Central then needs
its canonical text (the answer it sends and stores, the entry it keeps) and, for a
license entry, its digest. Both come from the canonical payload the signature is made
over, so ``sign`` returns them with the document instead of encoding it again, and a
firm key's id and public key are computed once per key (``Signer``), not per
signature. The bytes are those of ``sign_document`` followed by
``encoding.canonical`` (a test compares them for every document type used here).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ...core import exchange, hazmat
from ...core.documents import FORMAT_VERSION, check_values, signing_message
from ...core.encoding import b64e


@dataclass(frozen=True)
class Signer:
    """A firm's signing key with what its documents name: its key id and public key."""

    key: hazmat.Ed25519PrivateKey
    kid: str
    public: str  # the raw public key, base64url

    @classmethod
    def of(cls, key: hazmat.Ed25519PrivateKey) -> Signer:
        raw = hazmat.raw_public(key.public_key())
        return cls(key, hazmat.key_id(raw), b64e(raw))


@dataclass(frozen=True)
class Signed:
    """A signed document: the envelope, its canonical text and the digest of that text."""

    doc: dict[str, Any]
    text: str
    digest: str


def sign(doc_type: str, payload: dict[str, Any], signer: Signer) -> Signed:
    """``sign_document(doc_type, payload, signer.key)``, with its canonical text and digest."""
    payload = {**payload, "type": doc_type, "v": FORMAT_VERSION}
    check_values(payload)
    message = signing_message(doc_type, payload)  # b"licentia/" + type + b"\n" + canonical(payload)
    sig = b64e(hazmat.sign(signer.key, message))
    # the canonical envelope: its keys sorted (kid, payload, sig), the payload's bytes as signed
    kid, body = signer.kid.encode(), message[message.index(b"\n") + 1 :]
    text = b'{"kid":"' + kid + b'","payload":' + body + b',"sig":"' + sig.encode() + b'"}'
    doc = {"payload": payload, "kid": signer.kid, "sig": sig}
    return Signed(doc, text.decode(), hazmat.sha256(text).hex())


def update(
    signer: Signer,
    *,
    firm_code: int,
    serial: str,
    seq: int,
    now: int,
    entries: list[dict[str, Any]],
    sealed_keys: list[dict[str, Any]],
    request_digest: str | None,
    endorsements: list[dict[str, Any]],
    message: str | None = None,
    manipulation: dict[str, list[int]] | None = None,
) -> Signed:
    """``exchange.build_update`` with the firm's signer."""
    payload = exchange.update_payload(
        firm_code=firm_code,
        firm_pub=signer.public,
        serial=serial,
        seq=seq,
        now=now,
        entries=entries,
        sealed_keys=sealed_keys,
        request_digest=request_digest,
        endorsements=endorsements,
        message=message,
        manipulation=manipulation,
    )
    return sign("update", payload, signer)


def ack(
    signer: Signer, *, firm_code: int, serial: str, now: int, request_digest: str, recorded: dict[str, int]
) -> Signed:
    """``exchange.build_ack`` with the firm's signer."""
    return sign("report-ack", exchange.ack_payload(firm_code, serial, now, request_digest, recorded), signer)
