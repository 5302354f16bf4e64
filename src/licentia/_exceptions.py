"""Every error an application sees from licentia.

    LicenseError                      (code  1) base class; never raised itself
     ├── LicenseNotFound              (code 10) no license for firm/product anywhere searched
     ├── LicenseInvalid               (code 11) forged, tampered or foreign document
     ├── LicenseExpired               (code 12) expiration time or usage period is over
     ├── LicenseNotYetValid           (code 13) activation time is still ahead
     ├── UnitsExhausted               (code 14) the unit counter cannot cover the request
     ├── FeatureNotLicensed           (code 15) feature map lacks a requested bit
     ├── ClockTampered                (code 16) system clock far behind the virtual clock
     ├── MaintenanceExpired           (code 17) this release is newer than the maintenance period
     ├── SyncRequired                 (code 18) container has not synced within the sync interval
     ├── ContainerLocked              (code 19) the container's binding no longer matches
     ├── TrustNotConfigured           (code 20) no firm key pinned for the firm code asked for
     ├── ServerUnreachable            (code 21) no license server answered (names every host tried)
     ├── SeatsExhausted               (code 22) a license server has the license, every seat is in use
     ├── AccessDenied                 (code 23) a license server's access rules refuse this client
     └── ActivationError              (code 30) activation, deactivation, sync or update refused

    ImportError
     └── ProtectedImportError                    protected code cannot be imported: no usable
                                                 license (the LicenseError is ``.license_error``),
                                                 a damaged or altered file, or another Python

Each ``LicenseError`` class has a stable numeric ``code`` (listed in docs/errors.md) and a message
that says what to do. ``LicenseInvalid`` never tells the caller which check failed:
the reason goes to the ``licentia`` logger only.
"""

from __future__ import annotations

import logging

_log = logging.getLogger("licentia")


class LicenseError(Exception):
    """Base class of every licentia runtime error."""

    code = 1
    rank = 0  # closeness to success: the highest-ranked failure is the one raised

    def __init__(self, message: str | None = None, *, tried: list[str] | None = None):
        self.tried = list(tried or [])
        super().__init__(message or self.__doc__ or self.__class__.__name__)


class LicenseNotFound(LicenseError):
    """No license for this firm and product code was found."""

    code = 10
    rank = 0


class LicenseInvalid(LicenseError):
    """A license document is forged, tampered with, or from a foreign firm."""

    code = 11
    rank = 1

    def __init__(self, message: str | None = None, *, reason: str | None = None, tried: list[str] | None = None):
        # The detailed reason is for the log, never for the caller.
        if reason:
            _log.warning("license document rejected: %s", reason)
        super().__init__(
            message or "A license document failed verification. Ask the vendor for a new update.", tried=tried
        )


class ContainerLocked(LicenseError):
    """The container's machine binding no longer matches this machine."""

    code = 19
    rank = 2


class FeatureNotLicensed(LicenseError):
    """The license does not include every requested feature bit."""

    code = 15
    rank = 3


class LicenseNotYetValid(LicenseError):
    """The license's activation time has not been reached."""

    code = 13
    rank = 4


class LicenseExpired(LicenseError):
    """The license's expiration time or usage period is over."""

    code = 12
    rank = 5


class MaintenanceExpired(LicenseError):
    """This release of the application is newer than the license's maintenance period."""

    code = 17
    rank = 6


class SyncRequired(LicenseError):
    """The container has not synced with License Central within the license's sync interval."""

    code = 18
    rank = 7


class ClockTampered(LicenseError):
    """The system clock is far behind the container's virtual clock."""

    code = 16
    rank = 8


class UnitsExhausted(LicenseError):
    """The license's unit counter cannot cover this access."""

    code = 14
    rank = 9


class TrustNotConfigured(LicenseError):
    """No firm key is pinned for the firm code asked for."""

    code = 20
    rank = -1


class ServerUnreachable(LicenseError):
    """No license server could be reached; the message names every host tried."""

    code = 21
    rank = 0


class SeatsExhausted(LicenseError):
    """Every seat of the license is in use; the message says how many seats exist.

    ``seats`` is the license quantity and ``in_use`` the seats taken (``None`` when
    the server did not say).
    """

    code = 22
    rank = 11

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


class AccessDenied(LicenseError):
    """A license server refuses this client (its administrator's access rules or the access mode).

    The message is generic on purpose: the server's log names the rule that refused.
    """

    code = 23
    rank = 10


class ActivationError(LicenseError):
    """License Central or the container refused an activation, deactivation, sync or update."""

    code = 30
    rank = -1


class ProtectedImportError(ImportError):
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
        super().__init__(message, name=name, path=path)
        self.license_error = license_error


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
    AccessDenied,
    ActivationError,
)
