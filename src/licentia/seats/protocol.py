"""The seat protocol's requests and error answers, shared by the license server and
License Central's cloud seats (docs/formats.md "License server protocol").

``parse_access`` and ``parse_borrow`` check a request body (a dict from JSON) and name
the first field they cannot use (``BadRequest``); ``renew``, ``release`` and
``return_grace`` answer those requests with an engine; ``status_of`` and ``error_body``
are a refusal's HTTP status and body ``{"error": {"type", "message", "code"?, ...}}``.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any, NamedTuple

from ..core import codes, grants, hazmat
from ..core import errors as E
from ..core.documents import DocumentInvalid, require, verify_document
from ..core.encoding import b64d
from ..core.license import AccessRequest
from .engine import SeatEngine
from .model import BORROW, MODES, Client, Lease, LeaseRevoked, LeaseUnknown, Refusal

log = logging.getLogger("licentia.seats")

MAX_NAME = 256
MAX_GROUPS = 64
MAX_BORROW_DAYS = 3650
MAX_GRACE = 366 * 86400  # seconds of grace a client may ask for


class AccessAsk(NamedTuple):
    """A lease request, checked."""

    request: AccessRequest
    client: Client
    mode: str
    session: str  # the client session's X25519 public key (base64url): product keys are sealed to it
    nonce: str
    proven: bool  # the request is signed by the key it names as its holder
    grace: int  # seconds of grace the client asks for (a protected package's --grace)
    counter: int  # above the last its lease id's lease was signed with (0: a first access)


class BorrowAsk(NamedTuple):
    """A borrow request, checked."""

    request: AccessRequest
    client: Client
    days: int
    borrower: dict[str, str]  # the client container's serial, sign_pub, box_pub
    box_key: bytes  # its raw X25519 public key: product keys are sealed to it


def field_text(body: dict[str, Any], name: str, *, required: bool = False, default: str = "") -> str:
    value = body.get(name, default)
    if value is None:
        value = default
    if not isinstance(value, str) or len(value) > MAX_NAME or (required and not value):
        raise E.BadRequest(f"{name} is {'non-empty ' if required else ''}text of at most {MAX_NAME} characters")
    return value


def _int(body: dict[str, Any], name: str, *, default: int | None = None, minimum: int = 0) -> int:
    value = body.get(name, default)
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise E.BadRequest(f"{name} is a whole number of at least {minimum}")
    return value


def _codes(body: dict[str, Any]) -> tuple[int, int, int]:
    try:
        firm = codes.check_firm_code(_int(body, "firm_code"))
        product = codes.check_product_code(_int(body, "product_code"))
        feature = codes.check_feature(_int(body, "feature_code", default=0))
    except codes.InvalidCode as exc:
        raise E.BadRequest(str(exc)) from None
    return firm, product, feature


def _client(body: dict[str, Any], ip: str, holder: str | None = None) -> Client:
    groups = body.get("groups") or []
    if (
        not isinstance(groups, list)
        or len(groups) > MAX_GROUPS
        or not all(isinstance(g, str) and len(g) <= MAX_NAME for g in groups)
    ):
        raise E.BadRequest(f"groups is a list of at most {MAX_GROUPS} names")
    return Client(
        client_lease_id=field_text(body, "client_lease_id", required=True),
        user=field_text(body, "user"),
        host=field_text(body, "host"),
        ip=ip,
        pid=_int(body, "pid", default=0),
        groups=tuple(groups),
        holder=holder,
    )


def _mode(body: dict[str, Any]) -> str:
    mode = field_text(body, "mode", default="user")
    if mode not in MODES:
        raise E.BadRequest(f"mode is one of {', '.join(MODES)}")
    return mode


def _release_date(body: dict[str, Any]) -> int | None:
    release_date = body.get("release_date")
    if release_date is not None and (not isinstance(release_date, int) or isinstance(release_date, bool)):
        raise E.BadRequest("release_date is Unix seconds")
    return release_date


def parse_access(body: dict[str, Any], ip: str) -> AccessAsk:
    """A lease request from its JSON body; BadRequest names the first field it cannot use."""
    firm, product, feature = _codes(body)
    holder = field_text(body, "holder", required=True)
    client = _client(body, ip, holder)
    mode = _mode(body)
    units = _int(body, "units", default=0)
    release_date = _release_date(body)
    session = field_text(body, "session", required=True)
    nonce = field_text(body, "nonce", required=True)
    proven = grants.check_proof(holder, grants.LEASE_REQUEST, grants.request_proof_payload(body), body.get("proof"))
    grace = min(_int(body, "grace", default=0), MAX_GRACE)
    counter = _int(body, "counter", default=0)
    return AccessAsk(
        AccessRequest(firm, product, feature, units, release_date),
        client,
        mode,
        session,
        nonce,
        proven,
        grace,
        counter,
    )


def _borrower(body: dict[str, Any]) -> tuple[dict[str, str], bytes]:
    container = body.get("container")
    if not isinstance(container, dict):
        raise E.BadRequest("container is {serial, sign_pub, box_pub}")
    try:
        serial = codes.check_serial(field_text(container, "serial", required=True))
        sign_pub = field_text(container, "sign_pub", required=True)
        box_pub = field_text(container, "box_pub", required=True)
        hazmat.Ed25519PublicKey.from_public_bytes(b64d(sign_pub))
        box_raw = b64d(box_pub)
        hazmat.X25519PublicKey.from_public_bytes(box_raw)
    except (codes.InvalidCode, ValueError):
        raise E.BadRequest("container is {serial, sign_pub, box_pub} with base64url keys") from None
    return {"serial": serial, "sign_pub": sign_pub, "box_pub": box_pub}, box_raw


def parse_borrow(body: dict[str, Any], ip: str) -> BorrowAsk:
    """A borrow request from its JSON body; BadRequest names the first field it cannot use."""
    firm, product, feature = _codes(body)
    client = _client(body, ip)
    days = _int(body, "days", minimum=1)
    if days > MAX_BORROW_DAYS:
        raise E.BadRequest(f"days is at most {MAX_BORROW_DAYS}")
    borrower, box_key = _borrower(body)
    return BorrowAsk(AccessRequest(firm, product, feature), client, days, borrower, box_key)


#: HTTP status of each error class; a Refusal answers with the status of the LicenseError it names
STATUS: dict[type[E.LicentiaError], int] = {
    E.BadRequest: 400,
    E.LeaseUnknown: 404,
    E.LeaseRevoked: 410,
    E.BorrowUnknown: 404,
    E.ServerBusy: 503,
    E.LicenseNotFound: 404,
    E.SeatsExhausted: 409,
    E.LicenseError: 403,
}
#: the error's ``type`` on the wire where it is not the class name
WIRE_TYPE: dict[type[E.SeatError], str] = {E.ServerBusy: "Unavailable"}


def status_of(error: E.SeatError) -> int:
    cls = error.error if isinstance(error, E.Refusal) else type(error)
    for base in cls.__mro__:
        status = STATUS.get(base)
        if status is not None:
            return status
    return 500


def error_body(error: E.SeatError) -> dict[str, Any]:
    """The answer's ``{"error": {"type", "message", "code"?, ...extra}}``; ``code`` names the
    LicenseError a Refusal stands for (the client raises that class)."""
    out: dict[str, Any]
    if isinstance(error, E.Refusal):
        out = {"type": error.type, "message": error.client_message, "code": error.error.code}
    else:
        out = {"type": WIRE_TYPE.get(type(error), error.type), "message": error.message}
    out.update(error.extra)
    return {"error": out}


# ---------------------------------------------------------------- a request's proofs


def check_session_key(session: str) -> None:
    """A session key is a base64url X25519 public key (product keys are sealed to it)."""
    try:
        if len(b64d(session)) != 32:
            raise ValueError
    except ValueError:
        raise E.BadRequest("session is a base64url X25519 public key") from None


def unproven(client: Client) -> Refusal:
    """The refusal of a lease request its holder key did not sign."""
    return Refusal(
        E.AccessDenied,
        "the request is not signed by the session key it names",
        f"{client.ident}: lease request without a valid proof of its holder key",
    )


class MachineProof(NamedTuple):
    """A machine container's ``seat-proof`` (docs/formats.md 12.4), its signature verified."""

    serial: str
    sign_pub: str
    key_id: str
    nonce: str
    issued: int
    holder: Any
    #: the server's URL as the client named it: the container keeps a lease's grace record
    #: under it, so one server reached under two URLs is two records there
    server: Any = None

    def client(self, client: Client) -> Client:
        """``client`` with the machine it proved: the container's serial and key, with the
        source address (station and exclusive seats go by it), and the URL it named."""
        container = {"serial": self.serial, "sign_pub": self.sign_pub}
        if isinstance(self.server, str):
            container["server"] = self.server
        return dataclasses.replace(client, machine=f"{self.serial}:{self.key_id}@{client.ip}", container=container)


def read_machine_proof(doc: Any, sign_pub: str | None = None) -> MachineProof:
    """A machine proof, verified with the key it names (or ``sign_pub``: the only key it may
    name); ValueError saying why it cannot be used. Whether it answers a live challenge and
    this request's holder is the caller's to check."""
    try:
        payload = doc["payload"]
        named = require(payload, "sign_pub", str)
        if sign_pub is not None and named != sign_pub:
            raise ValueError("machine proof by another container than the one expected")
        key = hazmat.Ed25519PublicKey.from_public_bytes(b64d(named))
        payload = verify_document(doc, grants.SEAT_PROOF, key)
        serial = codes.check_serial(require(payload, "serial", str))
        nonce, issued = require(payload, "nonce", str), require(payload, "time", int)
    except (DocumentInvalid, codes.InvalidCode, KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"machine proof unusable: {getattr(exc, 'reason', exc)}") from None
    return MachineProof(serial, named, hazmat.key_id(key), nonce, issued, payload.get("holder"), payload.get("server"))


# ---------------------------------------------------------------- renewals, releases, grace returns


def renew(engine: SeatEngine, lease_id: str, body: dict[str, Any], *, ttl: int, heartbeat: float) -> dict[str, Any]:
    """A heartbeat signed by the lease's holder (over the lease id and its counter)."""
    client_lease_id = field_text(body, "client_lease_id", required=True)
    counter, proof = body.get("counter"), body.get("proof")
    try:
        lease = engine.renew(
            lease_id,
            client_lease_id,
            counter=counter if isinstance(counter, int) else None,
            proof=proof if isinstance(proof, str) else None,
        )
    except LeaseRevoked:
        raise
    except LeaseUnknown as exc:
        raise LeaseUnknown(f"lease {lease_id}: {exc}") from None
    return {
        "lease_id": lease.id,
        "ttl": ttl,
        "heartbeat": heartbeat,
        "expires_in": max(0, lease.expires - engine.clock()),
    }


def release(engine: SeatEngine, lease_id: str, client_lease_id: str, counter: str, proof: str) -> dict[str, Any]:
    """A release signed by the lease's holder (its counter and proof from the query)."""
    number = int(counter) if counter.isascii() and counter.isdigit() and len(counter) < 19 else None
    return {"released": engine.release(lease_id, client_lease_id, counter=number, proof=proof or None)}


def return_grace(engine: SeatEngine, lease: Lease | None, lease_id: str, receipt: Any) -> dict[str, Any]:
    """The client container's receipt that it holds ``lease``'s grace no more."""
    holder = (lease.borrower or {}) if lease is not None and lease.mode != BORROW else {}
    if not holder or not isinstance(receipt, dict):
        raise LeaseUnknown(f"no lease {lease_id} with grace here")
    try:
        back = grants.verify_grace_return(receipt, holder.get("sign_pub", ""))
    except DocumentInvalid as exc:
        log.warning("grace return of %s refused: %s", lease_id, exc.reason)
        raise E.BadRequest("the return receipt does not verify") from None
    if back.lease_id != lease_id or back.serial != holder.get("serial"):
        raise E.BadRequest("the return receipt is for another lease")
    ended = engine.end_grace(lease_id, back.serial, holder.get("sign_pub", ""))
    return {"returned": True, "lease_id": lease_id, "leases": [x.id for x in ended]}
