"""licentia.server: the network license server (FastAPI) around ``licentia.seats``.

    licentia server start --data DIR --config server.toml

``create_app(settings)`` builds the ASGI app; ``LicenseServer`` is the same server
without HTTP (its container, the seat engine, grants, config reload).
"""

from .app import create_app
from .core import ApiError, LicenseServer
from .settings import Settings, SettingsError

__all__ = ["ApiError", "LicenseServer", "Settings", "SettingsError", "create_app"]
