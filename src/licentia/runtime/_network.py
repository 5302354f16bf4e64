"""The runtime's network path: finding license servers, leases with heartbeats, borrowing.

Search order after the local containers: the servers in ``LICENTIA_HOST``
(comma-separated ``host[:port]``, default port 22370; ``https://host:port`` for TLS, or
every server over TLS when ``LICENTIA_CA_FILE`` names the CA to trust), then the server
list of ``$LICENTIA_HOME/config.toml`` (``licentia config server add``), then, only
when switched on (``licentia config discovery on``), a UDP broadcast that servers
answer. Servers found by discovery are cached per process.

A lease is renewed in the background by one heartbeat thread per process. When renewals
fail for the lease's TTL, or the server no longer knows it, the lease is *lost*: the
handle's ``on_lease_lost(handle, False)`` is called, and the thread keeps asking the same
server for the seat with the same client lease id (which finds the same seat, never a
second); when it comes back, ``on_lease_lost(handle, True)``. A lease the administrator
released is lost for good. A forked child inherits no lease: its handles read as
released, and it neither renews nor releases the parent's leases.

httpx is imported here, and only here, when the runtime first goes on the network.
"""

from __future__ import annotations

import atexit
import getpass
import json
import logging
import os
import secrets
import socket
import threading
import time
import tomllib
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from ..core import errors as E
from ..core import hazmat, grants
from ..core.encoding import b64e
from ..core.documents import DocumentInvalid, document_digest
from ..core.license import AccessRequest, LicenseEntry, LicenseState, evaluate

if TYPE_CHECKING:  # pragma: no cover
    import httpx

    from ._runtime import Handle, Runtime

log = logging.getLogger("licentia")

DEFAULT_PORT = 22370
API = "/api/v1"
DISCOVERY_TIMEOUT = 0.5
CONNECT_TIMEOUT = 3.0
REQUEST_TIMEOUT = 10.0
ERRORS = {cls.code: cls for cls in E.ALL_ERRORS}


# ---------------------------------------------------------------- where servers are


@dataclass(frozen=True)
class ServerAddr:
    host: str
    port: int = DEFAULT_PORT
    tls: bool = False

    @property
    def label(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.label}"


def parse_server(text: str, *, tls: bool = False) -> ServerAddr:
    """``host``, ``host:port``, ``[v6]:port``, ``http(s)://host[:port]``."""
    text = text.strip().rstrip("/")
    if text.startswith("https://"):
        tls, text = True, text[8:]
    elif text.startswith("http://"):
        text = text[7:]
    if not text:
        raise ValueError("empty server name")
    port = DEFAULT_PORT
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        if rest.startswith(":"):
            port = int(rest[1:])
    elif text.count(":") == 1:
        host, _, p = text.partition(":")
        port = int(p)
    else:
        host = text
    if not host or not 0 < port < 65536:
        raise ValueError(f"not a server address: {text!r}")
    return ServerAddr(host, port, tls)


def parse_servers(text: str, *, tls: bool = False) -> list[ServerAddr]:
    out = []
    for part in text.split(","):
        if part.strip():
            try:
                out.append(parse_server(part, tls=tls))
            except ValueError:
                log.warning("ignoring server address %r", part.strip())
    return out


@dataclass(frozen=True)
class NetConfig:
    servers: tuple[ServerAddr, ...] = ()
    discovery: bool = False
    broadcast: str = "255.255.255.255"
    discovery_port: int = DEFAULT_PORT
    discovery_timeout: float = DISCOVERY_TIMEOUT


_config_cache: dict[str, tuple[Any, NetConfig]] = {}


def read_config(home: Path, *, tls: bool = False) -> NetConfig:
    """The ``[network]`` table of ``$LICENTIA_HOME/config.toml`` (cached while unchanged)."""
    path = home / "config.toml"
    try:
        st = os.stat(path)
        key: Any = (st.st_ino, st.st_mtime_ns, st.st_size, tls)
    except FileNotFoundError:
        return NetConfig()
    cached = _config_cache.get(str(path))
    if cached is not None and cached[0] == key:
        return cached[1]
    try:
        with open(path, "rb") as fh:
            doc = tomllib.load(fh)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        log.warning("%s cannot be read (%s): no configured license servers", path, exc)
        return NetConfig()
    net = doc.get("network", {}) if isinstance(doc.get("network"), dict) else {}
    servers = []
    for text in net.get("servers", []) if isinstance(net.get("servers"), list) else []:
        try:
            servers.append(parse_server(str(text), tls=tls))
        except ValueError:
            log.warning("%s: ignoring server address %r", path, text)
    cfg = NetConfig(
        servers=tuple(servers),
        discovery=net.get("discovery") is True,
        broadcast=str(net.get("broadcast") or "255.255.255.255"),
        discovery_port=int(net.get("discovery_port") or DEFAULT_PORT),
        discovery_timeout=float(net.get("discovery_timeout") or DISCOVERY_TIMEOUT),
    )
    _config_cache[str(path)] = (key, cfg)
    return cfg


def env_servers() -> list[ServerAddr]:
    return parse_servers(os.environ.get("LICENTIA_HOST", ""), tls=bool(os.environ.get("LICENTIA_CA_FILE")))


def configured(home: Path) -> bool:
    """Whether the runtime has anywhere to look on the network (no httpx import)."""
    if os.environ.get("LICENTIA_HOST", "").strip():
        return True
    cfg = read_config(home)
    return bool(cfg.servers) or cfg.discovery


def discover(broadcast: str, port: int, timeout: float = DISCOVERY_TIMEOUT, *, tls: bool = False) -> list[ServerAddr]:
    """Broadcast a discovery request; the servers that answer within ``timeout``."""
    nonce = secrets.token_hex(8)
    message = json.dumps({"licentia": "discover", "v": 1, "nonce": nonce}).encode()
    found: list[ServerAddr] = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        sock.bind(("", 0))
        try:
            sock.sendto(message, (broadcast, port))
        except OSError as exc:
            log.warning("discovery broadcast to %s:%d failed: %s", broadcast, port, exc)
            return []
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            sock.settimeout(left)
            try:
                data, addr = sock.recvfrom(2048)
            except (TimeoutError, socket.timeout):
                break
            except OSError:
                break
            try:
                msg = json.loads(data)
                if msg.get("licentia") != "server" or msg.get("nonce") != nonce:
                    continue
                srv = ServerAddr(addr[0], int(msg["port"]), bool(msg.get("tls")) or tls)
            except (ValueError, KeyError, TypeError, AttributeError):
                continue
            if srv not in found:
                found.append(srv)
    return found


# ---------------------------------------------------------------- leases


class _Lease:
    """A lease held by one handle; renewed by the heartbeat thread."""

    def __init__(self, net: NetworkClient, server: ServerAddr, answer: dict[str, Any], lease: grants.Lease,
                 entry: LicenseEntry, body: dict[str, Any], callback: Callable[..., Any] | None):
        self.net = net
        self.server = server
        self.entry = entry
        self.serial = entry.serial
        self.body = body  # what to send again to get the seat back
        self.callback = callback
        self.pid = os.getpid()
        self.handle_ref: Callable[[], Handle | None] = lambda: None
        self.lock = threading.Lock()  # guards state changes (never held over a network call)
        self.state = "active"
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

    @property
    def lost(self) -> bool:
        return self.state in ("lost", "revoked")

    def product_key(self, entry: LicenseEntry, version: int) -> bytes | None:
        sealed = self.keys.get(version)
        if sealed is None:
            return None
        try:
            return grants.unseal_lease_key(self.net.session_key, self.net.session, self.serial, entry.digest, sealed)
        except DocumentInvalid as exc:
            raise E.rejected(f"lease product key: {exc.reason}") from None

    def release(self) -> None:
        if self.pid != os.getpid():
            return  # a forked child never releases its parent's lease
        with self.lock:
            if self.state == "released":
                return
            was, self.state = self.state, "released"
        self.net.forget(self)
        if was == "revoked":
            return
        try:
            self.net.client(self.server).delete(f"{API}/leases/{self.lease_id}",
                                                params={"client": self.client_lease_id}, timeout=3.0)
        except Exception as exc:  # noqa: BLE001 - the seat frees itself after the TTL
            log.info("release of lease %s at %s failed (%s); the seat frees after its TTL",
                     self.lease_id, self.server.label, exc.__class__.__name__)

    def notify(self, back: bool) -> None:
        handle = self.handle_ref()
        if self.callback is None or handle is None:
            return
        try:
            self.callback(handle, back)
        except Exception:  # noqa: BLE001 - an application callback must not kill the heartbeat
            log.exception("on_lease_lost callback failed")


class _Heartbeat(threading.Thread):
    def __init__(self, net: NetworkClient):
        super().__init__(name="licentia-heartbeat", daemon=True)
        self.net = net

    def run(self) -> None:
        net = self.net
        while True:
            with net.cond:
                if not net.leases or net.pid != os.getpid():
                    net.thread = None
                    return
                now = time.monotonic()
                due = min(lease.next_due for lease in net.leases)
                if due > now:
                    net.cond.wait(min(due - now, 5.0))
                    continue
                todo = [lease for lease in net.leases if lease.next_due <= now]
            for lease in todo:
                try:
                    net.tick(lease)
                except Exception:  # noqa: BLE001 - keep beating
                    log.exception("lease heartbeat failed")
                    lease.next_due = time.monotonic() + lease.heartbeat


class NetworkClient:
    """Per-process network state of one Runtime: session key, HTTP clients, leases."""

    def __init__(self, runtime: Runtime):
        self.rt = runtime
        self.pid = os.getpid()
        self.session_key = hazmat.X25519PrivateKey.generate()
        self.session = b64e(hazmat.raw_public(self.session_key.public_key()))
        self._clients: dict[str, httpx.Client] = {}
        self._found: list[ServerAddr] | None = None  # discovery results, per process
        self._preferred: ServerAddr | None = None
        self._verified: dict[str, LicenseEntry] = {}
        self.leases: set[_Lease] = set()
        self.cond = threading.Condition()
        self.thread: _Heartbeat | None = None
        self._identity: dict[str, Any] | None = None
        self._lock = threading.Lock()
        atexit.register(self._at_exit)

    def _at_exit(self) -> None:
        """A process that ends gives its seats back (a killed one: after the TTL)."""
        if self.pid != os.getpid():
            return
        with self.cond:
            held = list(self.leases)
        for lease in held:
            lease.release()
        self.close()

    # ------------------------------------------------------------ plumbing

    def identity(self) -> dict[str, Any]:
        if self._identity is None:
            try:
                user = getpass.getuser()
            except Exception:  # noqa: BLE001
                user = str(os.getuid()) if hasattr(os, "getuid") else "unknown"
            host = ""
            try:
                host = str(self.rt.traits().get("hostname") or "")
            except Exception:  # noqa: BLE001
                host = ""
            groups: list[str] = []
            try:
                import grp

                for gid in os.getgroups():
                    try:
                        groups.append(grp.getgrgid(gid).gr_name)
                    except KeyError:
                        continue
            except (ImportError, OSError):
                pass
            self._identity = {"user": user, "host": host or socket.gethostname(), "groups": sorted(set(groups))[:64]}
        return {**self._identity, "pid": os.getpid()}

    def client(self, server: ServerAddr) -> httpx.Client:
        client = self._clients.get(server.url)
        if client is None:
            import httpx

            with self._lock:
                client = self._clients.get(server.url)
                if client is None:
                    headers = {"user-agent": "licentia-runtime/1"}
                    token = os.environ.get("LICENTIA_SERVER_TOKEN")
                    if token:
                        headers["authorization"] = f"Bearer {token}"
                    verify: Any = True
                    ca = os.environ.get("LICENTIA_CA_FILE")
                    if ca:
                        import ssl

                        verify = ssl.create_default_context(cafile=ca)
                    client = httpx.Client(
                        base_url=server.url,
                        headers=headers,
                        verify=verify,
                        timeout=httpx.Timeout(REQUEST_TIMEOUT, connect=CONNECT_TIMEOUT),
                        limits=httpx.Limits(max_connections=256, max_keepalive_connections=64, keepalive_expiry=60),
                        trust_env=False,
                    )
                    self._clients[server.url] = client
        return client

    def servers(self) -> list[ServerAddr]:
        """Where to look, in order (the server that last granted a lease first)."""
        tls = bool(os.environ.get("LICENTIA_CA_FILE"))
        out = env_servers()
        cfg = read_config(self.rt.home, tls=tls)
        out.extend(s for s in cfg.servers if s not in out)
        if cfg.discovery:
            if self._found is None:
                self._found = discover(cfg.broadcast, cfg.discovery_port, cfg.discovery_timeout, tls=tls)
            out.extend(s for s in self._found if s not in out)
        if self._preferred in out:
            out.remove(self._preferred)
            out.insert(0, self._preferred)
        return out

    def _post(self, server: ServerAddr, path: str, body: dict[str, Any]) -> tuple[int, Any]:
        response = self.client(server).post(path, json=body)
        try:
            data = response.json()
        except ValueError:
            data = None
        return response.status_code, data

    @staticmethod
    def _error(server: ServerAddr, status: int, data: Any) -> tuple[type[E.LicenseError], str, dict[str, Any]]:
        err = data.get("error") if isinstance(data, dict) else None
        if not isinstance(err, dict):
            return E.ServerUnreachable, f"server {server.label} answered HTTP {status}", {}
        message = str(err.get("message") or err.get("type") or status)
        if status == 401:
            return E.AccessDenied, f"server {server.label}: {message}", {}
        cls = ERRORS.get(err.get("code")) if isinstance(err.get("code"), int) else None
        if cls is None:
            cls = E.AccessDenied if status == 403 else E.LicenseNotFound if status == 404 else E.ServerUnreachable
        extra = {k: err[k] for k in ("seats", "in_use") if isinstance(err.get(k), int)}
        return cls, f"server {server.label}: {message}", extra

    # ------------------------------------------------------------ access

    def access(self, request: AccessRequest, keys: dict[str, hazmat.Ed25519PublicKey], mode: str,
               on_lease_lost: Callable[..., Any] | None) -> Handle:
        import httpx

        servers = self.servers()
        failures: list[tuple[int, type[E.LicenseError], str, dict[str, Any]]] = []
        unreachable: list[str] = []
        tried: list[str] = []
        body_base = {
            "firm_code": request.firm_code,
            "product_code": request.product_code,
            "feature_code": request.feature_code,
            "units": request.units,
            "release_date": request.release_date,
            "mode": mode,
            "client_lease_id": secrets.token_urlsafe(12),
            "reconnect": False,  # a fresh id: the server need not look for a lease of it
            "session": self.session,
            **self.identity(),
        }
        for server in servers:
            body = {**body_base, "nonce": secrets.token_urlsafe(12)}
            try:
                status, data = self._post(server, f"{API}/leases", body)
            except httpx.HTTPError as exc:
                unreachable.append(server.label)
                tried.append(f"server {server.label}: unreachable ({exc.__class__.__name__})")
                continue
            if status == 200 and isinstance(data, dict):
                try:
                    return self._handle(server, request, keys, mode, body, data, on_lease_lost)
                except E.LicenseError as exc:
                    failures.append((exc.rank, type(exc), f"server {server.label}: {exc}", {}))
                    tried.append(f"server {server.label}: {exc}")
                    continue
            cls, message, extra = self._error(server, status, data)
            failures.append((cls.rank, cls, message, extra))
            tried.append(message)
        if not servers:
            raise E.ServerUnreachable("no license server to ask: set LICENTIA_HOST, run 'licentia config server add "
                                      "HOST', or 'licentia config discovery on'", tried=tried)
        if failures:
            rank, cls, message, extra = max(failures, key=lambda f: f[0])
            if rank > E.ServerUnreachable.rank or not unreachable:
                others = [t for t in tried if t != message]
                text = message + (f" (also tried: {'; '.join(others)})" if others else "")
                if cls is E.SeatsExhausted:
                    raise E.SeatsExhausted(text, seats=extra.get("seats"), in_use=extra.get("in_use"), tried=tried)
                raise cls(text, tried=tried)
        self._found = None  # nothing answered: look around again next time
        raise E.ServerUnreachable(
            f"no license server answered: tried {', '.join(s.label for s in servers)}"
            + (f" ({'; '.join(tried)})" if tried else ""),
            tried=tried,
        )

    def _verify(self, request: AccessRequest, keys: dict[str, hazmat.Ed25519PublicKey], mode: str,
                body: dict[str, Any], data: dict[str, Any]) -> tuple[LicenseEntry, grants.Lease]:
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
        if (lease.session != self.session or lease.nonce != body["nonce"]
                or lease.client_lease_id != body["client_lease_id"] or lease.firm_code != request.firm_code
                or lease.product_code != request.product_code or lease.mode != mode
                or entry.firm_code != request.firm_code or entry.product_code != request.product_code):
            raise E.rejected("license server answer does not match the request")
        return entry, lease

    def _handle(self, server: ServerAddr, request: AccessRequest, keys: dict[str, hazmat.Ed25519PublicKey],
                mode: str, body: dict[str, Any], data: dict[str, Any], callback: Callable[..., Any] | None) -> Handle:
        from ._runtime import Handle, _Grant

        try:
            entry, lease = self._verify(request, keys, mode, body, data)
        except E.LicenseError:
            self._release_quietly(server, data, body)
            raise
        check = AccessRequest(request.firm_code, request.product_code, request.feature_code, 0, request.release_date)
        ev = evaluate(entry, LicenseState(first_use=lease.first_use), check, self.rt.clock(), 0)
        if ev.error is not None:
            self._release_quietly(server, data, body)
            raise ev.error(f"server {server.label} {entry.summary()}: {ev.message}")
        held = _Lease(self, server, data, lease, entry, body, callback)
        state = LicenseState(first_use=lease.first_use)
        handle = Handle(_Grant(entry, held, state, ev.expires), request, None)  # type: ignore[arg-type]
        handle._lease = held
        held.handle_ref = weakref.ref(handle)
        self._preferred = server
        self.track(held)
        return handle

    def _release_quietly(self, server: ServerAddr, data: dict[str, Any], body: dict[str, Any]) -> None:
        lease_id = data.get("lease_id")
        if isinstance(lease_id, str):
            try:
                self.client(server).delete(f"{API}/leases/{lease_id}", params={"client": body["client_lease_id"]})
            except Exception:  # noqa: BLE001
                pass

    # ------------------------------------------------------------ heartbeats

    def track(self, lease: _Lease) -> None:
        with self.cond:
            self.leases.add(lease)
            if self.thread is None:
                self.thread = _Heartbeat(self)
                self.thread.start()
            self.cond.notify()

    def forget(self, lease: _Lease) -> None:
        with self.cond:
            self.leases.discard(lease)
            self.cond.notify()

    def tick(self, lease: _Lease) -> None:
        import httpx

        handle = lease.handle_ref()
        if handle is None or handle._released:
            lease.release()  # the application dropped (or released) its handle
            return
        now = time.monotonic()
        if lease.state == "active":
            try:
                status, data = self._post(lease.server, f"{API}/leases/{lease.lease_id}/renew",
                                          {"client_lease_id": lease.client_lease_id})
            except httpx.HTTPError:
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
            log.warning("lease %s at %s lost", lease.lease_id, lease.server.label)
            lease.notify(False)
        if lease.state == "lost":
            if self._reacquire(lease):
                log.warning("lease at %s is back", lease.server.label)
                lease.notify(True)
            else:
                lease.next_due = time.monotonic() + min(lease.heartbeat, 2.0)

    def _reacquire(self, lease: _Lease) -> bool:
        import httpx

        body = {**lease.body, "nonce": secrets.token_urlsafe(12), "pid": os.getpid(), "reconnect": True}
        request = AccessRequest(body["firm_code"], body["product_code"], body["feature_code"], 0,
                                body.get("release_date"))
        try:
            status, data = self._post(lease.server, f"{API}/leases", {**body, "units": 0})
        except httpx.HTTPError:
            return False
        if status != 200 or not isinstance(data, dict):
            return False
        keys = self.rt.trusted(request.firm_code)
        try:
            entry, granted = self._verify(request, keys, body["mode"], body, data)
        except E.LicenseError:
            self._release_quietly(lease.server, data, body)
            return False
        with lease.lock:
            if lease.state == "lost":
                lease.entry = entry
                lease._update(data, granted)
                lease.state = "active"
                return True
        self._release_quietly(lease.server, data, body)  # released meanwhile: give the seat back
        return False

    def close(self) -> None:
        for client in list(self._clients.values()):
            try:
                client.close()
            except Exception:  # noqa: BLE001
                pass
        self._clients.clear()


# ---------------------------------------------------------------- borrowing


def borrow(runtime: Runtime, firm_code: int, product_code: int, days: int, *, feature_code: int = 0,
           level: str = "medium") -> dict[str, Any]:
    """Borrow a seat into this machine's container; returns what was stored."""
    import httpx

    from ..container.binding import NoUsableTraits
    from ..container.store import open_or_create

    net = runtime.network()
    servers = net.servers()
    if not servers:
        raise E.ServerUnreachable("no license server to borrow from: set LICENTIA_HOST, run 'licentia config "
                                  "server add HOST', or 'licentia config discovery on'")
    try:
        container = open_or_create(runtime.home, level, runtime.traits, runtime.clock())
    except NoUsableTraits as exc:
        raise E.ActivationError(str(exc)) from None
    runtime.reset()
    body = {
        "firm_code": firm_code,
        "product_code": product_code,
        "feature_code": feature_code,
        "days": days,
        "client_lease_id": f"borrow-{container.serial}",
        "container": {"serial": container.serial, "sign_pub": container.sign_pub, "box_pub": container.box_pub},
        **net.identity(),
    }
    failures: list[tuple[int, type[E.LicenseError], str]] = []
    tried: list[str] = []
    for server in servers:
        try:
            status, data = net._post(server, f"{API}/borrows", body)
        except httpx.HTTPError as exc:
            tried.append(f"server {server.label}: unreachable ({exc.__class__.__name__})")
            continue
        if status != 200 or not isinstance(data, dict):
            cls, message, _ = net._error(server, status, data)
            failures.append((cls.rank, cls, message))
            tried.append(message)
            continue
        try:
            entry = LicenseEntry.from_payload(data["entry"]["payload"], digest=document_digest(data["entry"]),
                                              document=data["entry"])
            grant = grants.verify_borrow(data["grant"], entry)
        except (DocumentInvalid, KeyError, TypeError) as exc:
            raise E.rejected(f"borrow answer from {server.label}: {getattr(exc, 'reason', exc)}") from None
        if grant.client_serial != container.serial or grant.client_key != container.sign_pub:
            raise E.rejected("borrow grant names another container")
        record = {"entry": data["entry"], "grant": data["grant"], "keys": data.get("keys") or [],
                  "server": server.url}
        container.add_borrowed(firm_code, record, borrow_id=grant.borrow_id, vtime=int(data.get("time") or 0))
        runtime.reset()
        return {"borrow_id": grant.borrow_id, "server": server.label, "container": container.serial,
                "license_id": entry.license_id, "expires": grant.expires}
    if failures:
        _, cls, message = max(failures, key=lambda f: f[0])
        raise cls(message, tried=tried)
    raise E.ServerUnreachable(f"no license server answered: tried {', '.join(s.label for s in servers)}", tried=tried)


def borrowed(runtime: Runtime) -> list[dict[str, Any]]:
    """Borrowed licenses in this machine's containers."""
    out = []
    for container, slot in runtime.iter_slots():
        for record in slot.borrowed or []:
            payload = record["grant"]["payload"]
            out.append({"container": container, "firm_code": slot.firm_code,
                        "product_code": payload.get("product_code"), "borrow_id": record["id"],
                        "expires": payload.get("expires"), "server": record.get("server")})
    return out


def give_back(runtime: Runtime, firm_code: int, product_code: int) -> list[dict[str, Any]]:
    """Return the borrowed licenses of (firm, product): remove them here, then tell the server.

    A receipt the server did not confirm is kept in ``$LICENTIA_HOME/receipts/`` and sent
    at the next ``licentia return``; until then the seat stays taken on the server."""
    import httpx

    done = []
    pending = _pending_returns(runtime)
    for item in borrowed(runtime):
        if item["firm_code"] != firm_code or item["product_code"] != product_code:
            continue
        receipt = item["container"].remove_borrowed(firm_code, item["borrow_id"], runtime.clock())
        runtime.reset()
        pending.append((item["borrow_id"], str(item["server"]), receipt, None))
    if not pending:
        raise E.LicenseNotFound(f"no borrowed license of firm {firm_code}, product {product_code} on this machine")
    net = runtime.network()
    for borrow_id, url, receipt, path in pending:
        server = parse_server(url)
        try:
            status, data = net._post(server, f"{API}/borrows/{borrow_id}/return", {"receipt": receipt})
            ok = status == 200 or status == 404  # 404: the server forgot it (expired): nothing left to free
        except httpx.HTTPError:
            ok = False
        if ok:
            if path is not None:
                path.unlink(missing_ok=True)
            done.append({"borrow_id": borrow_id, "server": server.label, "returned": True})
        else:
            kept = path or _keep_return(runtime, borrow_id, url, receipt)
            done.append({"borrow_id": borrow_id, "server": server.label, "returned": False, "kept": str(kept)})
    return done


def _keep_return(runtime: Runtime, borrow_id: str, url: str, receipt: dict[str, Any]) -> Path:
    from ..container.files import write_atomic

    folder = runtime.home / "receipts"
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = folder / f"return-{borrow_id}.json"
    write_atomic(path, json.dumps({"server": url, "borrow_id": borrow_id, "receipt": receipt}).encode())
    return path


def _pending_returns(runtime: Runtime) -> list[tuple[str, str, dict[str, Any], Path | None]]:
    out: list[tuple[str, str, dict[str, Any], Path | None]] = []
    for path in sorted((runtime.home / "receipts").glob("return-*.json")):
        try:
            doc = json.loads(path.read_bytes())
            out.append((str(doc["borrow_id"]), str(doc["server"]), doc["receipt"], path))
        except (OSError, ValueError, KeyError):
            continue
    return out
