"""Where seats and usage events are kept: an interface and its SQLite implementation.

The engine runs every change as one transaction through ``SeatStore.transaction()``;
a transaction is committed before the engine answers, so an acknowledged lease or
usage event survives a crash of the process (``kill -9``). Central will implement the
same interface on its own database for cloud containers (rows locked per license).

SQLite: one file in the server's data directory, WAL journal, ``BEGIN IMMEDIATE``
transactions (one writer at a time, readers never blocked). ``synchronous=NORMAL``
keeps every committed transaction across a process crash; ``durability="full"``
(``synchronous=FULL``) also across a power loss, at the cost of an fsync per commit.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

from .model import ACTIVE, LINGERING, Lease

SCHEMA_VERSION = "1"


class SeatTx(Protocol):
    """What the engine does inside one transaction."""

    def get_meta(self, key: str) -> str | None: ...
    def set_meta(self, key: str, value: str) -> None: ...
    def lease(self, lease_id: str) -> Lease | None: ...
    def lease_by_client(self, client_lease_id: str) -> Lease | None: ...
    def live_leases(self, license_keys: Sequence[str], now: int) -> list[Lease]: ...
    def count_seats(self, license_key: str, now: int) -> int: ...
    def seat_live(self, license_key: str, seat: str, now: int) -> bool: ...
    def on_machine(self, license_key: str, machine: str, now: int, other_than: str, *, mode: str | None) -> bool: ...
    def lingering_of(self, license_key: str, user: str, machine: str, now: int) -> Lease | None: ...
    def on_grace_of(self, license_key: str, user: str, machine: str, mode: str, now: int) -> Lease | None: ...
    def borrowed_by(self, license_key: str, serial: str, now: int) -> list[Lease]: ...
    def count_borrowed(self, license_keys: Sequence[str], now: int) -> int: ...
    def all_live(self, now: int) -> list[Lease]: ...
    def due(self, now: int, limit: int) -> list[Lease]: ...
    def insert(self, lease: Lease) -> None: ...
    def save(self, lease: Lease) -> None: ...
    def last_event(self) -> tuple[int, str] | None: ...
    def append_event(
        self, seq: int, time: int, kind: str, lease_id: str | None, access_time: int | None, body: str, digest: str
    ) -> None: ...
    def events(self, after_seq: int, limit: int) -> list[tuple[int, int, str, str]]: ...
    def events_between(self, start: int, end: int, kinds: Sequence[str]) -> list[str]: ...
    def sessions_between(self, start: int, end: int) -> list[str]: ...
    def final_events(self, lease_ids: Sequence[str]) -> list[str]: ...
    def last_seq_before(self, time: int) -> int | None: ...
    def event_hash(self, seq: int) -> str | None: ...
    def delete_events_through(self, seq: int) -> int: ...
    def savepoint(self) -> contextlib.AbstractContextManager[None]: ...


class SeatStore(Protocol):
    def transaction(self) -> contextlib.AbstractContextManager[SeatTx]: ...
    def snapshot(self) -> contextlib.AbstractContextManager[SeatTx]: ...
    def close(self) -> None: ...


_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS leases (
    id TEXT PRIMARY KEY,
    client_lease_id TEXT NOT NULL,
    license_key TEXT NOT NULL,
    firm_code INTEGER NOT NULL,
    product_code INTEGER NOT NULL,
    license_id INTEGER NOT NULL,
    feature_code INTEGER NOT NULL,
    feature_map INTEGER NOT NULL,
    ticket TEXT,
    mode TEXT NOT NULL,
    seat TEXT NOT NULL,
    user TEXT NOT NULL,
    host TEXT NOT NULL,
    ip TEXT NOT NULL,
    groups TEXT NOT NULL,
    pid INTEGER NOT NULL,
    access_time INTEGER NOT NULL,
    renewed INTEGER NOT NULL,
    expires INTEGER NOT NULL,
    state TEXT NOT NULL,
    end_time INTEGER,
    linger_until INTEGER,
    live_until INTEGER NOT NULL,
    borrower TEXT,
    first_use INTEGER,
    holder TEXT,
    proof_counter INTEGER NOT NULL DEFAULT 0,
    machine TEXT,
    grace_until INTEGER
);
CREATE INDEX IF NOT EXISTS leases_live ON leases (license_key, live_until, seat, mode);
CREATE INDEX IF NOT EXISTS leases_client ON leases (client_lease_id, access_time);
CREATE INDEX IF NOT EXISTS leases_until ON leases (live_until);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY,
    time INTEGER NOT NULL,
    kind TEXT NOT NULL,
    lease_id TEXT,
    access_time INTEGER,
    body TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_time ON events (time);
CREATE INDEX IF NOT EXISTS events_lease ON events (lease_id);
"""

_COLUMNS = (
    "id, client_lease_id, license_key, firm_code, product_code, license_id, feature_code, feature_map, ticket, "
    "mode, seat, user, host, ip, groups, pid, access_time, renewed, expires, state, end_time, linger_until, "
    "borrower, first_use, holder, proof_counter, machine, grace_until"
)
#: queries built from the column list: fixed text, values are always bound as ? parameters
_SELECT_LEASES = f"SELECT {_COLUMNS} FROM leases"  # noqa: S608 - fixed column list, no value in the text
_INSERT_LEASE = f"INSERT INTO leases ({_COLUMNS}, live_until) VALUES ({','.join('?' * 29)})"  # noqa: S608 - as above
#: columns added after the first release: (name, definition), added to older files on open
_ADDED = (
    ("holder", "TEXT"),
    ("proof_counter", "INTEGER NOT NULL DEFAULT 0"),
    ("machine", "TEXT"),
    ("grace_until", "INTEGER"),
)


def _lease(row: tuple[Any, ...]) -> Lease:
    (
        lid,
        cid,
        key,
        firm,
        product,
        license_id,
        feature,
        fmap,
        ticket,
        mode,
        seat,
        user,
        host,
        ip,
        groups,
        pid,
        access,
        renewed,
        expires,
        state,
        end,
        linger,
        borrower,
        first_use,
        holder,
        counter,
        machine,
        grace,
    ) = row
    return Lease(
        id=lid,
        client_lease_id=cid,
        license_key=key,
        firm_code=firm,
        product_code=product,
        license_id=license_id,
        feature_code=feature,
        feature_map=fmap,
        ticket=ticket,
        mode=mode,
        seat=seat,
        user=user,
        host=host,
        ip=ip,
        groups=tuple(g for g in groups.split("\n") if g),
        pid=pid,
        access_time=access,
        renewed=renewed,
        expires=expires,
        state=state,
        end_time=end,
        linger_until=linger,
        borrower=json.loads(borrower) if borrower else None,
        first_use=first_use,
        holder=holder,
        proof_counter=counter,
        machine=machine,
        grace_until=grace,
    )


class _SqliteTx:
    def __init__(self, conn: sqlite3.Connection):
        self.c = conn

    def get_meta(self, key: str) -> str | None:
        row = self.c.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else row[0]

    def set_meta(self, key: str, value: str) -> None:
        self.c.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    def lease(self, lease_id: str) -> Lease | None:
        row = self.c.execute(_SELECT_LEASES + " WHERE id = ?", (lease_id,)).fetchone()
        return None if row is None else _lease(row)

    def lease_by_client(self, client_lease_id: str) -> Lease | None:
        row = self.c.execute(
            _SELECT_LEASES + " WHERE client_lease_id = ? ORDER BY access_time DESC, rowid DESC LIMIT 1",
            (client_lease_id,),
        ).fetchone()
        return None if row is None else _lease(row)

    def live_leases(self, license_keys: Sequence[str], now: int) -> list[Lease]:
        if not license_keys:
            return []
        marks = ",".join("?" * len(license_keys))
        rows = self.c.execute(
            _SELECT_LEASES + f" WHERE license_key IN ({marks}) AND live_until > ?", (*license_keys, now)
        ).fetchall()
        return [_lease(r) for r in rows]

    def count_seats(self, license_key: str, now: int) -> int:
        row = self.c.execute(
            "SELECT COUNT(DISTINCT seat) FROM leases WHERE license_key = ? AND live_until > ? AND mode != 'nolimit'",
            (license_key, now),
        ).fetchone()
        return int(row[0])

    def seat_live(self, license_key: str, seat: str, now: int) -> bool:
        row = self.c.execute(
            "SELECT 1 FROM leases INDEXED BY leases_live WHERE license_key = ? AND live_until > ? AND seat = ? LIMIT 1",
            (license_key, now, seat),
        ).fetchone()
        return row is not None

    def on_machine(self, license_key: str, machine: str, now: int, other_than: str, *, mode: str | None) -> bool:
        """Whether another client holds an active lease of the license on the proven
        ``machine`` (of ``mode``, or of any mode but borrow)."""
        if mode is not None:
            row = self.c.execute(
                "SELECT 1 FROM leases WHERE license_key = ? AND machine = ? AND mode = ? AND live_until > ? "
                "AND state = ? AND expires > ? AND client_lease_id != ? LIMIT 1",
                (license_key, machine, mode, now, ACTIVE, now, other_than),
            ).fetchone()
        else:
            row = self.c.execute(
                "SELECT 1 FROM leases WHERE license_key = ? AND machine = ? AND mode != 'borrow' AND live_until > ? "
                "AND state = ? AND expires > ? AND client_lease_id != ? LIMIT 1",
                (license_key, machine, now, ACTIVE, now, other_than),
            ).fetchone()
        return row is not None

    def lingering_of(self, license_key: str, user: str, machine: str, now: int) -> Lease | None:
        row = self.c.execute(
            _SELECT_LEASES + " WHERE license_key = ? AND machine = ? AND mode = 'user' AND state = ? "
            "AND live_until > ? AND user = ? LIMIT 1",
            (license_key, machine, LINGERING, now, user),
        ).fetchone()
        return None if row is None else _lease(row)

    def on_grace_of(self, license_key: str, user: str, machine: str, mode: str, now: int) -> Lease | None:
        """A lease of ``user`` on the proven ``machine`` that only its grace keeps counted (its
        process crashed or was released without a receipt): a new process there takes it over."""
        row = self.c.execute(
            _SELECT_LEASES + " WHERE license_key = ? AND machine = ? AND mode = ? AND user = ? "
            "AND live_until > ? AND grace_until > ? AND (state = 'grace' OR (state = ? AND expires <= ?)) "
            "ORDER BY grace_until DESC LIMIT 1",
            (license_key, machine, mode, user, now, now, ACTIVE, now),
        ).fetchone()
        return None if row is None else _lease(row)

    def borrowed_by(self, license_key: str, serial: str, now: int) -> list[Lease]:
        """The live borrows of the license that name the container serial ``serial``."""
        rows = self.c.execute(
            _SELECT_LEASES + " WHERE license_key = ? AND live_until > ? AND mode = 'borrow'",
            (license_key, now),
        ).fetchall()
        return [lease for lease in map(_lease, rows) if (lease.borrower or {}).get("serial") == serial]

    def count_borrowed(self, license_keys: Sequence[str], now: int) -> int:
        if not license_keys:
            return 0
        marks = ",".join("?" * len(license_keys))
        row = self.c.execute(
            f"SELECT COUNT(*) FROM leases WHERE license_key IN ({marks}) AND live_until > ? AND mode = 'borrow'",  # noqa: S608 - only ? marks are spliced in
            (*license_keys, now),
        ).fetchone()
        return int(row[0])

    def all_live(self, now: int) -> list[Lease]:
        rows = self.c.execute(_SELECT_LEASES + " WHERE live_until > ? ORDER BY access_time", (now,)).fetchall()
        return [_lease(r) for r in rows]

    def due(self, now: int, limit: int) -> list[Lease]:
        # live_until is 0 once a lease is over: (0, now] holds exactly the leases that ran out
        rows = self.c.execute(
            _SELECT_LEASES + " WHERE live_until > 0 AND live_until <= ? LIMIT ?", (now, limit)
        ).fetchall()
        return [_lease(r) for r in rows]

    def save(self, lease: Lease) -> None:
        """Store what changes over a lease's life (an UPDATE: the row keeps its place)."""
        self.c.execute(
            "UPDATE leases SET ip = ?, renewed = ?, expires = ?, state = ?, end_time = ?, linger_until = ?, "
            "live_until = ?, first_use = ?, proof_counter = ?, grace_until = ? WHERE id = ?",
            (
                lease.ip,
                lease.renewed,
                lease.expires,
                lease.state,
                lease.end_time,
                lease.linger_until,
                lease.live_until,
                lease.first_use,
                lease.proof_counter,
                lease.grace_until,
                lease.id,
            ),
        )

    def insert(self, lease: Lease) -> None:
        self.c.execute(
            _INSERT_LEASE,
            (
                lease.id,
                lease.client_lease_id,
                lease.license_key,
                lease.firm_code,
                lease.product_code,
                lease.license_id,
                lease.feature_code,
                lease.feature_map,
                lease.ticket,
                lease.mode,
                lease.seat,
                lease.user,
                lease.host,
                lease.ip,
                "\n".join(lease.groups),
                lease.pid,
                lease.access_time,
                lease.renewed,
                lease.expires,
                lease.state,
                lease.end_time,
                lease.linger_until,
                json.dumps(lease.borrower, sort_keys=True) if lease.borrower else None,
                lease.first_use,
                lease.holder,
                lease.proof_counter,
                lease.machine,
                lease.grace_until,
                lease.live_until,
            ),
        )

    def last_event(self) -> tuple[int, str] | None:
        row = self.c.execute("SELECT seq, hash FROM events ORDER BY seq DESC LIMIT 1").fetchone()
        return None if row is None else (int(row[0]), str(row[1]))

    def append_event(
        self, seq: int, time: int, kind: str, lease_id: str | None, access_time: int | None, body: str, digest: str
    ) -> None:
        self.c.execute(
            "INSERT INTO events (seq, time, kind, lease_id, access_time, body, hash) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (seq, time, kind, lease_id, access_time, body, digest),
        )

    def events(self, after_seq: int, limit: int) -> list[tuple[int, int, str, str]]:
        return self.c.execute(
            "SELECT seq, time, body, hash FROM events WHERE seq > ? ORDER BY seq LIMIT ?", (after_seq, limit)
        ).fetchall()

    def events_between(self, start: int, end: int, kinds: Sequence[str]) -> list[str]:
        if kinds:
            marks = ",".join("?" * len(kinds))
            rows = self.c.execute(
                f"SELECT body FROM events WHERE time >= ? AND time < ? AND kind IN ({marks}) ORDER BY seq",  # noqa: S608 - only ? marks are spliced in
                (start, end, *kinds),
            ).fetchall()
        else:
            rows = self.c.execute(
                "SELECT body FROM events WHERE time >= ? AND time < ? ORDER BY seq", (start, end)
            ).fetchall()
        return [r[0] for r in rows]

    def sessions_between(self, start: int, end: int) -> list[str]:
        rows = self.c.execute(
            "SELECT body FROM events WHERE time >= ? AND time < ? AND kind IN ('access', 'borrow') ORDER BY seq",
            (start, end),
        ).fetchall()
        return [r[0] for r in rows]

    def final_events(self, lease_ids: Sequence[str]) -> list[str]:
        out: list[str] = []
        ids = list(lease_ids)
        for i in range(0, len(ids), 500):
            chunk = ids[i : i + 500]
            marks = ",".join("?" * len(chunk))
            out.extend(
                r[0]
                for r in self.c.execute(
                    f"SELECT body FROM events WHERE lease_id IN ({marks}) "  # noqa: S608 - only ? marks are spliced in
                    "AND kind IN ('release', 'expire', 'revoke', 'return') ORDER BY seq",
                    chunk,
                )
            )
        return out

    def last_seq_before(self, time: int) -> int | None:
        row = self.c.execute("SELECT MAX(seq) FROM events WHERE time < ?", (time,)).fetchone()
        return None if row is None or row[0] is None else int(row[0])

    def event_hash(self, seq: int) -> str | None:
        row = self.c.execute("SELECT hash FROM events WHERE seq = ?", (seq,)).fetchone()
        return None if row is None else str(row[0])

    def delete_events_through(self, seq: int) -> int:
        return self.c.execute("DELETE FROM events WHERE seq <= ?", (seq,)).rowcount

    @contextlib.contextmanager
    def savepoint(self) -> Iterator[None]:
        self.c.execute("SAVEPOINT op")
        try:
            yield
        except BaseException:
            self.c.execute("ROLLBACK TO op")
            self.c.execute("RELEASE op")
            raise
        self.c.execute("RELEASE op")


class SqliteSeatStore:
    """The SQLite seat store. One connection, used under a lock: the server calls it
    from its event loop; tools open their own store on the same file (WAL readers)."""

    def __init__(
        self,
        path: Path | str,
        *,
        durability: str = "process",
        readonly: bool = False,
    ):
        if durability not in ("process", "full"):
            raise ValueError("durability is 'process' or 'full'")
        self.path = Path(path)
        if not readonly:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            if not self.path.exists():
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600)
                os.close(fd)
        uri = f"file:{self.path}?mode=ro" if readonly else str(self.path)
        self._conn = sqlite3.connect(uri, uri=readonly, isolation_level=None, check_same_thread=False, timeout=30)
        self._lock = threading.RLock()
        c = self._conn
        if not readonly:
            c.execute("PRAGMA journal_mode=WAL")
            c.execute("PRAGMA synchronous=" + ("FULL" if durability == "full" else "NORMAL"))
            with self.transaction() as tx:
                for stmt in _SCHEMA.strip().split(";"):
                    if stmt.strip():
                        tx.c.execute(stmt)
                have = {row[1] for row in tx.c.execute("PRAGMA table_info(leases)")}
                for name, definition in _ADDED:
                    if name not in have:  # a file made by an older release
                        tx.c.execute(f"ALTER TABLE leases ADD COLUMN {name} {definition}")
                tx.c.execute(
                    "CREATE INDEX IF NOT EXISTS leases_machine ON leases "
                    "(license_key, machine, mode, state, live_until)"
                )
                tx.c.execute("DROP INDEX IF EXISTS leases_host")  # by reported names: no query uses it now
                if tx.get_meta("schema") is None:
                    tx.set_meta("schema", SCHEMA_VERSION)
        c.execute("PRAGMA busy_timeout=30000")

    @contextlib.contextmanager
    def transaction(self) -> Iterator[_SqliteTx]:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield _SqliteTx(self._conn)
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[_SqliteTx]:
        with self._lock:
            if self._conn.in_transaction:  # a read inside this thread's open transaction
                yield _SqliteTx(self._conn)
                return
            self._conn.execute("BEGIN")
            try:
                yield _SqliteTx(self._conn)
            finally:
                self._conn.execute("ROLLBACK")

    def close(self) -> None:
        with self._lock:
            self._conn.close()
