"""The seat engine's store in Central's database: the seats of cloud licenses.

``licentia.seats`` keeps a license server's leases and usage log behind one interface
(``seats.store.SeatTx``), in SQLite on the server. Cloud licenses use the same engine on
Central's own database (SQLite or PostgreSQL), so that any number of Central processes
serve them:

- every transaction is one of Central's write transactions (``BEGIN IMMEDIATE`` on SQLite,
  which serializes them as on a license server);
- on PostgreSQL, a transaction that counts or looks up a license's seats first locks that
  license's row in ``cloud_seat_locks`` (``SELECT ... FOR UPDATE``): two processes never
  both see the last seat free. A transaction that appends to the usage log first locks
  the log's ``chain`` row: the log stays one chain, its appends one at a time (each is a
  few statements; the seat checks of different licenses run side by side);
- the usage log, its head and anchor are the license server's (``seats.usage``);
- the statements are compiled once and run on the driver's connection
  (``protocol_db``, psycopg's pipeline on PostgreSQL), as the activation protocol's: a
  cloud lease is a few dozen short statements, and SQLAlchemy's path around each cost
  more than the database spends on it.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Sequence
from typing import Any

from sqlalchemy import bindparam, delete, func, insert, literal, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from ..core import errors as E
from ..seats.model import ACTIVE, LINGERING, Lease, Refusal
from .db import Database
from .models import CloudLease, CloudSeatEvent, CloudSeatLock, CloudSeatMeta, table_of
from .protocol_db import Row, Tx, protocol_for

_L, _E = table_of(CloudLease), table_of(CloudSeatEvent)
_M, _K = table_of(CloudSeatMeta), table_of(CloudSeatLock)

_COLUMNS = [c for c in _L.c if c.name != "n"]
CHAIN = "chain"  # the meta row an append to the usage log locks first
ANCHOR = "usage_anchor"  # the meta row of the log's anchor (read twice per append)
FINAL = ("release", "expire", "revoke", "return")
#: what a lease's save writes (the rest of its row never changes)
SAVED = (
    *("ip", "renewed", "expires", "state", "end_time", "linger_until", "live_until"),
    *("first_use", "proof_counter", "grace_until"),
)


PERSON = "person:"  # the machine of a user-licensing seat: a person (and a device it names)


def device_of(machine: str | None) -> str | None:
    """The device (its machine container's serial) of a lease's proven machine
    (``"<serial>:<key id>@<address>"``); None for none, and for a person's seat."""
    if not machine or machine.startswith(PERSON):
        return None
    return machine.partition(":")[0] or None


def _lease(m: Row) -> Lease:
    return Lease(
        id=m.id,
        client_lease_id=m.client_lease_id,
        license_key=m.license_key,
        firm_code=m.firm_code,
        product_code=m.product_code,
        license_id=m.license_id,
        feature_code=m.feature_code,
        feature_map=m.feature_map,
        ticket=m.ticket,
        mode=m.mode,
        seat=m.seat,
        user=m.user_name,
        host=m.host,
        ip=m.ip,
        groups=tuple(g for g in m.groups.split("\n") if g),
        pid=m.pid,
        access_time=m.access_time,
        renewed=m.renewed,
        expires=m.expires,
        state=m.state,
        end_time=m.end_time,
        linger_until=m.linger_until,
        borrower=json.loads(m.borrower) if m.borrower else None,
        first_use=m.first_use,
        holder=m.holder,
        proof_counter=m.proof_counter,
        machine=m.machine,
        grace_until=m.grace_until,
    )


# ---------------------------------------------------------------- the statements (compiled once)

_SELECT = select(*_COLUMNS)
_NOW: Any = bindparam("now")
_KEY: Any = bindparam("key")
_LIVE = _L.c.live_until > _NOW
Q_LEASE = _SELECT.where(_L.c.id == bindparam("lid"))
Q_BY_CLIENT = (
    _SELECT.where(_L.c.client_lease_id == bindparam("cid")).order_by(_L.c.access_time.desc(), _L.c.n.desc()).limit(1)
)
Q_LIVE = _SELECT.where(_L.c.license_key.in_(bindparam("keys", expanding=True)), _LIVE)
Q_COUNT_SEATS = select(func.count(_L.c.seat.distinct())).where(_L.c.license_key == _KEY, _LIVE, _L.c.mode != "nolimit")
Q_SEAT_LIVE = select(literal(1)).where(_L.c.license_key == _KEY, _LIVE, _L.c.seat == bindparam("seat")).limit(1)
_ON_MACHINE = (
    _L.c.license_key == _KEY,
    _L.c.machine == bindparam("machine"),
    _LIVE,
    _L.c.state == ACTIVE,
    _L.c.expires > _NOW,
    _L.c.client_lease_id != bindparam("other"),
)
Q_ON_MACHINE_MODE = select(literal(1)).where(*_ON_MACHINE, _L.c.mode == bindparam("mode")).limit(1)
Q_ON_MACHINE_ANY = select(literal(1)).where(*_ON_MACHINE, _L.c.mode != "borrow").limit(1)
Q_LINGERING = _SELECT.where(
    _L.c.license_key == _KEY,
    _L.c.machine == bindparam("machine"),
    _L.c.mode == "user",
    _L.c.state == LINGERING,
    _LIVE,
    _L.c.user_name == bindparam("user"),
).limit(1)
Q_ON_GRACE = (
    _SELECT.where(
        _L.c.license_key == _KEY,
        _L.c.machine == bindparam("machine"),
        _L.c.mode == bindparam("mode"),
        _L.c.user_name == bindparam("user"),
        _LIVE,
        _L.c.grace_until > _NOW,
        (_L.c.state == "grace") | ((_L.c.state == ACTIVE) & (_L.c.expires <= _NOW)),
    )
    .order_by(_L.c.grace_until.desc())
    .limit(1)
)
Q_BORROWS = _SELECT.where(_L.c.license_key == _KEY, _LIVE, _L.c.mode == "borrow")
Q_COUNT_BORROWED = select(func.count()).where(
    _L.c.license_key.in_(bindparam("keys", expanding=True)), _LIVE, _L.c.mode == "borrow"
)
Q_ALL_LIVE = _SELECT.where(_LIVE).order_by(_L.c.access_time, _L.c.n)
Q_DUE = _SELECT.where(_L.c.live_until > 0, _L.c.live_until <= _NOW).limit(bindparam("n"))
Q_DEVICE_LEASES = _SELECT.where(_L.c.device.in_(bindparam("devices", expanding=True)), _LIVE).order_by(_L.c.access_time)
Q_DEVICE_HELD = select(func.count()).where(_L.c.device == bindparam("device"), _LIVE, _L.c.expires > _NOW)
U_SAVE = update(_L).where(_L.c.id == bindparam("lid"))
I_LEASE = insert(_L)
Q_META = select(_M.c.value).where(_M.c.key == _KEY)
# upserts: the columns set are the parameters given (protocol_db compiles DML that way)
_META_PG = pg_insert(_M)
U_META_PG = _META_PG.on_conflict_do_update(index_elements=[_M.c.key], set_={"value": _META_PG.excluded.value})
_META_SQLITE = sqlite_insert(_M)
U_META_SQLITE = _META_SQLITE.on_conflict_do_update(
    index_elements=[_M.c.key], set_={"value": _META_SQLITE.excluded.value}
)
# a row lock in one statement: the row made on first use, locked either way (an upsert
# that updates locks the row it finds, as SELECT ... FOR UPDATE would)
_LOCK = pg_insert(_K)
L_LICENSE = _LOCK.on_conflict_do_update(
    index_elements=[_K.c.license_key], set_={"license_key": _LOCK.excluded.license_key}
)
L_CHAIN = U_META_PG
Q_LAST_EVENT = select(_E.c.seq, _E.c.hash).order_by(_E.c.seq.desc()).limit(1)
I_EVENT = insert(_E)
Q_EVENTS = (
    select(_E.c.seq, _E.c.time, _E.c.body, _E.c.hash)
    .where(_E.c.seq > bindparam("after"))
    .order_by(_E.c.seq)
    .limit(bindparam("n"))
)
_BETWEEN = (_E.c.time >= bindparam("start"), _E.c.time < bindparam("end"))
Q_EVENTS_BETWEEN = select(_E.c.body).where(*_BETWEEN).order_by(_E.c.seq)
Q_EVENTS_BETWEEN_OF = (
    select(_E.c.body).where(*_BETWEEN, _E.c.kind.in_(bindparam("kinds", expanding=True))).order_by(_E.c.seq)
)
Q_FINAL = (
    select(_E.c.body)
    .where(_E.c.lease_id.in_(bindparam("ids", expanding=True)), _E.c.kind.in_(FINAL))
    .order_by(_E.c.seq)
)
Q_LAST_SEQ_BEFORE = select(func.max(_E.c.seq)).where(_E.c.time < bindparam("time"))
Q_EVENT_HASH = select(_E.c.hash).where(_E.c.seq == bindparam("seq"))
Q_COUNT_THROUGH = select(func.count()).where(_E.c.seq <= bindparam("seq"))
D_EVENTS_THROUGH = delete(_E).where(_E.c.seq <= bindparam("seq"))


def _row(lease: Lease) -> dict[str, Any]:
    """A lease's row (its ``device`` from the machine it proved)."""
    return {
        "id": lease.id,
        "client_lease_id": lease.client_lease_id,
        "license_key": lease.license_key,
        "firm_code": lease.firm_code,
        "product_code": lease.product_code,
        "license_id": lease.license_id,
        "feature_code": lease.feature_code,
        "feature_map": lease.feature_map,
        "ticket": lease.ticket,
        "mode": lease.mode,
        "seat": lease.seat,
        "user_name": lease.user,
        "host": lease.host,
        "ip": lease.ip,
        "groups": "\n".join(lease.groups),
        "pid": lease.pid,
        "access_time": lease.access_time,
        "renewed": lease.renewed,
        "expires": lease.expires,
        "state": lease.state,
        "end_time": lease.end_time,
        "linger_until": lease.linger_until,
        "live_until": lease.live_until,
        "borrower": json.dumps(lease.borrower, sort_keys=True) if lease.borrower else None,
        "first_use": lease.first_use,
        "holder": lease.holder,
        "proof_counter": lease.proof_counter,
        "machine": lease.machine,
        "grace_until": lease.grace_until,
        "device": device_of(lease.machine),
    }


class CentralSeatTx:
    """``seats.store.SeatTx`` on one of Central's transactions."""

    def __init__(self, tx: Tx, *, write: bool, per_device: int | None = None):
        self.tx = tx
        self.write = write
        self.per_device = per_device
        self.pg = tx.dialect.name == "postgresql"
        self._locked: set[str] = set()
        self._chain_locked = False
        self._meta: dict[str, str | None] = {}

    # ------------------------------------------------------------ locks (PostgreSQL)

    def _lock(self, license_keys: Sequence[str]) -> None:
        """Lock the licenses' rows (made on first use), in one order: no deadlock."""
        if not (self.pg and self.write):
            return
        for key in sorted(set(license_keys) - self._locked):
            self.tx.execute(L_LICENSE, {"license_key": key})
            self._locked.add(key)

    def _lock_chain(self) -> None:
        if not (self.pg and self.write) or self._chain_locked:
            return
        self.tx.execute(L_CHAIN, {"key": CHAIN, "value": ""})
        self._chain_locked = True

    # ------------------------------------------------------------ meta

    def get_meta(self, key: str) -> str | None:
        if key in self._meta:
            return self._meta[key]
        value: str | None = self.tx.scalar(Q_META, {"key": key})
        if key == ANCHOR:
            self._meta[key] = value  # read twice per append; set only by record_anchor, through set_meta
        return value

    def set_meta(self, key: str, value: str) -> None:
        self.tx.execute(U_META_PG if self.pg else U_META_SQLITE, {"key": key, "value": value})
        self._meta.pop(key, None)

    # ------------------------------------------------------------ leases

    def _one(self, stmt: Any, params: dict[str, Any]) -> Lease | None:
        row = self.tx.first(stmt, params)
        if row is None:
            return None
        self._lock([row.license_key])
        return _lease(row)

    def lease(self, lease_id: str) -> Lease | None:
        return self._one(Q_LEASE, {"lid": lease_id})

    def lease_by_client(self, client_lease_id: str) -> Lease | None:
        return self._one(Q_BY_CLIENT, {"cid": client_lease_id})

    def live_leases(self, license_keys: Sequence[str], now: int) -> list[Lease]:
        if not license_keys:
            return []
        self._lock(license_keys)
        return [_lease(r) for r in self.tx.all(Q_LIVE, {"keys": list(license_keys), "now": now})]

    def live_device_leases(self, devices: Sequence[str], now: int) -> list[Lease]:
        """The live leases held by these devices (over every license)."""
        return [_lease(r) for r in self.tx.all(Q_DEVICE_LEASES, {"devices": list(devices), "now": now})]

    def count_seats(self, license_key: str, now: int) -> int:
        self._lock([license_key])
        return int(self.tx.scalar(Q_COUNT_SEATS, {"key": license_key, "now": now}))

    def seat_live(self, license_key: str, seat: str, now: int) -> bool:
        self._lock([license_key])
        return self.tx.first(Q_SEAT_LIVE, {"key": license_key, "now": now, "seat": seat}) is not None

    def on_machine(self, license_key: str, machine: str, now: int, other_than: str, *, mode: str | None) -> bool:
        self._lock([license_key])
        params = {"key": license_key, "machine": machine, "now": now, "other": other_than}
        if mode is None:
            return self.tx.first(Q_ON_MACHINE_ANY, params) is not None
        return self.tx.first(Q_ON_MACHINE_MODE, {**params, "mode": mode}) is not None

    def lingering_of(self, license_key: str, user: str, machine: str, now: int) -> Lease | None:
        self._lock([license_key])
        row = self.tx.first(Q_LINGERING, {"key": license_key, "machine": machine, "now": now, "user": user})
        return None if row is None else _lease(row)

    def on_grace_of(self, license_key: str, user: str, machine: str, mode: str, now: int) -> Lease | None:
        self._lock([license_key])
        params = {"key": license_key, "machine": machine, "mode": mode, "user": user, "now": now}
        row = self.tx.first(Q_ON_GRACE, params)
        return None if row is None else _lease(row)

    def borrowed_by(self, license_key: str, serial: str, now: int) -> list[Lease]:
        self._lock([license_key])
        leases = [_lease(row) for row in self.tx.all(Q_BORROWS, {"key": license_key, "now": now})]
        return [lease for lease in leases if (lease.borrower or {}).get("serial") == serial]

    def count_borrowed(self, license_keys: Sequence[str], now: int) -> int:
        if not license_keys:
            return 0
        self._lock(license_keys)
        return int(self.tx.scalar(Q_COUNT_BORROWED, {"keys": list(license_keys), "now": now}))

    def all_live(self, now: int) -> list[Lease]:
        return [_lease(r) for r in self.tx.all(Q_ALL_LIVE, {"now": now})]

    def due(self, now: int, limit: int) -> list[Lease]:
        rows = self.tx.all(Q_DUE, {"now": now, "n": limit})
        self._lock([r.license_key for r in rows])
        return [_lease(r) for r in rows]

    def save(self, lease: Lease) -> None:
        self._lock([lease.license_key])
        row = _row(lease)
        self.tx.execute(U_SAVE, {"lid": lease.id, **{k: row[k] for k in SAVED}})

    def _check_device(self, device: str, now: int) -> None:
        """A device holds at most ``per_device`` live leases (its lock row taken first)."""
        if self.per_device is None:
            return
        self._lock([f"device:{device}"])
        held = int(self.tx.scalar(Q_DEVICE_HELD, {"device": device, "now": now}))
        if held >= self.per_device:
            raise Refusal(
                E.AccessDenied,
                f"this device holds {held} cloud leases at once, the most allowed: end a program that uses one",
                f"device {device} holds {held} cloud leases (at most {self.per_device})",
            )

    def insert(self, lease: Lease) -> None:
        self._lock([lease.license_key])
        row = _row(lease)
        if row["device"] is not None:
            self._check_device(row["device"], lease.access_time)
        self.tx.execute(I_LEASE, row)

    # ------------------------------------------------------------ the usage log

    def last_event(self) -> tuple[int, str] | None:
        self._lock_chain()
        row = self.tx.first(Q_LAST_EVENT, {})
        return None if row is None else (int(row.seq), str(row.hash))

    def append_event(
        self, seq: int, time: int, kind: str, lease_id: str | None, access_time: int | None, body: str, digest: str
    ) -> None:
        self._lock_chain()
        self.tx.execute(
            I_EVENT,
            {
                "seq": seq,
                "time": time,
                "kind": kind,
                "lease_id": lease_id,
                "access_time": access_time,
                "body": body,
                "hash": digest,
            },
        )

    def events(self, after_seq: int, limit: int) -> list[tuple[int, int, str, str]]:
        return [(r.seq, r.time, r.body, r.hash) for r in self.tx.all(Q_EVENTS, {"after": after_seq, "n": limit})]

    def events_between(self, start: int, end: int, kinds: Sequence[str]) -> list[str]:
        if kinds:
            rows = self.tx.all(Q_EVENTS_BETWEEN_OF, {"start": start, "end": end, "kinds": list(kinds)})
        else:
            rows = self.tx.all(Q_EVENTS_BETWEEN, {"start": start, "end": end})
        return [r.body for r in rows]

    def sessions_between(self, start: int, end: int) -> list[str]:
        return self.events_between(start, end, ("access", "borrow"))

    def final_events(self, lease_ids: Sequence[str]) -> list[str]:
        out: list[str] = []
        ids = list(lease_ids)
        for i in range(0, len(ids), 500):
            out.extend(r.body for r in self.tx.all(Q_FINAL, {"ids": ids[i : i + 500]}))
        return out

    def last_seq_before(self, time: int) -> int | None:
        value = self.tx.scalar(Q_LAST_SEQ_BEFORE, {"time": time})
        return None if value is None else int(value)

    def event_hash(self, seq: int) -> str | None:
        value = self.tx.scalar(Q_EVENT_HASH, {"seq": seq})
        return None if value is None else str(value)

    def delete_events_through(self, seq: int) -> int:
        self._lock_chain()
        count = int(self.tx.scalar(Q_COUNT_THROUGH, {"seq": seq}))
        self.tx.execute(D_EVENTS_THROUGH, {"seq": seq})
        return count

    @contextlib.contextmanager
    def savepoint(self) -> Iterator[None]:
        self.tx.execute(text("SAVEPOINT seat_op"), {})
        try:
            yield
        except BaseException:
            self.tx.execute(text("ROLLBACK TO SAVEPOINT seat_op"), {})
            raise
        self.tx.execute(text("RELEASE SAVEPOINT seat_op"), {})


class CentralSeatStore:
    """``seats.store.SeatStore`` on Central's database (any number of processes)."""

    def __init__(self, db: Database, *, per_device: int | None = None):
        self.db = db
        self.per_device = per_device  # live leases one device may hold (None: no limit)
        self.protocol = protocol_for(db.engine)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[CentralSeatTx]:
        with self.protocol.transaction() as tx:
            yield CentralSeatTx(tx, write=True, per_device=self.per_device)

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[CentralSeatTx]:
        with self.protocol.transaction(write=False) as tx:
            yield CentralSeatTx(tx, write=False)

    def close(self) -> None:
        """Nothing to close: the connections are the database's pool's."""
