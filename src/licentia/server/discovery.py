"""UDP discovery responder: answers a runtime's broadcast with the server's HTTP port.

Request (a runtime, broadcast to the discovery port): ``{"licentia": "discover", "v": 1,
"nonce": "..."}``. Answer (unicast back to the sender): ``{"licentia": "server", "v": 1,
"nonce": <echo>, "port": <HTTP port>, "tls": bool}``; the runtime takes the host from the
answer's source address. The socket is bound with ``SO_REUSEADDR`` so that several
servers on one host all hear a broadcast; a failed bind only logs a warning.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from typing import Any, cast

log = logging.getLogger("licentia.server")

MAX_DATAGRAM = 512


class _Responder(asyncio.DatagramProtocol):
    def __init__(self, answer: dict[str, Any]):
        self.answer = answer
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)  # a datagram endpoint's transport

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if len(data) > MAX_DATAGRAM or self.transport is None:
            return
        try:
            msg = json.loads(data)
        except ValueError:
            return
        if not isinstance(msg, dict) or msg.get("licentia") != "discover" or msg.get("v") != 1:
            return
        nonce = msg.get("nonce")
        if not isinstance(nonce, str) or len(nonce) > 64:
            return
        reply = json.dumps({**self.answer, "nonce": nonce}).encode()
        try:
            self.transport.sendto(reply, addr)
        except OSError as exc:  # pragma: no cover - a vanished sender
            log.debug("discovery answer to %s failed: %s", addr, exc)


async def start(bind: str, port: int, http_port: int, tls: bool) -> asyncio.DatagramTransport | None:
    """Start answering on ``bind:port``; None (and a warning) when the port cannot be bound."""
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((bind, port))
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        log.warning(
            "discovery: cannot listen on UDP %s:%d (%s); runtimes must name this server "
            "(LICENTIA_HOST or 'licentia config server add')",
            bind,
            port,
            exc,
        )
        return None
    answer = {"licentia": "server", "v": 1, "port": http_port, "tls": tls}
    transport, _ = await loop.create_datagram_endpoint(lambda: _Responder(answer), sock=sock)
    return transport
