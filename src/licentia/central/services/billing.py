"""The billing view's rollup job: computes ``usage_billing_days`` for the days the writes
marked stale, once those days have ended.

A billing day's peak is the most seats held at one instant of it, and seats held by
sessions of two uploads count once, so the figures do not add up across writes as the
product view's do. Writes mark the days their sessions and refusals touch
(``usage_billing_stale``); the job, a run every ``usage_rollup_interval`` seconds while
Central serves (and ``licentia central usage rollup``), takes each customer's item's
stale days that have ended, deletes the marks first (a write that marks one of them again
meanwhile waits for the job's transaction and marks it anew), sweeps the day's sessions
from the events and writes the figures. Sessions still open hold their seats through
every day that ends while they are open: each run marks those days itself. A run records
when it began (``usage_rollup_state``): every day that ended before is in the rollup or
stale, and the view reads it for those days only.

The job's first run (no state yet: a new or upgraded store) rebuilds every day of every
customer's item from the events; so does ``RollupService.rebuild``.
"""

from __future__ import annotations

import functools
import logging
import uuid

from sqlalchemy import delete, insert, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from ..db import run_read, run_write
from ..models import Firm, UsageBillingDay, UsageBillingStale, UsageEvent, UsageRollupState
from .base import Service
from .reporting import BILLING_FINAL, DAY, day_runs, sweep_days
from .rollup import I_STALE

log = logging.getLogger("licentia.central")

FINAL = BILLING_FINAL


class BillingRollup(Service):
    """Runs of the billing rollup job."""

    def final(self) -> int | None:
        """When the last complete run began (None: none has run)."""
        value: int | None = run_read(
            self.session,
            lambda: self.session.scalar(select(UsageRollupState.value).where(UsageRollupState.name == FINAL)),
        )
        return value

    def refresh(self) -> int:
        """One run: the stale days that ended, computed; the number of days computed."""
        now = self.now()
        final = self.final()
        if final is None:
            return self.rebuild()
        today = now // DAY
        if final // DAY < today:
            run_write(self.session, functools.partial(self._mark_open, final // DAY, today))
        pairs = run_read(
            self.session,
            lambda: self.session.execute(
                select(UsageBillingStale.firm_id, UsageBillingStale.customer_id, UsageBillingStale.item_id)
                .where(UsageBillingStale.day < today)
                .distinct()
            ).all(),
        )
        done = 0
        for firm_id, customer_id, item_id in pairs:
            done += run_write(self.session, functools.partial(self._compute, firm_id, customer_id, item_id, today, now))
        run_write(self.session, functools.partial(self._set_final, now))
        if done:
            log.info("usage billing rollup: %d day(s) computed", done)
        return done

    def rebuild(self) -> int:
        """Every day of every customer's item that has ended, from the events; the number of
        rollup rows written."""
        now = self.now()
        today = now // DAY
        e = UsageEvent
        pairs = run_read(
            self.session,
            lambda: self.session.execute(
                select(e.firm_id, e.customer_id, e.item_id)
                .where(e.customer_id.is_not(None), e.item_id.is_not(None))
                .distinct()
            ).all(),
        )
        written = 0
        for firm_id, customer_id, item_id in pairs:
            assert customer_id is not None and item_id is not None  # noqa: S101 - selected so
            written += run_write(
                self.session, functools.partial(self._compute, firm_id, customer_id, item_id, today, now, whole=True)
            )
        run_write(self.session, functools.partial(self._set_final, now))
        log.info("usage billing rollup rebuilt: %d day(s) of %d customer item(s)", written, len(pairs))
        return written

    def _mark_open(self, first: int, today: int) -> None:
        """Mark the days from ``first`` to yesterday of each customer's item with a session
        still open (from its oldest open session's day on)."""
        e = UsageEvent
        s = self.session
        open_pairs = s.execute(
            select(e.firm_id, e.customer_id, e.item_id, e.access_time)
            .where(e.release_time.is_(None), e.success > 0, e.customer_id.is_not(None), e.item_id.is_not(None))
            .order_by(e.access_time)
        ).all()
        oldest: dict[tuple[uuid.UUID, uuid.UUID | None, uuid.UUID | None], int] = {}
        for firm_id, customer_id, item_id, access in open_pairs:
            oldest.setdefault((firm_id, customer_id, item_id), access)
        rows = [
            {"customer_id": c, "item_id": i, "day": d, "firm_id": f}
            for (f, c, i), access in sorted(oldest.items(), key=lambda kv: (str(kv[0][1]), str(kv[0][2])))
            for d in range(max(first, access // DAY), today)
        ]
        if rows:
            s.execute(I_STALE[s.get_bind().dialect.name], rows)

    def _compute(
        self,
        firm_id: uuid.UUID,
        customer_id: uuid.UUID,
        item_id: uuid.UUID,
        today: int,
        now: int,
        *,
        whole: bool = False,
    ) -> int:
        """Compute one customer's item: its stale days before ``today`` (``whole``: every
        day before it). The marks are deleted first, then the events read."""
        s = self.session
        st, bd = UsageBillingStale, UsageBillingDay
        pair = (st.customer_id == customer_id, st.item_id == item_id)
        marked = sorted(s.scalars(delete(st).where(*pair, st.day < today).returning(st.day)))
        firm_code = int(s.scalar(select(Firm.code).where(Firm.id == firm_id)) or 0)
        runs: list[tuple[int | None, int]] = [(None, today - 1)] if whole else list(day_runs(marked))
        if not runs:
            return 0
        written = 0
        for first, last in runs:
            gone = delete(bd).where(bd.customer_id == customer_id, bd.item_id == item_id, bd.day <= last)
            if first is not None:
                gone = gone.where(bd.day >= first)
            s.execute(gone)
            lo = None if first is None else first * DAY
            rows = sweep_days(s, firm_id, customer_id, item_id, lo, (last + 1) * DAY, now)
            if rows:
                s.execute(
                    insert(bd),
                    [
                        {
                            "customer_id": customer_id,
                            "item_id": item_id,
                            "day": r["_day"],
                            "firm_id": firm_id,
                            "firm_code": firm_code,
                            "peak_seats": r["peakSeats"],
                            "seat_seconds": r["seatSeconds"],
                            "sessions": r["sessions"],
                            "units": r["units"],
                            "refusals": r["refusals"],
                        }
                        for r in rows
                    ],
                )
            written += len(rows) if whole else last - (first or last) + 1
        return written

    def _set_final(self, now: int) -> None:
        s = self.session
        ins = pg_insert if s.get_bind().dialect.name == "postgresql" else sqlite_insert
        stmt = ins(UsageRollupState).values(name=FINAL, value=now)
        s.execute(stmt.on_conflict_do_update(index_elements=["name"], set_={"value": now}))
