"""A license server as proxy of a group's enterprise cloud container (docs/cloud.md, "A
license server as proxy").

``licentia server proxy link URL CODE`` links the server once, with the link code a group
admin made: the server's machine container signs a sync request, Central binds the proxy
to that container and answers a session token, the container's update (an entry for the
seats the proxy holds of each license, until the proxy tolerance) and a ``proxy-grant``
(the group's members and their linked devices). The token is kept sealed to the container
(``MachineContainer.seal_local``) in ``DATA/proxy/<firm>.json`` with the grant: a copy of
the data directory on another machine cannot open it.

The running server refreshes (``Refresher``) at the grant's interval, and when Central's
update trigger (a digest of the group's members and licenses) differs from the grant's.
Each refresh is a new link of the container's chain: two copies of one container fork it,
and Central ends the proxy.

``Gate`` is what the server asks before serving a proxied license: a LAN client is
admitted only by a device a member of the group linked (its machine container's serial
and key, proven over a challenge of the server); the lease's user is the member's login.
Offline, the entries end at the tolerance, and the server serves them no longer.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..client import CentralClient
from ..container import files
from ..container.files import write_atomic
from ..core import errors as E
from ..core import proxy as P
from ..core.documents import DocumentInvalid
from ..core.encoding import b64d, b64e

log = logging.getLogger("licentia.server.proxy")

DIR = "proxy"
LEVEL = "medium"  # the server's container (as 'licentia server activate' makes it)


def code_firm(code: str) -> int:
    """The firm a link code names (``lcp_<firm>.<secret>``)."""
    firm = P.code_firm(code)
    if firm is None:
        raise E.ActivationError("this is not a proxy link code: it starts with 'lcp_' (ask your group admin)")
    return firm


def _context(central: str, firm_code: int) -> bytes:
    return f"proxy session|{central}|{firm_code}".encode()


@dataclass(frozen=True)
class ProxyLink:
    """The server's link to one firm's cloud, as its data directory keeps it."""

    path: Path
    central: str
    firm_code: int
    serial: str
    sealed: str
    grant: dict[str, Any] | None = field(default=None, compare=False)
    #: Central ended the proxy (or the server unlinked it): its licenses are served to no one,
    #: also while their entries are still in the container (until a sync takes them away)
    ended: bool = False

    def token(self, container: Any) -> str:
        """The session token (unsealed by the container it was linked by; LicenseInvalid elsewhere)."""
        if container.serial != self.serial:
            raise E.LicenseInvalid(f"{self.path}: linked by container {self.serial}, not {container.serial}")
        token: bytes = container.unseal_local(b64d(self.sealed), _context(self.central, self.firm_code))
        return token.decode()


def _folder(data_dir: Path) -> Path:
    return data_dir / DIR


def _read(path: Path) -> ProxyLink | None:
    try:
        raw = json.loads(path.read_bytes())
        return ProxyLink(
            path=path,
            central=str(raw["central"]),
            firm_code=int(raw["firm_code"]),
            serial=str(raw["serial"]),
            sealed=str(raw["sealed"]),
            grant=raw.get("grant") if isinstance(raw.get("grant"), dict) else None,
            ended=raw.get("ended") is True,
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def links(data_dir: Path) -> list[ProxyLink]:
    """The proxy links of the server (one per firm)."""
    folder = _folder(data_dir)
    if not folder.is_dir():
        return []
    return [found for path in sorted(folder.glob("*.json")) if (found := _read(path)) is not None]


def _save(data_dir: Path, link: ProxyLink) -> None:
    record = {
        "central": link.central,
        "firm_code": link.firm_code,
        "serial": link.serial,
        "sealed": link.sealed,
        "grant": link.grant,
        "ended": link.ended,
    }
    write_atomic(link.path, json.dumps(record, indent=1, sort_keys=True).encode(), mode=0o600)


def _lock(data_dir: Path) -> Any:
    folder = _folder(data_dir)
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    return files.locked(folder / ".lock")


def link(data_dir: Path, rt: Any, central: str, code: str) -> ProxyLink:
    """Link the server as the proxy the code names; its first refresh applied."""
    firm = code_firm(code)
    central = central.rstrip("/")
    with _lock(data_dir):
        container = rt.machine_container(LEVEL, now=rt.clock())
        request = container.make_request("sync", rt.clock(), firm_code=firm)
        with CentralClient(central) as client:
            answer = client.request("POST", "/cloud/proxy/link", json={"code": code, "request": request})
        token = answer.get("token") if isinstance(answer, dict) else None
        if not isinstance(token, str):
            raise E.ActivationError("License Central answered the link without a session")
        container.apply_update(answer["update"], rt.clock(), central=central)
        sealed = b64e(container.seal_local(token.encode(), _context(central, firm)))
        found = ProxyLink(_folder(data_dir) / f"{firm}.json", central, firm, container.serial, sealed, None)
        found = _with_grant(found, container, answer.get("grant"))
        _save(data_dir, found)
    rt.reset()
    return found


def _with_grant(found: ProxyLink, container: Any, grant: Any) -> ProxyLink:
    slot = container.slots().get(found.firm_code)
    try:
        P.verify_grant(grant, slot.pinned_keys() if slot else {}, serial=container.serial)
    except DocumentInvalid as exc:
        raise E.rejected(f"proxy grant refused: {exc.reason}") from None
    return dataclasses.replace(found, grant=grant, ended=False)


def _container(rt: Any, found: ProxyLink) -> Any:
    return rt.container(found.serial)


def refresh(data_dir: Path, rt: Any, found: ProxyLink) -> ProxyLink:
    """One refresh: a new signed sync request; the update and the grant Central answers."""
    with _lock(data_dir):
        current = _read(found.path) or found
        container = _container(rt, current)
        token = current.token(container)
        request = container.make_request("sync", rt.clock(), firm_code=current.firm_code)
        with CentralClient(current.central, api_key=token) as client:
            answer = client.request("POST", "/cloud/proxy/refresh", json={"request": request})
        container.apply_update(answer["update"], rt.clock(), central=current.central)
        updated = _with_grant(current, container, answer.get("grant"))
        _save(data_dir, updated)
    rt.reset()
    return updated


def trigger(rt: Any, found: ProxyLink) -> dict[str, Any]:
    """Central's update trigger for the proxy: ``{"ended", "state"}``."""
    token = found.token(_container(rt, found))
    with CentralClient(found.central, api_key=token, timeout=10) as client:
        answer: dict[str, Any] = client.request("GET", "/cloud/proxy/trigger")
    return answer


def unlink(data_dir: Path, rt: Any, found: ProxyLink) -> None:
    """End the proxy at Central (its seats return) and sync its entries away; the link file goes."""
    from ..runtime import activation

    with _lock(data_dir):
        container = _container(rt, found)
        if not found.ended:
            with CentralClient(found.central, api_key=found.token(container)) as client:
                client.request("POST", "/cloud/proxy/unlink")
        _save(data_dir, dataclasses.replace(found, ended=True))
    activation.sync(found.central, runtime=rt, cli="licentia server")


# ---------------------------------------------------------------- the running server


class Gate:
    """Who may use the server's proxied licenses: the verified grants of its links."""

    def __init__(self, data_dir: Path, containers: Any):
        self.data_dir = data_dir
        self.containers = containers  # () -> the server's containers
        self._seen: tuple[int, int] | None = None
        self._grants: dict[int, P.ProxyGrant] = {}
        self._absent = -1.0  # when the link folder was last found missing (monotonic)
        self._folder = str(_folder(data_dir))
        #: the license keys ("<serial>/<license id>") any grant seen proxied: their leases are
        #: checked at each renewal, also once the grant is gone
        self.known: set[str] = set()

    def grants(self) -> dict[int, P.ProxyGrant]:
        """The grants by firm, read again when the link folder changed (a refresh replaces a
        link file by a rename: one stat per look)."""
        if self._seen is None and time.monotonic() - self._absent < 1.0:
            return self._grants  # no link folder a moment ago (a server that is no proxy): not looked again yet
        try:
            st = os.stat(self._folder)
            seen: tuple[int, int] | None = (st.st_mtime_ns, st.st_ino)
        except OSError:
            seen = None
            self._absent = time.monotonic()
        # (None: no folder, no grants, as at the start); a folder changed within the last
        # second is read again: a change in the same tick as the last read keeps its mtime
        if seen == self._seen and (seen is None or time.time_ns() - seen[0] > 1_000_000_000):
            return self._grants
        out: dict[int, P.ProxyGrant] = {}
        by_serial = {c.serial: c for c in self.containers()}
        for found in links(self.data_dir):
            container = by_serial.get(found.serial)
            slot = container.slots().get(found.firm_code) if container is not None else None
            if slot is None or found.grant is None:
                continue
            try:
                grant = P.verify_grant(found.grant, slot.pinned_keys(), serial=found.serial)
            except DocumentInvalid as exc:
                log.error("proxy grant of firm %s in %s refused: %s", found.firm_code, found.path, exc.reason)
                continue
            self.known |= {f"{grant.serial}/{lid}" for lid in grant.licenses}
            if not found.ended:
                out[found.firm_code] = grant
        self._grants, self._seen = out, seen
        return out

    def proxied(self, firm_code: int, serial: str, license_id: int) -> P.ProxyGrant | None:
        """The grant that covers a license of the server (None: not a proxied license)."""
        grant = self.grants().get(firm_code)
        if grant is None or grant.serial != serial or license_id not in grant.licenses:
            return None
        return grant

    def withheld(self, firm_code: int, serial: str, license_id: int) -> bool:
        """Whether a license of the server was proxied and is no more (its proxy ended, or the
        license left the group): served to no one, while its entry lasts."""
        return self.was_proxied(f"{serial}/{license_id}") and self.proxied(firm_code, serial, license_id) is None

    def was_proxied(self, license_key: str) -> bool:
        """Whether a grant of this server (live or ended) named the license ``license_key``
        ("<serial>/<license id>"): the link files are read first, so a restarted server
        knows it before its first access."""
        self.grants()
        return license_key in self.known

    def member(self, grant: P.ProxyGrant, device: dict[str, str] | None) -> P.Member | None:
        """The member whose linked device the client proved (None: no member's)."""
        if not device:
            return None
        return grant.member_of(str(device.get("serial")), str(device.get("sign_pub")))

    def views(self) -> list[dict[str, Any]]:
        out = []
        for found in links(self.data_dir):
            g = found.grant or {}
            p = g.get("payload") or {}
            out.append(
                {
                    "firm_code": found.firm_code,
                    "central": found.central,
                    "group": p.get("group"),
                    "proxy": p.get("proxy"),
                    "members": len(p.get("members") or []),
                    "licenses": p.get("licenses") or [],
                    "issued": p.get("issued"),
                    "until": p.get("until"),
                    "ended": found.ended,
                }
            )
        return out


class Refresher:
    """The running server's refreshes: at the grant's interval, when the trigger changes,
    and (while Central cannot be reached) again after the poll interval."""

    def __init__(self, data_dir: Path, rt_factory: Any, clock: Any):
        self.data_dir = data_dir
        self.rt_factory = rt_factory
        self.clock = clock
        self.poll_seconds = 15.0

    def run_once(self) -> int:
        """Look at every link once; returns how many were refreshed."""
        done = 0
        found_links = links(self.data_dir)
        if not found_links:
            return 0
        rt = self.rt_factory()
        for found in found_links:
            if found.ended:
                continue
            payload = (found.grant or {}).get("payload") or {}
            self.poll_seconds = float(max(1, int(payload.get("poll") or 15)))
            due = int(payload.get("issued") or 0) + int(payload.get("refresh") or 0) <= self.clock()
            try:
                if not due:
                    state = trigger(rt, found)
                    if state.get("ended"):
                        log.warning("proxy of firm %s ended at License Central: its licenses go", found.firm_code)
                        self._ended(rt, found)
                        continue
                    due = state.get("state") != payload.get("state")
                if due:
                    refresh(self.data_dir, rt, found)
                    done += 1
            except E.CentralRefused as exc:
                log.warning("proxy refresh of firm %s refused: %s", found.firm_code, exc)
                if exc.status == 401 or exc.code == "proxy_flagged":
                    self._ended(rt, found)
            except (E.LicentiaError, OSError) as exc:
                log.warning("proxy refresh of firm %s failed: %s", found.firm_code, exc)
        return done

    def _ended(self, rt: Any, found: ProxyLink) -> None:
        """Central ended the proxy: drop the link, and sync the entries away."""
        from ..runtime import activation

        _save(self.data_dir, dataclasses.replace(found, ended=True))
        try:
            activation.sync(found.central, runtime=rt, cli="licentia server")
        except E.LicentiaError as exc:
            log.warning("sync after the proxy ended: %s", exc)
