"""Every exception licentia raises, in one tree.

    LicentiaError                          base of everything licentia raises
     ├── LicenseError             (code  1) base of license failures an application sees
     │    ├── LicenseNotFound     (code 10) no license for firm/product anywhere searched
     │    ├── LicenseInvalid      (code 11) forged, tampered or foreign document (reason: log only)
     │    ├── LicenseExpired      (code 12) expiration time or usage period is over
     │    ├── LicenseNotYetValid  (code 13) activation time is still ahead
     │    ├── UnitsExhausted      (code 14) the unit counter cannot cover the request
     │    ├── FeatureNotLicensed  (code 15) feature map lacks a requested bit
     │    ├── ClockTampered       (code 16) system clock far behind the virtual clock
     │    ├── MaintenanceExpired  (code 17) this release is newer than the maintenance period
     │    ├── SyncRequired        (code 18) container has not synced within the sync interval
     │    ├── ContainerLocked     (code 19) the container's binding no longer matches
     │    ├── TrustNotConfigured  (code 20) no firm key pinned for the firm code asked for
     │    ├── ServerUnreachable   (code 21) no license server answered (names every host tried)
     │    ├── SeatsExhausted      (code 22) a license server has the license, every seat is in use
     │    ├── AccessDenied        (code 23) a license server's access rules refuse this client
     │    ├── ManipulationDetected (code 24) Central saw this container's files restored or forked
     │    └── ActivationError     (code 30) activation, deactivation, sync or update refused
     ├── DocumentInvalid                    a signed document failed parsing or verification (core)
     ├── CryptoError                        a key or ciphertext could not be used (core.hazmat)
     ├── InvalidCode                        a ticket, serial or item id that is not well formed (core.codes)
     ├── BindingMismatch                    no wrap of a container opens with this machine's traits
     ├── NoUsableTraits                     the machine offers no high-entropy trait to bind to
     ├── RoiInputError                      an ROI case cannot be used (names the field)
     ├── SettingsError                      a setting (Central's, a license server's) cannot be used
     │    └── AclError                      a license server's access rules cannot be used
     ├── CentralError                       a call to License Central failed (the one Central client)
     │    ├── CentralUnreachable            no answer: connection refused, timeout, TLS
     │    └── CentralRefused                Central answered an error: ``status``, ``code``, message
     ├── ServiceError                       Central's services refuse a call (``code``; the API maps
     │    │                                 each class to its HTTP status in central/api/errors.py)
     │    ├── BadInput            invalid_input          a field has a value Central cannot use
     │    │    ├── UnsupportedSession unsupported_session a reporting request carries a session object
     │    │    └── UsageRejected  usage_rejected       a usage upload names a time Central cannot take
     │    ├── InvalidTicket       invalid_ticket         a ticket id was mistyped
     │    ├── InvalidRequest      invalid_request        a request document failed verification (generic)
     │    ├── InvalidReceipt      invalid_receipt        a receipt failed verification (generic)
     │    ├── InvalidItems        invalid_items          an order's items do not form one license
     │    ├── Unauthorized        unauthorized           no or unknown API key
     │    ├── Forbidden           forbidden              the key's role or firm does not allow this
     │    ├── KeyMismatch         container_key_mismatch request not signed by the serial's key
     │    ├── NotFound            unknown_<thing>        firm, item, customer, ticket, container, key
     │    ├── Conflict            <thing>_exists, ticket_revoked, wrong_level, ...
     │    │    └── AnchorMismatch anchor_mismatch      a usage upload starts where Central holds no anchor
     │    ├── TooManyAttempts     too_many_attempts      too many failed attempts
     │    └── Unavailable         busy                   the database is busy: try again
     ├── SeatError                          the seat engine or a license server refuses a request
     │    │                                 (no HTTP here: licentia/server/app.py maps statuses)
     │    ├── Refusal                       an access is refused; ``error`` is the LicenseError class
     │    │                                 the client raises
     │    ├── LeaseUnknown                  a renewal or release names no live lease
     │    │    └── LeaseRevoked             the administrator released this lease
     │    ├── BorrowUnknown                 a return names no borrowed license
     │    ├── BadRequest                    a request the server cannot use
     │    └── ServerBusy                    the server could not store the change: try again
     └── ProtectError                       protecting or running protected code and data
          ├── BuildError                    the build cannot be made as asked
          ├── FormatError                   bytes that are not a well-formed protected file
          ├── ProtectedCodeError            marshal.dumps of a protected code object (audit hook)
          ├── ProtectedDataError            a protected data file is damaged or altered (an OSError)
          └── ProtectedImportError          protected code cannot be imported (an ImportError)

Rules kept by every raise site:

- A ``LicenseError`` has a stable numeric ``code`` (docs/errors.md) and a message that says
  what to do: the raise site's own step, else the class's ``next_step`` (``with_next_step``;
  the CLI adds it too when a message names none). On untrusted input the caller gets a generic message; the detailed
  ``reason`` is an attribute for the log, and the code that raises logs it (exceptions
  never log in their constructor). ``rejected(reason)`` does both for ``LicenseInvalid``.
- Foreign errors are translated in one place each: httpx errors in the Central client
  (``licentia.client``) and the runtime's network client; database errors in Central's
  ``central/db.py``; HTTP statuses are chosen by the two web layers only.
- Some classes also derive from the built-in they replace (``ValueError``, ``OSError``,
  ``ImportError``, ``RuntimeError``), so code that caught those keeps working.
"""

from __future__ import annotations

import logging
import re
from typing import Any

_log = logging.getLogger("licentia")


class LicentiaError(Exception):
    """Base class of every exception licentia raises."""


# ---------------------------------------------------------------- license failures


class LicenseError(LicentiaError):
    """Base class of every licentia license failure an application sees."""

    code = 1
    rank = 0  # closeness to success: the highest-ranked failure is the one raised
    #: what the user does next, where the message names nothing more precise (docs/errors.md)
    next_step = "Run 'licentia list' to see the licenses on this machine, or ask the vendor."

    def __init__(self, message: str | None = None, *, tried: list[str] | None = None):
        self.tried = list(tried or [])
        super().__init__(message or self.default_message())

    @classmethod
    def default_message(cls) -> str:
        """The first paragraph of the class's docstring, then its next step."""
        summary = " ".join((cls.__doc__ or cls.__name__).split("\n\n")[0].split())
        return f"{summary} {cls.next_step}"


#: a clause that tells the user what to do: a quoted command, an API call, or a verb that
#: opens a clause ("...: renew the license", "...; check it for typos", "Ask the vendor")
_STEP = re.compile(
    r"'licentia |licentia\.[a-z_]+\(|--[a-z]"
    r"|(?:^|[:;.(,]\s*|\b(?:or|then|and)\s+)"
    r"(?:activate|add|apply|ask|borrow|buy|call|carry|check|connect|contact|create|deactivate|fix|give|install"
    r"|pass|put|reinstall|remove|renew|run|send|set|submit|sync|try|use|wait)\b",
    re.IGNORECASE,
)


def names_next_step(message: str) -> bool:
    """Whether ``message`` already tells the user what to do."""
    return bool(_STEP.search(message))


def with_next_step(cls: type[LicenseError], message: str, detail: str = "") -> str:
    """``message`` and ``detail``, then ``cls.next_step`` unless the message names a step of its own."""
    text = message.rstrip() + detail
    if names_next_step(message):
        return text
    return f"{text.rstrip('.')}. {cls.next_step}"


class LicenseNotFound(LicenseError):
    """No license for this firm and product code was found."""

    code = 10
    rank = 0
    next_step = (
        "Activate a ticket from the vendor ('licentia activate TICKET'), or ask the "
        "administrator of your license server."
    )


class LicenseInvalid(LicenseError):
    """A license document is forged, tampered with, or from a foreign firm.

    ``reason`` says which check failed; it is for the log, never in the message."""

    code = 11
    rank = 1
    next_step = "Ask the vendor for a new update; do not edit the container's files."

    def __init__(self, message: str | None = None, *, reason: str | None = None, tried: list[str] | None = None):
        self.reason = reason
        super().__init__(message or f"A license document failed verification. {self.next_step}", tried=tried)


def log_rejected(reason: str, *, logger: logging.Logger | None = None) -> None:
    """Log why a document was rejected (where the caller goes on to the next document)."""
    (logger or _log).warning("license document rejected: %s", reason)


def rejected(reason: str, *, logger: logging.Logger | None = None) -> LicenseInvalid:
    """Log why a document was rejected and return the generic ``LicenseInvalid`` to raise."""
    log_rejected(reason, logger=logger)
    return LicenseInvalid(reason=reason)


class ContainerLocked(LicenseError):
    """The container's machine binding no longer matches this machine."""

    code = 19
    rank = 2
    next_step = "Activate the license again ('licentia activate TICKET'), or contact the vendor."


class FeatureNotLicensed(LicenseError):
    """The license does not include every requested feature bit."""

    code = 15
    rank = 3
    next_step = "Ask the vendor for a license that includes this feature, then run 'licentia sync'."


class LicenseNotYetValid(LicenseError):
    """The license's activation time has not been reached."""

    code = 13
    rank = 4
    next_step = "Wait until the date in the message, or ask the vendor."


class LicenseExpired(LicenseError):
    """The license's expiration time or usage period is over."""

    code = 12
    rank = 5
    next_step = "Renew the license or contact the vendor; if it was renewed, run 'licentia sync'."


class MaintenanceExpired(LicenseError):
    """This release of the application is newer than the license's maintenance period."""

    code = 17
    rank = 6
    next_step = (
        "Use a release from within the maintenance period, or ask the vendor to renew "
        "maintenance, then run 'licentia sync'."
    )


class SyncRequired(LicenseError):
    """The container has not synced with License Central within the license's sync interval."""

    code = 18
    rank = 7
    next_step = "Run 'licentia sync' while online."


class ClockTampered(LicenseError):
    """The system clock is far behind the container's virtual clock."""

    code = 16
    rank = 8
    next_step = "Set the system clock right, or run 'licentia sync' while online."


class UnitsExhausted(LicenseError):
    """The license's unit counter cannot cover this access."""

    code = 14
    rank = 9
    next_step = (
        "Ask the vendor for more units, then run 'licentia sync'; or ask for a new ticket and "
        "activate it ('licentia activate TICKET')."
    )


class TrustNotConfigured(LicenseError):
    """No firm key is pinned for the firm code asked for."""

    code = 20
    rank = -1
    next_step = (
        "Tell the application's developer: the application must pin the vendor's firm "
        "key (licentia.trust(FIRM, pem) or firm_key=)."
    )


class ServerUnreachable(LicenseError):
    """No license server could be reached; the message names every host tried."""

    code = 21
    rank = 0
    next_step = "Check the network and the license server's address (LICENTIA_HOST, 'licentia config server list')."


class SeatsExhausted(LicenseError):
    """Every seat of the license is in use; the message says how many seats exist.

    ``seats`` is the license quantity and ``in_use`` the seats taken (``None`` when
    the server did not say).
    """

    code = 22
    rank = 11
    next_step = "Try again when a seat is free, or ask the vendor for more seats."

    def __init__(
        self,
        message: str | None = None,
        *,
        seats: int | None = None,
        in_use: int | None = None,
        tried: list[str] | None = None,
    ):
        self.seats = seats
        self.in_use = in_use
        super().__init__(message, tried=tried)


class DeviceLimitReached(SeatsExhausted):
    """A cloud license is held by as many devices at once as its quantity allows; the
    message names the devices holding it and how to free one. ``devices``: their names."""

    code = 25
    rank = 11
    next_step = (
        "Close the program on one of those devices, or unlink one ('licentia cloud devices', "
        "'licentia cloud logout --device ID'), then try again."
    )

    def __init__(
        self,
        message: str | None = None,
        *,
        seats: int | None = None,
        in_use: int | None = None,
        devices: list[str] | None = None,
        tried: list[str] | None = None,
    ):
        self.devices = list(devices or [])
        super().__init__(message, seats=seats, in_use=in_use, tried=tried)


class AccessDenied(LicenseError):
    """A license server refuses this client (its administrator's access rules or the access mode).

    The message is generic on purpose: the server's log names the rule that refused.
    """

    code = 23
    rank = 10
    next_step = "Ask the license server's administrator."


class ManipulationDetected(LicenseError):
    """License Central noticed that this container's files were restored from an older copy
    (or copied and used twice) and corrected or withdrew its licenses."""

    code = 24
    rank = 2
    next_step = "Contact the vendor to have the container reviewed and cleared."


class ActivationError(LicenseError):
    """License Central or the container refused an activation, deactivation, sync or update."""

    code = 30
    rank = -1
    next_step = "Fix what the message names and try again, or ask the vendor."


ALL_ERRORS: tuple[type[LicenseError], ...] = (
    LicenseError,
    LicenseNotFound,
    LicenseInvalid,
    LicenseExpired,
    LicenseNotYetValid,
    UnitsExhausted,
    FeatureNotLicensed,
    ClockTampered,
    MaintenanceExpired,
    SyncRequired,
    ContainerLocked,
    TrustNotConfigured,
    ServerUnreachable,
    SeatsExhausted,
    DeviceLimitReached,
    AccessDenied,
    ManipulationDetected,
    ActivationError,
)
"""Every LicenseError class; a license server's answer names one by ``code``."""

BY_CODE: dict[int, type[LicenseError]] = {cls.code: cls for cls in ALL_ERRORS}


# ---------------------------------------------------------------- core, container, settings


class DocumentInvalid(LicentiaError, ValueError):
    """A document failed parsing or verification. ``reason`` is for the log only."""

    def __init__(self, reason: str):
        self.reason = reason
        super().__init__(reason)


class DocumentMalformed(DocumentInvalid):
    """A document is not JSON licentia accepts (too deep, a non-finite or out-of-range
    number, a lone surrogate, a duplicate key, not UTF-8): refused before any field is read."""


class CryptoError(LicentiaError, ValueError):
    """A key or ciphertext could not be used; the reason is for the log."""


class InvalidCode(LicentiaError, ValueError):
    """A ticket, serial or item id that is not well formed."""


class BindingMismatch(LicentiaError):
    """No wrap opens with this machine's traits."""


class NoUsableTraits(LicentiaError):
    """The machine offers no high-entropy trait to bind to."""


class RoiInputError(LicentiaError, ValueError):
    """An ROI case (``licentia roi``) has a field that cannot be used; the message names it."""


class SettingsError(LicentiaError, ValueError):
    """A setting has a value that cannot be used; the message says which and why."""


class AclError(SettingsError):
    """The access-control config cannot be used; the message says where."""


# ---------------------------------------------------------------- calls to License Central


class CentralError(LicentiaError):
    """A call to License Central failed; the message says what to do.

    ``status`` is the HTTP status Central answered (None when it did not answer) and
    ``code`` Central's error code (``"unknown_ticket"``, ...; None when it sent none)."""

    status: int | None = None
    code: str | None = None

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code


class CentralUnreachable(CentralError):
    """License Central did not answer (connection refused, timeout, TLS failure)."""


class CentralRefused(CentralError):
    """License Central answered with an error (``status`` and ``code`` say which).

    ``anchored_seq``: with code ``anchor_mismatch`` (a usage upload), the last event of the
    license server's usage log Central holds an anchor for (None otherwise)."""

    anchored_seq: int | None = None


# ---------------------------------------------------------------- Central's services

GENERIC_REQUEST = "The request could not be verified. Create a new request with 'licentia activate' and send it again."
GENERIC_RECEIPT = "The receipt could not be verified. Send the receipt file the container wrote, unchanged."
GENERIC_UPLOAD = (
    "The usage upload could not be verified. Upload the license server's log again with "
    "'licentia server sync' (offline: 'licentia server usage export'), unchanged."
)


class ServiceError(LicentiaError):
    """Central's services refuse a call. ``code`` is the stable error code of the API's
    ``{"error": {"code", "message"}}``; ``reason`` is for the log only (the API's error
    handler logs it where the error leaves Central)."""

    code = "internal_error"

    def __init__(self, message: str, *, code: str | None = None, reason: str | None = None):
        super().__init__(message)
        self.message = message
        self.reason = reason
        if code is not None:
            self.code = code

    #: more fields of the error body, beside ``code`` and ``message`` (a subclass's)
    extra: dict[str, Any] = {}  # never changed in place: a subclass sets its own on the instance

    def body(self) -> dict[str, dict[str, Any]]:
        return {"error": {"code": self.code, "message": self.message, **self.extra}}


class BadInput(ServiceError):
    """A field has a value Central cannot use."""

    code = "invalid_input"


class UnsupportedSession(BadInput):
    """A reporting request carries a session object that is not a signed-in person's
    (``{"token": "lcs_..."}``)."""

    code = "unsupported_session"

    def __init__(self) -> None:
        super().__init__(
            'A session object holds a signed-in person\'s session: {"token": "lcs_..."} (licentia cloud login). '
            'Otherwise send an empty session ("session": {}) or none, and the API key in the Authorization '
            "header ('Authorization: Bearer <key>')."
        )


class UsageRejected(BadInput):
    """A license server's usage upload holds an event Central cannot take as it is (a time
    after Central's clock and the skew it allows): refused whole, nothing stored; the
    message is generic, the event and its time go to the log."""

    code = "usage_rejected"

    def __init__(self, reason: str):
        super().__init__(
            "License Central refused this usage upload: it holds an event timed after Central's clock. "
            "Set the license server's clock right; nothing of this upload was stored.",
            reason=reason,
        )


class InvalidTicket(ServiceError):
    """A ticket id was mistyped (checked before any lookup)."""

    code = "invalid_ticket"


class InvalidRequest(ServiceError):
    """A request document failed verification; the message is generic (``message``: the
    generic words for another kind of request, a usage upload's)."""

    code = "invalid_request"

    def __init__(self, reason: str, *, message: str = GENERIC_REQUEST):
        super().__init__(message, reason=reason)


class MalformedInput(ServiceError):
    """A body is not JSON Central accepts; refused before it is read (counted in process,
    per client address, never in the database)."""

    code = "malformed_input"

    def __init__(self, reason: str):
        super().__init__("The request body is not JSON Central accepts (see the API documentation).", reason=reason)


class InvalidReceipt(ServiceError):
    """A receipt failed verification; the message is generic."""

    code = "invalid_receipt"

    def __init__(self, reason: str):
        super().__init__(GENERIC_RECEIPT, reason=reason)


class InvalidItems(ServiceError):
    """An order's items do not form one license."""

    code = "invalid_items"


class Unauthorized(ServiceError):
    """No API key, or an unknown one."""

    code = "unauthorized"


class Forbidden(ServiceError):
    """The key's role or firm does not allow this."""

    code = "forbidden"


class KeyMismatch(ServiceError):
    """A request is not signed by the container registered under its serial."""

    code = "container_key_mismatch"

    def __init__(self, reason: str):
        super().__init__(
            "This request is not signed by the container registered under its serial. "
            "Create the request in the original container.",
            reason=reason,
        )


class NotFound(ServiceError):
    """A firm, item, customer, ticket, container or API key that does not exist."""

    def __init__(self, thing: str, message: str, *, reason: str | None = None):
        super().__init__(message, code=f"unknown_{thing}", reason=reason)


class Conflict(ServiceError):
    """The call conflicts with what Central holds (the code names how)."""

    def __init__(self, code: str, message: str):
        super().__init__(message, code=code)


class AnchorMismatch(Conflict):
    """A license server's usage upload starts where Central holds no anchor, and nothing
    shows manipulation (the server lost its anchor record): the body says
    ``anchored_seq``, the latest event Central holds, where the server uploads from again."""

    def __init__(self, anchored_seq: int):
        super().__init__(
            "anchor_mismatch",
            f"License Central holds this server's usage log through event {anchored_seq}: "
            "upload again from that event.",
        )
        self.anchored_seq = anchored_seq
        self.extra = {"anchored_seq": anchored_seq}


class TooManyAttempts(ServiceError):
    """Too many failed attempts from this address or for this ticket."""

    code = "too_many_attempts"

    def __init__(self, window: int):
        minutes = max(1, window // 60)
        super().__init__(f"Too many failed attempts. Wait {minutes} minutes and check the ticket before trying again.")


class TooManySignIns(TooManyAttempts):
    """Too many failed sign-ins from this address or for this account."""

    def __init__(self, window: int):
        minutes = max(1, window // 60)
        ServiceError.__init__(
            self, f"Too many failed sign-ins. Wait {minutes} minutes, then check the login and the password."
        )


class TooManyDeviceSwaps(ServiceError):
    """A person unlinked as many devices in 30 days as the vendor allows."""

    code = "too_many_device_swaps"

    def __init__(self, allowed: int, until: str):
        super().__init__(
            f"You unlinked {allowed} devices in the last 30 days, the most allowed. You can unlink another "
            f"after {until}, or ask the vendor to reset your account."
        )


class Unavailable(ServiceError):
    """The database is busy; the caller may try again."""

    code = "busy"

    def __init__(self) -> None:
        super().__init__("Central is busy. Try again in a moment.")


# ---------------------------------------------------------------- seats and license servers


class SeatError(LicentiaError):
    """The seat engine or a license server refuses a request.

    ``type`` names the error for the answer's ``{"error": {"type", "message"}}``;
    ``extra`` adds fields to it. The server's web layer picks the HTTP status."""

    def __init__(self, message: str, **extra: Any):
        super().__init__(message)
        self.message = message
        self.extra = extra

    @property
    def type(self) -> str:
        return self.__class__.__name__


class Refusal(SeatError):
    """The engine refuses an access. ``client_message`` goes to the client; ``log`` names
    the rule for the server log; ``error`` is the LicenseError class the client raises."""

    def __init__(
        self,
        error: type[LicenseError],
        client_message: str,
        log: str = "",
        *,
        seats: int | None = None,
        in_use: int | None = None,
        devices: list[str] | None = None,
    ):
        self.error = error
        self.client_message = client_message
        self.log = log or client_message
        self.seats = seats
        self.in_use = in_use
        extra: dict[str, Any] = {} if seats is None else {"seats": seats, "in_use": in_use}
        if devices is not None:
            extra["devices"] = list(devices)
        super().__init__(self.log, **extra)

    @property
    def type(self) -> str:
        return self.error.__name__

    @property
    def rank(self) -> int:
        return self.error.rank

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"code": self.error.code, "type": self.error.__name__, "message": self.client_message}
        if self.seats is not None:
            out["seats"] = self.seats
            out["in_use"] = self.in_use
        return out


class LeaseUnknown(SeatError):
    """A renewal or release names a lease that is not live (expired, released, never was)."""


class LeaseRevoked(LeaseUnknown):
    """The administrator released this lease: the client must not take it back by itself."""


class BorrowUnknown(SeatError):
    """A return names a borrowed license this server does not hold."""


class BadRequest(SeatError):
    """A request the license server cannot use (malformed, too large, a receipt that does not verify)."""


class ServerBusy(SeatError):
    """The license server could not store the change; the client may try again."""


# ---------------------------------------------------------------- protected code and data


class ProtectError(LicentiaError):
    """Base class of errors protecting, or running, protected code and data."""


class BuildError(ProtectError, ValueError):
    """The build cannot be made as asked; the message says what to change."""


class FormatError(ProtectError, ValueError):
    """Bytes that are not a (well-formed) protected file."""


class ProtectedCodeError(ProtectError, RuntimeError):
    """Raised (through the audit hook) by marshal.dumps of a protected code object."""


class ProtectedDataError(ProtectError, OSError):
    """A protected data file is damaged, truncated, reordered or altered (the message names the file)."""


class ProtectedImportError(ProtectError, ImportError):
    """A protected module cannot be imported.

    Raised by the import hook of a package made with ``licentia protect``. When the
    cause is the license (none found, expired, a release its key version does not
    cover, ...), ``license_error`` holds the ``LicenseError``; for a damaged or altered
    file, or a package built for another Python version, ``license_error`` is None.
    """

    def __init__(
        self,
        message: str,
        *,
        license_error: LicenseError | None = None,
        name: str | None = None,
        path: str | None = None,
    ):
        ImportError.__init__(self, message, name=name, path=path)
        self.license_error = license_error


__all__ = [
    "ALL_ERRORS",
    "AccessDenied",
    "AclError",
    "ActivationError",
    "AnchorMismatch",
    "BY_CODE",
    "BadInput",
    "BadRequest",
    "BindingMismatch",
    "BorrowUnknown",
    "BuildError",
    "CentralError",
    "CentralRefused",
    "CentralUnreachable",
    "ClockTampered",
    "Conflict",
    "ContainerLocked",
    "CryptoError",
    "DocumentInvalid",
    "DocumentMalformed",
    "FeatureNotLicensed",
    "Forbidden",
    "FormatError",
    "GENERIC_RECEIPT",
    "GENERIC_REQUEST",
    "GENERIC_UPLOAD",
    "InvalidCode",
    "InvalidItems",
    "InvalidReceipt",
    "InvalidRequest",
    "InvalidTicket",
    "KeyMismatch",
    "LeaseRevoked",
    "LeaseUnknown",
    "LicenseError",
    "LicenseExpired",
    "LicenseInvalid",
    "LicenseNotFound",
    "LicenseNotYetValid",
    "LicentiaError",
    "MalformedInput",
    "MaintenanceExpired",
    "ManipulationDetected",
    "NoUsableTraits",
    "NotFound",
    "ProtectError",
    "ProtectedCodeError",
    "ProtectedDataError",
    "ProtectedImportError",
    "RoiInputError",
    "Refusal",
    "SeatError",
    "SeatsExhausted",
    "ServerBusy",
    "ServerUnreachable",
    "ServiceError",
    "SettingsError",
    "SyncRequired",
    "TooManyAttempts",
    "TooManySignIns",
    "TrustNotConfigured",
    "Unauthorized",
    "UnsupportedSession",
    "Unavailable",
    "UsageRejected",
    "UnitsExhausted",
    "log_rejected",
    "names_next_step",
    "rejected",
    "with_next_step",
]
