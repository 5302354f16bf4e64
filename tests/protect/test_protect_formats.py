"""docs/formats.md, "Protector formats", implemented again here with `cryptography` alone: licentia must read
what the page describes (so another SDK written from the page interoperates)."""

from __future__ import annotations

import json
import marshal
import struct
import sys
from base64 import urlsafe_b64encode

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from licentia.protect import data
from tests.protect.helpers import Machine

KEY = bytes(range(100, 132))


def b64(raw: bytes) -> str:
    return urlsafe_b64encode(raw).rstrip(b"=").decode()


def canonical(obj: dict) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def data_fields(**changes) -> dict:
    """The header fields of a protected data file as the page lists them."""
    fields = {
        "format": 1,
        "kind": "data",
        "firm": 10101,
        "product": 1,
        "feature": 0,
        "key_version": 1,
        "chunk": 500,
        "salt": b64(b"\x07" * 16),
    }
    return {**fields, **changes}


def module_file(header: bytes, dotted: str, source: str, filename: str, nonce: bytes) -> bytes:
    code = compile(source, filename, "exec")
    aad = b"licentia module|" + dotted.encode() + b"|" + header
    return header + nonce + AESGCM(KEY).encrypt(nonce, marshal.dumps(code), aad)


def test_a_module_written_from_the_page_imports(tmp_path, machine: Machine):
    fields = {
        "format": 1,
        "kind": "module",
        "package": "fmtpkg",
        "firm": 10101,
        "product": 1,
        "feature": 0,
        "key_version": 1,
        "mode": "ip",
        "grace": 0,
        "python": f"{sys.version_info[0]}.{sys.version_info[1]}",
        "cache_tag": sys.implementation.cache_tag,
    }
    body = canonical(fields)
    header = b"\x89LPM\r\n\x1a\n" + struct.pack(">H", len(body)) + body
    pkg = tmp_path / "fmtpkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.lpy").write_bytes(
        module_file(header, "fmtpkg", "from .sub import mod\nVALUE = mod.X * 2\n", "fmtpkg/__init__.py", b"\x01" * 12)
    )
    (pkg / "sub" / "__init__.lpy").write_bytes(
        module_file(header, "fmtpkg.sub", "", "fmtpkg/sub/__init__.py", b"\x02" * 12)
    )
    (pkg / "sub" / "mod.lpy").write_bytes(
        module_file(header, "fmtpkg.sub.mod", "X = 21\n", "fmtpkg/sub/mod.py", b"\x03" * 12)
    )
    config = {**fields, "firm_key": None, "ip_key": b64(KEY)}
    del config["format"], config["kind"]
    (pkg / "__init__.py").write_text(
        f'__import__("licentia.protect.runtime", fromlist=["package"]).package(globals(), {config!r})\n'
    )
    r = machine.code(tmp_path, "import fmtpkg\nprint(fmtpkg.VALUE, fmtpkg.sub.mod.__file__.endswith('mod.lpy'))")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "42 True"


def test_a_data_file_written_from_the_page_reads(tmp_path):
    plaintext = bytes(range(256)) * 5  # 1280 bytes in chunks of 500: 500, 500, 280
    salt = b"\x07" * 16
    fields = data_fields(salt=b64(salt))
    body = canonical(fields)
    header = b"\x89LPD\r\n\x1a\n" + struct.pack(">H", len(body)) + body
    file_key = HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=b"licentia data v1").derive(KEY)
    pieces = [plaintext[i : i + 500] for i in range(0, len(plaintext), 500)]
    out = bytearray(header)
    for i, piece in enumerate(pieces):
        nonce = bytes([i]) * 12
        aad = header + struct.pack(">Q", i) + (b"\x01" if i == len(pieces) - 1 else b"\x00")
        out += nonce + AESGCM(file_key).encrypt(nonce, piece, aad)
    path = tmp_path / "page.bin"
    path.write_bytes(bytes(out))
    with data.ProtectedFile(path, KEY) as f:
        assert f.size == len(plaintext) and f.read() == plaintext
    # and what licentia writes reads back with the page's construction
    src = tmp_path / "plain"
    src.write_bytes(plaintext)
    data.protect_file(src, tmp_path / "mine.bin", KEY, firm=10101, product=1, chunk=500)
    blob = (tmp_path / "mine.bin").read_bytes()
    (length,) = struct.unpack(">H", blob[8:10])
    header = blob[: 10 + length]
    hdr = json.loads(header[10:])
    assert set(hdr) == set(fields) and hdr["chunk"] == 500
    from base64 import urlsafe_b64decode

    salt = urlsafe_b64decode(hdr["salt"] + "=" * (-len(hdr["salt"]) % 4))
    file_key = HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=b"licentia data v1").derive(KEY)
    rest, got, i = blob[len(header) :], b"", 0
    while rest:
        chunk, rest = rest[: 500 + 28], rest[500 + 28 :]
        aad = header + struct.pack(">Q", i) + (b"\x01" if not rest else b"\x00")
        got += AESGCM(file_key).decrypt(chunk[:12], chunk[12:], aad)
        i += 1
    assert got == plaintext and i == 3


def _data_file(tmp_path, **changes):
    body = canonical(data_fields(**changes))
    path = tmp_path / "page.bin"
    path.write_bytes(b"\x89LPD\r\n\x1a\n" + struct.pack(">H", len(body)) + body)
    return path


def test_a_data_file_header_with_a_salt_not_16_bytes_or_a_format_not_a_number_is_refused(tmp_path):
    import pytest

    cases = [
        ({"salt": b64(b"\x07" * 8)}, "salt is 16 bytes"),
        ({"salt": b64(b"\x07" * 32)}, "salt is 16 bytes"),
        ({"format": True}, "unsupported format"),
    ]
    for changes, reason in cases:
        with pytest.raises(data.ProtectedDataError, match=f"not a readable licentia protected data file .*{reason}"):
            data.ProtectedFile(_data_file(tmp_path, **changes), KEY)
    with pytest.raises(data.ProtectedDataError, match="no chunks"):  # within the rules, the header is read
        data.ProtectedFile(_data_file(tmp_path), KEY)
