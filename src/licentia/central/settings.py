"""Central's settings: the only place that reads the environment.

``Settings.from_env()`` is called at the edge (the CLI or a deployment's ASGI
entry); everything below receives a ``Settings`` object.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..core.errors import SettingsError as SettingsError  # re-exported

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8480

#: Every environment variable Central reads, with what it sets (docs/central.md lists them too).
ENV_VARS = {
    "LICENTIA_DATA": "data directory (default ./.licentia)",
    "LICENTIA_DATABASE_URL": "SQLAlchemy URL (default sqlite:///DATA/central.db)",
    "LICENTIA_ADMIN_KEY": "admin API key (default: KEYS/admin.key, made on the first start with SQLite)",
    "LICENTIA_ADMIN_KEY_FILE": "a file holding the admin API key (a mounted secret; not with LICENTIA_ADMIN_KEY)",
    "LICENTIA_MASTER_KEY": "32-byte master key, hex or base64 (default: KEYS/master.key, made on the first start "
    "with SQLite)",
    "LICENTIA_MASTER_KEY_FILE": "a file holding the master key (a mounted secret; not with LICENTIA_MASTER_KEY)",
    "LICENTIA_KEYS_DIR": "directory of the key files master.key and admin.key, kept outside the data "
    "directory (default: DATA-keys beside DATA, e.g. ./.licentia-keys)",
    "LICENTIA_MIGRATE": "1 (default): migrate the database to the newest schema on start; 0: do not, and refuse "
    "to start unless it is there (run licentia central migrate first)",
    "LICENTIA_ATTEMPT_WINDOW": "seconds over which failed attempts are counted (default 600)",
    "LICENTIA_ATTEMPTS_PER_ADDRESS": "failed attempts allowed per client address in the window (default 20)",
    "LICENTIA_ATTEMPTS_PER_TICKET": "failed attempts allowed per ticket in the window (default 10)",
    "LICENTIA_DB_POOL_SIZE": "database connection pool size (default 10)",
    "LICENTIA_PROTOCOL_THREADS": "PostgreSQL: threads per worker for the activation protocol (default 2); "
    "0 runs it on the event loop, faster when the database is on the same host",
    "LICENTIA_MAX_BODY": "bytes a protocol request (activation, sync, report, consumption, deactivation) may "
    "have (default 262144)",
    "LICENTIA_MAX_API_BODY": "bytes a vendor API request may have (default 1048576)",
    "LICENTIA_BODY_TIMEOUT": "seconds a request body may take to arrive, plus one per KiB (default 10)",
    "LICENTIA_INFLIGHT_PER_ADDRESS": "requests one client address may have in flight (default 128)",
    "LICENTIA_REFUSED_BURST": "requests refused before they are read that one address may have in a burst, "
    "before all its requests get 429 (default 60)",
    "LICENTIA_REFUSED_PER_SECOND": "how fast that allowance comes back, per second (default 1)",
    "LICENTIA_FORWARDED_ALLOW_IPS": "addresses or networks of trusted reverse proxies, comma-separated: only "
    "their X-Forwarded-For names the client (default: none)",
    "LICENTIA_USAGE_PURGE_INTERVAL": "seconds between two runs of the usage store's retention (each firm's "
    "events older than its retention are deleted; default 86400, 0: never while serving)",
    "LICENTIA_USAGE_ROLLUP_INTERVAL": "seconds between two runs of the usage store's billing rollup "
    "(default 300, 0: never while serving)",
    "LICENTIA_PUBLIC_URL": "Central's address as people's browsers reach it, e.g. https://central.example.com "
    "(the device sign-in's link, and the origin its forms must come from; default: the address each request "
    "names)",
    "LICENTIA_SESSION_IDLE": "seconds a linked device's session lives unused (default 2592000: 30 days)",
    "LICENTIA_SESSION_MAX": "seconds a linked device's session lives at most (default 7776000: 90 days)",
    "LICENTIA_WEB_SESSION_IDLE": "seconds a browser sign-in lives unused (default 1800)",
    "LICENTIA_WEB_SESSION_MAX": "seconds a browser sign-in lives at most (default 43200)",
    "LICENTIA_LOGIN_ATTEMPTS_PER_ACCOUNT": "failed sign-ins allowed per account in the attempt window (default 10)",
    "LICENTIA_CLOUD_LEASE_TTL": "seconds a cloud lease lives without a heartbeat (default 120)",
    "LICENTIA_CLOUD_LEASES_PER_DEVICE": "cloud leases one linked device may hold at once (default 16)",
    "LICENTIA_CLOUD_DEVICE_SWAPS": "linked devices a person may unlink in 30 days (default 3)",
    "LICENTIA_CLOUD_MAX_GRACE": "seconds of grace a cloud lease may carry at most (default 604800)",
    "LICENTIA_CLOUD_USAGE_INTERVAL": "seconds between copies of cloud leases' usage into the usage store (default 15)",
    "LICENTIA_CLOUD_PROXY_TOLERANCE": "seconds a proxy license server serves its seats after its last refresh "
    "(default 86400)",
    "LICENTIA_CLOUD_PROXY_REFRESH": "seconds between a proxy license server's refreshes (default 900)",
    "LICENTIA_CLOUD_PROXY_POLL": "seconds between a proxy license server's looks at its update trigger (default 15)",
}


@dataclass(frozen=True)
class Settings:
    data_dir: Path = field(default_factory=lambda: Path(".licentia"))
    database_url: str | None = None  # None: sqlite:///DATA/central.db
    admin_key: str | None = None  # None: admin_key_path, else KEYS/admin.key (made on first start with SQLite)
    master_key: str | None = None  # None: master_key_path, else KEYS/master.key (made on first start with SQLite)
    admin_key_path: Path | None = None  # LICENTIA_ADMIN_KEY_FILE: a file holding the admin key (a mounted secret)
    master_key_path: Path | None = None  # LICENTIA_MASTER_KEY_FILE: a file holding the master key
    keys_dir: Path | None = None  # None: DATA-keys, beside the data directory
    migrate: bool = True  # False: refuse to start unless the schema is at the newest revision
    attempt_window: int = 600
    attempts_per_address: int = 20
    attempts_per_ticket: int = 10
    pool_size: int = 10
    protocol_threads: int = 2  # PostgreSQL only; 0: on the event loop (SQLite always is)
    max_body: int = 256 * 1024  # bytes: a protocol request
    max_api_body: int = 1024 * 1024  # bytes: a vendor API request
    body_timeout: float = 10.0  # seconds a body may take, plus one per KiB
    inflight_per_address: int = 128
    refused_burst: int = 60
    refused_per_second: float = 1.0
    forwarded_allow_ips: str = ""  # trusted reverse proxies (comma-separated addresses or networks)
    usage_purge_interval: float = 86400.0  # seconds between retention runs while serving (0: none)
    usage_rollup_interval: float = 300.0  # seconds between billing rollup runs while serving (0: none)
    public_url: str | None = None  # how browsers reach Central (None: what each request names)
    session_idle: int = 30 * 86400  # a linked device's session
    session_max: int = 90 * 86400
    web_session_idle: int = 1800  # a browser's sign-in
    web_session_max: int = 12 * 3600
    login_attempts_per_account: int = 10
    cloud_lease_ttl: int = 120  # seconds a cloud lease lives without a heartbeat
    cloud_leases_per_device: int = 16  # cloud leases one device may hold at once
    cloud_device_swaps: int = 3  # devices a person may unlink in 30 days
    cloud_max_grace: int = 7 * 86400  # seconds of grace a cloud lease may carry (the item's option caps it too)
    cloud_usage_interval: float = 15.0  # seconds between copies of cloud leases' events into the usage store (0: none)
    cloud_proxy_tolerance: int = 86400  # seconds a proxy license server serves its seats without reaching Central
    cloud_proxy_refresh: int = 900  # seconds between a proxy license server's refreshes
    cloud_proxy_poll: int = 15  # seconds between a proxy license server's looks at its update trigger

    def __post_init__(self) -> None:
        for name, key, path in (
            ("MASTER", self.master_key, self.master_key_path),
            ("ADMIN", self.admin_key, self.admin_key_path),
        ):
            if key and path is not None:
                raise SettingsError(f"LICENTIA_{name}_KEY and LICENTIA_{name}_KEY_FILE are both set: set one of them")

    @property
    def db_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'central.db').resolve()}"

    @property
    def sqlite(self) -> bool:
        """Whether the database is a SQLite file of this machine (else a server that
        replicas may share: Central then never makes a key of its own)."""
        return self.db_url.partition(":")[0].partition("+")[0].strip().lower() == "sqlite"

    @property
    def key_dir(self) -> Path:
        """Where the key files live: ``keys_dir``, else the sibling ``<data dir>-keys``, so
        that a copy of the data directory never holds the key that opens its database."""
        if self.keys_dir is not None:
            return self.keys_dir
        data = self.data_dir if self.data_dir.name not in ("", "..") else self.data_dir.resolve()
        return data.with_name(data.name + "-keys")

    @property
    def admin_key_file(self) -> Path:
        return self.key_dir / "admin.key"

    @property
    def master_key_file(self) -> Path:
        return self.key_dir / "master.key"

    @property
    def legacy_admin_key_file(self) -> Path:
        """Where versions before the keys directory kept the admin key: inside DATA."""
        return self.data_dir / "admin.key"

    @property
    def legacy_master_key_file(self) -> Path:
        """Where versions before the keys directory kept the master key: inside DATA."""
        return self.data_dir / "master.key"

    def with_changes(self, **changes: Any) -> Settings:
        return replace(self, **changes)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, *, data_dir: str | Path | None = None) -> Settings:
        env = os.environ if environ is None else environ
        data = Path(data_dir) if data_dir else Path(env.get("LICENTIA_DATA") or ".licentia")

        YEAR = 366 * 86400  # the longest interval of a periodic job (a float: whole numbers past it overflow)

        def number(name: str, default: int, minimum: int = 1, maximum: int | None = None) -> int:
            raw = env.get(name)
            if raw is None or raw == "":
                return default
            try:
                value = int(raw)
            except ValueError:
                raise SettingsError(f"{name} must be a whole number, not {raw!r}") from None
            if value < minimum:
                raise SettingsError(f"{name} must be at least {minimum}")
            if maximum is not None and value > maximum:
                raise SettingsError(f"{name} must be at most {maximum}")
            return value

        return cls(
            data_dir=data,
            database_url=env.get("LICENTIA_DATABASE_URL") or None,
            admin_key=env.get("LICENTIA_ADMIN_KEY") or None,
            master_key=env.get("LICENTIA_MASTER_KEY") or None,
            admin_key_path=_path(env.get("LICENTIA_ADMIN_KEY_FILE")),
            master_key_path=_path(env.get("LICENTIA_MASTER_KEY_FILE")),
            migrate=_switch("LICENTIA_MIGRATE", env.get("LICENTIA_MIGRATE"), default=True),
            keys_dir=Path(env["LICENTIA_KEYS_DIR"]) if env.get("LICENTIA_KEYS_DIR") else None,
            attempt_window=number("LICENTIA_ATTEMPT_WINDOW", 600),
            attempts_per_address=number("LICENTIA_ATTEMPTS_PER_ADDRESS", 20),
            attempts_per_ticket=number("LICENTIA_ATTEMPTS_PER_TICKET", 10),
            pool_size=number("LICENTIA_DB_POOL_SIZE", 10),
            protocol_threads=number("LICENTIA_PROTOCOL_THREADS", 2, minimum=0),
            max_body=number("LICENTIA_MAX_BODY", 256 * 1024, minimum=1024),
            max_api_body=number("LICENTIA_MAX_API_BODY", 1024 * 1024, minimum=1024),
            body_timeout=float(number("LICENTIA_BODY_TIMEOUT", 10, maximum=3600)),
            inflight_per_address=number("LICENTIA_INFLIGHT_PER_ADDRESS", 128),
            refused_burst=number("LICENTIA_REFUSED_BURST", 60),
            refused_per_second=float(number("LICENTIA_REFUSED_PER_SECOND", 1, maximum=1_000_000)),
            forwarded_allow_ips=env.get("LICENTIA_FORWARDED_ALLOW_IPS", ""),
            usage_purge_interval=float(number("LICENTIA_USAGE_PURGE_INTERVAL", 86400, minimum=0, maximum=YEAR)),
            usage_rollup_interval=float(number("LICENTIA_USAGE_ROLLUP_INTERVAL", 300, minimum=0, maximum=YEAR)),
            public_url=_public_url(env.get("LICENTIA_PUBLIC_URL") or None),
            session_idle=number("LICENTIA_SESSION_IDLE", 30 * 86400, minimum=60),
            session_max=number("LICENTIA_SESSION_MAX", 90 * 86400, minimum=60),
            web_session_idle=number("LICENTIA_WEB_SESSION_IDLE", 1800, minimum=60),
            web_session_max=number("LICENTIA_WEB_SESSION_MAX", 12 * 3600, minimum=60),
            login_attempts_per_account=number("LICENTIA_LOGIN_ATTEMPTS_PER_ACCOUNT", 10),
            cloud_lease_ttl=number("LICENTIA_CLOUD_LEASE_TTL", 120, minimum=10, maximum=86400),
            cloud_leases_per_device=number("LICENTIA_CLOUD_LEASES_PER_DEVICE", 16),
            cloud_device_swaps=number("LICENTIA_CLOUD_DEVICE_SWAPS", 3, minimum=0),
            cloud_max_grace=number("LICENTIA_CLOUD_MAX_GRACE", 7 * 86400, minimum=0, maximum=366 * 86400),
            cloud_usage_interval=float(number("LICENTIA_CLOUD_USAGE_INTERVAL", 15, minimum=0, maximum=YEAR)),
            cloud_proxy_tolerance=number("LICENTIA_CLOUD_PROXY_TOLERANCE", 86400, minimum=60, maximum=30 * 86400),
            cloud_proxy_refresh=number("LICENTIA_CLOUD_PROXY_REFRESH", 900, minimum=5, maximum=86400),
            cloud_proxy_poll=number("LICENTIA_CLOUD_PROXY_POLL", 15, minimum=1, maximum=3600),
        )


def _path(raw: str | None) -> Path | None:
    return Path(raw) if raw else None


_ON = ("1", "true", "yes", "on")
_OFF = ("0", "false", "no", "off")


def _switch(name: str, raw: str | None, *, default: bool) -> bool:
    """A yes-or-no variable: 1, true, yes, on or 0, false, no, off (unset or empty: ``default``)."""
    if raw is None or raw.strip() == "":
        return default
    value = raw.strip().lower()
    if value in _ON or value in _OFF:
        return value in _ON
    raise SettingsError(f"{name} is 1 or 0 (true or false, yes or no, on or off), not {raw!r}")


def _public_url(raw: str | None) -> str | None:
    """``scheme://host[:port]``, without a path: what a browser sends as its Origin."""
    if raw is None:
        return None
    from urllib.parse import urlsplit

    parts = urlsplit(raw.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.path not in ("", "/") or parts.query:
        raise SettingsError(f"LICENTIA_PUBLIC_URL is an http:// or https:// address without a path, not {raw!r}")
    return f"{parts.scheme}://{parts.netloc}"
