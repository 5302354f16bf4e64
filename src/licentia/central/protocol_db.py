"""The activation protocol's way to the database: its statements, written with
SQLAlchemy Core (``services/_protocol_sql``), compiled once per dialect and run on the
driver's own connection (sqlite3 or psycopg) in a transaction this module begins and
commits. No Session, no ORM unit of work and no per-statement execution context: an
activation runs about six statements, and SQLAlchemy's path around each one cost
several times what the database spends on it.

What SQLAlchemy would do is kept:

- values pass through the column types' own bind and result processors (UUIDs as 32
  hex digits and JSON as text on SQLite; natively on PostgreSQL);
- connections come from the engine's pool, with its connect-time settings (WAL,
  foreign keys, busy timeout);
- a write transaction on SQLite starts with ``BEGIN IMMEDIATE`` behind the process's
  write lock, like ``db.write_tx``; psycopg begins one with the first statement;
- driver errors become SQLAlchemy's ``DBAPIError`` classes, so that ``run`` retries
  exactly what ``db.run_write`` retries (a lost race, a deadlock, a locked database, a
  dropped connection) and ``db.translate`` names what is left; a dropped connection
  is taken out of the pool with every connection as old as it, as SQLAlchemy does.
"""

from __future__ import annotations

import threading
import weakref
from collections import namedtuple
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql.dml import Insert

from .db import _WRITE_LOCKS, retried

if TYPE_CHECKING:
    from sqlalchemy.engine.interfaces import DBAPICursor
    from sqlalchemy.pool import PoolProxiedConnection
    from sqlalchemy.sql.compiler import SQLCompiler
    from sqlalchemy.sql.expression import Executable

T = TypeVar("T")
Processor = Callable[[Any], Any]
#: A result row: a named tuple of the statement's columns (``row.serial``, ``row[0]``).
Row = Any


class Compiled:
    """One statement compiled for one dialect and one set of parameter names."""

    __slots__ = ("sql", "names", "fixed", "positional", "bind", "row", "result", "expanding")

    def __init__(self, stmt: Executable, params: Mapping[str, Any], engine: Engine):
        dialect = engine.dialect
        # INSERT and UPDATE: the columns set are the parameters given (SQLAlchemy's
        # executemany form), so one statement serves every set of columns
        column_keys = list(params) if getattr(stmt, "is_dml", False) else None
        if isinstance(stmt, Insert):
            # no implicit RETURNING of the new row's key: a result nobody reads would stay
            # queued in psycopg's pipeline and come out of the next statement's fetch
            # (explicit .returning() is kept)
            stmt = stmt.inline()
        compiled: SQLCompiler = stmt.compile(dialect=dialect, column_keys=column_keys)  # type: ignore[attr-defined]  # every Core statement compiles
        self.sql = compiled.string
        self.positional = compiled.positiontup is not None
        #: parameter names in statement order (positional drivers) or as named
        self.names = tuple(compiled.positiontup or compiled.bind_names.values())
        self.fixed: dict[str, Any] = {}  # values the statement carries itself, processed
        self.bind: list[tuple[str, Processor]] = []  # parameters whose type converts them
        expanding = False
        for bind, name in compiled.bind_names.items():
            proc = bind.type.dialect_impl(dialect).bind_processor(dialect)
            expanding = expanding or bind.expanding
            if name in params:
                # a parameter the statement uses twice is converted once
                if proc is not None and all(name != seen for seen, _ in self.bind):
                    self.bind.append((name, proc))
            elif bind.callable is None and bind.value is not None:
                self.fixed[name] = bind.value if proc is None else proc(bind.value)
            else:
                raise TypeError(f"no value for the parameter {name!r} of: {compiled.string}")
        #: statements with a list parameter (IN) are expanded for each call
        self.expanding = compiled if expanding else None
        columns = stmt.exported_columns  # type: ignore[attr-defined]  # selects, and DML with RETURNING
        self.row: Any = namedtuple("Row", list(columns.keys()), rename=True) if len(columns) else None
        self.result: list[tuple[int, Processor]] = []
        for i, column in enumerate(columns):
            proc = column.type.dialect_impl(dialect).result_processor(dialect, None)
            if proc is not None:
                self.result.append((i, proc))

    def values(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """The parameters with the statement's own values, each as the driver takes it."""
        values = {**self.fixed, **params} if self.fixed else dict(params)
        for name, proc in self.bind:
            value = values[name]
            if value is not None:
                values[name] = [proc(v) for v in value] if self.expanding and isinstance(value, list) else proc(value)
        return values

    def args(self, params: Mapping[str, Any]) -> Sequence[Any] | dict[str, Any]:
        values = self.values(params)
        return [values[name] for name in self.names] if self.positional else values

    def make_row(self, raw: Sequence[Any]) -> Row:
        if not self.result:
            return self.row._make(raw)
        row = list(raw)
        for i, proc in self.result:
            if row[i] is not None:
                row[i] = proc(row[i])
        return self.row._make(row)


class Tx:
    """One transaction on a driver connection: runs the protocol's Core statements."""

    def __init__(self, db: ProtocolDB, cursor: DBAPICursor):
        self._db = db
        self._cursor = cursor
        self.dialect = db.dialect

    def _run(self, stmt: Executable, params: Mapping[str, Any], cursor: DBAPICursor | None = None) -> Compiled:
        cur = self._cursor if cursor is None else cursor
        c = self._db.compiled(stmt, params)
        if c.expanding is None:
            cur.execute(c.sql, c.args(params))
            return c
        state = c.expanding.construct_expanded_state(c.values(params))  # one placeholder per list value
        args = state.parameters if state.positiontup is None else [state.parameters[n] for n in state.positiontup]
        cur.execute(state.statement, args)
        return c

    def execute(self, stmt: Executable, params: Mapping[str, Any]) -> None:
        """Run a statement whose result is not read.

        On PostgreSQL it runs on a cursor of its own: in psycopg's pipeline a result nobody
        reads stays queued on the cursor that ran it, and after a run of them the next
        statement's fetch on that cursor found one (an upload's rollup upserts did)."""
        if self._db.sqlite:
            self._run(stmt, params)
            return
        cursor = self._cursor.connection.cursor()
        try:
            self._run(stmt, params, cursor)
        finally:
            cursor.close()

    def execute_many(self, stmt: Executable, rows: Sequence[Mapping[str, Any]]) -> None:
        """Run one statement for each set of parameters (all with the same names).

        psycopg's pipeline keeps each row's result queued on the cursor that ran it, where
        the next statement's fetch would find them: it runs on a cursor of its own."""
        if not rows:
            return
        c = self._db.compiled(stmt, rows[0])
        args = [c.args(r) for r in rows]
        if self._db.sqlite:
            self._cursor.executemany(c.sql, args)  # type: ignore[arg-type]  # one style per dialect
            return
        cursor = self._cursor.connection.cursor()
        try:
            cursor.executemany(c.sql, args)
        finally:
            cursor.close()

    def first(self, stmt: Executable, params: Mapping[str, Any]) -> Row | None:
        c = self._run(stmt, params)
        raw = self._cursor.fetchone()
        return None if raw is None else c.make_row(raw)

    def one(self, stmt: Executable, params: Mapping[str, Any]) -> Row:
        row = self.first(stmt, params)
        if row is None:  # pragma: no cover - used for statements that always return one row
            raise LookupError("no row")
        return row

    def all(self, stmt: Executable, params: Mapping[str, Any]) -> list[Row]:
        c = self._run(stmt, params)
        return [c.make_row(raw) for raw in self._cursor.fetchall()]

    def scalar(self, stmt: Executable, params: Mapping[str, Any]) -> Any:
        row = self.first(stmt, params)
        return None if row is None else row[0]


class ProtocolDB:
    """The engine's connections, driven directly, for the protocol's transactions."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self.dialect = engine.dialect
        self.sqlite = engine.dialect.name == "sqlite"
        self._compiled: dict[tuple[int, tuple[str, ...]], Compiled] = {}
        self._statements: list[Executable] = []  # kept alive: their id() is in the keys above
        self._compile_lock = threading.Lock()
        self._error: type[Exception] = engine.dialect.loaded_dbapi.Error

    def compiled(self, stmt: Executable, params: Mapping[str, Any]) -> Compiled:
        key = (id(stmt), tuple(params))
        c = self._compiled.get(key)
        if c is None:
            with self._compile_lock:
                c = self._compiled.get(key)
                if c is None:
                    c = self._compiled[key] = Compiled(stmt, params, self.engine)
                    self._statements.append(stmt)
        return c

    def run(self, fn: Callable[[Tx], T], *, attempts: int = 5) -> T:
        """Run ``fn`` in a write transaction, again on a lost race (unique insert,
        deadlock, locked database) or a dropped connection, like ``db.run_write``."""
        return retried(lambda: self._once(fn), attempts)

    def _once(self, fn: Callable[[Tx], T]) -> T:
        with self.transaction() as tx:
            return fn(tx)

    @contextmanager
    def transaction(self, *, write: bool = True) -> Iterator[Tx]:
        """One transaction (no retry: ``run`` retries); committed when the block ends, rolled
        back when it raises. On SQLite a write transaction is ``BEGIN IMMEDIATE`` behind the
        process's write lock, a read one a plain ``BEGIN``."""
        lock = _WRITE_LOCKS.get(self.engine) if write else None
        serialized: AbstractContextManager[Any] = lock if lock is not None else nullcontext()
        with serialized:
            try:
                conn = self.engine.raw_connection()
            except self._error as exc:
                raise self._wrapped(None, exc) from exc
            try:
                with self._in_transaction(conn, write) as tx:
                    yield tx
            finally:
                conn.close()  # back to the pool (rolled back there if still open)

    @contextmanager
    def _in_transaction(self, conn: PoolProxiedConnection, write: bool) -> Iterator[Tx]:
        cursor = conn.cursor()
        try:
            if self.sqlite:
                cursor.execute("BEGIN IMMEDIATE" if write else "BEGIN")
                yield Tx(self, cursor)
                conn.commit()
                return
            # psycopg: pipeline mode. BEGIN goes with the first statement, and the writes
            # whose results are not read go to the server together with COMMIT: an
            # activation is four round trips instead of nine.
            driver = conn.driver_connection
            assert driver is not None  # noqa: S101 - a checked-out connection has its driver's
            with driver.pipeline():
                yield Tx(self, cursor)
                conn.commit()
        except self._error as exc:
            raise self._wrapped(conn, exc) from exc
        except BaseException:
            _rollback(conn)
            raise
        finally:
            cursor.close()

    def _wrapped(self, conn: PoolProxiedConnection | None, exc: Exception) -> DBAPIError:
        """A driver error as SQLAlchemy's class for it, the transaction rolled back."""
        gone = self.dialect.is_disconnect(exc, None if conn is None else conn.dbapi_connection, None)  # type: ignore[arg-type]  # a driver error
        if conn is not None:
            if gone:  # SQLAlchemy's own reaction to a disconnect: this and every older pooled connection go
                self.engine.pool._invalidate(conn, exc)
            else:
                _rollback(conn)
        wrapped = DBAPIError.instance(None, None, exc, self._error, connection_invalidated=gone, dialect=self.dialect)
        assert isinstance(wrapped, DBAPIError)  # noqa: S101 - a driver error always becomes one
        return wrapped


def _rollback(conn: PoolProxiedConnection) -> None:
    try:
        conn.rollback()
    except Exception:  # noqa: BLE001 - the connection is unusable: the pool replaces it
        conn.invalidate()


_PROTOCOLS: weakref.WeakKeyDictionary[Engine, ProtocolDB] = weakref.WeakKeyDictionary()
_PROTOCOLS_LOCK = threading.Lock()


def protocol_for(engine: Engine) -> ProtocolDB:
    """The activation protocol's way in to ``engine``: its statements on the driver
    connection, compiled once per engine."""
    found = _PROTOCOLS.get(engine)
    if found is None:
        with _PROTOCOLS_LOCK:
            found = _PROTOCOLS.get(engine)
            if found is None:
                found = _PROTOCOLS[engine] = ProtocolDB(engine)
    return found
