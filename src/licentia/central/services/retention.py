"""Retention of the usage store: each firm's events are kept ``firms.usage_retention_days``
(400 unless the firm says otherwise), counted from their access time, then deleted.

On PostgreSQL the store is partitioned by month: a month past the longest retention of any
firm is dropped whole, and the months ahead are made (central/partitions.py). Deletion
of the rest runs in batches, one short transaction each, so that uploads and reports go on
while a year's worth of old events leaves the store; a batch takes the oldest rows of one
firm through the (firm, access time) index. The product view's rollup (``usage_days``)
follows in the same run: days before the cutoff's go, the cutoff's day is rebuilt.
``licentia central usage purge`` runs it, and ``licentia central serve`` runs it once a day.
"""

from __future__ import annotations

import functools
import logging
import uuid
from dataclasses import dataclass

from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from .. import partitions
from ..db import run_read, run_write
from ..models import Firm, UsageBillingDay, UsageBillingStale, UsageDay, UsageEvent
from .base import Service
from .rollup import rebuild_days

log = logging.getLogger("licentia.central")

DAY = 86400
#: the default retention of a firm's usage events, in days
DEFAULT_DAYS = 400
#: rows deleted per transaction
BATCH = 5000


@dataclass(frozen=True)
class Purged:
    firm_code: int
    retention_days: int
    cutoff: int  # events accessed before this time were deleted
    deleted: int


class RetentionService(Service):
    def purge(self, *, batch: int = BATCH) -> list[Purged]:
        """Delete every firm's events older than its retention; one result per firm."""
        now = self.now()
        firms = run_read(
            self.session,
            lambda: self.session.execute(select(Firm.id, Firm.code, Firm.usage_retention_days)).all(),
        )
        if firms:
            longest = max(days for _, _, days in firms)
            run_write(self.session, functools.partial(self._months, now, now - longest * DAY))
        out = []
        for firm_id, code, days in firms:
            cutoff = now - days * DAY
            deleted = 0
            while True:
                n = run_write(self.session, functools.partial(self._delete_batch, firm_id, cutoff, batch))
                deleted += n
                if n < batch:
                    break
            run_write(self.session, functools.partial(self._drop_days, firm_id, cutoff))
            if deleted:
                log.info("usage retention: %d event(s) of firm %d older than %d days deleted", deleted, code, days)
            out.append(Purged(firm_code=code, retention_days=days, cutoff=cutoff, deleted=deleted))
        return out

    def _months(self, now: int, cutoff: int) -> None:
        """On PostgreSQL: every month some firm keeps and the months ahead made, the months
        past every firm's retention dropped whole (central/partitions.py)."""
        conn = self.session.connection()
        if partitions.partitioned(conn):
            partitions.ensure(conn, cutoff, partitions.ahead(now))
            partitions.drop_before(conn, cutoff)

    def _drop_days(self, firm_id: uuid.UUID, cutoff: int) -> None:
        """The rollups follow: the days before the cutoff's day go; the cutoff's own day is
        rebuilt from the events it keeps (product view) or marked stale for the job."""
        day = cutoff // DAY
        s = self.session
        for rolled in (UsageDay, UsageBillingDay, UsageBillingStale):
            s.execute(delete(rolled).where(rolled.firm_id == firm_id, rolled.day < day))
        if cutoff % DAY:
            rebuild_days(s, firm_id, day, day + 1)
            b = UsageBillingDay
            cut = select(b.customer_id, b.item_id, b.day, b.firm_id).where(b.firm_id == firm_id, b.day == day)
            ins = pg_insert if s.get_bind().dialect.name == "postgresql" else sqlite_insert
            columns = ["customer_id", "item_id", "day", "firm_id"]
            s.execute(ins(UsageBillingStale).from_select(columns, cut).on_conflict_do_nothing())

    def _delete_batch(self, firm_id: uuid.UUID, cutoff: int, batch: int) -> int:
        """Delete up to ``batch`` of the firm's oldest events accessed before ``cutoff``."""
        old = (
            select(UsageEvent.id)
            .where(UsageEvent.firm_id == firm_id, UsageEvent.access_time < cutoff)
            .order_by(UsageEvent.access_time)
            .limit(batch)
        )
        ids = list(self.session.scalars(old))
        if ids:
            self.session.execute(delete(UsageEvent).where(UsageEvent.id.in_(ids)))
        return len(ids)
