"""Central's own secrets: the master key, the admin API key, API key hashing, and
the sealing of firm secrets under the master key.

- Master key: 32 bytes from ``LICENTIA_MASTER_KEY`` (hex or base64), else from the
  file ``LICENTIA_MASTER_KEY_FILE`` names (a mounted secret), else the key file
  ``KEYS/master.key``. It encrypts every firm's Ed25519 private key and
  product-key secret (AES-256-GCM, the associated data naming the firm and the
  purpose), so a copy of the database alone opens nothing.
- Admin key: ``LICENTIA_ADMIN_KEY``, else the file ``LICENTIA_ADMIN_KEY_FILE`` names,
  else the key file ``KEYS/admin.key``.
- Setting a key and its file variable both is refused (settings.py). A file a variable
  names may be readable by its group (Kubernetes mounts secrets 0440 with an fsGroup),
  never by every user.
- KEYS is ``LICENTIA_KEYS_DIR``, else ``<data dir>-keys`` beside the data directory
  (``.licentia`` -> ``.licentia-keys``): a copy or backup of the data directory never
  takes the keys along. Key files from before the keys directory
  (``DATA/master.key``, ``DATA/admin.key``) are still read, with a warning naming
  the command that moves them; a new key is never made while one of them exists
  (a second master key would not open the firm secrets sealed under the first).
  New key files are made on the first start, mode 0600, in a directory made 0700;
  Central refuses a key file that other users may read or write. With a database
  server (PostgreSQL) no key is ever made: replicas sharing the database would each
  make another, so a start without the key is refused.
- API keys: high-entropy random text; the database holds only SHA-256 hashes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import os
import secrets
import shlex
import stat
from dataclasses import dataclass
from pathlib import Path

from ..core import hazmat
from .settings import Settings, SettingsError

KEY_PREFIX = "lc_"
#: commands that make a key, named where a start without one is refused
MAKE_MASTER_KEY = "python3 -c 'import secrets; print(secrets.token_hex(32))'"
MAKE_ADMIN_KEY = "python3 -c 'import secrets; print(secrets.token_urlsafe(32))'"

log = logging.getLogger("licentia.central")


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


def _write_secret_file(path: Path, text: str) -> bool:
    """Make ``path`` (0600, its directory 0700 if new) holding ``text``; False when
    another worker made it first."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as fh:
        fh.write(text + "\n")
    return True


def _read_key_file(path: Path) -> str:
    """The text of a key file; refused when other users may read or write it."""
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise SettingsError(
            f"the key file {path} is open to other users (mode {mode:04o}): run chmod 600 {shlex.quote(str(path))}"
        )
    return path.read_text()


def _read_named_key_file(path: Path, variable: str) -> str:
    """The text of the key file ``variable`` names; refused when every user may read or
    write it (the mode bits decide, not whether this process may read it: root reads
    anything), and when it is missing or unreadable. Its group may read it."""
    quoted = shlex.quote(str(path))
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o006:
            raise SettingsError(
                f"the key file {path} ({variable}) is open to every user (mode {mode:04o}): "
                f"run chmod 600 {quoted} (or chmod 440 {quoted} for a group that reads it)"
            )
        return path.read_bytes().decode()
    except FileNotFoundError:
        raise SettingsError(f"{variable} names {path}, which does not exist: put the key there") from None
    except PermissionError:
        raise SettingsError(
            f"{variable} names {path}, which this user cannot read: make this user its owner or "
            f"give it a group of this user's (chmod 440 {quoted})"
        ) from None
    except OSError as exc:
        raise SettingsError(f"{variable} names {path}, which cannot be read: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise SettingsError(f"{variable} names {path}, which holds no key text") from None


def _no_key(what: str, variable: str, path: Path, make: str) -> SettingsError:
    """Why a start with a database server and no key stops: no key is made then."""
    return SettingsError(
        f"no {what} key: with a database server (not SQLite) Central never makes one, as replicas would each "
        f"make their own; give it in a file named by {variable}_FILE (a mounted secret) or in {variable}, "
        f"or put it into {path} (make one with: {make})"
    )


def _inside(path: Path, directory: Path) -> bool:
    return path.resolve().is_relative_to(directory.resolve())


def key_file_in_use(new: Path, legacy: Path) -> Path:
    """The key file to read: the one in the keys directory, else a legacy one inside
    the data directory, else the one in the keys directory (to be made)."""
    return legacy if legacy.exists() and not new.exists() else new


def master_key_location(settings: Settings) -> str | None:
    """Where the master key comes from, for messages: the variable or the key file
    (None when neither is there yet)."""
    if settings.master_key:
        return "LICENTIA_MASTER_KEY"
    if settings.master_key_path is not None:
        return str(settings.master_key_path)
    path = key_file_in_use(settings.master_key_file, settings.legacy_master_key_file)
    return str(path) if path.exists() else None


def _locate(new: Path, legacy: Path, data_dir: Path) -> Path:
    """``key_file_in_use``, warning (once, here at start) about a key file inside
    the data directory or a left-over legacy copy."""
    path = key_file_in_use(new, legacy)
    if path != new:
        target = shlex.quote(str(new.parent.absolute()))
        move = f"mkdir -p -m 700 {target} && mv {shlex.quote(str(legacy.absolute()))} {target}/"
        log.warning(
            "the key file %s is inside the data directory, so copies of the data directory take it along; "
            "move it out, while Central is stopped: %s",
            legacy,
            move,
        )
    elif _inside(new, data_dir):
        log.warning(
            "the key file %s is inside the data directory %s, so copies of the data directory take it along: "
            "set LICENTIA_KEYS_DIR to a directory outside it",
            new,
            data_dir,
        )
    elif legacy.exists():
        log.warning("%s is not used (%s is): remove that old copy from the data directory", legacy, new)
    return path


@dataclass(frozen=True)
class KeyMaterial:
    master_key: bytes
    master_source: str  # "environment" or the key file path (the one LICENTIA_MASTER_KEY_FILE names, or KEYS')
    admin_hash: str
    admin_source: str  # "environment" or the key file path (the one LICENTIA_ADMIN_KEY_FILE names, or KEYS')
    admin_key_created: str | None  # the new admin key, on the start that made it (print once)


def _load_master(settings: Settings) -> tuple[bytes, str]:
    if settings.master_key:
        return parse_master_key(settings.master_key, "LICENTIA_MASTER_KEY"), "environment"
    if settings.master_key_path is not None:
        path = settings.master_key_path
        text = _read_named_key_file(path, "LICENTIA_MASTER_KEY_FILE")
        return parse_master_key(text, f"{path} (LICENTIA_MASTER_KEY_FILE)"), str(path)
    path = _locate(settings.master_key_file, settings.legacy_master_key_file, settings.data_dir)
    if not path.exists():
        if not settings.sqlite:
            raise _no_key("master", "LICENTIA_MASTER_KEY", path, MAKE_MASTER_KEY)
        _write_secret_file(path, base64.b64encode(os.urandom(32)).decode())
    return parse_master_key(_read_key_file(path), str(path)), str(path)


def _load_admin(settings: Settings) -> tuple[str, str, str | None]:
    if settings.admin_key:
        return settings.admin_key.strip(), "environment", None
    if settings.admin_key_path is not None:
        path = settings.admin_key_path
        return _read_named_key_file(path, "LICENTIA_ADMIN_KEY_FILE").strip(), str(path), None
    path = _locate(settings.admin_key_file, settings.legacy_admin_key_file, settings.data_dir)
    created = None
    if not path.exists():
        if not settings.sqlite:
            raise _no_key("admin", "LICENTIA_ADMIN_KEY", path, MAKE_ADMIN_KEY)
        key = new_api_key()
        created = key if _write_secret_file(path, key) else None
    return _read_key_file(path).strip(), str(path), created


def load_or_create(settings: Settings) -> KeyMaterial:
    """The master key and the admin key hash, making the key files on the first start
    (with SQLite only)."""
    master, master_source = _load_master(settings)
    admin, admin_source, created = _load_admin(settings)
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

    PRODUCT_SECRET = "product-key secret"  # noqa: S105 - the name of a purpose, not a secret
