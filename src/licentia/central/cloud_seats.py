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
- the usage log, its head and anchor are the license server's (``seats.usage``).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Sequence
from typing import Any

from sqlalchemy import delete, func, insert, literal, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection

from ..core import errors as E
from ..seats.model import ACTIVE, LINGERING, Lease, Refusal
from .db import Database, read_tx, write_tx
from .models import CloudLease, CloudSeatEvent, CloudSeatLock, CloudSeatMeta, table_of

_L, _E = table_of(CloudLease), table_of(CloudSeatEvent)
_M, _K = table_of(CloudSeatMeta), table_of(CloudSeatLock)

_COLUMNS = [c for c in _L.c if c.name != "n"]
CHAIN = "chain"  # the meta row an append to the usage log locks first
FINAL = ("release", "expire", "revoke", "return")


def device_of(machine: str | None) -> str | None:
    """The device (its machine container's serial) of a lease's proven machine
    (``"<serial>:<key id>@<address>"``)."""
    return machine.partition(":")[0] or None if machine else None


def _lease(row: Any) -> Lease:
    m = row._mapping
    return Lease(
        id=m["id"],
        client_lease_id=m["client_lease_id"],
        license_key=m["license_key"],
        firm_code=m["firm_code"],
        product_code=m["product_code"],
        license_id=m["license_id"],
        feature_code=m["feature_code"],
        feature_map=m["feature_map"],
        ticket=m["ticket"],
        mode=m["mode"],
        seat=m["seat"],
        user=m["user_name"],
        host=m["host"],
        ip=m["ip"],
        groups=tuple(g for g in m["groups"].split("\n") if g),
        pid=m["pid"],
        access_time=m["access_time"],
        renewed=m["renewed"],
        expires=m["expires"],
        state=m["state"],
        end_time=m["end_time"],
        linger_until=m["linger_until"],
        borrower=json.loads(m["borrower"]) if m["borrower"] else None,
        first_use=m["first_use"],
        holder=m["holder"],
        proof_counter=m["proof_counter"],
        machine=m["machine"],
        grace_until=m["grace_until"],
    )


_SELECT = select(*_COLUMNS)


class CentralSeatTx:
    """``seats.store.SeatTx`` on one of Central's transactions."""

    def __init__(self, conn: Connection, *, write: bool, per_device: int | None = None):
        self.c = conn
        self.write = write
        self.per_device = per_device
        self.pg = conn.dialect.name == "postgresql"
        self._locked: set[str] = set()
        self._chain_locked = False

    # ------------------------------------------------------------ locks (PostgreSQL)

    def _lock(self, license_keys: Sequence[str]) -> None:
        """Lock the licenses' rows (made on first use), in one order: no deadlock."""
        if not (self.pg and self.write):
            return
        todo = sorted(set(license_keys) - self._locked)
        if not todo:
            return
        self.c.execute(pg_insert(_K).values([{"license_key": k} for k in todo]).on_conflict_do_nothing())
        self.c.execute(select(_K.c.license_key).where(_K.c.license_key.in_(todo)).with_for_update())
        self._locked.update(todo)

    def _lock_chain(self) -> None:
        if not (self.pg and self.write) or self._chain_locked:
            return
        self.c.execute(pg_insert(_M).values(key=CHAIN, value="").on_conflict_do_nothing())
        self.c.execute(select(_M.c.key).where(_M.c.key == CHAIN).with_for_update())
        self._chain_locked = True

    # ------------------------------------------------------------ meta

    def get_meta(self, key: str) -> str | None:
        value: str | None = self.c.execute(select(_M.c.value).where(_M.c.key == key)).scalar()
        return value

    def set_meta(self, key: str, value: str) -> None:
        if self.pg:
            stmt: Any = pg_insert(_M).values(key=key, value=value)
        else:
            stmt = sqlite_insert(_M).values(key=key, value=value)
        self.c.execute(stmt.on_conflict_do_update(index_elements=[_M.c.key], set_={"value": value}))

    # ------------------------------------------------------------ leases

    def lease(self, lease_id: str) -> Lease | None:
        row = self.c.execute(_SELECT.where(_L.c.id == lease_id)).first()
        if row is not None:
            self._lock([row.license_key])
        return None if row is None else _lease(row)

    def lease_by_client(self, client_lease_id: str) -> Lease | None:
        row = self.c.execute(
            _SELECT.where(_L.c.client_lease_id == client_lease_id)
            .order_by(_L.c.access_time.desc(), _L.c.n.desc())
            .limit(1)
        ).first()
        if row is not None:
            self._lock([row.license_key])
        return None if row is None else _lease(row)

    def live_leases(self, license_keys: Sequence[str], now: int) -> list[Lease]:
        if not license_keys:
            return []
        self._lock(license_keys)
        rows = self.c.execute(_SELECT.where(_L.c.license_key.in_(list(license_keys)), _L.c.live_until > now))
        return [_lease(r) for r in rows]

    def count_seats(self, license_key: str, now: int) -> int:
        self._lock([license_key])
        return int(
            self.c.execute(
                select(func.count(_L.c.seat.distinct())).where(
                    _L.c.license_key == license_key, _L.c.live_until > now, _L.c.mode != "nolimit"
                )
            ).scalar_one()
        )

    def seat_live(self, license_key: str, seat: str, now: int) -> bool:
        self._lock([license_key])
        stmt = select(literal(1)).where(_L.c.license_key == license_key, _L.c.live_until > now, _L.c.seat == seat)
        return self.c.execute(stmt.limit(1)).first() is not None

    def on_machine(self, license_key: str, machine: str, now: int, other_than: str, *, mode: str | None) -> bool:
        self._lock([license_key])
        conds = [
            _L.c.license_key == license_key,
            _L.c.machine == machine,
            _L.c.mode == mode if mode is not None else _L.c.mode != "borrow",
            _L.c.live_until > now,
            _L.c.state == ACTIVE,
            _L.c.expires > now,
            _L.c.client_lease_id != other_than,
        ]
        return self.c.execute(select(literal(1)).where(*conds).limit(1)).first() is not None

    def lingering_of(self, license_key: str, user: str, machine: str, now: int) -> Lease | None:
        self._lock([license_key])
        row = self.c.execute(
            _SELECT.where(
                _L.c.license_key == license_key,
                _L.c.machine == machine,
                _L.c.mode == "user",
                _L.c.state == LINGERING,
                _L.c.live_until > now,
                _L.c.user_name == user,
            ).limit(1)
        ).first()
        return None if row is None else _lease(row)

    def on_grace_of(self, license_key: str, user: str, machine: str, mode: str, now: int) -> Lease | None:
        self._lock([license_key])
        row = self.c.execute(
            _SELECT.where(
                _L.c.license_key == license_key,
                _L.c.machine == machine,
                _L.c.mode == mode,
                _L.c.user_name == user,
                _L.c.live_until > now,
                _L.c.grace_until > now,
                (_L.c.state == "grace") | ((_L.c.state == ACTIVE) & (_L.c.expires <= now)),
            )
            .order_by(_L.c.grace_until.desc())
            .limit(1)
        ).first()
        return None if row is None else _lease(row)

    def borrowed_by(self, license_key: str, serial: str, now: int) -> Lease | None:
        self._lock([license_key])
        rows = self.c.execute(
            _SELECT.where(_L.c.license_key == license_key, _L.c.live_until > now, _L.c.mode == "borrow")
        )
        for row in rows:
            lease = _lease(row)
            if (lease.borrower or {}).get("serial") == serial:
                return lease
        return None

    def count_borrowed(self, license_keys: Sequence[str], now: int) -> int:
        if not license_keys:
            return 0
        self._lock(license_keys)
        stmt = select(func.count()).where(
            _L.c.license_key.in_(list(license_keys)), _L.c.live_until > now, _L.c.mode == "borrow"
        )
        return int(self.c.execute(stmt).scalar_one())

    def all_live(self, now: int) -> list[Lease]:
        rows = self.c.execute(_SELECT.where(_L.c.live_until > now).order_by(_L.c.access_time, _L.c.n))
        return [_lease(r) for r in rows]

    def due(self, now: int, limit: int) -> list[Lease]:
        rows = list(self.c.execute(_SELECT.where(_L.c.live_until > 0, _L.c.live_until <= now).limit(limit)))
        self._lock([r.license_key for r in rows])
        return [_lease(r) for r in rows]

    def save(self, lease: Lease) -> None:
        self._lock([lease.license_key])
        self.c.execute(
            update(_L)
            .where(_L.c.id == lease.id)
            .values(
                ip=lease.ip,
                renewed=lease.renewed,
                expires=lease.expires,
                state=lease.state,
                end_time=lease.end_time,
                linger_until=lease.linger_until,
                live_until=lease.live_until,
                first_use=lease.first_use,
                proof_counter=lease.proof_counter,
                grace_until=lease.grace_until,
            )
        )

    def live_device_leases(self, devices: Sequence[str], now: int) -> list[Lease]:
        """The live leases held by these devices (over every license)."""
        rows = self.c.execute(
            _SELECT.where(_L.c.device.in_(list(devices)), _L.c.live_until > now).order_by(_L.c.access_time)
        )
        return [_lease(r) for r in rows]

    def _check_device(self, device: str, now: int) -> None:
        """A device holds at most ``per_device`` live leases (its lock row taken first)."""
        if self.per_device is None:
            return
        self._lock([f"device:{device}"])
        held = self.c.execute(
            select(func.count()).where(_L.c.device == device, _L.c.live_until > now, _L.c.expires > now)
        ).scalar_one()
        if held >= self.per_device:
            raise Refusal(
                E.AccessDenied,
                f"this device holds {held} cloud leases at once, the most allowed: end a program that uses one",
                f"device {device} holds {held} cloud leases (at most {self.per_device})",
            )

    def insert(self, lease: Lease) -> None:
        self._lock([lease.license_key])
        device = device_of(lease.machine)
        if device is not None:
            self._check_device(device, lease.access_time)
        self.c.execute(
            insert(_L).values(
                id=lease.id,
                client_lease_id=lease.client_lease_id,
                license_key=lease.license_key,
                firm_code=lease.firm_code,
                product_code=lease.product_code,
                license_id=lease.license_id,
                feature_code=lease.feature_code,
                feature_map=lease.feature_map,
                ticket=lease.ticket,
                mode=lease.mode,
                seat=lease.seat,
                user_name=lease.user,
                host=lease.host,
                ip=lease.ip,
                groups="\n".join(lease.groups),
                pid=lease.pid,
                access_time=lease.access_time,
                renewed=lease.renewed,
                expires=lease.expires,
                state=lease.state,
                end_time=lease.end_time,
                linger_until=lease.linger_until,
                live_until=lease.live_until,
                borrower=json.dumps(lease.borrower, sort_keys=True) if lease.borrower else None,
                first_use=lease.first_use,
                holder=lease.holder,
                proof_counter=lease.proof_counter,
                machine=lease.machine,
                grace_until=lease.grace_until,
                device=device,
            )
        )

    # ------------------------------------------------------------ the usage log

    def last_event(self) -> tuple[int, str] | None:
        self._lock_chain()
        row = self.c.execute(select(_E.c.seq, _E.c.hash).order_by(_E.c.seq.desc()).limit(1)).first()
        return None if row is None else (int(row.seq), str(row.hash))

    def append_event(
        self, seq: int, time: int, kind: str, lease_id: str | None, access_time: int | None, body: str, digest: str
    ) -> None:
        self._lock_chain()
        self.c.execute(
            insert(_E).values(
                seq=seq, time=time, kind=kind, lease_id=lease_id, access_time=access_time, body=body, hash=digest
            )
        )

    def events(self, after_seq: int, limit: int) -> list[tuple[int, int, str, str]]:
        rows = self.c.execute(
            select(_E.c.seq, _E.c.time, _E.c.body, _E.c.hash)
            .where(_E.c.seq > after_seq)
            .order_by(_E.c.seq)
            .limit(limit)
        )
        return [(r.seq, r.time, r.body, r.hash) for r in rows]

    def events_between(self, start: int, end: int, kinds: Sequence[str]) -> list[str]:
        stmt = select(_E.c.body).where(_E.c.time >= start, _E.c.time < end)
        if kinds:
            stmt = stmt.where(_E.c.kind.in_(list(kinds)))
        return list(self.c.execute(stmt.order_by(_E.c.seq)).scalars())

    def sessions_between(self, start: int, end: int) -> list[str]:
        return self.events_between(start, end, ("access", "borrow"))

    def final_events(self, lease_ids: Sequence[str]) -> list[str]:
        out: list[str] = []
        ids = list(lease_ids)
        for i in range(0, len(ids), 500):
            stmt = select(_E.c.body).where(_E.c.lease_id.in_(ids[i : i + 500]), _E.c.kind.in_(FINAL)).order_by(_E.c.seq)
            out.extend(self.c.execute(stmt).scalars())
        return out

    def last_seq_before(self, time: int) -> int | None:
        value = self.c.execute(select(func.max(_E.c.seq)).where(_E.c.time < time)).scalar()
        return None if value is None else int(value)

    def event_hash(self, seq: int) -> str | None:
        value = self.c.execute(select(_E.c.hash).where(_E.c.seq == seq)).scalar()
        return None if value is None else str(value)

    def delete_events_through(self, seq: int) -> int:
        self._lock_chain()
        result: Any = self.c.execute(delete(_E).where(_E.c.seq <= seq))
        return int(result.rowcount or 0)

    @contextlib.contextmanager
    def savepoint(self) -> Iterator[None]:
        with self.c.begin_nested():
            yield


class CentralSeatStore:
    """``seats.store.SeatStore`` on Central's database (any number of processes)."""

    def __init__(self, db: Database, *, per_device: int | None = None):
        self.db = db
        self.per_device = per_device  # live leases one device may hold (None: no limit)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[CentralSeatTx]:
        with self.db.session() as session, write_tx(session):
            yield CentralSeatTx(session.connection(), write=True, per_device=self.per_device)

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[CentralSeatTx]:
        with self.db.session() as session, read_tx(session):
            yield CentralSeatTx(session.connection(), write=False)

    def close(self) -> None:
        """Nothing to close: the connections are the database's pool's."""
