"""Byte formats of protected modules and protected data files (docs/formats.md, "Protector formats").

Protected module (``*.lpy``)::

    magic (8) | header length (u16 BE) | header (canonical JSON) | nonce (12) | AES-256-GCM(marshal(code)) + tag (16)

    key  = the product key (license mode) or the bootstrap's key (IP mode)
    AAD  = b"licentia module|" + dotted module name (as built) + b"|" + header bytes
           (header bytes: magic, length and JSON: everything before the nonce)

Protected data file::

    magic (8) | header length (u16 BE) | header (canonical JSON) | chunk 0 | chunk 1 | ... | chunk n-1
    chunk i   = nonce (12) | AES-256-GCM(plaintext i) + tag (16)
    file key  = HKDF-SHA256(product key, salt = header "salt", info = b"licentia data v1")
    AAD i     = header bytes | i (u64 BE) | final flag (1 byte: 1 for chunk n-1, else 0)

Every chunk holds ``chunk`` plaintext bytes except the last, which holds 0..chunk
(an empty file is one final chunk of 0 bytes). Chunk boundaries follow from the file
length alone, so a reader can seek without an index.
"""

from __future__ import annotations

import json
import struct
import sys
from typing import Any

from ..core.encoding import JsonRejected, strict_loads
from ..core.encoding import format_duration as format_duration  # re-exported
from ..core.encoding import parse_duration as parse_duration
from ..core.errors import FormatError as FormatError  # re-exported

MODULE_MAGIC = b"\x89LPM\r\n\x1a\n"
DATA_MAGIC = b"\x89LPD\r\n\x1a\n"
FORMAT_VERSION = 1
MODULE_SUFFIX = ".lpy"
NONCE = 12
TAG = 16
CHUNK_OVERHEAD = NONCE + TAG
DEFAULT_CHUNK = 1 << 20
#: the largest chunk a data file may name (a reader holds one whole chunk in memory)
MAX_CHUNK = 64 << 20
MAX_HEADER = 0xFFFF
DATA_KEY_INFO = b"licentia data v1"
MODES = ("license", "ip")

_LEN = struct.Struct(">H")
_INDEX = struct.Struct(">Q")


def canonical(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode()


def python_tag() -> tuple[str, str]:
    """("3.11", "cpython-311") for the running interpreter."""
    return f"{sys.version_info[0]}.{sys.version_info[1]}", str(sys.implementation.cache_tag)


def module_header_fields(
    *,
    package: str,
    firm: int,
    product: int,
    feature: int,
    key_version: int,
    mode: str,
    grace: int,
    python: str,
    cache_tag: str,
) -> dict[str, Any]:
    return {
        "format": FORMAT_VERSION,
        "kind": "module",
        "package": package,
        "firm": firm,
        "product": product,
        "feature": feature,
        "key_version": key_version,
        "mode": mode,
        "grace": grace,
        "python": python,
        "cache_tag": cache_tag,
    }


def header_bytes(magic: bytes, fields: dict[str, Any]) -> bytes:
    body = canonical(fields)
    if len(body) > MAX_HEADER:
        raise ValueError("header too large")
    return magic + _LEN.pack(len(body)) + body


def split_header(magic: bytes, data: bytes) -> tuple[dict[str, Any], bytes, int]:
    """(fields, header bytes, offset of the body) of a protected file's first bytes."""
    if data[: len(magic)] != magic:
        raise FormatError("not a licentia protected file (bad magic)")
    start = len(magic) + _LEN.size
    if len(data) < start:
        raise FormatError("truncated header")
    (length,) = _LEN.unpack_from(data, len(magic))
    end = start + length
    if len(data) < end:
        raise FormatError("truncated header")
    try:
        fields = strict_loads(bytes(data[start:end]))
    except JsonRejected:
        raise FormatError("unreadable header") from None
    if not isinstance(fields, dict) or type(fields.get("format")) is not int or fields["format"] != FORMAT_VERSION:
        raise FormatError(f"unsupported format {fields.get('format') if isinstance(fields, dict) else None!r}")
    return fields, bytes(data[:end]), end


def module_aad(dotted_name: str, header: bytes) -> bytes:
    return b"licentia module|" + dotted_name.encode() + b"|" + header


def chunk_aad(header: bytes, index: int, final: bool) -> bytes:
    return header + _INDEX.pack(index) + (b"\x01" if final else b"\x00")


def chunk_layout(body_length: int, chunk: int) -> tuple[int, int]:
    """(number of chunks, plaintext size) of a data body; FormatError when impossible."""
    full = chunk + CHUNK_OVERHEAD
    if body_length <= 0:
        raise FormatError("no chunks (truncated)")
    count, rest = divmod(body_length, full)
    if rest:
        if rest < CHUNK_OVERHEAD:
            raise FormatError("last chunk too short (truncated)")
        count += 1
    return count, body_length - count * CHUNK_OVERHEAD
