"""Engines, sessions, transactions and migrations.

SQLite: WAL, foreign keys on, and SQLAlchemy's documented pysqlite recipe (the
driver's own BEGIN is switched off, SQLAlchemy emits BEGIN itself) so that every
write transaction starts with ``BEGIN IMMEDIATE`` and writers queue on the busy
timeout instead of failing half-way. Read transactions use a plain ``BEGIN``. A
``Database`` checkpoints the write-ahead log on a thread of its own (``Checkpointer``),
not inside the commits.

PostgreSQL (psycopg 3): READ COMMITTED plus ``SELECT ... FOR UPDATE`` on the rows a
write depends on (container slot, ticket, firm counter).

The one place where database errors become service errors: ``run_write`` and
``run_read`` run a transaction again on a lost race or a dropped connection, and
what still fails leaves as ``Conflict`` or ``Unavailable`` (``translate``). The
activation protocol's transactions (``protocol_db``, on the driver connection) are
retried and translated by the same rules.
"""

from __future__ import annotations

import functools
import logging
import threading
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.orm import Session

from ..core import errors

if TYPE_CHECKING:
    import sqlite3

    from alembic.config import Config
    from sqlalchemy.pool import ConnectionPoolEntry

log = logging.getLogger("licentia.central")
T = TypeVar("T")

_BEGIN_OPTION = "licentia_begin"
#: SQLite: writers of one process queue on a lock before BEGIN IMMEDIATE, so they
#: are woken as soon as the previous one commits (SQLite's own busy handler polls
#: with sleeps). Writers in other processes still queue on the database lock.
_WRITE_LOCKS: weakref.WeakKeyDictionary[Engine, threading.Lock] = weakref.WeakKeyDictionary()
MIGRATIONS = Path(__file__).resolve().parent / "migrations"
#: PostgreSQL: the advisory lock a migration holds for its transaction (migrations/env.py),
#: so that migrations started at the same time run one after the other
MIGRATION_LOCK = 0x6C6963656E74


def normalize_url(url: str) -> str:
    """Accept plain ``postgresql://`` URLs and use psycopg 3 for them."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


def make_engine(url: str, *, pool_size: int = 10, autocheckpoint: bool = True) -> Engine:
    """An engine with Central's settings. SQLite: ``autocheckpoint=False`` leaves copying
    the write-ahead log back into the database file to a ``Checkpointer``."""
    url = normalize_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url,
            connect_args={"timeout": 30, "check_same_thread": False},
            pool_size=pool_size,
            max_overflow=pool_size,
        )

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_connection: sqlite3.Connection, _record: ConnectionPoolEntry) -> None:
            dbapi_connection.isolation_level = None  # SQLAlchemy emits BEGIN (recipe)
            cur = dbapi_connection.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            if not autocheckpoint:
                cur.execute("PRAGMA wal_autocheckpoint=0")
            cur.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Connection) -> None:
            mode = conn.get_execution_options().get(_BEGIN_OPTION, "DEFERRED")
            conn.exec_driver_sql(f"BEGIN {mode}")

        _WRITE_LOCKS[engine] = threading.Lock()
        return engine
    # No ping on every checkout (a round trip per request): a connection the
    # server dropped is detected when used, invalidated, and the transaction run
    # again (run_write / run_read); pool_recycle retires idle connections early.
    return create_engine(url, pool_size=pool_size, max_overflow=pool_size, pool_recycle=1800)


class Checkpointer:
    """SQLite: copies the write-ahead log back into the database file every ``interval``
    seconds, on its own thread and connection. A commit then only appends to the log:
    no request waits for a checkpoint's writes and fsyncs, which SQLite otherwise runs
    inside the commit that fills the log past 1000 pages (the protocol runs on the event
    loop, so that commit would hold up every request). A PASSIVE checkpoint never waits
    for readers or writers; SQLite starts the log over once a checkpoint has copied it
    all. The last connection to close checkpoints too."""

    def __init__(self, path: str, interval: float = 0.5):
        self.path = path
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="central-checkpoint", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        import sqlite3

        conn = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
        try:
            while not self._stop.wait(self.interval):
                try:
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                except sqlite3.Error as exc:  # tried again at the next interval
                    log.warning("checkpoint of %s failed: %s", self.path, exc)
        finally:
            conn.close()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


class Database:
    def __init__(self, url: str, *, pool_size: int = 10):
        parsed = make_url(normalize_url(url))
        path = parsed.database if parsed.get_backend_name() == "sqlite" else None
        background = bool(path) and path != ":memory:"
        self.engine = make_engine(url, pool_size=pool_size, autocheckpoint=not background)
        self.checkpointer = Checkpointer(str(path)) if background else None

    @property
    def sqlite(self) -> bool:
        return is_sqlite(self.engine)

    def session(self) -> Session:
        return Session(self.engine, expire_on_commit=False, autoflush=True)

    def dispose(self) -> None:
        if self.checkpointer is not None:
            self.checkpointer.stop()
            self.checkpointer = None
        self.engine.dispose()


@contextmanager
def write_tx(session: Session) -> Iterator[Session]:
    """One write transaction: BEGIN IMMEDIATE on SQLite; commit on success."""
    bind = session.get_bind()
    lock = _WRITE_LOCKS.get(bind) if isinstance(bind, Engine) else None  # sessions here are bound to an engine
    if lock is None:
        with session.begin():
            yield session
        return
    with lock, session.begin():
        session.connection(execution_options={_BEGIN_OPTION: "IMMEDIATE"})
        yield session


@contextmanager
def read_tx(session: Session) -> Iterator[Session]:
    with session.begin():
        yield session


_RETRYABLE_PG = {"40001", "40P01"}  # serialization failure, deadlock


def _retryable(exc: DBAPIError) -> bool:
    if exc.connection_invalidated:
        return True  # the server dropped the connection: a fresh one from the pool
    if isinstance(exc, IntegrityError):
        return True  # a concurrent insert of the same unique row: run again, see it
    code = getattr(exc.orig, "sqlstate", None)
    if code in _RETRYABLE_PG:
        return True
    return isinstance(exc, OperationalError) and "locked" in str(exc.orig).lower()


def translate(exc: DBAPIError) -> errors.ServiceError:
    """The service error of a database error that outlived its retries."""
    if isinstance(exc, IntegrityError):
        return errors.Conflict("conflict", "The data changed at the same time. Try again.")
    return errors.Unavailable()


def retried(once: Callable[[], T], attempts: int, *, after_failure: Callable[[], object] | None = None) -> T:
    """Run the write transaction ``once`` again on a lost race (unique insert, deadlock,
    locked database) or a dropped connection; the last failure becomes a service error.
    ``after_failure`` runs after every failed attempt (a Session forgets its objects)."""
    for attempt in range(attempts):
        try:
            return once()
        except DBAPIError as exc:
            if after_failure is not None:
                after_failure()
            if not _retryable(exc):
                raise
            log.info("write transaction retried (%s): %s", attempt + 1, exc.orig)
            if attempt == attempts - 1:
                raise translate(exc) from None
    raise AssertionError("unreachable")


def run_write(session: Session, fn: Callable[[], T], *, attempts: int = 5) -> T:
    """Run ``fn`` in a write transaction, again on a lost race (unique insert, deadlock)."""

    def once() -> T:
        with write_tx(session):
            return fn()

    return retried(once, attempts, after_failure=session.expunge_all)


def run_read(session: Session, fn: Callable[[], T]) -> T:
    """Run ``fn`` in a read transaction, again once on a fresh connection if the server dropped it."""
    for attempt in range(2):
        try:
            with read_tx(session):
                return fn()
        except DBAPIError as exc:
            if not exc.connection_invalidated:
                raise
            if attempt:
                raise translate(exc) from None
        session.expunge_all()
    raise AssertionError("unreachable")


# ---------------------------------------------------------------- migrations


def alembic_config(connection: Connection | None = None) -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def migrate(engine: Engine, revision: str = "head") -> None:
    """Upgrade the schema to ``revision`` in one transaction. On PostgreSQL the transaction
    holds the advisory lock ``MIGRATION_LOCK`` first (migrations/env.py), on SQLite the
    database's write lock (BEGIN IMMEDIATE): migrations started together run one after the
    other, and the later one finds the schema already there."""
    from alembic import command

    with engine.execution_options(**{_BEGIN_OPTION: "IMMEDIATE"}).begin() as conn:
        command.upgrade(alembic_config(conn), revision)


def downgrade(engine: Engine, revision: str = "base") -> None:
    from alembic import command

    with engine.execution_options(**{_BEGIN_OPTION: "IMMEDIATE"}).begin() as conn:
        command.downgrade(alembic_config(conn), revision)


def current_revision(engine: Engine) -> str | None:
    from alembic.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


@functools.cache
def _script_revisions() -> tuple[str, frozenset[str]]:
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(alembic_config())
    head = script.get_current_head()
    if head is None:
        raise AssertionError("the migrations have no head")
    return head, frozenset(r.revision for r in script.walk_revisions())


def head_revision() -> str:
    """The newest schema revision this version of licentia knows: its migrations' head."""
    return _script_revisions()[0]


def schema_lag(revision: str | None) -> str | None:
    """Where a database at ``revision`` stands: None at the head, ``"behind"`` before it
    (or without a schema), ``"newer"`` at a revision this version does not know (a newer
    version migrated it)."""
    head, known = _script_revisions()
    if revision == head:
        return None
    return "behind" if revision is None or revision in known else "newer"


class SchemaNotCurrent(errors.SettingsError):
    """A start that does not migrate found the schema elsewhere than at the head."""


def require_head(engine: Engine) -> str:
    """The head revision, when the database is at it; else ``SchemaNotCurrent`` in one
    line saying what to do."""
    current = current_revision(engine)
    lag = schema_lag(current)
    head = head_revision()
    if lag is None:
        return head
    if lag == "newer":
        raise SchemaNotCurrent(
            f"the database's schema is at revision {current}, newer than this version of licentia knows "
            f"({head}): run the version that migrated it"
        )
    where = "has no schema yet" if current is None else f"is at schema revision {current}, not the newest {head}"
    raise SchemaNotCurrent(
        f"the database {where}, and this start does not migrate (--no-migrate or LICENTIA_MIGRATE=0): "
        "run licentia central migrate first"
    )


def schema_diffs(conn: Connection) -> list[Any]:
    """Where the database's schema and the models differ (alembic's comparison), leaving
    out what the usage store's monthly partitions add on PostgreSQL (central/partitions.py):
    the partitions themselves, and the partition key in its unique key."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from . import partitions
    from .models import Base

    def include(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
        return not (type_ == "table" and name is not None and partitions.is_partition(name))

    context = MigrationContext.configure(conn, opts={"include_object": include})
    diffs = list(compare_metadata(context, Base.metadata))
    if partitions.partitioned(conn):
        keyed = {"uq_usage_events_container_id"}
        diffs = [d for d in diffs if not (isinstance(d, tuple) and getattr(d[1], "name", None) in keyed)]
    return diffs
