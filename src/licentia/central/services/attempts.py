"""Failed public attempts (activation, ticket info, deactivation, sign-in), counted per
client address, per ticket and per account in the database so that every worker sees
them. Successful attempts never count."""

from __future__ import annotations

from sqlalchemy import delete, func, select

from ...core.errors import TooManyAttempts, TooManySignIns
from ..db import run_read, run_write
from ..models import Attempt
from .base import Service

ADDRESS, TICKET, ACCOUNT = "address", "ticket", "account"


class AttemptService(Service):
    def check(
        self, address: str, ticket: str | None = None, *, account: str | None = None, sign_in: bool = False
    ) -> None:
        """Raise TooManyAttempts when the address or the ticket is over its limit
        (TooManySignIns for a sign-in, ``account`` or ``sign_in``: the address or the account)."""
        s = self.ctx.settings
        since = self.now() - s.attempt_window

        def count(scope: str, key: str) -> int:
            return int(
                self.session.scalar(
                    select(func.count())
                    .select_from(Attempt)
                    .where(Attempt.scope == scope, Attempt.key == key, Attempt.time > since)
                )
                or 0
            )

        def tx() -> bool:
            if count(ADDRESS, address) >= s.attempts_per_address:
                return False
            if account is not None and count(ACCOUNT, account) >= s.login_attempts_per_account:
                return False
            return not (ticket is not None and count(TICKET, ticket) >= s.attempts_per_ticket)

        if not run_read(self.session, tx):
            if account is not None or sign_in:
                raise TooManySignIns(s.attempt_window)
            raise TooManyAttempts(s.attempt_window)

    def record(self, action: str, address: str, ticket: str | None = None, *, account: str | None = None) -> None:
        """Count one failed attempt (own transaction: the failed one was rolled back)."""
        now = self.now()
        cutoff = now - self.ctx.settings.attempt_window
        keys = [(ADDRESS, address)] + ([(TICKET, ticket)] if ticket else []) + ([(ACCOUNT, account)] if account else [])

        def tx() -> None:
            for scope, key in keys:
                # rows that no longer count are dropped as the same key comes back
                self.session.execute(
                    delete(Attempt).where(Attempt.scope == scope, Attempt.key == key, Attempt.time <= cutoff)
                )
                self.session.add(Attempt(time=now, scope=scope, key=key[:128], action=action))

        run_write(self.session, tx)

    def prune(self) -> None:
        cutoff = self.now() - self.ctx.settings.attempt_window

        def tx() -> None:
            self.session.execute(delete(Attempt).where(Attempt.time <= cutoff))

        run_write(self.session, tx)
