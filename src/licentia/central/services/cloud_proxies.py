"""Proxy license servers: a license server that serves a group's enterprise cloud container
to its LAN (docs/cloud.md, "A license server as proxy").

- A group's admin (or the customer admin) makes a proxy with a name and a number of seats
  (per license of the group's container). Central answers a one-time **link code**
  (``lcp_<firm>.<secret>``, seven days), and keeps only its SHA-256.
- ``licentia server proxy link URL CODE`` on the license server sends the code with a sync
  request signed by the server's machine container. Central binds the proxy to that
  container (its serial and key) and answers a session token (``lpx_...``, SHA-256 kept):
  a second container presenting the code, or the token, is refused.
- Each **refresh** (the token and a new signed sync request) holds the proxy's seats of
  each license in Central's seat rows, as borrows into the server's container until the
  proxy tolerance (``LICENTIA_CLOUD_PROXY_TOLERANCE``): seats held by proxies and by direct
  cloud leases never exceed the license's quantity. Central issues the server's container
  a firm-signed entry of each license, for the seats held and until that time, and a
  ``proxy-grant`` naming the group's members and their linked devices. The answer is the
  container's ordinary full-state update, so the request is a link of the container's
  chain: two copies of one container fork it, the slot is flagged and the proxy ends.
- The **update trigger** is a digest of the group's members, their devices and licenses:
  the server polls it and refreshes when it changes.
- Offline, the server serves until its entries end; then its seats here end too.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import re
import secrets
import uuid
from collections.abc import Iterator
from typing import Any, cast

from sqlalchemy import bindparam, delete, insert, select, update

from ...core import proxy as P
from ...core.errors import BadInput, Conflict, Forbidden, NotFound, ServiceError, Unauthorized
from ...core.license import LicenseEntry
from ...seats import Client, SeatEngine, SeatLicense
from ...seats.store import SeatStore
from ..cloud_seats import CentralSeatTx
from ..db import run_read
from ..models import (
    Account,
    AccountGroup,
    CloudContainer,
    CloudDevice,
    CloudLease,
    CloudProxy,
    Container,
    Firm,
    GroupMember,
    Ticket,
    TicketState,
    table_of,
)
from ..protocol_db import Tx, protocol_for
from . import _signed
from .accounts import AccountService, Person
from .activation import ActivationService, ProxyCall, ProxyServed
from .attempts import AttemptService
from .base import Context, Service

log = logging.getLogger("licentia.central.proxy")

CODE_TTL = 7 * 86400
MAX_SEATS = 100000
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
_X = table_of(CloudProxy)

Q_BY_CODE = select(_X).where(_X.c.code_hash == bindparam("h")).with_for_update()
Q_BY_TOKEN = select(_X).where(_X.c.token_hash == bindparam("h")).with_for_update()
Q_BY_ID = select(_X).where(_X.c.id == bindparam("id")).with_for_update()
U_PROXY = update(_X).where(_X.c.id == bindparam("pid"))
D_PROXY = delete(_X).where(_X.c.id == bindparam("pid"))
I_PROXY = insert(_X)
Q_FIRM_CODE = select(Firm.code).where(Firm.id == bindparam("firm"))
Q_GROUP_NAME = select(AccountGroup.name).where(AccountGroup.id == bindparam("group"))
#: the activated licenses of a group's enterprise cloud container
Q_GROUP_LICENSES = (
    select(Ticket.entry, Container.serial)
    .join(CloudContainer, CloudContainer.container_id == Ticket.container_id)
    .join(Container, Container.id == CloudContainer.container_id)
    .where(CloudContainer.group_id == bindparam("group"), Ticket.state == TicketState.activated.value)
    .order_by(Ticket.license_id)
)
#: the group's enabled members and the devices each has linked (none: a row with NULLs)
Q_MEMBERS = (
    select(Account.login, CloudDevice.serial, CloudDevice.sign_pub)
    .select_from(GroupMember)
    .join(Account, Account.id == GroupMember.account_id)
    .outerjoin(CloudDevice, (CloudDevice.account_id == Account.id) & CloudDevice.unlinked.is_(None))
    .where(GroupMember.group_id == bindparam("group"), Account.disabled.is_(False))
    .order_by(Account.login, CloudDevice.serial)
)


_L = table_of(CloudLease)
#: the license keys a proxy holds live seats of (its seats are named "proxy:<id>#<n>")
Q_HELD_KEYS = (
    select(_L.c.license_key, _L.c.firm_code, _L.c.product_code, _L.c.license_id)
    .where(_L.c.seat.like(bindparam("prefix")), _L.c.live_until > bindparam("now"), _L.c.mode == "borrow")
    .distinct()
)


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class _BoundStore:
    """The seat engine's store on the transaction at hand: the seats a proxy holds change
    with its entries, in one commit."""

    def __init__(self, tx: Tx):
        self.tx = tx

    @contextlib.contextmanager
    def transaction(self) -> Iterator[CentralSeatTx]:
        yield CentralSeatTx(self.tx, write=True, per_device=None)

    snapshot = transaction

    def close(self) -> None:
        """Nothing to close: the transaction is the caller's."""


@dataclasses.dataclass(frozen=True)
class _License:
    entry: LicenseEntry
    key: str  # the seat engine's key: "<cloud container serial>/<license id>"


class _Handler:
    """The proxy side of one link or refresh (``ActivationService.proxy_sync``)."""

    def __init__(self, svc: ProxyService, *, code: str | None = None, token: str | None = None, address: str):
        self.svc, self.code, self.token, self.address = svc, code, token, address
        self.row: Any = None
        self.new_token: str | None = None

    def admit(self, tx: Tx, serial: str, sign_pub: str, firm_code: int) -> None:
        now = self.svc.now()
        if self.code is not None:
            row = tx.first(Q_BY_CODE, {"h": _hash(self.code)})
            if row is None or row.code_expires is None or row.code_expires <= now or row.ended is not None:
                raise NotFound(
                    "proxy_code", "This link code is unknown or expired: ask your group admin for a new one."
                )
            if row.container_id is not None:
                raise Conflict("proxy_bound", "This link code was used already: ask your group admin for a new one.")
            if firm_code != P.code_firm(self.code) or tx.scalar(Q_FIRM_CODE, {"firm": row.firm_id}) != firm_code:
                raise BadInput("The link request names another firm than the link code.")
            self.new_token = P.TOKEN_PREFIX + secrets.token_urlsafe(32)
            self.row = row
            return
        row = tx.first(Q_BY_TOKEN, {"h": _hash(self.token or "")})
        if row is None or row.ended is not None:
            raise Unauthorized("This proxy session is unknown or ended: link the server again with a new code.")
        bound = tx.first(select(Container.serial, Container.sign_pub).where(Container.id == row.container_id), {})
        if bound is None or (bound.serial, bound.sign_pub) != (serial, sign_pub):
            raise Forbidden(
                "This proxy session belongs to another license server's container.",
                reason=f"proxy {row.id} bound to {bound.serial if bound else None}, asked by {serial}",
            )
        self.row = row

    def serve(self, tx: Tx, call: ProxyCall, *, flagged: bool) -> ProxyServed:
        row = self.row
        if flagged:
            self.svc.end(tx, row, call.now, "flagged", serial=call.serial, sign_pub=call.sign_pub)
            log.warning("proxy %s ended: its container %s showed manipulation", row.name, call.serial)
            return ProxyServed(
                error=Conflict(
                    "proxy_flagged",
                    "License Central saw this server's container restored or copied: the proxy is ended and its "
                    "seats returned. Ask your group admin for a new link code.",
                )
            )
        changes: dict[str, Any] = {"refreshed": call.now, "address": self.address}
        if self.new_token is not None:
            # the code's hash stays until the proxy goes: a second use of the code is told it was used
            changes.update(container_id=call.container_id, token_hash=_hash(self.new_token), linked=call.now)
        entries, grant, until = self.svc.hold(tx, row, call)
        changes.update(entries=json.dumps(entries), until=until)
        tx.execute(U_PROXY, {"pid": row.id, **changes})
        return ProxyServed(grant=grant, token=self.new_token)


class ProxyService(Service):
    def __init__(
        self,
        ctx: Context,
        session: Any,
        *,
        accounts: AccountService,
        activation: ActivationService,
        attempts: AttemptService,
    ):
        super().__init__(ctx, session)
        self.accounts = accounts
        self.activation = activation
        self.attempts = attempts

    @property
    def _db(self) -> Any:
        return protocol_for(self.ctx.db.engine)

    # ---------------------------------------------------------------- the group's admin

    def _group(self, person: Person, name: str) -> AccountGroup:
        return run_read(self.session, lambda: self.accounts.administered_group(person, name))

    def create(self, person: Person, group: str, name: str, seats: int) -> dict[str, Any]:
        """A new proxy of ``group``'s cloud container with ``seats`` seats of each license, and
        its link code (shown once)."""
        if not _NAME.fullmatch(name):
            raise BadInput(
                "A proxy's name is 1 to 100 letters, digits, '.', '_' or '-', starting with a letter or digit."
            )
        if not 1 <= seats <= MAX_SEATS:
            raise BadInput(f"A proxy holds 1 to {MAX_SEATS} seats.")
        found = self._group(person, group)
        secret = secrets.token_urlsafe(24)
        code = f"{P.CODE_PREFIX}{person.firm_code}.{secret}"
        now = self.now()

        def tx(t: Tx) -> None:
            if t.first(select(_X.c.id).where(_X.c.group_id == found.id, _X.c.name == name), {}) is not None:
                raise Conflict("proxy_exists", f"Group {group} has a proxy {name} already: remove it first.")
            t.execute(
                I_PROXY,
                {
                    "id": uuid.uuid4(),
                    "firm_id": found.firm_id,
                    "group_id": found.id,
                    "name": name,
                    "seats": seats,
                    "created": now,
                    "created_by": person.login,
                    "code_hash": _hash(code),
                    "code_expires": now + CODE_TTL,
                },
            )

        self._db.run(tx)
        self.accounts.audit_person(person, "proxy.create", group=group, proxy=name, seats=seats)
        return {"group": group, "name": name, "seats": seats, "code": code, "code_expires": now + CODE_TTL}

    def list_proxies(self, person: Person, group: str) -> list[dict[str, Any]]:
        found = self._group(person, group)
        rows = self._db.run(
            lambda t: t.all(
                select(_X, Container.serial)
                .outerjoin(Container, Container.id == _X.c.container_id)
                .where(_X.c.group_id == found.id)
                .order_by(_X.c.name),
                {},
            )
        )
        return [self._view(r, group) for r in rows]

    def remove(self, person: Person, group: str, name: str) -> dict[str, Any]:
        """Remove the proxy: its seats return now; the server's entries go at its next sync."""
        found = self._group(person, group)

        def tx(t: Tx) -> None:
            row = t.first(select(_X).where(_X.c.group_id == found.id, _X.c.name == name).with_for_update(), {})
            if row is None:
                raise NotFound("proxy", f"Group {group} has no proxy {name}.")
            self.give_back(t, row, self.now())
            t.execute(D_PROXY, {"pid": row.id})

        self._db.run(tx)
        self.accounts.audit_person(person, "proxy.remove", group=group, proxy=name)
        return {"group": group, "name": name, "removed": True}

    def _view(self, r: Any, group: str) -> dict[str, Any]:
        now = self.now()
        held = sum(int(json.loads(t)["payload"]["options"]["quantity"]) for t in json.loads(r.entries or "[]"))
        live = r.ended is None and r.until is not None and r.until > now
        return {
            "group": group,
            "name": r.name,
            "seats": r.seats,
            "state": "ended" if r.ended is not None else ("linked" if r.container_id is not None else "waiting"),
            "ended_by": r.ended_by,
            "server": r.serial,
            "address": r.address,
            "refreshed": r.refreshed,
            "until": r.until,
            "seats_held": held if live else 0,
            "created": r.created,
            "created_by": r.created_by,
        }

    # ---------------------------------------------------------------- the proxy license server

    def link(self, code: str, body: bytes, address: str) -> dict[str, Any]:
        """Bind a proxy to the container that signed ``body`` and serve its first refresh."""
        self.attempts.check(address)
        try:
            if P.code_firm(code) is None:
                raise NotFound(
                    "proxy_code", "This link code is unknown or expired: ask your group admin for a new one."
                )
            served = self.activation.proxy_sync(
                body, address, _Handler(self, code=code, address=address), register=True
            )
        except ServiceError as exc:
            if exc.code in ("unknown_proxy_code", "proxy_bound"):
                self.attempts.record("proxy-link", address)
            raise
        log.info("proxy linked from %s", address)
        return {"token": served.token, "update": json.loads(served.update), "grant": served.grant}

    def refresh(self, token: str | None, body: bytes, address: str) -> dict[str, Any]:
        if not token or not token.startswith(P.TOKEN_PREFIX):
            raise Unauthorized("Send the proxy's session token: Authorization: Bearer lpx_...")
        served = self.activation.proxy_sync(body, address, _Handler(self, token=token, address=address), register=False)
        return {"update": json.loads(served.update), "grant": served.grant}

    def _by_token(self, t: Tx, token: str | None) -> Any:
        row = t.first(Q_BY_TOKEN, {"h": _hash(token or "")}) if token and token.startswith(P.TOKEN_PREFIX) else None
        if row is None:
            raise Unauthorized("This proxy session is unknown: link the server again with a new code.")
        return row

    def trigger(self, token: str | None) -> dict[str, Any]:
        """The proxy's update trigger: the digest of its group's members and licenses now."""

        def tx(t: Tx) -> dict[str, Any]:
            row = self._by_token(t, token)
            if row.ended is not None:
                return {"ended": True, "state": None}
            members, licenses = self._state(t, row)
            return {"ended": False, "state": P.state_digest(members, licenses)}

        result: dict[str, Any] = self._db.run(tx)
        return result

    def unlink(self, token: str | None) -> dict[str, Any]:
        """The server ends its proxy: its seats return."""

        def tx(t: Tx) -> None:
            row = self._by_token(t, token)
            if row.ended is None:
                self.end(t, row, self.now(), "unlinked")

        self._db.run(tx)
        return {"unlinked": True}

    # ---------------------------------------------------------------- seats and entries

    def _engine(self, tx: Tx) -> SeatEngine:
        return SeatEngine(cast(SeatStore, _BoundStore(tx)), clock=self.ctx.clock, ttl=self.ctx.settings.cloud_lease_ttl)

    def _licenses(self, tx: Tx, group_id: uuid.UUID) -> list[_License]:
        out = []
        for r in tx.all(Q_GROUP_LICENSES, {"group": group_id}):
            if r.entry:
                entry = LicenseEntry.of_document(json.loads(r.entry))
                out.append(_License(entry, f"{r.serial}/{entry.license_id}"))
        return out

    @staticmethod
    def _members(tx: Tx, group_id: uuid.UUID) -> list[dict[str, Any]]:
        members: dict[str, list[dict[str, str]]] = {}
        for r in tx.all(Q_MEMBERS, {"group": group_id}):
            devices = members.setdefault(r.login, [])
            if r.serial is not None:
                devices.append({"serial": r.serial, "sign_pub": r.sign_pub})
        return [{"login": login, "devices": devices} for login, devices in members.items()]

    def _state(
        self, tx: Tx, row: Any, licenses: list[_License] | None = None
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """What the trigger's digest is made of: members with devices; licenses by entry
        (``licenses``: the group's, when read already)."""
        held = self._licenses(tx, row.group_id) if licenses is None else licenses
        return self._members(tx, row.group_id), [
            {"license_id": x.entry.license_id, "entry": x.entry.digest} for x in held
        ]

    @staticmethod
    def _client(row: Any) -> Client:
        return Client(client_lease_id=f"proxy:{row.id}", user=f"proxy:{row.name}", host=row.name, ip=row.address or "")

    def _proxied(self, entry: LicenseEntry, now: int) -> bool:
        """Whether a license may be served by a proxy: network seats, no units, not ended."""
        o = entry.options
        return not o.local_only and o.units is None and (o.expires is None or o.expires > now)

    def hold(self, tx: Tx, row: Any, call: ProxyCall) -> tuple[list[str], dict[str, Any], int]:
        """Hold the proxy's seats of each license until the tolerance; the entries issued to
        its container for them (texts), the signed grant, and until when."""
        now = call.now
        until = now + self.ctx.settings.cloud_proxy_tolerance
        engine = self._engine(tx)
        client = self._client(row)
        borrower = {"serial": call.serial, "sign_pub": call.sign_pub, "box_pub": ""}
        entries: list[str] = []
        licenses: list[dict[str, Any]] = []
        group_licenses = self._licenses(tx, row.group_id)
        for lic in group_licenses:
            e = lic.entry
            ends = until if e.options.expires is None else min(until, e.options.expires)
            wanted = row.seats if self._proxied(e, now) else 0
            seat = SeatLicense.of_entry(lic.key, e, e.options.expires, None)
            held = engine.hold(client, seat, tag=f"proxy:{row.id}", seats=wanted, until=ends, borrower=borrower)
            if held <= 0:
                continue
            options = dataclasses.replace(
                e.options, quantity=held, expires=ends, sync_interval=None, report_interval=None, metering="local"
            )
            issued = dataclasses.replace(
                e, serial=call.serial, container_key=call.sign_pub, options=options, issued=now
            )
            entries.append(_signed.sign("license", issued.payload(), call.signer).text)
            licenses.append({"license_id": e.license_id, "product_code": e.product_code, "seats": held})
        self._give_back_others(tx, engine, client, row, call.now, {x.key for x in group_licenses})
        members, state_licenses = self._state(tx, row, group_licenses)
        group = tx.scalar(Q_GROUP_NAME, {"group": row.group_id})
        settings = self.ctx.settings
        payload = P.grant_payload(
            firm_code=call.firm_code,
            serial=call.serial,
            group=str(group),
            proxy=row.name,
            members=members,
            licenses=licenses,
            state=P.state_digest(members, state_licenses),
            issued=now,
            until=until,
            refresh=settings.cloud_proxy_refresh,
            poll=settings.cloud_proxy_poll,
        )
        grant = _signed.sign(P.PROXY_GRANT, payload, call.signer).doc
        return entries, grant, until

    def give_back(self, tx: Tx, row: Any, now: int) -> None:
        """Return every seat the proxy holds."""
        if row.container_id is None:
            return
        self._give_back_others(tx, self._engine(tx), self._client(row), row, now, set())

    @staticmethod
    def _give_back_others(tx: Tx, engine: SeatEngine, client: Client, row: Any, now: int, keep: set[str]) -> None:
        """Return the proxy's seats of every license but ``keep`` (a license that left the
        group's container, or all of them)."""
        for r in tx.all(Q_HELD_KEYS, {"prefix": f"proxy:{row.id}#%", "now": now}):
            if r.license_key in keep:
                continue
            lic = SeatLicense(r.license_key, r.firm_code, r.product_code, r.license_id, quantity=0)
            engine.hold(client, lic, tag=f"proxy:{row.id}", seats=0, until=now, borrower={})

    def end(self, tx: Tx, row: Any, now: int, by: str, **detail: Any) -> None:
        """End the proxy (``by``: unlinked | flagged): seats returned, no more entries."""
        self.give_back(tx, row, now)
        tx.execute(U_PROXY, {"pid": row.id, "ended": now, "ended_by": by, "entries": None, "until": now})
        log.info("proxy %s ended (%s) %s", row.name, by, detail or "")
