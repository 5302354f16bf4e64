"""The seat engine: leases, access modes, access rules, borrowing, usage events.

No HTTP and no clock of its own: the caller passes a clock (a callable returning Unix
seconds), the licenses it may lend (their options already checked), and who asks.
Each operation is one store transaction, committed before the method returns, so what
the engine acknowledged survives a crash; the usage events of the operation are
written in the same transaction (a denial too: the refusal is raised after commit).

Seats. A lease occupies the seat named by ``(license, seat)``:

- ``user``: a seat of its own;
- ``station``: the seat of the client's proven machine (its machine container's serial,
  proven by a signature, with the source address the server sees: all processes of one
  user's container on one machine share it); a client that proved no machine shares
  nothing (a seat of its own);
- ``exclusive``: the seat of the proven machine; any other live lease of the license on
  that machine refuses an exclusive request, and an exclusive lease refuses every other
  process there (other machines take their own seats);
- ``nolimit``: no seat; only on a license whose quantity is 0 (no seat limit);
- ``borrow``: a seat taken into a client's container until it expires or is returned.

A lease lives until ``expires`` (renewed by heartbeats, ``ttl`` seconds each); a
release keeps the seat ``linger`` seconds more. A request carrying the client lease id
of a live lease gets that lease back (a reconnect never takes a second seat) when it
comes from the lease's holder: the session key that signed the first request. Renewals
and releases of a lease with a holder are signed by it over the lease id and a counter
that only goes up (kept in the store), so a lease id is no bearer token and a replayed
renewal or release fails; a request without a valid proof is refused and logged.

Grace. A lease may carry grace (the smaller of what the client asks, the license's
``max_grace`` and the server's cap; only for a client that proved its machine container,
where the client holds it): its seat stays counted until ``grace_until`` even when the
client goes silent or releases it, unless the container's return receipt ends the grace
(``end_grace``). A new process of the same user on the same machine takes such a seat
over (and its grace with it) instead of taking a second one.

Usage log. With a ``pseudonymiser`` the events name users, hosts, addresses and seats by
keyed hashes (the leases keep the real names: status and the admin page show them).
``usage_uploads`` yields the signed uploads of the log to License Central after its
stored anchor; ``record_anchor`` keeps the anchor Central answers, checked against the
firm keys and the local chain; ``prune`` never drops an event after that anchor.
"""

from __future__ import annotations

import contextlib
import json
import logging
import secrets
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..core import anchoring, grants, hazmat
from ..core import errors as E
from ..core.documents import DocumentInvalid, parse
from . import usage
from .acl import EMPTY, Acl
from .model import (
    ACTIVE,
    BORROW,
    EXPIRED,
    GRACE,
    LINGERING,
    LOST,
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


@dataclass
class _Pool:
    """The licenses of one product a request may take a new seat of, and why each refused."""

    tx: SeatTx
    now: int
    firm: int
    product: int
    total: int | None  # seats over all the licenses; None when one has no seat limit
    holders: list[Lease] | None  # the product's live leases when it has reserve or max rules
    refusals: list[Refusal] = field(default_factory=list)
    exhausted: list[Refusal] = field(default_factory=list)  # per license: no seat left
    used: int = 0  # seats found in use

    @classmethod
    def of(cls, w: _Work, acl: Acl, firm: int, product: int, candidates: Sequence[SeatLicense]) -> _Pool:
        holders = w.tx.live_leases([c.key for c in candidates], w.now) if acl.has_seat_rules(firm, product) else None
        total = None if any(c.quantity == 0 for c in candidates) else sum(c.quantity for c in candidates)
        return cls(w.tx, w.now, firm, product, total, holders)

    def refusal(self) -> Refusal:
        """The refusal closest to success; when every license of a limited pool refused for
        want of a seat, one that counts the seats of the whole product."""
        best = max(self.refusals, key=lambda r: r.rank)
        pooled = len(self.refusals) > 1 and all(any(r is x for x in self.exhausted) for r in self.refusals)
        if self.total is None or not pooled:
            return best
        return Refusal(
            E.SeatsExhausted,
            f"all {self.total} seat(s) of product {self.firm}:{self.product} on this license server are in use; "
            "try again later or ask for more seats",
            "; ".join(r.log for r in self.refusals),
            seats=self.total,
            in_use=max(self.used, best.in_use or 0),
        )


def _seat_name(client: Client, mode: str) -> str | None:
    """The seat a mode shares (None: a seat of the lease's own). Shared seats go by the
    machine the client proved, never by the names it reports."""
    if client.machine is None:
        return None
    if mode == "station":
        return f"station:{client.machine}"
    if mode == "exclusive":
        return f"exclusive:{client.machine}"
    return None


def _host_conflict(w: _Work, client: Client, lic: SeatLicense, mode: str) -> Refusal | None:
    """An exclusive lease allows no other process of its machine, and needs a machine with none."""
    cid = client.client_lease_id
    machine = client.machine
    if machine is None:
        return None  # nothing proven to compare: a seat of its own
    if mode == "exclusive":
        if w.tx.on_machine(lic.key, machine, w.now, cid, mode=None):
            return Refusal(
                E.AccessDenied,
                "another process on this host uses this license: exclusive access allows one process per host",
                f"{client.ident}: exclusive refused, {lic.key} is in use on {client.host}",
            )
    elif w.tx.on_machine(lic.key, machine, w.now, cid, mode="exclusive"):
        return Refusal(
            E.AccessDenied,
            "a process on this host holds this license in exclusive mode",
            f"{client.ident}: {lic.key} is held exclusively on {client.host}",
        )
    return None


def _grace_record(container: dict[str, Any] | None) -> tuple[Any, Any, Any]:
    """Which grace record of a client container a lease's grace is: the container (serial,
    key) and the server URL its machine proof named (the container keeps one per URL)."""
    known = container or {}
    return known.get("serial"), known.get("sign_pub"), known.get("server")


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
        pseudonymiser: usage.Pseudonymiser | None = None,
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
        self.pseudonymiser = pseudonymiser
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
            text = usage.encode(seq, body if self.pseudonymiser is None else self.pseudonymiser.apply(body))
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
        was_live = lease.state in (ACTIVE, LOST, GRACE)
        lease.state = state
        lease.end_time = end if was_live or lease.end_time is None else lease.end_time
        lease.linger_until = None
        w.tx.save(lease)
        if was_live:
            w.events.append(usage.lease_event(kind, w.now, lease, end=end, reason=reason))

    @staticmethod
    def _grace_until(w: _Work, client: Client, lic: SeatLicense, grace: int) -> int | None:
        """Until when a new lease's seat stays counted for its grace (None: no grace)."""
        span = min(grace, lic.max_grace)
        if span <= 0 or client.machine is None or client.container is None:
            return None  # grace is held in a proven machine container, or not at all
        until = w.now + span if lic.valid_until is None else min(w.now + span, lic.valid_until)
        return until if until > w.now else None

    def _new_lease(
        self,
        w: _Work,
        client: Client,
        lic: SeatLicense,
        mode: str,
        seat: str | None,
        feature_code: int,
        *,
        lease_id: str | None = None,
        expires: int | None = None,
        borrower: dict[str, Any] | None = None,
        grace_until: int | None = None,
    ) -> Lease:
        if grace_until is not None:
            borrower = dict(client.container or {})
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
            holder=client.holder,
            machine=client.machine,
            grace_until=grace_until,
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
        self,
        client: Client,
        *,
        firm_code: int,
        product_code: int,
        feature_code: int = 0,
        mode: str = "user",
        invalid: bool,
        reason: str,
    ) -> None:
        """A refusal decided outside the engine (no license, expired, features missing...)."""
        now = self.clock()
        with self._work(now) as w:
            w.events.append(
                usage.denial_event(
                    now,
                    client,
                    firm_code=firm_code,
                    product_code=product_code,
                    feature_code=feature_code,
                    mode=mode,
                    invalid=invalid,
                    reason=reason,
                )
            )

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
        grace: int = 0,
        counter: int = 0,
    ) -> Lease:
        """A lease on the first candidate with a seat for this client, or raise Refusal.

        A client lease id that names a live lease gets that lease back when the lease's
        holder asks, and a refusal when another session does: always looked up, whatever
        the client says of it (a request's ``"reconnect": false`` is the client's word, and
        skipping the look-up let other processes stack leases on one seat by naming it).
        ``grace``: the seconds of grace the client asks for (capped per license).
        ``counter``: the request's signed counter. A request naming a client lease id its
        holder used before (a seat asked back after a drop) carries one above every counter
        that lease was signed with, and the lease keeps it: a replayed request, the first
        access included (its counter 0), is refused."""
        if mode not in MODES:
            raise ValueError(f"mode is one of {', '.join(MODES)}")
        now = self.clock()
        with self._work(now) as w:
            back = self._reconnect(w, client, candidates, counter)
            if isinstance(back, Lease):
                return back
            result = back or self._grant(w, client, firm_code, product_code, feature_code, mode, candidates, grace)
            if isinstance(result, Lease):
                if counter > result.proof_counter:  # a seat asked back: its replay is refused too
                    result.proof_counter = counter
                    w.tx.save(result)
                return result
            self._deny(w, client, firm_code, product_code, feature_code, mode, result)
        log.info("refused %s for %s:%s: %s", client.ident, firm_code, product_code, result.log)
        raise result

    @staticmethod
    def _deny(
        w: _Work, client: Client, firm: int, product: int, feature_code: int, mode: str, refusal: Refusal
    ) -> None:
        w.events.append(
            usage.denial_event(
                w.now,
                client,
                firm_code=firm,
                product_code=product,
                feature_code=feature_code,
                mode=mode,
                invalid=False,
                reason=refusal.log,
            )
        )

    def _reconnect(
        self, w: _Work, client: Client, candidates: Sequence[SeatLicense], counter: int
    ) -> Lease | Refusal | None:
        """The live lease of this client lease id back (back after a network drop: its own
        seat) when its holder asks with a counter above the lease's; a lease of it that ran
        out ends here. Another session naming a live lease's client lease id is refused, and
        so is the holder's request with a counter the lease has seen (a replay)."""
        prev = w.tx.lease_by_client(client.client_lease_id)
        if prev is None:
            return None
        if prev.holder is not None and prev.holder == client.holder and counter <= prev.proof_counter:
            return Refusal(
                E.AccessDenied,
                "this request was answered already",
                f"{client.ident}: request for lease {prev.id} replayed (counter {counter}, the lease's "
                f"{prev.proof_counter})",
            )
        if prev.mode == BORROW or prev.state not in (ACTIVE, LINGERING):
            return None
        now = w.now
        if prev.holder is not None and prev.holder != client.holder and prev.live(now):
            return Refusal(
                E.AccessDenied,
                "this client lease id belongs to another session",
                f"{client.ident}: client lease id of lease {prev.id} from another session key",
            )
        if prev.live(now) and any(c.key == prev.license_key for c in candidates):
            prev.state, prev.linger_until = ACTIVE, None
            prev.expires, prev.renewed, prev.ip = now + self.ttl, now, client.ip or prev.ip
            prev.proof_counter = max(prev.proof_counter, counter)
            w.tx.save(prev)
            w.events.append(usage.lease_event("renew", now, prev, reason="reconnect"))
            return prev
        if prev.state == ACTIVE:
            if (prev.grace_until or 0) > now:  # its grace is held in the container: counted for it
                self._keep_for_grace(w, prev, now)
            else:
                self._finish(w, prev, EXPIRED, min(prev.expires, now), "expire")
        return None

    def _grant(
        self,
        w: _Work,
        client: Client,
        firm: int,
        product: int,
        feature_code: int,
        mode: str,
        candidates: Sequence[SeatLicense],
        grace: int = 0,
    ) -> Lease | Refusal:
        if not candidates:
            return Refusal(E.LicenseNotFound, f"the license server has no license for {firm}:{product}")
        admitted = self.acl.admit(client, firm, product)
        if admitted is not None:
            return admitted
        if mode == "nolimit":
            return self._grant_unlimited(w, client, firm, product, feature_code, candidates)
        pool = _Pool.of(w, self.acl, firm, product, candidates)
        for lic in candidates:
            refused = _host_conflict(w, client, lic, mode)
            if refused is not None:
                pool.refusals.append(refused)
                continue
            until = self._grace_until(w, client, lic, grace)
            old = self._grace_to_take_over(w, client, lic, mode)
            if old is not None:
                inherited = max(until or 0, old.grace_until or 0)
                return self._new_lease(w, client, lic, mode, old.seat, feature_code, grace_until=inherited)
            seat = self._seat_to_take_back(w, client, lic, mode)
            if seat is not None:
                return self._new_lease(w, client, lic, mode, seat, feature_code, grace_until=until)
            refused = self._new_seat_refusal(pool, client, lic)
            if refused is not None:
                pool.refusals.append(refused)
                continue
            return self._new_lease(w, client, lic, mode, _seat_name(client, mode), feature_code, grace_until=until)
        return pool.refusal()

    def _grace_to_take_over(self, w: _Work, client: Client, lic: SeatLicense, mode: str) -> Lease | None:
        """The seat of this user's lease on this machine that only its grace keeps counted (a
        crashed or restarted process): the new lease takes it, and that grace, over. Only
        under the server URL the old lease's grace record was kept under: a new process that
        names another URL keeps a record of its own in the container, whose receipt would
        end a taken-over grace while the old record stays there."""
        if client.machine is None or mode == "station":  # a station seat is shared anyway
            return None
        old = w.tx.on_grace_of(lic.key, client.user, client.machine, mode, w.now)
        if old is None or _grace_record(old.borrower) != _grace_record(client.container):
            return None
        self._finish(
            w,
            old,
            RELEASED,
            min(old.expires, w.now),
            "release",
            reason="its seat and grace taken over by a new process of its machine",
        )
        return old

    def _grant_unlimited(
        self,
        w: _Work,
        client: Client,
        firm: int,
        product: int,
        feature_code: int,
        candidates: Sequence[SeatLicense],
    ) -> Lease | Refusal:
        """``nolimit``: no seat, on the first license without a seat limit."""
        for lic in candidates:
            if lic.quantity == 0:
                return self._new_lease(w, client, lic, "nolimit", "", feature_code)
        return Refusal(
            E.AccessDenied,
            "this license counts seats: the 'nolimit' access mode needs a license without a seat limit",
            f"{client.ident}: nolimit asked for, every license of {firm}:{product} counts seats",
        )

    def _seat_to_take_back(self, w: _Work, client: Client, lic: SeatLicense, mode: str) -> str | None:
        """A seat this client takes without counting a new one: the live shared seat of its
        station, or (with linger) the lingering seat of the same user on the same host."""
        if mode == "station":
            seat = _seat_name(client, mode)
            return seat if seat is not None and w.tx.seat_live(lic.key, seat, w.now) else None
        if mode == "exclusive" or self.linger <= 0 or client.machine is None:
            return None
        lingering = w.tx.lingering_of(lic.key, client.user, client.machine, w.now)
        if lingering is None:
            return None
        lingering.state = RELEASED
        w.tx.save(lingering)
        return lingering.seat

    def _new_seat_refusal(self, pool: _Pool, client: Client, lic: SeatLicense, what: str = "") -> Refusal | None:
        """Why ``client`` may not take a new seat of ``lic`` (None: it may): every seat in use,
        or the product's reserve and max rules."""
        if lic.quantity > 0:
            used = pool.tx.count_seats(lic.key, pool.now)
            pool.used += used
            if used >= lic.quantity:
                refusal = Refusal(
                    E.SeatsExhausted,
                    f"all {lic.quantity} seat(s) of license {lic.license_id} are in use",
                    f"{client.ident}: {what}{used}/{lic.quantity} seats of {lic.key} in use",
                    seats=lic.quantity,
                    in_use=used,
                )
                pool.exhausted.append(refusal)
                return refusal
        if pool.holders is not None:
            return self.acl.check_new_seat(client, pool.firm, pool.product, pool.total, pool.holders)
        return None

    @staticmethod
    def _unproven(w: _Work, lease: Lease, kind: str, counter: int | None, proof: str | None) -> bool:
        """Whether a renewal or release of a lease with a holder lacks a valid proof (then a
        denial is logged); a valid one moves the lease's counter."""
        if lease.holder is None:
            return False  # a lease made before proofs: the client lease id suffices
        if (
            isinstance(counter, int)
            and not isinstance(counter, bool)
            and counter > lease.proof_counter
            and grants.check_proof(lease.holder, kind, grants.lease_proof_payload(lease.id, counter), proof)
        ):
            lease.proof_counter = counter
            return False
        why = (
            "replayed (counter not above the last)"
            if isinstance(counter, int) and counter <= lease.proof_counter
            else "without a valid proof of the lease's key"
        )
        client = Client(lease.client_lease_id, lease.user, lease.host, lease.ip, lease.pid, lease.groups)
        w.events.append(
            usage.denial_event(
                w.now,
                client,
                firm_code=lease.firm_code,
                product_code=lease.product_code,
                feature_code=lease.feature_code,
                mode=lease.mode,
                invalid=True,
                reason=f"{kind} of lease {lease.id} {why}",
            )
        )
        log.warning("%s of lease %s refused: %s", kind, lease.id, why)
        return True

    def renew(
        self, lease_id: str, client_lease_id: str, *, counter: int | None = None, proof: str | None = None
    ) -> Lease:
        now = self.clock()
        error: LeaseUnknown  # set on every path that does not return: raised once the work is stored
        with self._work(now) as w:
            lease = w.tx.lease(lease_id)
            if (
                lease is None
                or lease.client_lease_id != client_lease_id
                or lease.mode == BORROW
                or self._unproven(w, lease, grants.LEASE_RENEW, counter, proof)
            ):
                error = LeaseUnknown("no such lease")
            elif lease.state in (REVOKED, LOST):
                error = LeaseRevoked("the administrator released this lease")
            elif lease.state != ACTIVE:
                error = LeaseUnknown(f"lease {lease.state}")
            elif lease.expires <= now and not lease.on_grace(now):
                self._finish(w, lease, EXPIRED, lease.expires, "expire")
                error = LeaseUnknown("lease expired")
            else:
                lease.expires, lease.renewed = now + self.ttl, now
                w.tx.save(lease)
                w.events.append(usage.lease_event("renew", now, lease))
                return lease
        raise error

    def release(
        self,
        lease_id: str,
        client_lease_id: str | None = None,
        *,
        admin: bool = False,
        counter: int | None = None,
        proof: str | None = None,
    ) -> bool:
        """End a lease (linger keeps its seat a while). ``admin``: the client may not renew it.
        A client's release of a lease with a holder carries its signed counter."""
        now = self.clock()
        with self._work(now) as w:
            lease = w.tx.lease(lease_id)
            if lease is None or (client_lease_id is not None and lease.client_lease_id != client_lease_id):
                return False
            if not admin and self._unproven(w, lease, grants.LEASE_RELEASE, counter, proof):
                return False
            if admin:
                if not lease.live(now):
                    return False
                if lease.mode == BORROW or (lease.grace_until or 0) > now:
                    return self._lose(w, lease)
                # an active lease ends now; a lingering one gives its seat up at once
                self._finish(w, lease, REVOKED, now, "revoke", reason="released by the administrator")
                return True
            if lease.state != ACTIVE or lease.mode == BORROW:
                return False
            if (lease.grace_until or 0) > now:
                # given up without the container's receipt: the grace it holds keeps the seat
                self._keep_for_grace(w, lease, now)
                return True
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

    @staticmethod
    def _keep_for_grace(w: _Work, lease: Lease, now: int) -> None:
        """A lease given up without its container's receipt: the grace the container holds
        keeps its seat counted until the grace ends or the receipt comes."""
        lease.state, lease.expires, lease.end_time = GRACE, min(lease.expires, now), now
        w.tx.save(lease)
        w.events.append(
            usage.lease_event(
                GRACE,
                now,
                lease,
                reason=f"counted until {lease.grace_until} unless the client container's return receipt comes",
            )
        )

    def withdraw(self, lease_id: str, reason: str) -> None:
        """End at once a lease this server granted but could not complete (its container
        refused the access's units): the server's own act, so no proof is asked and no
        linger kept; ``reason`` goes to the usage log."""
        now = self.clock()
        with self._work(now) as w:
            lease = w.tx.lease(lease_id)
            if lease is not None and lease.state == ACTIVE:
                self._finish(w, lease, RELEASED, now, "release", reason=reason)

    @staticmethod
    def _lose(w: _Work, lease: Lease) -> bool:
        """The administrator released a borrowed seat or one with grace: the borrowed copy (or
        the grace) works on until it ends, so the seat stays counted until then, unless a
        return receipt comes. The client may not renew it."""
        if lease.state == LOST:
            return False
        lease.state = LOST
        if lease.mode != BORROW:
            lease.expires = min(lease.expires, w.now)  # counted for its grace only
        w.tx.save(lease)
        w.events.append(
            usage.lease_event(
                LOST,
                w.now,
                lease,
                reason="released by the administrator; counted until the grant ends or the borrower returns it",
            )
        )
        log.warning(
            "borrowed seat %s released by the administrator: counted until %s unless returned", lease.id, lease.expires
        )
        return True

    def sweep(self, limit: int = 1000) -> int:
        """Expire leases whose heartbeats stopped, end lingering seats and lapsed borrows."""
        now = self.clock()
        with self._work(now) as w:
            due = w.tx.due(now, limit)
            for lease in due:
                if lease.state in (ACTIVE, LOST, GRACE):
                    self._finish(w, lease, EXPIRED, lease.live_until, "expire")
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
        with self._work(now) as w:
            result = self._borrow(w, client, firm_code, product_code, feature_code, days, borrower, candidates)
            if isinstance(result, Lease):
                return result
            self._deny(w, client, firm_code, product_code, feature_code, BORROW, result)
        log.info("refused borrowing %s:%s to %s: %s", firm_code, product_code, client.ident, result.log)
        raise result

    def _borrow(
        self,
        w: _Work,
        client: Client,
        firm: int,
        product: int,
        feature_code: int,
        days: int,
        borrower: dict[str, Any],
        candidates: Sequence[SeatLicense],
    ) -> Lease | Refusal:
        refused = self._may_borrow(client, firm, product, days, candidates)
        if refused is not None:
            return refused
        keys = (borrower.get("sign_pub"), borrower.get("box_pub"))
        for lic in candidates:
            held = w.tx.borrowed_by(lic.key, borrower["serial"], w.now)
            for lease in held:
                if ((lease.borrower or {}).get("sign_pub"), (lease.borrower or {}).get("box_pub")) == keys:
                    return lease  # this container borrowed it already: the same grant, for the same keys
            # another key that names this serial: refused while its borrow lives, unless the
            # administrator released that one (lost: counted until it ends, but it no longer
            # holds the serial: anyone can name a serial, and its own container must not be
            # locked out until a squatter's borrow ends)
            other = next((lease for lease in held if lease.state != LOST), None)
            if other is not None:
                return Refusal(
                    E.AccessDenied,
                    "this container serial has borrowed the license with other keys",
                    f"{client.ident}: borrow {other.id} of {lic.key} asked again for {borrower['serial']} with "
                    "another key",
                )
        refused = self._lending_cap(w, client, firm, product, candidates)
        if refused is not None:
            return refused
        pool = _Pool.of(w, self.acl, firm, product, candidates)
        span = min(days, self.acl.borrow.max_days) * DAY
        for lic in candidates:
            refused = self._new_seat_refusal(pool, client, lic, "borrow, ")
            until = w.now + span if lic.valid_until is None else min(w.now + span, lic.valid_until)
            if refused is None and until <= w.now:
                refused = Refusal(
                    E.LicenseExpired,
                    "the license ends before a borrow could start",
                    f"{lic.key} valid until {lic.valid_until}",
                )
            if refused is not None:
                pool.refusals.append(refused)
                continue
            lid = self._lease_id(w.now)
            return self._new_lease(
                w,
                client,
                lic,
                BORROW,
                f"borrow:{lid}",
                feature_code,
                lease_id=lid,
                expires=until,
                borrower=dict(borrower),
            )
        return max(pool.refusals, key=lambda r: r.rank)

    def _may_borrow(
        self, client: Client, firm: int, product: int, days: int, candidates: Sequence[SeatLicense]
    ) -> Refusal | None:
        """Whether this client may borrow at all: a license to lend, a span, the access rules."""
        if not candidates:
            return Refusal(E.LicenseNotFound, f"the license server has no license for {firm}:{product}")
        if days < 1:
            return Refusal(E.AccessDenied, "borrow for at least one day", f"{client.ident}: borrow days={days}")
        return self.acl.admit(client, firm, product) or self.acl.may_borrow(client)

    def _lending_cap(
        self, w: _Work, client: Client, firm: int, product: int, candidates: Sequence[SeatLicense]
    ) -> Refusal | None:
        """[borrow] max_seats: how many seats of the product may be out on loan at once."""
        cap = self.acl.borrow.max_seats
        if cap is None or w.tx.count_borrowed([c.key for c in candidates], w.now) < cap:
            return None
        return Refusal(
            E.AccessDenied,
            "the license server lends no more seats of this product now; ask its administrator",
            f"{client.ident}: [borrow] max_seats {cap} reached for {firm}:{product}",
        )

    def hold(
        self, client: Client, lic: SeatLicense, *, tag: str, seats: int, until: int, borrower: dict[str, Any]
    ) -> int:
        """Keep up to ``seats`` seats of ``lic`` held for ``tag`` (a proxy license server)
        until ``until``, as borrows into the container ``borrower``: the seats it holds are
        kept to then, new ones taken while the license has free seats, and the rest given
        back (all of them with ``seats`` 0 or ``until`` past). Other holders' seats are never
        touched. Returns how many seats ``tag`` holds now."""
        now = self.clock()
        prefix = f"{tag}#"
        with self._work(now) as w:
            mine = [
                lease
                for lease in w.tx.live_leases([lic.key], now)
                if lease.mode == BORROW and lease.seat.startswith(prefix) and lease.state in (ACTIVE, LOST)
            ]
            mine.sort(key=lambda lease: lease.seat)
            keep = mine[: max(0, seats)] if until > now else []
            for lease in mine[len(keep) :]:
                self._finish(w, lease, RETURNED, now, "return")
            for lease in keep:
                if lease.expires != until:
                    lease.expires = until
                    w.tx.save(lease)
            taken = {lease.seat for lease in keep}
            number = 0
            while len(taken) < seats and until > now:
                if lic.quantity > 0 and w.tx.count_seats(lic.key, now) >= lic.quantity:
                    break
                number += 1
                seat = f"{prefix}{number}"
                if seat in taken:
                    continue
                lid = self._lease_id(now)
                self._new_lease(w, client, lic, BORROW, seat, 0, lease_id=lid, expires=until, borrower=dict(borrower))
                taken.add(seat)
            return len(taken)

    def end_borrow(self, borrow_id: str, serial: str) -> Lease | None:
        """The client container ``serial`` gave a borrowed seat back (its receipt was checked)."""
        now = self.clock()
        with self._work(now) as w:
            lease = w.tx.lease(borrow_id)
            if lease is None or lease.mode != BORROW or (lease.borrower or {}).get("serial") != serial:
                return None
            if lease.state in (ACTIVE, LOST):
                self._finish(w, lease, RETURNED, min(now, lease.expires), "return")
            return lease

    def end_grace(self, lease_id: str, serial: str, sign_pub: str) -> list[Lease]:
        """The client container ``serial`` with the key ``sign_pub`` gave back the grace of a
        lease (its receipt was checked): it holds no grace record of that license and feature
        from this server under the URL it named any more (a container keeps one per server
        URL, product and feature), so no lease of them held there under that URL keeps its
        seat for grace; another feature's grace, or the grace of a lease taken under another
        URL of this server, stays. A container is its serial and its key: another key that
        claims the serial ends no grace but its own. Returns the leases it changed."""
        now = self.clock()
        changed: list[Lease] = []

        with self._work(now) as w:
            lease = w.tx.lease(lease_id)
            if lease is None or lease.mode == BORROW:
                return changed
            record = _grace_record(lease.borrower)
            if record[:2] != (serial, sign_pub):
                return changed
            for held in [lease, *w.tx.live_leases([lease.license_key], now)]:
                if held.mode == BORROW or _grace_record(held.borrower) != record or held.grace_until is None:
                    continue
                if held.feature_code != lease.feature_code:
                    continue
                if any(held.id == c.id for c in changed):
                    continue
                if held.state in (GRACE, LOST):
                    held.grace_until = None
                    self._finish(w, held, RETURNED, min(now, max(held.expires, held.end_time or 0)), "return")
                else:
                    held.grace_until = None
                    w.tx.save(held)
                changed.append(held)
        return changed

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

    def verify_usage(
        self,
        public_key: hazmat.Ed25519PublicKey | None,
        *,
        anchor_keys: dict[int, dict[str, hazmat.Ed25519PublicKey]] | None = None,
    ) -> dict[str, Any]:
        with self.store.snapshot() as tx:
            return usage.verify_log(tx, public_key, anchor_keys=anchor_keys)

    def prune(self) -> int:
        """Drop events older than the retention, but none after the stored License Central
        anchor (every event reaches Central once); the signed head keeps the chain's anchor."""
        if not self.retention_days:
            return 0
        now = self.clock()
        cutoff = now - self.retention_days * DAY
        with self.store.transaction() as tx:
            seq = tx.last_seq_before(cutoff)
            anchor = usage.stored_anchor(tx)
            if seq is not None and anchor is not None:
                seq = min(seq, anchor.seq)
            pruned = json.loads(tx.get_meta("usage_anchor") or "null")
            if seq is None or (pruned is not None and seq <= int(pruned["seq"])):
                return 0
            digest = tx.event_hash(seq)
            if digest is None:
                return 0
            removed = tx.delete_events_through(seq)
            tx.set_meta("usage_anchor", json.dumps({"seq": seq, "hash": digest}))
            last = tx.last_event()
            self._sign_head(tx, *(last if last is not None else (seq, digest)), now)
        return removed

    # ------------------------------------------------------------ License Central

    def usage_uploads(
        self,
        sign: Signer,
        serial: str,
        *,
        base: tuple[int, str] | None = None,
        max_events: int = anchoring.MAX_EVENTS,
        max_bytes: int = anchoring.MAX_EVENT_BYTES,
    ) -> Iterator[dict[str, Any]]:
        """The signed uploads of the log to License Central, in order: the events after the
        stored anchor (or after ``base``, a ``(seq, hash)`` of the local chain), each upload
        extending the one before. ``sign`` is the server container's ``sign``; ``serial``
        its serial. Each chunk is read in a transaction of its own: none is open while the
        caller sends one."""
        now = self.clock()
        if base is None:
            with self.store.snapshot() as tx:
                base = usage.upload_base(tx)
        seq, digest = base
        while True:
            with self.store.snapshot() as tx:
                rows = usage.next_chunk(tx, seq, max_events=max_events, max_bytes=max_bytes)
            if not rows:
                return
            bodies = [body for _, body in rows]
            doc = usage.build_upload(
                sign,
                serial=serial,
                time=now,
                base_seq=seq,
                base_hash=digest,
                bodies=bodies,
                pseudonymised=usage.pseudonymised(bodies),
            )
            yield doc
            seq, digest = rows[-1][0], str(doc["payload"]["head_hash"])

    def usage_hash(self, seq: int) -> str | None:
        """The local chain's hash at ``seq`` (None: the log holds no such event)."""
        with self.store.snapshot() as tx:
            return usage.local_hash(tx, seq)

    def central_anchor(self) -> anchoring.Anchor | None:
        with self.store.snapshot() as tx:
            return usage.stored_anchor(tx)

    def record_anchor(
        self, document: Any, *, serial: str, firm_keys: Mapping[int, Mapping[str, hazmat.Ed25519PublicKey]]
    ) -> anchoring.Anchor:
        """Keep License Central's anchor of this log (the newest one is kept; an older one
        changes nothing) and return the anchor kept.

        ``firm_keys``: the keys each firm slot of the server's container pinned. An anchor
        that does not verify gives LicenseInvalid (the reason goes to the log); one for
        another server, or whose hash differs from the local chain's at its sequence,
        ActivationError. Nothing is stored on any error."""
        try:
            doc = parse(document)
            keys = dict(firm_keys.get(anchoring.anchor_firm(doc)) or {})
            if not keys:
                raise DocumentInvalid("no slot of the server's container knows the firm that signed it")
            anchor = anchoring.verify_anchor(doc, keys)
        except DocumentInvalid as exc:
            log.warning("usage anchor refused: %s", exc.reason)
            raise E.LicenseInvalid(
                "this is no License Central anchor of this server's usage log that verifies: use the anchor file "
                "License Central gave, unchanged",
                reason=f"usage anchor: {exc.reason}",
            ) from None
        if anchor.serial != serial:
            raise E.ActivationError(
                f"this anchor is for the license server of container {anchor.serial}, not this one ({serial})"
            )
        with self.store.transaction() as tx:
            held = usage.stored_anchor(tx)
            if held is not None and anchor.seq < held.seq:
                return held  # Central anchored more of the log before: keep the newest
            usage.check_anchor(tx, anchor)
            tx.set_meta(usage.CENTRAL_ANCHOR, json.dumps(doc, sort_keys=True))
        log.info("usage log anchored at License Central through event %d", anchor.seq)
        return anchor
