"""licentia: software licensing and protection.

    import licentia
    licentia.trust(10101, open("firm-10101.pem").read())
    with licentia.access(10101, 1, feature_code=0x1) as handle:
        ...

Everything an application needs is exported here. ``import licentia`` loads
``cryptography`` only; httpx is imported when the runtime first goes on the network.
``open_protected(path)`` reads data files made by ``licentia protect-data``; packages
made by ``licentia protect`` raise ``ProtectedImportError`` when no license opens them, and
``open_protected`` raises ``ProtectedDataError`` for a damaged or altered file. Every
exception licentia raises derives from ``LicentiaError`` (``licentia.core.errors``).
"""

from .core.errors import (
    AccessDenied,
    ActivationError,
    ClockTampered,
    ContainerLocked,
    FeatureNotLicensed,
    LicenseError,
    LicenseExpired,
    LicenseInvalid,
    LicenseNotFound,
    LicenseNotYetValid,
    LicentiaError,
    MaintenanceExpired,
    ManipulationDetected,
    ProtectedDataError,
    ProtectedImportError,
    SeatsExhausted,
    ServerUnreachable,
    SyncRequired,
    TrustNotConfigured,
    UnitsExhausted,
)
from .protect import open_protected
from .runtime import Handle, access, info, trust

__version__ = "0.1.0"

__all__ = [
    "AccessDenied",
    "ActivationError",
    "ClockTampered",
    "ContainerLocked",
    "FeatureNotLicensed",
    "Handle",
    "LicenseError",
    "LicentiaError",
    "LicenseExpired",
    "LicenseInvalid",
    "LicenseNotFound",
    "LicenseNotYetValid",
    "MaintenanceExpired",
    "ManipulationDetected",
    "ProtectedDataError",
    "ProtectedImportError",
    "SeatsExhausted",
    "ServerUnreachable",
    "SyncRequired",
    "TrustNotConfigured",
    "UnitsExhausted",
    "__version__",
    "access",
    "info",
    "open_protected",
    "trust",
]
