"""Cloud leases into the one usage store: Central's own usage log of cloud seats
(``cloud_seat_events``, hash-chained as a license server's) copied into ``usage_events``
with ``source`` ``cloud``, in batches, after the last event copied before.

Each event becomes what a license server's anchored event becomes (``UsageService._store``:
a session row opened by its access and closed by its final event, a refusal row, the
product rollup kept on write, the billing days marked): the reporting views and the
billing rollup show cloud use beside a server's. A row names the cloud container of the
lease (its license key names the container's serial); a refusal names none. The person
is the row's user (a cloud lease's user is the account's login; the reported host stays
in ``host``). One batch is one transaction that also moves the mark, so a batch is copied
once even when two Central processes run the job at the same time (the mark's row is
locked first on PostgreSQL; SQLite runs one writer).
"""

from __future__ import annotations

import dataclasses
import logging
from collections import defaultdict
from typing import Any

from sqlalchemy import bindparam, insert, select, update

from ...core import anchoring
from ...core.anchoring import UsageEvent
from ...core.documents import DocumentInvalid
from ..models import CloudLease, CloudSeatEvent, CloudSeatMeta, Container, Firm, table_of
from ..protocol_db import Tx, protocol_for
from .usage import UsageService

log = logging.getLogger("licentia.central.usage")

SOURCE = "cloud"
MARK = "usage_copied"  # cloud_seat_meta: the last event copied into usage_events
BATCH = 5000

_m, _e, _l = table_of(CloudSeatMeta), table_of(CloudSeatEvent), table_of(CloudLease)
_c, _f = table_of(Container), table_of(Firm)
Q_MARK = select(_m.c.value).where(_m.c.key == bindparam("key")).with_for_update()
I_MARK = insert(_m)
U_MARK = update(_m).where(_m.c.key == bindparam("mark")).values(value=bindparam("value"))
Q_EVENTS = select(_e.c.seq, _e.c.body).where(_e.c.seq > bindparam("after")).order_by(_e.c.seq).limit(bindparam("n"))
Q_LEASES = select(_l.c.id, _l.c.license_key).where(_l.c.id.in_(bindparam("ids", expanding=True)))
Q_CONTAINERS = select(_c.c.id, _c.c.serial).where(_c.c.serial.in_(bindparam("serials", expanding=True)))
Q_FIRMS = select(_f.c.id, _f.c.code).where(_f.c.code.in_(bindparam("codes", expanding=True)))


class CloudUsage(UsageService):
    def copy(self, batch: int = BATCH) -> int:
        """Copy the next events of the cloud usage log into the usage store: how many."""
        done: int = protocol_for(self.ctx.db.engine).run(lambda tx: self._copy_tx(tx, batch))
        return done

    def copy_all(self) -> int:
        total = 0
        while True:
            done = self.copy()
            total += done
            if done < BATCH:
                return total

    def _copy_tx(self, tx: Tx, batch: int) -> int:
        mark = tx.first(Q_MARK, {"key": MARK})  # locked: one copier at a time
        if mark is None:
            tx.execute(I_MARK, {"key": MARK, "value": "0"})
        after = int(mark.value) if mark is not None else 0
        rows = tx.all(Q_EVENTS, {"after": after, "n": batch})
        if not rows:
            return 0
        events: list[UsageEvent] = []
        for row in rows:
            try:
                e = anchoring.read_event(row.body, int(row.seq))
            except DocumentInvalid as exc:  # pragma: no cover - Central wrote it; kept in the log, not copied
                log.error("cloud usage event %s not copied: %s", row.seq, exc.reason)
                continue
            login = e.user.rpartition("@")[0] if "@" in e.user else e.user
            events.append(dataclasses.replace(e, user=login))
        tx.execute(U_MARK, {"mark": MARK, "value": str(rows[-1].seq)})
        if not events:  # pragma: no cover - see above
            return 0
        lease_ids = sorted({e.lease_id for e in events if e.lease_id})
        keys = {r.id: r.license_key for r in tx.all(Q_LEASES, {"ids": lease_ids})} if lease_ids else {}
        serials = sorted({k.partition("/")[0] for k in keys.values()})
        containers = {r.serial: r.id for r in tx.all(Q_CONTAINERS, {"serials": serials})} if serials else {}
        firms = tx.all(Q_FIRMS, {"codes": sorted({e.firm_code for e in events})})
        groups: dict[Any, list[UsageEvent]] = defaultdict(list)
        for e in events:
            serial = keys.get(e.lease_id or "", "").partition("/")[0]
            groups[(containers.get(serial), serial)].append(e)
        stored = 0
        for (container_id, serial), group in groups.items():
            n, _ = self._store(tx, container_id, serial or "the cloud", firms, group, source=SOURCE)
            stored += n
        log.info("cloud usage: events %s to %s copied (%s rows)", rows[0].seq, rows[-1].seq, stored)
        return len(rows)
