"""User licensing: a person's cloud licenses used over REST, without a runtime (SaaS back
ends, mobile apps; docs/cloud.md, "User licensing over REST").

The person signs in with a login and password (a ``user`` session: no device), lists
its licenses, checks one (allowed, or the reason with the code of the runtime's
``LicenseError``) and consumes units under an idempotency key that the call requires:
the units are counted on the license's activation in its cloud container with the
online metering's own rules (``MeteringService.count``: the ticket's row locked, units
ordered against everything consumed, the answer kept under the key scoped to the person
and the license; the same key with other parameters is 409). Seats are the cloud leases'
(``cloud_leases.CloudLeases.user_access``). Every check and consumption is a row of the
usage store under the person's login (``source`` ``user``).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

from sqlalchemy import select

from ...core import hazmat
from ...core.encoding import canonical
from ...core.errors import BadInput, LicenseError, LicenseNotFound, NotFound
from ...core.license import AccessRequest, LicenseEntry, LicenseState, evaluate
from ..db import run_read, run_write
from ..models import Ticket
from . import _protocol_sql as sql
from .accounts import Person
from .cloud import Q_PERSON_LICENSES
from .metering import MeteringService
from .rollup import OnConnection, units_row, write_units

log = logging.getLogger("licentia.central.user")

SOURCE = "user"
MAX_KEY = 64


@dataclass(frozen=True)
class Held:
    """One license a person may use."""

    entry: LicenseEntry
    ticket: str
    container_id: Any
    serial: str
    kind: str
    group: str | None
    ticket_id: Any
    customer_id: Any
    item_id: Any


class UserLicensing(MeteringService):
    # ---------------------------------------------------------------- what a person holds

    def held(self, person: Person) -> list[Held]:
        """The licenses of the cloud containers the person may use (its personal one first)."""

        def tx() -> list[Any]:
            params = {"firm": person.firm_id, "account": person.account_id}
            return list(self.session.execute(Q_PERSON_LICENSES, params).all())

        out = []
        for r in run_read(self.session, tx):
            doc = json.loads(r.entry)
            entry = LicenseEntry.of_document(doc)
            out.append(
                Held(entry, r.ticket, r.container_id, r.serial, r.kind, r.group, r.ticket_id, r.customer_id, r.item_id)
            )
        return out

    def licenses(self, person: Person) -> list[dict[str, Any]]:
        """The person's licenses: firm, product, features, options, seats, units left, expiry."""
        held = self.held(person)
        used = self._used([h.ticket for h in held])
        out = []
        for h in held:
            e = h.entry
            units = e.options.units
            out.append(
                {
                    "firm_code": e.firm_code,
                    "product_code": e.product_code,
                    "license_id": e.license_id,
                    "name": e.text,
                    "features": e.feature_map,
                    "seats": e.options.quantity,
                    "units_left": None if units is None else max(0, units - used.get(h.ticket, 0)),
                    "expires": e.options.expires,
                    "container": h.kind if h.group is None else f"group {h.group}",
                }
            )
        return out

    def _used(self, tickets: list[str]) -> dict[str, int]:
        """Units consumed so far per ticket (over every activation)."""
        if not tickets:
            return {}

        def tx() -> dict[str, int]:
            ids = dict(self.session.execute(select(Ticket.ticket, Ticket.id).where(Ticket.ticket.in_(tickets))).all())
            return {t: int(self.session.execute(sql.Q_TOTALS, {"tid": i}).one()[0]) for t, i in ids.items()}

        return run_read(self.session, tx)

    # ---------------------------------------------------------------- check

    def check(self, person: Person, request: AccessRequest) -> dict[str, Any]:
        """Whether the person may use (firm, product, feature) now: the first license that
        allows it, or the refusal closest to success with the runtime's error code. The
        check is a row of the usage store (a use of no time, or a refusal)."""
        now = self.now()
        best: tuple[int, type[LicenseError], str, Held | None] | None = None
        held = [
            h
            for h in self.held(person)
            if h.entry.firm_code == request.firm_code and h.entry.product_code == request.product_code
        ]
        used = self._used([h.ticket for h in held])
        for h in held:
            state = LicenseState(units_used=used.get(h.ticket, 0))
            ev = evaluate(h.entry, state, request, now, now)
            if ev.error is None:
                self._record(person, request, h, now, allowed=True)
                return {"allowed": True, "license_id": h.entry.license_id, "expires": ev.expires}
            if best is None or ev.error.rank > best[0]:
                best = (ev.error.rank, ev.error, ev.message, h)
        if best is None:
            what = f"firm {request.firm_code}, product {request.product_code}"
            best = (0, LicenseNotFound, f"no license of yours for {what}", None)
        _, cls, message, looked_at = best
        self._record(person, request, looked_at, now, allowed=False)
        return {"allowed": False, "error": {"code": cls.code, "type": cls.__name__, "message": message}}

    def _record(self, person: Person, request: AccessRequest, held: Held | None, now: int, *, allowed: bool) -> None:
        """A check in the usage store: ``success`` (allowed), ``fail`` (a license refused),
        ``invalid`` (no license); on the license looked at, under the person's login."""
        if request.firm_code != person.firm_code:
            return  # another firm's: nothing of this person's firm to record it under
        ticket = SimpleNamespace(
            tid=held.ticket_id if held else None,
            license_id=held.entry.license_id if held else 0,
            customer_id=held.customer_id if held else None,
            item_id=held.item_id if held else None,
            product_code=request.product_code,
        )
        row = units_row(
            source=SOURCE,
            firm_id=person.firm_id,
            firm_code=request.firm_code,
            container_id=held.container_id if held else None,
            ticket=ticket,
            units=0,
            at=now,
            user=person.login,
        )
        row.update(
            success=int(allowed),
            fail=int(not allowed and held is not None),
            invalid=int(held is None),
            release_time=now,
            feature_code=request.feature_code,
            mode="check",
        )
        run_write(self.session, lambda: write_units(OnConnection(self.session.connection()), [row]))

    # ---------------------------------------------------------------- consume

    def consume_units(
        self, person: Person, request: AccessRequest, units: int, key: str, license_id: int | None = None
    ) -> dict[str, Any]:
        """Count ``units`` of a license of the product (``license_id``, else the first the
        person holds that allows them), once per idempotency ``key``."""
        if not isinstance(key, str) or not 1 <= len(key) <= MAX_KEY:
            raise BadInput(f"Give an idempotency key of 1 to {MAX_KEY} characters: a retried call reuses it.")
        if units < 1:
            raise BadInput("Consume at least one unit.")
        now = self.now()
        plain = AccessRequest(request.firm_code, request.product_code, request.feature_code)  # units: counted below
        held = [
            h
            for h in self.held(person)
            if h.entry.firm_code == request.firm_code
            and h.entry.product_code == request.product_code
            and (license_id is None or h.entry.license_id == license_id)
            and h.entry.options.units is not None
            and evaluate(h.entry, LicenseState(), plain, now, now).error is None
        ]
        if not held:
            raise NotFound("license", "You hold no license of this product with a unit counter that allows this now.")
        chosen = held[0]
        scope = f"user-consume|{person.account_id.hex}|{chosen.entry.firm_code}:{chosen.entry.license_id}"
        params = hazmat.sha256(
            canonical({"firm_code": request.firm_code, "product_code": request.product_code, "units": units})
        ).hex()

        def tx() -> str:
            conn = self.session.connection()
            counted = self.count(
                conn, scope, key, params, chosen.container_id, chosen.serial, chosen.entry.digest, units,
                chosen.entry.firm_code, SOURCE, person.login,
            )  # fmt: skip
            if isinstance(counted, str):
                return counted
            answer = {
                "firm_code": chosen.entry.firm_code,
                "product_code": chosen.entry.product_code,
                "license_id": chosen.entry.license_id,
                "units": units,
                "units_left": counted.left,
                "key": key,
                "time": counted.now,
            }
            text = json.dumps(answer, separators=(",", ":"))
            self.keep(conn, scope, key, params, text, counted.now)
            return text

        text = run_write(self.session, tx)
        result: dict[str, Any] = json.loads(text)
        log.info("%s consumed %s units of license %s (key %s)", person.login, units, result["license_id"], key)
        return result
