"""licentia.server: the network license server (FastAPI) around ``licentia.seats``.

    licentia server start --data DIR --config server.toml

``create_app(settings)`` builds the ASGI app; ``LicenseServer`` is the same server
without HTTP (its container, the seat engine, grants, config reload); its refusals are
the ``SeatError`` classes of ``licentia.core.errors``, which ``app`` alone maps to HTTP.
"""

from .app import create_app
from .core import LicenseServer
from .settings import Settings, SettingsError

__all__ = ["LicenseServer", "Settings", "SettingsError", "create_app"]
