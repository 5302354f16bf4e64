"""Central's settings: the only place that reads the environment.

``Settings.from_env()`` is called at the edge (the CLI or a deployment's ASGI
entry); everything below receives a ``Settings`` object.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from ..core.errors import SettingsError  # noqa: F401 (re-exported)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8480

#: Every environment variable Central reads, with what it sets (docs/central.md lists them too).
ENV_VARS = {
    "LICENTIA_DATA": "data directory (default ./.licentia)",
    "LICENTIA_DATABASE_URL": "SQLAlchemy URL (default sqlite:///DATA/central.db)",
    "LICENTIA_ADMIN_KEY": "admin API key (default: generated into DATA/admin.key)",
    "LICENTIA_MASTER_KEY": "32-byte master key, hex or base64 (default: DATA/master.key)",
    "LICENTIA_ATTEMPT_WINDOW": "seconds over which failed attempts are counted (default 600)",
    "LICENTIA_ATTEMPTS_PER_ADDRESS": "failed attempts allowed per client address in the window (default 20)",
    "LICENTIA_ATTEMPTS_PER_TICKET": "failed attempts allowed per ticket in the window (default 10)",
    "LICENTIA_DB_POOL_SIZE": "database connection pool size (default 10)",
    "LICENTIA_PROTOCOL_THREADS": "PostgreSQL: threads per worker for the activation protocol (default 2); "
    "0 runs it on the event loop, faster when the database is on the same host",
}


@dataclass(frozen=True)
class Settings:
    data_dir: Path = field(default_factory=lambda: Path(".licentia"))
    database_url: str | None = None  # None: sqlite:///DATA/central.db
    admin_key: str | None = None  # None: DATA/admin.key (made on first start)
    master_key: str | None = None  # None: DATA/master.key (made on first start)
    attempt_window: int = 600
    attempts_per_address: int = 20
    attempts_per_ticket: int = 10
    pool_size: int = 10
    protocol_threads: int = 2  # PostgreSQL only; 0: on the event loop (SQLite always is)

    @property
    def db_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'central.db').resolve()}"

    @property
    def admin_key_file(self) -> Path:
        return self.data_dir / "admin.key"

    @property
    def master_key_file(self) -> Path:
        return self.data_dir / "master.key"

    def with_changes(self, **changes: object) -> Settings:
        return replace(self, **changes)  # type: ignore[arg-type]

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, *, data_dir: str | Path | None = None) -> Settings:
        env = os.environ if environ is None else environ
        data = Path(data_dir) if data_dir else Path(env.get("LICENTIA_DATA") or ".licentia")

        def number(name: str, default: int, minimum: int = 1) -> int:
            raw = env.get(name)
            if raw is None or raw == "":
                return default
            try:
                value = int(raw)
            except ValueError:
                raise SettingsError(f"{name} must be a whole number, not {raw!r}") from None
            if value < minimum:
                raise SettingsError(f"{name} must be at least {minimum}")
            return value

        return cls(
            data_dir=data,
            database_url=env.get("LICENTIA_DATABASE_URL") or None,
            admin_key=env.get("LICENTIA_ADMIN_KEY") or None,
            master_key=env.get("LICENTIA_MASTER_KEY") or None,
            attempt_window=number("LICENTIA_ATTEMPT_WINDOW", 600),
            attempts_per_address=number("LICENTIA_ATTEMPTS_PER_ADDRESS", 20),
            attempts_per_ticket=number("LICENTIA_ATTEMPTS_PER_TICKET", 10),
            pool_size=number("LICENTIA_DB_POOL_SIZE", 10),
            protocol_threads=number("LICENTIA_PROTOCOL_THREADS", 2, minimum=0),
        )
