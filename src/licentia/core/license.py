"""The license model and the pure evaluation of an access.

``evaluate(entry, state, request, now)`` is a pure function: no I/O, no clock.
It returns an ``Evaluation`` naming either a grant (and what the container must
record) or the error class a caller should raise.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

from . import codes, hazmat
from . import errors as E
from .documents import DocumentInvalid, require, sign_document, verify_document
from .encoding import b64d, b64e

DAY = 86400
#: How far the system clock may fall behind the virtual clock before time-bound
#: licenses stop (NTP steps, a dead CMOS battery corrected late).
CLOCK_TOLERANCE = 2 * 3600


@dataclass(frozen=True)
class Options:
    """License options. Times are Unix seconds (UTC); periods are seconds."""

    expires: int | None = None
    not_before: int | None = None
    usage_period: int | None = None
    units: int | None = None
    quantity: int = 1
    maintenance_until: int | None = None
    sync_interval: int | None = None
    data: bytes | None = None
    local_only: bool = False  # never served by a network license server
    #: seconds between usage reports to Central while it is reachable (None: no reports)
    report_interval: int | None = None
    #: "online": every unit consumption is a call to Central; "local": the container counts
    metering: str = "local"
    #: online metering: units the container may count on its own while Central is unreachable
    offline_allowance: int = 0
    #: seconds of grace a license server may grant a seat of this license (a protected
    #: package's ``--grace``, held as a short borrow); None: no grace on network seats
    max_grace: int | None = None

    @functools.cached_property
    def time_bound(self) -> bool:
        return not (
            self.expires is None
            and self.not_before is None
            and self.usage_period is None
            and self.sync_interval is None
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "expires": self.expires,
            "not_before": self.not_before,
            "usage_period": self.usage_period,
            "units": self.units,
            "quantity": self.quantity,
            "maintenance_until": self.maintenance_until,
            "sync_interval": self.sync_interval,
            "data": None if self.data is None else b64e(self.data),
            "local_only": self.local_only,
            "report_interval": self.report_interval,
            "metering": self.metering,
            "offline_allowance": self.offline_allowance,
            **({} if self.max_grace is None else {"max_grace": self.max_grace}),  # only when set
        }

    #: every option a license may carry: a reader refuses one it does not know, so that
    #: a restriction it cannot enforce is never ignored
    NAMES = frozenset(
        {
            "expires",
            "not_before",
            "usage_period",
            "units",
            "quantity",
            "maintenance_until",
            "sync_interval",
            "data",
            "local_only",
            "report_interval",
            "metering",
            "offline_allowance",
            "max_grace",
        }
    )

    @classmethod
    def from_json(cls, obj: Any) -> Options:
        if not isinstance(obj, dict):
            raise DocumentInvalid("options is not an object")
        unknown = set(obj) - cls.NAMES
        if unknown:
            raise DocumentInvalid(f"unknown option {sorted(unknown)[0]!r}: a newer licentia issued this license")
        ints = {}
        names = (
            "expires",
            "not_before",
            "usage_period",
            "units",
            "maintenance_until",
            "sync_interval",
            "report_interval",
        )
        for name in names:
            value = require(obj, name, int, optional=True)
            if value is not None and value < 0:
                raise DocumentInvalid(f"option {name} is negative")
            ints[name] = value
        quantity = require(obj, "quantity", int)
        if quantity < 0:
            raise DocumentInvalid("quantity is negative")
        data = require(obj, "data", str, optional=True)
        try:
            raw = None if data is None else b64d(data)
        except ValueError:
            raise DocumentInvalid("data is not base64") from None
        local_only = obj.get("local_only", False)  # absent in documents made before it existed
        if not isinstance(local_only, bool):
            raise DocumentInvalid("local_only is not a boolean")
        metering = obj.get("metering", "local")  # these three: absent in older documents too
        if metering not in ("local", "online"):
            raise DocumentInvalid("metering is local or online")
        allowance = require(obj, "offline_allowance", int, optional=True) or 0
        if allowance < 0:
            raise DocumentInvalid("option offline_allowance is negative")
        max_grace = require(obj, "max_grace", int, optional=True)  # absent: no grace on seats
        if max_grace is not None and max_grace < 0:
            raise DocumentInvalid("option max_grace is negative")
        return cls(
            quantity=quantity,
            data=raw,
            local_only=local_only,
            metering=metering,
            offline_allowance=allowance,
            max_grace=max_grace,
            **ints,
        )


def _canonical_ticket(text: str) -> bool:
    try:
        return codes.normalize_ticket(text) == text
    except codes.InvalidCode:
        return False


@dataclass(frozen=True)
class LicenseEntry:
    """One firm-signed license, naming the container it was issued to."""

    firm_code: int
    product_code: int
    feature_map: int
    text: str
    license_id: int
    serial: str
    container_key: str  # base64url of the container's Ed25519 public key
    options: Options
    issued: int
    ticket: str | None = None
    key_versions: tuple[int, ...] = ()
    #: what Central recorded for this ticket before this entry was issued: units consumed
    #: under earlier entries, and the first use ever (a usage period runs from it)
    consumed_base: int = 0
    first_use: int | None = None
    activation: int = 0  # the ticket's activation number: each issued entry is unique
    kid: str = ""
    digest: str = ""
    document: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def payload(self) -> dict[str, Any]:
        return {
            "firm_code": self.firm_code,
            "product_code": self.product_code,
            "feature_map": self.feature_map,
            "text": self.text,
            "license_id": self.license_id,
            "container": {"serial": self.serial, "sign_pub": self.container_key},
            "options": self.options.to_json(),
            "issued": self.issued,
            "ticket": self.ticket,
            "key_versions": list(self.key_versions),
            "consumed_base": self.consumed_base,
            "first_use": self.first_use,
            "activation": self.activation,
        }

    def sign(self, firm_key: hazmat.Ed25519PrivateKey) -> dict[str, Any]:
        return sign_document("license", self.payload(), firm_key)

    @classmethod
    def verify(cls, document: dict[str, Any], keys: dict[str, hazmat.Ed25519PublicKey]) -> LicenseEntry:
        """Verify a signed license entry against pinned firm keys."""
        from .documents import document_digest

        payload = verify_document(document, "license", keys)
        return cls.from_payload(payload, kid=document["kid"], digest=document_digest(document), document=document)

    @classmethod
    def of_document(cls, document: dict[str, Any]) -> LicenseEntry:
        """A signed license entry read without verifying its signature: for License Central,
        which signed the entries it stores itself."""
        from .documents import document_digest

        return cls.from_payload(
            document["payload"], kid=document["kid"], digest=document_digest(document), document=document
        )

    @classmethod
    def from_payload(
        cls, payload: dict[str, Any], *, kid: str = "", digest: str = "", document: dict[str, Any] | None = None
    ) -> LicenseEntry:
        try:
            firm = codes.check_firm_code(require(payload, "firm_code", int))
            product = codes.check_product_code(require(payload, "product_code", int))
            fmap = codes.check_feature(require(payload, "feature_map", int))
            container = require(payload, "container", dict)
            serial = codes.check_serial(require(container, "serial", str))
            container_key = require(container, "sign_pub", str)
            if len(b64d(container_key)) != 32:
                raise ValueError("key length")
        except codes.InvalidCode as exc:
            raise DocumentInvalid(str(exc)) from None
        except ValueError:
            raise DocumentInvalid("the container's key is not a base64url Ed25519 public key") from None
        versions = require(payload, "key_versions", list)
        if not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in versions):
            raise DocumentInvalid("bad key_versions")
        if len(set(versions)) != len(versions):
            raise DocumentInvalid("key_versions lists a version twice")
        # absent in entries issued before counters travelled with the license
        base = require(payload, "consumed_base", int, optional=True) or 0
        first_use = require(payload, "first_use", int, optional=True)
        activation = require(payload, "activation", int, optional=True) or 0
        if base < 0 or activation < 0 or (first_use is not None and first_use < 0):
            raise DocumentInvalid("negative counter")
        license_id, issued = require(payload, "license_id", int), require(payload, "issued", int)
        if license_id < 1 or issued < 0:
            raise DocumentInvalid("license_id is 1 or more and issued a time")
        ticket = require(payload, "ticket", str, optional=True)
        if ticket is not None and not _canonical_ticket(ticket):
            raise DocumentInvalid("the ticket id is not in its canonical form")
        return cls(
            firm_code=firm,
            product_code=product,
            feature_map=fmap,
            text=require(payload, "text", str),
            license_id=license_id,
            serial=serial,
            container_key=container_key,
            options=Options.from_json(payload.get("options")),
            issued=issued,
            ticket=ticket,
            key_versions=tuple(versions),
            consumed_base=base,
            first_use=first_use,
            activation=activation,
            kid=kid,
            digest=digest,
            document=document or {},
        )

    def summary(self) -> str:
        return f"license {self.license_id} (firm {self.firm_code}, product {self.product_code})"


@dataclass(slots=True)
class LicenseState:
    """What a container records about one license between accesses."""

    units_used: int = 0
    first_use: int | None = None
    last_sync: int | None = None


@dataclass(slots=True)
class AccessRequest:
    firm_code: int
    product_code: int
    feature_code: int = 0
    units: int = 0
    release_date: int | None = None


@dataclass(slots=True)
class Evaluation:
    """The result of evaluating one license for one access."""

    error: type[E.LicenseError] | None = None
    message: str = ""
    start_usage: bool = False  # the access starts the usage period (record first_use)
    units: int = 0  # units to consume
    expires: int | None = None  # effective end of validity (expiry or usage period)

    @property
    def ok(self) -> bool:
        return self.error is None


def effective_time(now: int, vclock: int) -> tuple[int, bool]:
    """Return (time to evaluate at, clock_tampered)."""
    if now + CLOCK_TOLERANCE < vclock:
        return vclock, True
    return max(now, vclock), False


def _fmt(ts: int) -> str:
    import datetime as _dt

    return _dt.datetime.fromtimestamp(ts, _dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def evaluate(entry: LicenseEntry, state: LicenseState, request: AccessRequest, now: int, vclock: int) -> Evaluation:
    """Decide whether ``request`` may use ``entry`` at system time ``now``."""
    opts = entry.options
    if entry.firm_code != request.firm_code or entry.product_code != request.product_code:
        return Evaluation(E.LicenseNotFound, "license is for another product")
    if entry.feature_map & request.feature_code != request.feature_code:
        missing = request.feature_code & ~entry.feature_map
        return Evaluation(E.FeatureNotLicensed, f"feature bits {missing:#x} are not licensed")
    if now + CLOCK_TOLERANCE < vclock:
        t, tampered = vclock, True
    else:
        t, tampered = (now if now > vclock else vclock), False
    if opts.time_bound and tampered:
        return Evaluation(
            E.ClockTampered,
            f"the system clock is behind the last trusted time {_fmt(vclock)}: set the clock right, or sync",
        )
    if opts.not_before is not None and t < opts.not_before:
        return Evaluation(E.LicenseNotYetValid, f"valid from {_fmt(opts.not_before)}")
    expires = opts.expires
    start_usage = False
    if opts.usage_period is not None:
        first = entry.first_use if entry.first_use is not None else state.first_use
        if first is None:
            first = t
            start_usage = True
        end = first + opts.usage_period
        expires = end if expires is None else min(expires, end)
    if expires is not None and t >= expires:
        return Evaluation(E.LicenseExpired, f"expired {_fmt(expires)}")
    if opts.sync_interval is not None:
        last = state.last_sync if state.last_sync is not None else entry.issued
        if t > last + opts.sync_interval:
            return Evaluation(
                E.SyncRequired,
                f"last synced {_fmt(last)}; run 'licentia sync' while online",
            )
    if (
        request.release_date is not None
        and opts.maintenance_until is not None
        and request.release_date > opts.maintenance_until
    ):
        return Evaluation(
            E.MaintenanceExpired,
            f"this release is newer than the maintenance period ending {_fmt(opts.maintenance_until)}",
        )
    if request.units < 0:
        return Evaluation(E.UnitsExhausted, "a negative number of units cannot be consumed")
    if request.units:
        if opts.units is None:
            return Evaluation(E.UnitsExhausted, "this license has no unit counter")
        left = opts.units - entry.consumed_base - state.units_used
        if request.units > left:
            return Evaluation(E.UnitsExhausted, f"{left} units left, {request.units} asked for")
    return Evaluation(None, "ok", start_usage=start_usage, units=request.units, expires=expires)


def units_left(entry: LicenseEntry, state: LicenseState) -> int | None:
    if entry.options.units is None:
        return None
    return max(0, entry.options.units - entry.consumed_base - state.units_used)
