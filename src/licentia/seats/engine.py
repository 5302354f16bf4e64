"""The seat engine: leases, access modes, access rules, borrowing, usage events.

No HTTP and no clock of its own: the caller passes a clock (a callable returning Unix
seconds), the licenses it may lend (their options already checked), and who asks.
Each operation is one store transaction, committed before the method returns, so what
the engine acknowledged survives a crash; the usage events of the operation are
written in the same transaction (a denial too: the refusal is raised after commit).

Seats. A lease occupies the seat named by ``(license, seat)``:

- ``user``: a seat of its own;
- ``station``: the seat of ``user@host`` (all processes of one user on one host share it);
- ``exclusive``: the seat of the host; any other live lease of the license on that
  host refuses an exclusive request, and an exclusive lease refuses every other process
  on that host (other hosts take their own seats);
- ``nolimit``: no seat; only on a license whose quantity is 0 (no seat limit);
- ``borrow``: a seat taken into a client's container until it expires or is returned.

A lease lives until ``expires`` (renewed by heartbeats, ``ttl`` seconds each); a
release keeps the seat ``linger`` seconds more. A request carrying the client lease id
of a live lease gets that lease back (a reconnect never takes a second seat).
"""

from __future__ import annotations

import contextlib
import json
import logging
import secrets
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

from ..core import errors as E
from ..core import hazmat
from . import usage
from .acl import EMPTY, Acl
from .model import (
    ACTIVE,
    BORROW,
    EXPIRED,
    LINGERING,
    MODES,
    RELEASED,
    RETURNED,
    REVOKED,
    Client,
    Lease,
    LeaseRevoked,
    LeaseUnknown,
    Refusal,
    SeatLicense,
)
from .store import SeatStore, SeatTx

log = logging.getLogger("licentia.seats")

DAY = 86400
Signer = Callable[[str, dict[str, Any]], dict[str, Any]]


@dataclass
class _Work:
    tx: SeatTx
    now: int
    events: list[dict[str, Any]] = field(default_factory=list)


class SeatEngine:
    def __init__(
        self,
        store: SeatStore,
        *,
        clock: Callable[[], int],
        acl: Acl = EMPTY,
        ttl: int = 120,
        linger: int = 0,
        signer: Signer | None = None,
        retention_days: int | None = None,
    ):
        if ttl < 1:
            raise ValueError("ttl is at least 1 second")
        self.store = store
        self.clock = clock
        self.acl = acl
        self.ttl = int(ttl)
        self.linger = int(linger)
        self.signer = signer
        self.retention_days = retention_days
        self.counters: dict[str, int] = {}
        self._batch: _Work | None = None
        self._seq = secrets.randbelow(1 << 24)
        self._salt = secrets.token_hex(4)

    # ------------------------------------------------------------ plumbing

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Run the operations inside as one transaction (group commit): one commit and one
        signed usage head for all of them. Each operation still runs in a savepoint of its
        own; the caller acknowledges none of them before this block has returned."""
        if self._batch is not None:
            yield
            return
        now = self.clock()
        with self.store.transaction() as tx:
            self._batch = _Work(tx, now)
            try:
                yield
                if self._batch.events:
                    self._append(tx, self._batch.events, self.clock())
            finally:
                self._batch = None

    @contextlib.contextmanager
    def _work(self, now: int) -> Iterator[_Work]:
        outer = self._batch
        if outer is not None:
            work = _Work(outer.tx, now)
            with outer.tx.savepoint():
                yield work
            outer.events.extend(work.events)
            return
        with self.store.transaction() as tx:
            work = _Work(tx, now)
            yield work
            if work.events:
                self._append(tx, work.events, now)

    def _append(self, tx: SeatTx, events: list[dict[str, Any]], now: int) -> None:
        last = tx.last_event()
        if last is None:
            anchor = json.loads(tx.get_meta("usage_anchor") or "null") or {"seq": 0, "hash": usage.GENESIS}
            seq, prev = int(anchor["seq"]), str(anchor["hash"])
        else:
            seq, prev = last
        for body in events:
            seq += 1
            text = usage.encode(seq, body)
            prev = usage.chain(prev, text)
            tx.append_event(seq, body["time"], body["event"], body.get("leaseId"), body.get("accessTime"), text, prev)
            self.counters[body["event"]] = self.counters.get(body["event"], 0) + 1
        self._sign_head(tx, seq, prev, now)

    def _sign_head(self, tx: SeatTx, seq: int, digest: str, now: int) -> None:
        anchor = json.loads(tx.get_meta("usage_anchor") or "null") or {"seq": 0, "hash": usage.GENESIS}
        payload = {"seq": seq, "hash": digest, "anchor_seq": anchor["seq"], "anchor_hash": anchor["hash"], "time": now}
        if self.signer is not None:
            doc = self.signer(usage.HEAD_TYPE, payload)
        else:
            doc = {"payload": payload, "kid": "", "sig": ""}
        tx.set_meta("usage_head", json.dumps(doc, sort_keys=True))

    @staticmethod
    def _finish(w: _Work, lease: Lease, state: str, end: int, kind: str, reason: str = "") -> None:
        was_live = lease.state == ACTIVE
        lease.state = state
        lease.end_time = end if was_live or lease.end_time is None else lease.end_time
        lease.linger_until = None
        w.tx.save(lease)
        if was_live:
            w.events.append(usage.lease_event(kind, w.now, lease, end=end, reason=reason))

    def _new_lease(
        self, w: _Work, client: Client, lic: SeatLicense, mode: str, seat: str | None, feature_code: int,
        *, lease_id: str | None = None, expires: int | None = None, borrower: dict[str, Any] | None = None,
    ) -> Lease:
        lid = lease_id or self._lease_id(w.now)
        lease = Lease(
            id=lid,
            client_lease_id=client.client_lease_id,
            license_key=lic.key,
            firm_code=lic.firm_code,
            product_code=lic.product_code,
            license_id=lic.license_id,
            feature_code=feature_code,
            feature_map=lic.feature_map,
            ticket=lic.ticket,
            mode=mode,
            seat=lid if seat is None else seat,
            user=client.user,
            host=client.host,
            ip=client.ip,
            groups=tuple(client.groups),
            pid=client.pid,
            access_time=w.now,
            renewed=w.now,
            expires=w.now + self.ttl if expires is None else expires,
            borrower=borrower,
        )
        w.tx.insert(lease)
        w.events.append(usage.lease_event(BORROW if mode == BORROW else "access", w.now, lease))
        return lease

    def _lease_id(self, now: int) -> str:
        """Time-ordered (new rows go to the end of the index), unique per engine instance.
        A lease id is no secret: renewing or releasing also needs the client's lease id."""
        self._seq = (self._seq + 1) & 0xFFFFFF
        return f"{now:09x}{self._seq:06x}{self._salt}"

    def record_denial(
        self, client: Client, *, firm_code: int, product_code: int, feature_code: int = 0, mode: str = "user",
        invalid: bool, reason: str,
    ) -> None:
        """A refusal decided outside the engine (no license, expired, features missing...)."""
        now = self.clock()
        with self._work(now) as w:
            w.events.append(usage.denial_event(now, client, firm_code=firm_code, product_code=product_code,
                                               feature_code=feature_code, mode=mode, invalid=invalid, reason=reason))

    # ------------------------------------------------------------ access

    def acquire(
        self,
        client: Client,
        *,
        firm_code: int,
        product_code: int,
        feature_code: int = 0,
        mode: str = "user",
        candidates: Sequence[SeatLicense],
        reconnect: bool = True,
    ) -> Lease:
        """A lease on the first candidate with a seat for this client, or raise Refusal.

        With ``reconnect`` (the default) a client lease id that names a live lease gets that
        lease back; a caller that knows the id is new (a first access) may skip the look-up."""
        if mode not in MODES:
            raise ValueError(f"mode is one of {', '.join(MODES)}")
        now = self.clock()
        refusal: Refusal | None = None
        with self._work(now) as w:
            keys = {c.key for c in candidates}
            prev = w.tx.lease_by_client(client.client_lease_id) if reconnect else None
            if prev is not None and prev.mode != BORROW and prev.state in (ACTIVE, LINGERING):
                if prev.live(now) and prev.license_key in keys:
                    # the same client again (a retry, or back after a network drop): its own seat
                    prev.state, prev.linger_until = ACTIVE, None
                    prev.expires, prev.renewed, prev.ip = now + self.ttl, now, client.ip or prev.ip
                    w.tx.save(prev)
                    w.events.append(usage.lease_event("renew", now, prev, reason="reconnect"))
                    return prev
                if prev.state == ACTIVE:
                    self._finish(w, prev, EXPIRED, min(prev.expires, now), "expire")
            result = self._grant(w, client, firm_code, product_code, feature_code, mode, candidates)
            if isinstance(result, Lease):
                return result
            refusal = result
            w.events.append(usage.denial_event(now, client, firm_code=firm_code, product_code=product_code,
                                               feature_code=feature_code, mode=mode, invalid=False,
                                               reason=refusal.log))
        log.info("refused %s for %s:%s: %s", client.ident, firm_code, product_code, refusal.log)
        raise refusal

    def _grant(
        self, w: _Work, client: Client, firm: int, product: int, feature_code: int, mode: str,
        candidates: Sequence[SeatLicense],
    ) -> Lease | Refusal:
        if not candidates:
            return Refusal(E.LicenseNotFound, f"the license server has no license for {firm}:{product}")
        admitted = self.acl.admit(client, firm, product)
        if admitted is not None:
            return admitted
        if mode == "nolimit":
            for lic in candidates:
                if lic.quantity == 0:
                    return self._new_lease(w, client, lic, mode, "", feature_code)
            return Refusal(
                E.AccessDenied,
                "this license counts seats: the 'nolimit' access mode needs a license without a seat limit",
                f"{client.ident}: nolimit asked for, every license of {firm}:{product} counts seats",
            )
        tx, now = w.tx, w.now
        seat_rules = self.acl.has_seat_rules(firm, product)
        holders = tx.live_leases([c.key for c in candidates], now) if seat_rules else []
        total = None if any(c.quantity == 0 for c in candidates) else sum(c.quantity for c in candidates)
        refusals: list[Refusal] = []
        exhausted: list[Refusal] = []  # per license: no seat left
        used_total = 0
        for lic in candidates:
            cid = client.client_lease_id
            if mode == "exclusive" and tx.on_host(lic.key, client.host, now, cid, mode=None):
                refusals.append(Refusal(
                    E.AccessDenied,
                    "another process on this host uses this license: exclusive access allows one process per host",
                    f"{client.ident}: exclusive refused, {lic.key} is in use on {client.host}",
                ))
                continue
            if mode != "exclusive" and tx.on_host(lic.key, client.host, now, cid, mode="exclusive"):
                refusals.append(Refusal(
                    E.AccessDenied,
                    "a process on this host holds this license in exclusive mode",
                    f"{client.ident}: {lic.key} is held exclusively on {client.host}",
                ))
                continue
            seat: str | None = None
            if mode == "station":
                seat = f"station:{client.user}@{client.host}"
                if tx.seat_live(lic.key, seat, now):
                    return self._new_lease(w, client, lic, mode, seat, feature_code)  # joins the shared seat
            elif mode == "exclusive":
                seat = f"exclusive:{client.host}"
            elif self.linger > 0:
                lingering = tx.lingering_of(lic.key, client.user, client.host, now)
                if lingering is not None:  # the same user back on the same host: the lingering seat
                    lingering.state = RELEASED
                    tx.save(lingering)
                    return self._new_lease(w, client, lic, mode, lingering.seat, feature_code)
            if lic.quantity > 0:
                used = tx.count_seats(lic.key, now)
                used_total += used
                if used >= lic.quantity:
                    exhausted.append(Refusal(
                        E.SeatsExhausted,
                        f"all {lic.quantity} seat(s) of license {lic.license_id} are in use",
                        f"{client.ident}: {used}/{lic.quantity} seats of {lic.key} in use",
                        seats=lic.quantity,
                        in_use=used,
                    ))
                    refusals.append(exhausted[-1])
                    continue
            if seat_rules:
                refused = self.acl.check_new_seat(client, firm, product, total, holders)
                if refused is not None:
                    refusals.append(refused)
                    continue
            return self._new_lease(w, client, lic, mode, seat, feature_code)
        best = max(refusals, key=lambda r: r.rank)
        if total is not None and len(refusals) > 1 and all(any(r is x for x in exhausted) for r in refusals):
            in_use = max(used_total, best.in_use or 0)
            return Refusal(
                E.SeatsExhausted,
                f"all {total} seat(s) of product {firm}:{product} on this license server are in use; try again "
                "later or ask for more seats",
                "; ".join(r.log for r in refusals),
                seats=total,
                in_use=in_use,
            )
        return best

    def renew(self, lease_id: str, client_lease_id: str) -> Lease:
        now = self.clock()
        error: LeaseUnknown | None = None
        with self._work(now) as w:
            lease = w.tx.lease(lease_id)
            if lease is None or lease.client_lease_id != client_lease_id or lease.mode == BORROW:
                error = LeaseUnknown("no such lease")
            elif lease.state == REVOKED:
                error = LeaseRevoked("the administrator released this lease")
            elif lease.state != ACTIVE:
                error = LeaseUnknown(f"lease {lease.state}")
            elif lease.expires <= now:
                self._finish(w, lease, EXPIRED, lease.expires, "expire")
                error = LeaseUnknown("lease expired")
            else:
                lease.expires, lease.renewed = now + self.ttl, now
                w.tx.save(lease)
                w.events.append(usage.lease_event("renew", now, lease))
                return lease
        assert error is not None
        raise error

    def release(self, lease_id: str, client_lease_id: str | None = None, *, admin: bool = False) -> bool:
        """End a lease (linger keeps its seat a while). ``admin``: the client may not renew it."""
        now = self.clock()
        with self._work(now) as w:
            lease = w.tx.lease(lease_id)
            if lease is None or (client_lease_id is not None and lease.client_lease_id != client_lease_id):
                return False
            if admin:
                if not lease.live(now):
                    return False
                # an active lease ends now; a lingering one gives its seat up at once
                self._finish(w, lease, REVOKED, now, "revoke", reason="released by the administrator")
                return True
            if lease.state != ACTIVE or lease.mode == BORROW:
                return False
            if lease.expires <= now:
                self._finish(w, lease, EXPIRED, lease.expires, "expire")
                return True
            if self.linger > 0 and lease.mode != "nolimit":
                lease.state, lease.linger_until, lease.end_time = LINGERING, now + self.linger, now
                w.tx.save(lease)
                w.events.append(usage.lease_event("release", now, lease, end=now))
            else:
                self._finish(w, lease, RELEASED, now, "release")
            return True

    def sweep(self, limit: int = 1000) -> int:
        """Expire leases whose heartbeats stopped, end lingering seats and lapsed borrows."""
        now = self.clock()
        with self._work(now) as w:
            due = w.tx.due(now, limit)
            for lease in due:
                if lease.state == ACTIVE:
                    self._finish(w, lease, EXPIRED, lease.expires, "expire")
                else:
                    lease.state, lease.linger_until = RELEASED, None
                    w.tx.save(lease)
        return len(due)

    # ------------------------------------------------------------ borrowing

    def borrow(
        self,
        client: Client,
        *,
        firm_code: int,
        product_code: int,
        feature_code: int = 0,
        days: int,
        borrower: dict[str, Any],
        candidates: Sequence[SeatLicense],
    ) -> Lease:
        """Take a seat into the client container ``borrower`` (``serial``, ``sign_pub``,
        ``box_pub``) for up to ``days`` (capped by the admin's max_days and the license)."""
        now = self.clock()
        refusal: Refusal | None = None
        with self._work(now) as w:
            result = self._borrow(w, client, firm_code, product_code, feature_code, days, borrower, candidates)
            if isinstance(result, Lease):
                return result
            refusal = result
            w.events.append(usage.denial_event(now, client, firm_code=firm_code, product_code=product_code,
                                               feature_code=feature_code, mode=BORROW, invalid=False,
                                               reason=refusal.log))
        log.info("refused borrowing %s:%s to %s: %s", firm_code, product_code, client.ident, refusal.log)
        raise refusal

    def _borrow(
        self, w: _Work, client: Client, firm: int, product: int, feature_code: int, days: int,
        borrower: dict[str, Any], candidates: Sequence[SeatLicense],
    ) -> Lease | Refusal:
        if not candidates:
            return Refusal(E.LicenseNotFound, f"the license server has no license for {firm}:{product}")
        if days < 1:
            return Refusal(E.AccessDenied, "borrow for at least one day", f"{client.ident}: borrow days={days}")
        refused = self.acl.admit(client, firm, product) or self.acl.may_borrow(client)
        if refused is not None:
            return refused
        tx, now = w.tx, w.now
        for lic in candidates:
            held = tx.borrowed_by(lic.key, borrower["serial"], now)
            if held is not None:
                return held  # this container borrowed it already
        policy = self.acl.borrow
        keys = [c.key for c in candidates]
        if policy.max_seats is not None and tx.count_borrowed(keys, now) >= policy.max_seats:
            return Refusal(
                E.AccessDenied,
                "the license server lends no more seats of this product now; ask its administrator",
                f"{client.ident}: [borrow] max_seats {policy.max_seats} reached for {firm}:{product}",
            )
        seat_rules = self.acl.has_seat_rules(firm, product)
        holders = tx.live_leases(keys, now) if seat_rules else []
        total = None if any(c.quantity == 0 for c in candidates) else sum(c.quantity for c in candidates)
        refusals: list[Refusal] = []
        span = min(days, policy.max_days) * DAY
        for lic in candidates:
            if lic.quantity > 0:
                used = tx.count_seats(lic.key, now)
                if used >= lic.quantity:
                    refusals.append(Refusal(
                        E.SeatsExhausted, f"all {lic.quantity} seat(s) of license {lic.license_id} are in use",
                        f"{client.ident}: borrow, {used}/{lic.quantity} seats of {lic.key} in use",
                        seats=lic.quantity, in_use=used,
                    ))
                    continue
            if seat_rules:
                refused = self.acl.check_new_seat(client, firm, product, total, holders)
                if refused is not None:
                    refusals.append(refused)
                    continue
            until = now + span
            if lic.valid_until is not None:
                until = min(until, lic.valid_until)
            if until <= now:
                refusals.append(Refusal(E.LicenseExpired, "the license ends before a borrow could start",
                                        f"{lic.key} valid until {lic.valid_until}"))
                continue
            lid = self._lease_id(now)
            return self._new_lease(w, client, lic, BORROW, f"borrow:{lid}", feature_code, lease_id=lid,
                                   expires=until, borrower=dict(borrower))
        return max(refusals, key=lambda r: r.rank)

    def end_borrow(self, borrow_id: str, serial: str) -> Lease | None:
        """The client container ``serial`` gave a borrowed seat back (its receipt was checked)."""
        now = self.clock()
        with self._work(now) as w:
            lease = w.tx.lease(borrow_id)
            if lease is None or lease.mode != BORROW or (lease.borrower or {}).get("serial") != serial:
                return None
            if lease.state == ACTIVE:
                self._finish(w, lease, RETURNED, min(now, lease.expires), "return")
            return lease

    def borrow_lease(self, borrow_id: str) -> Lease | None:
        with self.store.snapshot() as tx:
            lease = tx.lease(borrow_id)
        return lease if lease is not None and lease.mode == BORROW else None

    # ------------------------------------------------------------ views

    def sessions(self) -> list[Lease]:
        now = self.clock()
        with self.store.snapshot() as tx:
            return tx.all_live(now)

    def seats_in_use(self, license_keys: Sequence[str]) -> dict[str, int]:
        now = self.clock()
        with self.store.snapshot() as tx:
            return {key: tx.count_seats(key, now) for key in license_keys}

    def lease(self, lease_id: str) -> Lease | None:
        with self.store.snapshot() as tx:
            return tx.lease(lease_id)

    def usage(self, start: int, end: int, *, events: bool = False) -> list[dict[str, Any]]:
        """The license-usage view (or, with ``events``, every raw event) for [start, end)."""
        now = self.clock()
        with self.store.snapshot() as tx:
            if events:
                return [json.loads(b) for b in tx.events_between(start, end, ())]
            sessions = [json.loads(b) for b in tx.sessions_between(start, end)]
            finals = [json.loads(b) for b in tx.final_events([s["leaseId"] for s in sessions])]
            denials = [json.loads(b) for b in tx.events_between(start, end, ("deny",))]
        return usage.license_usage(sessions, finals, denials, now)

    def verify_usage(self, public_key: hazmat.Ed25519PublicKey | None) -> dict[str, Any]:
        with self.store.snapshot() as tx:
            return usage.verify_log(tx, public_key)

    def prune(self) -> int:
        """Drop events older than the retention; the signed head keeps the chain's anchor."""
        if not self.retention_days:
            return 0
        now = self.clock()
        cutoff = now - self.retention_days * DAY
        with self.store.transaction() as tx:
            seq = tx.last_seq_before(cutoff)
            if seq is None:
                return 0
            digest = tx.event_hash(seq)
            if digest is None:
                return 0
            removed = tx.delete_events_through(seq)
            tx.set_meta("usage_anchor", json.dumps({"seq": seq, "hash": digest}))
            last = tx.last_event()
            self._sign_head(tx, *(last if last is not None else (seq, digest)), now)
        return removed
