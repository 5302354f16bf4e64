"""Regenerate tests/vectors/*.json from the Python implementation.

    .venv/bin/python tests/vectors/generate.py              # every file
    .venv/bin/python tests/vectors/generate.py anchoring    # only the files named

Every run makes fresh keys. The firm keys that sign licenses and updates are thrown
away: the files hold their public keys only. The vectors publish private keys only where
a case needs one to be checked by another implementation (a container's keys to open a
sealed product key, a session key to open a lease's product key, a firm secret to derive
a product key, a product key to read a protected data file); each is named as such. They
are test material and protect nothing.

Each case states the verdict the rules give; test_vectors.py checks every case against
the implementation, so an expectation that the code does not meet fails there.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import hashlib
import hmac
import io
import json
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent / "src"))

from licentia.core import anchoring, cloudlink, codes, exchange, grants, hazmat, keyfile, proxy  # noqa: E402
from licentia.core.documents import (  # noqa: E402
    DocumentInvalid,
    document_digest,
    parse,
    sign_document,
    signing_message,
)
from licentia.core.encoding import b64d, b64e, canonical, strict_loads  # noqa: E402
from licentia.core.license import CLOCK_TOLERANCE, AccessRequest, LicenseEntry, Options  # noqa: E402
from licentia.protect import data as protected_data  # noqa: E402
from licentia.protect import fileformat  # noqa: E402

NOW = 1_800_000_000
DAY = 86400
FIRM = 10101
OTHER_FIRM = 20202
SERIAL = "130-7K2M-QX4V-9TBA"
OTHER_SERIAL = "130-AAAA-BBBB-CCCC"
SERVER_SERIAL = "130-5RVR-7K2M-0001"
CLIENT_SERIAL = "130-C1NT-QX4V-0002"
NON_ASCII_TEXT = "Grüße aus Köln — 製品 😀"
B64_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


# ---------------------------------------------------------------- helpers


def pem(key: hazmat.Ed25519PrivateKey) -> str:
    return hazmat.public_pem(key.public_key())


def pub_b64(key: Any) -> str:
    return b64e(hazmat.raw_public(key.public_key()))


def priv_b64(key: Any) -> str:
    return b64e(hazmat.raw_private(key))


def kid(key: hazmat.Ed25519PrivateKey) -> str:
    return hazmat.key_id(key.public_key())


def doc_case(name: str, document: Any, expect: str, **extra: Any) -> dict[str, Any]:
    """A document case; a valid one carries the document's digest."""
    out: dict[str, Any] = {"name": name}
    out.update(extra)
    out["document"] = document
    out["expect"] = expect
    if expect == "ok":
        doc = strict_loads(document) if isinstance(document, str) else document
        out["digest"] = document_digest(doc)
    return out


def sign_raw(doc_type: str, payload: dict[str, Any], key: hazmat.Ed25519PrivateKey) -> dict[str, Any]:
    """The envelope ``sign_document`` makes, without its checks of what a document may hold
    (the vectors need well-signed documents that a reader must refuse)."""
    payload = {**payload, "type": doc_type, "v": 1}
    sig = hazmat.sign(key, signing_message(doc_type, payload))
    return {"payload": payload, "kid": hazmat.key_id(key.public_key()), "sig": b64e(sig)}


def resign(doc: dict[str, Any], key: hazmat.Ed25519PrivateKey, change: Any = None, doc_type: str | None = None):
    """A document with the same payload (changed by ``change``), signed again by ``key``."""
    payload = copy.deepcopy(doc["payload"])
    kind = doc_type or payload.pop("type")
    payload.pop("type", None)
    payload.pop("v", None)
    if change is not None:
        change(payload)
    return sign_raw(kind, payload, key)


REFUSED = (DocumentInvalid, codes.InvalidCode, ValueError, KeyError, TypeError)


def current(check: Any, accepted: str, refused: str | None = None, *, ok: str = "ok", bad: str = "invalid"):
    """The Python implementation's verdict on an input the format leaves loose or that a
    stricter reading refuses: (expect, note). Used only where the verdict is recorded as the
    implementation's current behaviour rather than stated as a rule."""
    try:
        check()
    except REFUSED:
        return bad, refused
    return ok, accepted


def probed(name: str, document: Any, check: Any, accepted: str, refused: str | None = None, **extra: Any):
    """A document case whose verdict is the implementation's current one (see ``current``)."""
    expect, note = current(lambda: check(copy.deepcopy(document)), accepted, refused)
    if note:
        extra["note"] = note
    if expect != "ok":
        extra.pop("after", None)
        extra.pop("fields", None)
    return doc_case(name, document, expect, **extra)


def edited(doc: dict[str, Any], change: Any) -> dict[str, Any]:
    """A copy changed after signing (the signature no longer matches, or the envelope is odd)."""
    out = copy.deepcopy(doc)
    change(out)
    return out


def spare_bits_set(text: str) -> str:
    """The same bytes in base64url with a spare bit of the last character set."""
    return text[:-1] + B64_ALPHABET[B64_ALPHABET.index(text[-1]) ^ 1]


def write(name: str, data: dict[str, Any]) -> int:
    data["cases"] = [{"name": c["name"], **{k: v for k, v in c.items() if k != "name"}} for c in data["cases"]]
    (HERE / f"{name}.json").write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return len(data["cases"])


def entry_doc(
    key: hazmat.Ed25519PrivateKey,
    *,
    options: Options | None = None,
    firm_code: int = FIRM,
    product_code: int = 1,
    feature_map: int = 0x0F,
    text: str = "Vector product",
    license_id: int = 7,
    serial: str = SERIAL,
    container_key: str = "",
    issued: int = NOW - 10 * DAY,
    ticket: str | None = None,
    key_versions: tuple[int, ...] = (1,),
    consumed_base: int = 0,
    first_use: int | None = None,
    activation: int = 1,
) -> dict[str, Any]:
    return LicenseEntry(
        firm_code=firm_code,
        product_code=product_code,
        feature_map=feature_map,
        text=text,
        license_id=license_id,
        serial=serial,
        container_key=container_key,
        options=options or Options(),
        issued=issued,
        ticket=ticket,
        key_versions=key_versions,
        consumed_base=consumed_base,
        first_use=first_use,
        activation=activation,
    ).sign(key)


# ---------------------------------------------------------------- codes.json


def _ticket_with(pred: Any, tries: int = 200_000) -> str:
    for _ in range(tries):
        t = codes.new_ticket_id()
        if pred(t):
            return t
    raise RuntimeError("no ticket found")


def group(chars: str) -> str:
    """Characters in groups of five joined by '-' (the written form of a ticket id)."""
    return "-".join(chars[i : i + 5] for i in range(0, len(chars), 5))


def _plain(t: str) -> str:
    return t.replace("-", "")


def _other_char(c: str, step: int = 1) -> str:
    return codes.ALPHABET[(codes.ALPHABET.index(c) + step) % 32]


def _undetected_double_substitution(t: str) -> tuple[str, tuple[int, int]]:
    chars = _plain(t)
    for i, j in ((3, 9), (4, 17), (1, 20), (6, 11)):
        for a in codes.ALPHABET:
            if a == chars[i]:
                continue
            for b in codes.ALPHABET:
                if b == chars[j]:
                    continue
                typo = chars[:i] + a + chars[i + 1 : j] + b + chars[j + 1 :]
                if codes.is_ticket_id(typo):
                    return group(typo), (i, j)
    raise RuntimeError("no double substitution found")


def _undetected_shift(t: str) -> tuple[str, tuple[int, int]]:
    """A character left out at one place and another typed in at a later one."""
    chars = _plain(t)
    for drop in range(0, 10):
        for insert in range(15, 25):
            rest = chars[:drop] + chars[drop + 1 :]
            for c in codes.ALPHABET:
                typo = rest[:insert] + c + rest[insert:]
                if typo != chars and codes.is_ticket_id(typo):
                    return group(typo), (drop, insert)
    raise RuntimeError("no shift found")


def build_codes() -> dict[str, Any]:
    cases: list[dict[str, Any]] = []

    def ticket(name: str, value: Any, expect: str, *, intended: str | None = None, **extra: Any) -> None:
        c: dict[str, Any] = {"name": name, "kind": "ticket", "input": value}
        if intended is not None:
            c["intended"] = intended
        c.update(extra)
        c["expect"] = expect
        if expect == "valid":
            c["normalized"] = codes.normalize_ticket(value)
        cases.append(c)

    for i in range(6):
        t = codes.new_ticket_id()
        ticket(f"ticket-random-{i + 1}", t, "valid")
    ticket("ticket-all-zeros", "00000-00000-00000-00000-00000", "valid", note="Valid: the check of all zeros is 0.")

    base = _ticket_with(lambda t: "0" in t[:-1] and "1" in t[:-1] and "S" in t[:-1])
    plain = _plain(base)
    ticket("base-ticket", base, "valid", note="The ticket the typo cases below were meant to be.")
    ticket("lower-case", base.lower(), "valid", intended=base, typo="case")
    ticket("mixed-case", "".join(c.lower() if i % 2 else c for i, c in enumerate(base)), "valid", intended=base)
    ticket("no-separators", plain, "valid", intended=base)
    ticket("spaces-for-dashes", base.replace("-", " "), "valid", intended=base)
    ticket(
        "tabs-and-stray-dashes", "\t" + plain[:3] + "--" + plain[3:11] + " " + plain[11:] + "-", "valid", intended=base
    )
    ticket("letter-o-for-zero", base.replace("0", "O"), "valid", intended=base, typo="look-alike")
    ticket("lower-o-for-zero", base.replace("0", "o"), "valid", intended=base, typo="look-alike")
    ticket("letter-i-for-one", base.replace("1", "I"), "valid", intended=base, typo="look-alike")
    ticket("letter-l-for-one", base.replace("1", "L"), "valid", intended=base, typo="look-alike")
    ticket("lower-l-for-one", base.replace("1", "l"), "valid", intended=base, typo="look-alike")
    ticket("lower-i-for-one", base.replace("1", "i"), "valid", intended=base, typo="look-alike")
    s_pos = plain.index("S")
    for pos in (0, 7, 12, 23, 24):
        typo = plain[:pos] + _other_char(plain[pos], 5) + plain[pos + 1 :]
        ticket(
            f"substitution-at-{pos}",
            group(typo),
            "invalid",
            intended=base,
            typo="single substitution",
            positions=[pos],
        )
    first_diff = next(i for i in range(24) if plain[i] != plain[i + 1])
    for i, j in ((first_diff, first_diff + 1), (11, 12), (23, 24), (0, 2), (2, 20), (0, 24)):
        if plain[i] == plain[j]:
            continue
        swapped = list(plain)
        swapped[i], swapped[j] = swapped[j], swapped[i]
        kind = "adjacent transposition" if j == i + 1 else "transposition of non-adjacent characters"
        ticket(
            f"transposition-{i}-{j}",
            group("".join(swapped)),
            "invalid",
            intended=base,
            typo=kind,
            positions=[i, j],
        )
    ticket(
        "digit-5-for-letter-s",
        group(plain[:s_pos] + "5" + plain[s_pos + 1 :]),
        "invalid",
        intended=base,
        typo="look-alike not folded",
        note="Only O, I and L are folded; 5 for S is a substitution, caught.",
    )
    ticket(
        "u-is-not-folded-to-v",
        group(plain[:5] + "U" + plain[6:]),
        "invalid",
        intended=base,
        note="U is outside the alphabet and is not folded to V.",
    )
    ticket("check-character-left-out", group(plain[:24]), "invalid", intended=base)
    ticket("character-left-out", group(plain[:4] + plain[5:]), "invalid", intended=base)
    ticket("character-doubled", group(plain[:4] + plain[4] + plain[4:]), "invalid", intended=base)
    ticket("underscore-separators", base.replace("-", "_"), "invalid", intended=base)
    ticket("dot-separators", base.replace("-", "."), "invalid", intended=base)
    ticket(
        "fullwidth-digit",
        base.replace("0", "０", 1),
        "invalid",
        intended=base,
        note="Only ASCII characters are read; a full-width digit is refused.",
    )
    ticket("empty", "", "invalid")
    ticket("a-number", 12345, "invalid")
    double, where = _undetected_double_substitution(base)
    ticket(
        "two-substitutions-not-caught",
        double,
        "valid",
        intended=base,
        typo="two substitutions",
        positions=list(where),
        note="Two substitutions can cancel out in the check: a different, valid ticket id.",
    )
    shifted, where = _undetected_shift(base)
    ticket(
        "left-out-and-typed-in-not-caught",
        shifted,
        "valid",
        intended=base,
        typo="deletion and insertion",
        positions=list(where),
        note="A character left out and another typed in later keeps the length; the check can miss it.",
    )

    def unicode_case(name: str, value: str, intended: str, accepted: str) -> None:
        expect, note = current(
            lambda: codes.normalize_ticket(value),
            f"Accepted today: {accepted}",
            "Refused: only ASCII characters are read, before any case folding.",
            ok="valid",
        )
        ticket(name, value, expect, intended=intended, typo="non-ASCII look-alike", note=note)

    unicode_case(
        "long-s",
        group(plain[:s_pos] + "ſ" + plain[s_pos + 1 :]),
        base,
        "Unicode upper-casing turns U+017F into S before the alphabet is checked.",
    )
    one = plain.index("1")
    unicode_case(
        "dotless-i",
        group(plain[:one] + "ı" + plain[one + 1 :]),
        base,
        "Unicode upper-casing turns U+0131 into I, which is folded to 1.",
    )
    ss = _ticket_with(lambda t: "SS" in _plain(t))
    ticket("sharp-s-base", ss, "valid")
    unicode_case(
        "sharp-s",
        ss.replace("SS", "ß", 1),
        ss,
        "Unicode upper-casing turns U+00DF into SS (one character becomes two).",
    )

    def simple(kind: str, name: str, value: Any, expect: str, **extra: Any) -> None:
        c = {"name": name, "kind": kind, "input": value, **extra, "expect": expect}
        cases.append(c)

    for i in range(3):
        simple("serial", f"serial-random-{i + 1}", codes.new_serial(), "valid")
    simple("serial", "serial-fixed", SERIAL, "valid")
    simple("serial", "serial-other-prefix", "199-7K2M-QX4V-9TBA", "valid", note="Any prefix from 100 to 199.")
    simple("serial", "serial-lower-case", SERIAL.lower(), "invalid", note="Serials are not case-folded.")
    simple("serial", "serial-letter-o", "130-7K2M-QX4V-9TBO", "invalid", note="Serials are not look-alike-folded.")
    simple("serial", "serial-letter-u", "130-7K2M-QX4V-9TBU", "invalid")
    simple("serial", "serial-prefix-200", "200-7K2M-QX4V-9TBA", "invalid")
    simple("serial", "serial-prefix-two-digits", "13-7K2M-QX4V-9TBA", "invalid")
    simple("serial", "serial-short-group", "130-7K2M-QX4V-9TB", "invalid")
    simple("serial", "serial-no-dashes", "1307K2MQX4V9TBA", "invalid")
    simple("serial", "serial-trailing-newline", SERIAL + "\n", "invalid")
    simple("serial", "serial-arabic-indic-digit", "1٣0-7K2M-QX4V-9TBA", "invalid")
    simple("serial", "serial-a-number", 130, "invalid")

    simple("item_id", "item-id", "F-00002-145", "valid")
    simple("item_id", "item-id-long-number", "Z-99999-4294967295", "valid")
    simple("item_id", "item-id-ten-digits", "A-00000-9999999999", "valid")
    simple("item_id", "item-id-eleven-digits", "A-00000-99999999999", "invalid")
    simple(
        "item_id",
        "item-id-lower-case",
        "f-00002-145",
        "invalid",
        note="The check itself is case-sensitive (License Central upper-cases and strips an item id first).",
    )
    simple("item_id", "item-id-four-digit-middle", "F-0002-145", "invalid")
    simple("item_id", "item-id-six-digit-middle", "F-100000-145", "valid")
    simple("item_id", "item-id-ten-digit-middle", "F-4294967295-1", "valid")
    simple("item_id", "item-id-eleven-digit-middle", "F-10000000000-1", "invalid")
    simple("item_id", "item-id-two-letters", "FF-00002-145", "invalid")
    simple("item_id", "item-id-no-number", "F-00002-", "invalid")
    simple("item_id", "item-id-arabic-indic-digit", "F-00002-١٤٥", "invalid")
    simple("item_id", "item-id-trailing-space", "F-00002-145 ", "invalid")

    def given(name: str, value: str, expect: str, note: str | None = None) -> None:
        c: dict[str, Any] = {"name": name, "kind": "item_id_given", "input": value}
        if note:
            c["note"] = note
        c["expect"] = expect
        if expect == "valid":
            c["normalized"] = codes.normalize_item_id(value)
        cases.append(c)

    given("item-id-given-lower-case", "f-00002-145", "valid")
    given("item-id-given-spaces-around", "  f-00002-145 ", "valid")
    given(
        "item-id-given-ascii-white-space",
        "\t\n\r\x0b\x0cF-00002-145\x0c\x0b\r\n\t",
        "valid",
        note="Tab, LF, CR, vertical tab and form feed are stripped from both ends.",
    )
    given(
        "item-id-given-unit-separator",
        "F-00002-145\x1f",
        "invalid",
        note="U+001F (and U+001C to U+001E) are not white space here; they are not stripped.",
    )
    given("item-id-given-file-separator", "\x1cF-00002-145", "invalid")
    given("item-id-given-no-break-space", "\u00a0F-00002-145", "invalid", note="Refused: not ASCII.")
    given("item-id-given-inner-space", "F-00002 -145", "invalid", note="Only the ends are stripped.")
    given(
        "item-id-given-dotless-i",
        "\u0131-00002-145",
        "invalid",
        note="Refused: not ASCII (checked before upper-casing, which would turn it into I).",
    )

    for name, value, expect in (
        ("firm-code-zero", 0, "invalid"),
        ("firm-code-one", 1, "valid"),
        ("firm-code-max", 4294967295, "valid"),
        ("firm-code-over-max", 4294967296, "invalid"),
        ("firm-code-negative", -1, "invalid"),
        ("firm-code-true", True, "invalid"),
        ("firm-code-text", "10101", "invalid"),
        ("firm-code-float", 10101.0, "invalid"),
    ):
        simple("firm_code", name, value, expect)
    for name, value, expect in (
        ("product-code-zero", 0, "valid"),
        ("product-code-max", 4294967295, "valid"),
        ("product-code-over-max", 4294967296, "invalid"),
        ("product-code-negative", -1, "invalid"),
        ("product-code-false", False, "invalid"),
    ):
        simple("product_code", name, value, expect)
    for name, value, expect in (
        ("feature-zero", 0, "valid"),
        ("feature-all-bits", 4294967295, "valid"),
        ("feature-bit-32", 4294967296, "invalid"),
        ("feature-negative", -1, "invalid"),
    ):
        simple("feature", name, value, expect)

    long_s = next(c for c in cases if c["name"] == "long-s")
    ascii_rule = "refuse any character that is not ASCII, " if long_s["expect"] == "invalid" else ""
    return {
        "description": (
            "Ticket ids, container serials, item ids and the ranges of firm codes, product codes and feature "
            "codes. A ticket id is 24 random characters and one check character from the alphabet "
            "0123456789ABCDEFGHJKMNPQRSTVWXYZ, written in five groups of five joined by '-'. Reading one: "
            + ascii_rule
            + "upper-case the text, drop '-', space and tab wherever they are, fold O to 0 and I and L to 1, refuse "
            "any other character outside the alphabet, require 25 characters, and require the last to be the check "
            "of the first 24. The check: interim = 0; for each character, interim = (x * interim) XOR value, "
            "where x * v in GF(32) with the polynomial x^5 + x^2 + 1 is v << 1, XOR 0b100101 when bit 5 is set; "
            "the check character is ALPHABET[x * interim]. `normalized` is the grouped form. A serial is "
            "`1dd-XXXX-XXXX-XXXX` (three ASCII digits starting with 1, then three groups of four alphabet "
            "characters, no folding, no check character). An item id is one letter A-Z, five to ten ASCII "
            "digits and one to ten ASCII digits joined by '-' (`item_id` cases check that form as written; "
            "`item_id_given` cases read an item id as License Central reads one it is given: refuse any character "
            "that is not ASCII, strip space, tab, LF, CR, vertical tab and form feed from both ends, upper-case, "
            "then check the form; `normalized` is the result). Firm codes are whole numbers 1..4294967295, "
            "product codes and feature codes 0..4294967295; true and false are not numbers."
        ),
        "alphabet": codes.ALPHABET,
        "outcomes": {
            "valid": {"meaning": "accepted; for a ticket id, `normalized` is its grouped form", "error": None},
            "invalid": {
                "meaning": "refused as not well formed, or a ticket id whose check does not match",
                "error": "InvalidCode",
            },
        },
        "cases": cases,
    }


# ---------------------------------------------------------------- canonical.json


def build_canonical() -> dict[str, Any]:
    cases: list[dict[str, Any]] = []

    def canon(name: str, text: str, expected: str, note: str | None = None) -> None:
        data = expected.encode("utf-8")
        c = {
            "name": name,
            "kind": "canonical",
            "input": text,
            "canonical": expected,
            "canonical_hex": data.hex(),
            "sha256": hazmat.sha256(data).hex(),
        }
        if note:
            c["note"] = note
        c["expect"] = "accepted"
        cases.append(c)

    canon(
        "sorted-keys-no-spaces",
        '{ "b": 1, "a": [1, 2, {"d": null, "c": true}] }',
        '{"a":[1,2,{"c":true,"d":null}],"b":1}',
    )
    canon(
        "integer-like-keys-sort-as-text",
        '{"2": "two", "101": "hundred and one", "10": "ten", "10101": "firm", "1": "one"}',
        '{"1":"one","10":"ten","101":"hundred and one","10101":"firm","2":"two"}',
        note="Keys are compared as text, never as numbers (JavaScript objects list integer-like keys first).",
    )
    canon(
        "non-ascii-written-as-utf8",
        '{"text": "Gr\\u00fc\\u00dfe \\ud83d\\ude00", "other": "K\u00f6ln"}',
        '{"other":"Köln","text":"Grüße 😀"}',
        note="Non-ASCII characters are written as raw UTF-8, never as \\u escapes, whatever the input used.",
    )
    canon(
        "keys-sorted-by-code-point",
        '{"\\ue000": "private use", "\\ud83d\\ude00": "emoji", "z": "ascii", "\\u00e9": "latin"}',
        '{"z":"ascii","é":"latin","\ue000":"private use","😀":"emoji"}',
        note="Keys sort by Unicode code point (U+E000 before U+1F600); sorting by UTF-16 code units would put the "
        "emoji first.",
    )
    canon(
        "escapes",
        '{"s": "quote \\" backslash \\\\ slash / newline \\n tab \\t cr \\r bs \\b ff \\f nul \\u0000 us \\u001f '
        'del \\u007f ls \\u2028"}',
        '{"s":"quote \\" backslash \\\\ slash / newline \\n tab \\t cr \\r bs \\b ff \\f nul \\u0000 us \\u001f '
        'del \u007f ls \u2028"}',
        note="Only '\"', '\\' and characters below U+0020 are escaped: \\b \\f \\n \\r \\t by name, the others as "
        "\\u00XX with lower-case hex; '/', U+007F and U+2028 are written as they are.",
    )
    canon(
        "nested-objects", '{"z": {"b": {"y": 1, "x": 2}, "a": []}, "a": {}}', '{"a":{},"z":{"a":[],"b":{"x":2,"y":1}}}'
    )
    canon(
        "large-integers",
        '{"max": 9223372036854775807, "min": -9223372036854775808, "over_2_53": 9007199254740993}',
        '{"max":9223372036854775807,"min":-9223372036854775808,"over_2_53":9007199254740993}',
        note="Whole numbers are exact in 64 bits: a reader must not round them through a double.",
    )
    canon("negative-zero-integer", '{"n": -0}', '{"n":0}', note="The integer -0 is read as 0.")
    canon(
        "floats",
        '{"a": 1.0, "b": 0.1, "c": 1e16, "d": 1E2, "e": -0.0}',
        '{"a":1.0,"b":0.1,"c":1e+16,"d":100.0,"e":-0.0}',
        note="Floats are written as docs/formats.md 1.2 item 9 states: the shortest decimal that reads back to "
        "the same double, Python's spelling (exponent below 1e-4 and from 1e16, '.0' after an integral value). "
        "No signed document holds a float (licenses.json, float-in-unknown-field), so no signature or digest "
        "depends on this spelling.",
    )
    canon("empty-object", "{}", "{}")
    canon("top-level-array", '[3, "x", false]', '[3,"x",false]')

    def strict(name: str, raw: bytes, expect: str, note: str | None = None) -> None:
        c: dict[str, Any] = {"name": name, "kind": "strict", "input_hex": raw.hex()}
        with contextlib.suppress(UnicodeDecodeError):
            c["input"] = raw.decode("utf-8")
        if note:
            c["note"] = note
        c["expect"] = expect
        cases.append(c)

    strict("plain-object", b'{"a": [1, 2.5, "x", null, true]}', "accepted")
    strict("nan", b'{"a": NaN}', "refused")
    strict("infinity", b'{"a": Infinity}', "refused")
    strict("minus-infinity", b'{"a": -Infinity}', "refused")
    strict("number-overflows-to-infinity", b'{"a": 1e400}', "refused")
    strict("negative-number-overflows", b'{"a": -1e400}', "refused")
    strict("largest-finite-double", b'{"a": 1.7976931348623157e308}', "accepted")
    strict(
        "number-underflows-to-zero",
        b'{"a": 1e-400, "b": -1e-400}',
        "accepted",
        note="A float too small for a double reads as 0.0 (and -0.0): finite, so accepted; it is still a float, "
        "which a signed document refuses (3.1 item 6).",
    )
    strict("int64-max", b'{"a": 9223372036854775807}', "accepted")
    strict("int64-max-plus-one", b'{"a": 9223372036854775808}', "refused")
    strict("int64-min", b'{"a": -9223372036854775808}', "accepted")
    strict("int64-min-minus-one", b'{"a": -9223372036854775809}', "refused")
    strict("lone-high-surrogate-escape", b'{"a": "\\ud800"}', "refused")
    strict("lone-low-surrogate-escape", b'{"a": "x\\udc00"}', "refused")
    strict("lone-surrogate-in-key", b'{"\\ud800": 1}', "refused")
    strict("surrogate-pair-escape", b'{"a": "\\ud83d\\ude00"}', "accepted")
    strict(
        "surrogate-encoded-in-utf8",
        b'{"a": "\xed\xa0\x80"}',
        "refused",
        note="UTF-8 bytes of a surrogate code point are not UTF-8.",
    )
    strict("invalid-utf8", b'{"a": "\xff"}', "refused")
    strict("overlong-utf8", b'{"a": "\xc0\xaf"}', "refused")
    strict("byte-order-mark", b'\xef\xbb\xbf{"a": 1}', "refused")
    strict("duplicate-key", b'{"a": 1, "a": 1}', "refused")
    strict("duplicate-key-spelled-differently", b'{"a": 1, "\\u0061": 2}', "refused")
    strict("duplicate-key-nested", b'{"a": {"b": 1, "c": 2, "b": 3}}', "refused")
    strict("same-key-in-different-objects", b'{"a": {"b": 1}, "c": {"b": 1}}', "accepted")
    strict("string-holding-key-like-text", b'{"a": "\\": x\\":", "b": 1}', "accepted")
    strict("nested-32-arrays", b"[" * 32 + b"]" * 32, "accepted", note="The outermost array counts as 1.")
    strict("nested-33-arrays", b"[" * 33 + b"]" * 33, "refused")
    strict("nested-32-objects", b'{"a":' * 31 + b'{"a":1}' + b"}" * 31, "accepted")
    strict("nested-33-objects", b'{"a":' * 32 + b'{"a":1}' + b"}" * 32, "refused")
    strict("nested-100000-arrays", b"[" * 100000 + b"]" * 100000, "refused")
    strict("trailing-text", b'{"a": 1} x', "refused")
    strict("trailing-white-space", b'{"a": 1} \n', "accepted")
    strict("no-break-space-as-white-space", '{"a":\u00a01}'.encode(), "refused")
    strict("raw-tab-in-string", b'{"a": "x\ty"}', "refused")
    strict("single-quotes", b"{'a': 1}", "refused")
    strict("leading-zero", b'{"a": 01}', "refused")
    strict("trailing-comma", b'{"a": 1,}', "refused")
    strict(
        "top-level-scalar",
        b"17",
        "accepted",
        note="Strict reading accepts any JSON value; documents then require an object.",
    )

    def b64(name: str, text: str, expect: str, note: str | None = None) -> None:
        c: dict[str, Any] = {"name": name, "kind": "base64url", "input": text}
        if note:
            c["note"] = note
        c["expect"] = expect
        if expect == "accepted":
            c["bytes_hex"] = b64d(text).hex()
        cases.append(c)

    b64("empty", "", "accepted")
    b64("three-bytes", "AQID", "accepted")
    b64("two-bytes", "AQI", "accepted")
    b64("one-byte", "AQ", "accepted")
    b64("url-alphabet", "-_8", "accepted")
    b64("all-ones", "____", "accepted")
    b64("padding-two", "AQ==", "refused")
    b64("padding-one", "AQI=", "refused")
    b64("padding-on-full-block", "AQID====", "refused")
    b64("standard-alphabet", "+/8", "refused")
    b64("trailing-bits-set-one-byte", "AR", "refused", note="Same byte as AQ with a spare bit set.")
    b64("trailing-bits-set-two-bytes", "AQJ", "refused", note="Same bytes as AQI with a spare bit set.")
    b64("length-one-mod-four", "AQIDB", "refused")
    b64("white-space", "AQ ID", "refused")
    b64("newline", "AQID\n", "refused")
    b64("non-ascii", "AQIDé", "refused")

    for i in range(3):
        key = hazmat.Ed25519PrivateKey.generate()
        raw = hazmat.raw_public(key.public_key())
        cases.append(
            {
                "name": f"key-id-{i + 1}",
                "kind": "key-id",
                "public_key": b64e(raw),
                "public_key_hex": raw.hex(),
                "public_key_pem": pem(key),
                "expect": "accepted",
                "kid": hazmat.key_id(key.public_key()),
            }
        )
    payload = {"text": NON_ASCII_TEXT, "slots": {"2": 1, "10": 2, "101": 3}, "type": "license", "v": 1}
    message = signing_message("license", payload)
    cases.append(
        {
            "name": "signing-input",
            "kind": "signing-input",
            "type": "license",
            "payload": payload,
            "expect": "accepted",
            "message": message.decode("utf-8"),
            "message_hex": message.hex(),
        }
    )
    return {
        "description": (
            "The byte-level rules every document rests on. `canonical` cases: the input JSON text, read strictly, "
            "written canonically: object keys sorted by Unicode code point, no white space, strings as raw UTF-8 "
            "with only the escapes JSON requires; `canonical` is the result as text, `canonical_hex` its UTF-8 "
            "bytes and `sha256` their SHA-256. `strict` cases: whether JSON from outside is accepted: UTF-8 "
            "without a byte-order mark, no NaN or Infinity, no number that overflows a double, whole numbers "
            "within signed 64 bits, no lone surrogate (escaped or encoded), no duplicate key in any object, "
            "nesting at most 32 deep (an array or object counts one level), nothing after the value but white "
            "space; `input_hex` holds the exact bytes (`input` the same as text where it is UTF-8). `base64url` "
            "cases: the alphabet A-Z a-z 0-9 '-' '_', no padding, no white space, and the spare bits of the last "
            "character zero, so that bytes have exactly one spelling; `bytes_hex` is what an accepted text "
            "decodes to. `key-id` cases: a key id is the first 16 lower-case hex digits of SHA-256 over the raw "
            "32-byte Ed25519 public key. A signed document may restrict numbers further (licenses.json, "
            "integer-beyond-2-53). `signing-input` case: the bytes a signature covers, "
            "'licentia/' + type + '\\n' + canonical payload."
        ),
        "outcomes": {
            "accepted": {"meaning": "read, with the result given", "error": None},
            "refused": {
                "meaning": "not acceptable input (a document holding it is refused before any field is read)",
                "error": "DocumentMalformed",
            },
        },
        "cases": cases,
    }


# ---------------------------------------------------------------- licenses.json (firm-signed documents)


def build_licenses(firm: Any, foreign: Any, container_pub: str, ticket: str) -> dict[str, Any]:
    def lic(**kw: Any) -> dict[str, Any]:
        kw.setdefault("container_key", container_pub)
        kw.setdefault("ticket", ticket)
        return entry_doc(kw.pop("key", firm), **kw)

    firm_keys = {kid(firm): firm.public_key()}

    def check(document: Any) -> None:
        LicenseEntry.verify(parse(document) if isinstance(document, str) else document, firm_keys)

    valid = lic(options=Options(expires=NOW + 30 * DAY, units=100))
    non_ascii = lic(text=NON_ASCII_TEXT, license_id=8, product_code=2, options=Options(data="Zürich ✓".encode()))
    cases = [
        doc_case(
            "valid",
            valid,
            "ok",
            signing_input=signing_message("license", valid["payload"]).decode("utf-8"),
            fields={"license_id": 7, "text": "Vector product", "serial": SERIAL},
        ),
        doc_case(
            "valid-non-ascii-text",
            non_ascii,
            "ok",
            fields={"license_id": 8, "text": NON_ASCII_TEXT, "serial": SERIAL},
            note="options.data decodes to the UTF-8 bytes of 'Zürich ✓'.",
        ),
        doc_case(
            "valid-as-escaped-text",
            json.dumps(non_ascii, indent=2, ensure_ascii=True),
            "ok",
            fields={"license_id": 8, "text": NON_ASCII_TEXT, "serial": SERIAL},
            note="The same document as text with \\u escapes and white space: the digest is over the canonical "
            "form, so it equals the digest of valid-non-ascii-text.",
        ),
        doc_case(
            "expired-still-verifies",
            lic(options=Options(expires=NOW - 1)),
            "ok",
            note="Verification does not look at time; evaluation.json does.",
        ),
        doc_case("tampered", edited(valid, lambda d: d["payload"].update(feature_map=0xFF)), "invalid"),
        doc_case("tampered-non-ascii-text", edited(non_ascii, lambda d: d["payload"].update(text="Grusse")), "invalid"),
        doc_case("foreign-firm-key", lic(key=foreign), "invalid"),
        doc_case("truncated", json.dumps(valid)[:-30], "invalid"),
        doc_case(
            "signed-as-another-type",
            resign(valid, firm, doc_type="update"),
            "invalid",
            note="A valid signature over the same payload for type 'update' (and type field 'update').",
        ),
        doc_case(
            "type-field-changed",
            edited(valid, lambda d: d["payload"].update(type="update")),
            "invalid",
        ),
        doc_case(
            "kid-upper-case",
            edited(valid, lambda d: d.update(kid=d["kid"].upper())),
            "invalid",
            note="Key ids are lower-case hex and compared exactly.",
        ),
        doc_case("kid-unknown", edited(valid, lambda d: d.update(kid="0000000000000000")), "invalid"),
        doc_case("kid-of-foreign-key", edited(valid, lambda d: d.update(kid=kid(foreign))), "invalid"),
        doc_case("sig-padded", edited(valid, lambda d: d.update(sig=d["sig"] + "==")), "invalid"),
        doc_case(
            "sig-spare-bits-set",
            edited(valid, lambda d: d.update(sig=spare_bits_set(d["sig"]))),
            "invalid",
            note="Same signature bytes in a second spelling: refused, so a document has exactly one digest.",
        ),
        doc_case(
            "envelope-extra-key",
            edited(valid, lambda d: d.update(note="x")),
            "invalid",
            note="The envelope has exactly the keys payload, kid and sig.",
        ),
        doc_case("envelope-missing-kid", edited(valid, lambda d: d.pop("kid")), "invalid"),
        doc_case("version-2", _with_version(valid, firm, 2), "invalid"),
        doc_case("version-as-text", _with_version(valid, firm, "1"), "invalid"),
        doc_case("version-true", _with_version(valid, firm, True), "invalid"),
        probed(
            "unknown-payload-field",
            resign(valid, firm, lambda p: p.update(comment="not in the format")),
            check,
            "Accepted: readers ignore a payload field they do not know (the signature covers it).",
            fields={"license_id": 7},
        ),
        probed(
            "unknown-option",
            resign(valid, firm, lambda p: p["options"].update(colour="blue")),
            check,
            "Accepted today: an unknown option is ignored.",
            "Refused: an option the reader does not know could be a restriction it cannot enforce.",
        ),
        doc_case(
            "optional-ticket-absent",
            resign(valid, firm, lambda p: p.pop("ticket")),
            "ok",
            note="An optional field may be absent or null: both mean none.",
        ),
        doc_case(
            "older-entry-without-counters",
            resign(valid, firm, lambda p: [p.pop(k) for k in ("consumed_base", "first_use", "activation")]),
            "ok",
            note="consumed_base absent means 0, first_use absent means null, activation absent means 0.",
        ),
        doc_case("license-id-as-text", resign(valid, firm, lambda p: p.update(license_id="7")), "invalid"),
        doc_case(
            "feature-map-true",
            resign(valid, firm, lambda p: p.update(feature_map=True)),
            "invalid",
            note="true is not a number.",
        ),
        doc_case("firm-code-zero", resign(valid, firm, lambda p: p.update(firm_code=0)), "invalid"),
        doc_case("product-code-over-32-bits", resign(valid, firm, lambda p: p.update(product_code=2**32)), "invalid"),
        doc_case(
            "serial-lower-case", resign(valid, firm, lambda p: p["container"].update(serial=SERIAL.lower())), "invalid"
        ),
        doc_case("issued-as-float", resign(valid, firm, lambda p: p.update(issued=float(NOW))), "invalid"),
        doc_case("negative-option", resign(valid, firm, lambda p: p["options"].update(expires=-1)), "invalid"),
        doc_case("quantity-missing", resign(valid, firm, lambda p: p["options"].pop("quantity")), "invalid"),
        doc_case("data-padded-base64", resign(valid, firm, lambda p: p["options"].update(data="AQ==")), "invalid"),
        doc_case("local-only-as-text", resign(valid, firm, lambda p: p["options"].update(local_only="yes")), "invalid"),
        doc_case("metering-unknown", resign(valid, firm, lambda p: p["options"].update(metering="remote")), "invalid"),
        doc_case("key-versions-zero", resign(valid, firm, lambda p: p.update(key_versions=[0])), "invalid"),
        doc_case(
            "key-versions-repeated",
            resign(valid, firm, lambda p: p.update(key_versions=[1, 2, 1])),
            "invalid",
            note="Refused: key_versions lists each version once.",
        ),
        doc_case(
            "sig-non-canonical-s",
            edited(valid, lambda d: d.update(sig=non_canonical_s(d["sig"]))),
            "invalid",
            note="The same signature with S + L in place of S (L: the order of the Ed25519 base point). Refused: "
            "S must be below L (RFC 8032 5.1.7); a library that reduces S modulo L would accept it.",
        ),
        probed(
            "negative-license-id",
            resign(valid, firm, lambda p: p.update(license_id=-7)),
            check,
            "Accepted today: license_id has no range check.",
        ),
        probed(
            "license-id-zero",
            resign(valid, firm, lambda p: p.update(license_id=0)),
            check,
            "Accepted today: license_id has no range check.",
        ),
        probed(
            "issued-negative",
            resign(valid, firm, lambda p: p.update(issued=-1)),
            check,
            "Accepted today: issued has no range check.",
        ),
        probed(
            "ticket-not-in-canonical-form",
            resign(valid, firm, lambda p: p.update(ticket=ticket.lower())),
            check,
            "Accepted today: the ticket of an entry is read as text, not checked as a ticket id.",
            "Refused: a ticket id in a document is in its grouped upper-case form.",
        ),
        probed(
            "ticket-not-a-ticket-id",
            resign(valid, firm, lambda p: p.update(ticket="not a ticket")),
            check,
            "Accepted today: the ticket of an entry is read as text, not checked as a ticket id.",
        ),
        probed(
            "integer-beyond-2-53",
            resign(valid, firm, lambda p: p.update(issued=2**53)),
            check,
            "Accepted today: whole numbers up to 2^63 - 1 are read (JavaScript's JSON.parse rounds this one).",
            "Refused: a document holds whole numbers within +-(2^53 - 1) only.",
        ),
        probed(
            "float-in-unknown-field",
            resign(valid, firm, lambda p: p.update(weight=0.5)),
            check,
            "Accepted today: a fraction in a field the reader ignores is read, and the digest depends on how "
            "the number is written.",
            "Refused: a document holds no fractional numbers.",
        ),
        probed(
            "container-key-not-base64",
            resign(valid, firm, lambda p: p["container"].update(sign_pub="not a key!")),
            check,
            "Accepted today: container.sign_pub is read as text; it is compared with a container's key, "
            "or decoded when a grant is verified against it.",
        ),
        doc_case(
            "duplicate-key-in-text",
            json.dumps(valid).replace('"payload": {', '"payload": {"license_id": 999, ', 1),
            "invalid",
            note="A reader that keeps the last of two equal keys would verify this text; it is refused.",
        ),
        doc_case("byte-order-mark", "\ufeff" + json.dumps(valid), "invalid"),
    ]
    product_key = bytes(range(32))
    pk_doc = keyfile.build(FIRM, 1, 2, product_key, firm)
    cases += [
        doc_case(
            "product-key-valid",
            pk_doc,
            "ok",
            type="product-key",
            want={"firm_code": FIRM, "product_code": 1, "version": 2},
            key_hex=product_key.hex(),
        ),
        doc_case(
            "product-key-for-another-product",
            pk_doc,
            "invalid",
            type="product-key",
            want={"firm_code": FIRM, "product_code": 3, "version": 2},
        ),
        doc_case(
            "product-key-foreign",
            keyfile.build(FIRM, 1, 2, product_key, foreign),
            "invalid",
            type="product-key",
            want={"firm_code": FIRM, "product_code": 1, "version": 2},
        ),
        doc_case(
            "product-key-short-key",
            resign(pk_doc, firm, lambda p: p.update(key=b64e(product_key[:31]))),
            "invalid",
            type="product-key",
            want={"firm_code": FIRM, "product_code": 1, "version": 2},
        ),
        doc_case(
            "product-key-version-zero",
            resign(pk_doc, firm, lambda p: p.update(version=0)),
            "invalid",
            type="product-key",
            want={"firm_code": FIRM, "product_code": 1},
            note="Refused: a key version is a whole number from 1, whatever version the reader asks for (`want` "
            "names no version here).",
        ),
    ]
    cases += size_cases(lic)
    rotated = hazmat.Ed25519PrivateKey.generate()
    endorsement = exchange.endorse_key(firm, FIRM, rotated.public_key())
    cases += [
        doc_case("firm-key-endorsement", endorsement, "ok", type="firm-key", firm_code=FIRM, endorsed_kid=kid(rotated)),
        doc_case(
            "firm-key-endorsement-firm-code-true",
            sign_raw("firm-key", {"firm_code": True, "pub": pub_b64(rotated)}, firm),
            "invalid",
            type="firm-key",
            firm_code=1,
            endorsed_kid=kid(rotated),
            note="Read for firm 1: true is no firm code, so the endorsement names no firm and is skipped.",
        ),
        doc_case(
            "firm-key-endorsement-by-unpinned-key",
            exchange.endorse_key(foreign, FIRM, rotated.public_key()),
            "invalid",
            type="firm-key",
            firm_code=FIRM,
            endorsed_kid=kid(rotated),
        ),
        doc_case(
            "firm-key-endorsement-for-another-firm",
            exchange.endorse_key(firm, OTHER_FIRM, rotated.public_key()),
            "invalid",
            type="firm-key",
            firm_code=FIRM,
            endorsed_kid=kid(rotated),
        ),
    ]
    for c in cases:
        c.setdefault("type", "license")
    return {
        "description": (
            "Firm-signed documents read without a container: license entries (`type` license), product-key "
            "documents (`type` product-key) and firm-key endorsements (`type` firm-key). Verify each against the "
            "firm public keys in `keys` (PEM; a document's `kid` selects the key, compared exactly). A `document` "
            "that is a JSON object is the envelope as received; a `document` that is a string is the envelope's "
            "JSON text, to be read strictly (canonical.json) first. `digest` is SHA-256 over the canonical "
            "envelope. The `size-*` cases give the JSON text in parts (`document_text`: prefix + fill repeated "
            "count times + suffix, `document_bytes` long in UTF-8): a text of at most 4194304 bytes is read, a longer "
            "one is refused before it is read. For a license, `fields` lists values the verified entry must carry; "
            "`signing_input` is the exact text its signature covers. For a product-key document, `want` names what "
            "the reader asks for (firm_code, product_code, version; one absent is not asked for), and `key_hex` is "
            "the key it must yield. For an endorsement, "
            "`endorsed_kid` is the key id a reader that pins `keys` must accept after it (for `firm_code`)."
        ),
        "keys": [pem(firm)],
        "outcomes": {
            "ok": {"meaning": "the document verifies and its fields are well formed", "error": None},
            "invalid": {
                "meaning": "the document is refused (bad envelope, signature, key, type, version or field)",
                "error": "LicenseInvalid",
            },
        },
        "cases": cases,
    }


#: the order of the Ed25519 base point (RFC 8032)
ED25519_L = 2**252 + 27742317777372353535851937790883648493


def non_canonical_s(sig: str) -> str:
    """The same Ed25519 signature with S + L in place of S (it verifies only where S is reduced)."""
    raw = b64d(sig)
    s = int.from_bytes(raw[32:], "little") + ED25519_L
    return b64e(raw[:32] + s.to_bytes(32, "little"))


def size_cases(lic: Any) -> list[dict[str, Any]]:
    """A license whose JSON text is exactly 4 MiB (4194304 bytes) and the same text one byte
    longer (a space after the value). The text is given in parts: `prefix` + `fill` repeated
    `count` times + `suffix`; its `text` field is mostly two-byte characters, so it has far
    fewer characters than bytes."""
    limit = 4 * 1024 * 1024
    fill = "\u00e9"  # two bytes in UTF-8
    empty = json.dumps(lic(text="", license_id=9), ensure_ascii=False)
    room = limit - len(empty.encode("utf-8"))
    ascii_part = "x" * (room % 2)
    count = room // 2
    doc = lic(text=ascii_part + fill * count, license_id=9)
    text = json.dumps(doc, ensure_ascii=False)
    start = text.index(fill * count)
    prefix, suffix = text[:start], text[start + count :]
    assert len((prefix + fill * count + suffix).encode("utf-8")) == limit
    assert len(prefix + fill * count + suffix) < limit  # fewer characters than bytes
    parts = {"prefix": prefix, "fill": fill, "count": count}
    return [
        {
            "name": "size-at-limit",
            "type": "license",
            "document_text": {**parts, "suffix": suffix},
            "document_bytes": limit,
            "note": "The document's JSON text is document_text.prefix + document_text.fill repeated "
            "document_text.count times + document_text.suffix: 4194304 bytes of UTF-8, fewer characters. A "
            "text of at most 4 MiB is read.",
            "expect": "ok",
            "digest": document_digest(doc),
            "fields": {"license_id": 9},
        },
        {
            "name": "size-one-byte-over",
            "type": "license",
            "document_text": {**parts, "suffix": suffix + " "},
            "document_bytes": limit + 1,
            "note": "The same text with one space after the value: 4194305 bytes (still fewer than 4194304 "
            "characters). Refused before it is read: the limit counts UTF-8 bytes.",
            "expect": "invalid",
        },
    ]


def _with_version(doc: dict[str, Any], key: Any, version: Any) -> dict[str, Any]:
    payload = dict(doc["payload"], v=version)
    sig = hazmat.sign(key, signing_message(payload["type"], payload))
    return {"payload": payload, "kid": doc["kid"], "sig": b64e(sig)}


# ---------------------------------------------------------------- evaluation.json


def build_evaluation(firm: Any, container_pub: str) -> dict[str, Any]:
    cases: list[dict[str, Any]] = []

    def ev(
        name: str,
        expect: str,
        *,
        options: Options | None = None,
        state: dict[str, Any] | None = None,
        request: dict[str, Any] | None = None,
        now: int = NOW,
        entry: dict[str, Any] | None = None,
        note: str | None = None,
        **ok: Any,
    ) -> None:
        doc = entry_doc(firm, options=options, container_key=container_pub, **(entry or {}))
        st = {"units_used": 0, "first_use": None, "last_sync": None, "vclock": 0, **(state or {})}
        rq = {
            "firm_code": FIRM,
            "product_code": 1,
            "feature_code": 0,
            "units": 0,
            "release_date": None,
            **(request or {}),
        }
        vclock = st["vclock"]
        behind = now + CLOCK_TOLERANCE < vclock
        c: dict[str, Any] = {"name": name, "kind": "license"}
        if note:
            c["note"] = note
        c.update(license=doc, digest=document_digest(doc), state=st, request=rq, now=now)
        c["effective_time"] = vclock if behind else max(now, vclock)
        c["clock_behind"] = behind
        c["expect"] = expect
        if expect == "ok":
            c["expires"] = ok.pop("expires", None)
            c["start_usage"] = ok.pop("start_usage", False)
            c["units"] = rq["units"]
        c.update(ok)
        cases.append(c)

    exp = NOW + 30 * DAY
    ev("no-options", "ok")
    ev("expires-one-second-later", "ok", options=Options(expires=NOW + 1), expires=NOW + 1)
    ev("expires-now", "LicenseExpired", options=Options(expires=NOW), note="Not valid at or after `expires`.")
    ev("not-before-one-second-later", "LicenseNotYetValid", options=Options(not_before=NOW + 1))
    ev("not-before-now", "ok", options=Options(not_before=NOW))
    ev(
        "usage-period-first-access",
        "ok",
        options=Options(usage_period=30 * DAY),
        expires=NOW + 30 * DAY,
        start_usage=True,
        note="No first use recorded: this access starts the period at the effective time.",
    )
    ev(
        "usage-period-running",
        "ok",
        options=Options(usage_period=30 * DAY),
        state={"first_use": NOW - 10 * DAY},
        expires=NOW + 20 * DAY,
    )
    ev(
        "usage-period-last-second",
        "ok",
        options=Options(usage_period=30 * DAY),
        state={"first_use": NOW - 30 * DAY + 1},
        expires=NOW + 1,
    )
    ev(
        "usage-period-over",
        "LicenseExpired",
        options=Options(usage_period=30 * DAY),
        state={"first_use": NOW - 30 * DAY},
    )
    ev(
        "usage-period-entry-first-use-wins",
        "LicenseExpired",
        options=Options(usage_period=30 * DAY),
        state={"first_use": NOW - DAY},
        entry={"first_use": NOW - 30 * DAY},
        note="The entry's first_use (recorded by License Central) is used before the container's.",
    )
    ev(
        "usage-period-capped-by-expires",
        "ok",
        options=Options(usage_period=30 * DAY, expires=NOW + 5 * DAY),
        expires=NOW + 5 * DAY,
        start_usage=True,
    )
    ev(
        "usage-period-ends-before-expires",
        "ok",
        options=Options(usage_period=DAY, expires=NOW + 5 * DAY),
        state={"first_use": NOW - 3600},
        expires=NOW + DAY - 3600,
    )
    ev(
        "units-exactly-used-up",
        "ok",
        options=Options(units=10),
        state={"units_used": 7},
        request={"units": 3},
        units_left=3,
    )
    ev("units-one-too-many", "UnitsExhausted", options=Options(units=10), state={"units_used": 7}, request={"units": 4})
    ev(
        "units-consumed-base",
        "ok",
        options=Options(units=100),
        entry={"consumed_base": 60},
        state={"units_used": 30},
        request={"units": 10},
        units_left=10,
        note="Units left = units - consumed_base - units counted under this entry.",
    )
    ev(
        "units-consumed-base-one-too-many",
        "UnitsExhausted",
        options=Options(units=100),
        entry={"consumed_base": 60},
        state={"units_used": 30},
        request={"units": 11},
    )
    ev(
        "units-all-used-ask-zero",
        "ok",
        options=Options(units=10),
        state={"units_used": 10},
        units_left=0,
        note="An access that consumes no units succeeds even when none are left.",
    )
    ev("zero-units-without-counter", "ok", options=Options(), units_left=None)
    ev(
        "units-without-counter",
        "UnitsExhausted",
        request={"units": 1},
        note="Asking for units from a license without a unit counter is refused.",
    )
    ev("negative-units", "UnitsExhausted", options=Options(units=10), request={"units": -1})
    ev(
        "maintenance-release-on-last-day",
        "ok",
        options=Options(maintenance_until=NOW - 100 * DAY),
        request={"release_date": NOW - 100 * DAY},
    )
    ev(
        "maintenance-release-one-second-later",
        "MaintenanceExpired",
        options=Options(maintenance_until=NOW - 100 * DAY),
        request={"release_date": NOW - 100 * DAY + 1},
    )
    ev(
        "maintenance-no-release-date",
        "ok",
        options=Options(maintenance_until=NOW - 100 * DAY),
        note="Without a release date in the request the maintenance check is skipped.",
    )
    ev("release-date-without-maintenance", "ok", request={"release_date": NOW + 100 * DAY})
    ev("sync-interval-at-boundary", "ok", options=Options(sync_interval=7 * DAY), state={"last_sync": NOW - 7 * DAY})
    ev(
        "sync-interval-one-second-over",
        "SyncRequired",
        options=Options(sync_interval=7 * DAY),
        state={"last_sync": NOW - 7 * DAY - 1},
    )
    ev(
        "sync-interval-before-any-sync",
        "ok",
        options=Options(sync_interval=7 * DAY),
        entry={"issued": NOW - 7 * DAY},
        note="No sync yet: the interval runs from the entry's `issued`.",
    )
    ev(
        "sync-interval-before-any-sync-over",
        "SyncRequired",
        options=Options(sync_interval=7 * DAY),
        entry={"issued": NOW - 7 * DAY - 1},
    )
    ev(
        "clock-behind-by-tolerance",
        "ok",
        options=Options(expires=exp),
        state={"vclock": NOW + CLOCK_TOLERANCE},
        expires=exp,
        note="The system clock may be up to 7200 s behind the virtual clock; time is then the virtual clock.",
    )
    ev(
        "clock-behind-one-second-more",
        "ClockTampered",
        options=Options(expires=exp),
        state={"vclock": NOW + CLOCK_TOLERANCE + 1},
    )
    ev(
        "clock-behind-without-time-option",
        "ok",
        options=Options(units=10),
        state={"vclock": NOW + 30 * DAY},
        units_left=10,
        note="A license without expires, not_before, usage_period or sync_interval ignores the clock.",
    )
    ev(
        "clock-behind-sync-interval-only",
        "ClockTampered",
        options=Options(sync_interval=30 * DAY),
        state={"vclock": NOW + DAY, "last_sync": NOW},
        note="sync_interval alone makes a license time-bound.",
    )
    ev(
        "virtual-clock-ahead-decides-expiry",
        "LicenseExpired",
        options=Options(expires=NOW + 3600),
        state={"vclock": NOW + 3600},
        note="Time is the later of the system clock and the virtual clock.",
    )
    ev(
        "virtual-clock-behind-system-clock",
        "ok",
        options=Options(expires=exp),
        state={"vclock": NOW - 30 * DAY},
        expires=exp,
    )
    ev("other-product", "LicenseNotFound", request={"product_code": 2})
    ev("other-firm", "LicenseNotFound", request={"firm_code": FIRM + 1})
    ev("feature-subset", "ok", request={"feature_code": 0x05})
    ev("feature-all-licensed-bits", "ok", request={"feature_code": 0x0F})
    ev("feature-bit-missing", "FeatureNotLicensed", request={"feature_code": 0x10})
    ev("feature-partly-licensed", "FeatureNotLicensed", request={"feature_code": 0x11})
    ev("feature-highest-bit", "ok", entry={"feature_map": 0xFFFFFFFF}, request={"feature_code": 0x80000000})
    ev("feature-zero-on-empty-map", "ok", entry={"feature_map": 0})
    ev("order-product-before-feature", "LicenseNotFound", request={"product_code": 2, "feature_code": 0x10})
    ev(
        "order-feature-before-clock",
        "FeatureNotLicensed",
        options=Options(expires=exp),
        state={"vclock": NOW + DAY},
        request={"feature_code": 0x10},
    )
    ev(
        "order-clock-before-not-before",
        "ClockTampered",
        options=Options(not_before=NOW + 10 * DAY),
        state={"vclock": NOW + DAY},
    )
    ev("order-not-before-before-expiry", "LicenseNotYetValid", options=Options(not_before=NOW + DAY, expires=NOW - DAY))
    ev(
        "order-expiry-before-sync",
        "LicenseExpired",
        options=Options(expires=NOW - 1, sync_interval=DAY),
        state={"last_sync": NOW - 2 * DAY},
    )
    ev(
        "order-sync-before-maintenance",
        "SyncRequired",
        options=Options(sync_interval=DAY, maintenance_until=NOW),
        state={"last_sync": NOW - 2 * DAY},
        request={"release_date": NOW + 1},
    )
    ev(
        "order-maintenance-before-units",
        "MaintenanceExpired",
        options=Options(maintenance_until=NOW, units=1),
        state={"units_used": 1},
        request={"release_date": NOW + 1, "units": 1},
    )
    ev(
        "reactivated-trial-runs-from-first-use",
        "LicenseExpired",
        options=Options(usage_period=DAY),
        entry={"first_use": NOW - 2 * DAY, "activation": 2},
    )
    ev(
        "reactivated-units-carry-consumed-base",
        "ok",
        options=Options(units=100, report_interval=DAY),
        entry={"consumed_base": 60, "first_use": NOW - DAY, "activation": 2},
        units_left=40,
    )
    cases.extend(served_evaluation_cases(firm))
    return {
        "description": (
            "Evaluating one license for one access at one time. Each case gives the firm-signed `license` "
            "(verify it with `keys`), what the container recorded for it (`state`: units_used counted under this "
            "entry, first_use, last_sync, and the firm slot's virtual clock vclock), the `request` (firm_code, "
            "product_code, feature_code bits, units to consume, the application's release_date or null) and the "
            "system time `now`. The checks run in this order and the first that fails decides: firm and product, "
            "feature bits (feature_map AND feature_code = feature_code), the clock (only for a license with "
            "expires, not_before, usage_period or sync_interval: refused when now + 7200 < vclock), not_before "
            "(refused while time < not_before), expiry (the earlier of expires and first use + usage_period, "
            "where first use is the entry's first_use, else the state's, else this access; refused when time >= "
            "it), sync interval (refused when time > (last_sync, or the entry's issued before any sync) + "
            "sync_interval), maintenance (refused when release_date > maintenance_until; skipped without a "
            "release date), units (refused when units < 0, when units > 0 on a license without a counter, or "
            "when units > units - consumed_base - units_used). Time is vclock when the clock is behind by more "
            "than the tolerance, else the later of now and vclock: `effective_time` and `clock_behind` give it "
            "for every case. On success, `expires` is the effective end of validity (null: none), `start_usage` "
            "whether this access starts the usage period, `units` the units it consumes; `units_left`, where "
            "given, is what is left before this access (null: no counter). Cases of `kind` lease and borrowed "
            "evaluate a license a license server serves (docs/formats.md 5.1, 12.5, 12.8): the entry names the "
            "server's container and `lease` or `grant` is signed by that container's key; `state` is the state "
            "5.1 derives (a lease: first use the lease's first_use, last sync its issued, vclock 0, 0 units; a "
            "borrowed license: first use and last sync the grant's issued, the slot's vclock, 0 units). A borrowed "
            "license is then checked in this order: the grant names `container` (serial and key, else "
            "LicenseInvalid) before the evaluation; after it the clock (ClockTampered when now + 7200 < vclock, "
            "for every borrowed license), the grant's end (LicenseExpired when time >= grant expires) and units "
            "(UnitsExhausted for any units); `expires` is then the earlier of the evaluation's and the grant's."
        ),
        "keys": [pem(firm)],
        "clock_tolerance": CLOCK_TOLERANCE,
        "outcomes": {
            "ok": {"meaning": "access granted", "error": None},
            "LicenseNotFound": {"meaning": "the license is for another firm or product", "code": 10},
            "FeatureNotLicensed": {"meaning": "a requested feature bit is not in feature_map", "code": 15},
            "ClockTampered": {
                "meaning": "a time-bound license and a system clock more than 7200 s behind the virtual clock",
                "code": 16,
            },
            "LicenseNotYetValid": {"meaning": "time is before not_before", "code": 13},
            "LicenseExpired": {"meaning": "time is at or after expires or the end of the usage period", "code": 12},
            "SyncRequired": {"meaning": "the sync interval has passed since the last sync", "code": 18},
            "MaintenanceExpired": {"meaning": "the release is newer than maintenance_until", "code": 17},
            "UnitsExhausted": {
                "meaning": "not enough units left, negative units, or units asked of a license without a counter "
                "(or of a borrowed license)",
                "code": 14,
            },
            "LicenseInvalid": {
                "meaning": "a borrowed license whose grant names another container (serial or key)",
                "code": 11,
            },
        },
        "cases": cases,
    }


def served_evaluation_cases(firm: Any) -> list[dict[str, Any]]:
    """Evaluation of a license a license server serves: leased (kind lease) and borrowed
    (kind borrowed), with the state docs/formats.md 5.1 derives from the lease or the grant."""
    server = hazmat.Ed25519PrivateKey.generate()
    client = hazmat.Ed25519PrivateKey.generate()
    session = hazmat.X25519PrivateKey.generate()
    holder = hazmat.Ed25519PrivateKey.generate()
    cases: list[dict[str, Any]] = []

    def served(options: Options, **kw: Any) -> tuple[dict[str, Any], LicenseEntry]:
        kw.setdefault("issued", NOW - 10 * DAY)
        doc = entry_doc(firm, serial=SERVER_SERIAL, container_key=pub_b64(server), options=options, **kw)
        return doc, LicenseEntry.verify(doc, {kid(firm): firm.public_key()})

    def request(**kw: Any) -> dict[str, Any]:
        return {"firm_code": FIRM, "product_code": 1, "feature_code": 0, "units": 0, "release_date": None, **kw}

    def outcome(c: dict[str, Any], expect: str, ev: Any) -> None:
        got = "ok" if ev.error is None else ev.error.__name__
        assert got == expect, f"{c['name']}: the rules say {expect}, the implementation {got}"
        c["expect"] = expect
        if ev.error is None:
            c.update(expires=ev.expires, start_usage=ev.start_usage, units=ev.units)

    def lease_case(
        name: str,
        expect: str,
        options: Options,
        *,
        now: int = NOW,
        issued: int = NOW - 60,
        first_use: int | None = None,
        entry: dict[str, Any] | None = None,
        note: str | None = None,
        **rq: Any,
    ) -> None:
        doc, lic = served(options, **(entry or {}))
        lease = grants.build_lease(
            lambda t, p: sign_document(t, p, server),
            lease_id="06b49d2000000a1c3f9e",
            client_lease_id="c-5d1f0a",
            entry=lic,
            feature_code=rq.get("feature_code", 0),
            mode="user",
            session=pub_b64(session),
            nonce="n-8Xy2Qa",
            issued=issued,
            expires=issued + 120,
            first_use=first_use,
            holder=pub_b64(holder),
        )
        req = request(**rq)
        c: dict[str, Any] = {"name": name, "kind": "lease"}
        if note:
            c["note"] = note
        c.update(license=doc, digest=lic.digest, lease=lease)
        c["state"] = {"units_used": 0, "first_use": first_use, "last_sync": issued, "vclock": 0}
        c.update(request=req, now=now, effective_time=now, clock_behind=False)
        verified = grants.verify_lease(copy.deepcopy(lease), lic)
        ask = AccessRequest(*(req[k] for k in ("firm_code", "product_code", "feature_code", "units", "release_date")))
        outcome(c, expect, grants.evaluate_lease(lic, verified, ask, now))
        cases.append(c)

    def borrowed_case(
        name: str,
        expect: str,
        options: Options,
        *,
        now: int = NOW,
        vclock: int = NOW - 600,
        issued: int = NOW - DAY,
        expires: int = NOW + 6 * DAY,
        entry: dict[str, Any] | None = None,
        container: dict[str, str] | None = None,
        note: str | None = None,
        **rq: Any,
    ) -> None:
        doc, lic = served(options, **(entry or {}))
        grant = grants.build_borrow(
            lambda t, p: sign_document(t, p, server),
            borrow_id="b-4411",
            entry=lic,
            client_serial=CLIENT_SERIAL,
            client_key=pub_b64(client),
            issued=issued,
            expires=expires,
        )
        where = container or {"serial": CLIENT_SERIAL, "sign_pub": pub_b64(client)}
        req = request(**rq)
        behind = now + CLOCK_TOLERANCE < vclock
        c: dict[str, Any] = {"name": name, "kind": "borrowed"}
        if note:
            c["note"] = note
        c.update(license=doc, digest=lic.digest, grant=grant, container=where)
        c["state"] = {"units_used": 0, "first_use": issued, "last_sync": issued, "vclock": vclock}
        c.update(request=req, now=now, effective_time=vclock if behind else max(now, vclock), clock_behind=behind)
        verified = grants.verify_borrow(copy.deepcopy(grant), lic)
        ask = AccessRequest(*(req[k] for k in ("firm_code", "product_code", "feature_code", "units", "release_date")))
        outcome(
            c,
            expect,
            grants.evaluate_borrowed(
                lic, verified, ask, now, vclock, serial=where["serial"], sign_pub=where["sign_pub"]
            ),
        )
        cases.append(c)

    exp = NOW + 60 * DAY
    lease_case("lease-granted", "ok", Options(expires=exp, quantity=5))
    lease_case(
        "lease-sync-interval-runs-from-the-lease",
        "ok",
        Options(sync_interval=DAY, quantity=5),
        issued=NOW - DAY,
        entry={"issued": NOW - 30 * DAY},
        note="last_sync is the lease's issued, not the entry's issued (30 days ago): granted at the boundary.",
    )
    lease_case("lease-sync-interval-over", "SyncRequired", Options(sync_interval=DAY, quantity=5), issued=NOW - DAY - 1)
    lease_case(
        "lease-usage-period-from-the-lease",
        "LicenseExpired",
        Options(usage_period=30 * DAY, quantity=5),
        first_use=NOW - 30 * DAY,
        note="The lease's first_use (the server's record) starts the usage period.",
    )
    lease_case(
        "lease-usage-period-not-started",
        "ok",
        Options(usage_period=30 * DAY, quantity=5),
        note="No first use in the lease: this access would start the period (the client records nothing).",
    )
    lease_case(
        "lease-units-not-consumed",
        "ok",
        Options(units=10, quantity=5),
        units=4,
        note="The client evaluates a leased license with 0 units (the server counted them).",
    )
    lease_case("lease-feature-not-licensed", "FeatureNotLicensed", Options(quantity=5), feature_code=0x10)
    lease_case(
        "lease-maintenance-expired",
        "MaintenanceExpired",
        Options(maintenance_until=NOW - DAY, quantity=5),
        release_date=NOW,
    )
    lease_case(
        "lease-no-virtual-clock",
        "ok",
        Options(expires=exp, quantity=5),
        now=NOW - 3 * DAY,
        issued=NOW,
        note="vclock is 0 for a lease: a client clock far behind the lease's issue time is not ClockTampered.",
    )

    borrowed_case(
        "borrowed-granted",
        "ok",
        Options(expires=exp, quantity=5),
        note="The effective end is the earlier of the evaluation's and the grant's expires.",
    )
    borrowed_case("borrowed-entry-ends-first", "ok", Options(expires=NOW + DAY, quantity=5))
    borrowed_case("borrowed-last-second", "ok", Options(expires=exp, quantity=5), now=NOW + 6 * DAY - 1)
    borrowed_case(
        "borrowed-grant-over",
        "LicenseExpired",
        Options(expires=exp, quantity=5),
        now=NOW + 6 * DAY,
        note="Refused at and after the grant's expires (12.8), after the evaluation granted.",
    )
    borrowed_case(
        "borrowed-clock-behind-untimed-license",
        "ClockTampered",
        Options(quantity=5),
        vclock=NOW + CLOCK_TOLERANCE + 1,
        note="A borrowed license is refused for the clock even when it is not time-bound (12.8).",
    )
    borrowed_case(
        "borrowed-clock-behind-by-tolerance",
        "ok",
        Options(quantity=5),
        vclock=NOW + CLOCK_TOLERANCE,
    )
    borrowed_case(
        "borrowed-units",
        "UnitsExhausted",
        Options(units=10, quantity=5),
        units=1,
        note="A borrowed license carries no unit counter, even when its entry has one.",
    )
    borrowed_case(
        "borrowed-evaluation-refuses-first",
        "FeatureNotLicensed",
        Options(quantity=5),
        vclock=NOW + CLOCK_TOLERANCE + 1,
        feature_code=0x10,
        note="The evaluation's refusal comes before the clock check of a borrowed license.",
    )
    borrowed_case(
        "borrowed-sync-interval-shorter-than-the-borrow",
        "SyncRequired",
        Options(sync_interval=2 * DAY, quantity=5),
        issued=NOW - 2 * DAY - 1,
        note="last_sync is the grant's issued: a sync interval shorter than the borrow ends it first.",
    )
    borrowed_case(
        "borrowed-usage-period-from-the-grant",
        "LicenseExpired",
        Options(usage_period=2 * DAY, quantity=5),
        issued=NOW - 2 * DAY,
        note="first_use is the grant's issued when the entry has none.",
    )
    borrowed_case(
        "borrowed-usage-period-entry-first-use-wins",
        "ok",
        Options(usage_period=2 * DAY, quantity=5),
        issued=NOW - 2 * DAY,
        entry={"first_use": NOW - DAY},
        note="The entry's first_use is used before the grant's issued.",
    )
    borrowed_case(
        "borrowed-grant-for-another-container",
        "LicenseInvalid",
        Options(expires=exp, quantity=5),
        container={"serial": OTHER_SERIAL, "sign_pub": pub_b64(client)},
    )
    borrowed_case(
        "borrowed-grant-for-another-container-key",
        "LicenseInvalid",
        Options(expires=exp, quantity=5),
        container={"serial": CLIENT_SERIAL, "sign_pub": pub_b64(hazmat.Ed25519PrivateKey.generate())},
    )
    return cases


# ---------------------------------------------------------------- updates.json and sealing.json


def build_updates_and_sealing(firm: Any, foreign: Any, ticket: str) -> tuple[dict[str, Any], dict[str, Any]]:
    c_sign = hazmat.Ed25519PrivateKey.generate()
    c_box = hazmat.X25519PrivateKey.generate()
    cpub = pub_b64(c_sign)
    box_pub = hazmat.raw_public(c_box.public_key())
    firm_secret = bytes(range(100, 132))
    other_firm = hazmat.Ed25519PrivateKey.generate()
    rotated = hazmat.Ed25519PrivateKey.generate()

    def pkey(product: int, version: int = 1, firm_code: int = FIRM) -> bytes:
        return exchange.derive_product_key(firm_secret, firm_code, product, version)

    def lic(key: Any = firm, **kw: Any) -> dict[str, Any]:
        kw.setdefault("container_key", cpub)
        kw.setdefault("ticket", ticket)
        kw.setdefault("options", Options(expires=NOW + 30 * DAY))
        return entry_doc(key, **kw)

    def sealed(doc: dict[str, Any], product: int = 1, version: int = 1, to: bytes = box_pub, serial: str = SERIAL):
        return exchange.seal_product_key(to, serial, document_digest(doc), version, pkey(product, version))

    def update(
        seq: int,
        entries: list[dict[str, Any]],
        keys: list[dict[str, Any]] | None = None,
        *,
        key: Any = firm,
        serial: str = SERIAL,
        time: int = NOW,
        firm_code: int = FIRM,
        request_digest: str | None = None,
        endorsements: list[Any] | None = None,
        message: str | None = None,
        manipulation: dict[str, Any] | None = None,
    ):
        payload = {
            "firm_code": firm_code,
            "firm_pub": pub_b64(key),
            "serial": serial,
            "seq": seq,
            "time": time,
            "entries": entries,
            "keys": keys if keys is not None else [sealed(e, e["payload"]["product_code"]) for e in entries],
            "endorsements": endorsements or [],
            "request": request_digest,
            "message": message,
            "manipulation": manipulation,
        }
        return sign_raw("update", payload, key)

    first = lic(license_id=7, issued=NOW - 2 * DAY)
    setup = update(2, [first], time=NOW - DAY)
    e7 = lic(license_id=7)
    e8 = lic(license_id=8, product_code=2, text=NON_ASCII_TEXT)
    good = update(3, [e7, e8])

    def after(
        entries: list[dict[str, Any]],
        *,
        seq: int = 3,
        time: int = NOW,
        last_sync: int | None = None,
        pinned: list[str] | None = None,
        firm_code: int = FIRM,
        keys: bool = True,
        withdrawn: list[int] | None = None,
        notices: dict[str, Any] | None = None,
        removed: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        if withdrawn is None:  # what the setup held (license 7) and the update no longer holds
            ids = {e["payload"]["license_id"] for e in entries}
            withdrawn = [] if firm_code != FIRM or 7 in ids else [7]
        return {
            "firm_code": firm_code,
            "seq": seq,
            "vclock": time,
            "last_sync": time if last_sync is None else last_sync,
            "licenses": [e["payload"]["license_id"] for e in entries],
            "pinned": sorted(pinned or [kid(firm)]),
            "product_keys": [
                {
                    "license": document_digest(e),
                    "version": v,
                    "key_hex": pkey(e["payload"]["product_code"], v, firm_code).hex(),
                }
                for e in entries
                for v in e["payload"]["key_versions"]
            ]
            if keys
            else [],
            "withdrawn": withdrawn,
            "notices": notices or {},
            "removed": removed or {},
        }

    foreign_entry = lic(key=foreign, license_id=9)
    two_versions = lic(license_id=7, key_versions=(2, 1))
    endorsement = exchange.endorse_key(firm, FIRM, rotated.public_key())
    rot_entries = [lic(key=rotated, license_id=7)]
    other_entries = [lic(key=other_firm, firm_code=OTHER_FIRM, license_id=1)]
    other_keys = [
        exchange.seal_product_key(box_pub, SERIAL, document_digest(other_entries[0]), 1, pkey(1, 1, OTHER_FIRM))
    ]
    stray_key = exchange.seal_product_key(box_pub, SERIAL, "ab" * 32, 1, pkey(9))
    wrong_box = hazmat.raw_public(hazmat.X25519PrivateKey.generate().public_key())

    def check(document: dict[str, Any]) -> None:
        pinned = {kid(firm): firm.public_key()} if document["payload"]["firm_code"] == FIRM else None
        exchange.verify_update(document, pinned)

    lower_serial = update(3, [], serial=SERIAL.lower())
    expect, note = current(
        lambda: check(copy.deepcopy(lower_serial)),
        "Accepted today: the serial is compared with the container's, not checked as a serial.",
        "Refused: the serial is not well formed.",
        ok="other-container",
    )
    other_serial_case = doc_case("serial-lower-case", lower_serial, expect, note=note)
    cases = [
        doc_case("valid", good, "ok", after=after([e7, e8])),
        doc_case("replayed-old-sequence", setup, "replay", why="sequence 2 is not above the slot's 2"),
        doc_case("older-sequence", update(1, [e7]), "replay"),
        doc_case(
            "same-sequence-new-content",
            update(2, [e7, e8]),
            "replay",
            why="an update must have a sequence number greater than the slot's",
        ),
        doc_case("tampered", edited(good, lambda d: d["payload"].update(time=NOW + 1)), "invalid"),
        doc_case(
            "tampered-sealed-key-list",
            edited(good, lambda d: d["payload"]["keys"].pop()),
            "invalid",
            why="sealed keys are inside the update's signature",
        ),
        doc_case(
            "foreign-firm-key",
            update(3, [lic(key=foreign)], key=foreign),
            "invalid",
            why="signed by a key the slot does not pin, without endorsement",
        ),
        doc_case("other-container", update(3, [], serial=OTHER_SERIAL), "other-container"),
        doc_case(
            "other-container-and-old-sequence",
            update(1, [], serial=OTHER_SERIAL),
            "other-container",
            why="the serial is checked before the sequence number",
        ),
        doc_case(
            "tampered-other-container",
            edited(update(3, [], serial=OTHER_SERIAL), lambda d: d["payload"].update(seq=9)),
            "invalid",
            why="the signature is checked before the serial",
        ),
        doc_case(
            "tampered-old-sequence",
            edited(setup, lambda d: d["payload"].update(time=NOW)),
            "invalid",
            why="the signature is checked before the sequence number",
        ),
        doc_case("kid-upper-case", edited(good, lambda d: d.update(kid=d["kid"].upper())), "invalid"),
        doc_case(
            "firm-pub-names-pinned-key-but-foreign-signer",
            edited(update(3, [], key=foreign), lambda d: d["payload"].update(firm_pub=pub_b64(firm))),
            "invalid",
            why="kid must be the key id of firm_pub, and firm_pub must have made the signature",
        ),
        doc_case(
            "firm-pub-not-the-signer",
            _update_with_firm_pub(update(3, [e7]), firm, pub_b64(foreign)),
            "invalid",
            why="signed by the pinned key, but firm_pub names another key",
        ),
        doc_case(
            "rotated-key-endorsed",
            update(3, rot_entries, key=rotated, endorsements=[endorsement]),
            "ok",
            after=after(rot_entries, pinned=[kid(firm), kid(rotated)]),
            why="a key endorsed by a pinned key is accepted and pinned",
        ),
        doc_case("rotated-key-without-endorsement", update(3, rot_entries, key=rotated), "invalid"),
        doc_case(
            "endorsement-for-another-firm",
            update(
                3, rot_entries, key=rotated, endorsements=[exchange.endorse_key(firm, OTHER_FIRM, rotated.public_key())]
            ),
            "invalid",
            why="an endorsement names the firm code; one for another firm endorses nothing here",
        ),
        doc_case("entry-for-another-firm", update(3, [lic(firm_code=OTHER_FIRM)]), "invalid"),
        doc_case("entry-for-another-serial", update(3, [lic(serial=OTHER_SERIAL)], keys=[]), "invalid"),
        doc_case(
            "entry-names-another-container-key", update(3, [lic(container_key=pub_b64(foreign))], keys=[]), "invalid"
        ),
        doc_case(
            "entry-signed-by-foreign-key",
            update(3, [e7, foreign_entry]),
            "invalid",
            why="every entry must verify with the keys that verify the update",
        ),
        doc_case(
            "entry-tampered",
            update(3, [edited(e7, lambda d: d["payload"].update(feature_map=0xFFFFFFFF))], keys=[]),
            "invalid",
        ),
        probed(
            "sealed-key-for-no-entry",
            update(3, [e7], [sealed(e7), stray_key]),
            check,
            "Accepted today: a sealed key whose license digest names no entry of the update is dropped.",
            "Refused: every sealed key names an entry of the update and one of its key versions.",
            after=after([e7]),
        ),
        probed(
            "sealed-key-for-a-version-the-entry-lacks",
            update(3, [e7], [sealed(e7), sealed(e7, version=2)]),
            check,
            "Accepted today: a sealed key for a key version the entry does not list is kept.",
            "Refused: every sealed key names an entry of the update and one of its key versions.",
            after=after([e7]),
        ),
        doc_case(
            "sealed-key-to-another-container",
            update(3, [e7], [sealed(e7, to=wrong_box)]),
            "invalid",
            why="a sealed key of an entry must open",
        ),
        doc_case("sealed-key-for-another-serial", update(3, [e7], [sealed(e7, serial=OTHER_SERIAL)]), "invalid"),
        doc_case(
            "sealed-key-without-license", update(3, [e7], [{"version": 1, "sealed": sealed(e7)["sealed"]}]), "invalid"
        ),
        probed(
            "sealed-key-version-as-text",
            update(3, [e7], [dict(sealed(e7), version="1")]),
            check,
            "Accepted today: the version of a sealed key is not type-checked (the text '1' opens as 1); the key "
            "is kept but is not found for version 1 afterwards.",
            after=after([e7], keys=False),
        ),
        doc_case("no-entries", update(3, []), "ok", after=after([]), why="the update holds the whole set: none"),
        probed(
            "unknown-payload-field",
            resign(good, firm, lambda p: p.update(comment="x")),
            check,
            "Accepted: readers ignore a payload field they do not know (the signature covers it).",
            after=after([e7, e8]),
        ),
        probed(
            "request-not-a-digest",
            update(3, [e7], request_digest="abc"),
            check,
            "Accepted today: `request` is read as any text.",
            "Refused: `request` is null or a digest (64 lower-case hex digits).",
            after=after([e7]),
        ),
        probed(
            "time-negative",
            update(3, [e7], time=-1),
            check,
            "Accepted today: `time` has no range check.",
            after=after([e7], time=-1),
        ),
        probed(
            "endorsement-not-an-object",
            update(3, [e7], endorsements=["not a document"]),
            check,
            "Accepted today: an endorsement that is not a document is skipped.",
            "Refused: every endorsement is a signed document (a JSON object).",
            after=after([e7]),
        ),
        probed(
            "firm-code-zero",
            update(3, [], firm_code=0),
            check,
            "Accepted today: the update's firm code has no range check (a slot for firm 0 is made).",
            after=after([], firm_code=0),
        ),
        other_serial_case,
        doc_case(
            "time-before-virtual-clock",
            update(3, [e7], time=NOW - 2 * DAY),
            "ok",
            after=after([e7], time=NOW - 2 * DAY),
            why="the update's time sets the virtual clock, also backwards",
        ),
        doc_case("version-2", _with_version(good, firm, 2), "invalid"),
        doc_case("envelope-extra-key", edited(good, lambda d: d.update(extra=1)), "invalid"),
        doc_case(
            "sequence-beyond-64-bits",
            json.dumps(resign(good, firm, lambda p: p.update(seq=2**63))),
            "invalid",
            note="The document as JSON text: seq is 2^63, beyond the integers the strict reader reads (1.1 "
            "item 5), so the text is refused before the signature is looked at.",
        ),
        doc_case(
            "sequence-beyond-2-53",
            resign(good, firm, lambda p: p.update(seq=2**53)),
            "invalid",
            note="Well signed, but a payload holds whole numbers within +-(2^53 - 1) only (3.1 item 6).",
        ),
        doc_case("sequence-zero", resign(good, firm, lambda p: p.update(seq=0)), "invalid"),
        doc_case("manipulation-ids-as-text", update(3, [e7], manipulation={"withdrawn": ["8"]}), "invalid"),
        doc_case("manipulation-unknown-key", update(3, [e7], manipulation={"forked": [8]}), "invalid"),
        doc_case(
            "manipulation-withdrawn",
            update(3, [e7], manipulation={"withdrawn": [8]}, message="Licence 8 was withdrawn."),
            "ok",
            after=after([e7]),
        ),
        doc_case(
            "manipulation-withdrawn-license-held",
            update(3, [e8], manipulation={"withdrawn": [7]}, message="Licence 7 was withdrawn."),
            "ok",
            after=after([e8], notices={"7": {"product_code": 1, "message": "Licence 7 was withdrawn."}}, withdrawn=[7]),
            why="license 7 was held before and is absent now: it is withdrawn, and its notice is kept",
        ),
        doc_case(
            "entries-with-the-same-license-id",
            update(3, [e7, lic(license_id=7, issued=NOW - 1)]),
            "invalid",
            why="an update holds each license once: two entries with one license id are refused",
        ),
        doc_case(
            "entries-with-the-same-digest",
            update(3, [e7, e7], [sealed(e7)]),
            "invalid",
            why="an update holds each license once",
        ),
        doc_case(
            "sealed-keys-for-the-same-version",
            update(3, [e7], [sealed(e7), sealed(e7)]),
            "invalid",
            why="one sealed key per entry and key version",
        ),
        doc_case(
            "entry-lists-a-key-version-twice",
            update(3, [lic(license_id=7, key_versions=(1, 1))], keys=[]),
            "invalid",
            why="an entry lists each key version once",
        ),
        doc_case(
            "entry-with-two-key-versions",
            update(3, [two_versions], [sealed(two_versions, version=1), sealed(two_versions, version=2)]),
            "ok",
            after=after([two_versions]),
            why="product_keys in entry order, and for each entry in the order of its key_versions (2, then 1)",
        ),
        doc_case(
            "endorsement-without-pub",
            update(3, [e7], endorsements=[sign_raw("firm-key", {"firm_code": FIRM}, firm)]),
            "invalid",
            why="an endorsement that verifies and names this firm must carry a key: the update is refused",
        ),
        doc_case(
            "endorsement-pub-malformed",
            update(3, [e7], endorsements=[sign_raw("firm-key", {"firm_code": FIRM, "pub": "AQ"}, firm)]),
            "invalid",
            why="an endorsement that verifies and names this firm must carry a 32-byte key",
        ),
        doc_case(
            "endorsement-pub-not-canonical",
            update(
                3,
                [e7],
                endorsements=[sign_raw("firm-key", {"firm_code": FIRM, "pub": spare_bits_set(pub_b64(rotated))}, firm)],
            ),
            "invalid",
        ),
        doc_case(
            "endorsement-by-unpinned-key-skipped",
            update(3, [e7], endorsements=[sign_raw("firm-key", {"firm_code": FIRM}, foreign)]),
            "ok",
            after=after([e7]),
            why="an endorsement that does not verify is skipped before its key is read",
        ),
        doc_case(
            "endorsement-firm-code-as-text",
            update(
                3,
                rot_entries,
                key=rotated,
                endorsements=[sign_raw("firm-key", {"firm_code": str(FIRM), "pub": pub_b64(rotated)}, firm)],
            ),
            "invalid",
            why='firm_code "10101" is not the firm code 10101: the endorsement is skipped',
        ),
        doc_case(
            "removed-license-sent-again",
            update(4, [first, e8]),
            "ok",
            removed=[7],
            after=after([e8], seq=4, removed={"7": document_digest(first)}),
            why="the container removed license 7 itself: the same entry (same digest) is dropped with its key",
        ),
        doc_case(
            "removed-license-issued-anew",
            update(4, [e7, e8]),
            "ok",
            removed=[7],
            after=after([e7, e8], seq=4),
            why="a new entry for license 7 (another digest) is kept, and the removal is forgotten",
        ),
        doc_case(
            "removed-license-old-sequence",
            update(3, [first, e8]),
            "replay",
            removed=[7],
            why="removing a license raised the slot's sequence number to 3",
        ),
        doc_case(
            "first-update-of-another-firm",
            update(1, other_entries, other_keys, key=other_firm, firm_code=OTHER_FIRM),
            "ok",
            after=after(other_entries, seq=1, pinned=[kid(other_firm)], firm_code=OTHER_FIRM),
            why="a slot's first update is verified with its own firm_pub, which is then pinned",
        ),
    ]
    newest = hazmat.sha256(b"the slot's newest document").hex()

    def ack(key: Any = firm, *, request: str = newest, time: int = NOW, serial: str = SERIAL, firm_code: int = FIRM):
        return exchange.build_ack(
            firm_code=firm_code, firm_key=key, serial=serial, now=time, request_digest=request, recorded={}
        )

    cases += [
        doc_case(
            "ack-applied",
            ack(time=NOW + 3600),
            "ok",
            kind="report-ack",
            after=after([first], seq=2, time=NOW + 3600, withdrawn=[]),
            why="it answers the slot's newest document: time is the virtual clock and the last sync",
        ),
        doc_case(
            "ack-time-before-last-sync",
            ack(time=NOW - 2 * DAY),
            "ok",
            kind="report-ack",
            after=after([first], seq=2, time=NOW - 2 * DAY, last_sync=NOW - DAY, withdrawn=[]),
            why="the virtual clock takes the signed time, also backwards; the last sync never goes back",
        ),
        doc_case(
            "ack-of-an-older-document",
            ack(request=hazmat.sha256(b"an older document").hex()),
            "stale",
            kind="report-ack",
            why="it does not answer the slot's newest document: nothing changes",
        ),
        doc_case("ack-for-another-container", ack(serial=OTHER_SERIAL), "invalid", kind="report-ack"),
        doc_case("ack-foreign-key", ack(foreign), "invalid", kind="report-ack"),
        doc_case(
            "ack-for-a-firm-without-slot",
            ack(other_firm, firm_code=OTHER_FIRM),
            "invalid",
            kind="report-ack",
            why="an acknowledgement is verified with the keys of its firm's slot: there is none",
        ),
    ]
    for c in cases:
        c.setdefault("kind", "update")
    container = {
        "serial": SERIAL,
        "sign_pub": cpub,
        "box_pub": b64e(box_pub),
        "sign_private": priv_b64(c_sign),
        "box_private": priv_b64(c_box),
    }
    updates = {
        "description": (
            "Updates and usage-report acknowledgements applied by the container `container` (its private keys "
            "are published here because the update cases carry product keys sealed to it). Before each case the "
            "container applies `setup` (firm 10101, sequence 2, time 1799913600, signed by the firm key in "
            "`keys`, holding license 7), so its firm 10101 slot is at sequence 2 and pins that key. A case with "
            "`removed` (license ids) then removes those licenses itself, as a deactivation does "
            "(docs/formats.md 9.1): the slot drops each entry and its keys, records {license id: digest} and "
            "raises its sequence number by one per removal. Then the case's `document` is applied: `kind` update "
            "by docs/formats.md 7.1 (the steps and their order are there; `why` names the rule a case shows), "
            "`kind` report-ack by 9.2, with the slot's newest document (prev[0]) being `newest`. A `document` "
            "that is a string is the document's JSON text, to be read strictly first. `expect` names the "
            "outcome (see `outcomes`); on a refusal, and for a stale acknowledgement, the slot is left exactly "
            "as it was. For an `ok` case, `after` is the slot afterwards: firm_code, seq, vclock, last_sync, "
            "`licenses` (the license ids held, in the update's order), `pinned` (the key ids accepted, endorsed "
            "ones included, sorted), `product_keys` (what the container yields: for each entry held, in the "
            "update's order, and for each of its key_versions, in the entry's order, the key sealed for it), "
            "`withdrawn` (license ids held before and absent now, with those removed here, sorted), `notices` "
            "({license id: {product_code, message}}: licenses the update's manipulation.withdrawn names that "
            "were held before and are absent now) and `removed` ({license id: digest} of licenses removed here "
            "that the update does not bring back)."
        ),
        "keys": [pem(firm)],
        "container": container,
        "firm_code": FIRM,
        "slot_seq": 2,
        "setup": setup,
        "newest": newest,
        "outcomes": {
            "ok": {
                "meaning": "the update is applied: the slot takes its sequence number, time, entries and the "
                "sealed keys of those entries; or the acknowledgement is applied",
                "error": None,
            },
            "stale": {
                "meaning": "a well-signed acknowledgement of a document that is not the slot's newest: nothing changes",
                "error": None,
            },
            "invalid": {
                "meaning": "the update, an entry in it, a key endorsement or a sealed product key fails "
                "verification, or an entry names another firm, serial or container key",
                "error": "LicenseInvalid",
            },
            "other-container": {
                "meaning": "a well-signed update for another container serial",
                "error": "ActivationError",
            },
            "replay": {
                "meaning": "a well-signed update for this container whose sequence number is not above "
                "the slot's (applied already, or replayed)",
                "error": "ActivationError",
            },
        },
        "cases": cases,
    }

    # ---- sealing.json
    digest = document_digest(e7)
    key7 = pkey(1)
    record = exchange.seal_product_key(box_pub, SERIAL, digest, 1, key7)
    context = f"licentia product key|{SERIAL}|{digest}|1"

    def steps(blob: bytes, recipient: Any, ctx: str) -> dict[str, Any]:
        eph = blob[:32]
        shared = recipient.exchange(hazmat.X25519PublicKey.from_public_bytes(eph))
        salt = eph + hazmat.raw_public(recipient.public_key())
        info = b"licentia seal v1|" + ctx.encode()
        return {
            "ephemeral_public_hex": eph.hex(),
            "shared_secret_hex": shared.hex(),
            "hkdf_salt_hex": salt.hex(),
            "hkdf_info": info.decode(),
            "aes_key_hex": hazmat.hkdf(shared, salt=salt, info=info).hex(),
            "nonce_hex": blob[32:44].hex(),
            "aad": ctx,
        }

    def seal_case(
        name: str, rec: dict[str, Any], expect: str, note: str | None = None, *, serial: str = SERIAL, **extra: Any
    ):
        c: dict[str, Any] = {"name": name, "kind": "product-key", "serial": serial, "sealed_key": rec}
        if note:
            c["note"] = note
        c.update(extra)
        c["expect"] = expect
        if expect != "ok":
            c.pop("product_key_hex", None)
        return c

    session = hazmat.X25519PrivateKey.generate()
    session_b64 = pub_b64(session)
    lease_digest = "cd" * 32
    lease_ctx = f"licentia lease key|{SERVER_SERIAL}|{lease_digest}|1|{session_b64}"
    lease_key = pkey(5)
    lease_rec = grants.seal_lease_key(session_b64, SERVER_SERIAL, lease_digest, 1, lease_key)
    flipped = bytearray(b64d(record["sealed"]))
    flipped[-1] ^= 1
    sealing_cases = [
        {
            "name": "derive-product-key",
            "kind": "derive",
            "firm_secret_hex": firm_secret.hex(),
            "firm_code": FIRM,
            "product_code": 1,
            "version": 1,
            "hkdf_info": f"licentia product key|{FIRM}|1|1",
            "expect": "ok",
            "product_key_hex": key7.hex(),
        },
        {
            "name": "derive-product-key-version-2",
            "kind": "derive",
            "firm_secret_hex": firm_secret.hex(),
            "firm_code": FIRM,
            "product_code": 1,
            "version": 2,
            "hkdf_info": f"licentia product key|{FIRM}|1|2",
            "expect": "ok",
            "product_key_hex": pkey(1, 2).hex(),
        },
        seal_case(
            "sealed-product-key",
            record,
            "ok",
            license_document=e7,
            context=context,
            steps=steps(b64d(record["sealed"]), c_box, context),
            product_key_hex=key7.hex(),
            product_key=b64e(key7),
        ),
        seal_case("other-serial", record, "invalid", serial=OTHER_SERIAL),
        seal_case("other-license-digest", dict(record, license=document_digest(e8)), "invalid"),
        seal_case(
            "upper-case-digest",
            dict(record, license=digest.upper()),
            "invalid",
            note="The digest in the context is lower-case hex, exactly as in `license`.",
        ),
        seal_case("other-version", dict(record, version=2), "invalid"),
        seal_case(
            "version-as-text",
            dict(record, version="1"),
            *current(
                lambda: exchange.unseal_product_key(c_box, SERIAL, dict(record, version="1")),
                "Accepted today: the version is not type-checked before it is formatted into the context.",
                "Refused: the version is a whole number.",
            ),
            product_key_hex=key7.hex(),
        ),
        seal_case("ciphertext-changed", dict(record, sealed=b64e(bytes(flipped))), "invalid"),
        seal_case("sealed-padded", dict(record, sealed=record["sealed"] + "="), "invalid"),
        seal_case("sealed-too-short", dict(record, sealed=b64e(b64d(record["sealed"])[:59])), "invalid"),
        seal_case(
            "ephemeral-key-zero",
            dict(record, sealed=b64e(bytes(32) + b64d(record["sealed"])[32:])),
            "invalid",
            note="The ephemeral key is the X25519 point u = 0, of low order: the shared secret is 32 zero bytes, "
            "which is refused (8.1) before any key is derived.",
        ),
        seal_case(
            "ephemeral-key-low-order",
            dict(record, sealed=b64e(bytes([1]) + bytes(31) + b64d(record["sealed"])[32:])),
            "invalid",
            note="u = 1, another point of low order: again an all-zero shared secret, refused.",
        ),
        {
            "name": "lease-key",
            "kind": "lease-key",
            "serial": SERVER_SERIAL,
            "license": lease_digest,
            "session": session_b64,
            "session_private": priv_b64(session),
            "sealed_key": lease_rec,
            "context": lease_ctx,
            "steps": steps(b64d(lease_rec["sealed"]), session, lease_ctx),
            "expect": "ok",
            "product_key_hex": lease_key.hex(),
        },
        {
            "name": "lease-key-other-session-named",
            "kind": "lease-key",
            "serial": SERVER_SERIAL,
            "license": lease_digest,
            "session": pub_b64(hazmat.X25519PrivateKey.generate()),
            "session_private": priv_b64(session),
            "sealed_key": lease_rec,
            "expect": "invalid",
        },
        {
            "name": "lease-key-other-server",
            "kind": "lease-key",
            "serial": OTHER_SERIAL,
            "license": lease_digest,
            "session": session_b64,
            "session_private": priv_b64(session),
            "sealed_key": lease_rec,
            "expect": "invalid",
        },
    ]
    secret = hazmat.raw_private(c_sign) + hazmat.raw_private(c_box)
    sealing = {
        "description": (
            "Product keys: derived by License Central, sealed to a container (in updates and borrowed licenses) "
            "or to a client session (in leases). Derivation: HKDF-SHA256(ikm = firm secret, no salt (32 zero "
            "bytes), info = 'licentia product key|<firm>|<product>|<version>' in UTF-8, length 32). Sealing: "
            "`sealed` is base64url of ephemeral X25519 public key (32 bytes) || nonce (12) || AES-256-GCM "
            "ciphertext with its 16-byte tag. To open: shared = X25519(recipient private key, ephemeral public); "
            "key = HKDF-SHA256(ikm = shared, salt = ephemeral public || recipient public, info = "
            "'licentia seal v1|' + context, length 32); plaintext = AES-256-GCM-decrypt(key, nonce, ciphertext, "
            "associated data = context). For a container the context is 'licentia product key|<serial>|<entry "
            "digest>|<version>' (the digest as 64 lower-case hex digits, the version in decimal) and the recipient "
            "key is the container's X25519 key; for a lease it is 'licentia lease key|<server serial>|<entry "
            "digest>|<version>|<session>' (session: the session's X25519 public key in base64url) and the "
            "recipient is the session key. All texts are UTF-8. `steps` give the intermediate values of the "
            "valid cases. The container's 64-byte secret is its Ed25519 private key (32 bytes) followed by its "
            "X25519 private key (32 bytes). The private keys below are published test keys. `license_document` "
            "is the firm-signed entry whose digest the sealed key names; it verifies with the firm key in `keys`."
        ),
        "keys": [pem(firm)],
        "container": {**container, "secret_hex": secret.hex()},
        "outcomes": {
            "ok": {"meaning": "the key derives or opens to `product_key_hex`", "error": None},
            "invalid": {
                "meaning": "the sealed key does not open (wrong recipient, context or bytes)",
                "error": "LicenseInvalid",
            },
        },
        "cases": sealing_cases,
    }
    return updates, sealing


def _update_with_firm_pub(doc: dict[str, Any], key: Any, firm_pub: str) -> dict[str, Any]:
    return resign(doc, key, lambda p: p.update(firm_pub=firm_pub))


# ---------------------------------------------------------------- container.json


def build_container_docs(firm: Any, foreign: Any, ticket: str) -> dict[str, Any]:
    c_sign = hazmat.Ed25519PrivateKey.generate()
    c_box = hazmat.X25519PrivateKey.generate()
    cpub = pub_b64(c_sign)
    box_pub = hazmat.raw_public(c_box.public_key())
    other_sign = hazmat.Ed25519PrivateKey.generate()
    entry = entry_doc(firm, container_key=cpub, options=Options(units=100, report_interval=DAY), ticket=ticket)
    digest = document_digest(entry)
    prev = [hazmat.sha256(bytes([i])).hex() for i in range(2)]
    counters = {digest: exchange.Counter(12, NOW - DAY)}
    slots = {
        2: exchange.SlotPosition(1, NOW - 5 * DAY, 3, (), {}),
        10: exchange.SlotPosition(4, NOW - 4 * DAY, 8, (prev[1],), {}),
        101: exchange.SlotPosition(1, NOW - 3 * DAY),
        FIRM: exchange.SlotPosition(2, NOW, 9, tuple(prev), counters),
    }

    def request(
        action: str = "activate",
        *,
        key: Any = c_sign,
        ticket_id: str | None = ticket,
        firm_code=None,
        slot_map=None,
        level: str = "medium",
    ):
        doc = exchange.build_request(
            serial=SERIAL,
            level=level,
            sign_key=key,
            box_pub=box_pub,
            slots=slot_map or slots,
            action=action,
            now=NOW,
            firm_code=firm_code,
        )
        # the ticket as written by the case (build_request writes only canonical ones)
        payload = {k: v for k, v in doc["payload"].items() if k not in ("type", "v")}
        payload["ticket"] = ticket_id
        return sign_document("request", payload, key)

    req = request()
    report = request(
        "report",
        ticket_id=None,
        firm_code=FIRM,
        slot_map={FIRM: exchange.SlotPosition(3, NOW, 10, (document_digest(req), *prev), counters)},
    )
    report_digest = document_digest(report)
    ack = exchange.build_ack(
        firm_code=FIRM, firm_key=firm, serial=SERIAL, now=NOW, request_digest=report_digest, recorded={digest: 12}
    )
    receipt = exchange.build_receipt(
        serial=SERIAL,
        sign_key=c_sign,
        firm_code=FIRM,
        license_id=7,
        ticket=ticket,
        seq=4,
        vtime=NOW,
        position=exchange.SlotPosition(4, NOW, 11, (report_digest, *prev), counters),
    )
    consume = sign_document(
        "consume",
        {
            "serial": SERIAL,
            "firm_code": FIRM,
            "license_id": 7,
            "entry": digest,
            "units": 3,
            "key": "2f1c9d0e6b7a4c58",
            "created": NOW,
        },
        c_sign,
    )
    consumption = sign_document(
        "consumption",
        {
            "serial": SERIAL,
            "firm_code": FIRM,
            "license_id": 7,
            "entry": digest,
            "key": "2f1c9d0e6b7a4c58",
            "units": 3,
            "online": 15,
            "left": 85,
            "time": NOW,
        },
        firm,
    )

    def check_request(document: dict[str, Any]) -> None:
        exchange.verify_request(document)

    def check_receipt(document: dict[str, Any]) -> None:
        exchange.verify_receipt(document, c_sign.public_key())

    def check_ack(document: dict[str, Any]) -> None:
        exchange.verify_ack(document, {kid(firm): firm.public_key()})

    cases = [
        doc_case(
            "request-valid",
            req,
            "ok",
            type="request",
            slot_order=["10", "101", "10101", "2"],
            fields={"serial": SERIAL, "action": "activate", "ticket": ticket, "slots": [2, 10, 101, 10101]},
            note="Four firm slots: in the canonical payload their keys sort as text.",
        ),
        doc_case(
            "request-tampered",
            edited(req, lambda d: d["payload"]["slots"][str(FIRM)].update(seq=1)),
            "invalid",
            type="request",
        ),
        doc_case(
            "request-signed-by-another-key",
            _request_signed_by(req, other_sign),
            "invalid",
            type="request",
            why="a request is verified with the sign_pub it carries",
        ),
        doc_case(
            "request-kid-upper-case", edited(req, lambda d: d.update(kid=d["kid"].upper())), "invalid", type="request"
        ),
        probed(
            "request-ticket-lower-case",
            request(ticket_id=ticket.lower()),
            check_request,
            "Accepted today: the ticket is read as typed by a person (case folded, regrouped); `ticket` of the "
            "verified request is the grouped form.",
            "Refused: a ticket id in a document is in its grouped upper-case form.",
            type="request",
            fields={"ticket": ticket},
        ),
        doc_case(
            "request-ticket-mistyped",
            request(ticket_id=ticket[:-1] + _other_char(ticket[-1])),
            "invalid",
            type="request",
        ),
        doc_case("request-activate-without-ticket", request(ticket_id=None), "invalid", type="request"),
        doc_case("request-report-without-firm", request("report", ticket_id=None), "invalid", type="request"),
        doc_case(
            "request-sync",
            request("sync", ticket_id=None),
            "ok",
            type="request",
            fields={"action": "sync", "ticket": None},
        ),
        doc_case(
            "request-unknown-action", resign(req, c_sign, lambda p: p.update(action="renew")), "invalid", type="request"
        ),
        doc_case("request-unknown-level", request(level="strict"), "invalid", type="request"),
        doc_case(
            "request-serial-lower-case",
            resign(req, c_sign, lambda p: p.update(serial=SERIAL.lower())),
            "invalid",
            type="request",
        ),
        doc_case(
            "request-slot-key-not-digits",
            resign(req, c_sign, lambda p: p["slots"].update({"+1": {"seq": 1, "vtime": 1}})),
            "invalid",
            type="request",
        ),
        probed(
            "request-slot-key-leading-zero",
            resign(req, c_sign, lambda p: p["slots"].update({"0101": p["slots"].pop("101")})),
            check_request,
            "Accepted today: a slot key with a leading zero is read as the number (0101 as firm 101).",
            "Refused: a slot key is a firm code in its one decimal spelling.",
            type="request",
            fields={"slots": [2, 10, 101, 10101]},
        ),
        probed(
            "request-slot-key-zero",
            resign(req, c_sign, lambda p: p["slots"].update({"0": {"seq": 0, "vtime": 0}})),
            check_request,
            "Accepted today: slot keys are not checked as firm codes (0 is no firm code).",
            "Refused: a slot key is a firm code (1 to 4294967295).",
            type="request",
            fields={"slots": [0, 2, 10, 101, 10101]},
        ),
        doc_case(
            "request-counter-digest-upper-case",
            resign(
                req,
                c_sign,
                lambda p: p["slots"][str(FIRM)].update(counters={digest.upper(): {"units": 1, "first_use": None}}),
            ),
            "invalid",
            type="request",
        ),
        doc_case(
            "request-chain-too-long",
            resign(req, c_sign, lambda p: p["slots"][str(FIRM)].update(prev=[prev[0]] * 9)),
            "invalid",
            type="request",
            why="at most 8 earlier documents",
        ),
        doc_case(
            "request-negative-counter",
            resign(req, c_sign, lambda p: p["slots"][str(FIRM)]["counters"][digest].update(units=-1)),
            "invalid",
            type="request",
        ),
        probed(
            "request-without-nonce",
            resign(req, c_sign, lambda p: p.pop("nonce")),
            check_request,
            "Accepted today: the nonce is not required by the reader.",
            type="request",
        ),
        probed(
            "request-nonce-short",
            resign(req, c_sign, lambda p: p.update(nonce="AAAA")),
            check_request,
            "Accepted today: the nonce is not checked.",
            "Refused: the nonce is 16 bytes in base64url.",
            type="request",
        ),
        probed(
            "request-created-negative",
            resign(req, c_sign, lambda p: p.update(created=-1)),
            check_request,
            "Accepted today: `created` has no range check.",
            type="request",
        ),
        doc_case(
            "request-small-order-key",
            small_order_signed(req),
            "ok",
            type="request",
            fields={"serial": SERIAL, "action": "activate", "sign_pub": b64e(ED25519_IDENTITY)},
            note="sign_pub is the Ed25519 identity point (a key of small order) and sig is R = that point, S = 0, "
            "which verifies any message under that key. Accepted: licentia's Ed25519 verification (OpenSSL's) "
            "refuses a non-canonical S but not a small-order key. Such a signature proves nothing about who made "
            "the document; see docs/formats.md 8.1.",
        ),
        doc_case("report-valid", report, "ok", type="request", fields={"action": "report", "firm_code": FIRM}),
        doc_case(
            "report-counters-lowered-by-hand",
            edited(report, lambda d: d["payload"]["slots"][str(FIRM)]["counters"][digest].update(units=0)),
            "invalid",
            type="request",
        ),
        doc_case("receipt-valid", receipt, "ok", type="receipt", fields={"license_id": 7, "seq": 4}),
        doc_case(
            "receipt-foreign",
            exchange.build_receipt(
                serial=SERIAL, sign_key=other_sign, firm_code=FIRM, license_id=7, ticket=None, seq=4, vtime=NOW
            ),
            "invalid",
            type="receipt",
        ),
        probed(
            "receipt-serial-lower-case",
            resign(receipt, c_sign, lambda p: p.update(serial=SERIAL.lower())),
            check_receipt,
            "Accepted today: a receipt's serial is read as text.",
            "Refused: the serial is not well formed.",
            type="receipt",
        ),
        probed(
            "receipt-firm-code-zero",
            resign(receipt, c_sign, lambda p: p.update(firm_code=0)),
            check_receipt,
            "Accepted today: a receipt's firm code has no range check.",
            type="receipt",
        ),
        probed(
            "report-ack-request-not-a-digest",
            exchange.build_ack(
                firm_code=FIRM, firm_key=firm, serial=SERIAL, now=NOW, request_digest="abc", recorded={digest: 12}
            ),
            check_ack,
            "Accepted today: `request` is read as any text (it then matches no report).",
            type="report-ack",
            fields={"request": "abc"},
        ),
        doc_case(
            "receipt-ticket-not-text",
            resign(receipt, c_sign, lambda p: p.update(ticket=7)),
            "invalid",
            type="receipt",
            note="Refused: `ticket` is text or null (it is not checked as a ticket id).",
        ),
        doc_case(
            "receipt-ticket-not-a-ticket-id",
            resign(receipt, c_sign, lambda p: p.update(ticket="not a ticket")),
            "ok",
            type="receipt",
            fields={"ticket": "not a ticket"},
            note="Accepted: a receipt's ticket is text Central compares with the ticket it recorded.",
        ),
        doc_case(
            "receipt-tampered-license",
            edited(receipt, lambda d: d["payload"].update(license_id=8)),
            "invalid",
            type="receipt",
        ),
        doc_case(
            "receipt-without-position",
            exchange.build_receipt(
                serial=SERIAL, sign_key=c_sign, firm_code=FIRM, license_id=7, ticket=ticket, seq=4, vtime=NOW
            ),
            "ok",
            type="receipt",
            fields={"license_id": 7, "seq": 4},
            note="A receipt from a container made before generations: seq and vtime, no gen, prev or counters.",
        ),
        doc_case("report-ack-valid", ack, "ok", type="report-ack", fields={"request": report_digest}),
        doc_case(
            "report-ack-foreign-key",
            exchange.build_ack(
                firm_code=FIRM,
                firm_key=foreign,
                serial=SERIAL,
                now=NOW,
                request_digest=report_digest,
                recorded={digest: 0},
            ),
            "invalid",
            type="report-ack",
        ),
        doc_case(
            "report-ack-recorded-upper-case-digest",
            exchange.build_ack(
                firm_code=FIRM,
                firm_key=firm,
                serial=SERIAL,
                now=NOW,
                request_digest=report_digest,
                recorded={digest.upper(): 12},
            ),
            "invalid",
            type="report-ack",
        ),
        doc_case(
            "report-ack-recorded-negative",
            exchange.build_ack(
                firm_code=FIRM,
                firm_key=firm,
                serial=SERIAL,
                now=NOW,
                request_digest=report_digest,
                recorded={digest: -1},
            ),
            "invalid",
            type="report-ack",
        ),
        doc_case("report-ack-signed-as-update", resign(ack, firm, doc_type="update"), "invalid", type="report-ack"),
        doc_case("consume-valid", consume, "ok", type="consume"),
        doc_case("consume-foreign", resign(consume, other_sign), "invalid", type="consume"),
        doc_case("consumption-valid", consumption, "ok", type="consumption"),
        doc_case("consumption-foreign", resign(consumption, foreign), "invalid", type="consumption"),
        doc_case(
            "consumption-tampered",
            edited(consumption, lambda d: d["payload"].update(online=0)),
            "invalid",
            type="consumption",
        ),
    ]
    return {
        "description": (
            "Documents a container signs with its Ed25519 key `container_key` (base64url): requests and usage "
            "reports (`type` request: self-signed, verified with their own `sign_pub`, which is `container_key` "
            "here), removal receipts (`type` receipt) and online consumptions (`type` consume); and the firm's "
            "answers to them, signed by the firm key in `keys`: usage-report acknowledgements (`type` report-ack) "
            "and consumption answers (`type` consumption). `fields` lists values the verified document must carry "
            "(for a request, `slots` is the sorted list of its firm codes); `slot_order` is the order of the slot "
            "keys in the canonical payload. `digest` is SHA-256 over the canonical envelope; a report-ack's "
            "`request` is the digest of the report it answers (report-valid)."
        ),
        "container_key": cpub,
        "keys": [pem(firm)],
        "outcomes": {
            "ok": {"meaning": "the document verifies and its fields are well formed", "error": None},
            "invalid": {"meaning": "the document is refused", "error": "LicenseInvalid"},
        },
        "cases": cases,
    }


#: the Ed25519 identity point: a public key of small order (order 1)
ED25519_IDENTITY = bytes([1]) + bytes(31)


def small_order_signed(doc: dict[str, Any]) -> dict[str, Any]:
    """A self-signed document whose sign_pub is the identity point, with the signature R = the
    identity, S = 0: [S]B = R + [k]A holds for every message."""
    payload = dict(doc["payload"], sign_pub=b64e(ED25519_IDENTITY))
    return {"payload": payload, "kid": hazmat.key_id(ED25519_IDENTITY), "sig": b64e(ED25519_IDENTITY + bytes(32))}


def _request_signed_by(doc: dict[str, Any], key: Any) -> dict[str, Any]:
    """The request's payload signed by ``key`` while it still names the original sign_pub."""
    payload = dict(doc["payload"])
    sig = hazmat.sign(key, signing_message("request", payload))
    return {"payload": payload, "kid": doc["kid"], "sig": b64e(sig)}


# ---------------------------------------------------------------- grants.json


def build_grants(firm: Any, foreign: Any, ticket: str) -> dict[str, Any]:
    server = hazmat.Ed25519PrivateKey.generate()
    client = hazmat.Ed25519PrivateKey.generate()
    holder = hazmat.Ed25519PrivateKey.generate()
    other_holder = hazmat.Ed25519PrivateKey.generate()
    session = hazmat.X25519PrivateKey.generate()
    entry_d = entry_doc(
        firm,
        serial=SERVER_SERIAL,
        container_key=pub_b64(server),
        ticket=ticket,
        options=Options(quantity=5, max_grace=3 * DAY, expires=NOW + 60 * DAY),
    )
    other_entry = entry_doc(
        firm, serial=SERVER_SERIAL, container_key=pub_b64(server), license_id=8, options=Options(quantity=5)
    )
    entry = LicenseEntry.verify(entry_d, {kid(firm): firm.public_key()})
    other = LicenseEntry.verify(other_entry, {kid(firm): firm.public_key()})

    def signer(key: Any):
        return lambda t, p: sign_document(t, p, key)

    lease_id = "06b49d2000000a1c3f9e"
    lease_args = dict(
        lease_id=lease_id,
        client_lease_id="c-5d1f0a",
        feature_code=0,
        mode="station",
        session=pub_b64(session),
        nonce="n-8Xy2Qa",
        issued=NOW,
        expires=NOW + 120,
        holder=pub_b64(holder),
    )
    lease = grants.build_lease(signer(server), entry=entry, **lease_args)
    graced = grants.build_lease(signer(server), entry=entry, grace_until=NOW + 2 * DAY, **lease_args)
    borrow = grants.build_borrow(
        signer(server),
        borrow_id="b-4411",
        entry=entry,
        client_serial=CLIENT_SERIAL,
        client_key=pub_b64(client),
        issued=NOW,
        expires=NOW + 7 * DAY,
    )
    body = {
        "firm_code": FIRM,
        "product_code": 1,
        "feature_code": 0,
        "units": 0,
        "release_date": None,
        "mode": "station",
        "client_lease_id": "c-5d1f0a",
        "reconnect": False,
        "session": pub_b64(session),
        "holder": pub_b64(holder),
        "nonce": "n-8Xy2Qa",
        "user": "Jürgen",
        "host": "ws-7",
        "pid": 4242,
        "groups": ["cad"],
    }
    body_proof = dict(body, proof=grants.prove(holder, grants.LEASE_REQUEST, grants.request_proof_payload(body)))
    body_grace = dict(body, grace=3 * DAY)
    body_grace["proof"] = grants.prove(holder, grants.LEASE_REQUEST, grants.request_proof_payload(body_grace))

    def lease_proof(kind: str, counter: int, key: Any = holder, lid: str = lease_id, **extra: Any):
        payload = grants.lease_proof_payload(lid, counter)
        return {
            "holder": pub_b64(holder),
            "kind": kind,
            "lease_id": lid,
            "counter": counter,
            "signed_payload": payload,
            "proof": grants.prove(key, kind, payload),
            **extra,
        }

    renew = lease_proof(grants.LEASE_RENEW, 7)
    seat_payload = {
        "serial": CLIENT_SERIAL,
        "sign_pub": pub_b64(client),
        "server": "http://10.0.0.5:22370",
        "nonce": "Zq3x0n8cT2l1h8b6Qf9s3u5W",
        "time": NOW,
        "holder": pub_b64(holder),
    }
    seat = sign_document(grants.SEAT_PROOF, seat_payload, client)
    link_fields = cloudlink.link_payload(
        serial=CLIENT_SERIAL, sign_pub=pub_b64(client), firm_code=FIRM, name="Ada's laptop", time=NOW
    )
    cloud_link = sign_document(cloudlink.CLOUD_LINK, link_fields, client)
    borrow_return = sign_document(
        grants.BORROW_RETURN,
        {"serial": CLIENT_SERIAL, "borrow_id": "b-4411", "firm_code": FIRM, "vtime": NOW + DAY},
        client,
    )
    grace_return = sign_document(
        grants.GRACE_RETURN,
        {"serial": CLIENT_SERIAL, "lease_id": lease_id, "firm_code": FIRM, "vtime": NOW + DAY},
        client,
    )

    def g(name: str, type_: str, document: Any, expect: str, **extra: Any) -> dict[str, Any]:
        return doc_case(name, document, expect, type=type_, **extra)

    # a proxy license server's grant (docs/formats.md 12.13): the server's container is SERVER_SERIAL
    members = [
        {"login": "ada@example.com", "devices": [{"serial": CLIENT_SERIAL, "sign_pub": pub_b64(client)}]},
        {"login": "bob@example.com", "devices": []},
    ]
    state = proxy.state_digest(members, [{"license_id": 7, "entry": document_digest(entry_d)}])
    proxy_fields = {"serial": SERVER_SERIAL, "group": "Engineering", "proxy": "lan-1", "until": NOW + DAY}
    proxy_grant = sign_document(
        proxy.PROXY_GRANT,
        proxy.grant_payload(
            firm_code=FIRM,
            serial=SERVER_SERIAL,
            group="Engineering",
            proxy="lan-1",
            members=members,
            licenses=[{"license_id": 7, "product_code": 3, "seats": 2}],
            state=state,
            issued=NOW,
            until=NOW + DAY,
            refresh=900,
            poll=15,
        ),
        firm,
    )

    def pg(name: str, document: Any, expect: str, **extra: Any) -> dict[str, Any]:
        return g(f"proxy-grant-{name}", "proxy-grant", document, expect, serial=SERVER_SERIAL, **extra)

    proxy_cases = [
        pg("valid", proxy_grant, "ok", fields={**proxy_fields, "refresh": 900, "poll": 15, "state": state}),
        pg("signed-by-another-key", resign(proxy_grant, foreign), "invalid"),
        pg("for-another-container", resign(proxy_grant, firm, lambda p: p.update(serial=CLIENT_SERIAL)), "invalid"),
        pg(
            "member-added",
            edited(
                proxy_grant,
                lambda d: d["payload"]["members"][1]["devices"].append(
                    {"serial": CLIENT_SERIAL, "sign_pub": pub_b64(client)}
                ),
            ),
            "invalid",
        ),  # fmt: skip
        pg("ends-when-issued", resign(proxy_grant, firm, lambda p: p.update(until=NOW)), "ok", fields={"until": NOW}),
        pg("ends-before-issued", resign(proxy_grant, firm, lambda p: p.update(until=NOW - 1)), "invalid"),
        pg(
            "intervals-below-a-second",
            resign(proxy_grant, firm, lambda p: p.update(refresh=0, poll=-5)),
            "ok",
            fields={"refresh": 1, "poll": 1},
            note="refresh and poll below 1 are read as 1",
        ),  # fmt: skip
        pg(
            "license-id-as-text",
            resign(proxy_grant, firm, lambda p: p.update(licenses=[{"license_id": "7"}])),
            "invalid",
        ),  # fmt: skip
        pg(
            "device-without-key",
            resign(
                proxy_grant, firm, lambda p: p.update(members=[{"login": "x", "devices": [{"serial": CLIENT_SERIAL}]}])
            ),
            "invalid",
        ),  # fmt: skip
        pg("firm-code-zero", resign(proxy_grant, firm, lambda p: p.update(firm_code=0)), "invalid"),
    ]

    cases = [
        g(
            "lease-valid",
            "lease",
            lease,
            "ok",
            entry="entry",
            fields={"lease_id": lease_id, "grace": 0, "holder": pub_b64(holder)},
        ),
        g(
            "lease-with-grace",
            "lease",
            graced,
            "ok",
            entry="entry",
            fields={"lease_id": lease_id, "grace_until": NOW + 2 * DAY, "grace": 2 * DAY},
            note="grace = grace_until - issued; absent grace_until: no grace.",
        ),
        g(
            "lease-grace-lengthened",
            "lease",
            edited(graced, lambda d: d["payload"].update(grace_until=NOW + 9 * DAY)),
            "invalid",
            entry="entry",
        ),
        g(
            "lease-grace-added",
            "lease",
            edited(lease, lambda d: d["payload"].update(grace_until=NOW + DAY)),
            "invalid",
            entry="entry",
        ),
        g(
            "lease-foreign-container-key",
            "lease",
            grants.build_lease(signer(foreign), entry=entry, **lease_args),
            "invalid",
            entry="entry",
        ),
        g(
            "lease-for-another-license",
            "lease",
            grants.build_lease(signer(server), entry=other, **lease_args),
            "invalid",
            entry="entry",
            why="signed by the right key but names entry-other's digest and license id",
        ),
        g("lease-signed-as-borrow", "lease", resign(lease, server, doc_type=grants.BORROW), "invalid", entry="entry"),
        g(
            "lease-holder-null",
            "lease",
            resign(lease, server, lambda p: p.update(holder=None)),
            "ok",
            entry="entry",
            fields={"lease_id": lease_id, "holder": None},
            note="A lease made before holders existed. The reader accepts it; a client whose request named a "
            "holder refuses it, as its holder is not the request's (12.5).",
        ),
        g(
            "lease-grace-until-before-issued",
            "lease",
            resign(lease, server, lambda p: p.update(grace_until=NOW - 1)),
            "ok",
            entry="entry",
            fields={"grace_until": NOW - 1, "grace": 0},
            note="grace = max(0, grace_until - issued).",
        ),
        g(
            "lease-mode-unknown",
            "lease",
            resign(lease, server, lambda p: p.update(mode="shared")),
            "invalid",
            entry="entry",
            note="Refused: mode is user, station, exclusive or nolimit.",
        ),
        g(
            "lease-license-upper-case",
            "lease",
            resign(lease, server, lambda p: p.update(license=p["license"].upper())),
            "invalid",
            entry="entry",
            note="Refused: license is a digest (64 lower-case hex digits), and the entry's.",
        ),
        g(
            "lease-serial-lower-case",
            "lease",
            resign(lease, server, lambda p: p.update(serial=p["serial"].lower())),
            "invalid",
            entry="entry",
        ),
        g(
            "lease-feature-code-beyond-32-bits",
            "lease",
            resign(lease, server, lambda p: p.update(feature_code=2**32)),
            "invalid",
            entry="entry",
            note="Refused: feature_code is a feature code (0 to 4294967295).",
        ),
        g(
            "lease-firm-code-zero",
            "lease",
            resign(lease, server, lambda p: p.update(firm_code=0)),
            "invalid",
            entry="entry",
        ),
        g(
            "lease-issued-negative",
            "lease",
            resign(lease, server, lambda p: p.update(issued=-1)),
            "invalid",
            entry="entry",
            note="Refused: a time is a whole number of seconds from 0.",
        ),
        g(
            "lease-first-use-negative",
            "lease",
            resign(lease, server, lambda p: p.update(first_use=-1)),
            "invalid",
            entry="entry",
        ),
        g(
            "lease-feature-code-not-compared",
            "lease",
            resign(lease, server, lambda p: p.update(feature_code=0x0F)),
            "ok",
            entry="entry",
            fields={"lease_id": lease_id},
            note="The reader does not compare feature_code with anything: the client's evaluation of the entry "
            "(12.5 step 4) checks the features it asks for against the entry's feature_map.",
        ),
        g(
            "borrow-valid",
            "borrow",
            borrow,
            "ok",
            entry="entry",
            fields={"borrow_id": "b-4411", "client_serial": CLIENT_SERIAL, "client_key": pub_b64(client)},
        ),
        g(
            "borrow-foreign",
            "borrow",
            grants.build_borrow(
                signer(foreign),
                borrow_id="b-4411",
                entry=entry,
                client_serial=CLIENT_SERIAL,
                client_key=pub_b64(client),
                issued=NOW,
                expires=NOW + 7 * DAY,
            ),
            "invalid",
            entry="entry",
        ),
        g(
            "borrow-client-changed",
            "borrow",
            edited(borrow, lambda d: d["payload"]["client"].update(serial=OTHER_SERIAL)),
            "invalid",
            entry="entry",
        ),
        g("borrow-for-another-license", "borrow", borrow, "invalid", entry="entry-other"),
        g(
            "borrow-client-serial-malformed",
            "borrow",
            resign(borrow, server, lambda p: p["client"].update(serial="130-abc")),
            "invalid",
            entry="entry",
            note="Refused: client.serial is a container serial.",
        ),
        g(
            "borrow-product-code-negative",
            "borrow",
            resign(borrow, server, lambda p: p.update(product_code=-1)),
            "invalid",
            entry="entry",
        ),
        g(
            "borrow-expires-negative",
            "borrow",
            resign(borrow, server, lambda p: p.update(expires=-1)),
            "invalid",
            entry="entry",
        ),
        g(
            "borrow-license-not-a-digest",
            "borrow",
            resign(borrow, server, lambda p: p.update(license="abc")),
            "invalid",
            entry="entry",
        ),
        g(
            "borrow-return-vtime-negative",
            "borrow-return",
            resign(borrow_return, client, lambda p: p.update(vtime=-1)),
            "invalid",
            client_key=pub_b64(client),
        ),
        g(
            "borrow-return-firm-code-zero",
            "borrow-return",
            resign(borrow_return, client, lambda p: p.update(firm_code=0)),
            "invalid",
            client_key=pub_b64(client),
        ),
        g(
            "grace-return-serial-malformed",
            "grace-return",
            resign(grace_return, client, lambda p: p.update(serial="client")),
            "invalid",
            client_key=pub_b64(client),
        ),
        g(
            "borrow-return-valid",
            "borrow-return",
            borrow_return,
            "ok",
            client_key=pub_b64(client),
            fields={"borrow_id": "b-4411", "serial": CLIENT_SERIAL},
        ),
        g(
            "borrow-return-foreign",
            "borrow-return",
            resign(borrow_return, foreign),
            "invalid",
            client_key=pub_b64(client),
        ),
        g("borrow-return-is-no-grace-return", "grace-return", borrow_return, "invalid", client_key=pub_b64(client)),
        g(
            "grace-return-valid",
            "grace-return",
            grace_return,
            "ok",
            client_key=pub_b64(client),
            fields={"lease_id": lease_id, "serial": CLIENT_SERIAL},
        ),
        g("grace-return-foreign", "grace-return", resign(grace_return, foreign), "invalid", client_key=pub_b64(client)),
        g(
            "grace-return-tampered",
            "grace-return",
            edited(grace_return, lambda d: d["payload"].update(lease_id="other")),
            "invalid",
            client_key=pub_b64(client),
        ),
        g("grace-return-is-no-borrow-return", "borrow-return", grace_return, "invalid", client_key=pub_b64(client)),
        g(
            "seat-proof-valid",
            "seat-proof",
            seat,
            "ok",
            fields=dict(seat_payload),
            note="Verified with the payload's own sign_pub; the server also requires its live challenge (nonce, "
            "time) and the request's holder.",
        ),
        g("seat-proof-signed-by-another-key", "seat-proof", resign(seat, foreign), "invalid"),
        g(
            "seat-proof-tampered-holder",
            "seat-proof",
            edited(seat, lambda d: d["payload"].update(holder=pub_b64(other_holder))),
            "invalid",
        ),
        g("seat-proof-bad-serial", "seat-proof", resign(seat, client, lambda p: p.update(serial="130-abc")), "invalid"),
        g("seat-proof-time-as-text", "seat-proof", resign(seat, client, lambda p: p.update(time=str(NOW))), "invalid"),
        g("cloud-link-valid", "cloud-link", cloud_link, "ok", now=NOW, fields=dict(link_fields)),
        g("cloud-link-at-the-skew-before", "cloud-link", cloud_link, "ok", now=NOW + cloudlink.LINK_SKEW),
        g("cloud-link-at-the-skew-after", "cloud-link", cloud_link, "ok", now=NOW - cloudlink.LINK_SKEW),
        g("cloud-link-stale", "cloud-link", cloud_link, "invalid", now=NOW + cloudlink.LINK_SKEW + 1),
        g("cloud-link-from-the-future", "cloud-link", cloud_link, "invalid", now=NOW - cloudlink.LINK_SKEW - 1),
        g("cloud-link-signed-by-another-key", "cloud-link", resign(cloud_link, foreign), "invalid", now=NOW),
        g(
            "cloud-link-names-another-key",
            "cloud-link",
            resign(cloud_link, foreign, lambda p: p.update(sign_pub=pub_b64(client))),
            "invalid",
            now=NOW,
        ),
        g(
            "cloud-link-tampered-name",
            "cloud-link",
            edited(cloud_link, lambda d: d["payload"].update(name="Mallory's box")),
            "invalid",
            now=NOW,
        ),
        g(
            "cloud-link-empty-name",
            "cloud-link",
            resign(cloud_link, client, lambda p: p.update(name=" ")),
            "invalid",
            now=NOW,
        ),
        g(
            "cloud-link-name-with-a-newline",
            "cloud-link",
            resign(cloud_link, client, lambda p: p.update(name="Ada\nlaptop")),
            "invalid",
            now=NOW,
        ),
        g(
            "cloud-link-firm-code-zero",
            "cloud-link",
            resign(cloud_link, client, lambda p: p.update(firm_code=0)),
            "invalid",
            now=NOW,
        ),
        g(
            "cloud-link-bad-serial",
            "cloud-link",
            resign(cloud_link, client, lambda p: p.update(serial="130-abc")),
            "invalid",
            now=NOW,
        ),
        g(
            "cloud-link-short-key",
            "cloud-link",
            resign(cloud_link, client, lambda p: p.update(sign_pub=pub_b64(client)[:20])),
            "invalid",
            now=NOW,
        ),
    ]

    def proved(**changes: Any) -> dict[str, Any]:
        out = dict(body, **changes)
        return dict(out, proof=grants.prove(holder, grants.LEASE_REQUEST, grants.request_proof_payload(out)))

    body_back = proved(reconnect=True, counter=4)
    body_machine = proved(machine=seat)
    proof_cases = [
        {
            "name": "lease-request-proof",
            "type": "proof",
            "kind": grants.LEASE_REQUEST,
            "body": body_proof,
            "signed_payload": grants.request_proof_payload(body),
            "expect": "ok",
        },
        {
            "name": "lease-request-proof-with-grace",
            "type": "proof",
            "kind": grants.LEASE_REQUEST,
            "body": body_grace,
            "signed_payload": grants.request_proof_payload(body_grace),
            "expect": "ok",
        },
        {
            "name": "lease-request-proof-seat-back",
            "type": "proof",
            "kind": grants.LEASE_REQUEST,
            "body": body_back,
            "signed_payload": grants.request_proof_payload(body_back),
            "expect": "ok",
            "note": "a request for a seat back carries a counter above the lease's; the proof covers it",
        },
        {
            "name": "lease-request-counter-changed",
            "type": "proof",
            "kind": grants.LEASE_REQUEST,
            "body": dict(body_back, counter=5),
            "expect": "invalid",
        },
        {
            "name": "lease-request-counter-added",
            "type": "proof",
            "kind": grants.LEASE_REQUEST,
            "body": dict(body_proof, counter=1),
            "expect": "invalid",
        },
        {
            "name": "lease-request-proof-with-machine",
            "type": "proof",
            "kind": grants.LEASE_REQUEST,
            "body": body_machine,
            "signed_payload": grants.request_proof_payload(body_machine),
            "expect": "ok",
            "note": "the machine proof, when the request carries one, is covered whole",
        },
        {
            "name": "lease-request-machine-removed",
            "type": "proof",
            "kind": grants.LEASE_REQUEST,
            "body": {k: v for k, v in body_machine.items() if k != "machine"},
            "expect": "invalid",
        },
        {
            "name": "lease-request-units-changed",
            "type": "proof",
            "kind": grants.LEASE_REQUEST,
            "body": dict(body_proof, units=5),
            "expect": "invalid",
        },
        {
            "name": "lease-request-grace-added",
            "type": "proof",
            "kind": grants.LEASE_REQUEST,
            "body": dict(body_proof, grace=DAY),
            "expect": "invalid",
        },
        {
            "name": "lease-request-user-changed",
            "type": "proof",
            "kind": grants.LEASE_REQUEST,
            "body": dict(body_proof, user="mallory"),
            "expect": "ok",
            "note": "user, host, pid, groups and release_date are not covered by the proof.",
        },
        {
            "name": "lease-request-other-holder",
            "type": "proof",
            "kind": grants.LEASE_REQUEST,
            "body": dict(body_proof, holder=pub_b64(other_holder)),
            "expect": "invalid",
        },
        dict(lease_proof(grants.LEASE_RENEW, 7), name="lease-renew-proof", type="proof", expect="ok"),
        dict(lease_proof(grants.LEASE_RELEASE, 8), name="lease-release-proof", type="proof", expect="ok"),
        dict(renew, name="lease-renew-proof-as-release", type="proof", kind=grants.LEASE_RELEASE, expect="invalid"),
        dict(
            renew,
            name="lease-renew-proof-other-counter",
            type="proof",
            counter=8,
            signed_payload=grants.lease_proof_payload(lease_id, 8),
            expect="invalid",
        ),
        dict(
            renew,
            name="lease-renew-proof-other-lease",
            type="proof",
            lease_id="06b49d2000000a1c3f9f",
            signed_payload=grants.lease_proof_payload("06b49d2000000a1c3f9f", 7),
            expect="invalid",
        ),
        dict(
            lease_proof(grants.LEASE_RENEW, 7, key=other_holder),
            name="lease-renew-proof-other-holder-key",
            type="proof",
            expect="invalid",
        ),
        dict(renew, name="lease-renew-proof-padded", type="proof", proof=renew["proof"] + "==", expect="invalid"),
        dict(
            renew,
            name="lease-renew-proof-spare-bits",
            type="proof",
            proof=spare_bits_set(renew["proof"]),
            expect="invalid",
        ),
    ]
    return {
        "description": (
            "What a network license server and its clients exchange. `entries` holds the firm-signed license "
            "entries the server serves (verify them with `keys`): entry names the server's container "
            "(`server.serial`, `server.sign_pub`), entry-other is another license of that container. A lease "
            "(`type` lease) and a borrow grant (`type` borrow) verify with the Ed25519 key the named entry's "
            "`container.sign_pub` gives, and must name that entry's digest, serial and license id; every field is "
            "read by its table (docs/formats.md 12.5, 12.8): serial a container serial, license a digest, firm, "
            "product and feature codes in range, a lease's mode one of user, station, exclusive and nolimit, times "
            "whole numbers from 0, a borrow grant's client.serial a serial; a lease's holder may be null (older "
            "leases). A lease's grace is max(0, grace_until - issued) (0 without grace_until). Receipts name a "
            "well-formed serial, a firm code and a time. A borrow-return or grace-return receipt "
            "verifies with `client_key` (the client container's key recorded by the server). A seat proof "
            "(`type` seat-proof) verifies with the `sign_pub` in its own payload and names a well-formed serial, "
            "a text nonce and a whole-number time. A cloud link (`type` cloud-link, docs/formats.md 9.6) "
            "verifies with the `sign_pub` in its own payload (32 bytes), names a well-formed serial, a firm code "
            "in range, a name of 1 to 200 characters (code points) with no control character (U+0000 to U+001F, "
            "U+007F to U+009F) that is not only spaces, and a time at most 300 s "
            "from the case's `now`. A proxy grant (`type` proxy-grant, docs/formats.md 12.13) verifies with `keys` and "
            "names the case's `serial` (the proxy server's container); its members are objects with a text login and "
            "devices of a text serial and sign_pub, its licenses objects with a whole-number license_id, its until not "
            "before its issued; refresh and poll below 1 read as 1. Proofs of possession (`type` proof) are "
            "signatures by the "
            "client session's `holder` key over 'licentia/' + kind + '\\n' + canonical(signed payload), in "
            "base64url: for kind lease-request the signed payload is taken from the access request `body` (its "
            "client_lease_id, nonce, session, holder, firm_code, product_code, feature_code, units, mode and "
            "reconnect, absent ones as null, and grace only when the body has it) and the proof is body.proof; "
            "for lease-renew and lease-release it is {lease_id, counter}. `signed_payload` is the payload a "
            "reader builds from the case, the one a valid proof covers. The server's own rules on top of these "
            "(a counter above the last accepted one, a live challenge, the request's holder) are not part of a "
            "case's verdict."
        ),
        "keys": [pem(firm)],
        "server": {"serial": SERVER_SERIAL, "sign_pub": pub_b64(server)},
        "client": {"serial": CLIENT_SERIAL, "sign_pub": pub_b64(client)},
        "session": {"box_pub": pub_b64(session), "holder": pub_b64(holder)},
        "entries": {
            "entry": {"document": entry_d, "digest": document_digest(entry_d)},
            "entry-other": {"document": other_entry, "digest": document_digest(other_entry)},
        },
        "outcomes": {
            "ok": {"meaning": "the document or proof verifies", "error": None},
            "invalid": {
                "meaning": "refused: a client treats a refused lease or grant as LicenseInvalid; a server "
                "refuses a bad proof with AccessDenied (request) or LeaseUnknown (renewal), and a bad receipt "
                "with BadRequest",
                "error": "LicenseInvalid",
            },
        },
        "cases": cases + proxy_cases + proof_cases,
    }


# ---------------------------------------------------------------- protect.json


def build_protect() -> dict[str, Any]:
    key = bytes(range(200, 232))
    plain = "Protected data: Grüße, chunk by chunk.\n".encode()

    def make(data: bytes, chunk: int, *, product: int = 1) -> bytes:
        out = io.BytesIO()
        protected_data.encrypt_stream(io.BytesIO(data), out, key, firm=FIRM, product=product, chunk=chunk)
        return out.getvalue()

    blob = make(plain, 16)
    fields, header, start = fileformat.split_header(fileformat.DATA_MAGIC, blob)
    salt = b64d(fields["salt"])
    full = 16 + fileformat.CHUNK_OVERHEAD
    chunks = [blob[start + i * full : start + (i + 1) * full] for i in range(3)]
    body = blob[start:]
    empty = make(b"", 16)
    changed_header = blob.replace(b'"product":1', b'"product":2', 1)

    def case(name: str, data: bytes, expect: str, **extra: Any) -> dict[str, Any]:
        c: dict[str, Any] = {"name": name, "file_hex": data.hex(), **extra, "expect": expect}
        return c

    cases = [
        case(
            "three-chunks",
            blob,
            "ok",
            plaintext_hex=plain.hex(),
            header_json=header[10:].decode("ascii"),
            file_key_hex=protected_data.file_key(key, salt).hex(),
            chunks=3,
            note="40 bytes in chunks of 16: two full chunks and a final one of 8 bytes.",
        ),
        case("empty-file", empty, "ok", plaintext_hex="", chunks=1, note="One final chunk of 0 bytes."),
        case("final-chunk-dropped", blob[: start + 2 * full], "refused"),
        case("chunks-reordered", blob[:start] + chunks[1] + chunks[0] + chunks[2], "refused"),
        case("chunk-appended", blob + chunks[2], "refused"),
        case(
            "last-chunk-truncated",
            blob[:start] + body[: 2 * full + 27],
            "refused",
            note="A last chunk shorter than 28 bytes is a truncated file.",
        ),
        case("header-changed", changed_header, "refused"),
        case("byte-flipped", blob[:-1] + bytes([blob[-1] ^ 1]), "refused"),
        case("no-chunks", blob[:start], "refused"),
        case("bad-magic", b"\x89LPX" + blob[4:], "refused"),
    ]
    return {
        "description": (
            "Protected data files, opened with the product key `product_key_hex`. Layout: magic 89 4C 50 44 0D "
            "0A 1A 0A, header length (2 bytes, big-endian), header (JSON: format, kind 'data', firm, product, "
            "feature, key_version, chunk, salt), then chunks. Chunk i = nonce (12) || AES-256-GCM ciphertext and "
            "tag (16) of plaintext i under the file key = HKDF-SHA256(ikm = product key, salt = the header's salt "
            "decoded, info = 'licentia data v1', length 32), with associated data = the header bytes (magic, "
            "length and JSON) || i as 8 bytes big-endian || one byte, 01 for the last chunk and 00 for the others. "
            "Every chunk but the last holds exactly `chunk` plaintext bytes, the last 0 to `chunk`; the number of "
            "chunks is ceil(body length / (chunk + 28)). `file_hex` is the whole file; `plaintext_hex` what an "
            "`ok` file reads as."
        ),
        "product_key_hex": key.hex(),
        "outcomes": {
            "ok": {"meaning": "every chunk authenticates; the file reads as `plaintext_hex`", "error": None},
            "refused": {
                "meaning": "the file is not a readable protected data file or a chunk does not authenticate",
                "error": "ProtectedDataError",
            },
        },
        "cases": cases,
    }


# ---------------------------------------------------------------- anchoring.json

#: the text an event template holds where each event's sequence number goes
SEQ_MARK = "@SEQ@"
PSEUDONYM_KEY = b"licentia test vectors: pseudonym key, protects nothing"


def _pseudonym(value: str) -> str:
    """A name as a server with ``pseudonymise`` writes it: ~ and 20 hex digits of HMAC-SHA256."""
    return "~" + hmac.new(PSEUDONYM_KEY, value.encode("utf-8"), hashlib.sha256).hexdigest()[:20]


def _lease_body(kind: str, time: int, lease: str, access: int, **extra: Any) -> dict[str, Any]:
    """An event of a lease, as a license server writes it (seats/usage.py, with its seat)."""
    final = kind in anchoring.FINAL_KINDS
    release = extra.pop("release", time) if final else None
    body: dict[str, Any] = {
        "event": kind,
        "time": time,
        "leaseId": lease,
        "mode": "user",
        "accessTime": access,
        "releaseTime": release,
        "seconds": 0 if kind == "access" else (release if release is not None else time) - access,
        "success": 1,
        "fail": 0,
        "invalid": 0,
        "firmCode": FIRM,
        "productCode": 1,
        "featureCode": 0,
        "featureMap": 15,
        "ticketLicenseId": 7,
        "userIdentification": "anna@ws-17",
        "host": "ws-17",
        "ip": "10.0.4.17",
        "seat": lease,
    }
    body.update(extra)
    return body


def _deny_body(time: int, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "event": "deny",
        "time": time,
        "leaseId": None,
        "mode": "user",
        "accessTime": time,
        "releaseTime": None,
        "seconds": 0,
        "success": 0,
        "fail": 1,
        "invalid": 0,
        "firmCode": FIRM,
        "productCode": 1,
        "featureCode": 0,
        "featureMap": 0,
        "ticketLicenseId": 0,
        "userIdentification": "bert@ws-02",
        "host": "ws-02",
        "ip": "10.0.4.2",
        "reason": "no seat free (5 of 5 in use)",
    }
    body.update(extra)
    return body


def _text(seq: int, body: dict[str, Any]) -> str:
    """An event's body text: canonical JSON with its ``seq``."""
    return canonical({**body, "seq": seq}).decode()


def _event_fields(event: anchoring.UsageEvent) -> dict[str, Any]:
    return dataclasses.asdict(event)


def build_anchoring(firm: Any, foreign: Any) -> dict[str, Any]:
    server = hazmat.Ed25519PrivateKey.generate()
    other = hazmat.Ed25519PrivateKey.generate()
    server_pub = server.public_key()
    t0 = NOW

    def upload(
        bodies: list[str], *, base_seq: int = 0, base_hash: str = anchoring.GENESIS, **kw: Any
    ) -> dict[str, Any]:
        return anchoring.build_upload(
            sign_key=kw.pop("key", server),
            serial=kw.pop("serial", SERVER_SERIAL),
            time=kw.pop("time", t0 + 3600),
            base_seq=base_seq,
            base_hash=base_hash,
            bodies=bodies,
            pseudonymised=kw.pop("pseudonymised", False),
        )

    def valid(name: str, doc: dict[str, Any], note: str) -> dict[str, Any]:
        """A valid upload with the values its reader returns: fields, each event's chain hash, events."""
        got = anchoring.verify_upload(copy.deepcopy(doc), server_pub)
        hashes, prev = [], got.base_hash
        for body in got.bodies:
            prev = anchoring.chain(prev, body)
            hashes.append(prev)
        assert hashes[-1] == got.head_hash
        fields = {
            "serial": got.serial,
            "time": got.time,
            "base_seq": got.base_seq,
            "base_hash": got.base_hash,
            "head_seq": got.head_seq,
            "head_hash": got.head_hash,
            "pseudonymised": got.pseudonymised,
        }
        return doc_case(
            name,
            doc,
            "ok",
            type="usage-upload",
            note=note,
            fields=fields,
            chain=hashes,
            events=[_event_fields(e) for e in got.events],
        )

    def refused(name: str, doc: Any, note: str, kind: str = "usage-upload") -> dict[str, Any]:
        check = anchoring.verify_upload if kind == "usage-upload" else anchoring.verify_anchor
        key: Any = server_pub if kind == "usage-upload" else {kid(firm): firm.public_key()}
        try:
            check(copy.deepcopy(doc), key)
        except DocumentInvalid:
            pass
        else:
            raise AssertionError(f"{name}: the reader accepts it")
        return doc_case(name, doc, "invalid", type=kind, note="Refused: " + note)

    def one(body: dict[str, Any], seq: int = 1, **kw: Any) -> dict[str, Any]:
        """An upload of the one event ``body`` (with the right seq unless the body says one)."""
        return upload([canonical({"seq": seq, **body}).decode()], base_seq=seq - 1, **kw)

    # the first upload of a server's log: events 1-4, from the start of the chain
    first = [
        _lease_body("access", t0, "L-0001", t0),
        _lease_body("renew", t0 + 60, "L-0001", t0),
        _lease_body("access", t0 + 90, "L-0002", t0 + 90, mode="station", seat="ws-17/station"),
        _deny_body(t0 + 120),
    ]
    first_texts = [_text(i, b) for i, b in enumerate(first, 1)]
    first_doc = upload(first_texts)
    head4 = anchoring.extend(anchoring.GENESIS, first_texts)
    # the next upload, extending the first one's head: events 5-14, every other kind of event
    nxt = [
        _lease_body("release", t0 + 300, "L-0001", t0),
        _lease_body("access", t0 + 310, "L-0003", t0 + 310, userIdentification="carl@lab-3", host="lab-3"),
        _lease_body("revoke", t0 + 400, "L-0003", t0 + 310, reason="revoked by the administrator"),
        _lease_body("borrow", t0 + 500, "B-0004", t0 + 500, mode="exclusive"),
        _lease_body("return", t0 + 86400, "B-0004", t0 + 500),
        _lease_body("expire", t0 + 900, "L-0002", t0 + 90, mode="station", seat="ws-17/station", release=t0 + 840),
        _lease_body("access", t0 + 950, "L-0005", t0 + 950),
        _lease_body("grace", t0 + 960, "L-0005", t0 + 950),
        _lease_body("lost", t0 + 2000, "L-0005", t0 + 950),
        _deny_body(t0 + 2100, fail=0, invalid=1, productCode=2, reason="no license for product 2"),
    ]
    next_texts = [_text(i, b) for i, b in enumerate(nxt, 5)]
    next_doc = upload(next_texts, base_seq=4, base_hash=head4, time=t0 + 90000)
    next_head = anchoring.extend(head4, next_texts)
    next_digest = document_digest(next_doc)

    deny_absent = {k: v for k, v in _deny_body(t0 + 2200).items() if k != "leaseId"}
    pseudo = _lease_body(
        "access",
        t0,
        "L-0001",
        t0,
        userIdentification=_pseudonym("anna") + "@" + _pseudonym("ws-17"),
        host=_pseudonym("ws-17"),
        ip=_pseudonym("10.0.4.17"),
        seat=_pseudonym("L-0001"),
    )
    no_seat = {k: v for k, v in _lease_body("access", t0, "L-0001", t0).items() if k != "seat"}
    wide_user = "\U0001f600" * 256  # 256 characters, 512 UTF-16 units, 1024 bytes
    base = _lease_body("access", t0, "L-0001", t0)
    # an event of exactly 4096 bytes: its reason fills it
    short = len(_text(1, {**base, "reason": ""}).encode("utf-8"))
    full_event = {**base, "reason": "x" * (anchoring.MAX_BODY_BYTES - short)}
    assert len(_text(1, full_event).encode("utf-8")) == anchoring.MAX_BODY_BYTES
    float_text = canonical({**base, "seq": 1, "load": 0.25, "zone": "b-2"}).decode()
    assert '"load":0.25,' in float_text
    # keys out of order, and the same event with spaces
    unordered = json.dumps({"seq": 1, **base}, separators=(",", ":"), ensure_ascii=False)
    spaced = json.dumps({"seq": 1, **base}, sort_keys=True, ensure_ascii=False)
    escaped = json.dumps({"seq": 1, **base, "host": "köln-1"}, sort_keys=True, separators=(",", ":"))
    assert "\\u00f6" in escaped

    def changed_event(doc: dict[str, Any]) -> dict[str, Any]:
        def change(p: dict[str, Any]) -> None:
            p["events"][1] = _text(6, {**nxt[1], "userIdentification": "dora@lab-3"})

        out: dict[str, Any] = resign(doc, server, change)
        return out

    def left_out(doc: dict[str, Any]) -> dict[str, Any]:
        def change(p: dict[str, Any]) -> None:
            del p["events"][4]
            p["events"][4:] = [_text(i, b) for i, b in enumerate(nxt[5:], 9)]
            p["head_seq"] -= 1

        out: dict[str, Any] = resign(doc, server, change)
        return out

    cases = [
        valid(
            "upload-first-from-genesis",
            first_doc,
            "The first upload of a server's log: events 1 to 4 from the start of the chain (base_seq 0, base_hash 64 "
            "zeros). A station process's lease names its seat; the denial has leaseId null.",
        ),
        valid(
            "upload-next-every-kind",
            next_doc,
            "The upload after upload-first-from-genesis: events 5 to 14 from its head (a base that is not 0), with "
            "every other kind of event (release, revoke, borrow, return, expire, grace, lost, a denial with invalid "
            "set).",
        ),
        valid(
            "upload-one-event",
            upload(
                [_text(15, _lease_body("access", t0 + 3000, "L-0006", t0 + 3000))], base_seq=14, base_hash=next_head
            ),
            "One event, extending upload-next-every-kind.",
        ),
        valid(
            "upload-denial-without-lease-id-field",
            upload([_text(15, deny_absent)], base_seq=14, base_hash=next_head),
            "A denial names no lease: leaseId may be absent (as here) or null.",
        ),
        valid(
            "upload-after-pruning",
            upload([_text(5001, base)], base_seq=5000, base_hash=hazmat.sha256(b"anchor after pruning").hex()),
            "A log whose retention pruning left its chain starting at event 5000: the upload starts there.",
        ),
        valid(
            "upload-pseudonymised",
            upload([_text(1, pseudo)], pseudonymised=True),
            "A server with pseudonymise set: user, host, ip and seat written as ~ and 20 hex digits of "
            "HMAC-SHA256; the chain is over these texts.",
        ),
        valid(
            "upload-event-without-seat",
            upload([_text(1, no_seat)]),
            "An event of an older log, without seat: the lease is its own seat.",
        ),
        valid(
            "upload-event-released-at-access",
            one(_lease_body("release", t0, "L-0001", t0)),
            "releaseTime equal to accessTime is not before it.",
        ),
        valid(
            "upload-event-user-256-characters",
            one({**base, "userIdentification": wide_user}),
            "userIdentification of 256 characters above U+FFFF (512 UTF-16 units, 1024 bytes): lengths count "
            "characters (code points).",
        ),
        valid(
            "upload-event-largest-number",
            one({**base, "seconds": anchoring.MAX_TIME, "ticketLicenseId": 2**53 - 1}),
            "2^53 - 1 is the largest whole number an event holds; 253402300799 (9999-12-31T23:59:59 UTC) the largest "
            "time or number of seconds.",
        ),
        valid(
            "upload-event-unknown-fields",
            upload([float_text]),
            "An event field the reader does not know is not checked (here a float, 0.25, written canonically); it "
            "is still covered by the chain.",
        ),
        valid(
            "upload-event-4096-bytes",
            one(full_event),
            "An event text of exactly 4096 bytes.",
        ),
        # ---- the events
        refused("upload-event-with-spaces", upload([spaced]), "an event text is its canonical JSON (no spaces)."),
        refused(
            "upload-event-time-after-9999",
            one({**base, "accessTime": anchoring.MAX_TIME + 1}),
            "an event's times are no later than 9999-12-31T23:59:59 UTC (253402300799).",
        ),
        refused(
            "upload-event-seconds-after-9999",
            one({**base, "seconds": anchoring.MAX_TIME + 1}),
            "an event's seconds are bounded as its times are.",
        ),
        refused(
            "upload-event-ended-before-its-access",
            one({**_lease_body("release", t0 + 60, "L-0001", t0 + 120, release=None), "seconds": 0}),
            "a final event without releaseTime ends at its time, which is not before its access.",
        ),
        refused(
            "upload-event-keys-out-of-order",
            upload([unordered]),
            "an event text is its canonical JSON (keys in order).",
        ),
        refused(
            "upload-event-escaped-non-ascii",
            upload([escaped]),
            "an event text is its canonical JSON (ö written as itself, not as \\u00f6).",
        ),
        refused("upload-event-not-json", upload(["access by anna"]), "an event text is JSON."),
        refused("upload-event-not-an-object", upload(["[1]"]), "an event text is a JSON object."),
        refused(
            "upload-event-not-a-text",
            resign(first_doc, server, lambda p: p.update(events=[{"seq": 1, **first[0]}, *first_texts[1:]])),
            "events holds texts (here an object).",
        ),
        refused("upload-event-wrong-seq", upload([_text(2, base)]), "event 1 of an upload from base 0 says seq 1."),
        refused("upload-event-seq-true", upload([_text(True, base)]), "seq is an integer (true is none)."),
        refused("upload-event-unknown-kind", one({**base, "event": "steal"}), "an unknown event kind."),
        refused(
            "upload-event-success-and-fail",
            one({**base, "fail": 1}),
            "exactly one of success, fail and invalid is 1.",
        ),
        refused(
            "upload-event-no-outcome",
            one({**base, "success": 0}),
            "exactly one of success, fail and invalid is 1.",
        ),
        refused(
            "upload-event-outcome-two",
            one({**base, "success": 0, "fail": 2, "invalid": 1}),
            "success, fail and invalid are each 0 or 1 (here one is 1 and one is 2).",
        ),
        refused("upload-event-outcome-true", one({**base, "success": True}), "success is a number (true is none)."),
        refused(
            "upload-event-float",
            upload([_text(1, base).replace(f'"time":{t0}', f'"time":{t0}.0')]),
            "time is a whole number (1800000000.0, written canonically, is a float).",
        ),
        refused(
            "upload-event-number-beyond-2^53",
            one({**base, "seconds": 2**53}),
            "a number in an event is at most 2^53 - 1.",
        ),
        refused("upload-event-negative-number", one({**base, "seconds": -1}), "a number in an event is at least 0."),
        refused(
            "upload-event-released-before-access",
            one(_lease_body("release", t0, "L-0001", t0, release=t0 - 1)),
            "releaseTime before accessTime.",
        ),
        refused(
            "upload-event-access-without-lease",
            one({**base, "leaseId": None}),
            "every event but a denial names its lease.",
        ),
        refused(
            "upload-event-release-without-lease-field",
            one({k: v for k, v in _lease_body("release", t0 + 60, "L-0001", t0).items() if k != "leaseId"}),
            "every event but a denial names its lease.",
        ),
        refused(
            "upload-event-user-too-long",
            one({**base, "userIdentification": "u" * 257}),
            "userIdentification is at most 256 characters.",
        ),
        refused(
            "upload-event-lease-id-too-long",
            one({**base, "leaseId": "L" * 129}),
            "leaseId is at most 128 characters.",
        ),
        refused("upload-event-seat-too-long", one({**base, "seat": "s" * 257}), "seat is at most 256 characters."),
        refused(
            "upload-event-ticket-too-long",
            one({**base, "ticket": "T" * 33}),
            "ticket is at most 32 characters.",
        ),
        refused("upload-event-mode-not-text", one({**base, "mode": 1}), "mode is a text."),
        refused("upload-event-mode-too-long", one({**base, "mode": "m" * 17}), "mode is at most 16 characters."),
        refused(
            "upload-event-nested-too-deep",
            one({**base, "reason": json.loads("[" * 40 + "]" * 40)}),
            "an event text is read strictly (1.1): nesting deeper than 32 levels is refused, in any field.",
        ),
        refused(
            "upload-event-host-missing",
            one({k: v for k, v in base.items() if k != "host"}),
            "host is required.",
        ),
        refused("upload-event-ip-null", one({**base, "ip": None}), "ip is required (null is refused)."),
        refused(
            "upload-event-product-code-missing",
            one({k: v for k, v in base.items() if k != "productCode"}),
            "productCode is required.",
        ),
        refused("upload-event-firm-code-zero", one({**base, "firmCode": 0}), "firmCode is a firm code (2.4)."),
        refused(
            "upload-event-firm-code-beyond-32-bits",
            one({**base, "firmCode": 2**32}),
            "firmCode is a firm code (2.4).",
        ),
        refused(
            "upload-event-4097-bytes",
            one({**full_event, "reason": full_event["reason"] + "x"}),
            "an event text is at most 4096 bytes.",
        ),
        # ---- the upload
        refused(
            "upload-no-events",
            resign(first_doc, server, lambda p: p.update(events=[], head_seq=0, head_hash=anchoring.GENESIS)),
            "an upload holds 1 to 1000 events.",
        ),
        refused(
            "upload-head-seq-not-base-plus-events",
            resign(first_doc, server, lambda p: p.update(head_seq=5)),
            "head_seq is base_seq plus the number of events.",
        ),
        refused(
            "upload-head-hash-not-the-chains",
            resign(first_doc, server, lambda p: p.update(head_hash=hazmat.sha256(b"another head").hex())),
            "the events do not hash to head_hash.",
        ),
        refused(
            "upload-event-changed-head-kept",
            changed_event(next_doc),
            "event 6 was changed (another user) and the upload re-signed with the old head_hash: the chain over "
            "the events no longer reaches it.",
        ),
        refused(
            "upload-event-left-out-head-kept",
            left_out(next_doc),
            "event 9 was left out, the later events renumbered and head_seq lowered, head_hash kept: the chain no "
            "longer reaches it.",
        ),
        refused(
            "upload-base-hash-upper-case",
            upload(next_texts, base_seq=4, base_hash=head4.upper()),
            "base_hash is 64 lower-case hex digits (the head is the chain's from that text).",
        ),
        refused(
            "upload-base-hash-short",
            resign(next_doc, server, lambda p: p.update(base_hash=head4[:62])),
            "base_hash is 64 lower-case hex digits.",
        ),
        refused(
            "upload-head-hash-upper-case",
            resign(first_doc, server, lambda p: p.update(head_hash=head4.upper())),
            "head_hash is 64 lower-case hex digits.",
        ),
        refused(
            "upload-base-seq-negative",
            upload([_text(i, b) for i, b in enumerate(first, 0)], base_seq=-1),
            "base_seq is at least 0 (the events say 0 to 3, as they would after -1).",
        ),
        refused(
            "upload-time-negative",
            resign(first_doc, server, lambda p: p.update(time=-1)),
            "time is at least 0.",
        ),
        refused(
            "upload-pseudonymised-not-bool",
            resign(first_doc, server, lambda p: p.update(pseudonymised=1)),
            "pseudonymised is true or false.",
        ),
        refused(
            "upload-pseudonymised-missing",
            resign(first_doc, server, lambda p: p.pop("pseudonymised")),
            "pseudonymised is required.",
        ),
        refused(
            "upload-events-not-a-list",
            resign(first_doc, server, lambda p: p.update(events=first_texts[0])),
            "events is a list.",
        ),
        refused(
            "upload-serial-lower-case",
            resign(first_doc, server, lambda p: p.update(serial=SERVER_SERIAL.lower())),
            "serial is a container serial (2.3).",
        ),
        refused(
            "upload-signed-by-another-key",
            resign(first_doc, other),
            "signed by a key that is not the server container's.",
        ),
        refused(
            "upload-tampered",
            edited(first_doc, lambda d: d["payload"].update(time=t0)),
            "changed after signing.",
        ),
        refused(
            "upload-signed-as-usage-head",
            resign(first_doc, server, doc_type="usage-head"),
            "a document of another type (usage-head) signed by the same key.",
        ),
        refused(
            "upload-signed-as-usage-anchor",
            resign(first_doc, server, doc_type="usage-anchor"),
            "a document of another type (usage-anchor) signed by the same key.",
        ),
    ]
    cases += _large_upload_cases(upload, server_pub, base, refused)

    # ---- anchors: Central's answer to upload-next-every-kind
    anchor = anchoring.build_anchor(
        firm_key=firm,
        serial=SERVER_SERIAL,
        firm_code=FIRM,
        seq=14,
        digest=next_head,
        time=t0 + 90060,
        upload=next_digest,
    )
    anchor_fields = {
        "serial": SERVER_SERIAL,
        "firm_code": FIRM,
        "seq": 14,
        "hash": next_head,
        "time": t0 + 90060,
        "upload": next_digest,
    }
    got = anchoring.verify_anchor(copy.deepcopy(anchor), {kid(firm): firm.public_key()})
    assert dataclasses.asdict(got) == anchor_fields

    def bad_anchor(name: str, change: Any, note: str, key: Any = firm, doc_type: str | None = None) -> dict[str, Any]:
        return refused(name, resign(anchor, key, change, doc_type), note, kind="usage-anchor")

    cases += [
        doc_case(
            "anchor-valid",
            anchor,
            "ok",
            type="usage-anchor",
            note="Central's anchor for upload-next-every-kind: it holds the log through event 14, whose chain hash is "
            "that upload's head_hash; upload is that upload's digest.",
            fields=anchor_fields,
        ),
        doc_case(
            "anchor-at-seq-zero",
            anchoring.build_anchor(
                firm_key=firm,
                serial=SERVER_SERIAL,
                firm_code=FIRM,
                seq=0,
                digest=anchoring.GENESIS,
                time=t0,
                upload=next_digest,
            ),
            "ok",
            type="usage-anchor",
            fields={"seq": 0, "hash": anchoring.GENESIS},
        ),
        bad_anchor("anchor-hash-upper-case", lambda p: p.update(hash=next_head.upper()), "hash is 64 lower-case hex."),
        bad_anchor("anchor-hash-short", lambda p: p.update(hash=next_head[:63]), "hash is 64 lower-case hex."),
        bad_anchor("anchor-seq-negative", lambda p: p.update(seq=-1), "seq is at least 0."),
        bad_anchor("anchor-seq-missing", lambda p: p.pop("seq"), "seq is required."),
        bad_anchor("anchor-time-negative", lambda p: p.update(time=-1), "time is at least 0."),
        bad_anchor(
            "anchor-upload-not-a-digest",
            lambda p: p.update(upload="upload-5"),
            "upload is 64 lower-case hex.",
        ),
        bad_anchor(
            "anchor-serial-not-a-serial",
            lambda p: p.update(serial="130-5RVR-7K2M"),
            "serial is a container serial (2.3).",
        ),
        bad_anchor("anchor-firm-code-zero", lambda p: p.update(firm_code=0), "firm_code is a firm code (2.4)."),
        bad_anchor("anchor-signed-by-another-key", None, "signed by a key the reader does not accept.", key=foreign),
        refused(
            "anchor-tampered",
            edited(anchor, lambda d: d["payload"].update(seq=15)),
            "changed after signing.",
            kind="usage-anchor",
        ),
        bad_anchor(
            "anchor-signed-as-usage-upload",
            None,
            "a document of another type (usage-upload) signed by the firm key.",
            doc_type="usage-upload",
        ),
    ]
    return {
        "description": (
            "A license server's usage log as it reaches License Central (docs/formats.md 12.9, 12.10). An upload "
            "(`type` usage-upload) is signed by the server container, whose key is `container_key` (base64url; "
            "Central verifies with the key it recorded for `serial`). Its `events` are event texts: each the exact "
            "canonical JSON of one event object (no other spelling), at most 4096 bytes, event i saying seq = "
            "base_seq + i, with a known `event` kind, exactly one of success, fail and invalid 1 (the others 0), "
            "whole numbers from 0 to 2^53 - 1, firmCode a firm code, releaseTime (when given) not before "
            "accessTime, mode, host, ip and userIdentification texts of at most 256 characters, leaseId a text of "
            "at most 128 (required but for deny), seat at most 256 and ticket at most 32 when given; other event "
            "fields are not checked. An upload holds 1 to 1000 events and at most 393216 bytes of them; head_seq "
            "is base_seq + their number, base_hash and head_hash are 64 lower-case hex digits, and the chain "
            "hash(n) = SHA-256(bytes of hash(n-1) || UTF-8 bytes of event text n), in lower-case hex, from "
            "base_hash over the events gives head_hash. An anchor (`type` usage-anchor) is Central's answer, "
            "signed by the firm key in `keys`: it holds the log through `seq`, whose chain hash is `hash`, and "
            "`upload` is the digest of the upload it answers. Valid uploads carry `fields` (the payload's values), "
            "`chain` (the hash after each event, in order; the last is head_hash) and `events` (each event as "
            "licentia's reader returns it); valid anchors carry `fields`. A few large uploads are given in parts "
            "(`document_parts`, see tests/vectors/README.md)."
        ),
        "container_key": pub_b64(server),
        "serial": SERVER_SERIAL,
        "keys": [pem(firm)],
        "genesis": anchoring.GENESIS,
        "outcomes": {
            "ok": {"meaning": "the upload or anchor verifies and every field and event is well formed", "error": None},
            "invalid": {
                "meaning": "refused: Central answers an upload with invalid_request and stores nothing; a server "
                "does not record such an anchor",
                "error": "DocumentInvalid",
            },
        },
        "cases": cases,
    }


def _parts(doc: dict[str, Any], texts: list[str], seqs: list[int]) -> dict[str, Any]:
    """An upload given in parts: the envelope without its events, one event text in which
    SEQ_MARK stands for the sequence number, and how many events there are."""
    template = texts[0].replace(f'"seq":{seqs[0]},', f'"seq":{SEQ_MARK},', 1)
    assert template.count(SEQ_MARK) == 1
    assert [template.replace(SEQ_MARK, str(s)) for s in seqs] == texts
    envelope = copy.deepcopy(doc)
    del envelope["payload"]["events"]
    return {"document": envelope, "event": template, "count": len(texts)}


def upload_from_parts(parts: dict[str, Any]) -> dict[str, Any]:
    """The upload a case gives in parts (the inverse of ``_parts``)."""
    doc: dict[str, Any] = copy.deepcopy(parts["document"])
    first = doc["payload"]["base_seq"] + 1
    doc["payload"]["events"] = [parts["event"].replace(SEQ_MARK, str(first + i)) for i in range(parts["count"])]
    return doc


def _large_upload_cases(upload: Any, server_pub: Any, base: dict[str, Any], refused: Any) -> list[dict[str, Any]]:
    """The limits of one upload, at and beyond them: 1000 events, and 393216 bytes of events
    (96 events of 4096 bytes); the documents are given in parts."""
    small = _deny_body(NOW)
    out = []

    def case(name: str, texts: list[str], seqs: list[int], base_seq: int, expect: str, note: str) -> None:
        doc = upload(texts, base_seq=base_seq, base_hash=anchoring.GENESIS if base_seq == 0 else "11" * 32)
        entry: dict[str, Any] = {"name": name, "type": "usage-upload", "document_parts": _parts(doc, texts, seqs)}
        entry["note"] = note
        entry["expect"] = expect
        if expect == "ok":
            got = anchoring.verify_upload(copy.deepcopy(doc), server_pub)
            entry["digest"] = document_digest(doc)
            entry["fields"] = {"base_seq": got.base_seq, "head_seq": got.head_seq, "head_hash": got.head_hash}
        else:
            refused(name, doc, note)
            entry["note"] = "Refused: " + note
        assert upload_from_parts(entry["document_parts"]) == doc
        out.append(entry)

    seqs = list(range(1, 1002))
    texts = [_text(s, small) for s in seqs]
    assert sum(len(t.encode("utf-8")) for t in texts) < anchoring.MAX_EVENT_BYTES  # only the number is over
    case("upload-1000-events", texts[:1000], seqs[:1000], 0, "ok", "1000 events: the most one upload holds.")
    case("upload-1001-events", texts, seqs, 0, "invalid", "an upload holds at most 1000 events.")
    # events of exactly 4096 bytes, all with three-digit sequence numbers (base 100)
    short = len(_text(101, {**base, "reason": ""}).encode("utf-8"))
    padded = {**base, "reason": "x" * (anchoring.MAX_BODY_BYTES - short)}
    seqs = list(range(101, 198))
    texts = [_text(s, padded) for s in seqs]
    assert {len(t.encode("utf-8")) for t in texts} == {anchoring.MAX_BODY_BYTES}
    case(
        "upload-events-at-byte-limit",
        texts[:96],
        seqs[:96],
        100,
        "ok",
        "96 events of 4096 bytes: 393216 bytes of events, the most one upload holds (base_seq 100, base_hash 64 "
        "times '1').",
    )
    case(
        "upload-events-over-byte-limit",
        texts,
        seqs,
        100,
        "invalid",
        "97 events of 4096 bytes (397312 bytes): an upload holds at most 393216 bytes of events.",
    )
    return out


# ---------------------------------------------------------------- main


def main(names: list[str]) -> None:
    """Write every vector file, or only the files named (``generate.py anchoring``): every run
    makes new keys, so a file written again changes in every signature."""
    firm = hazmat.Ed25519PrivateKey.generate()
    foreign = hazmat.Ed25519PrivateKey.generate()
    eval_container = pub_b64(hazmat.Ed25519PrivateKey.generate())
    ticket = codes.new_ticket_id()
    builders: dict[str, Any] = {
        "codes": build_codes,
        "canonical": build_canonical,
        "licenses": lambda: build_licenses(firm, foreign, eval_container, ticket),
        "evaluation": lambda: build_evaluation(firm, eval_container),
        "updates": lambda: build_updates_and_sealing(firm, foreign, ticket)[0],
        "sealing": lambda: build_updates_and_sealing(firm, foreign, ticket)[1],
        "container": lambda: build_container_docs(firm, foreign, ticket),
        "grants": lambda: build_grants(firm, foreign, ticket),
        "protect": build_protect,
        "anchoring": lambda: build_anchoring(firm, foreign),
    }
    unknown = [n for n in names if n not in builders]
    if unknown:
        raise SystemExit(f"no vector file {', '.join(unknown)} (known: {', '.join(builders)})")
    wanted = names or list(builders)
    if "updates" in wanted and "sealing" in wanted:  # one builder makes both, from the same keys
        updates, sealing = build_updates_and_sealing(firm, foreign, ticket)
        builders["updates"], builders["sealing"] = (lambda: updates), (lambda: sealing)
    counts = {name: write(name, builders[name]()) for name in wanted}
    builders.clear()  # the firm's private keys are never stored: the files hold their public keys
    for name, n in counts.items():
        print(f"{name}.json: {n} cases")


if __name__ == "__main__":
    main(sys.argv[1:])
