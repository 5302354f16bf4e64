"""Usage logs anchored at Central: the upload a license server signs and the anchor
Central signs back (docs/formats.md, "Usage uploads and anchors"; docs/usage.md).

A license server's usage log is a hash chain: ``hash(n) = SHA-256(hash(n-1) || body(n))``
(hex), where ``body(n)`` is the canonical JSON text of event ``n`` with its ``seq``; the
chain starts from 32 zero bytes (``GENESIS``) at sequence 0, or from the anchor retention
pruning left. An upload carries a run of consecutive event bodies and the point of the
chain they extend (``base_seq``, ``base_hash``), signed with the server container's key
(type ``usage-upload``). Central recomputes the chain over the bodies before it stores
anything, checks that the run extends the head it anchored last, stores the events and
answers an anchor (type ``usage-anchor``) signed with a firm's key: the sequence and hash
it now holds for that server.

Everything here is pure: no clock, no files, no network.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from . import codes, hazmat
from .documents import DocumentInvalid, document_digest, parse, require, sign_document, verify_document
from .encoding import JsonRejected, canonical, strict_loads
from .exchange import is_digest

UPLOAD_TYPE = "usage-upload"
ANCHOR_TYPE = "usage-anchor"
GENESIS = "00" * 32
#: at most this many events, and this many bytes of event text, in one upload (one chunk)
MAX_EVENTS = 1000
MAX_EVENT_BYTES = 384 * 1024
#: one event's body
MAX_BODY_BYTES = 4096
#: what an event's ``event`` field may say (seats/usage.py writes them)
KINDS = frozenset({"access", "borrow", "renew", "release", "expire", "revoke", "return", "deny", "grace", "lost"})
#: the kinds that end a session: its seat is free from the event's ``releaseTime``
FINAL_KINDS = frozenset({"release", "expire", "revoke", "return"})
_TEXTS = ("userIdentification", "host", "ip")
_MAX_INT = 2**53 - 1
#: the last second an event's times may name (9999-12-31T23:59:59 UTC): what a date can say
MAX_TIME = 253_402_300_799
_TIMES = ("time", "accessTime", "releaseTime", "seconds")


def chain(prev: str, body: str) -> str:
    """The hash of the event whose canonical body text is ``body``, after ``prev`` (hex)."""
    return hazmat.sha256(bytes.fromhex(prev) + body.encode()).hex()


def extend(prev: str, bodies: Sequence[str]) -> str:
    for body in bodies:
        prev = chain(prev, body)
    return prev


@dataclass(frozen=True)
class UsageEvent:
    """One event of a server's usage log, read from its body text (every field checked)."""

    seq: int
    kind: str
    time: int
    lease_id: str | None
    mode: str
    access_time: int
    release_time: int | None
    seconds: int
    success: int
    fail: int
    invalid: int
    firm_code: int
    product_code: int
    feature_code: int
    feature_map: int
    license_id: int
    user: str
    host: str
    ip: str
    seat: str | None  # leases with the same seat share it (None: older logs, the lease is its own seat)
    ticket: str | None = None

    @property
    def latest(self) -> int:
        """The latest time the event names (its time, the access, the release)."""
        return max(self.time, self.access_time, self.release_time or 0)


def _int(body: dict[str, Any], name: str, *, optional: bool = False) -> Any:
    value = body.get(name)
    if value is None and optional:
        return None
    if type(value) is not int or not 0 <= value <= (MAX_TIME if name in _TIMES else _MAX_INT):
        raise DocumentInvalid(f"event field {name!r} is not a whole number >= 0 (a time before the year 10000)")
    return value


def _text(body: dict[str, Any], name: str, limit: int, *, optional: bool = False) -> Any:
    value = body.get(name)
    if value is None and optional:
        return None
    if not isinstance(value, str) or len(value) > limit:
        raise DocumentInvalid(f"event field {name!r} is not a text of at most {limit} characters")
    return value


def read_event(text: str, seq: int) -> UsageEvent:
    """The event whose body is ``text``, which must be canonical JSON and say ``seq``."""
    if not isinstance(text, str) or len(text.encode("utf-8", "surrogatepass")) > MAX_BODY_BYTES:
        raise DocumentInvalid(f"event {seq}: not a body of at most {MAX_BODY_BYTES} bytes")
    try:
        body = strict_loads(text)  # the strict reader of every document (depth, numbers, duplicate keys)
    except JsonRejected:
        raise DocumentInvalid(f"event {seq}: not acceptable JSON") from None
    if not isinstance(body, dict):
        raise DocumentInvalid(f"event {seq}: not a JSON object")
    try:
        if canonical(body).decode() != text:
            raise DocumentInvalid(f"event {seq}: not canonical JSON")
    except (TypeError, ValueError, UnicodeError):
        raise DocumentInvalid(f"event {seq}: not canonical JSON") from None
    if body.get("seq") != seq or type(body.get("seq")) is not int:
        raise DocumentInvalid(f"event {seq}: says sequence {body.get('seq')!r}")
    kind = body.get("event")
    if kind not in KINDS:
        raise DocumentInvalid(f"event {seq}: unknown kind {kind!r}")
    flags = tuple(_int(body, name) for name in ("success", "fail", "invalid"))
    if sorted(flags) != [0, 0, 1]:
        raise DocumentInvalid(f"event {seq}: exactly one of success, fail and invalid is 1")
    for name in _TEXTS:
        _text(body, name, 256)
    _text(body, "mode", 16)
    lease_id = _text(body, "leaseId", 128, optional=True)
    if lease_id is None and kind != "deny":
        raise DocumentInvalid(f"event {seq}: an event of kind {kind} names its lease")
    release = _int(body, "releaseTime", optional=True)
    access = _int(body, "accessTime")
    time = _int(body, "time")
    if release is not None and release < access:
        raise DocumentInvalid(f"event {seq}: released before it was accessed")
    if kind in FINAL_KINDS and release is None and time < access:  # the event's time is the release
        raise DocumentInvalid(f"event {seq}: ended before it was accessed")
    try:
        firm_code = codes.check_firm_code(_int(body, "firmCode"))
    except codes.InvalidCode:
        raise DocumentInvalid(f"event {seq}: bad firm code") from None
    return UsageEvent(
        seq=seq,
        kind=kind,
        time=time,
        lease_id=lease_id,
        mode=body["mode"],
        access_time=access,
        release_time=release,
        seconds=_int(body, "seconds"),
        success=flags[0],
        fail=flags[1],
        invalid=flags[2],
        firm_code=firm_code,
        product_code=_int(body, "productCode"),
        feature_code=_int(body, "featureCode"),
        feature_map=_int(body, "featureMap"),
        license_id=_int(body, "ticketLicenseId"),
        user=body["userIdentification"],
        host=body["host"],
        ip=body["ip"],
        seat=_text(body, "seat", 256, optional=True),
        ticket=_text(body, "ticket", 32, optional=True),
    )


# ---------------------------------------------------------------- uploads


@dataclass(frozen=True)
class Upload:
    serial: str
    time: int
    base_seq: int
    base_hash: str
    bodies: tuple[str, ...] = field(repr=False)
    events: tuple[UsageEvent, ...] = field(repr=False)
    head_seq: int
    head_hash: str
    pseudonymised: bool
    digest: str

    @property
    def first_seq(self) -> int:
        return self.base_seq + 1


def build_upload(
    *,
    sign_key: hazmat.Ed25519PrivateKey,
    serial: str,
    time: int,
    base_seq: int,
    base_hash: str,
    bodies: Sequence[str],
    pseudonymised: bool = False,
) -> dict[str, Any]:
    """The signed upload of ``bodies`` (events ``base_seq + 1`` on) extending ``base_hash``."""
    payload = upload_payload(
        serial=serial, time=time, base_seq=base_seq, base_hash=base_hash, bodies=bodies, pseudonymised=pseudonymised
    )
    return sign_document(UPLOAD_TYPE, payload, sign_key)


def upload_payload(
    *, serial: str, time: int, base_seq: int, base_hash: str, bodies: Sequence[str], pseudonymised: bool
) -> dict[str, Any]:
    """The payload of an upload (for a signer that keeps its key inside a container)."""
    return {
        "serial": serial,
        "time": time,
        "base_seq": base_seq,
        "base_hash": base_hash,
        "events": list(bodies),
        "head_seq": base_seq + len(bodies),
        "head_hash": extend(base_hash, bodies),
        "pseudonymised": pseudonymised,
    }


def upload_serial(data: bytes | str | dict[str, Any]) -> str:
    """The serial an (unverified) upload names: whose registered key verifies it."""
    serial = require(parse(data)["payload"], "serial", str)
    try:
        return codes.check_serial(serial)
    except codes.InvalidCode:
        raise DocumentInvalid("bad serial") from None


def verify_upload(data: bytes | str | dict[str, Any], container_pub: hazmat.Ed25519PublicKey) -> Upload:
    """Check an upload's signature, its fields, every event body and the chain over them."""
    doc = parse(data)
    payload = verify_document(doc, UPLOAD_TYPE, container_pub)
    serial = upload_serial(doc)
    base_seq = require(payload, "base_seq", int)
    base_hash = require(payload, "base_hash", str)
    head_seq = require(payload, "head_seq", int)
    head_hash = require(payload, "head_hash", str)
    time = require(payload, "time", int)
    bodies = require(payload, "events", list)
    pseudonymised = require(payload, "pseudonymised", bool)
    if base_seq < 0 or time < 0 or not is_digest(base_hash) or not is_digest(head_hash):
        raise DocumentInvalid("bad base, head or time")
    if not 1 <= len(bodies) <= MAX_EVENTS or head_seq != base_seq + len(bodies):
        raise DocumentInvalid(f"an upload holds 1 to {MAX_EVENTS} events, numbered on from its base")
    if sum(len(b.encode("utf-8", "surrogatepass")) if isinstance(b, str) else 0 for b in bodies) > MAX_EVENT_BYTES:
        raise DocumentInvalid("too many bytes of events in one upload")
    events = tuple(read_event(text, base_seq + i) for i, text in enumerate(bodies, 1))
    if extend(base_hash, bodies) != head_hash:
        raise DocumentInvalid("the events do not hash to the head the upload states")
    return Upload(
        serial=serial,
        time=time,
        base_seq=base_seq,
        base_hash=base_hash,
        bodies=tuple(bodies),
        events=events,
        head_seq=head_seq,
        head_hash=head_hash,
        pseudonymised=pseudonymised,
        digest=document_digest(doc),
    )


# ---------------------------------------------------------------- anchors


@dataclass(frozen=True)
class Anchor:
    """Central's word that it holds a server's log through ``seq`` (whose hash is ``hash``)."""

    serial: str
    firm_code: int
    seq: int
    hash: str
    time: int
    upload: str  # the digest of the upload it answers


def anchor_payload(*, serial: str, firm_code: int, seq: int, digest: str, time: int, upload: str) -> dict[str, Any]:
    return {"serial": serial, "firm_code": firm_code, "seq": seq, "hash": digest, "time": time, "upload": upload}


def build_anchor(
    *, firm_key: hazmat.Ed25519PrivateKey, serial: str, firm_code: int, seq: int, digest: str, time: int, upload: str
) -> dict[str, Any]:
    payload = anchor_payload(serial=serial, firm_code=firm_code, seq=seq, digest=digest, time=time, upload=upload)
    return sign_document(ANCHOR_TYPE, payload, firm_key)


def anchor_firm(data: bytes | str | dict[str, Any]) -> int:
    """The firm code an (unverified) anchor claims, to find the key that verifies it."""
    return int(require(parse(data)["payload"], "firm_code", int))


def verify_anchor(data: bytes | str | dict[str, Any], keys: dict[str, hazmat.Ed25519PublicKey]) -> Anchor:
    payload = verify_document(parse(data), ANCHOR_TYPE, keys)
    try:
        serial = codes.check_serial(require(payload, "serial", str))
        firm_code = codes.check_firm_code(require(payload, "firm_code", int))
    except codes.InvalidCode as exc:
        raise DocumentInvalid(str(exc)) from None
    seq = require(payload, "seq", int)
    digest = require(payload, "hash", str)
    time = require(payload, "time", int)
    upload = require(payload, "upload", str)
    if seq < 0 or time < 0 or not is_digest(digest) or not is_digest(upload):
        raise DocumentInvalid("bad sequence, hash, time or upload digest")
    return Anchor(serial=serial, firm_code=firm_code, seq=seq, hash=digest, time=time, upload=upload)
