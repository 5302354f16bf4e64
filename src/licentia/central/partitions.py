"""Monthly partitions of the usage store on PostgreSQL.

On PostgreSQL ``usage_events`` is partitioned by range of ``access_time``, one partition a
UTC calendar month (``usage_events_y2026m10``), and a default partition for rows outside
every month made (a clock years off, a month before the oldest kept). Partitions are made
``AHEAD`` months ahead, back to the oldest month a firm keeps (by revision 0005 and by
the daily retention run), so an event lands in its month, a late one too; a month made
later takes its rows out of the default partition. A month is
dropped whole once the longest retention of any firm has passed its end: no firm keeps an
event of it (retention.py). The primary key is ``(id, access_time)`` and the unique key
``(container_id, seq, access_time)``: PostgreSQL needs the partition key in both (an upload
is checked against its anchors before it is stored, so the unique key stays a guard).
SQLite keeps one table.
"""

from __future__ import annotations

import datetime as dt
import logging
import re

from sqlalchemy.engine import Connection

log = logging.getLogger("licentia.central")

PARENT = "usage_events"
DEFAULT = "usage_events_default"
#: months made ahead of the current one
AHEAD = 3
_NAME = re.compile(r"^usage_events_y(\d{4})m(\d{2})$")


def month_of(ts: int) -> tuple[int, int]:
    d = dt.datetime.fromtimestamp(ts, dt.UTC)
    return d.year, d.month


def next_month(year: int, month: int) -> tuple[int, int]:
    return (year + 1, 1) if month == 12 else (year, month + 1)


def bounds(year: int, month: int) -> tuple[int, int]:
    """The month's [start, end) in Unix seconds."""
    start = dt.datetime(year, month, 1, tzinfo=dt.UTC)
    ny, nm = next_month(year, month)
    return int(start.timestamp()), int(dt.datetime(ny, nm, 1, tzinfo=dt.UTC).timestamp())


def ahead(now: int) -> int:
    """A time in the last month to make ahead of ``now``'s."""
    y, m = month_of(now)
    for _ in range(AHEAD):
        y, m = next_month(y, m)
    return bounds(y, m)[0]


def is_partition(name: str) -> bool:
    """Whether ``name`` is one of the store's partitions (a month's or the default one)."""
    return name == DEFAULT or _NAME.match(name) is not None


def name_of(year: int, month: int) -> str:
    return f"{PARENT}_y{year:04d}m{month:02d}"


def partitioned(conn: Connection) -> bool:
    """Whether the store is partitioned (PostgreSQL after revision 0005)."""
    if conn.dialect.name != "postgresql":
        return False
    kind = conn.exec_driver_sql("SELECT relkind FROM pg_class WHERE relname = %s", (PARENT,)).scalar()
    return bool(kind == "p")


def months(conn: Connection) -> list[tuple[int, int]]:
    """The months that have a partition, oldest first."""
    rows = conn.exec_driver_sql(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = %s",
        (PARENT,),
    ).scalars()
    found = []
    for name in rows:
        m = _NAME.match(name)
        if m:
            found.append((int(m.group(1)), int(m.group(2))))
    return sorted(found)


def ensure(conn: Connection, first: int, last: int) -> list[str]:
    """Make the partition of every month from ``first``'s to ``last``'s (Unix seconds) that
    has none; rows of such a month in the default partition move into it. The names made."""
    have = set(months(conn))
    made = []
    y, m = month_of(first)
    end = month_of(last)
    while (y, m) <= end:
        if (y, m) not in have:
            _create(conn, y, m)
            made.append(name_of(y, m))
        y, m = next_month(y, m)
    if made:
        log.info("usage store: partitions made: %s", ", ".join(made))
    return made


def _create(conn: Connection, year: int, month: int) -> None:
    lo, hi = bounds(year, month)
    name = name_of(year, month)
    moved = conn.exec_driver_sql(
        f"SELECT EXISTS (SELECT 1 FROM {DEFAULT} WHERE access_time >= %s AND access_time < %s)",  # noqa: S608 - names are ours
        (lo, hi),
    ).scalar()
    if not moved:
        conn.exec_driver_sql(f"CREATE TABLE {name} PARTITION OF {PARENT} FOR VALUES FROM ({lo}) TO ({hi})")
        return
    # the default partition holds rows of this month: take it out while they move
    conn.exec_driver_sql(f"ALTER TABLE {PARENT} DETACH PARTITION {DEFAULT}")
    conn.exec_driver_sql(f"CREATE TABLE {name} PARTITION OF {PARENT} FOR VALUES FROM ({lo}) TO ({hi})")
    where = f"access_time >= {lo} AND access_time < {hi}"
    conn.exec_driver_sql(f"INSERT INTO {PARENT} SELECT * FROM {DEFAULT} WHERE {where}")  # noqa: S608 - ours
    conn.exec_driver_sql(f"DELETE FROM {DEFAULT} WHERE {where}")  # noqa: S608 - ours
    conn.exec_driver_sql(f"ALTER TABLE {PARENT} ATTACH PARTITION {DEFAULT} DEFAULT")


def drop_before(conn: Connection, cutoff: int) -> list[str]:
    """Drop every month that ends at or before ``cutoff``; the names dropped."""
    dropped = []
    for y, m in months(conn):
        if bounds(y, m)[1] <= cutoff:
            conn.exec_driver_sql(f"DROP TABLE {name_of(y, m)}")
            dropped.append(name_of(y, m))
    if dropped:
        log.info("usage store: partitions dropped (past every firm's retention): %s", ", ".join(dropped))
    return dropped
