"""Leases on license servers: access over the network, the heartbeat thread, reconnects.

A lease is renewed in the background by one heartbeat thread per process. When renewals
fail for the lease's TTL, or the server no longer knows it, the lease is *lost*: the
handle's ``on_lease_lost(handle, False)`` is called, and the thread keeps asking the same
server for the seat with the same client lease id (which finds the same seat, never a
second); when it comes back, ``on_lease_lost(handle, True)``. A lease the administrator
released is lost for good. A forked child inherits no lease: its handles read as
released, and it neither renews nor releases the parent's leases.

A ``Lease`` is a ``Grant`` (``licentia.container.interfaces``): the handle asks it for
product keys, its server, whether it is lost, and to release it.

Grace. An access that asks for grace (a protected package's ``--grace``) may get a lease
that states it (``grace_until``, signed): the product keys are then kept, sealed, in this
machine's container (``container/graces.py``) while the server keeps the seat counted. A
release first removes that record from the container, then sends the container-signed
return receipt (``POST /leases/{id}/return``); a receipt that could not be delivered is
kept in ``$LICENTIA_HOME/receipts/`` and sent at this runtime's next contact with that server.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import secrets
import threading
import time
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..container import files
from ..core import errors as E
from ..core import grants, hazmat
from ..core.documents import DocumentInvalid, document_digest
from ..core.license import AccessRequest, LicenseEntry
from ._handle import Handle
from ._netclient import NetClient, RuntimeView
from ._servers import ServerAddr

if TYPE_CHECKING:  # pragma: no cover
    from ..container.interfaces import Container

log = logging.getLogger("licentia")

LeaseLostCallback = Callable[[Handle, bool], Any]


class Lease:
    """A lease held by one handle; renewed by the heartbeat thread."""

    holder: Container | None = None  # a lease is held on the server, not in a container here

    def __init__(
        self,
        keeper: LeaseKeeper,
        server: ServerAddr,
        answer: dict[str, Any],
        lease: grants.Lease,
        entry: LicenseEntry,
        body: dict[str, Any],
        callback: LeaseLostCallback | None,
    ):
        self.keeper = keeper
        self.server_addr = server
        self.entry = entry
        self.serial = entry.serial
        self.body = body  # what to send again to get the seat back
        self.callback = callback
        self.pid = os.getpid()
        self.handle_ref: Callable[[], Handle | None] = lambda: None
        self.lock = threading.Lock()  # guards state changes (never held over a network call)
        self.state = "active"
        self.counter = 0  # signed into each renewal and release; only goes up
        self.grace = 0  # seconds of grace the server granted (0: none)
        self.grace_record: dict[str, Any] | None = None  # what the machine container holds for it
        self._update(answer, lease)

    def _update(self, answer: dict[str, Any], lease: grants.Lease | None) -> None:
        if lease is not None:
            self.lease_id = lease.lease_id
            self.keys = {int(k["version"]): k for k in answer.get("keys") or [] if isinstance(k, dict)}
        self.ttl = float(answer.get("ttl") or 120)
        self.heartbeat = max(0.05, float(answer.get("heartbeat") or self.ttl / 3))
        now = time.monotonic()
        self.last_ok = now
        self.next_due = now + self.heartbeat

    @property
    def client_lease_id(self) -> str:
        return str(self.body["client_lease_id"])

    def proof(self, kind: str) -> tuple[int, str]:
        """The next counter and this session's proof of ``kind`` (renewal or release) with it."""
        with self.lock:
            self.counter += 1
            counter = self.counter
        return counter, self.keeper.net.prove(kind, grants.lease_proof_payload(self.lease_id, counter))

    @property
    def lost(self) -> bool:
        return self.state in ("lost", "revoked")

    @property
    def server(self) -> str:
        return self.server_addr.label

    def product_key(self, entry: LicenseEntry, version: int) -> bytes | None:
        sealed = self.keys.get(version)
        if sealed is None:
            return None
        net = self.keeper.net
        try:
            return grants.unseal_lease_key(net.session_key, net.session, self.serial, entry.digest, sealed)
        except DocumentInvalid as exc:
            raise E.rejected(f"lease product key: {exc.reason}") from None

    def release(self) -> None:
        if self.pid != os.getpid():
            return  # a forked child never releases its parent's lease
        with self.lock:
            if self.state == "released":
                return
            was, self.state = self.state, "released"
        self.keeper.forget(self)
        if self.grace_record is not None:  # a revoked lease's grace too: the seat is counted for it
            self.keeper.give_grace_back(self)
        if was == "revoked":
            return
        counter, proof = self.proof(grants.LEASE_RELEASE)
        params = {"client": self.client_lease_id, "counter": str(counter), "proof": proof}
        failed = self.keeper.net.delete_quietly(
            self.server_addr, f"{self.server_addr.api}/leases/{self.lease_id}", params, timeout=3.0
        )
        if failed:
            log.info(
                "release of lease %s at %s failed (%s); the seat frees after its TTL",
                self.lease_id,
                self.server,
                failed,
            )

    def notify(self, back: bool) -> None:
        handle = self.handle_ref()
        if self.callback is None or handle is None:
            return
        try:
            self.callback(handle, back)
        except Exception:  # an application callback must not kill the heartbeat
            log.exception("on_lease_lost callback failed")


class _Heartbeat(threading.Thread):
    def __init__(self, keeper: LeaseKeeper):
        super().__init__(name="licentia-heartbeat", daemon=True)
        self.keeper = keeper

    def run(self) -> None:
        keeper = self.keeper
        while True:
            with keeper.cond:
                if not keeper.leases or keeper.pid != os.getpid():
                    keeper.thread = None
                    return
                now = time.monotonic()
                due = min(lease.next_due for lease in keeper.leases)
                if due > now:
                    keeper.cond.wait(min(due - now, 5.0))
                    continue
                todo = [lease for lease in keeper.leases if lease.next_due <= now]
            for lease in todo:
                try:
                    keeper.tick(lease)
                except Exception:  # keep beating
                    log.exception("lease heartbeat failed")
                    lease.next_due = time.monotonic() + lease.heartbeat


class LeaseKeeper:
    """Per-process network side of one runtime: access over the network and the leases it holds."""

    def __init__(self, runtime: RuntimeView):
        self.rt = runtime
        self.net = NetClient(runtime)
        self.pid = self.net.pid
        self._verified: dict[str, LicenseEntry] = {}
        self._machine: Container | None = None  # this machine's container (None: none can be made)
        self._machine_looked = False
        self._flushed: set[str] = set()  # servers this runtime sent its kept grace receipts to
        self.leases: set[Lease] = set()
        self.cond = threading.Condition()
        self.thread: _Heartbeat | None = None
        atexit.register(self._at_exit)

    def _at_exit(self) -> None:
        """A process that ends gives its seats back (a killed one: after the TTL)."""
        if self.pid != os.getpid():
            return
        with self.cond:
            held = list(self.leases)
        for lease in held:
            lease.release()
        self.net.close()

    # ------------------------------------------------------------ access

    def access(
        self,
        request: AccessRequest,
        keys: dict[str, hazmat.Ed25519PublicKey],
        mode: str,
        on_lease_lost: LeaseLostCallback | None,
        grace: int = 0,
    ) -> Handle:
        """Ask the servers in order; the first grant wins, else the failure closest to success."""
        servers = self.net.servers(request.firm_code)
        if not servers:
            raise E.ServerUnreachable(
                "no license server to ask: set LICENTIA_HOST, run 'licentia config server add HOST', "
                "'licentia config discovery on', or link this device to the vendor's cloud ('licentia cloud login')"
            )
        failures: list[tuple[int, type[E.LicenseError], str, dict[str, Any]]] = []
        unreachable: list[str] = []
        tried: list[str] = []
        body_base = self._lease_body(request, mode)
        if grace > 0:
            body_base["grace"] = int(grace)
        for server in servers:
            fields = {**body_base, "nonce": secrets.token_urlsafe(12)}
            try:
                self._send_kept_receipts(server)
                proof = self._machine_proof(server)
            except E.ServerUnreachable as exc:
                unreachable.append(server.label)
                tried.append(str(exc))
                continue
            if proof is not None:
                fields["machine"] = proof
            body = self.net.signed_request(fields)
            try:
                status, data = self.net.post(server, f"{server.api}/leases", body)
            except E.ServerUnreachable as exc:
                unreachable.append(server.label)
                tried.append(str(exc))
                continue
            if status == 200 and isinstance(data, dict):
                try:
                    return self._grant(server, request, keys, mode, body, data, on_lease_lost)
                except E.LicenseError as exc:
                    failures.append((exc.rank, type(exc), f"server {server.label}: {exc}", {}))
                    tried.append(f"server {server.label}: {exc}")
                    continue
            cls, message, extra = self.net.error(server, status, data)
            failures.append((cls.rank, cls, message, extra))
            tried.append(message)
        raise self._best_failure(servers, failures, unreachable, tried)

    def _container(self) -> Container | None:
        """This machine's container (made on first use, as grace does), or None where none can
        be made (no usable traits, a read-only home): then the client proves no machine."""
        if not self._machine_looked:
            self._machine_looked = True
            from ..container.binding import NoUsableTraits

            try:
                self._machine = self.rt.machine_container("medium")
            except (NoUsableTraits, OSError, E.LicenseError) as exc:
                log.info("no machine container for license servers (%s): station seats are not shared", exc)
                self._machine = None
        return self._machine

    def _machine_proof(self, server: ServerAddr) -> dict[str, Any] | None:
        """The machine container's signature over a fresh challenge of ``server`` and this
        session's holder key: station and exclusive seats go by what it proves."""
        container = self._container()
        return None if container is None else self.net.machine_proof(server, container, self.net.holder)

    def _lease_body(self, request: AccessRequest, mode: str) -> dict[str, Any]:
        return {
            "firm_code": request.firm_code,
            "product_code": request.product_code,
            "feature_code": request.feature_code,
            "units": request.units,
            "release_date": request.release_date,
            "mode": mode,
            "client_lease_id": secrets.token_urlsafe(12),
            "reconnect": False,  # a fresh id (the server looks it up all the same)
            "session": self.net.session,
            "holder": self.net.holder,
            **self.net.identity(),
        }

    def _best_failure(
        self,
        servers: list[ServerAddr],
        failures: list[tuple[int, type[E.LicenseError], str, dict[str, Any]]],
        unreachable: list[str],
        tried: list[str],
    ) -> E.LicenseError:
        """The error to raise when no server granted: the answer closest to success, else unreachable."""
        if failures:
            rank, cls, message, extra = max(failures, key=lambda f: f[0])
            if rank > E.ServerUnreachable.rank or not unreachable:
                others = [t for t in tried if t != message]
                text = E.with_next_step(cls, message, f" (also tried: {'; '.join(others)})" if others else "")
                if cls is E.DeviceLimitReached:
                    return E.DeviceLimitReached(
                        text,
                        seats=extra.get("seats"),
                        in_use=extra.get("in_use"),
                        devices=extra.get("devices"),
                        tried=tried,
                    )
                if cls is E.SeatsExhausted:
                    return E.SeatsExhausted(text, seats=extra.get("seats"), in_use=extra.get("in_use"), tried=tried)
                return cls(text, tried=tried)
        self.net.forget_found()  # nothing answered: look around again next time
        return E.ServerUnreachable(
            E.with_next_step(
                E.ServerUnreachable,
                f"no license server answered: tried {', '.join(s.label for s in servers)}",
                f" ({'; '.join(tried)})" if tried else "",
            ),
            tried=tried,
        )

    def _verify(
        self,
        request: AccessRequest,
        keys: dict[str, hazmat.Ed25519PublicKey],
        mode: str,
        body: dict[str, Any],
        data: dict[str, Any],
    ) -> tuple[LicenseEntry, grants.Lease]:
        try:
            doc = data["entry"]
            digest = document_digest(doc)
            entry = self._verified.get(digest)
            if entry is None:
                entry = LicenseEntry.verify(doc, keys)
                self._verified[digest] = entry
            lease = grants.verify_lease(data["lease"], entry)
        except (DocumentInvalid, KeyError, TypeError, ValueError) as exc:
            raise E.rejected(f"license server answer: {getattr(exc, 'reason', exc)}") from None
        if (
            lease.session != self.net.session
            or lease.holder != self.net.holder
            or lease.nonce != body["nonce"]
            or lease.client_lease_id != body["client_lease_id"]
            or lease.firm_code != request.firm_code
            or lease.product_code != request.product_code
            or lease.mode != mode
            or entry.firm_code != request.firm_code
            or entry.product_code != request.product_code
        ):
            raise E.rejected("license server answer does not match the request")
        return entry, lease

    def _grant(
        self,
        server: ServerAddr,
        request: AccessRequest,
        keys: dict[str, hazmat.Ed25519PublicKey],
        mode: str,
        body: dict[str, Any],
        data: dict[str, Any],
        callback: LeaseLostCallback | None,
    ) -> Handle:
        """A verified server answer becomes a lease and its handle (else the seat goes back)."""
        try:
            entry, lease = self._verify(request, keys, mode, body, data)
        except E.LicenseError:
            self._release_quietly(server, data, body)
            raise
        # the server evaluated the license against its own container (with its last sync) when it
        # signed the lease: the lease's issue time stands for that sync here
        ev = grants.evaluate_lease(entry, lease, request, self.rt.clock())
        if ev.error is not None:
            self._release_quietly(server, data, body)
            raise ev.error(f"server {server.label} {entry.summary()}: {ev.message}")
        held = Lease(self, server, data, lease, entry, body, callback)
        self._hold_grace(held, lease, ev.expires)
        handle = Handle(entry, held, request, None, ev.expires)
        held.handle_ref = weakref.ref(handle)
        self.net.preferred = server
        self.track(held)
        return handle

    def _release_quietly(self, server: ServerAddr, data: dict[str, Any], body: dict[str, Any]) -> None:
        """Give back a seat this process will not hold (signed with a counter above any it used)."""
        lease_id = data.get("lease_id")
        if isinstance(lease_id, str):
            counter = time.time_ns() // 1000  # above every counter of this lease's renewals so far
            proof = self.net.prove(grants.LEASE_RELEASE, grants.lease_proof_payload(lease_id, counter))
            params = {"client": body["client_lease_id"], "counter": str(counter), "proof": proof}
            self.net.delete_quietly(server, f"{server.api}/leases/{lease_id}", params)

    # ------------------------------------------------------------ heartbeats

    def track(self, lease: Lease) -> None:
        with self.cond:
            self.leases.add(lease)
            if self.thread is None:
                self.thread = _Heartbeat(self)
                self.thread.start()
            self.cond.notify()

    def forget(self, lease: Lease) -> None:
        with self.cond:
            self.leases.discard(lease)
            self.cond.notify()

    def tick(self, lease: Lease) -> None:
        handle = lease.handle_ref()
        if handle is None or handle._released:
            lease.release()  # the application dropped (or released) its handle
            return
        now = time.monotonic()
        if lease.state == "active":
            counter, proof = lease.proof(grants.LEASE_RENEW)
            body = {"client_lease_id": lease.client_lease_id, "counter": counter, "proof": proof}
            try:
                status, data = self.net.post(
                    lease.server_addr, f"{lease.server_addr.api}/leases/{lease.lease_id}/renew", body
                )
            except E.ServerUnreachable:
                status, data = 0, None
            with lease.lock:
                if lease.state != "active":
                    return  # released while the renewal was on its way
                if status == 200 and isinstance(data, dict):
                    lease._update(data, None)
                    return
                if status == 410:
                    lease.state = "revoked"
                elif status == 404 or now - lease.last_ok >= lease.ttl:
                    lease.state = "lost"
                else:
                    lease.next_due = now + min(lease.heartbeat, 1.0)
                    return
            if lease.state == "revoked":
                self.forget(lease)
                log.warning("lease %s was released by the server's administrator", lease.lease_id)
                lease.notify(False)
                return
            log.warning("lease %s at %s lost", lease.lease_id, lease.server)
            lease.notify(False)
        if lease.state == "lost":
            if self._reacquire(lease):
                log.warning("lease at %s is back", lease.server)
                lease.notify(True)
            else:
                lease.next_due = time.monotonic() + min(lease.heartbeat, 2.0)

    def _reacquire(self, lease: Lease) -> bool:
        fields = {k: v for k, v in lease.body.items() if k not in ("proof", "machine", "counter")}
        with lease.lock:
            lease.counter += 1  # above every counter the lease was signed with: no replay of this can succeed
            counter = lease.counter
        body = {
            **fields,
            "nonce": secrets.token_urlsafe(12),
            "pid": os.getpid(),
            "reconnect": True,
            "units": 0,
            "counter": counter,
        }
        request = AccessRequest(
            body["firm_code"], body["product_code"], body["feature_code"], 0, body.get("release_date")
        )
        try:
            proof = self._machine_proof(lease.server_addr)  # a fresh challenge: a proof answers one
            if proof is not None:
                body["machine"] = proof
            status, data = self.net.post(
                lease.server_addr, f"{lease.server_addr.api}/leases", self.net.signed_request(body)
            )
        except E.ServerUnreachable:
            return False
        if status != 200 or not isinstance(data, dict):
            return False
        keys = self.rt.trusted(request.firm_code)
        try:
            entry, granted = self._verify(request, keys, body["mode"], body, data)
        except E.LicenseError:
            self._release_quietly(lease.server_addr, data, body)
            return False
        with lease.lock:
            if lease.state == "lost":
                lease.entry = entry
                lease._update(data, granted)
                lease.state = "active"
                back = True
            else:
                back = False
        if back:
            if granted.grace_until is not None and (lease.grace_record or {}).get("lease_id") != granted.lease_id:
                self._hold_grace(lease, granted, None)  # a new lease (the server forgot the old one)
            return True
        self._release_quietly(lease.server_addr, data, body)  # released meanwhile: give the seat back
        return False

    # ------------------------------------------------------------ grace

    def _hold_grace(self, held: Lease, lease: grants.Lease, expires: int | None) -> None:
        """Keep the grace the server granted with ``lease`` in this machine's container (the
        product keys sealed there, until ``grace`` seconds from now, never past the license's
        expiry). A failure here never fails the access: the grace is then given back at release."""
        if lease.grace_until is None or lease.grace <= 0:
            return
        held.grace = lease.grace
        container = self._container()
        now = self.rt.clock()
        deadline = now + lease.grace if expires is None else min(now + lease.grace, expires)
        record = {
            "server": held.server_addr.url,
            "lease_id": lease.lease_id,
            "product_code": lease.product_code,
            "feature_code": lease.feature_code,
            "license_id": lease.license_id,
            "stored": now,
            "deadline": deadline,
        }
        held.grace_record = record
        if container is None or deadline <= now:
            return
        try:
            keys = {v: k for v in held.keys if (k := held.product_key(held.entry, v)) is not None}
            container.hold_grace(lease.firm_code, record, keys, now)
        except (OSError, E.LicenseError) as exc:
            log.warning(
                "could not keep the grace of lease %s in container %s: %s", lease.lease_id, container.serial, exc
            )

    def give_grace_back(self, held: Lease) -> None:
        """Remove the lease's grace from this machine's container, then send the receipt (kept
        for the next contact when the server does not take it)."""
        container = self._container()
        record = held.grace_record
        if container is None or record is None:
            return
        try:
            receipt = container.drop_grace(held.entry.firm_code, record, self.rt.clock())
        except (OSError, E.LicenseError) as exc:
            log.warning(
                "could not give back the grace of lease %s: %s (the server counts the seat until the grace ends)",
                held.lease_id,
                exc,
            )
            return
        held.grace_record = None
        if not self._deliver_receipt(held.server_addr, held.lease_id, receipt):
            self._keep_receipt(held.server_addr, held.lease_id, receipt)

    def _deliver_receipt(self, server: ServerAddr, lease_id: str, receipt: dict[str, Any]) -> bool:
        try:
            status, _ = self.net.post(server, f"{server.api}/leases/{lease_id}/return", {"receipt": receipt})
        except E.ServerUnreachable:
            return False
        # 404: the server no longer counts that lease (its grace ended): nothing left to free
        return status in (200, 404)

    def _receipts_dir(self) -> Path:
        return self.rt.home / "receipts"

    def _keep_receipt(self, server: ServerAddr, lease_id: str, receipt: dict[str, Any]) -> None:
        folder = self._receipts_dir()
        try:
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)
            files.write_atomic(
                folder / f"grace-{lease_id}.json",
                json.dumps({"server": server.url, "lease_id": lease_id, "receipt": receipt}).encode(),
                mode=0o600,
            )
            log.info("grace receipt of lease %s kept for the next contact with %s", lease_id, server.label)
            self._flushed.discard(server.url)
        except OSError as exc:
            log.warning("could not keep the grace receipt of lease %s: %s", lease_id, exc)

    def _send_kept_receipts(self, server: ServerAddr) -> None:
        """Send the grace receipts kept for ``server`` (once per runtime and server)."""
        if server.url in self._flushed:
            return
        self._flushed.add(server.url)
        for path in sorted(self._receipts_dir().glob("grace-*.json")):
            try:
                kept = json.loads(path.read_bytes())
                if kept.get("server") != server.url:
                    continue
                lease_id, receipt = str(kept["lease_id"]), kept["receipt"]
            except (OSError, ValueError, KeyError, AttributeError):
                continue
            if self._deliver_receipt(server, lease_id, receipt):
                path.unlink(missing_ok=True)
            else:
                self._flushed.discard(server.url)  # try again at the next access
                return
