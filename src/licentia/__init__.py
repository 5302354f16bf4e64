"""licentia: software licensing and protection.

    import licentia
    licentia.trust(10101, open("firm-10101.pem").read())
    with licentia.access(10101, 1, feature_code=0x1) as handle:
        ...

Everything an application needs is exported here. ``import licentia`` loads
``cryptography`` only; httpx is imported when the runtime first goes on the network.
"""

from ._exceptions import (
    ActivationError,
    ClockTampered,
    ContainerLocked,
    FeatureNotLicensed,
    LicenseError,
    LicenseExpired,
    LicenseInvalid,
    LicenseNotFound,
    LicenseNotYetValid,
    MaintenanceExpired,
    ServerUnreachable,
    SyncRequired,
    TrustNotConfigured,
    UnitsExhausted,
)
from .runtime import Handle, access, info, trust

__version__ = "0.1.0"

__all__ = [
    "ActivationError",
    "ClockTampered",
    "ContainerLocked",
    "FeatureNotLicensed",
    "Handle",
    "LicenseError",
    "LicenseExpired",
    "LicenseInvalid",
    "LicenseNotFound",
    "LicenseNotYetValid",
    "MaintenanceExpired",
    "ServerUnreachable",
    "SyncRequired",
    "TrustNotConfigured",
    "UnitsExhausted",
    "__version__",
    "access",
    "info",
    "trust",
]
