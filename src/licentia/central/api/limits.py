"""What Central does with a request before any of it is read.

``Guard`` is the outermost layer of Central's own middleware:

- **the client address**: the peer's, or, when the peer is one of the trusted proxies
  (``LICENTIA_FORWARDED_ALLOW_IPS``), the right-most address of ``X-Forwarded-For`` that
  is not a trusted proxy; everything below (attempt counting, the audit log) sees it;
- **a token bucket per client address** for requests refused before they are read: each
  refusal takes a token; an address with none left gets 429 at once, whatever it sends,
  until the bucket refills. In process memory only: junk never costs a database write;
- **a cap on requests in flight per client address** (a trusted proxy's own requests,
  without ``X-Forwarded-For``, are exempt);
- **body limits that hold while the body streams in**: a declared ``Content-Length``
  over the route's limit is refused before a byte is read (413, the limit named); a body
  that grows past it, arrives slower than the minimum rate, or stalls is cut off (413 or
  408), so a slow or huge upload cannot pin the server;
- **JSON licentia accepts** (``encoding.strict_loads``) for the vendor API's bodies: the
  protocol routes parse their signed documents with the same rules themselves.

Every refusal is one log line (no traceback) and a ``{"error": {"code", "message"}}`` body.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

from ...core.encoding import JsonRejected, strict_loads

log = logging.getLogger("licentia.central")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: the activation protocol's routes: small signed documents, parsed by their services
PROTOCOL_PATHS = frozenset(
    f"/api/v1/{name}" for name in ("activations", "sync", "reports", "consumptions", "deactivations", "usage-uploads")
)
#: the protocol routes with a larger body: a license server's usage upload (a chunk of up
#: to anchoring.MAX_EVENT_BYTES of event text, escaped in the signed envelope)
UPLOAD_PATHS = frozenset({"/api/v1/usage-uploads"})
_WITH_BODY = frozenset({"POST", "PUT", "PATCH"})
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(text: str) -> tuple[Network, ...]:
    """``"10.0.0.1, 192.168.0.0/24"`` -> networks; ValueError names a bad entry."""
    out = []
    for part in text.split(","):
        part = part.strip()
        if part:
            try:
                out.append(ipaddress.ip_network(part, strict=False))
            except ValueError:
                raise ValueError(f"{part!r} is not an IP address or network") from None
    return tuple(out)


@dataclass(frozen=True)
class Limits:
    protocol_body: int = 256 * 1024  # bytes: a signed request, receipt or report
    upload_body: int = 1024 * 1024  # bytes: a usage upload
    api_body: int = 1024 * 1024  # bytes: the vendor API's JSON bodies
    body_timeout: float = 10.0  # seconds a body may take, plus one for every min_rate bytes
    min_rate: int = 1024  # bytes per second
    inflight_per_address: int = 128
    rejections_burst: int = 60  # requests refused before reading an address may have at once
    rejections_per_second: float = 1.0  # how fast that allowance comes back
    trusted_proxies: tuple[Network, ...] = ()

    def body_limit(self, path: str) -> int:
        if path in UPLOAD_PATHS:
            return max(self.upload_body, self.protocol_body)
        return self.protocol_body if path in PROTOCOL_PATHS else self.api_body


class TokenBuckets:
    """A token bucket per client address, in process memory (bounded)."""

    MAX_ADDRESSES = 65536

    def __init__(self, size: int, per_second: float, clock: Callable[[], float] = time.monotonic):
        self.size = float(size)
        self.per_second = per_second
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # address -> (tokens, when)

    def _tokens(self, address: str, now: float) -> float:
        tokens, when = self._buckets.get(address, (self.size, now))
        return min(self.size, tokens + (now - when) * self.per_second)

    def allowed(self, address: str) -> bool:
        return address not in self._buckets or self._tokens(address, self.clock()) >= 1.0

    def take(self, address: str) -> None:
        now = self.clock()
        tokens = self._tokens(address, now) - 1.0
        if len(self._buckets) >= self.MAX_ADDRESSES and address not in self._buckets:
            self._forget_full(now)
        self._buckets[address] = (max(0.0, tokens), now)

    def _forget_full(self, now: float) -> None:
        full = [a for a in self._buckets if self._tokens(a, now) >= self.size]
        for a in full:
            del self._buckets[a]
        if len(self._buckets) >= self.MAX_ADDRESSES:  # all of them busy: drop the oldest half
            for a in sorted(self._buckets, key=lambda x: self._buckets[x][1])[: self.MAX_ADDRESSES // 2]:
                del self._buckets[a]


class _Refused(Exception):
    def __init__(self, status: int, code: str, message: str, why: str = ""):
        self.status, self.code, self.message, self.why = status, code, message, why or message


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers") or ():
        if key == name:
            return str(value.decode("latin-1"))
    return None


def _in(address: str, networks: tuple[Network, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in networks)


#: the reporting routes answer every refusal in the reporting API's shape as well
#: (``errorCode`` and ``message`` beside the ``error`` object; docs/usage.md)
REPORTING_PREFIX = "/api/v1/reporting/"
#: errorCode of each refusal status on the reporting routes (0 is success)
REPORTING_CODES = {
    400: 1,  # the request is not one Central can answer (a filter value, a time, a cursor, ...)
    408: 1,  # the body came too slowly
    413: 1,  # the body is over the limit
    422: 1,  # the body does not match the request's schema (an unknown key, a wrong type)
    401: 2,  # no API key, or one Central does not know
    403: 3,  # the key may not see that firm
    404: 4,  # a filter names a customer, item, ticket or firm the key does not have
    429: 6,  # too many requests or refusals from this address
    503: 6,  # Central is busy: try again
}
REPORTING_INTERNAL = 9


def error_body(path: str, status: int, code: str, message: str, number: int | None = None) -> dict[str, Any]:
    """Central's error answer: ``{"error": {"code", "message"}}``; on the reporting routes
    with the reporting API's ``errorCode`` (``number``, else the status's) and ``message``."""
    error = {"code": code, "message": message}
    if not path.startswith(REPORTING_PREFIX):
        return {"error": error}
    if number is None:
        number = REPORTING_CODES.get(status, REPORTING_INTERNAL)
    return {"errorCode": number, "message": message, "error": error}


async def _reply(send: Send, path: str, status: int, code: str, message: str) -> None:
    body = json.dumps(error_body(path, status, code, message)).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class Guard:
    """The ASGI layer described in the module docstring."""

    def __init__(self, app: ASGIApp, *, limits: Limits, buckets: TokenBuckets):
        self.app = app
        self.limits = limits
        self.buckets = buckets
        self.inflight: dict[str, int] = {}
        self._blocked: dict[str, tuple[float, int]] = {}  # address -> (last logged, refused since)

    def client(self, scope: Scope) -> tuple[str, bool]:
        """(the client's address, whether it is a trusted proxy's own request)."""
        peer = scope.get("client")
        address = str(peer[0]) if peer else "unknown"
        proxies = self.limits.trusted_proxies
        if not proxies or not _in(address, proxies):
            return address, False
        forwarded = _header(scope, b"x-forwarded-for")
        if not forwarded:
            return address, True
        for hop in reversed([h.strip() for h in forwarded.split(",")]):
            try:
                ipaddress.ip_address(hop)
            except ValueError:
                return address, False  # a malformed chain: the proxy's address answers for it
            if not _in(hop, proxies):
                return hop, False
        return address, True

    def refuse(self, address: str, scope: Scope, refused: _Refused) -> None:
        """Count a refusal against the address (its bucket) and log it in one line."""
        self.buckets.take(address)
        log.warning("refused %s %s from %s: %s", scope.get("method"), scope.get("path"), address, refused.why)

    def _log_blocked(self, address: str) -> None:
        """An address with no refusals left: one log line a minute, with how many it sent."""
        now = time.monotonic()
        logged, count = self._blocked.get(address, (0.0, 0))
        if now - logged < 60:
            self._blocked[address] = (logged, count + 1)
            return
        log.warning(
            "refused every request from %s for a while: too many refused requests (%d more since the last line)",
            address,
            count,
        )
        if len(self._blocked) > 4096:
            self._blocked.clear()
        self._blocked[address] = (now, 0)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        address, proxy = self.client(scope)
        peer = scope.get("client")
        if peer is None or address != peer[0]:
            scope = {**scope, "client": (address, 0)}
        path = str(scope.get("path", ""))
        if not self.buckets.allowed(address):
            self._log_blocked(address)
            message = "Too many refused requests from this address: wait a minute."
            await _reply(send, path, 429, "too_many_requests", message)
            return
        if not proxy and self.inflight.get(address, 0) >= self.limits.inflight_per_address:
            refused = _Refused(429, "too_many_requests", "Too many requests in flight from this address.")
            self.refuse(address, scope, refused)
            await _reply(send, path, refused.status, refused.code, refused.message)
            return
        self.inflight[address] = self.inflight.get(address, 0) + 1
        try:
            try:
                body = await self._body(scope, receive)
            except _Refused as refused:
                self.refuse(address, scope, refused)
                await _reply(send, path, refused.status, refused.code, refused.message)
                return
            await self.app(scope, _replay(body, receive), send)
        finally:
            left = self.inflight[address] - 1
            if left:
                self.inflight[address] = left
            else:
                del self.inflight[address]

    async def _body(self, scope: Scope, receive: Receive) -> bytes:
        """The whole body, read within the limits; the vendor API's JSON checked."""
        path = scope.get("path", "")
        limit = self.limits.body_limit(path)
        declared = _header(scope, b"content-length")
        if declared is not None:
            if not (declared.isascii() and declared.isdigit()) or len(declared) > 18:
                raise _Refused(400, "bad_request", "The Content-Length header is not a number.")
            if int(declared) > limit:
                raise _Refused(
                    413,
                    "too_large",
                    f"The body is over this endpoint's limit of {limit} bytes.",
                    f"declared {declared} bytes, limit {limit}",
                )
        chunks: list[bytes] = []
        size = 0
        start = time.monotonic()
        more = True
        while more:
            allowed = start + self.limits.body_timeout + size / self.limits.min_rate - time.monotonic()
            try:
                async with asyncio.timeout(max(0.0, allowed)):  # a timer, not a task per message
                    message = await receive()
            except TimeoutError:
                raise _Refused(
                    408,
                    "body_timeout",
                    "The body arrived too slowly.",
                    f"{size} bytes in {time.monotonic() - start:.1f} s",
                ) from None
            if message["type"] == "http.disconnect":
                raise _Refused(400, "bad_request", "The client went away.", "disconnected mid-body")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise _Refused(
                    413, "too_large", f"The body is over this endpoint's limit of {limit} bytes.", f"over {limit} bytes"
                )
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        if body and scope.get("method") in _WITH_BODY and path.startswith("/api/") and path not in PROTOCOL_PATHS:
            try:
                strict_loads(body)
            except JsonRejected as exc:
                raise _Refused(
                    400, "malformed_input", "The request body is not JSON Central accepts.", str(exc)
                ) from None
        return body


def _replay(body: bytes, receive: Receive) -> Receive:
    """A receive that hands the app the body already read, then the client's own events."""
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed
