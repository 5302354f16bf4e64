"""licentia's hazmat layer: the cryptographic constructions every other part builds on.

This is a sharp layer, like ``cryptography.hazmat``: it takes keys and bytes and makes
no decision for the caller (which key to trust, which context to bind, what a failure
means). The safe layer sits above it: ``core.documents``, ``core.exchange``,
``core.grants`` and ``core.keyfile`` decide those things, and the runtime's
``access()`` and ``LicenseEntry.verify()`` take no crypto decision at all. Other
packages use this module for keys and the few primitives a format of theirs needs;
they never pick another algorithm or import ``cryptography.hazmat`` themselves.

The only library calls are Python's ``cryptography`` (pyca) ones:

- Signatures: Ed25519 over canonical JSON (see ``core.encoding.canonical``).
- Key ids: first 16 hex digits of SHA-256 over the raw 32-byte public key.
- Sealing to a container: ephemeral X25519, HKDF-SHA256, AES-256-GCM.
- Binding wraps: HKDF-SHA256 over a trait combination, AES-256-GCM.
"""

from __future__ import annotations

import hashlib
import os

from cryptography.exceptions import InvalidSignature, InvalidTag, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from .errors import CryptoError as CryptoError  # re-exported

__all__ = [
    "CryptoError",
    "InvalidSignature",
    "InvalidTag",
    "Ed25519PrivateKey",
    "Ed25519PublicKey",
    "X25519PrivateKey",
    "X25519PublicKey",
    "key_id",
    "raw_public",
    "raw_private",
    "load_public_pem",
    "public_pem",
    "sign",
    "verify",
    "seal",
    "unseal",
    "hkdf",
    "aead_encrypt",
    "aead_decrypt",
    "sha256",
]


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def raw_public(key: Ed25519PublicKey | X25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def raw_private(key: Ed25519PrivateKey | X25519PrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption())


def key_id(public: Ed25519PublicKey | bytes) -> str:
    raw = public if isinstance(public, bytes) else raw_public(public)
    return hashlib.sha256(raw).hexdigest()[:16]


def public_pem(key: Ed25519PublicKey) -> str:
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def load_public_pem(pem: str | bytes) -> Ed25519PublicKey:
    data = pem.encode() if isinstance(pem, str) else pem
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise CryptoError("not a PEM public key") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise CryptoError("a firm key is an Ed25519 public key")
    return key


def sign(private: Ed25519PrivateKey, message: bytes) -> bytes:
    return private.sign(message)


def verify(public: Ed25519PublicKey, signature: bytes, message: bytes) -> bool:
    try:
        public.verify(signature, message)
    except InvalidSignature:
        return False
    return True


def hkdf(ikm: bytes, *, salt: bytes | None, info: bytes, length: int = 32) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=salt, info=info).derive(ikm)


def aead_encrypt(key: bytes, plaintext: bytes, aad: bytes) -> bytes:
    """nonce (12 bytes) || AES-256-GCM ciphertext with tag."""
    nonce = os.urandom(12)
    return nonce + AESGCM(key).encrypt(nonce, plaintext, aad)


def aead_decrypt(key: bytes, blob: bytes | memoryview, aad: bytes) -> bytes:
    if len(blob) < 12 + 16:
        raise CryptoError("ciphertext too short")
    try:
        return AESGCM(key).decrypt(blob[:12], blob[12:], aad)
    except InvalidTag as exc:
        raise CryptoError("authentication failed") from exc


_SEAL_INFO = b"licentia seal v1"


def seal(recipient: X25519PublicKey | bytes, plaintext: bytes, context: bytes) -> bytes:
    """Seal ``plaintext`` to an X25519 public key: ephemeral public (32) || nonce || ct.

    ``context`` is bound as associated data and into the key derivation.
    """
    if isinstance(recipient, bytes):
        recipient = X25519PublicKey.from_public_bytes(recipient)
    eph = X25519PrivateKey.generate()
    eph_pub = raw_public(eph.public_key())
    shared = eph.exchange(recipient)
    key = hkdf(shared, salt=eph_pub + raw_public(recipient), info=_SEAL_INFO + b"|" + context)
    return eph_pub + aead_encrypt(key, plaintext, context)


def unseal(recipient: X25519PrivateKey, blob: bytes, context: bytes) -> bytes:
    if len(blob) < 32 + 28:
        raise CryptoError("sealed box too short")
    eph_pub = blob[:32]
    try:
        shared = recipient.exchange(X25519PublicKey.from_public_bytes(eph_pub))
    except ValueError as exc:
        raise CryptoError("bad ephemeral key") from exc
    key = hkdf(shared, salt=eph_pub + raw_public(recipient.public_key()), info=_SEAL_INFO + b"|" + context)
    return aead_decrypt(key, blob[32:], context)
