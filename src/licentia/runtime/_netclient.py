"""The runtime's client of license servers: session key, identity, HTTP connections.

One ``NetClient`` per runtime and process: it knows where to look (``_servers``), who
asks (user, host, groups), and keeps one pooled httpx client per server. A server named
by a host name is resolved once, to the first of its addresses that accepts a
connection, and every request of the process goes to that address (the TLS certificate
is still checked against the name): the server sees the client at one source address,
which its station and exclusive seats go by. An unreachable address is resolved again at
the next request. httpx is
imported here, and only here, when the runtime first goes on the network; its errors
and the servers' error answers are translated to LicenseErrors in ``error()``.
"""

from __future__ import annotations

import contextlib
import getpass
import ipaddress
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ..core import errors as E
from ..core import grants, hazmat
from ..core.encoding import b64e, strict_loads
from ._servers import ServerAddr, cloud_target, discover, env_servers, read_config

if TYPE_CHECKING:  # pragma: no cover
    import httpx

log = logging.getLogger("licentia")

API = "/api/v1"  # the license server protocol's path prefix (docs/formats.md)
CONNECT_TIMEOUT = 3.0
REQUEST_TIMEOUT = 10.0  # for each step: connecting, sending, each read
#: the longest an answer's body may take to arrive, whatever its pace: a server that sends
#: a byte now and then never waits out REQUEST_TIMEOUT, and would hold the access forever
ANSWER_DEADLINE = 20.0


class RuntimeView(Protocol):
    """What the network side needs of a runtime: where it lives, its clock and traits, pinned keys."""

    @property
    def home(self) -> Path: ...

    clock: Callable[[], int]
    traits: Callable[[], dict[str, str]]

    def trusted(self, firm_code: int) -> dict[str, hazmat.Ed25519PublicKey]: ...

    def machine_container(self, level: str, *, now: int | None = None) -> Any: ...


#: the largest answer read from a license server (a lease answer is a few KiB)
MAX_ANSWER_BYTES = 4 * 1024 * 1024


class NetClient:
    """Per-process connection state of one runtime: session key, identity, HTTP clients."""

    def __init__(self, runtime: RuntimeView):
        self.rt = runtime
        self.pid = os.getpid()
        self.session_key = hazmat.X25519PrivateKey.generate()  # product keys are sealed to it
        self.session = b64e(hazmat.raw_public(self.session_key.public_key()))
        # the lease holder's key: signs lease requests, renewals and releases (never leaves the process)
        self._proof_key = hazmat.Ed25519PrivateKey.generate()
        self.holder = b64e(hazmat.raw_public(self._proof_key.public_key()))
        self._clients: dict[ServerAddr, httpx.Client] = {}
        self._found: list[ServerAddr] | None = None  # discovery results, per process
        self.preferred: ServerAddr | None = None  # the server that last granted a lease
        self._identity: dict[str, Any] | None = None
        self._lock = threading.Lock()

    def prove(self, kind: str, payload: dict[str, Any]) -> str:
        """This session's proof (``grants.prove``) of a lease request, renewal or release."""
        return grants.prove(self._proof_key, kind, payload)

    def signed_request(self, body: dict[str, Any]) -> dict[str, Any]:
        """A lease request with its proof."""
        return {**body, "proof": self.prove(grants.LEASE_REQUEST, grants.request_proof_payload(body))}

    def identity(self) -> dict[str, Any]:
        if self._identity is None:
            try:
                user = getpass.getuser()
            except Exception:  # noqa: BLE001 - no user name to be had: the user id stands in
                user = str(os.getuid()) if hasattr(os, "getuid") else "unknown"
            host = ""
            try:
                host = str(self.rt.traits().get("hostname") or "")
            except Exception:  # noqa: BLE001 - the host name is only reported, never needed
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

    def address(self, server: ServerAddr) -> str:
        """The address requests to ``server`` go to: its literal address, else the first
        resolved address that accepts a TCP connection (the name when none does)."""
        try:
            ipaddress.ip_address(server.host)
            return server.host
        except ValueError:
            pass
        try:
            infos = socket.getaddrinfo(server.host, server.port, type=socket.SOCK_STREAM)
        except OSError:
            return server.host  # httpx reports the failure
        for family, kind, proto, _, sockaddr in infos:
            try:
                with socket.socket(family, kind, proto) as probe:
                    probe.settimeout(CONNECT_TIMEOUT)
                    probe.connect(sockaddr)
            except OSError:
                continue
            return str(sockaddr[0])
        return server.host

    def forget(self, server: ServerAddr) -> None:
        """Drop the server's client and resolved address (it did not answer); a request
        still under way on another thread finishes on the old one."""
        with self._lock:
            self._clients.pop(server, None)

    def cloud_token(self, firm_code: int) -> str:
        """This device's session with the firm's cloud, opened by its machine container;
        ServerUnreachable (naming the next step) when there is none that opens here."""
        from ..container.binding import NoUsableTraits
        from .cloud import LEVEL, links

        link = next((x for x in links(self.rt.home) if x.firm_code == firm_code), None)
        if link is None:
            raise E.ServerUnreachable(f"this device is not linked to the cloud of firm {firm_code}")
        try:
            return link.token(self.rt.machine_container(LEVEL))
        except (NoUsableTraits, OSError, E.LicenseError) as exc:
            raise E.ServerUnreachable(
                f"this device's cloud session of firm {firm_code} does not open on this machine ({exc}): "
                "run 'licentia cloud login'"
            ) from None

    def client(self, server: ServerAddr) -> httpx.Client:
        client = self._clients.get(server)
        if client is None:
            import httpx

            with self._lock:
                client = self._clients.get(server)
                if client is None:
                    # answers plain: a compressed one could unpack to any size (see _call)
                    headers = {"user-agent": "licentia-runtime/1", "accept-encoding": "identity"}
                    token = (
                        self.cloud_token(server.cloud)
                        if server.cloud is not None
                        else os.environ.get("LICENTIA_SERVER_TOKEN")
                    )
                    if token:
                        headers["authorization"] = f"Bearer {token}"
                    verify: Any = True
                    ca = os.environ.get("LICENTIA_CA_FILE")
                    if ca:
                        import ssl

                        verify = ssl.create_default_context(cafile=ca)
                    address = self.address(server)
                    hooks: dict[str, list[Callable[..., Any]]] = {}
                    base_url = server.url
                    if address != server.host:
                        headers["host"] = server.label
                        shown = f"[{address}]" if ":" in address else address
                        base_url = f"{'https' if server.tls else 'http'}://{shown}:{server.port}{server.path}"
                        if server.tls:  # the certificate is checked against the name, not the address

                            def sni(request: httpx.Request, name: str = server.host) -> None:
                                request.extensions["sni_hostname"] = name

                            hooks["request"] = [sni]
                    client = httpx.Client(
                        base_url=base_url,
                        event_hooks=hooks,
                        headers=headers,
                        verify=verify,
                        timeout=httpx.Timeout(REQUEST_TIMEOUT, connect=CONNECT_TIMEOUT),
                        limits=httpx.Limits(max_connections=256, max_keepalive_connections=64, keepalive_expiry=60),
                        trust_env=False,
                    )
                    self._clients[server] = client
        return client

    def servers(self, firm_code: int | None = None) -> list[ServerAddr]:
        """Where to look, in order (the server that last granted a lease first); with
        ``firm_code``, the firm's cloud too when this device is linked to it."""
        tls = bool(os.environ.get("LICENTIA_CA_FILE"))
        out = env_servers()
        cfg = read_config(self.rt.home, tls=tls)
        out.extend(s for s in cfg.servers if s not in out)
        if cfg.discovery:
            if self._found is None:
                self._found = discover(cfg.broadcast, cfg.discovery_port, cfg.discovery_timeout, tls=tls)
            out.extend(s for s in self._found if s not in out)
        if firm_code is not None and cfg.cloud != "off":
            clouds = self.clouds(firm_code)
            out = clouds + out if cfg.cloud == "first" else out + clouds
        if self.preferred in out:
            out.remove(self.preferred)
            out.insert(0, self.preferred)
        return out

    def clouds(self, firm_code: int) -> list[ServerAddr]:
        """The firm's cloud, when this device is linked to it (``licentia cloud login``)."""
        from .cloud import links

        out = []
        for link in links(self.rt.home):
            if link.firm_code == firm_code:
                try:
                    out.append(cloud_target(link.central, firm_code))
                except ValueError:
                    log.warning("%s: not a License Central address: %r", link.path, link.central)
        return out

    def forget_found(self) -> None:
        """Nothing answered: look around again next time."""
        self._found = None

    def post(self, server: ServerAddr, path: str, body: dict[str, Any]) -> tuple[int, Any]:
        """POST JSON; (status, parsed answer or None). ServerUnreachable when no answer came."""
        return self._call(server, "POST", path, json=body)

    def machine_proof(self, server: ServerAddr, container: Any, holder: str) -> dict[str, Any] | None:
        """``container``'s signature over a fresh challenge of ``server`` and ``holder``: the
        session's holder key for a lease, the container's box key for a borrow (docs/formats.md
        12.4); None from a server that issues no challenges."""
        from ..core import grants

        status, data = self.get(server, f"{server.api}/challenge")
        if status != 200 or not isinstance(data, dict) or not isinstance(data.get("nonce"), str):
            return None
        payload = {
            "serial": container.serial,
            "sign_pub": container.sign_pub,
            "server": server.url,
            "nonce": data["nonce"],
            "time": data.get("time"),
            "holder": holder,
        }
        return dict(container.sign(grants.SEAT_PROOF, payload))

    def get(self, server: ServerAddr, path: str) -> tuple[int, Any]:
        """GET JSON; (status, parsed answer or None). ServerUnreachable when no answer came."""
        return self._call(server, "GET", path)

    def _call(
        self,
        server: ServerAddr,
        method: str,
        path: str,
        *,
        json: dict[str, Any] | None = None,
        params: dict[str, str] | None = None,
        timeout: float | None = None,
    ) -> tuple[int, Any]:
        """(status, parsed answer or None). The answer is read as it comes: no further than
        MAX_ANSWER_BYTES (a longer one is not an answer: None), and not compressed (asked for
        plainly; a compressed one is not an answer either, it could unpack to any size); once
        its headers are in, its body has ANSWER_DEADLINE to arrive (``timeout``, when given,
        for each step and for the body alike), else ServerUnreachable. So a server, or anyone
        answering discovery, can neither fill the application's memory nor hold its access
        indefinitely."""
        import httpx

        limit = ANSWER_DEADLINE if timeout is None else timeout
        steps: Any = httpx.USE_CLIENT_DEFAULT if timeout is None else timeout
        try:
            with self.client(server).stream(method, path, json=json, params=params, timeout=steps) as response:
                if response.headers.get("content-encoding", "identity").strip().lower() not in ("", "identity"):
                    log.warning("server %s: a compressed answer, not read", server.label)
                    return response.status_code, None
                deadline = time.monotonic() + limit
                length = response.headers.get("content-length", "")
                expected = int(length) if length.isdigit() else None
                content = bytearray()
                for chunk in response.iter_bytes():
                    content += chunk
                    if len(content) > MAX_ANSWER_BYTES:
                        log.warning("server %s: an answer over %d bytes, not read", server.label, MAX_ANSWER_BYTES)
                        return response.status_code, None
                    whole = expected is not None and len(content) >= expected
                    if not whole and time.monotonic() > deadline:
                        raise E.ServerUnreachable(
                            f"server {server.label}: its answer did not arrive within {limit:g} s"
                        )
        except httpx.HTTPError as exc:
            self._unreachable(server, exc)
            raise E.ServerUnreachable(f"server {server.label}: unreachable ({exc.__class__.__name__})") from None
        try:
            return response.status_code, strict_loads(bytes(content), max_bytes=MAX_ANSWER_BYTES)
        except ValueError:
            return response.status_code, None

    def _unreachable(self, server: ServerAddr, exc: Exception) -> None:
        import httpx

        if isinstance(exc, httpx.ConnectError) and self._clients.get(server) is not None:
            client = self._clients[server]
            if client.base_url.host != server.host:  # a resolved name: resolve it again next time
                self.forget(server)

    def delete_quietly(
        self, server: ServerAddr, path: str, params: dict[str, str], timeout: float | None = None
    ) -> str:
        """DELETE that never raises; returns "" when it went through, else what went wrong."""
        try:
            self._call(server, "DELETE", path, params=params, timeout=timeout)
        except Exception as exc:  # noqa: BLE001 - a seat frees itself after its TTL
            return str(exc) or exc.__class__.__name__
        return ""

    @staticmethod
    def error(server: ServerAddr, status: int, data: Any) -> tuple[type[E.LicenseError], str, dict[str, Any]]:
        """The LicenseError class, message and extras of a server's error answer."""
        err = data.get("error") if isinstance(data, dict) else None
        if not isinstance(err, dict):
            return E.ServerUnreachable, f"server {server.label} answered HTTP {status}", {}
        message = str(err.get("message") or err.get("type") or status)
        if status == 401:
            return E.AccessDenied, f"server {server.label}: {message}", {}
        code = err.get("code")
        cls = E.BY_CODE.get(code) if isinstance(code, int) else None
        if cls is None:
            cls = E.AccessDenied if status == 403 else E.LicenseNotFound if status == 404 else E.ServerUnreachable
        extra: dict[str, Any] = {k: err[k] for k in ("seats", "in_use") if isinstance(err.get(k), int)}
        devices = err.get("devices")
        if isinstance(devices, list) and all(isinstance(d, str) for d in devices):
            extra["devices"] = [d[:200] for d in devices[:64]]
        return cls, f"server {server.label}: {message}", extra

    def close(self) -> None:
        for client in list(self._clients.values()):
            with contextlib.suppress(Exception):
                client.close()
        self._clients.clear()
