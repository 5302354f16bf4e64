"""The license server without HTTP: its container, the seat engine, grants, config.

``LicenseServer`` serves the firm-signed entries of the machine container(s) in its data
directory. For each access it evaluates the entries' options against the container's
state, asks the seat engine for a seat, signs a lease with the container key, and seals
the product keys to the client session. Requests are plain dicts (the HTTP layer
parses JSON); answers are dicts, errors are ``ApiError``.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..core import errors as E
from ..container import machine as _machine
from ..core import hazmat, codes, exchange, grants
from ..core.encoding import b64d
from ..core.documents import DocumentInvalid
from ..core.license import AccessRequest, Evaluation, LicenseEntry, evaluate
from ..runtime import make_runtime
from ..seats import MODES, Acl, AclError, Client, LeaseRevoked, LeaseUnknown, Refusal, SeatEngine, SeatLicense
from ..seats.store import SqliteSeatStore
from .settings import RELOADABLE, Settings, SettingsError, read_config, server_table

log = logging.getLogger("licentia.server")

MAX_NAME = 256
MAX_BORROW_DAYS = 3650
RESCAN_EVERY = 2.0  # real seconds between looks for new containers on a miss
SERVED_CHECK = 0.2  # real seconds between looks at the containers' state files


def _dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"))


class ApiError(Exception):
    """An answer other than success: HTTP status plus the JSON error body."""

    def __init__(self, status: int, error: type[E.LicenseError] | str, message: str, **extra: Any):
        self.status = status
        self.type = error if isinstance(error, str) else error.__name__
        self.code = None if isinstance(error, str) else error.code
        self.message = message
        self.extra = extra
        super().__init__(message)

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.type, "message": self.message}
        if self.code is not None:
            out["code"] = self.code
        out.update(self.extra)
        return {"error": out}

    @classmethod
    def bad(cls, message: str) -> ApiError:
        return cls(400, "BadRequest", message)

    @classmethod
    def from_refusal(cls, refusal: Refusal) -> ApiError:
        status = 404 if refusal.error is E.LicenseNotFound else 409 if refusal.error is E.SeatsExhausted else 403
        body = refusal.to_json()
        extra = {k: body[k] for k in ("seats", "in_use") if k in body}
        return cls(status, refusal.error, refusal.client_message, **extra)


@dataclass(frozen=True)
class Served:
    """One license the server holds, verified against its container's pinned firm key."""

    entry: LicenseEntry
    container: _machine.MachineContainer
    key: str  # "<serial>/<license id>"

    def seat_license(self, ev: Evaluation | None = None) -> SeatLicense:
        e = self.entry
        return SeatLicense(
            key=self.key,
            firm_code=e.firm_code,
            product_code=e.product_code,
            license_id=e.license_id,
            quantity=e.options.quantity,
            feature_map=e.feature_map,
            ticket=e.ticket,
            text=e.text,
            valid_until=ev.expires if ev is not None else e.options.expires,
        )


def _text(body: dict[str, Any], name: str, *, required: bool = False, default: str = "") -> str:
    value = body.get(name, default)
    if value is None:
        value = default
    if not isinstance(value, str) or len(value) > MAX_NAME or (required and not value):
        raise ApiError.bad(f"{name} is {'non-empty ' if required else ''}text of at most {MAX_NAME} characters")
    return value


def _int(body: dict[str, Any], name: str, *, default: int | None = None, minimum: int = 0) -> int:
    value = body.get(name, default)
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ApiError.bad(f"{name} is a whole number of at least {minimum}")
    return value


def _codes(body: dict[str, Any]) -> tuple[int, int, int]:
    try:
        firm = codes.check_firm_code(_int(body, "firm_code"))
        product = codes.check_product_code(_int(body, "product_code"))
        feature = codes.check_feature(_int(body, "feature_code", default=0))
    except codes.InvalidCode as exc:
        raise ApiError.bad(str(exc)) from None
    return firm, product, feature


def _client(body: dict[str, Any], ip: str) -> Client:
    groups = body.get("groups") or []
    if not isinstance(groups, list) or len(groups) > 64 or not all(isinstance(g, str) and len(g) <= MAX_NAME
                                                                   for g in groups):
        raise ApiError.bad("groups is a list of at most 64 names")
    return Client(
        client_lease_id=_text(body, "client_lease_id", required=True),
        user=_text(body, "user"),
        host=_text(body, "host"),
        ip=ip,
        pid=_int(body, "pid", default=0),
        groups=tuple(groups),
    )


class LicenseServer:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.clock = settings.clock
        settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.runtime = make_runtime(settings.data_dir)
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
        )
        self._served_cache: tuple[tuple[Any, ...], list[Served], list[Served]] | None = None
        self._keys: dict[tuple[str, str, int], bytes] = {}
        self._sealed: dict[tuple[str, str], str] = {}
        self._entry_json: dict[str, str] = {}
        self._sessions: set[str] = set()
        self._slots_now: dict[str, dict[int, _machine.Slot]] = {}
        self._lock = threading.RLock()
        self._last_rescan = 0.0
        self._served_checked = 0.0
        self.load_config(initial=True)

    # ------------------------------------------------------------ config

    def load_config(self, *, initial: bool = False) -> bool:
        """(Re)load the config file: access rules and the reloadable [server] settings.

        On a start an unusable file is an error; on a reload it is logged and the live
        config stays. Returns whether a new config went live."""
        path = self.settings.config_path
        from ..container.files import stat_key

        if path is None:
            if initial:
                self._bump_version("")
            return False
        try:
            self._config_stat = stat_key(path)
            raw = path.read_bytes()
            acl = Acl.from_toml(raw)
            values = server_table(read_config(path))
        except (OSError, AclError, SettingsError) as exc:
            message = f"config {path}: {exc}"
            if initial:
                raise SettingsError(message) from None
            self.config_error = message
            log.error("%s (the previous config stays live)", message)
            return False
        live = {k: v for k, v in values.items() if k in RELOADABLE}
        if not initial:
            restart = sorted(k for k, v in values.items() if k not in RELOADABLE and getattr(self.settings, k) != v)
            if restart:
                log.warning("config %s: %s take effect at the next restart", path, ", ".join(restart))
        defaults = Settings()
        for name in RELOADABLE:
            live.setdefault(name, getattr(defaults, name) if not initial else getattr(self.settings, name))
        self.settings = self.settings.with_changes(**live)
        self.acl = acl
        self.engine.acl = acl
        self.engine.ttl = self.settings.lease_ttl
        self.engine.linger = self.settings.linger
        self.engine.retention_days = self.settings.usage_retention_days
        self.config_error = None
        if acl.digest != self.config_digest:
            self._bump_version(acl.digest)
            log.warning("config %s is live: version %d (%s)", path, self.config_version, acl.digest)
        return True

    def config_changed(self) -> bool:
        from ..container.files import stat_key

        path = self.settings.config_path
        return path is not None and stat_key(path) != self._config_stat

    def _bump_version(self, digest: str) -> None:
        with self.store.transaction() as tx:
            version = int(tx.get_meta("config_version") or 0) + 1
            tx.set_meta("config_version", str(version))
        self.config_version, self.config_digest = version, digest

    # ------------------------------------------------------------ licenses

    def containers(self) -> list[_machine.MachineContainer]:
        out = []
        for path, result in self.runtime.containers(rescan=True).items():
            if isinstance(result, E.LicenseError):
                log.error("container %s cannot be opened: %s", path.name, result)
                continue
            out.append(result)
        return out

    def _sign(self, doc_type: str, payload: dict[str, Any]) -> dict[str, Any]:
        return self.primary().sign(doc_type, payload)

    def primary(self) -> _machine.MachineContainer:
        found = [c for c in self.runtime.containers().values() if isinstance(c, _machine.MachineContainer)]
        if not found:
            found = self.containers()
        if not found:
            found = [self._create_container()]
        return found[0]

    def _create_container(self) -> _machine.MachineContainer:
        from ..container.store import open_or_create

        container = open_or_create(self.runtime.home, "medium", self.runtime.traits, self.clock())
        self.runtime.reset()
        return container

    def served(self) -> tuple[list[Served], list[Served]]:
        """(licenses served over the network, local-only licenses kept back).

        The containers' state files are looked at again at most every SERVED_CHECK seconds:
        an update applied to the server's container is live within that time."""
        cached = self._served_cache
        if cached is not None and time.monotonic() - self._served_checked < SERVED_CHECK:
            return cached[1], cached[2]
        self._served_checked = time.monotonic()
        containers = [c for c in self.runtime.containers().values() if isinstance(c, _machine.MachineContainer)]
        now_slots = {c.serial: c.slots() for c in containers}
        self._slots_now = now_slots  # what _candidates evaluates against (no second stat)
        state = tuple((serial, id(slots)) for serial, slots in now_slots.items())
        if cached is not None and cached[0] == state:
            return cached[1], cached[2]
        with self._lock:
            served: list[Served] = []
            local: list[Served] = []
            for container in containers:
                for slot in container.slots().values():
                    # the same verification (and digest cache) as a local access, against the
                    # firm keys the server's container pinned
                    entries, bad = self.runtime._verified_entries(container, slot, slot.pinned_keys())
                    for message in bad:
                        log.error("%s (the reason is in the log above)", message)
                    for entry in entries:
                        item = Served(entry, container, f"{container.serial}/{entry.license_id}")
                        (local if entry.options.local_only else served).append(item)
            self._served_cache = (state, served, local)
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

    def _candidates(
        self, client: Client, request: AccessRequest, mode: str
    ) -> tuple[list[tuple[Served, Evaluation]], ApiError | None]:
        served, local = self.served()
        if not any(i.entry.firm_code == request.firm_code and i.entry.product_code == request.product_code
                   for i in served + local) and time.monotonic() - self._last_rescan > RESCAN_EVERY:
            # licenses may have been added since (licentia server activate / apply while running)
            self._last_rescan = time.monotonic()
            self.rescan()
            served, local = self.served()
        now = self.clock()
        ok: list[tuple[Served, Evaluation]] = []
        failures: list[tuple[int, type[E.LicenseError], str]] = []
        for item in served:
            e = item.entry
            if e.firm_code != request.firm_code or e.product_code != request.product_code:
                continue
            slots = self._slots_now.get(item.container.serial)
            slot = (slots if slots is not None else item.container.slots()).get(e.firm_code)
            if slot is None:
                continue
            ev = evaluate(e, slot.license_state(e.license_id), request, now, slot.vclock)
            if ev.error is not None:
                failures.append((ev.error.rank, ev.error, f"{e.summary()}: {ev.message}"))
                continue
            ok.append((item, ev))
        if ok:
            return ok, None
        if failures:
            _, cls, message = max(failures, key=lambda f: f[0])
            return [], ApiError(404 if cls is E.LicenseNotFound else 403, cls, f"license server: {message}")
        held_back = any(i.entry.firm_code == request.firm_code and i.entry.product_code == request.product_code
                        for i in local)
        why = " (its license is for local use only)" if held_back else ""
        return [], ApiError(404, E.LicenseNotFound,
                            f"the license server has no license for firm {request.firm_code}, product "
                            f"{request.product_code}{why}")

    # ------------------------------------------------------------ leases

    def access(self, body: dict[str, Any], ip: str) -> bytes:
        """A lease: the answer is the JSON document (bytes) of docs/formats.md."""
        firm, product, feature = _codes(body)
        client = _client(body, ip)
        mode = _text(body, "mode", default="user")
        if mode not in MODES:
            raise ApiError.bad(f"mode is one of {', '.join(MODES)}")
        units = _int(body, "units", default=0)
        release_date = body.get("release_date")
        if release_date is not None and (not isinstance(release_date, int) or isinstance(release_date, bool)):
            raise ApiError.bad("release_date is Unix seconds")
        session = _text(body, "session", required=True)
        nonce = _text(body, "nonce", required=True)
        if session not in self._sessions:
            try:
                if len(b64d(session)) != 32:
                    raise ValueError
            except ValueError:
                raise ApiError.bad("session is a base64url X25519 public key") from None
            if len(self._sessions) > 10000:
                self._sessions.clear()
            self._sessions.add(session)
        request = AccessRequest(firm, product, feature, units, release_date)
        candidates, error = self._candidates(client, request, mode)
        if error is not None:
            self.engine.record_denial(client, firm_code=firm, product_code=product, feature_code=feature, mode=mode,
                                      invalid=True, reason=error.message)
            raise error
        try:
            lease = self.engine.acquire(client, firm_code=firm, product_code=product, feature_code=feature, mode=mode,
                                        candidates=[item.seat_license(ev) for item, ev in candidates],
                                        reconnect=body.get("reconnect") is not False)
        except Refusal as refusal:
            raise ApiError.from_refusal(refusal) from None
        item, ev = next((i, v) for i, v in candidates if i.key == lease.license_key)
        now = self.clock()
        first_use = None
        if ev.units or ev.start_usage:
            try:
                first_use = self._commit(item, request, now, ev)
            except E.LicenseError as exc:
                self.engine.release(lease.id, client.client_lease_id)
                raise ApiError(403, type(exc), f"license server: {exc}") from None
        elif item.entry.options.usage_period is not None:
            slot = item.container.slots().get(item.entry.firm_code)
            first_use = slot.license_state(item.entry.license_id).first_use if slot else None
        entry = item.entry
        doc = grants.build_lease(
            item.container.sign,
            lease_id=lease.id,
            client_lease_id=client.client_lease_id,
            entry=entry,
            feature_code=feature,
            mode=mode,
            session=session,
            nonce=nonce,
            issued=now,
            expires=lease.expires,
            first_use=first_use,
        )
        # product keys sealed to this session: sealed once per session and license
        keys_json = self._sealed.get((session, entry.digest))
        if keys_json is None:
            keys = []
            for version in entry.key_versions:
                pkey = self.product_key(item, version)
                if pkey is not None:
                    keys.append(grants.seal_lease_key(session, entry.serial, entry.digest, version, pkey))
            if len(self._sealed) > 10000:
                self._sealed.clear()
            keys_json = self._sealed[(session, entry.digest)] = _dumps(keys)
        # the answer as JSON bytes: the entry document is serialized once per license
        entry_json = self._entry_json.get(entry.digest)
        if entry_json is None:
            entry_json = self._entry_json[entry.digest] = _dumps(entry.document)
        return (
            f'{{"lease_id":{_dumps(lease.id)},"lease":{_dumps(doc)},"entry":{entry_json},"keys":{keys_json},'
            f'"ttl":{self.settings.lease_ttl},"heartbeat":{self.settings.heartbeat_seconds},'
            f'"expires_in":{max(0, lease.expires - now)}}}'
        ).encode()

    def _commit(self, item: Served, request: AccessRequest, now: int, ev: Evaluation) -> int | None:
        entry = item.entry

        def check(slot: _machine.Slot) -> None:
            fresh = evaluate(entry, slot.license_state(entry.license_id), request, now, slot.vclock)
            if fresh.error is not None:
                raise fresh.error(f"{entry.summary()}: {fresh.message}")

        slot = item.container.record_access(entry.firm_code, entry.license_id, units=request.units,
                                            start_usage=ev.start_usage, now=now, check=check)
        return slot.license_state(entry.license_id).first_use

    def renew(self, lease_id: str, body: dict[str, Any]) -> dict[str, Any]:
        client_lease_id = _text(body, "client_lease_id", required=True)
        try:
            lease = self.engine.renew(lease_id, client_lease_id)
        except LeaseRevoked:
            raise ApiError(410, "LeaseRevoked", "the administrator released this lease") from None
        except LeaseUnknown as exc:
            raise ApiError(404, "LeaseUnknown", f"lease {lease_id}: {exc}") from None
        return {"lease_id": lease.id, "ttl": self.settings.lease_ttl, "heartbeat": self.settings.heartbeat_seconds,
                "expires_in": max(0, lease.expires - self.clock())}

    def release(self, lease_id: str, client_lease_id: str) -> dict[str, Any]:
        return {"released": self.engine.release(lease_id, client_lease_id)}

    # ------------------------------------------------------------ borrowing

    def borrow(self, body: dict[str, Any], ip: str) -> dict[str, Any]:
        firm, product, feature = _codes(body)
        client = _client(body, ip)
        days = _int(body, "days", minimum=1)
        if days > MAX_BORROW_DAYS:
            raise ApiError.bad(f"days is at most {MAX_BORROW_DAYS}")
        container = body.get("container")
        if not isinstance(container, dict):
            raise ApiError.bad("container is {serial, sign_pub, box_pub}")
        try:
            serial = codes.check_serial(_text(container, "serial", required=True))
            sign_pub = _text(container, "sign_pub", required=True)
            box_pub = _text(container, "box_pub", required=True)
            hazmat.Ed25519PublicKey.from_public_bytes(b64d(sign_pub))
            box_raw = b64d(box_pub)
            hazmat.X25519PublicKey.from_public_bytes(box_raw)
        except (codes.InvalidCode, ValueError):
            raise ApiError.bad("container is {serial, sign_pub, box_pub} with base64url keys") from None
        request = AccessRequest(firm, product, feature)
        candidates, error = self._candidates(client, request, "borrow")
        if error is not None:
            self.engine.record_denial(client, firm_code=firm, product_code=product, feature_code=feature,
                                      mode="borrow", invalid=True, reason=error.message)
            raise error
        try:
            lease = self.engine.borrow(
                client, firm_code=firm, product_code=product, feature_code=feature, days=days,
                borrower={"serial": serial, "sign_pub": sign_pub, "box_pub": box_pub},
                candidates=[item.seat_license(ev) for item, ev in candidates],
            )
        except Refusal as refusal:
            raise ApiError.from_refusal(refusal) from None
        item = next(i for i, _ in candidates if i.key == lease.license_key)
        entry = item.entry
        now = self.clock()
        grant = grants.build_borrow(item.container.sign, borrow_id=lease.id, entry=entry, client_serial=serial,
                                    client_key=sign_pub, issued=lease.access_time, expires=lease.expires)
        keys = []
        for version in entry.key_versions:
            pkey = self.product_key(item, version)
            if pkey is not None:
                keys.append(exchange.seal_product_key(box_raw, serial, entry.digest, version, pkey))
        return {"borrow_id": lease.id, "entry": entry.document, "grant": grant, "keys": keys,
                "expires": lease.expires, "time": now}

    def return_borrowed(self, borrow_id: str, body: dict[str, Any]) -> dict[str, Any]:
        receipt = body.get("receipt")
        lease = self.engine.borrow_lease(borrow_id)
        if lease is None or not isinstance(receipt, dict):
            raise ApiError(404, "BorrowUnknown", f"no borrowed license {borrow_id} on this server")
        try:
            back = grants.verify_return(receipt, (lease.borrower or {}).get("sign_pub", ""))
        except DocumentInvalid as exc:
            log.warning("return of %s refused: %s", borrow_id, exc.reason)
            raise ApiError(400, "BadRequest", "the return receipt does not verify") from None
        if back.borrow_id != borrow_id or back.serial != (lease.borrower or {}).get("serial"):
            raise ApiError(400, "BadRequest", "the return receipt is for another borrowed license")
        self.engine.end_borrow(borrow_id, back.serial)
        return {"returned": True, "borrow_id": borrow_id}

    # ------------------------------------------------------------ views

    def licenses(self) -> list[dict[str, Any]]:
        served, local = self.served()
        used = self.engine.seats_in_use([s.key for s in served])
        now = self.clock()
        out = []
        for item, is_local in [(s, False) for s in served] + [(s, True) for s in local]:
            e = item.entry
            slot = item.container.slots().get(e.firm_code)
            ev = evaluate(e, slot.license_state(e.license_id), AccessRequest(e.firm_code, e.product_code), now,
                          slot.vclock) if slot else None
            out.append({
                "container": item.container.serial,
                "firm_code": e.firm_code,
                "product_code": e.product_code,
                "license_id": e.license_id,
                "ticket": e.ticket,
                "text": e.text,
                "feature_map": e.feature_map,
                "seats": e.options.quantity,
                "in_use": 0 if is_local else used.get(item.key, 0),
                "expires": ev.expires if ev is not None and ev.ok else e.options.expires,
                "status": "local only" if is_local else ("ok" if ev is not None and ev.ok else
                                                         (ev.message if ev else "no slot")),
            })
        return out

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

    def close(self) -> None:
        self.store.close()


def verify_usage_offline(data_dir: Path) -> dict[str, Any]:
    """`licentia server usage verify`: check the log with the container's public key only."""
    from ..container.store import container_dirs
    from ..seats.usage import verify_log

    keys = []
    for path in container_dirs(data_dir):
        try:
            meta = _machine.MachineContainer.read_meta(path)
            keys.append(hazmat.Ed25519PublicKey.from_public_bytes(b64d(meta["sign_pub"])))
        except (OSError, ValueError, KeyError):
            continue
    db = data_dir / "seats.db"
    if not db.exists():
        raise FileNotFoundError(f"no usage log in {data_dir} (seats.db is missing)")
    store = SqliteSeatStore(db, readonly=True)
    try:
        with store.snapshot() as tx:
            results = [verify_log(tx, key) for key in keys] or [verify_log(tx, None)]
    finally:
        store.close()
    good = [r for r in results if r["ok"]]
    result = good[0] if good else results[0]
    if not keys:
        result = {**result, "ok": False, "problems": [*result["problems"], "no server container to check against"]}
    return result
