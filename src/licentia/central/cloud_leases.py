"""Cloud leases: the seat protocol of license servers, served by License Central for the
cloud containers a signed-in device's person may use.

A device signed in with ``licentia cloud login`` holds a session token (``Authorization:
Bearer lcs_...``). Its runtime asks Central for a lease exactly as it asks a license
server (docs/formats.md, "License server protocol"), under ``/api/v1/cloud``:

- the request is signed by the process's session key (proof of possession: renewals and
  releases are signed over the lease id and a counter that only goes up);
- it carries the device's **machine proof**: its machine container's signature over a
  challenge of Central, the session key and the time. The container must be the one the
  session was linked by, so a copied session token alone gets no lease. A challenge is
  an HMAC of Central's (no state shared between Central processes) and is accepted once
  (``cloud_proofs``);
- the licenses looked at are those of the person's personal cloud container and of the
  enterprise containers of its groups, evaluated as a license server evaluates its own;
- a personal container's quantity counts **devices** holding leases at once (one device
  credential live from two addresses counts twice); the next device gets
  ``DeviceLimitReached`` naming the devices that hold it. An enterprise container's
  quantity counts seats of the mode the application asks for, as on a license server;
- a device holds at most ``LICENTIA_CLOUD_LEASES_PER_DEVICE`` leases at once;
- the lease is signed with the cloud container's key (the firm-signed entry names it) and
  the product keys are sealed to the process's session key; the container keys never
  leave Central;
- a renewal checks again that the device is linked, its session live and the license
  still the person's: a removed member, a reset group, a disabled account or a
  deactivated ticket ends the lease at its next renewal (410), within one lease TTL.

The seats are the seat engine's (``licentia.seats``) on Central's own database
(``cloud_seats.CentralSeatStore``): any number of Central processes serve them.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import hashlib
import hmac
import json
import logging
import secrets
import threading
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import delete, insert, select
from sqlalchemy.exc import IntegrityError

from ..core import errors as E
from ..core import grants, hazmat
from ..core.documents import sign_document
from ..core.license import AccessRequest, Evaluation, LicenseEntry, LicenseState, evaluate
from ..seats import Client, Lease, LeaseRevoked, LeaseUnknown, Refusal, SeatEngine, SeatLicense, protocol
from ..seats.protocol import AccessAsk, field_text, parse_access
from .cloud_seats import PERSON, CentralSeatStore, device_of
from .models import (
    CloudDevice,
    CloudKind,
    CloudProof,
    table_of,
)
from .services.accounts import AccountService, Person
from .services.attempts import AttemptService
from .services.base import Context
from .services.cloud import Q_PERSON_LICENSES
from .services.signin import SignInService

log = logging.getLogger("licentia.central.cloud")

T = TypeVar("T")
CHALLENGE_TTL = 120  # seconds a challenge may be answered in (once)
MAX_CACHED = 10000  # entries parsed, product keys sealed per session: forgotten past this
_P = table_of(CloudProof)


I_PROOF = insert(_P)


def _purpose(serial: str) -> str:
    return f"cloud container {serial}"


@dataclass(frozen=True)
class _Held:
    """A license of a cloud container the person may use."""

    entry: LicenseEntry
    entry_json: str
    serial: str  # the cloud container's
    kind: str  # personal | enterprise
    firm_code: int
    keys_enc: bytes
    secret_enc: bytes
    per_device: bool = False  # user licensing over REST: a seat per device named, not per person

    @property
    def key(self) -> str:
        return f"{self.serial}/{self.entry.license_id}"

    def seat_license(self, ev: Evaluation, cap: int) -> SeatLicense:
        valid_until = ev.expires if ev.expires is not None else self.entry.options.expires
        return SeatLicense.of_entry(self.key, self.entry, valid_until, cap)


@dataclass(frozen=True)
class _Device:
    person: Person
    serial: str
    sign_pub: str
    name: str


class CloudLeases:
    """The cloud seat protocol of one Central process (stateless between processes)."""

    def __init__(self, ctx: Context):
        self.ctx = ctx
        s = ctx.settings
        self.store = CentralSeatStore(ctx.db, per_device=s.cloud_leases_per_device)
        self.ttl = s.cloud_lease_ttl
        self.heartbeat = max(1, self.ttl // 4)
        self.max_grace = s.cloud_max_grace
        self.engine = SeatEngine(self.store, clock=ctx.clock, ttl=self.ttl)
        self._mac_key = hmac.new(ctx.keys.master_key, b"licentia cloud challenge", hashlib.sha256).digest()
        self._signers: dict[str, hazmat.Ed25519PrivateKey] = {}
        self._entries: dict[str, tuple[LicenseEntry, str]] = {}
        self._sealed: dict[tuple[str, str], str] = {}
        self._lock = threading.Lock()
        self._threads = max(1, s.protocol_threads) if not ctx.db.sqlite else 1
        self._executor: ThreadPoolExecutor | None = None

    async def run(self, work: Callable[..., T], *args: Any) -> T:
        """``work(*args)`` on this process's few cloud threads (one on SQLite, where writes
        take turns anyway; ``LICENTIA_PROTOCOL_THREADS`` on PostgreSQL)."""
        if self._executor is None:
            with self._lock:
                if self._executor is None:
                    self._executor = ThreadPoolExecutor(self._threads, thread_name_prefix="cloud-leases")
        return await asyncio.get_running_loop().run_in_executor(self._executor, functools.partial(work, *args))

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None

    # ------------------------------------------------------------ who asks

    def device(self, token: str | None) -> _Device:
        """The linked device of a live device session; Unauthorized otherwise."""
        with self.ctx.db.session() as session:
            person, row = SignInService(
                self.ctx,
                session,
                attempts=AttemptService(self.ctx, session),
                accounts=AccountService(self.ctx, session),
            ).device(token)
        if row.serial is None:
            raise E.Unauthorized("This device is not linked: run 'licentia cloud login'.", reason="device unlinked")
        return _Device(person, row.serial, row.sign_pub, row.name)

    # ------------------------------------------------------------ challenges

    def challenge(self) -> dict[str, Any]:
        """A nonce for a machine proof: random, with its time and Central's MAC (any Central
        process checks it), answered once within CHALLENGE_TTL seconds."""
        now = self.ctx.now()
        nonce = f"{secrets.token_urlsafe(12)}.{now}"
        return {"nonce": f"{nonce}.{self._mac(nonce)}", "time": now}

    def _mac(self, text: str) -> str:
        return hmac.new(self._mac_key, text.encode(), hashlib.sha256).hexdigest()[:32]

    def _challenge_ok(self, nonce: str, issued: int, now: int) -> bool:
        head, _, mac = nonce.rpartition(".")
        _, _, when = head.rpartition(".")
        return (
            bool(head)
            and hmac.compare_digest(mac.encode(), self._mac(head).encode())
            and when == str(issued)
            and 0 <= now - issued <= CHALLENGE_TTL
        )

    def _machine(self, body: dict[str, Any], client: Client, device: _Device) -> protocol.MachineProof:
        """The device's proof: its machine container (the one the session was linked by)
        signed a live challenge of Central and this session's holder key."""
        doc = body.get("machine")
        why = ""
        try:
            if not isinstance(doc, dict):
                raise ValueError("no machine proof: a cloud lease needs the device's")
            proof = protocol.read_machine_proof(doc, device.sign_pub)
        except ValueError as exc:
            why = str(exc)
        else:
            if proof.serial != device.serial:
                why = "machine proof names another container than the linked device's"
            elif proof.holder != client.holder:
                why = "machine proof made for another session"
            elif not self._challenge_ok(proof.nonce, proof.issued, self.ctx.now()):
                why = "machine proof answers no live challenge of Central (stale or forged)"
        if why:
            raise Refusal(E.AccessDenied, "the device's machine proof does not verify", f"{client.ident}: {why}")
        return proof

    def _first_use(self, nonce: str, issued: int) -> bool:
        """Record a challenge as answered (just before seats are asked for: a request refused
        earlier leaves nothing behind); False when it was answered before."""
        try:
            with self.store.protocol.transaction() as tx:
                tx.execute(I_PROOF, {"nonce": nonce[:96], "until": issued + CHALLENGE_TTL})
        except IntegrityError:
            return False
        return True

    def prune(self) -> int:
        """Forget answered challenges that are stale anyway; expire silent leases."""
        now = self.ctx.now()
        with self.ctx.db.session() as session, session.begin():
            gone = session.execute(delete(_P).where(_P.c.until < now))
        return int(getattr(gone, "rowcount", 0) or 0) + self.engine.sweep()

    # ------------------------------------------------------------ licenses

    def _held(self, person: Person, request: AccessRequest) -> list[_Held]:
        """The licenses of the product in the cloud containers ``person`` may use (its personal
        one first, then its groups' by name)."""
        if person.firm_code != request.firm_code:
            return []
        params = {"firm": person.firm_id, "account": person.account_id}
        with self.store.protocol.transaction(write=False) as tx:
            rows = tx.all(Q_PERSON_LICENSES, params)
        out = []
        for r in rows:
            if not r.entry:
                continue
            entry, entry_json = self._entry(r.entry)
            if entry.product_code != request.product_code or entry.firm_code != request.firm_code:
                continue
            per_device = (r.template or {}).get("user_seats") == "device"
            out.append(
                _Held(entry, entry_json, r.serial, r.kind, int(r.firm_code), r.keys_enc, r.secret_enc, per_device)
            )
        return out

    def _entry(self, text: str) -> tuple[LicenseEntry, str]:
        """A stored license entry (firm-signed by Central itself), parsed once per process."""
        digest = hashlib.sha256(text.encode()).hexdigest()
        found = self._entries.get(digest)
        if found is None:
            doc = json.loads(text)
            found = (LicenseEntry.of_document(doc), json.dumps(doc, separators=(",", ":")))
            with self._lock:
                if len(self._entries) > MAX_CACHED:
                    self._entries.clear()
                self._entries[digest] = found
        return found

    def _evaluate(self, held: list[_Held], request: AccessRequest) -> tuple[list[tuple[_Held, Evaluation]], Refusal]:
        now = self.ctx.now()
        ok: list[tuple[_Held, Evaluation]] = []
        best: tuple[int, type[E.LicenseError], str] | None = None
        for item in held:
            ev = evaluate(item.entry, LicenseState(), request, now, now)
            if ev.error is None:
                ok.append((item, ev))
            elif best is None or ev.error.rank > best[0]:
                best = (ev.error.rank, ev.error, f"{item.entry.summary()}: {ev.message}")
        if best is not None:
            return ok, Refusal(best[1], f"cloud: {best[2]}")
        return ok, Refusal(
            E.LicenseNotFound,
            f"no cloud license of yours for firm {request.firm_code}, product {request.product_code}",
        )

    # ------------------------------------------------------------ leases

    def access(self, token: str | None, ip: str, body: dict[str, Any]) -> bytes:
        """A lease (the JSON answer of docs/formats.md), or a Refusal."""
        device = self.device(token)
        ask = parse_access(body, ip)
        protocol.check_session_key(ask.session)
        try:
            if not ask.proven:
                raise protocol.unproven(ask.client)
            if ask.request.units:
                raise Refusal(
                    E.AccessDenied,
                    "a cloud lease counts no units: the vendor's application uses the user-licensing API for them",
                )
            proof = self._machine(body, ask.client, device)
        except Refusal as refusal:
            self._deny(ask, ask.client, device, refusal, invalid=True)
            raise
        client = dataclasses.replace(proof.client(ask.client), user=device.person.login)
        ask = ask._replace(client=client)
        ok, none = self._evaluate(self._held(device.person, ask.request), ask.request)
        if not ok:
            self._deny(ask, client, device, none, invalid=True)
            raise none
        if not self._first_use(proof.nonce, proof.issued):
            replayed = Refusal(
                E.AccessDenied,
                "the device's machine proof does not verify",
                f"{client.ident}: machine proof answers a challenge answered before (replayed)",
            )
            self._deny(ask, client, device, replayed, invalid=True)
            raise replayed
        lease, item = self._acquire(ask, ok)
        now = self.ctx.now()
        doc = grants.build_lease(
            self._signer(item),
            lease_id=lease.id,
            client_lease_id=client.client_lease_id,
            entry=item.entry,
            feature_code=ask.request.feature_code,
            mode=ask.mode,  # what the application asked for (a personal license's seat is the device's)
            session=ask.session,
            nonce=ask.nonce,
            issued=now,
            expires=lease.expires,
            holder=client.holder,
            grace_until=lease.grace_until,
        )
        return (
            f'{{"lease_id":{json.dumps(lease.id)},"lease":{json.dumps(doc, separators=(",", ":"))},'
            f'"entry":{item.entry_json},"keys":{self._session_keys(item, ask.session)},'
            f'"ttl":{self.ttl},"heartbeat":{self.heartbeat},"expires_in":{max(0, lease.expires - now)}}}'
        ).encode()

    def _acquire(self, ask: AccessAsk, ok: list[tuple[_Held, Evaluation]]) -> tuple[Lease, _Held]:
        """A seat of a personal license (by device), else of an enterprise one (by the mode
        asked); the refusal closest to success when none has one."""
        refusals: list[Refusal] = []
        for kind in (CloudKind.personal.value, CloudKind.enterprise.value):
            chosen = [(item, ev) for item, ev in ok if item.kind == kind]
            if not chosen:
                continue
            mode = "station" if kind == CloudKind.personal.value else ask.mode
            try:
                lease = self.engine.acquire(
                    ask.client,
                    firm_code=ask.request.firm_code,
                    product_code=ask.request.product_code,
                    feature_code=ask.request.feature_code,
                    mode=mode,
                    candidates=[item.seat_license(ev, self.max_grace) for item, ev in chosen],
                    grace=ask.grace,
                    counter=ask.counter,
                )
            except Refusal as refused:
                personal = kind == CloudKind.personal.value and refused.error is E.SeatsExhausted
                refusals.append(self._device_limit(refused, [item for item, _ in chosen]) if personal else refused)
                continue
            return lease, next(i for i, _ in chosen if i.key == lease.license_key)
        raise max(refusals, key=lambda r: r.rank)

    def _device_limit(self, refusal: Refusal, items: Sequence[_Held]) -> Refusal:
        """A personal license's seats are its devices: name the ones holding it."""
        keys = [i.key for i in items]
        now = self.ctx.now()
        with self.store.snapshot() as tx:
            serials = sorted({device_of(x.machine) or "" for x in tx.live_leases(keys, now)} - {""})
        with self.ctx.db.session() as session, session.begin():
            names = dict(
                session.execute(
                    select(CloudDevice.serial, CloudDevice.name).where(
                        CloudDevice.serial.in_(serials), CloudDevice.unlinked.is_(None)
                    )
                ).all()
            )
        shown = [names.get(s, s) for s in serials]
        seats = sum(i.entry.options.quantity for i in items)
        return Refusal(
            E.DeviceLimitReached,
            f"your cloud license is in use on {seats} device(s) at once, the most it allows: "
            f"{', '.join(shown) or 'devices signed in from other addresses'}",
            refusal.log,
            seats=seats,
            in_use=refusal.in_use if refusal.in_use is not None else seats,
            devices=shown,
        )

    def _deny(self, ask: AccessAsk, client: Client, device: _Device, refusal: Refusal, *, invalid: bool) -> None:
        log.info("cloud access of %s refused: %s", device.person.login, refusal.log)
        self.engine.record_denial(
            dataclasses.replace(client, user=device.person.login),
            firm_code=ask.request.firm_code,
            product_code=ask.request.product_code,
            feature_code=ask.request.feature_code,
            mode=ask.mode,
            invalid=invalid,
            reason=refusal.log,
        )

    def _signer(self, item: _Held) -> Any:
        key = self._signers.get(item.serial)
        if key is None:
            secret = self.ctx.box.open(item.firm_code, _purpose(item.serial), item.keys_enc)
            key = hazmat.Ed25519PrivateKey.from_private_bytes(secret[:32])
            with self._lock:
                self._signers[item.serial] = key

        def sign(doc_type: str, payload: dict[str, Any]) -> dict[str, Any]:
            return sign_document(doc_type, payload, key)

        return sign

    def _session_keys(self, item: _Held, session: str) -> str:
        entry = item.entry
        sealed = self._sealed.get((session, entry.digest))
        if sealed is None:
            keys = [
                grants.seal_lease_key(
                    session,
                    entry.serial,
                    entry.digest,
                    version,
                    self.ctx.product_key(item.firm_code, entry.product_code, version, item.secret_enc),
                )
                for version in entry.key_versions
            ]
            sealed = json.dumps(keys, separators=(",", ":"))
            with self._lock:
                if len(self._sealed) > MAX_CACHED:
                    self._sealed.clear()
                self._sealed[(session, entry.digest)] = sealed
        return sealed

    # ------------------------------------------------------------ renew, release, return

    def _own_lease(self, device: _Device, lease_id: str) -> Lease:
        """A lease this device holds; LeaseUnknown for any other (no hint that it exists)."""
        lease = self.engine.lease(lease_id)
        if lease is None or device_of(lease.machine) != device.serial:
            raise LeaseUnknown(f"lease {lease_id}: no such lease")
        return lease

    def _still_entitled(self, device: _Device, lease: Lease) -> bool:
        serial = lease.license_key.partition("/")[0]
        request = AccessRequest(lease.firm_code, lease.product_code, lease.feature_code)
        return any(
            h.serial == serial and h.entry.license_id == lease.license_id for h in self._held(device.person, request)
        )

    def renew(self, token: str | None, lease_id: str, body: dict[str, Any]) -> dict[str, Any]:
        device = self.device(token)
        client_lease_id = field_text(body, "client_lease_id", required=True)
        lease = self._own_lease(device, lease_id)
        if lease.client_lease_id == client_lease_id and not self._still_entitled(device, lease):
            self.engine.release(lease_id, admin=True)
            log.warning(
                "cloud lease %s of %s ended: the license is no longer the person's", lease_id, device.person.login
            )
            raise LeaseRevoked("this cloud license is no longer yours: ask your administrator")
        return protocol.renew(self.engine, lease_id, body, ttl=self.ttl, heartbeat=self.heartbeat)

    def release(
        self, token: str | None, lease_id: str, client_lease_id: str, counter: str, proof: str
    ) -> dict[str, Any]:
        device = self.device(token)
        try:
            self._own_lease(device, lease_id)
        except LeaseUnknown:
            return {"released": False}
        return protocol.release(self.engine, lease_id, client_lease_id, counter, proof)

    def return_grace(self, token: str | None, lease_id: str, body: dict[str, Any]) -> dict[str, Any]:
        """The device container's receipt that it holds the lease's grace no more."""
        lease = self._own_lease(self.device(token), lease_id)
        return protocol.return_grace(self.engine, lease, lease_id, body.get("receipt"))

    # ------------------------------------------------------------ seats over REST (user licensing)

    def user_access(self, person: Person, request: AccessRequest, device: str | None, ip: str) -> dict[str, Any]:
        """A seat for a person without a runtime (docs/cloud.md, "User licensing over REST"):
        the person's seat, shared by all its calls, or, where the item counts devices, the
        seat of the device the caller names. It lives ``ttl`` seconds unless renewed."""
        if device is not None and not 1 <= len(device) <= 128:
            raise E.BadRequest("device is a name of 1 to 128 characters")
        client = Client(client_lease_id=secrets.token_urlsafe(12), user=person.login, ip=ip)
        ok, none = self._evaluate(self._held(person, request), request)
        if not ok:
            self.engine.record_denial(
                client,
                firm_code=request.firm_code,
                product_code=request.product_code,
                feature_code=request.feature_code,
                invalid=True,
                reason=none.log,
            )
            raise none
        if any(item.per_device for item, _ in ok) and device is None:
            raise E.BadRequest("this license counts devices: name the device (device)")
        refusals: list[Refusal] = []
        for item, ev in ok:
            seat = f"{PERSON}{person.account_id.hex}" + (f"/{device}" if item.per_device else "")
            try:
                lease = self.engine.acquire(
                    dataclasses.replace(client, machine=seat, host=device or ""),
                    firm_code=request.firm_code,
                    product_code=request.product_code,
                    feature_code=request.feature_code,
                    mode="station",
                    candidates=[item.seat_license(ev, 0)],
                )
            except Refusal as refused:
                refusals.append(refused)
                continue
            return {
                "lease_id": lease.id,
                "license_id": item.entry.license_id,
                "ttl": self.ttl,
                "expires_in": max(0, lease.expires - self.ctx.now()),
            }
        raise max(refusals, key=lambda r: r.rank)

    def _user_lease(self, person: Person, lease_id: str) -> Lease:
        lease = self.engine.lease(lease_id)
        if lease is None or not (lease.machine or "").startswith(f"{PERSON}{person.account_id.hex}"):
            raise LeaseUnknown(f"lease {lease_id}: no such lease")
        return lease

    def user_renew(self, person: Person, lease_id: str) -> dict[str, Any]:
        lease = self._user_lease(person, lease_id)
        request = AccessRequest(lease.firm_code, lease.product_code, lease.feature_code)
        serial = lease.license_key.partition("/")[0]
        if not any(h.serial == serial and h.entry.license_id == lease.license_id for h in self._held(person, request)):
            self.engine.release(lease_id, admin=True)
            raise LeaseRevoked("this license is no longer yours: ask your administrator")
        try:
            renewed = self.engine.renew(lease_id, lease.client_lease_id)
        except LeaseUnknown as exc:
            raise LeaseUnknown(f"lease {lease_id}: {exc}") from None
        return {"lease_id": renewed.id, "ttl": self.ttl, "expires_in": max(0, renewed.expires - self.ctx.now())}

    def user_release(self, person: Person, lease_id: str) -> dict[str, Any]:
        try:
            lease = self._user_lease(person, lease_id)
        except LeaseUnknown:
            return {"released": False}
        return {"released": self.engine.release(lease_id, lease.client_lease_id)}

    # ------------------------------------------------------------ what the person sees

    def leases_of(self, person: Person) -> list[dict[str, Any]]:
        """The live cloud leases of the person's devices (``licentia cloud devices``)."""
        now = self.ctx.now()
        with self.ctx.db.session() as session, session.begin():
            devices = dict(
                session.execute(
                    select(CloudDevice.serial, CloudDevice.id).where(
                        CloudDevice.account_id == person.account_id, CloudDevice.unlinked.is_(None)
                    )
                ).all()
            )
        if not devices:
            return []
        out = []
        with self.store.snapshot() as tx:
            for lease in tx.live_device_leases(list(devices), now):
                dev: uuid.UUID = devices[device_of(lease.machine) or ""]
                out.append(
                    {
                        "device": str(dev),
                        "lease_id": lease.id,
                        "product_code": lease.product_code,
                        "license": lease.license_key,
                        "address": lease.ip,
                        "since": lease.access_time,
                        "state": lease.state,
                    }
                )
        return out
