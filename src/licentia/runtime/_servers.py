"""Where license servers are: ``LICENTIA_HOST``, the configured list, discovery, clouds.

Search order after the local containers: the servers in ``LICENTIA_HOST``
(comma-separated ``host[:port]``, default port 22370; ``https://host:port`` for TLS, or
every server over TLS when ``LICENTIA_CA_FILE`` names the CA to trust), then the server
list of ``$LICENTIA_HOME/config.toml`` (``licentia config server add``), then, only
when switched on (``licentia config discovery on``), a UDP broadcast that servers
answer; then the vendor clouds this device is linked to (``licentia cloud login``), or
first of all, or not at all (``[network] cloud = "last" | "first" | "off"``).
No httpx here: ``configured()`` runs inside ``access()`` on every local miss.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from ..core import tomlfile

log = logging.getLogger("licentia")

DEFAULT_PORT = 22370
DISCOVERY_TIMEOUT = 0.5
#: the longest wait for discovery answers a config file may set (it runs inside access())
MAX_DISCOVERY_TIMEOUT = 60.0
_T = TypeVar("_T")


@dataclass(frozen=True)
class ServerAddr:
    host: str
    port: int = DEFAULT_PORT
    tls: bool = False
    #: a vendor's cloud (License Central) rather than a license server: the firm code whose
    #: cloud session (``licentia cloud login``) the requests carry
    cloud: int | None = None
    path: str = ""  # the URL path Central is served under ("" at the root)

    @property
    def label(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.label}{self.path}"

    @property
    def api(self) -> str:
        """The seat protocol's path prefix (docs/formats.md): a license server's, or the cloud's."""
        return f"{self.path}/api/v1/cloud" if self.cloud is not None else "/api/v1"


def cloud_target(central: str, firm_code: int) -> ServerAddr:
    """The cloud of ``firm_code`` at the Central of a device's link (``http(s)://host[:port][/path]``)."""
    from urllib.parse import urlsplit

    parts = urlsplit(central)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not a License Central address: {central!r}")
    tls = parts.scheme == "https"
    return ServerAddr(parts.hostname, parts.port or (443 if tls else 80), tls, firm_code, parts.path.rstrip("/"))


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
    #: where the clouds this device is linked to come in the search: after the license
    #: servers ("last"), before them ("first"), or not at all ("off")
    cloud: str = "last"


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
        doc = tomlfile.load(path)
    except (OSError, tomlfile.TomlRejected) as exc:
        log.warning("%s cannot be read (%s): no configured license servers", path, exc)
        return NetConfig()
    net = doc.get("network", {}) if isinstance(doc.get("network"), dict) else {}
    servers = []
    for text in net.get("servers", []) if isinstance(net.get("servers"), list) else []:
        try:
            if not isinstance(text, str):
                raise ValueError
            servers.append(parse_server(text, tls=tls))
        except ValueError:
            log.warning("%s: ignoring server address %s", path, _shown(text))
    cfg = NetConfig(
        servers=tuple(servers),
        discovery=net.get("discovery") is True,
        broadcast=_setting(path, net, "broadcast", _broadcast, "255.255.255.255"),
        discovery_port=_setting(path, net, "discovery_port", _port, DEFAULT_PORT),
        discovery_timeout=_setting(path, net, "discovery_timeout", _timeout, DISCOVERY_TIMEOUT),
        cloud=_setting(path, net, "cloud", _cloud_order, "last"),
    )
    _config_cache[str(path)] = (key, cfg)
    return cfg


def _shown(value: Any) -> str:
    text = repr(value) if isinstance(value, (str, int, float, bool)) else f"of type {type(value).__name__}"
    return text if len(text) <= 80 else text[:77] + "..."


def _setting(path: Path, net: dict[str, Any], key: str, check: Callable[[Any], _T], default: _T) -> _T:
    """``[network] key`` checked; what it cannot use is left out (logged), the default used."""
    value = net.get(key)
    if value is None:
        return default
    try:
        return check(value)
    except ValueError as exc:
        log.warning("%s: ignoring [network] %s = %s (%s): using %r", path, key, _shown(value), exc, default)
        return default


def _broadcast(value: Any) -> str:
    if not isinstance(value, str) or not value.strip() or "\0" in value:
        raise ValueError("an address such as 255.255.255.255")
    return value.strip()


def _port(value: Any) -> int:
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit() and len(value.strip()) <= 5:
        value = int(value)
    if type(value) is not int or not 0 < value < 65536:
        raise ValueError("a port from 1 to 65535")
    return value


def _timeout(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError("a number of seconds")
    if not 0 < value <= MAX_DISCOVERY_TIMEOUT:  # also NaN
        raise ValueError(f"a number of seconds above 0, at most {MAX_DISCOVERY_TIMEOUT}")
    return float(value)


CLOUD_ORDERS = ("first", "last", "off")


def _cloud_order(value: Any) -> str:
    if value not in CLOUD_ORDERS:
        raise ValueError(f"one of {', '.join(CLOUD_ORDERS)}")
    return str(value)


def cloud_linked(home: Path) -> bool:
    """Whether this device is linked to a vendor's cloud (``licentia cloud login``)."""
    folder = home / "cloud"
    return folder.is_dir() and any(folder.glob("*.json"))


def env_servers() -> list[ServerAddr]:
    return parse_servers(os.environ.get("LICENTIA_HOST", ""), tls=bool(os.environ.get("LICENTIA_CA_FILE")))


def configured(home: Path) -> bool:
    """Whether the runtime has anywhere to look on the network (no httpx import)."""
    if os.environ.get("LICENTIA_HOST", "").strip():
        return True
    cfg = read_config(home)
    return bool(cfg.servers) or cfg.discovery or (cfg.cloud != "off" and cloud_linked(home))


#: servers taken from one discovery broadcast at most (the first to answer)
MAX_DISCOVERED = 16


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
            except TimeoutError:
                break
            except OSError:
                break
            # anyone on the network may answer: only a well-formed answer counts (a port is a
            # whole number 1 ... 65535, tls a real boolean), and a bounded number of them
            try:
                msg = json.loads(data)
            except ValueError:
                continue
            if not isinstance(msg, dict) or msg.get("licentia") != "server" or msg.get("nonce") != nonce:
                continue
            answered = msg.get("port")
            if type(answered) is not int or not 0 < answered < 65536:
                continue
            srv = ServerAddr(addr[0], answered, msg.get("tls") is True or tls)
            if srv not in found:
                found.append(srv)
                if len(found) >= MAX_DISCOVERED:
                    break
    return found
