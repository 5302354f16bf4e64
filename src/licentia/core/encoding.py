"""Canonical JSON and base64url helpers shared by every document format."""

from __future__ import annotations

import base64
import json
from typing import Any


def canonical(obj: Any) -> bytes:
    """The bytes that get signed: sorted keys, no spaces, UTF-8."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def b64e(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64d(text: str) -> bytes:
    if not isinstance(text, str):
        raise ValueError("base64 field is not a string")
    pad = "=" * (-len(text) % 4)
    return base64.urlsafe_b64decode(text + pad)
