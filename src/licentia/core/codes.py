"""Identifiers: ticket ids, container serials, item ids.

Ticket ids carry 120 random bits in Crockford base32, grouped by five, and end in a
Damm check character over GF(32), so a mistyped ticket is caught before any network call.
"""

from __future__ import annotations

import re
import secrets

from .errors import InvalidCode as InvalidCode  # re-exported

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_VALUE = {c: i for i, c in enumerate(ALPHABET)}
_ALIASES = {"O": "0", "I": "1", "L": "1"}

TICKET_DATA_CHARS = 24  # 120 bits
SERIAL_PREFIX_MACHINE = "130"
SERIAL_PREFIX_CLOUD = "140"  # a cloud container, held by License Central
SERIAL_CHARS = 12  # 60 bits
ITEM_ID_RE = re.compile(r"[A-Z]-[0-9]{5,10}-[0-9]{1,10}")  # whole text only (fullmatch), ASCII digits
#: the white space an item id given to License Central may carry at its ends: ASCII space,
#: tab, LF, CR, form feed and vertical tab (str.strip() without arguments would also take
#: U+001C to U+001F)
ITEM_ID_SPACE = " \t\n\r\f\v"
UINT32_MAX = 0xFFFFFFFF


def _times_x(v: int) -> int:
    """Multiply by x in GF(32) modulo x^5 + x^2 + 1."""
    v <<= 1
    return v ^ 0b100101 if v & 0b100000 else v


def _check_char(chars: str) -> str:
    """Damm check over the quasigroup a*b = x·a + b in GF(32): catches every single
    substitution and every transposition of two adjacent different characters."""
    interim = 0
    for ch in chars:
        interim = _times_x(interim) ^ _VALUE[ch]
    return ALPHABET[_times_x(interim)]


def _normalize(text: str) -> str:
    if not text.isascii():  # before upper(): "ı".upper() is "I", "ſ".upper() is "S"
        raise InvalidCode("a code holds ASCII letters, digits and dashes only")
    out = []
    for ch in text.upper():
        if ch in "- \t":
            continue
        ch = _ALIASES.get(ch, ch)
        if ch not in _VALUE:
            raise InvalidCode(f"character {ch!r} is not allowed")
        out.append(ch)
    return "".join(out)


def _group(chars: str, size: int = 5) -> str:
    return "-".join(chars[i : i + size] for i in range(0, len(chars), size))


def new_ticket_id() -> str:
    data = "".join(secrets.choice(ALPHABET) for _ in range(TICKET_DATA_CHARS))
    return _group(data + _check_char(data))


def normalize_ticket(text: str) -> str:
    """Return the canonical grouped form of a ticket id, or raise InvalidCode."""
    if not isinstance(text, str):
        raise InvalidCode("a ticket id is text")
    chars = _normalize(text)
    if len(chars) != TICKET_DATA_CHARS + 1:
        raise InvalidCode(f"a ticket id has {TICKET_DATA_CHARS + 1} characters, this one has {len(chars)}")
    if _check_char(chars[:-1]) != chars[-1]:
        raise InvalidCode("the ticket id's check character does not match: it was mistyped")
    return _group(chars)


def is_ticket_id(text: str) -> bool:
    try:
        normalize_ticket(text)
    except InvalidCode:
        return False
    return True


def new_serial(prefix: str = SERIAL_PREFIX_MACHINE) -> str:
    data = "".join(secrets.choice(ALPHABET) for _ in range(SERIAL_CHARS))
    return f"{prefix}-" + "-".join(data[i : i + 4] for i in range(0, SERIAL_CHARS, 4))


_SERIAL_RE = re.compile(r"1[0-9][0-9](-[0-9A-HJKMNP-TV-Z]{4}){3}")  # whole text only (fullmatch)


def check_serial(text: str) -> str:
    if not isinstance(text, str) or not _SERIAL_RE.fullmatch(text):
        raise InvalidCode("not a container serial")
    return text


def check_firm_code(value: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= UINT32_MAX:
        raise InvalidCode("a firm code is a whole number from 1 to 4294967295")
    return value


def check_product_code(value: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= UINT32_MAX:
        raise InvalidCode("a product code is a whole number from 0 to 4294967295")
    return value


def check_feature(value: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= UINT32_MAX:
        raise InvalidCode("a feature code or map is a 32-bit whole number")
    return value


def check_item_id(text: str) -> str:
    if not isinstance(text, str) or not ITEM_ID_RE.fullmatch(text):
        raise InvalidCode("an item id looks like F-00002-145")
    return text


def normalize_item_id(text: str) -> str:
    """An item id as given to License Central: ASCII only (checked before upper-casing),
    ``ITEM_ID_SPACE`` stripped from its ends, upper-cased, then checked (InvalidCode)."""
    if not isinstance(text, str) or not text.isascii():  # before upper(): "ı".upper() is "I"
        raise InvalidCode("an item id looks like F-00002-145")
    return check_item_id(text.strip(ITEM_ID_SPACE).upper())
