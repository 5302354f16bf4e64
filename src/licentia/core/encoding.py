"""Canonical JSON and base64url helpers shared by every document format."""

from __future__ import annotations

import base64
import json
import re
from typing import Any

#: how deep JSON from outside may nest (documents nest four or five levels)
MAX_DEPTH = 32
#: the largest whole number accepted from outside (a signed 64-bit integer)
MAX_INT = 2**63 - 1
_SURROGATE = re.compile("[\ud800-\udfff]")


class JsonRejected(ValueError):
    """JSON from outside that licentia does not accept (the reason is for the log)."""


def _no_constant(name: str) -> Any:
    raise JsonRejected(f"non-finite number {name}")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        raise JsonRejected("duplicate key")
    return out


_PLAIN = json.JSONDecoder(parse_constant=_no_constant)
_EXACT = json.JSONDecoder(parse_constant=_no_constant, object_pairs_hook=_no_duplicates)
#: a string followed by a colon: every key of a JSON text matches (and a string value
#: holding '":' does too, which only sends the text to the exact check)
_KEY = re.compile(r'"\s*:')
_INF = float("inf")


def strict_loads(data: bytes | str, *, max_depth: int = MAX_DEPTH, max_bytes: int | None = None) -> Any:
    """JSON from outside: UTF-8, nesting at most ``max_depth`` deep, no NaN or Infinity,
    numbers in range (whole numbers in 64 bits, others finite), no lone surrogate, no
    duplicate key; with ``max_bytes``, bytes at most that long. Anything else raises
    ``JsonRejected``, never another exception.

    The fast path parses with the C parser, then one walk checks the values and counts
    the keys; when the keys of the text outnumber those of the result (a duplicate, or a
    string holding '":'), the text is parsed again with a duplicate check."""
    if max_bytes is not None and isinstance(data, (bytes, bytearray)) and len(data) > max_bytes:
        raise JsonRejected(f"longer than {max_bytes} bytes")
    try:
        if isinstance(data, (bytes, bytearray)):
            text = data.decode("utf-8")  # strict: encoded surrogates do not decode
        else:
            text = data
            text.encode("utf-8")  # a lone surrogate does not encode
        value = _PLAIN.decode(text)  # the parser gives up on deep nesting (RecursionError) early
        keys = check_tree(value, max_depth=max_depth, strings="\\ud" in text or "\\uD" in text)
        if len(_KEY.findall(text)) != keys:
            _EXACT.decode(text)
    except JsonRejected:
        raise
    except (ValueError, UnicodeDecodeError, RecursionError, TypeError) as exc:
        raise JsonRejected(f"not JSON: {exc.__class__.__name__}") from None
    return value


def check_tree(value: Any, *, max_depth: int = MAX_DEPTH, strings: bool = True) -> int:
    """Raise ``JsonRejected`` when a parsed value could not have come from ``strict_loads``
    (too deep, a non-finite or out-of-range number, a key not a string, and with
    ``strings`` a lone surrogate); returns how many keys its objects hold."""
    keys = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        kind = type(item)
        if kind is dict:
            keys += len(item)
            if strings or any(type(k) is not str for k in item):
                for key in item:
                    if type(key) is not str or _SURROGATE.search(key):
                        raise JsonRejected("bad key")
            children: Any = item.values()
        elif kind is list:
            children = item
        else:
            children = (item,)
            depth -= 1
        if depth >= max_depth:
            raise JsonRejected(f"nested deeper than {max_depth}")
        for child in children:
            kind = type(child)
            if kind is dict or kind is list:
                stack.append((child, depth + 1))
            elif kind is int:
                if not -MAX_INT - 1 <= child <= MAX_INT:
                    raise JsonRejected("number out of range")
            elif kind is float:
                if child != child or child == _INF or child == -_INF:
                    raise JsonRejected("non-finite number")
            elif kind is str:
                if strings and _SURROGATE.search(child):
                    raise JsonRejected("lone surrogate in a string")
            elif not (child is None or kind is bool):
                raise JsonRejected(f"not a JSON value: {kind.__name__}")
    return keys


_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def canonical(obj: Any) -> bytes:
    """The bytes that get signed: sorted keys, no spaces, UTF-8."""
    return _CANONICAL.encode(obj).encode()


def b64e(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64d(text: str) -> bytes:
    """base64url without padding, in its one canonical spelling: anything else (padding, a
    character outside the alphabet, spare bits set) is a ValueError, so a signature or key
    has exactly one text form and a document exactly one digest."""
    if not isinstance(text, str):
        raise ValueError("base64 field is not a string")
    if not text.isascii():
        raise ValueError("base64 field is not ASCII")
    raw = base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)
    if b64e(raw) != text:
        raise ValueError("base64 field is not in canonical form")
    return raw


_DURATION = re.compile(r"^\s*(\d+)\s*([smhdw]?)\s*$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(text: str) -> int:
    """'3d', '12h', '90m', '45s', '2w' or plain seconds -> seconds."""
    m = _DURATION.match(str(text).lower())
    if not m:
        raise ValueError(f"not a duration: {text!r} (use e.g. 3d, 12h, 90m, 3600)")
    return int(m.group(1)) * _UNITS[m.group(2)]


def format_duration(seconds: int) -> str:
    """A short human text: '2 days 3 hours', '45 minutes', '20 seconds'."""
    seconds = max(0, int(seconds))
    days, rem = divmod(seconds, 86400)
    hours, rem = divmod(rem, 3600)
    minutes, secs = divmod(rem, 60)
    parts = [(days, "day"), (hours, "hour"), (minutes, "minute")] if seconds >= 60 else [(secs, "second")]
    words = [f"{n} {unit}{'s' if n != 1 else ''}" for n, unit in parts if n]
    return " ".join(words[:2]) or "0 seconds"
