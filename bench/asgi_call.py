"""One HTTP request handed straight to an ASGI app in this process, no server and no
socket: what the benchmarks use to measure an app's own work without HTTP."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


async def asgi_call(
    app: Callable[..., Any], method: str, path: str, *, query: bytes = b"", body: bytes = b""
) -> tuple[int, bytes]:
    """(status, body) of one request to ``app``, as from a client on 127.0.0.1."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query,
        "root_path": "",
        "headers": [(b"host", b"127.0.0.1"), (b"content-type", b"application/json")],
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 8000),
        "state": {},
    }
    messages = [{"type": "http.request", "body": body, "more_body": False}]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return messages.pop() if messages else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return int(sent[0]["status"]), b"".join(bytes(m.get("body", b"")) for m in sent[1:])
