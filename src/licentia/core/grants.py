"""What a network license server grants: leases and borrowed licenses.

A server holds firm-signed license entries that name its own container (serial and
Ed25519 key). It hands a client the entry document itself plus a grant signed by that
container key, so every grant verifies back to the firm key the application pins:

- lease         (``type: "lease"``): a seat for one running access, bound to the
  client session's ephemeral X25519 key (product keys are sealed to it), to its
  ephemeral Ed25519 key (``holder``: every request about the lease is signed with it)
  and to the nonce of the request it answers.
- borrow        (``type: "borrow"``): a seat taken into the client's own container
  until ``expires``, bound to that container's serial and Ed25519 key.
- borrow-return (``type: "borrow-return"``, signed by the client container): proof
  that the borrowed license left the client container.
- grace-return  (``type: "grace-return"``, signed by the client container): proof that
  the container holds no grace record of the lease's product from that server any more.

Product keys travel sealed: to the session key for a lease (context
``licentia lease key|<server serial>|<entry digest>|<version>|<session>``) and to
the client container for a borrowed license (the container's own sealing, as in an
update). docs/formats.md is the reference.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from . import codes, exchange, hazmat
from . import errors as E
from .documents import DocumentInvalid, document_digest, require, signing_message, verify_document
from .encoding import b64d, b64e
from .license import AccessRequest, Evaluation, LicenseEntry, LicenseState, effective_time, evaluate

Signer = Callable[[str, dict[str, Any]], dict[str, Any]]

LEASE = "lease"
#: access modes a lease names: a seat per access, per user and host, per host, or none
MODES = ("user", "station", "exclusive", "nolimit")
BORROW = "borrow"
BORROW_RETURN = "borrow-return"
GRACE_RETURN = "grace-return"

# ---------------------------------------------------------------- proof of possession
#: What a client signs with its session's Ed25519 key (the lease's ``holder``): the
#: request for a lease, and each renewal and release with a counter that only goes up.
LEASE_REQUEST = "lease-request"
LEASE_RENEW = "lease-renew"
LEASE_RELEASE = "lease-release"
#: what a client's machine container signs to prove the machine it runs on
SEAT_PROOF = "seat-proof"
#: the fields of a lease request its proof covers
REQUEST_PROOF_FIELDS = (
    "client_lease_id",
    "nonce",
    "session",
    "holder",
    "firm_code",
    "product_code",
    "feature_code",
    "units",
    "mode",
    "reconnect",
)


#: fields a lease request's proof covers when the request carries them (requests without
#: them sign what they signed before they existed): the grace asked for, the counter of a
#: request for a seat back, the machine proof (so that none can be taken off a request)
REQUEST_PROOF_OPTIONAL = ("grace", "counter", "machine")


def request_proof_payload(body: dict[str, Any]) -> dict[str, Any]:
    """What the proof of a lease request signs: its fields that decide the grant."""
    out = {k: body.get(k) for k in REQUEST_PROOF_FIELDS}
    for k in REQUEST_PROOF_OPTIONAL:
        if k in body:
            out[k] = body[k]
    return out


def lease_proof_payload(lease_id: str, counter: int) -> dict[str, Any]:
    """What the proof of a renewal or release signs."""
    return {"lease_id": lease_id, "counter": counter}


def prove(key: hazmat.Ed25519PrivateKey, kind: str, payload: dict[str, Any]) -> str:
    """A proof: Ed25519 over ``licentia/<kind>\n`` + canonical(payload), base64url."""
    return b64e(hazmat.sign(key, signing_message(kind, payload)))


def check_proof(holder: str, kind: str, payload: dict[str, Any], proof: Any) -> bool:
    """Whether ``proof`` is ``holder``'s signature of ``payload`` as ``kind``."""
    if not isinstance(proof, str):
        return False
    try:
        key = _holder_key(holder)
        signature = b64d(proof)
    except ValueError:
        return False
    return hazmat.verify(key, signature, signing_message(kind, payload))


@functools.lru_cache(maxsize=4096)
def _holder_key(holder: str) -> hazmat.Ed25519PublicKey:
    """A holder's public key object (one per client session: parsed once while it is in use)."""
    return hazmat.Ed25519PublicKey.from_public_bytes(b64d(holder))


def _optional_time(payload: dict[str, Any], name: str) -> int | None:
    """A time field: a whole number of Unix seconds, 0 or more (absent or null: None)."""
    value: int | None = require(payload, name, int, optional=True)
    if value is not None and value < 0:
        raise DocumentInvalid(f"field {name!r} is a time before 1970")
    return value


def _time(payload: dict[str, Any], name: str) -> int:
    """A required time field."""
    value: int = require(payload, name, int)
    if value < 0:
        raise DocumentInvalid(f"field {name!r} is a time before 1970")
    return value


def _code(payload: dict[str, Any], name: str, check: Callable[[int], int]) -> int:
    """A firm code, product code or feature code field (section 2.4 of docs/formats.md)."""
    try:
        return check(require(payload, name, int))
    except codes.InvalidCode as exc:
        raise DocumentInvalid(f"field {name!r}: {exc}") from None


def _serial(payload: dict[str, Any], name: str = "serial") -> str:
    try:
        return codes.check_serial(require(payload, name, str))
    except codes.InvalidCode as exc:
        raise DocumentInvalid(f"field {name!r}: {exc}") from None


def _digest(payload: dict[str, Any], name: str) -> str:
    value: str = require(payload, name, str)
    if not exchange.is_digest(value):
        raise DocumentInvalid(f"field {name!r} is not a digest")
    return value


def container_key(entry: LicenseEntry) -> hazmat.Ed25519PublicKey:
    """The Ed25519 key of the container an entry was issued to."""
    try:
        return hazmat.Ed25519PublicKey.from_public_bytes(b64d(entry.container_key))
    except ValueError:
        raise DocumentInvalid("entry names a malformed container key") from None


# ---------------------------------------------------------------- leases


@dataclass(frozen=True)
class Lease:
    lease_id: str
    client_lease_id: str
    serial: str
    license: str  # entry digest
    license_id: int
    firm_code: int
    product_code: int
    feature_code: int
    mode: str
    session: str
    nonce: str
    issued: int
    expires: int
    first_use: int | None
    document: dict[str, Any] = field(repr=False, compare=False, default_factory=dict)
    holder: str | None = None  # the session's Ed25519 key (base64url); None in older leases
    #: the server's time until which it keeps the seat counted for this lease's grace (None:
    #: no grace): the client may run offline on it until as long after ``issued``
    grace_until: int | None = None

    @property
    def grace(self) -> int:
        """Seconds of grace the server granted (0: none)."""
        return max(0, self.grace_until - self.issued) if self.grace_until is not None else 0


def build_lease(
    sign: Signer,
    *,
    lease_id: str,
    client_lease_id: str,
    entry: LicenseEntry,
    feature_code: int,
    mode: str,
    session: str,
    nonce: str,
    issued: int,
    expires: int,
    first_use: int | None = None,
    holder: str | None = None,
    grace_until: int | None = None,
) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "lease_id": lease_id,
        "client_lease_id": client_lease_id,
        "serial": entry.serial,
        "license": entry.digest,
        "license_id": entry.license_id,
        "firm_code": entry.firm_code,
        "product_code": entry.product_code,
        "feature_code": feature_code,
        "mode": mode,
        "session": session,
        "nonce": nonce,
        "issued": issued,
        "expires": expires,
        "first_use": first_use,
        "holder": holder,
    }
    if grace_until is not None:  # only on a lease that carries grace: older clients never see it
        payload["grace_until"] = grace_until
    return sign(LEASE, payload)


def verify_lease(doc: dict[str, Any], entry: LicenseEntry) -> Lease:
    """Check a lease against the (already verified) entry it names."""
    payload = verify_document(doc, LEASE, container_key(entry))
    mode = require(payload, "mode", str)
    if mode not in MODES:
        raise DocumentInvalid(f"a lease's mode is one of {', '.join(MODES)}")
    lease = Lease(
        lease_id=require(payload, "lease_id", str),
        client_lease_id=require(payload, "client_lease_id", str),
        serial=_serial(payload),
        license=_digest(payload, "license"),
        license_id=require(payload, "license_id", int),
        firm_code=_code(payload, "firm_code", codes.check_firm_code),
        product_code=_code(payload, "product_code", codes.check_product_code),
        feature_code=_code(payload, "feature_code", codes.check_feature),
        mode=mode,
        session=require(payload, "session", str),
        nonce=require(payload, "nonce", str),
        issued=_time(payload, "issued"),
        expires=_time(payload, "expires"),
        first_use=_optional_time(payload, "first_use"),
        document=doc,
        holder=require(payload, "holder", str, optional=True),
        grace_until=_optional_time(payload, "grace_until"),
    )
    if lease.license != entry.digest or lease.serial != entry.serial or lease.license_id != entry.license_id:
        raise DocumentInvalid("lease names another license")
    return lease


def _lease_key_context(serial: str, license_digest: str, version: int, session: str) -> bytes:
    return f"licentia lease key|{serial}|{license_digest}|{version}|{session}".encode()


def seal_lease_key(session: str, serial: str, license_digest: str, version: int, key: bytes) -> dict[str, Any]:
    """Seal a product key to a client session's X25519 key (base64url ``session``)."""
    blob = hazmat.seal(b64d(session), key, _lease_key_context(serial, license_digest, version, session))
    return {"version": version, "sealed": b64e(blob)}


def unseal_lease_key(
    session_key: hazmat.X25519PrivateKey, session: str, serial: str, license_digest: str, sealed: dict[str, Any]
) -> bytes:
    try:
        version = exchange.key_version(sealed["version"])
        blob = b64d(sealed["sealed"])
        return hazmat.unseal(session_key, blob, _lease_key_context(serial, license_digest, version, session))
    except (KeyError, ValueError, TypeError) as exc:
        raise DocumentInvalid(f"sealed lease key unusable: {exc}") from None


# ---------------------------------------------------------------- borrowing


@dataclass(frozen=True)
class Borrow:
    borrow_id: str
    serial: str  # the server container
    license: str
    license_id: int
    firm_code: int
    product_code: int
    client_serial: str
    client_key: str
    issued: int
    expires: int
    digest: str = ""
    document: dict[str, Any] = field(repr=False, compare=False, default_factory=dict)


def build_borrow(
    sign: Signer,
    *,
    borrow_id: str,
    entry: LicenseEntry,
    client_serial: str,
    client_key: str,
    issued: int,
    expires: int,
) -> dict[str, Any]:
    payload = {
        "borrow_id": borrow_id,
        "serial": entry.serial,
        "license": entry.digest,
        "license_id": entry.license_id,
        "firm_code": entry.firm_code,
        "product_code": entry.product_code,
        "client": {"serial": client_serial, "sign_pub": client_key},
        "issued": issued,
        "expires": expires,
    }
    return sign(BORROW, payload)


def verify_borrow(doc: dict[str, Any], entry: LicenseEntry) -> Borrow:
    payload = verify_document(doc, BORROW, container_key(entry))
    client = require(payload, "client", dict)
    grant = Borrow(
        borrow_id=require(payload, "borrow_id", str),
        serial=_serial(payload),
        license=_digest(payload, "license"),
        license_id=require(payload, "license_id", int),
        firm_code=_code(payload, "firm_code", codes.check_firm_code),
        product_code=_code(payload, "product_code", codes.check_product_code),
        client_serial=_serial(client),
        client_key=require(client, "sign_pub", str),
        issued=_time(payload, "issued"),
        expires=_time(payload, "expires"),
        digest=document_digest(doc),
        document=doc,
    )
    if grant.license != entry.digest or grant.serial != entry.serial or grant.license_id != entry.license_id:
        raise DocumentInvalid("borrow grant names another license")
    return grant


@dataclass(frozen=True)
class BorrowReturn:
    serial: str
    borrow_id: str
    firm_code: int
    vtime: int


def _client_receipt(doc: dict[str, Any], doc_type: str, client_key: str) -> dict[str, Any]:
    """The payload of a receipt signed by the client container whose key was recorded."""
    try:
        key = hazmat.Ed25519PublicKey.from_public_bytes(b64d(client_key))
    except ValueError:
        raise DocumentInvalid("bad client key") from None
    return verify_document(doc, doc_type, key)


def verify_return(doc: dict[str, Any], client_key: str) -> BorrowReturn:
    """Check a return receipt against the client container key recorded at borrow time."""
    payload = _client_receipt(doc, BORROW_RETURN, client_key)
    return BorrowReturn(
        serial=_serial(payload),
        borrow_id=require(payload, "borrow_id", str),
        firm_code=_code(payload, "firm_code", codes.check_firm_code),
        vtime=_time(payload, "vtime"),
    )


@dataclass(frozen=True)
class GraceReturn:
    serial: str
    lease_id: str
    firm_code: int
    vtime: int


def verify_grace_return(doc: dict[str, Any], client_key: str) -> GraceReturn:
    """Check a grace return receipt against the client container key named at access time."""
    payload = _client_receipt(doc, GRACE_RETURN, client_key)
    return GraceReturn(
        serial=_serial(payload),
        lease_id=require(payload, "lease_id", str),
        firm_code=_code(payload, "firm_code", codes.check_firm_code),
        vtime=_time(payload, "vtime"),
    )


# ---------------------------------------------------------------- evaluating what a server grants


def evaluate_lease(entry: LicenseEntry, lease: Lease, request: AccessRequest, now: int) -> Evaluation:
    """The client's evaluation of a leased entry (docs/formats.md 5.1, 12.5 step 4): at its own
    clock with no virtual clock, the lease's first use, the lease's issue time as the last sync
    (the server evaluated the entry with its own last sync when it signed the lease), 0 units."""
    check = AccessRequest(request.firm_code, request.product_code, request.feature_code, 0, request.release_date)
    return evaluate(entry, LicenseState(first_use=lease.first_use, last_sync=lease.issued), check, now, 0)


def evaluate_borrowed(
    entry: LicenseEntry,
    grant: Borrow,
    request: AccessRequest,
    now: int,
    vclock: int,
    *,
    serial: str,
    sign_pub: str,
) -> Evaluation:
    """A borrowed license in the container ``serial`` (key ``sign_pub``) (docs/formats.md
    5.1, 12.8): the grant must name that container; then the evaluation with the grant's
    issue time as first use and last sync and 0 units; then, in this order, the clock (for
    every borrowed license), the end of the borrowing, and units (none: no counter)."""
    if grant.client_serial != serial or grant.client_key != sign_pub:
        return Evaluation(E.LicenseInvalid, f"the borrow grant is for container {grant.client_serial}")
    check = AccessRequest(request.firm_code, request.product_code, request.feature_code, 0, request.release_date)
    ev = evaluate(entry, LicenseState(first_use=grant.issued, last_sync=grant.issued), check, now, vclock)
    if ev.error is not None:
        return ev
    t, tampered = effective_time(now, vclock)
    if tampered:
        return Evaluation(E.ClockTampered, "the system clock is behind the last trusted time: set the clock right")
    if t >= grant.expires:
        return Evaluation(E.LicenseExpired, "the borrowing period is over: borrow again ('licentia borrow')")
    if request.units:
        return Evaluation(E.UnitsExhausted, "a borrowed license carries no unit counter")
    expires = grant.expires if ev.expires is None else min(ev.expires, grant.expires)
    return Evaluation(None, "ok", expires=expires)
