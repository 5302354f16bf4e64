"""access(), Handle, trust() and info(): the runtime's local path, then the network.

Search order: the machine containers under the runtime's home (their own licenses, then
licenses borrowed from a license server), then license servers (``_network``: the
``LICENTIA_HOST`` list, the configured list, discovery). Each firm-signed
entry is verified once per process against the keys the application pinned (cached
by digest); an access then stats the container's state file, evaluates the options in
memory, and writes to disk only what it must (units, the first use that starts a usage
period, a clock observation when time moved on noticeably). An access that consumes
nothing is answered from the access cache (``_hot``: its text has the freshness rule)
while the grant it repeats still holds.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass
from pathlib import Path
from time import monotonic_ns
from time import time as _time
from typing import TYPE_CHECKING, Any

from ..container import OBSERVE_STEP, Container, Slot, open_container, open_or_create
from ..container.files import StateWatch
from ..container.store import container_dirs, default_home
from ..container.traits import read_system_traits
from ..core import codes, grants, hazmat
from ..core import errors as E
from ..core.documents import DocumentInvalid, document_digest
from ..core.license import (
    AccessRequest,
    Evaluation,
    LicenseEntry,
    LicenseState,
    evaluate,
    units_left,
)
from ._handle import Granted, Handle
from ._hot import AccessCache, Hot, unchanged, window_end

if TYPE_CHECKING:  # pragma: no cover
    from ._leases import LeaseKeeper
    from ._reporter import Reporter

Clock = Callable[[], int]
TraitsReader = Callable[[], dict[str, str]]


def system_clock() -> int:
    """The system clock in Unix seconds (the default clock of every runtime)."""
    return int(_time())


MODES = grants.MODES
_new = object.__new__


def _load_keys(pem: str | bytes | os.PathLike[str]) -> list[hazmat.Ed25519PublicKey]:
    """One or more PEM public keys, given as text/bytes or as a file path."""
    if isinstance(pem, os.PathLike) or (isinstance(pem, str) and "-----BEGIN" not in pem):
        data = Path(pem).read_bytes()
    else:
        data = pem.encode() if isinstance(pem, str) else pem
    blocks = []
    for chunk in data.split(b"-----END PUBLIC KEY-----"):
        if b"-----BEGIN PUBLIC KEY-----" in chunk:
            blocks.append(chunk[chunk.index(b"-----BEGIN") :] + b"-----END PUBLIC KEY-----\n")
    if not blocks:
        raise ValueError("no PEM public key found")
    return [hazmat.load_public_pem(b) for b in blocks]


def _as_timestamp(value: Any) -> int | None:
    """Unix seconds from an int, a datetime (naive = UTC) or a date."""
    if value is None or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    import datetime as _dt

    if isinstance(value, _dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=_dt.UTC)
        return int(value.timestamp())
    if isinstance(value, _dt.date):
        return int(_dt.datetime(value.year, value.month, value.day, tzinfo=_dt.UTC).timestamp())
    raise TypeError("release_date is Unix seconds, a datetime or a date")


@dataclass(slots=True)
class _Found:
    """A license found in a local container: what an access evaluates and may commit."""

    entry: LicenseEntry
    container: Container
    state: LicenseState
    expires: int | None


def _changed(known: dict[Path, Container | E.LicenseError], found: dict[Path, Container | E.LicenseError]) -> bool:
    """Whether a rescan changed the container table in a way a cached grant depends on (a
    container added, removed or newly opened; one that still does not open is no change)."""
    if list(known) != list(found):
        return True
    return any(
        found[p] is not known[p] and not (isinstance(found[p], E.LicenseError) and isinstance(known[p], E.LicenseError))
        for p in found
    )


class Runtime:
    """Per-process runtime state: pinned keys, open containers, verified entries."""

    def __init__(
        self,
        home: Path | None = None,
        *,
        clock: Callable[[], int] | None = None,
        traits: Callable[[], dict[str, str]] | None = None,
    ):
        self._home = Path(home) if home is not None else None
        self.clock: Clock = clock or system_clock
        self.traits: TraitsReader = traits or read_system_traits
        self._keys: dict[int, dict[str, hazmat.Ed25519PublicKey]] = {}
        self._containers: dict[Path, Container | E.LicenseError] | None = None
        self._verified: dict[str, LicenseEntry] = {}
        # per (container serial, firm): (slot fingerprint, entries) verified for the pinned keys
        self._entries: dict[tuple[str, int], tuple[tuple[Any, ...], tuple[LicenseEntry, ...]]] = {}
        self._lock = threading.RLock()
        self._net: LeaseKeeper | None = None  # the network side, made on first use
        self._reporter: Reporter | None = None  # usage reports, made on first use
        self._grants: dict[str, grants.Borrow] = {}  # borrow grant digest -> verified grant
        self._cache = AccessCache()  # grants of accesses that consume nothing (_hot)
        self._hits = self._cache.hits

    @property
    def home(self) -> Path:
        if self._home is None:
            self._home = default_home()
        return self._home

    # ------------------------------------------------------------ trust

    def trust(self, firm_code: int, pem: str | bytes | os.PathLike[str]) -> None:
        """Pin the firm's public key(s): from then on, the firm's licenses verify only against
        the keys pinned here (added to any pinned before).

        ``pem`` is PEM text holding one or more public keys: ``bytes``, and a ``str`` that
        contains ``-----BEGIN``, are always read as PEM text, never as a path. An
        ``os.PathLike``, or a ``str`` without a PEM header, names a PEM file to read.

        Pin the keys in code: the constant ``licentia vendor firm public-key CODE --format
        python`` prints holds the firm's active and staged keys, so the app keeps working
        after the next key rotation. A key file shipped next to the app is not safe: an end
        user who replaces it with their own key gets their self-signed licenses accepted.
        """
        codes.check_firm_code(firm_code)
        keys = _load_keys(pem)
        with self._lock:
            pinned = self._keys.setdefault(firm_code, {})
            known = len(pinned)
            for key in keys:
                pinned[hazmat.key_id(key)] = key
            self._entries = {k: v for k, v in self._entries.items() if k[1] != firm_code}
            if len(pinned) != known:
                self._cache.forget()  # another key: entries that failed may verify now

    def trusted(self, firm_code: int) -> dict[str, hazmat.Ed25519PublicKey]:
        return self._keys.get(firm_code, {})

    # ------------------------------------------------------------ containers

    def reset(self) -> None:
        """Forget open containers and caches (after fork, or when containers were added)."""
        with self._lock:
            self._containers = None
            self._entries.clear()
            self._cache.forget()

    def network(self) -> LeaseKeeper:
        """This process's network side (session key, HTTP clients, leases)."""
        net = self._net
        if net is None or net.pid != os.getpid():
            from ._leases import LeaseKeeper

            with self._lock:
                net = self._net
                if net is None or net.pid != os.getpid():
                    net = self._net = LeaseKeeper(self)
        return net

    def reporter(self) -> Reporter:
        """This process's usage reporter (its thread starts with the first due report)."""
        rep = self._reporter
        if rep is None or rep.pid != os.getpid():
            from ._reporter import Reporter

            with self._lock:
                rep = self._reporter
                if rep is None or rep.pid != os.getpid():
                    rep = self._reporter = Reporter(self.clock)
        return rep

    def containers(self, rescan: bool = False) -> dict[Path, Container | E.LicenseError]:
        current = self._containers
        if current is not None and not rescan:
            return current
        with self._lock:
            current = self._containers
            if current is None or rescan:
                known = current or {}
                found: dict[Path, Container | E.LicenseError] = {}
                for path in container_dirs(self.home):
                    prev = known.get(path)
                    if prev is not None and not isinstance(prev, E.LicenseError):
                        found[path] = prev
                        continue
                    try:
                        found[path] = open_container(path, self.traits)
                    except E.LicenseError as exc:
                        found[path] = exc
                if current is not None and _changed(current, found):
                    self._cache.forget()  # a container that comes first may grant now
                self._containers = current = found
            return current

    def machine_container(self, level: str, *, now: int | None = None) -> Container:
        """This machine's container of ``level``, made on first use (NoUsableTraits when the
        machine offers nothing to bind to); the container table is looked at anew next time."""
        container = open_or_create(self.home, level, self.traits, self.clock() if now is None else now)
        self.reset()
        return container

    def container(self, serial: str) -> Container:
        for result in self.containers(rescan=True).values():
            if not isinstance(result, E.LicenseError) and result.serial == serial:
                return result
        for path, result in self.containers().items():
            if path.name == serial and isinstance(result, E.LicenseError):
                raise result
        raise E.ActivationError(
            f"container {serial} is not on this machine: apply its update on the machine that made the request "
            "('licentia list' shows the containers here)"
        )

    def verified_entries(
        self, container: Container, slot: Slot, keys: dict[str, hazmat.Ed25519PublicKey]
    ) -> tuple[tuple[LicenseEntry, ...], list[str]]:
        """The slot's entries that verify against ``keys`` and name ``container`` (cached per
        slot content, ``Slot.fingerprint``, and by digest), and a line for each that does not."""
        cache_key = (container.serial, slot.firm_code)
        cached = self._entries.get(cache_key)
        fingerprint = slot.fingerprint
        if cached is not None and cached[0] == fingerprint:
            return cached[1], []
        good: list[LicenseEntry] = []
        bad: list[str] = []
        for doc in slot.entries or []:
            digest = document_digest(doc)
            entry = self._verified.get(digest)
            if entry is None:
                try:
                    entry = LicenseEntry.verify(doc, keys)
                except DocumentInvalid as exc:
                    E.log_rejected(f"container {container.serial}: {exc.reason}")
                    bad.append(f"container {container.serial}: a license failed verification")
                    continue
                if entry.serial != container.serial or entry.container_key != container.sign_pub:
                    E.log_rejected(f"container {container.serial}: entry issued to {entry.serial}")
                    bad.append(f"container {container.serial}: a license issued to another container")
                    continue
                self._verified[digest] = entry
            good.append(entry)
        result = tuple(good)
        if not bad:
            self._entries[cache_key] = (fingerprint, result)
        return result, bad

    # ------------------------------------------------------------ access

    def access(
        self,
        firm_code: int,
        product_code: int,
        feature_code: int = 0,
        *,
        units: int = 0,
        firm_key: str | bytes | os.PathLike[str] | None = None,
        release_date: int | None = None,
        mode: str = "user",
        on_lease_lost: Callable[[Handle, bool], Any] | None = None,
        grace: int = 0,
    ) -> Handle:
        hot_key: Hashable = None
        if units == 0 and firm_key is None and (release_date is None or type(release_date) is int):
            hot_key = (firm_code, product_code, feature_code, release_date, mode)
            hot = self._hits.get(hot_key)
            if hot is not None:
                clock = self.clock
                # the system clock read here as a float: compared with whole seconds it decides
                # as int(time.time()) would, without the call to system_clock()
                now = _time() if clock is system_clock else clock()
                if hot.since <= now < hot.until:
                    watch = hot.watch
                    if monotonic_ns() >= watch.due:
                        watch.refresh()
                    if watch.version == hot.version and (not hot.before or unchanged(hot.before)):
                        handle: Handle = _new(Handle)  # Handle._of(), without the call
                        handle._g = hot.granted
                        handle._released = False
                        return handle
        if mode not in MODES:
            raise ValueError(f"mode is one of {', '.join(MODES)}")
        if firm_key is not None:
            self.trust(firm_code, firm_key)
        keys = self._keys.get(firm_code)
        if not keys:
            raise E.TrustNotConfigured(
                f"no firm key is pinned for firm code {firm_code}: pass firm_key= to licentia.access() or call "
                f"licentia.trust({firm_code}, pem) at start, with the key the vendor publishes "
                f"('licentia vendor firm public-key {firm_code}')"
            )
        release_date = _as_timestamp(release_date)
        request = AccessRequest(firm_code, product_code, feature_code, units, release_date)
        try:
            return self._access(request, keys, rescan=False, hot_key=hot_key)
        except E.LicenseError as first:
            local = first
            if first.rank <= E.LicenseNotFound.rank:
                # a container may have been made since this process looked: look once more
                try:
                    return self._access(request, keys, rescan=True, hot_key=hot_key)
                except E.LicenseError as again:
                    local = again
        return self._network_access(request, keys, mode, on_lease_lost, local, grace)

    def _network_access(
        self,
        request: AccessRequest,
        keys: dict[str, hazmat.Ed25519PublicKey],
        mode: str,
        on_lease_lost: Callable[[Handle, bool], Any] | None,
        local: E.LicenseError,
        grace: int = 0,
    ) -> Handle:
        from ._servers import configured

        if not configured(self.home):
            raise local
        try:
            return self.network().access(request, keys, mode, on_lease_lost, grace)
        except E.LicenseError as remote:
            # closest to success wins; on a tie the network's answer (it names the servers)
            if local.rank > remote.rank:
                raise local from None
            remote.tried = local.tried + remote.tried
            raise remote from None

    def _access(
        self,
        request: AccessRequest,
        keys: dict[str, hazmat.Ed25519PublicKey],
        rescan: bool,
        hot_key: Hashable = None,
    ) -> Handle:
        """The full search. With ``hot_key``, a grant that wrote nothing and followed no
        refusal goes into the access cache."""
        now = self.clock()
        epoch = self._cache.epoch
        failures: list[tuple[int, type[E.LicenseError], str]] = []
        tried: list[str] = []
        unopened = 0  # containers that did not open: they change only with the container table
        watched: list[tuple[StateWatch, int]] = []  # each container looked at, and its version then
        for result in self.containers(rescan).values():
            if isinstance(result, E.LicenseError):
                unopened += 1
                failures.append((result.rank, type(result), str(result)))
                tried.append(str(result))
                continue
            container = result
            watch = container.watch
            if watch is None:
                hot_key = None  # this kind gives no signal of change: nothing is cached
            else:
                watched.append((watch, watch.version))  # before the state is read
            try:
                slot = container.slots().get(request.firm_code)
            except E.LicenseError as exc:
                failures.append((exc.rank, type(exc), str(exc)))
                tried.append(f"container {container.serial}: state failed verification")
                continue
            if slot is None:
                continue
            if slot.notices:
                self._notices(container, slot, request, failures, tried)
            entries, bad = self.verified_entries(container, slot, keys)
            for message in bad:
                failures.append((E.LicenseInvalid.rank, E.LicenseInvalid, message))
                tried.append(message)
            for entry in entries:
                if entry.product_code != request.product_code:
                    continue
                state = slot.license_state(entry)
                ev = evaluate(entry, state, request, now, slot.vclock)
                if ev.error is not None:
                    where = f"container {container.serial} {entry.summary()}"
                    failures.append((ev.error.rank, ev.error, f"{where}: {ev.message}"))
                    tried.append(f"{where}: {ev.message}")
                    if now > slot.vclock + OBSERVE_STEP:
                        # a refusal saw the time too: setting the clock back later is noticed
                        self._observe(container, request.firm_code, now)
                    continue
                found = _Found(entry, container, state, ev.expires)
                if len(failures) != unopened:
                    hot_key = None  # a refusal came first: it may turn into a grant, or have to write
                return self._grant(found, slot, ev, request, keys, now, hot=(hot_key, epoch, watched))
            if slot.borrowed:
                handle = self._borrowed(container, slot, request, keys, now, failures, tried)
                if handle is not None:
                    return handle
        if not failures:
            raise E.LicenseNotFound(
                f"no license for firm {request.firm_code}, product {request.product_code} in "
                f"{len(self.containers())} container(s) under {self.home}: activate a ticket "
                "('licentia activate TICKET')",
                tried=tried,
            )
        rank, cls, message = max(failures, key=lambda f: f[0])
        others = [t for t in tried if t != message]
        also = f" (also tried: {'; '.join(others)})" if others else ""
        raise cls(E.with_next_step(cls, message, also), tried=tried)

    def _grant(
        self,
        found: _Found,
        slot: Slot,
        ev: Evaluation,
        request: AccessRequest,
        keys: dict[str, hazmat.Ed25519PublicKey],
        now: int,
        *,
        hot: tuple[Hashable, int, list[tuple[StateWatch, int]]],
    ) -> Handle:
        """A license granted in a container: write what the access must (units, the first use,
        a clock observation), queue a usage report when one is due, and keep the grant in the
        access cache under ``hot`` (key, cache epoch, containers looked at) if it wrote nothing."""
        entry, container, state = found.entry, found.container, found.state
        key, epoch, watched = hot
        if ev.units and entry.options.metering == "online":
            found = self._commit(found, request, now, slot=slot, keys=keys)
            key = None
        elif ev.units or ev.start_usage or now > slot.vclock + OBSERVE_STEP:
            found = self._commit(found, request, now)
            key = None
        every = entry.options.report_interval
        if every is not None and now >= (slot.last_sync or 0) + every:
            self.reporter().consider(container, slot, every, now)
            key = None
        granted = Granted(entry, container, request.feature_code, units_left(entry, found.state), found.expires)
        if key is not None and entry.options.metering != "online":
            until = window_end(entry, state, slot, ev.expires)
            self._cache.remember(key, epoch, Hot(granted, watched, now, until))
        return Handle._of(granted)

    @staticmethod
    def _observe(container: Container, firm_code: int, now: int) -> None:
        try:
            container.observe(firm_code, now)
        except (OSError, E.LicenseError) as exc:  # the refusal stands either way
            E.log_rejected(f"container {container.serial}: clock observation not recorded: {exc}")

    @staticmethod
    def _notices(
        container: Container,
        slot: Slot,
        request: AccessRequest,
        failures: list[tuple[int, type[E.LicenseError], str]],
        tried: list[str],
    ) -> None:
        """Licenses Central withdrew from this container after it saw manipulation."""
        for lid, notice in (slot.notices or {}).items():
            if notice.get("product_code") != request.product_code:
                continue
            message = notice.get("message") or (
                f"license {lid} of firm {slot.firm_code} was withdrawn: License Central saw this container's "
                "files restored from an older copy. Contact the vendor"
            )
            failures.append((E.ManipulationDetected.rank, E.ManipulationDetected, message))
            tried.append(f"container {container.serial}: {message}")

    def _borrowed(
        self,
        container: Container,
        slot: Slot,
        request: AccessRequest,
        keys: dict[str, hazmat.Ed25519PublicKey],
        now: int,
        failures: list[tuple[int, type[E.LicenseError], str]],
        tried: list[str],
    ) -> Handle | None:
        """A license borrowed from a license server: the firm-signed entry names the server's
        container, whose key signed the borrow grant naming this container."""
        for record in slot.borrowed or []:
            where = f"container {container.serial} borrowed license"
            try:
                doc = record["entry"]
                if doc["payload"].get("product_code") != request.product_code:
                    continue
                digest = document_digest(doc)
                entry = self._verified.get(digest)
                if entry is None:
                    entry = LicenseEntry.verify(doc, keys)
                    self._verified[digest] = entry
                grant_digest = document_digest(record["grant"])
                grant = self._grants.get(grant_digest)
                if grant is None:
                    grant = grants.verify_borrow(record["grant"], entry)
                    self._grants[grant_digest] = grant
            except (DocumentInvalid, KeyError, TypeError) as exc:
                E.log_rejected(f"{where}: {getattr(exc, 'reason', exc)}")
                failures.append((E.LicenseInvalid.rank, E.LicenseInvalid, f"{where}: failed verification"))
                tried.append(f"{where}: failed verification")
                continue
            # the server was in sync when it granted the borrow: its issue time stands for a sync
            ev = grants.evaluate_borrowed(
                entry, grant, request, now, slot.vclock, serial=container.serial, sign_pub=container.sign_pub
            )
            if ev.error is E.LicenseInvalid:
                E.log_rejected(f"{where}: grant for container {grant.client_serial}")
                failures.append((E.LicenseInvalid.rank, E.LicenseInvalid, f"{where}: issued to another container"))
                continue
            where = f"{where} {entry.summary()}"
            if now > slot.vclock + OBSERVE_STEP:
                # a borrowed license keeps the clock too: setting it back within the borrow is noticed
                self._observe(container, request.firm_code, now)
            if ev.error is not None:
                failures.append((ev.error.rank, ev.error, f"{where}: {ev.message}"))
                tried.append(f"{where}: {ev.message}")
                continue
            return Handle(entry, container, request, None, ev.expires)
        return None

    def _commit(
        self,
        found: _Found,
        request: AccessRequest,
        now: int,
        *,
        slot: Slot | None = None,
        keys: dict[str, hazmat.Ed25519PublicKey] | None = None,
    ) -> _Found:
        """Record what the access must persist; with ``slot`` and ``keys``, the units are
        counted by License Central (online metering)."""
        entry = found.entry

        def check(slot: Slot) -> None:
            if not any(d["payload"].get("license_id") == entry.license_id for d in slot.entries or []):
                raise E.LicenseNotFound(f"license {entry.license_id} was removed meanwhile")
            ev = evaluate(entry, slot.license_state(entry), request, now, slot.vclock)
            if ev.error is not None:  # not ev.ok
                where = f"container {found.container.serial} {entry.summary()}"
                raise ev.error(E.with_next_step(ev.error, f"{where}: {ev.message}"))

        ev = evaluate(entry, found.state, request, now, 0)
        if slot is not None and keys is not None:
            from ._metering import consume

            slot = consume(
                found.container, slot, entry, request.units, start_usage=ev.start_usage, now=now, keys=keys, check=check
            )
        else:
            slot = found.container.record_access(
                entry, units=request.units, start_usage=ev.start_usage, now=now, check=check
            )
        state = slot.license_state(entry)
        final = evaluate(entry, state, AccessRequest(entry.firm_code, entry.product_code), now, slot.vclock)
        return _Found(entry, found.container, state, final.expires)

    # ------------------------------------------------------------ info

    def info(self) -> list[dict[str, Any]]:
        """Containers and their licenses (verified where a firm key is pinned)."""
        from ._info import describe

        return describe(self.containers(rescan=True), self.trusted, self.clock())

    def iter_slots(self) -> Iterator[tuple[Container, Slot]]:
        for result in self.containers(rescan=True).values():
            if not isinstance(result, E.LicenseError):
                for slot in result.slots().values():
                    yield result, slot
