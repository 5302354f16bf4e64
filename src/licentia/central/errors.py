"""Central's API errors. Every error answers ``{"error": {"code", "message"}}``.

    CentralError                         base: code, HTTP status, message saying what to do
     ├── BadInput            400 invalid_input          a field has a value Central cannot use
     ├── InvalidTicket       400 invalid_ticket         a ticket id was mistyped (checked before any lookup)
     ├── InvalidRequest      400 invalid_request        a request document failed verification (generic)
     ├── InvalidReceipt      400 invalid_receipt        a receipt failed verification (generic)
     ├── InvalidItems        400 invalid_items          an order's items do not form one license
     ├── Unauthorized        401 unauthorized           no or unknown API key
     ├── Forbidden           403 forbidden              the key's role or firm does not allow this
     ├── KeyMismatch         403 container_key_mismatch request not signed by the serial's registered key
     ├── NotFound            404 unknown_<thing>        firm, item, customer, ticket, container, api key
     ├── Conflict            409 <thing>_exists, ticket_revoked, wrong_level, ticket_bound_elsewhere,
     │                           not_active_here, active_key
     ├── Manipulation        409 manipulation_detected  the container reported an old state with a newer clock
     └── TooManyAttempts     429 too_many_attempts      too many failed attempts from this address or for this ticket

Messages on untrusted input are generic; the detailed reason goes to the
``licentia.central`` logger.
"""

from __future__ import annotations

import logging

log = logging.getLogger("licentia.central")

GENERIC_REQUEST = "The request could not be verified. Create a new request with 'licentia activate' and send it again."
GENERIC_RECEIPT = "The receipt could not be verified. Send the receipt file the container wrote, unchanged."


class CentralError(Exception):
    status = 500
    code = "internal_error"

    def __init__(self, message: str, *, code: str | None = None, status: int | None = None, reason: str | None = None):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        if reason:
            log.warning("%s: %s", self.code, reason)

    def body(self) -> dict[str, dict[str, str]]:
        return {"error": {"code": self.code, "message": self.message}}


class BadInput(CentralError):
    status, code = 400, "invalid_input"


class InvalidTicket(CentralError):
    status, code = 400, "invalid_ticket"


class InvalidRequest(CentralError):
    status, code = 400, "invalid_request"

    def __init__(self, reason: str):
        super().__init__(GENERIC_REQUEST, reason=reason)


class InvalidReceipt(CentralError):
    status, code = 400, "invalid_receipt"

    def __init__(self, reason: str):
        super().__init__(GENERIC_RECEIPT, reason=reason)


class InvalidItems(CentralError):
    status, code = 400, "invalid_items"


class Unauthorized(CentralError):
    status, code = 401, "unauthorized"


class Forbidden(CentralError):
    status, code = 403, "forbidden"


class KeyMismatch(CentralError):
    status, code = 403, "container_key_mismatch"

    def __init__(self, reason: str):
        super().__init__(
            "This request is not signed by the container registered under its serial. "
            "Create the request in the original container.",
            reason=reason,
        )


class NotFound(CentralError):
    status = 404

    def __init__(self, thing: str, message: str, *, reason: str | None = None):
        super().__init__(message, code=f"unknown_{thing}", reason=reason)


class Conflict(CentralError):
    status = 409

    def __init__(self, code: str, message: str):
        super().__init__(message, code=code)


class Manipulation(CentralError):
    status, code = 409, "manipulation_detected"

    def __init__(self, serial: str, firm_code: int, reason: str | None = None):
        super().__init__(
            f"Manipulation detected: container {serial} reported an older state for firm {firm_code} "
            "than it had before. Contact the vendor to have the container cleared.",
            reason=reason,
        )


class TooManyAttempts(CentralError):
    status, code = 429, "too_many_attempts"

    def __init__(self, window: int):
        minutes = max(1, window // 60)
        super().__init__(f"Too many failed attempts. Wait {minutes} minutes and check the ticket before trying again.")


class Unavailable(CentralError):
    status, code = 503, "busy"

    def __init__(self) -> None:
        super().__init__("Central is busy. Try again in a moment.")
