"""Requests, updates, receipts and firm-key endorsements: the documents that travel
between a container and License Central.

- request  (signed by the container's Ed25519 key): who the container is, where each
  firm slot stands (sequence number, virtual time), and the ticket to activate.
- update   (signed by a firm key): the whole set of that firm's licenses for one
  container, the next sequence number, Central's signed time, and product keys
  sealed to the container's X25519 key (bound to each entry's digest).
- receipt  (signed by the container): proof that a license was removed.
- firm-key (signed by an older firm key): endorses a rotated key.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from . import codes, hazmat
from .documents import DocumentInvalid, document_digest, parse, require, sign_document, verify_document
from .encoding import b64d, b64e
from .license import LicenseEntry

LEVELS = ("loose", "medium", "tight")
ACTIONS = ("activate", "sync", "report")


_PublicKey = TypeVar("_PublicKey")


def _pub_from_b64(text: str, load: Callable[[bytes], _PublicKey]) -> _PublicKey:
    try:
        raw = b64d(text)
        return load(raw)
    except ValueError:
        raise DocumentInvalid("bad public key") from None


# ---------------------------------------------------------------- requests


#: how many earlier documents of a slot each new document names (so Central knows an
#: honest document that arrives late, e.g. an offline request carried by hand)
CHAIN_DEPTH = 8
#: random bytes in a request (base64url: 22 characters)
NONCE_BYTES = 16


@dataclass(frozen=True)
class Counter:
    """What a container counted under one license entry (keyed by the entry's digest)."""

    units: int = 0
    first_use: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {"units": self.units, "first_use": self.first_use}


@dataclass(frozen=True)
class SlotPosition:
    """Where one firm slot of a container stands, as a document it signs reports it.

    ``gen`` only goes up (every state write raises it); ``prev`` names the slot's last
    signed documents, newest first; ``counters`` are the slot's counters by entry digest.
    A container made before generations reports ``gen`` None and nothing else."""

    seq: int
    vtime: int
    gen: int | None = None
    prev: tuple[str, ...] = ()
    counters: dict[str, Counter] = field(default_factory=dict, compare=False)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"seq": self.seq, "vtime": self.vtime}
        if self.gen is not None:
            out.update(gen=self.gen, prev=list(self.prev), counters={d: c.to_json() for d, c in self.counters.items()})
        return out

    @classmethod
    def from_json(cls, v: Any) -> SlotPosition:
        if not isinstance(v, dict):
            raise DocumentInvalid("bad slot")
        seq, vtime = require(v, "seq", int), require(v, "vtime", int)
        gen = require(v, "gen", int, optional=True)
        if seq < 0 or vtime < 0 or (gen is not None and gen < 0):
            raise DocumentInvalid("bad slot")
        if gen is None:
            return cls(seq, vtime)
        prev = require(v, "prev", list)
        if len(prev) > CHAIN_DEPTH or not all(is_digest(d) for d in prev):
            raise DocumentInvalid("bad chain")
        counters: dict[str, Counter] = {}
        for digest, c in require(v, "counters", dict).items():
            if not is_digest(digest) or not isinstance(c, dict):
                raise DocumentInvalid("bad counter")
            units = require(c, "units", int)
            first = require(c, "first_use", int, optional=True)
            if units < 0 or (first is not None and first < 0):
                raise DocumentInvalid("bad counter")
            counters[digest] = Counter(units, first)
        return cls(seq, vtime, gen, tuple(prev), counters)


def is_digest(value: Any) -> bool:
    """A SHA-256 digest in its one spelling: 64 lower-case hex digits."""
    return isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value)


@dataclass(frozen=True)
class Request:
    serial: str
    level: str
    sign_pub: str
    box_pub: str
    slots: dict[int, SlotPosition]
    action: str
    ticket: str | None
    firm_code: int | None
    created: int
    digest: str
    document: dict[str, Any] = field(repr=False, compare=False, default_factory=dict)

    def position(self, firm_code: int) -> SlotPosition:
        return self.slots.get(firm_code, SlotPosition(0, 0))


def build_request(
    *,
    serial: str,
    level: str,
    sign_key: hazmat.Ed25519PrivateKey,
    box_pub: bytes,
    slots: dict[int, SlotPosition],
    action: str,
    now: int,
    ticket: str | None = None,
    firm_code: int | None = None,
) -> dict[str, Any]:
    """A request, self-signed; a ticket id goes in its canonical form (InvalidCode when it
    is none)."""
    payload = {
        "serial": serial,
        "level": level,
        "sign_pub": b64e(hazmat.raw_public(sign_key.public_key())),
        "box_pub": b64e(box_pub),
        "slots": {str(f): p.to_json() for f, p in sorted(slots.items())},
        "action": action,
        "ticket": None if ticket is None else codes.normalize_ticket(ticket),
        "firm_code": firm_code,
        "created": now,
        "nonce": b64e(os.urandom(NONCE_BYTES)),
    }
    return sign_document("request", payload, sign_key)


def verify_request(data: bytes | str | dict[str, Any]) -> Request:
    """Verify a request's self-signature and shape (Central then checks the serial's key)."""
    doc = parse(data)
    payload = doc["payload"]
    sign_pub = require(payload, "sign_pub", str)
    key = _pub_from_b64(sign_pub, hazmat.Ed25519PublicKey.from_public_bytes)
    payload = verify_document(doc, "request", key)
    try:
        serial = codes.check_serial(require(payload, "serial", str))
        ticket = require(payload, "ticket", str, optional=True)
        if ticket is not None and codes.normalize_ticket(ticket) != ticket:
            raise codes.InvalidCode("the ticket id is not in its canonical form")
        firm = require(payload, "firm_code", int, optional=True)
        if firm is not None:
            codes.check_firm_code(firm)
    except codes.InvalidCode as exc:
        raise DocumentInvalid(str(exc)) from None
    level = require(payload, "level", str)
    if level not in LEVELS:
        raise DocumentInvalid("bad level")
    action = require(payload, "action", str)
    if action not in ACTIONS:
        raise DocumentInvalid("bad action")
    if action == "activate" and ticket is None:
        raise DocumentInvalid("activation without ticket")
    if action == "report" and firm is None:
        raise DocumentInvalid("report without firm_code")
    box_pub = require(payload, "box_pub", str)
    _pub_from_b64(box_pub, hazmat.X25519PublicKey.from_public_bytes)
    slots: dict[int, SlotPosition] = {}
    for k, v in require(payload, "slots", dict).items():
        if not (k.isascii() and k.isdigit() and len(k) <= 10 and str(int(k)) == k and 1 <= int(k) <= codes.UINT32_MAX):
            raise DocumentInvalid("bad slot")  # a firm code in its one decimal spelling
        slots[int(k)] = SlotPosition.from_json(v)
    try:
        if len(b64d(require(payload, "nonce", str))) != NONCE_BYTES:
            raise ValueError("nonce length")
    except ValueError:
        raise DocumentInvalid("bad nonce") from None
    created = require(payload, "created", int)
    if created < 0:
        raise DocumentInvalid("bad creation time")
    return Request(
        serial=serial,
        level=level,
        sign_pub=sign_pub,
        box_pub=box_pub,
        slots=slots,
        action=action,
        ticket=ticket,
        firm_code=firm,
        created=created,
        digest=document_digest(doc),
        document=doc,
    )


# ---------------------------------------------------------------- product keys


def derive_product_key(firm_secret: bytes, firm_code: int, product_code: int, version: int) -> bytes:
    """Central's product key for (firm, product, key version)."""
    info = f"licentia product key|{firm_code}|{product_code}|{version}".encode()
    return hazmat.hkdf(firm_secret, salt=None, info=info)


def _seal_context(serial: str, license_digest: str, version: int) -> bytes:
    return f"licentia product key|{serial}|{license_digest}|{version}".encode()


def seal_product_key(box_pub: bytes, serial: str, license_digest: str, version: int, key: bytes) -> dict[str, Any]:
    return {
        "license": license_digest,
        "version": version,
        "sealed": b64e(hazmat.seal(box_pub, key, _seal_context(serial, license_digest, version))),
    }


def key_version(value: Any) -> int:
    """A product-key version: a whole number from 1 (ValueError otherwise: "1", true, 1.0)."""
    if type(value) is not int or value < 1:
        raise ValueError("a key version is a whole number from 1")
    return value


def unseal_product_key(box_key: hazmat.X25519PrivateKey, serial: str, sealed: dict[str, Any]) -> bytes:
    try:
        blob = b64d(sealed["sealed"])
        return hazmat.unseal(box_key, blob, _seal_context(serial, sealed["license"], key_version(sealed["version"])))
    except (KeyError, ValueError, TypeError) as exc:
        raise DocumentInvalid(f"sealed product key unusable: {exc}") from None


# ---------------------------------------------------------------- firm keys


def endorse_key(old: hazmat.Ed25519PrivateKey, firm_code: int, new_pub: hazmat.Ed25519PublicKey) -> dict[str, Any]:
    return sign_document("firm-key", {"firm_code": firm_code, "pub": b64e(hazmat.raw_public(new_pub))}, old)


def accept_keys(
    firm_code: int, pinned: dict[str, hazmat.Ed25519PublicKey], endorsements: list[dict[str, Any]]
) -> dict[str, hazmat.Ed25519PublicKey]:
    """Pinned keys plus every key endorsed (transitively) by a pinned key.

    An element that is not a JSON object refuses the whole list (DocumentInvalid). An
    endorsement that does not verify with the keys accepted so far, or whose ``firm_code``
    is not the integer ``firm_code`` (absent, ``true``, another firm), is skipped. One that
    verifies and names this firm but holds no ``pub`` of 32 bytes in canonical base64url
    refuses the whole list (DocumentInvalid)."""
    if not all(isinstance(doc, dict) for doc in endorsements):
        raise DocumentInvalid("an endorsement is a signed document (a JSON object)")
    keys = dict(pinned)
    changed = True
    while changed:
        changed = False
        for doc in endorsements:
            try:
                payload = verify_document(doc, "firm-key", keys)
            except DocumentInvalid:
                continue
            named = payload.get("firm_code")
            if type(named) is not int or named != firm_code:  # true is no firm code (True == 1 in Python)
                continue
            key = _pub_from_b64(require(payload, "pub", str), hazmat.Ed25519PublicKey.from_public_bytes)
            kid = hazmat.key_id(key)
            if kid not in keys:
                keys[kid] = key
                changed = True
    return keys


# ---------------------------------------------------------------- updates


@dataclass(frozen=True)
class Update:
    firm_code: int
    serial: str
    seq: int
    time: int
    entries: tuple[LicenseEntry, ...]
    sealed_keys: tuple[dict[str, Any], ...]
    firm_pub: hazmat.Ed25519PublicKey
    endorsements: tuple[dict[str, Any], ...]
    request: str | None
    digest: str
    document: dict[str, Any] = field(repr=False, compare=False, default_factory=dict)
    message: str | None = None
    #: license ids Central re-issued ("rebased") or took back ("withdrawn") because it saw
    #: this container's files restored or forked; ``message`` then says so to the user
    manipulation: dict[str, list[int]] | None = None


def build_update(
    *,
    firm_code: int,
    firm_key: hazmat.Ed25519PrivateKey,
    serial: str,
    seq: int,
    now: int,
    entries: list[dict[str, Any]],
    sealed_keys: list[dict[str, Any]],
    request_digest: str | None,
    endorsements: list[dict[str, Any]] | None = None,
    message: str | None = None,
    manipulation: dict[str, list[int]] | None = None,
) -> dict[str, Any]:
    payload = update_payload(
        firm_code=firm_code,
        firm_pub=b64e(hazmat.raw_public(firm_key.public_key())),
        serial=serial,
        seq=seq,
        now=now,
        entries=entries,
        sealed_keys=sealed_keys,
        request_digest=request_digest,
        endorsements=endorsements,
        message=message,
        manipulation=manipulation,
    )
    return sign_document("update", payload, firm_key)


def update_payload(
    *,
    firm_code: int,
    firm_pub: str,
    serial: str,
    seq: int,
    now: int,
    entries: list[dict[str, Any]],
    sealed_keys: list[dict[str, Any]],
    request_digest: str | None,
    endorsements: list[dict[str, Any]] | None = None,
    message: str | None = None,
    manipulation: dict[str, list[int]] | None = None,
) -> dict[str, Any]:
    """The payload of an update (``firm_pub``: the signing firm key, base64url)."""
    return {
        "firm_code": firm_code,
        "firm_pub": firm_pub,
        "serial": serial,
        "seq": seq,
        "time": now,
        "entries": entries,
        "keys": sealed_keys,
        "endorsements": endorsements or [],
        "request": request_digest,
        "message": message,
        "manipulation": manipulation,
    }


def verify_update(
    data: bytes | str | dict[str, Any], pinned: dict[str, hazmat.Ed25519PublicKey] | None = None
) -> Update:
    """Verify an update. With ``pinned`` keys (the slot's), the signer must be pinned
    or endorsed by a pinned key; without, the embedded key must sign it (first use)."""
    doc = parse(data)
    payload = doc["payload"]
    try:
        firm_code = codes.check_firm_code(require(payload, "firm_code", int))
    except codes.InvalidCode as exc:
        raise DocumentInvalid(str(exc)) from None
    firm_pub = _pub_from_b64(require(payload, "firm_pub", str), hazmat.Ed25519PublicKey.from_public_bytes)
    endorsements = require(payload, "endorsements", list)
    if not all(isinstance(d, dict) for d in endorsements):
        raise DocumentInvalid("an endorsement is a signed document (a JSON object)")
    keys = accept_keys(firm_code, pinned, endorsements) if pinned else {hazmat.key_id(firm_pub): firm_pub}
    if doc["kid"] != hazmat.key_id(firm_pub):
        raise DocumentInvalid("update kid does not match its firm key")
    payload = verify_document(doc, "update", keys)
    try:
        serial = codes.check_serial(require(payload, "serial", str))
    except codes.InvalidCode as exc:
        raise DocumentInvalid(str(exc)) from None
    entries = []
    for entry_doc in require(payload, "entries", list):
        if not isinstance(entry_doc, dict):
            raise DocumentInvalid("an entry is a signed document (a JSON object)")
        entry = LicenseEntry.verify(entry_doc, keys)
        if entry.firm_code != firm_code or entry.serial != serial:
            raise DocumentInvalid("entry for another firm or container")
        entries.append(entry)
    if len({e.license_id for e in entries}) != len(entries):  # the same digest is the same license id
        raise DocumentInvalid("two entries of the update have the same license id")
    sealed = require(payload, "keys", list)
    versions = {e.digest: e.key_versions for e in entries}
    named: set[tuple[str, int]] = set()
    for key in sealed:
        if not (
            isinstance(key, dict)
            and isinstance(key.get("license"), str)
            and isinstance(key.get("sealed"), str)
            and type(key.get("version")) is int
            and key["version"] in versions.get(str(key["license"]), ())
        ):
            raise DocumentInvalid("bad sealed key: each names an entry of the update and one of its key versions")
        if (key["license"], key["version"]) in named:
            raise DocumentInvalid("two sealed keys name the same entry and key version")
        named.add((key["license"], key["version"]))
    seq = require(payload, "seq", int)
    if seq < 1:
        raise DocumentInvalid("bad sequence number")
    time = require(payload, "time", int)
    if time < 0:
        raise DocumentInvalid("bad time")
    request = require(payload, "request", str, optional=True)
    if request is not None and not is_digest(request):
        raise DocumentInvalid("bad request digest")
    manipulation = require(payload, "manipulation", dict, optional=True)
    if manipulation is not None and (
        set(manipulation) - {"rebased", "withdrawn"}
        or not all(
            isinstance(ids, list) and all(isinstance(i, int) and not isinstance(i, bool) for i in ids)
            for ids in manipulation.values()
        )
    ):
        raise DocumentInvalid("bad manipulation notice")
    return Update(
        firm_code=firm_code,
        serial=serial,
        seq=seq,
        time=time,
        entries=tuple(entries),
        sealed_keys=tuple(sealed),
        firm_pub=firm_pub,
        endorsements=tuple(endorsements),
        request=request,
        digest=document_digest(doc),
        document=doc,
        message=require(payload, "message", str, optional=True),
        manipulation=manipulation,
    )


# ---------------------------------------------------------------- receipts


@dataclass(frozen=True)
class Receipt:
    serial: str
    firm_code: int
    license_id: int
    ticket: str | None
    seq: int
    vtime: int
    digest: str
    document: dict[str, Any] = field(repr=False, compare=False, default_factory=dict)
    #: the firm slot's generation, chain and counters (the removed license's last counts)
    position: SlotPosition = field(default_factory=lambda: SlotPosition(0, 0))


def build_receipt(
    *,
    serial: str,
    sign_key: hazmat.Ed25519PrivateKey,
    firm_code: int,
    license_id: int,
    ticket: str | None,
    seq: int,
    vtime: int,
    position: SlotPosition | None = None,
) -> dict[str, Any]:
    payload = {
        "serial": serial,
        "firm_code": firm_code,
        "license_id": license_id,
        "ticket": ticket,
        **(position or SlotPosition(seq, vtime)).to_json(),
    }
    payload.update(seq=seq, vtime=vtime)
    return sign_document("receipt", payload, sign_key)


def verify_receipt(data: bytes | str | dict[str, Any], container_pub: hazmat.Ed25519PublicKey) -> Receipt:
    doc = parse(data)
    payload = verify_document(doc, "receipt", container_pub)
    position = SlotPosition.from_json(payload)
    try:
        serial = codes.check_serial(require(payload, "serial", str))
        firm_code = codes.check_firm_code(require(payload, "firm_code", int))
    except codes.InvalidCode as exc:
        raise DocumentInvalid(str(exc)) from None
    return Receipt(
        serial=serial,
        firm_code=firm_code,
        license_id=require(payload, "license_id", int),
        ticket=require(payload, "ticket", str, optional=True),
        seq=require(payload, "seq", int),
        vtime=require(payload, "vtime", int),
        digest=document_digest(doc),
        document=doc,
        position=position,
    )


# ---------------------------------------------------------------- usage-report acknowledgements


@dataclass(frozen=True)
class Ack:
    """Central's answer to a usage report when nothing changed: its signed time (a sync)."""

    firm_code: int
    serial: str
    time: int
    request: str
    recorded: dict[str, int]  # entry digest -> units Central recorded under it (local counting)


def build_ack(
    *,
    firm_code: int,
    firm_key: hazmat.Ed25519PrivateKey,
    serial: str,
    now: int,
    request_digest: str,
    recorded: dict[str, int],
) -> dict[str, Any]:
    return sign_document("report-ack", ack_payload(firm_code, serial, now, request_digest, recorded), firm_key)


def ack_payload(firm_code: int, serial: str, now: int, request_digest: str, recorded: dict[str, int]) -> dict[str, Any]:
    """The payload of a usage-report acknowledgement."""
    return {"firm_code": firm_code, "serial": serial, "time": now, "request": request_digest, "recorded": recorded}


def verify_ack(data: bytes | str | dict[str, Any], keys: dict[str, hazmat.Ed25519PublicKey]) -> Ack:
    payload = verify_document(parse(data), "report-ack", keys)
    try:
        firm_code = codes.check_firm_code(require(payload, "firm_code", int))
        serial = codes.check_serial(require(payload, "serial", str))
    except codes.InvalidCode as exc:
        raise DocumentInvalid(str(exc)) from None
    request = require(payload, "request", str)
    if not is_digest(request):
        raise DocumentInvalid("bad request digest")
    recorded = require(payload, "recorded", dict)
    if not all(is_digest(d) and isinstance(u, int) and not isinstance(u, bool) and u >= 0 for d, u in recorded.items()):
        raise DocumentInvalid("bad recorded counters")
    time = require(payload, "time", int)
    if time < 0:
        raise DocumentInvalid("bad time")
    return Ack(
        firm_code=firm_code,
        serial=serial,
        time=time,
        request=request,
        recorded=dict(recorded),
    )


def parse_update_firm(data: bytes | str | dict[str, Any]) -> int:
    """The firm code an (unverified) update claims, to find the slot whose keys verify it."""
    return int(require(parse(data)["payload"], "firm_code", int))
