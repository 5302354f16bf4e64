"""Central's own secrets: the master key, the admin API key, API key hashing, and
the sealing of firm secrets under the master key.

- Master key: 32 bytes from ``LICENTIA_MASTER_KEY`` (hex or base64) or the key
  file ``DATA/master.key`` (made on first start, mode 0600). It encrypts every
  firm's Ed25519 private key and product-key secret (AES-256-GCM, the associated
  data naming the firm and the purpose), so a copy of the database alone opens
  nothing. Keep it apart from the database and its backups.
- API keys: high-entropy random text; the database holds only SHA-256 hashes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from ..core import hazmat
from .settings import Settings, SettingsError

KEY_PREFIX = "lc_"


def new_api_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_api_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def api_key_id(key_hash: str) -> str:
    """The public name of a key (in the audit log): the first 16 hex digits of its hash."""
    return key_hash[:16]


def same_hash(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def parse_master_key(text: str, source: str) -> bytes:
    text = text.strip()
    raw: bytes | None = None
    if len(text) == 64:
        try:
            raw = bytes.fromhex(text)
        except ValueError:
            raw = None
    if raw is None:
        try:
            padded = text + "=" * (-len(text) % 4)
            raw = base64.b64decode(padded.replace("-", "+").replace("_", "/"), validate=True)
        except (binascii.Error, ValueError):
            raw = None
    if raw is None or len(raw) != 32:
        raise SettingsError(f"the master key from {source} is not 32 bytes in hex or base64")
    return raw


def _write_secret_file(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text + "\n")


@dataclass(frozen=True)
class KeyMaterial:
    master_key: bytes
    master_source: str  # "environment" or the key file path
    admin_hash: str
    admin_source: str  # "environment" or the key file path
    admin_key_created: str | None  # the new admin key, on the start that made it (print once)


def load_or_create(settings: Settings) -> KeyMaterial:
    if settings.master_key:
        master = parse_master_key(settings.master_key, "LICENTIA_MASTER_KEY")
        master_source = "environment"
    else:
        path = settings.master_key_file
        if not path.exists():
            try:
                _write_secret_file(path, base64.b64encode(os.urandom(32)).decode())
            except FileExistsError:
                pass  # another worker made it first
        master = parse_master_key(path.read_text(), str(path))
        master_source = str(path)

    created: str | None = None
    if settings.admin_key:
        admin = settings.admin_key.strip()
        admin_source = "environment"
    else:
        path = settings.admin_key_file
        if not path.exists():
            key = new_api_key()
            try:
                _write_secret_file(path, key)
                created = key
            except FileExistsError:
                pass
        admin = path.read_text().strip()
        admin_source = str(path)
    if len(admin) < 16:
        raise SettingsError(f"the admin key from {admin_source} is too short (at least 16 characters)")
    return KeyMaterial(master, master_source, hash_api_key(admin), admin_source, created)


class SecretBox:
    """Encrypts firm secrets under the master key; the AAD names firm and purpose."""

    def __init__(self, master_key: bytes):
        self._key = master_key

    @staticmethod
    def _aad(firm_code: int, purpose: str) -> bytes:
        return f"licentia central|firm {firm_code}|{purpose}".encode()

    def seal(self, firm_code: int, purpose: str, secret: bytes) -> bytes:
        return hazmat.aead_encrypt(self._key, secret, self._aad(firm_code, purpose))

    def open(self, firm_code: int, purpose: str, blob: bytes) -> bytes:
        return hazmat.aead_decrypt(self._key, blob, self._aad(firm_code, purpose))

    # Purposes, named once.
    @staticmethod
    def signing_key(kid: str) -> str:
        return f"signing key {kid}"

    PRODUCT_SECRET = "product-key secret"
