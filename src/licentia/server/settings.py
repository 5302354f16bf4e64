"""The license server's settings: the only place that reads its environment.

Sources, strongest first: command-line options, environment variables, the ``[server]``
table of the config file (``--config server.toml``, which also holds the access rules),
defaults. Everything below receives a ``Settings`` object; the clock is a setting
(the runtime's default clock unless a caller passes one).
"""

from __future__ import annotations

import functools
import os
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..core import tomlfile
from ..core.encoding import parse_duration
from ..core.errors import SettingsError as SettingsError  # re-exported
from ..runtime import DEFAULT_PORT

DEFAULT_DATA = ".licentia-server"

#: Every environment variable the server reads (docs/server.md lists them too).
ENV_VARS = {
    "LICENTIA_SERVER_DATA": "data directory (default ./.licentia-server)",
    "LICENTIA_SERVER_ADMIN_TOKEN": "admin token (default: made into DATA/admin.token, 0600)",
    "LICENTIA_SERVER_BINDING_KEY_FILE": "bind the server's container to the key in this file (at least 32 random "
    "bytes, not world-readable) instead of the machine's traits: a server in a pod, its key a Secret",
}


def binding_key_file(environ: Mapping[str, str] | None = None) -> Path | None:
    """``LICENTIA_SERVER_BINDING_KEY_FILE``: the key file the server's container is bound to
    (None: bound to the machine's traits)."""
    env = os.environ if environ is None else environ
    value = env.get("LICENTIA_SERVER_BINDING_KEY_FILE")
    return Path(value) if value else None


#: ``[server]`` keys a reload (SIGHUP or a changed file) applies without a restart
RELOADABLE = ("lease_ttl", "heartbeat", "linger", "access_token", "usage_retention_days", "max_grace")
_KEYS = {
    *RELOADABLE,
    "discovery",
    "discovery_port",
    "discovery_bind",
    "durability",
    "tls_cert",
    "tls_key",
    "sweep_interval",
    "config_poll",
    "private_views",
    "pseudonymise",
    "central_sync",
}


def _default_clock() -> int:
    """The runtime factory's clock (tests inject theirs through licentia._testing)."""
    return int(_factory().clock())


@functools.cache
def _factory() -> Any:
    from ..runtime import factory

    return factory


@dataclass(frozen=True)
class Settings:
    data_dir: Path = field(default_factory=lambda: Path(DEFAULT_DATA))
    host: str = "0.0.0.0"  # noqa: S104 - a license server serves clients on other machines
    port: int = DEFAULT_PORT
    config_path: Path | None = None
    admin_token: str | None = None  # None: DATA/admin.token
    binding_key_file: Path | None = None  # None: the container is bound to the machine's traits
    access_token: str | None = None  # clients send it as "Authorization: Bearer ..."
    lease_ttl: int = 120
    heartbeat: float | None = None  # seconds between a client's renewals (None: ttl / 3)
    linger: int = 0
    usage_retention_days: int | None = 365
    durability: str = "process"  # "full": fsync every commit (survives a power loss)
    discovery: bool = True
    discovery_port: int = DEFAULT_PORT
    discovery_bind: str = "0.0.0.0"  # noqa: S104 - discovery answers broadcasts from the network
    tls_cert: Path | None = None
    tls_key: Path | None = None
    sweep_interval: float = 1.0  # real seconds between expiry sweeps
    config_poll: float = 1.0  # real seconds between checks of the config file
    private_views: bool = False  # /metrics and GET /api/v1/licenses need the admin token
    #: seconds of grace this server grants a seat at most, below the license's max_grace
    #: (None: the license's own cap; 0: no grace on this server's seats)
    max_grace: int | None = None
    #: write user, host, address and seat into the usage log as keyed hashes (DATA/pseudonym.key)
    pseudonymise: bool = False
    #: seconds between the running server's uploads of its usage log and license syncs with
    #: License Central (when its container knows one); 0: never (``licentia server sync`` by hand)
    central_sync: float = 86400.0
    clock: Callable[[], int] = field(default=_default_clock, compare=False, repr=False)

    @property
    def db_path(self) -> Path:
        return self.data_dir / "seats.db"

    @property
    def admin_token_file(self) -> Path:
        return self.data_dir / "admin.token"

    @property
    def pseudonym_key_file(self) -> Path:
        return self.data_dir / "pseudonym.key"

    @property
    def heartbeat_seconds(self) -> float:
        return self.heartbeat if self.heartbeat else max(1.0, self.lease_ttl / 3)

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None

    def with_changes(self, **changes: Any) -> Settings:
        return replace(self, **changes)

    @classmethod
    def from_env(
        cls,
        environ: Mapping[str, str] | None = None,
        *,
        data_dir: str | Path | None = None,
        config_path: str | Path | None = None,
        **overrides: Any,
    ) -> Settings:
        env = os.environ if environ is None else environ
        data = Path(data_dir) if data_dir else Path(env.get("LICENTIA_SERVER_DATA") or DEFAULT_DATA)
        values: dict[str, Any] = {}
        path = Path(config_path) if config_path else None
        if path is not None:
            values.update(server_table(read_config(path)))
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(
            data_dir=data,
            config_path=path,
            admin_token=env.get("LICENTIA_SERVER_ADMIN_TOKEN") or None,
            binding_key_file=binding_key_file(env),
            **values,
        )


def read_config(path: Path) -> dict[str, Any]:
    try:
        return tomlfile.load(path)
    except FileNotFoundError:
        raise SettingsError(f"config file {path} does not exist") from None
    except (OSError, tomlfile.TomlRejected) as exc:
        raise SettingsError(f"config file {path} cannot be read: {exc}") from None


def server_table(doc: dict[str, Any]) -> dict[str, Any]:
    """The ``[server]`` table, checked; returns Settings field values."""
    raw = doc.get("server", {})
    if not isinstance(raw, dict):
        raise SettingsError("[server] is a table")
    unknown = set(raw) - _KEYS
    if unknown:
        raise SettingsError(f"[server]: unknown key(s) {', '.join(sorted(unknown))}")
    out: dict[str, Any] = {}
    for name, check in _CHECKS:
        if name in raw:
            out[name] = check(name, raw[name])
    if ("tls_cert" in out) != ("tls_key" in out):
        raise SettingsError("[server] tls_cert and tls_key go together")
    return out


#: the longest lease, linger or heartbeat a config file may set (30 days)
MAX_SECONDS = 30 * 86400
#: the longest usage retention (100 years)
MAX_RETENTION_DAYS = 36500
#: the longest grace a server may grant (10 years)
MAX_GRACE = 3650 * 86400


def _whole(minimum: int, maximum: int) -> Callable[[str, Any], int]:
    def check(name: str, v: Any) -> int:
        if not isinstance(v, int) or isinstance(v, bool) or not minimum <= v <= maximum:
            raise SettingsError(f"[server] {name} is a whole number from {minimum} to {maximum}")
        return v

    return check


def _seconds(minimum: float, maximum: float) -> Callable[[str, Any], float]:
    def check(name: str, v: Any) -> float:
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not minimum <= v <= maximum:
            raise SettingsError(f"[server] {name} is a number of seconds from {minimum} to {maximum:g}")
        return float(v)

    return check


def _retention_days(name: str, v: Any) -> int | None:
    if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v <= MAX_RETENTION_DAYS:
        raise SettingsError(f"[server] {name} is a whole number up to {MAX_RETENTION_DAYS} (0: keep every event)")
    return v or None


def _text(name: str, v: Any) -> str:
    if not isinstance(v, str) or not v:
        raise SettingsError(f"[server] {name} is non-empty text")
    return v


def _durability(name: str, v: Any) -> str:
    if v not in ("process", "full"):
        raise SettingsError(f'[server] {name} is "process" or "full"')
    return str(v)


def _flag(name: str, v: Any) -> bool:
    if not isinstance(v, bool):
        raise SettingsError(f"[server] {name} is true or false")
    return v


def _duration(name: str, v: Any) -> int:
    try:
        if isinstance(v, bool) or not isinstance(v, (int, str)):
            raise ValueError
        seconds = v if isinstance(v, int) and v >= 0 else parse_duration(str(v))
        if seconds > MAX_GRACE:
            raise ValueError
        return seconds
    except ValueError:
        raise SettingsError(
            f'[server] {name} is a duration ("3d", "12h") or seconds, at most {MAX_GRACE // 86400} days'
        ) from None


def _interval(name: str, v: Any) -> float:
    """A duration ("1d", "12h", "30m") or seconds; 0 turns it off."""
    try:
        if isinstance(v, bool) or not isinstance(v, (int, float, str)):
            raise ValueError
        seconds = float(v) if isinstance(v, (int, float)) else float(parse_duration(v))
        if not (seconds == 0 or 0.05 <= seconds <= MAX_SECONDS * 12):
            raise ValueError
        return seconds
    except ValueError:
        raise SettingsError(
            f'[server] {name} is a duration ("1d", "12h") or seconds, at most {MAX_SECONDS * 12 // 86400} days '
            '("0": off)'
        ) from None


def _path(name: str, v: Any) -> Path:
    if not isinstance(v, str) or not v or "\0" in v:
        raise SettingsError(f"[server] {name} is the path of a file")
    return Path(v)


#: how each key of [server] is checked, in the order the keys are checked
_CHECKS: tuple[tuple[str, Callable[[str, Any], Any]], ...] = (
    ("lease_ttl", _whole(1, MAX_SECONDS)),
    ("linger", _whole(0, MAX_SECONDS)),
    ("discovery_port", _whole(1, 65535)),
    ("heartbeat", _seconds(0.05, MAX_SECONDS)),
    ("sweep_interval", _seconds(0.05, 3600)),
    ("config_poll", _seconds(0.05, 3600)),
    ("usage_retention_days", _retention_days),
    ("access_token", _text),
    ("discovery_bind", _text),
    ("durability", _durability),
    ("discovery", _flag),
    ("private_views", _flag),
    ("pseudonymise", _flag),
    ("central_sync", _interval),
    ("max_grace", _duration),
    ("tls_cert", _path),
    ("tls_key", _path),
)


def load_admin_token(settings: Settings) -> tuple[str, str]:
    """The admin token and where it came from ("environment", or the file; made if missing)."""
    if settings.admin_token:
        return settings.admin_token, "environment"
    path = settings.admin_token_file
    try:
        token = path.read_text().strip()
        if token:
            return token, str(path)
    except FileNotFoundError:
        pass
    token = secrets.token_urlsafe(32)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(token + "\n")
    return token, str(path)
