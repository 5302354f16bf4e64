"""The protocol's short way in: a POST to one of the protocol routes goes from
``limits.Guard`` (which has read the body within its limits and named the client)
straight to its service, past FastAPI's routing, dependency solving and the
middleware inside Guard. An activation is the one request Central answers for every
machine, and that path cost about as much as its database work.

The answer is the one the route in ``routes`` gives: the service's text as
``application/json``; a service error as ``{"error": ...}`` with its status
(``errors.service_error``); anything else goes on up to the server-error handler, as
from a route. Other methods and paths go on to FastAPI.
"""

from __future__ import annotations

from collections.abc import Mapping
from concurrent.futures import Executor

from starlette.responses import Response

from ...core.errors import ServiceError
from ..services import Context
from .deps import ProtocolMethod, ServiceFactory, call_protocol
from .errors import service_error
from .limits import ASGIApp, Receive, Scope, Send, TokenBuckets


class ProtocolLane:
    """ASGI middleware, inside ``Guard``: the protocol routes' POSTs, answered here."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        ctx: Context,
        executor: Executor | None,
        routes: Mapping[str, tuple[ProtocolMethod, ServiceFactory]],
        buckets: TokenBuckets,
    ):
        self.app = app
        self.ctx = ctx
        self.executor = executor
        self.routes = dict(routes)
        self.buckets = buckets

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = self.routes.get(scope["path"]) if scope["type"] == "http" and scope["method"] == "POST" else None
        if route is None:
            await self.app(scope, receive, send)
            return
        body = await _body(receive)
        peer = scope.get("client")
        address = str(peer[0]) if peer else "unknown"
        method, service = route
        response: Response
        try:
            text = await call_protocol(self.ctx, self.executor, method, body, address, service)
        except ServiceError as exc:
            response = service_error(exc, address, self.buckets)
        else:
            response = Response(text, media_type="application/json")
        await response(scope, receive, send)


async def _body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":  # pragma: no cover - Guard hands over the whole body first
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)
