"""The license server without HTTP: its container, the seat engine, grants, config.

``LicenseServer`` serves the firm-signed entries of the license containers in its data
directory. For each access it evaluates the entries' options against the container's
state, asks the seat engine for a seat, signs a lease with the container key, and seals
the product keys to the client session. Requests are plain dicts (the HTTP layer
parses JSON); answers are dicts (an access: its JSON bytes); a refusal is a
``SeatError`` of ``licentia.core.errors`` (``Refusal``, ``LeaseUnknown``, ``BadRequest``...)
that the HTTP layer turns into its status and error body.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import logging
import os
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from ..container import Container, Slot, container_dirs, files
from ..container.traits import key_file_traits
from ..core import errors as E
from ..core import exchange, grants, hazmat
from ..core.documents import DocumentInvalid
from ..core.encoding import b64d
from ..core.license import AccessRequest, Evaluation, LicenseEntry, evaluate
from ..runtime import Runtime, make_runtime
from ..seats import (
    Acl,
    AclError,
    Client,
    Lease,
    LeaseRevoked,
    Refusal,
    SeatEngine,
    SeatLicense,
    SqliteSeatStore,
    protocol,
    usage,
)
from ..seats.protocol import AccessAsk, BorrowAsk, parse_access, parse_borrow
from ..seats.usage import verify_log
from .proxy import Gate
from .settings import RELOADABLE, Settings, SettingsError, read_config, server_table

log = logging.getLogger("licentia.server")

MAX_CACHED = 10000  # session keys checked, product keys sealed per session: forgotten past this
RESCAN_EVERY = 2.0  # real seconds between looks for new containers on a miss
CHALLENGE_TTL = 120  # seconds a challenge nonce may be answered in (once)
MAX_CHALLENGES = 100000
SERVED_CHECK = 0.2  # real seconds between looks at the containers' state files


def _dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"))


@dataclass(frozen=True)
class Served:
    """One license the server holds, verified against its container's pinned firm key."""

    entry: LicenseEntry
    container: Container
    key: str  # "<serial>/<license id>"

    def matches(self, request: AccessRequest) -> bool:
        return self.entry.firm_code == request.firm_code and self.entry.product_code == request.product_code

    def seat_license(self, ev: Evaluation | None = None, max_grace: int | None = None) -> SeatLicense:
        """The license as the seat engine sees it; ``max_grace``: the server's cap on grace."""
        valid_until = ev.expires if ev is not None else self.entry.options.expires
        return SeatLicense.of_entry(self.key, self.entry, valid_until, max_grace)


Candidates = list[tuple[Served, Evaluation]]

# ---------------------------------------------------------------- requests


def _chosen(candidates: Candidates, lease: Lease) -> tuple[Served, Evaluation]:
    return next((item, ev) for item, ev in candidates if item.key == lease.license_key)


def _no_license(request: AccessRequest, local: list[Served]) -> Refusal:
    held_back = any(item.matches(request) for item in local)
    why = " (its license is for local use only)" if held_back else ""
    return Refusal(
        E.LicenseNotFound,
        f"the license server has no license for firm {request.firm_code}, product {request.product_code}{why}",
    )


def server_runtime(data_dir: Path, binding_key_file: Path | None = None) -> Runtime:
    """The runtime over the server's data directory: its container bound to the machine's
    traits, or (``binding_key_file``, a server in a pod) to the key in that file."""
    rt = make_runtime(data_dir)
    if binding_key_file is not None:
        rt.traits = key_file_traits(binding_key_file)
    return rt


class LicenseServer:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.clock = settings.clock
        settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.runtime = server_runtime(settings.data_dir, settings.binding_key_file)
        self.store = SqliteSeatStore(settings.db_path, durability=settings.durability)
        self.acl = Acl()
        self.config_version = 0
        self.config_digest = ""
        self.config_error: str | None = None
        self._config_stat: tuple[int, int, int] | None = None
        self.engine = SeatEngine(
            self.store,
            clock=self.clock,
            ttl=settings.lease_ttl,
            linger=settings.linger,
            signer=self._sign,
            retention_days=settings.usage_retention_days,
            pseudonymiser=usage.Pseudonymiser.from_file(settings.pseudonym_key_file) if settings.pseudonymise else None,
        )
        self._served_cache: tuple[tuple[Any, ...], list[Served], list[Served]] | None = None
        self._keys: dict[tuple[str, str, int], bytes] = {}
        self._sealed: dict[tuple[str, str], str] = {}
        self._entry_json: dict[str, str] = {}
        self._sessions: set[str] = set()
        self._slots_now: dict[str, dict[int, Slot]] = {}
        self._lock = threading.RLock()
        self._last_rescan = 0.0
        self._served_checked = 0.0
        #: nonce -> server time it was issued, oldest first
        self._challenges: collections.OrderedDict[str, int] = collections.OrderedDict()
        self.gate = Gate(settings.data_dir, self.containers)
        self.load_config(initial=True)

    # ------------------------------------------------------------ config

    def load_config(self, *, initial: bool = False) -> bool:
        """(Re)load the config file: access rules and the reloadable [server] settings.

        On a start an unusable file is an error; on a reload it is logged and the live
        config stays. Returns whether a new config went live."""
        path = self.settings.config_path
        if path is None:
            if initial:
                self._bump_version("")
            return False
        try:
            self._config_stat = files.stat_key(path)
            acl = Acl.from_toml(path.read_bytes())
            values = server_table(read_config(path))
        except (OSError, AclError, SettingsError) as exc:
            message = f"config {path}: {exc}"
            if initial:
                raise SettingsError(message) from None
            self.config_error = message
            log.error("%s (the previous config stays live)", message)
            return False
        self._apply_settings(path, values, initial)
        self._apply_acl(path, acl)
        return True

    def _apply_settings(self, path: Path, values: dict[str, Any], initial: bool) -> None:
        live = {k: v for k, v in values.items() if k in RELOADABLE}
        if not initial:
            restart = sorted(k for k, v in values.items() if k not in RELOADABLE and getattr(self.settings, k) != v)
            if restart:
                log.warning("config %s: %s take effect at the next restart", path, ", ".join(restart))
        defaults = Settings()
        for name in RELOADABLE:
            live.setdefault(name, getattr(defaults, name) if not initial else getattr(self.settings, name))
        self.settings = self.settings.with_changes(**live)
        self.engine.ttl = self.settings.lease_ttl
        self.engine.linger = self.settings.linger
        self.engine.retention_days = self.settings.usage_retention_days

    def _apply_acl(self, path: Path, acl: Acl) -> None:
        self.acl = acl
        self.engine.acl = acl
        self.config_error = None
        if acl.digest != self.config_digest:
            self._bump_version(acl.digest)
            log.warning("config %s is live: version %d (%s)", path, self.config_version, acl.digest)

    def config_changed(self) -> bool:
        path = self.settings.config_path
        return path is not None and files.stat_key(path) != self._config_stat

    def _bump_version(self, digest: str) -> None:
        with self.store.transaction() as tx:
            version = int(tx.get_meta("config_version") or 0) + 1
            tx.set_meta("config_version", str(version))
        self.config_version, self.config_digest = version, digest

    # ------------------------------------------------------------ containers and licenses

    def containers(self) -> list[Container]:
        out = []
        for path, result in self.runtime.containers(rescan=True).items():
            if isinstance(result, E.LicenseError):
                log.error("container %s cannot be opened: %s", path.name, result)
                continue
            out.append(result)
        return out

    def _open_containers(self) -> list[Container]:
        return [c for c in self.runtime.containers().values() if not isinstance(c, E.LicenseError)]

    def _sign(self, doc_type: str, payload: dict[str, Any]) -> dict[str, Any]:
        return self.primary().sign(doc_type, payload)

    def primary(self) -> Container:
        found = self._open_containers() or self.containers()
        return found[0] if found else self._create_container()

    def _create_container(self) -> Container:
        return self.runtime.machine_container("medium", now=self.clock())

    def served(self) -> tuple[list[Served], list[Served]]:
        """(licenses served over the network, local-only licenses kept back).

        The containers' state files are looked at again at most every SERVED_CHECK seconds:
        an update applied to the server's container is live within that time."""
        cached = self._served_cache
        if cached is not None and time.monotonic() - self._served_checked < SERVED_CHECK:
            return cached[1], cached[2]
        self._served_checked = time.monotonic()
        containers = self._open_containers()
        now_slots = {c.serial: c.slots() for c in containers}
        self._slots_now = now_slots  # what _evaluate reads (no second stat)
        state = tuple((serial, id(slots)) for serial, slots in now_slots.items())
        if cached is not None and cached[0] == state:
            return cached[1], cached[2]
        with self._lock:
            served, local = self._verify_served(containers)
            self._served_cache = (state, served, local)
            return served, local

    def _verify_served(self, containers: list[Container]) -> tuple[list[Served], list[Served]]:
        """Every license of ``containers`` that verifies against the firm keys its container
        pinned (the same verification, and digest cache, as a local access)."""
        served: list[Served] = []
        local: list[Served] = []
        for container in containers:
            for slot in container.slots().values():
                entries, bad = self.runtime.verified_entries(container, slot, slot.pinned_keys())
                for message in bad:
                    log.error("%s (the reason is in the log above)", message)
                for entry in entries:
                    item = Served(entry, container, f"{container.serial}/{entry.license_id}")
                    (local if entry.options.local_only else served).append(item)
        return served, local

    def rescan(self) -> None:
        """Look for containers and licenses added since (server activate/apply while running)."""
        self.runtime.containers(rescan=True)
        self._served_cache = None
        self._served_checked = 0.0

    def product_key(self, item: Served, version: int) -> bytes | None:
        k = (item.key, item.entry.digest, version)
        key = self._keys.get(k)
        if key is None:
            key = item.container.product_key(item.entry, version)
            if key is not None:
                self._keys[k] = key
        return key

    def _served_for(self, request: AccessRequest) -> tuple[list[Served], list[Served]]:
        """``served()``, looked at again (at most every RESCAN_EVERY seconds) when it holds no
        license of the product: licenses may have been added by server activate / apply."""
        served, local = self.served()
        if not any(i.matches(request) for i in served + local) and time.monotonic() - self._last_rescan > RESCAN_EVERY:
            self._last_rescan = time.monotonic()
            self.rescan()
            served, local = self.served()
        return served, local

    def _evaluate(self, served: list[Served], request: AccessRequest) -> tuple[Candidates, Refusal | None]:
        """The served licenses of the product that allow ``request`` now, and the refusal
        closest to success among those that do not (None when none was looked at)."""
        now = self.clock()
        ok: Candidates = []
        failures: list[tuple[int, type[E.LicenseError], str]] = []
        for item in served:
            if not item.matches(request):
                continue
            e = item.entry
            slots = self._slots_now.get(item.container.serial)
            slot = (slots if slots is not None else item.container.slots()).get(e.firm_code)
            if slot is None:
                continue
            ev = evaluate(e, slot.license_state(e), request, now, slot.vclock)
            if ev.error is not None:
                failures.append((ev.error.rank, ev.error, f"{e.summary()}: {ev.message}"))
                continue
            ok.append((item, ev))
        if ok or not failures:
            return ok, None
        _, cls, message = max(failures, key=lambda f: f[0])
        return ok, Refusal(cls, f"license server: {message}")

    def _candidates(self, client: Client, request: AccessRequest, mode: str) -> Candidates:
        """The licenses that may serve ``request``; a Refusal (recorded in the usage log) when none."""
        served, local = self._served_for(request)
        ok, refusal = self._evaluate(served, request)
        if ok:
            return ok
        refusal = refusal or _no_license(request, local)
        self._refuse(client, request, mode, refusal, refusal.client_message)

    def _refuse(
        self, client: Client, request: AccessRequest, mode: str, refusal: Refusal, reason: str, *, invalid: bool = True
    ) -> NoReturn:
        """Record a request's refusal in the usage log (``reason``; ``invalid``: the request
        was invalid, else refused for want of what it asked), and raise it."""
        self.engine.record_denial(
            client,
            firm_code=request.firm_code,
            product_code=request.product_code,
            feature_code=request.feature_code,
            mode=mode,
            invalid=invalid,
            reason=reason,
        )
        raise refusal

    def _admitted(
        self, client: Client, request: AccessRequest, mode: str, candidates: Candidates, device: dict[str, Any] | None
    ) -> tuple[Client, Candidates]:
        """The candidates ``client`` may use: a proxied license (a group's cloud license this
        server proxies) only by a device a member of the group linked (``device``: the
        container the client proved, or borrows into); the client named by the member's
        login when it is one. A Refusal (recorded) when nothing is left."""
        kept: Candidates = []
        member = None
        groups = set()
        for item, ev in candidates:
            e = item.entry
            grant = self.gate.proxied(e.firm_code, item.container.serial, e.license_id)
            if grant is None:
                if not self.gate.withheld(e.firm_code, item.container.serial, e.license_id):
                    kept.append((item, ev))
                continue
            found = self.gate.member(grant, device)
            if found is None:
                groups.add(grant.group)
                continue
            member = found
            kept.append((item, ev))
        if not kept and groups:
            refusal = Refusal(
                E.AccessDenied,
                f"this license is served to the members of group {', '.join(sorted(groups))} only, on a device they "
                "linked: run 'licentia cloud login' on this machine",
                f"{client.ident}: device {(device or {}).get('serial')} is no member's of {sorted(groups)}",
            )
            self._refuse(client, request, mode, refusal, refusal.log)
        if not kept:
            refusal = Refusal(
                E.LicenseNotFound,
                "the license server serves this license no more (it proxied the vendor's cloud, and the proxy or "
                "the license ended): ask its administrator",
                f"{client.ident}: {request.firm_code}:{request.product_code} was proxied, and is no more",
            )
            self._refuse(client, request, mode, refusal, refusal.log)
        if member is not None:
            client = dataclasses.replace(client, user=member.login)
        return client, kept

    def _proxy_ended(self, lease: Lease) -> str | None:
        """Why a lease of a proxied license may not be renewed (None: it may, or it is no
        proxied license): the grant or the entry ended, or the device is no member's now."""
        serial = lease.license_key.partition("/")[0]
        if not self.gate.was_proxied(lease.license_key):
            return None
        served, _ = self.served()
        item = next((i for i in served if i.key == lease.license_key), None)
        grant = self.gate.proxied(lease.firm_code, serial, lease.license_id)
        now = self.clock()
        if item is None or grant is None or grant.until <= now:
            return "the proxy's grant of the license ended"
        expires = item.entry.options.expires
        if expires is not None and expires <= now:
            return "the proxy's entry of the license ended"
        device, _, _ = (lease.machine or "").partition("@")
        d_serial, _, key_id = device.partition(":")
        if not any(s == d_serial and hazmat.key_id(b64d(pub)) == key_id for m in grant.members for s, pub in m.devices):
            return f"device {d_serial} is no member's of group {grant.group} now"
        return None

    # ------------------------------------------------------------ machine proofs

    def challenge(self) -> dict[str, Any]:
        """A fresh nonce for a machine proof (answered once, within CHALLENGE_TTL seconds)."""
        now = self.clock()
        with self._lock:
            # anyone may ask, so what is kept stays bounded and each request does a little:
            # stale challenges leave from the front; past the cap the oldest leave first
            kept = self._challenges
            while kept and (len(kept) >= MAX_CHALLENGES or now - next(iter(kept.values())) > CHALLENGE_TTL):
                kept.popitem(last=False)
            nonce = secrets.token_urlsafe(18)
            self._challenges[nonce] = now
        return {"nonce": nonce, "time": now}

    def _answered(self, doc: Any, sign_pub: str | None = None) -> tuple[protocol.MachineProof | None, str]:
        """A machine proof that verifies (with ``sign_pub`` when given) and answers a live
        challenge of this server, which it uses up: (the proof, ""), or (None, why not)."""
        try:
            proof = protocol.read_machine_proof(doc, sign_pub)
        except ValueError as exc:
            return None, str(exc)
        with self._lock:
            seen = self._challenges.pop(proof.nonce, None)
        if seen is None or seen != proof.issued or self.clock() - seen > CHALLENGE_TTL:
            return None, "machine proof answers no live challenge of this server (stale or replayed)"
        return proof, ""

    def _machine(self, body: dict[str, Any], client: Client) -> Client:
        """The client with the machine its request proved (its container's serial and key,
        with the source address; unchanged when it offers no proof); a Refusal when the
        proof does not hold."""
        doc = body.get("machine")
        if doc is None:
            return client
        proof, why = self._answered(doc)
        if proof is not None and proof.holder != client.holder:
            why = "machine proof made for another session"
        if proof is None or why:
            raise Refusal(E.AccessDenied, "the machine proof does not verify", f"{client.ident}: {why}")
        return proof.client(client)

    # ------------------------------------------------------------ leases

    def access(self, body: dict[str, Any], ip: str) -> bytes:
        """A lease: the answer is the JSON document (bytes) of docs/formats.md."""
        ask = parse_access(body, ip)
        self._check_session(ask.session)
        try:
            if not ask.proven:
                raise protocol.unproven(ask.client)
            client = self._machine(body, ask.client)
        except Refusal as refusal:
            self._refuse(ask.client, ask.request, ask.mode, refusal, refusal.log)
        ask = ask._replace(client=client)
        candidates = self._candidates(ask.client, ask.request, ask.mode)
        client, candidates = self._admitted(ask.client, ask.request, ask.mode, candidates, client.container)
        ask = ask._replace(client=client)
        cap = self.settings.max_grace
        lease = self.engine.acquire(
            ask.client,
            firm_code=ask.request.firm_code,
            product_code=ask.request.product_code,
            feature_code=ask.request.feature_code,
            mode=ask.mode,
            candidates=[item.seat_license(ev, cap) for item, ev in candidates],
            grace=ask.grace,
            counter=ask.counter,
        )
        item, ev = _chosen(candidates, lease)
        now = self.clock()
        first_use = self._use(item, ask, ev, lease, now)
        entry = item.entry
        doc = grants.build_lease(
            item.container.sign,
            lease_id=lease.id,
            client_lease_id=ask.client.client_lease_id,
            entry=entry,
            feature_code=ask.request.feature_code,
            mode=ask.mode,
            session=ask.session,
            nonce=ask.nonce,
            issued=now,
            expires=lease.expires,
            first_use=first_use,
            holder=ask.client.holder,
            grace_until=lease.grace_until,
        )
        return self._lease_answer(lease, doc, self._entry_document(entry), self._session_keys(item, ask.session), now)

    def _check_session(self, session: str) -> None:
        """A session key is checked once: a base64url X25519 public key."""
        if session in self._sessions:
            return
        protocol.check_session_key(session)
        if len(self._sessions) > MAX_CACHED:
            self._sessions.clear()
        self._sessions.add(session)

    def _use(self, item: Served, ask: AccessAsk, ev: Evaluation, lease: Lease, now: int) -> int | None:
        """Count the access's units and first use in the container; the license's first use.

        When the container refuses (another access used the last units), the seat goes back
        at once and the refusal is logged as a denial."""
        if ev.units or ev.start_usage:
            try:
                return self._commit(item, ask.request, now, ev)
            except E.LicenseError as exc:
                self.engine.withdraw(lease.id, f"its units were refused: {exc}")
                refusal = Refusal(type(exc), f"license server: {exc}")
                # refused for want of units, as the engine refuses for want of seats
                reason = f"units refused by the container: {exc}"
                self._refuse(ask.client, ask.request, ask.mode, refusal, reason, invalid=False)
        if item.entry.options.usage_period is not None:
            slot = item.container.slots().get(item.entry.firm_code)
            return slot.license_state(item.entry).first_use if slot else None
        return None

    def _commit(self, item: Served, request: AccessRequest, now: int, ev: Evaluation) -> int | None:
        entry = item.entry

        def check(slot: Slot) -> None:
            fresh = evaluate(entry, slot.license_state(entry), request, now, slot.vclock)
            if fresh.error is not None:
                raise fresh.error(f"{entry.summary()}: {fresh.message}")

        slot = item.container.record_access(
            entry, units=request.units, start_usage=ev.start_usage, now=now, check=check
        )
        return slot.license_state(entry).first_use

    def _session_keys(self, item: Served, session: str) -> str:
        """The JSON list of the license's product keys sealed to ``session`` (sealed once per
        session and license)."""
        entry = item.entry
        keys_json = self._sealed.get((session, entry.digest))
        if keys_json is None:
            keys = []
            for version in entry.key_versions:
                pkey = self.product_key(item, version)
                if pkey is not None:
                    keys.append(grants.seal_lease_key(session, entry.serial, entry.digest, version, pkey))
            if len(self._sealed) > MAX_CACHED:
                self._sealed.clear()
            keys_json = self._sealed[(session, entry.digest)] = _dumps(keys)
        return keys_json

    def _entry_document(self, entry: LicenseEntry) -> str:
        """The entry's JSON document (serialized once per license)."""
        entry_json = self._entry_json.get(entry.digest)
        if entry_json is None:
            entry_json = self._entry_json[entry.digest] = _dumps(entry.document)
        return entry_json

    def _lease_answer(self, lease: Lease, doc: dict[str, Any], entry_json: str, keys_json: str, now: int) -> bytes:
        return (
            f'{{"lease_id":{_dumps(lease.id)},"lease":{_dumps(doc)},"entry":{entry_json},"keys":{keys_json},'
            f'"ttl":{self.settings.lease_ttl},"heartbeat":{self.settings.heartbeat_seconds},'
            f'"expires_in":{max(0, lease.expires - now)}}}'
        ).encode()

    def renew(self, lease_id: str, body: dict[str, Any]) -> dict[str, Any]:
        lease = self.engine.lease(lease_id)
        if lease is not None and lease.client_lease_id == body.get("client_lease_id"):
            why = self._proxy_ended(lease)
            if why is not None:
                self.engine.release(lease_id, admin=True)
                log.warning("lease %s of %s ended: %s", lease_id, lease.ident, why)
                raise LeaseRevoked("the license server no longer serves you this license: ask your group admin")
        return protocol.renew(
            self.engine, lease_id, body, ttl=self.settings.lease_ttl, heartbeat=self.settings.heartbeat_seconds
        )

    def release(self, lease_id: str, client_lease_id: str, counter: str = "", proof: str = "") -> dict[str, Any]:
        return protocol.release(self.engine, lease_id, client_lease_id, counter, proof)

    def return_grace(self, lease_id: str, body: dict[str, Any]) -> dict[str, Any]:
        """The client container's receipt that it holds the lease's grace no more."""
        return protocol.return_grace(self.engine, self.engine.lease(lease_id), lease_id, body.get("receipt"))

    # ------------------------------------------------------------ borrowing

    def borrow(self, body: dict[str, Any], ip: str) -> dict[str, Any]:
        ask = parse_borrow(body, ip)
        device = self._proven_borrower(body, ask)
        candidates = self._candidates(ask.client, ask.request, "borrow")
        client, candidates = self._admitted(ask.client, ask.request, "borrow", candidates, device)
        ask = ask._replace(client=client)
        lease = self.engine.borrow(
            ask.client,
            firm_code=ask.request.firm_code,
            product_code=ask.request.product_code,
            feature_code=ask.request.feature_code,
            days=ask.days,
            borrower=ask.borrower,
            candidates=[item.seat_license(ev) for item, ev in candidates],
        )
        item, _ = _chosen(candidates, lease)
        return self._borrow_answer(item, ask, lease)

    def _proven_borrower(self, body: dict[str, Any], ask: BorrowAsk) -> dict[str, str] | None:
        """The borrowing container when the request proves it (a machine proof by that
        container over a live challenge of this server, whose ``holder`` is the container's
        box key, the key the borrowed product keys are sealed to), else None. A container's
        serial and keys are public, so only a proven one counts as a group member's device
        for a proxied license; a proof that does not hold is refused (and logged)."""
        doc = body.get("machine")
        if doc is None:
            return None
        proof, why = self._answered(doc, ask.borrower["sign_pub"])
        if proof is not None and proof.serial != ask.borrower["serial"]:
            why = "machine proof of another container serial"
        elif proof is not None and proof.holder != ask.borrower["box_pub"]:
            why = "machine proof made for another box key"
        if why:
            refusal = Refusal(E.AccessDenied, "the machine proof does not verify", f"{ask.client.ident}: {why}")
            self._refuse(ask.client, ask.request, "borrow", refusal, refusal.log)
        return ask.borrower

    def _borrow_answer(self, item: Served, ask: BorrowAsk, lease: Lease) -> dict[str, Any]:
        entry = item.entry
        serial = ask.borrower["serial"]
        now = self.clock()
        grant = grants.build_borrow(
            item.container.sign,
            borrow_id=lease.id,
            entry=entry,
            client_serial=serial,
            client_key=ask.borrower["sign_pub"],
            issued=lease.access_time,
            expires=lease.expires,
        )
        keys = []
        for version in entry.key_versions:
            pkey = self.product_key(item, version)
            if pkey is not None:
                keys.append(exchange.seal_product_key(ask.box_key, serial, entry.digest, version, pkey))
        return {
            "borrow_id": lease.id,
            "entry": entry.document,
            "grant": grant,
            "keys": keys,
            "expires": lease.expires,
            "time": now,
        }

    def return_borrowed(self, borrow_id: str, body: dict[str, Any]) -> dict[str, Any]:
        receipt = body.get("receipt")
        lease = self.engine.borrow_lease(borrow_id)
        if lease is None or not isinstance(receipt, dict):
            raise E.BorrowUnknown(f"no borrowed license {borrow_id} on this server")
        borrower = lease.borrower or {}
        try:
            back = grants.verify_return(receipt, borrower.get("sign_pub", ""))
        except DocumentInvalid as exc:
            log.warning("return of %s refused: %s", borrow_id, exc.reason)
            raise E.BadRequest("the return receipt does not verify") from None
        if back.borrow_id != borrow_id or back.serial != borrower.get("serial"):
            raise E.BadRequest("the return receipt is for another borrowed license")
        self.engine.end_borrow(borrow_id, back.serial)
        return {"returned": True, "borrow_id": borrow_id}

    # ------------------------------------------------------------ views

    def licenses(self) -> list[dict[str, Any]]:
        served, local = self.served()
        used = self.engine.seats_in_use([s.key for s in served])
        now = self.clock()
        return [self._license_view(item, False, used.get(item.key, 0), now) for item in served] + [
            self._license_view(item, True, 0, now) for item in local
        ]

    @staticmethod
    def _license_view(item: Served, is_local: bool, in_use: int, now: int) -> dict[str, Any]:
        e = item.entry
        slot = item.container.slots().get(e.firm_code)
        ev = (
            evaluate(e, slot.license_state(e), AccessRequest(e.firm_code, e.product_code), now, slot.vclock)
            if slot
            else None
        )
        ok = ev is not None and ev.ok
        return {
            "container": item.container.serial,
            "firm_code": e.firm_code,
            "product_code": e.product_code,
            "license_id": e.license_id,
            "ticket": e.ticket,
            "text": e.text,
            "feature_map": e.feature_map,
            "seats": e.options.quantity,
            "in_use": in_use,
            "expires": ev.expires if ev is not None and ok else e.options.expires,
            "status": "local only" if is_local else ("ok" if ok else (ev.message if ev else "no slot")),
        }

    def status(self) -> dict[str, Any]:
        now = self.clock()
        sessions = self.engine.sessions()
        return {
            "server": {
                "containers": [c.serial for c in self.containers()],
                "config_version": self.config_version,
                "config_digest": self.config_digest,
                "config_error": self.config_error,
                "config_path": str(self.settings.config_path) if self.settings.config_path else None,
                "lease_ttl": self.settings.lease_ttl,
                "linger": self.settings.linger,
                "heartbeat": self.settings.heartbeat_seconds,
                "time": now,
                "pid": os.getpid(),
            },
            "licenses": self.licenses(),
            "proxy": self.gate.views(),
            "sessions": [s.view(now) for s in sessions if s.mode != "borrow"],
            "borrowed": [s.view(now) for s in sessions if s.mode == "borrow"],
        }

    def admin_release(self, lease_id: str) -> bool:
        released = self.engine.release(lease_id, admin=True)
        if released:
            log.warning("session %s released by the administrator", lease_id)
        return released

    def usage_key(self) -> hazmat.Ed25519PublicKey:
        return hazmat.Ed25519PublicKey.from_public_bytes(b64d(self.primary().sign_pub))

    def sync_central(self) -> CentralSync | None:
        """Upload the usage log to License Central, then sync the licenses (the running
        server's periodic sync; ``licentia server sync`` does the same by hand). None when
        no container here knows a License Central. Runs in a worker thread: it works on a
        runtime of its own, and the server sees the containers' changes by their files."""
        from ..runtime import activation

        rt = server_runtime(self.settings.data_dir, self.settings.binding_key_file)
        error: E.LicentiaError | None = None
        try:
            uploaded = upload_usage(self.engine, rt)
        except E.LicentiaError as exc:  # the licenses are synced all the same: a withdrawal takes effect
            uploaded, error = None, exc
        if uploaded is None and error is None:
            return None
        try:
            synced = activation.sync(None, runtime=rt, cli="licentia server")
        finally:
            self.rescan()
        if error is not None or uploaded is None:
            raise error or E.ActivationError("the usage log was not uploaded")
        return CentralSync(uploaded, len(synced))

    def close(self) -> None:
        self.store.close()


# ---------------------------------------------------------------- offline


def _container_keys(data_dir: Path) -> list[hazmat.Ed25519PublicKey]:
    """The public keys named in the container.json of every container in ``data_dir`` (any kind)."""
    keys = []
    for path in container_dirs(data_dir):
        try:
            meta = json.loads((path / "container.json").read_bytes())
            keys.append(hazmat.Ed25519PublicKey.from_public_bytes(b64d(meta["sign_pub"])))
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return keys


def verify_usage_offline(
    data_dir: Path, anchor_keys: dict[int, dict[str, hazmat.Ed25519PublicKey]] | None = None
) -> dict[str, Any]:
    """`licentia server usage verify`: check the log with the container's public key only,
    and against the stored License Central anchor (its signature too with ``anchor_keys``)."""
    keys = _container_keys(data_dir)
    db = data_dir / "seats.db"
    if not db.exists():
        raise FileNotFoundError(f"no usage log in {data_dir} (seats.db is missing)")
    store = SqliteSeatStore(db, readonly=True)
    try:
        with store.snapshot() as tx:
            results = [verify_log(tx, key, anchor_keys=anchor_keys) for key in keys] or [
                verify_log(tx, None, anchor_keys=anchor_keys)
            ]
    finally:
        store.close()
    good = [r for r in results if r["ok"]]
    result = good[0] if good else results[0]
    if not keys:
        result = {**result, "ok": False, "problems": [*result["problems"], "no server container to check against"]}
    return result


# ---------------------------------------------------------------- License Central


@dataclass(frozen=True)
class UsageUploaded:
    """What an upload of the usage log to License Central did."""

    serial: str  # the server container whose key signed it
    anchored: int | None  # the last event License Central anchored (None: none yet)
    anchored_at: int | None  # when (Central's time)
    uploaded: int  # events sent
    flagged: tuple[str, ...] = ()
    withdrawn: tuple[str, ...] = ()
    rebased: tuple[str, ...] = ()

    def summary(self) -> str:
        if self.anchored is None:
            return "Usage log: no events to upload to License Central yet."
        return (
            f"Usage log anchored at License Central through event {self.anchored} "
            f"({self.uploaded} event{'s' if self.uploaded != 1 else ''} uploaded)."
        )


@dataclass(frozen=True)
class CentralSync:
    usage: UsageUploaded
    updates: int  # license updates applied


def firm_keys(container: Container) -> dict[int, dict[str, hazmat.Ed25519PublicKey]]:
    """The firm keys each slot of ``container`` pinned, by firm code: what verifies an anchor."""
    return {firm: slot.pinned_keys() for firm, slot in container.slots().items() if slot.pinned}


def usage_container(rt: Any) -> tuple[Container, str | None] | None:
    """The container whose key signs the usage uploads (the first one holding licenses from
    License Central) and the Central its slot names."""
    first: tuple[Container, str | None] | None = None
    for container, slot in rt.iter_slots():
        if slot.central:
            return container, slot.central
        if first is None and slot.seq > 0:
            first = (container, None)
    return first


def _strings(answer: dict[str, Any], name: str) -> tuple[str, ...]:
    value = answer.get(name)
    return tuple(str(v) for v in value) if isinstance(value, list) else ()


def upload_usage(
    engine: SeatEngine, rt: Any, central: str | None = None, *, transport: Any = None
) -> UsageUploaded | None:
    """Upload every event after the stored anchor to License Central (``central``, else the
    one the container's slot names) and keep each anchor it answers. None when no container
    here knows a Central.

    When Central holds the log through an event the stored anchor is before (its
    ``anchor_mismatch``: this server lost its anchor record), the upload starts again once
    from that event, if the log still holds it. ActivationError on every failure."""
    from ..client import CentralClient, CentralError, CentralRefused

    found = usage_container(rt)
    if found is None or not (central or found[1]):
        return None
    container, named = found
    url = str(central or named)
    keys = firm_keys(container)
    base: tuple[int, str] | None = None
    sent = 0
    flagged: list[str] = []
    withdrawn: list[str] = []
    rebased: list[str] = []
    try:
        with CentralClient(url, transport=transport) as client:
            while True:
                try:
                    for doc in engine.usage_uploads(container.sign, container.serial, base=base):
                        answer = client.upload_usage(doc)
                        sent += len(doc["payload"]["events"])
                        engine.record_anchor(answer.get("anchor"), serial=container.serial, firm_keys=keys)
                        flagged += _strings(answer, "flagged")
                        withdrawn += _strings(answer, "withdrawn")
                        rebased += _strings(answer, "rebased")
                    break
                except CentralRefused as exc:
                    base = _restart(engine, exc, base)
    except CentralError as exc:
        raise E.ActivationError(f"the usage log could not go to License Central: {exc}") from None
    anchor = engine.central_anchor()
    if flagged:
        log.warning("License Central flagged the usage upload: %s", "; ".join(flagged))
    return UsageUploaded(
        container.serial,
        anchor.seq if anchor else None,
        anchor.time if anchor else None,
        sent,
        tuple(flagged),
        tuple(withdrawn),
        tuple(rebased),
    )


def _restart(engine: SeatEngine, exc: Any, base: tuple[int, str] | None) -> tuple[int, str]:
    """Where to upload from again after Central refused (re-raised unless it is the first
    ``anchor_mismatch`` and the log holds the event Central anchored)."""
    seq = exc.anchored_seq
    if exc.code != "anchor_mismatch" or base is not None or seq is None:
        raise exc
    digest = engine.usage_hash(seq)
    if digest is None:
        raise E.ActivationError(
            f"License Central holds this server's usage log through event {seq}, which the log here no longer "
            "holds: ask the vendor to clear the container's usage anchors ('licentia vendor container clear')"
        ) from None
    log.warning("License Central holds the usage log through event %d: uploading again from there", seq)
    return seq, digest


def sync_usage(data_dir: Path, rt: Any, central: str | None = None) -> UsageUploaded | None:
    """``licentia server sync``: upload the usage log of the server in ``data_dir``."""
    db = data_dir / "seats.db"
    if not db.exists():
        return None
    store = SqliteSeatStore(db)
    try:
        return upload_usage(SeatEngine(store, clock=rt.clock), rt, central)
    finally:
        store.close()


def export_usage(data_dir: Path, rt: Any) -> list[dict[str, Any]]:
    """``licentia server usage export``: the signed uploads of every event after the stored
    anchor, in order, for ``licentia depot submit`` (no network)."""
    found = usage_container(rt)
    if found is None:
        raise E.ActivationError(
            "no container of this license server holds licenses from License Central yet: activate a ticket "
            "first ('licentia server activate TICKET')"
        )
    db = data_dir / "seats.db"
    if not db.exists():
        return []
    store = SqliteSeatStore(db, readonly=True)
    try:
        container = found[0]
        return list(SeatEngine(store, clock=rt.clock).usage_uploads(container.sign, container.serial))
    finally:
        store.close()


def record_anchor_file(data_dir: Path, rt: Any, document: dict[str, Any]) -> Any:
    """``licentia server usage anchor FILE``: keep an anchor License Central answered."""
    found = usage_container(rt)
    if found is None:
        raise E.ActivationError("no container of this license server holds licenses from License Central")
    db = data_dir / "seats.db"
    if not db.exists():
        raise E.ActivationError(f"no usage log in {data_dir} (seats.db is missing)")
    store = SqliteSeatStore(db)
    try:
        container = found[0]
        return SeatEngine(store, clock=rt.clock).record_anchor(
            document, serial=container.serial, firm_keys=firm_keys(container)
        )
    finally:
        store.close()
