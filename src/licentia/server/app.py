"""The license server's HTTP service: ``create_app(settings)``.

Client API (JSON, HTTP/1.1, kept-alive; docs/formats.md "License server protocol"):

    POST   /api/v1/leases                    access: a lease, the entry, sealed product keys
    POST   /api/v1/leases/{id}/renew         heartbeat
    DELETE /api/v1/leases/{id}?client=...    release
    POST   /api/v1/borrows                   borrow a seat into the client's container
    POST   /api/v1/borrows/{id}/return       give it back (with the container's receipt)
    GET    /api/v1/licenses                  what the server serves, seats in use

With an access token set, those need ``Authorization: Bearer <token>``. Operators:
``GET /health``, ``GET /metrics``, ``GET /admin`` (page), ``GET /api/v1/admin/status``,
``DELETE /api/v1/admin/sessions/{id}``, ``POST /api/v1/admin/reload`` (admin token).

Handlers run the (short, synchronous) seat work on the event loop: one SQLite writer,
no thread hand-offs. Reload: SIGHUP, a change of the config file, or the reload endpoint.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import signal
import time
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import parse_qs

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from . import admin as admin_page
from . import discovery
from .core import ApiError, LicenseServer
from .metrics import Metrics
from .settings import Settings, load_admin_token

log = logging.getLogger("licentia.server")

API = "/api/v1"
MAX_BODY = 64 * 1024
PRUNE_EVERY = 3600.0


def _json(obj: Any, status: int = 200) -> Response:
    return Response(json.dumps(obj, separators=(",", ":")).encode(), status_code=status,
                    media_type="application/json")


def _error(exc: ApiError) -> Response:
    return _json(exc.body(), exc.status)


def _bearer(request: Request) -> str:
    value = request.headers.get("authorization", "")
    return value[7:].strip() if value[:7].lower() == "bearer " else ""


def _same(a: str, b: str) -> bool:
    return bool(a) and hmac.compare_digest(a.encode(), b.encode())


class _Batcher:
    """Group commit: the seat operations that arrive in one turn of the event loop run in
    one transaction (each in a savepoint of its own); their answers go out after it
    committed. Nothing is acknowledged before it is durable."""

    def __init__(self, server: LicenseServer):
        self.server = server
        self.queue: list[tuple[Callable[[], Any], asyncio.Future[Any]]] = []
        self.scheduled = False

    def submit(self, work: Callable[[], Any]) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self.queue.append((work, future))
        if not self.scheduled:
            self.scheduled = True
            loop.call_soon(self.flush)
        return future

    def flush(self) -> None:
        self.scheduled = False
        todo, self.queue = self.queue, []
        done: list[tuple[asyncio.Future[Any], Any, BaseException | None]] = []
        try:
            with self.server.engine.batch():
                for work, future in todo:
                    try:
                        done.append((future, work(), None))
                    except Exception as exc:  # noqa: BLE001 - handed to its request
                        done.append((future, None, exc))
        except Exception as exc:  # noqa: BLE001 - the commit failed: nothing was acknowledged
            log.exception("seat transaction failed")
            for _, future in todo:
                if not future.done():
                    future.set_exception(ApiError(503, "Unavailable", "the license server could not store this; "
                                                  "try again"))
            return
        for future, result, error in done:
            if future.done():
                continue
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(result)


def create_app(settings: Settings, *, server: LicenseServer | None = None) -> ClientApi:
    server = server or LicenseServer(settings)
    admin_token, admin_source = load_admin_token(settings)
    metrics = Metrics(server)
    batcher = _Batcher(server)
    state: dict[str, Any] = {"transport": None, "tasks": []}

    def admin_ok(request: Request) -> bool:
        return _same(_bearer(request), admin_token) or _same(request.cookies.get(admin_page.COOKIE, ""), admin_token)

    def reload(reason: str) -> None:
        log.warning("reloading config (%s)", reason)
        server.load_config()

    async def sweeper() -> None:
        last_prune = 0.0
        while True:
            await asyncio.sleep(server.settings.sweep_interval)
            try:
                server.engine.sweep()
                if time.monotonic() - last_prune > PRUNE_EVERY:
                    last_prune = time.monotonic()
                    server.engine.prune()
            except Exception:  # noqa: BLE001 - keep sweeping
                log.exception("lease sweep failed")

    async def watcher() -> None:
        while True:
            await asyncio.sleep(server.settings.config_poll)
            try:
                if server.config_changed():
                    reload("the config file changed")
            except Exception:  # noqa: BLE001
                log.exception("config check failed")

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        loop = asyncio.get_running_loop()
        state["tasks"] = [asyncio.create_task(sweeper()), asyncio.create_task(watcher())]
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signal.SIGHUP, reload, "SIGHUP")
        if settings.discovery:
            state["transport"] = await discovery.start(settings.discovery_bind, settings.discovery_port,
                                                       settings.port, settings.tls)
        try:
            yield
        finally:
            for task in state["tasks"]:
                task.cancel()
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.remove_signal_handler(signal.SIGHUP)
            if state["transport"] is not None:
                state["transport"].close()
            server.close()

    app = FastAPI(title="licentia license server", version="1", docs_url=None, redoc_url=None, openapi_url=None,
                  lifespan=lifespan)
    app.state.license_server = server
    app.state.admin_source = admin_source
    app.state.metrics = metrics

    @app.get("/hello")
    async def hello() -> Response:
        """A hello-world endpoint on the same stack (the benchmark's yardstick)."""
        return _json({"hello": "world"})

    # ------------------------------------------------------------ operators

    @app.get("/health")
    async def health() -> Response:
        return _json({
            "status": "ok",
            "config_version": server.config_version,
            "config_digest": server.config_digest,
            "config_error": server.config_error,
        })

    @app.get("/metrics")
    async def prometheus() -> Response:
        return Response(metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    def need_admin(request: Request) -> Response | None:
        if admin_ok(request):
            return None
        return _json({"error": {"type": "Unauthorized", "message": "admin token required"}}, 401)

    @app.get(API + "/admin/status")
    async def admin_status(request: Request) -> Response:
        return need_admin(request) or _json(server.status())

    @app.delete(API + "/admin/sessions/{lease_id}")
    async def admin_release(lease_id: str, request: Request) -> Response:
        return need_admin(request) or _json({"released": server.admin_release(lease_id)})

    @app.post(API + "/admin/reload")
    async def admin_reload(request: Request) -> Response:
        denied = need_admin(request)
        if denied:
            return denied
        server.rescan()
        live = server.load_config()
        return _json({"reloaded": live, "config_version": server.config_version, "config_error": server.config_error})

    @app.get("/admin")
    async def admin_html(request: Request) -> Response:
        if not admin_ok(request):
            return HTMLResponse(admin_page.render(None), headers={"Cache-Control": "no-store"})
        return HTMLResponse(admin_page.render(server.status()), headers={"Cache-Control": "no-store"})

    @app.post("/admin/login")
    async def admin_login(request: Request) -> Response:
        form = parse_qs((await request.body())[:4096].decode(errors="replace"))
        token = (form.get("token") or [""])[0]
        if not _same(token, admin_token):
            return HTMLResponse(admin_page.render(None, failed=True), status_code=401)
        response = RedirectResponse("/admin", status_code=303)
        response.set_cookie(admin_page.COOKIE, token, httponly=True, samesite="strict", path="/admin",
                            secure=settings.tls)
        return response

    @app.post("/admin/logout")
    async def admin_logout() -> Response:
        response = RedirectResponse("/admin", status_code=303)
        response.delete_cookie(admin_page.COOKIE, path="/admin")
        return response

    @app.post("/admin/sessions/{lease_id}/release")
    async def admin_release_form(lease_id: str, request: Request) -> Response:
        if not admin_ok(request):
            return HTMLResponse(admin_page.render(None), status_code=401)
        server.admin_release(lease_id)
        return RedirectResponse("/admin", status_code=303)

    return ClientApi(app, server, batcher, metrics, client_ok_raw=lambda token: _client_token_ok(server, token,
                                                                                                 admin_token))


def _client_token_ok(server: LicenseServer, given: str, admin_token: str) -> bool:
    token = server.settings.access_token
    return not token or _same(given, token) or _same(given, admin_token)


_JSON_HEADERS = [(b"content-type", b"application/json")]
_UNAUTHORIZED = {"error": {"type": "Unauthorized",
                           "message": "this license server needs its access token: set LICENTIA_SERVER_TOKEN"}}


class ClientApi:
    """The client API as a lean ASGI layer in front of the FastAPI app (which serves the
    operators' endpoints): the hot path (access, renew, release) skips the framework's
    routing and dependency machinery. Every other path goes to FastAPI."""

    def __init__(self, app: FastAPI, server: LicenseServer, batcher: _Batcher, metrics: Metrics,
                 client_ok_raw: Callable[[str], bool]):
        self.app = app
        self.state = app.state
        self.server = server
        self.batcher = batcher
        self.metrics = metrics
        self.client_ok = client_ok_raw

    async def __call__(self, scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]) -> None:
        if scope["type"] == "http":
            path: str = scope["path"]
            if path.startswith(API + "/"):
                route = self._route(scope["method"], path[len(API) + 1:])
                if route is not None:
                    await self._handle(scope, receive, send, *route)
                    return
            elif path == "/hello-asgi":  # the raw ASGI yardstick of the benchmark
                await self._send(send, 200, b'{"hello":"world"}')
                return
        await self.app(scope, receive, send)

    def _route(self, method: str, rest: str) -> tuple[str, Callable[[dict[str, Any], dict[str, Any]], Any], bool] | None:
        server = self.server
        parts = rest.split("/")
        if parts[0] == "leases":
            if len(parts) == 1 and method == "POST":
                return "access", lambda b, ctx: server.access(b, ctx["ip"]), True
            if len(parts) == 3 and parts[2] == "renew" and method == "POST":
                lease_id = parts[1]
                return "renew", lambda b, ctx: server.renew(lease_id, b), True
            if len(parts) == 2 and method == "DELETE":
                lease_id = parts[1]
                return "release", lambda b, ctx: server.release(lease_id, ctx["query"].get("client", "")), False
        elif parts[0] == "borrows":
            if len(parts) == 1 and method == "POST":
                return "borrow", lambda b, ctx: server.borrow(b, ctx["ip"]), True
            if len(parts) == 3 and parts[2] == "return" and method == "POST":
                borrow_id = parts[1]
                return "return", lambda b, ctx: server.return_borrowed(borrow_id, b), True
        elif rest == "licenses" and method == "GET":
            return "licenses", lambda b, ctx: {"licenses": [
                {k: v for k, v in lic.items() if k != "ticket"} for lic in server.licenses()
                if lic["status"] != "local only"]}, False
        return None

    @staticmethod
    async def _send(send: Callable[..., Any], status: int, body: bytes) -> None:
        await send({"type": "http.response.start", "status": status,
                    "headers": [*_JSON_HEADERS, (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    async def _handle(self, scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any],
                      endpoint: str, work: Callable[[dict[str, Any], dict[str, Any]], Any], needs_body: bool) -> None:
        t0 = time.perf_counter()
        token = ""
        for name, value in scope.get("headers") or ():
            if name == b"authorization":
                text = value.decode("latin-1")
                token = text[7:].strip() if text[:7].lower() == "bearer " else ""
                break
        if not self.client_ok(token):
            self.metrics.observe(endpoint, time.perf_counter() - t0, False)
            await self._send(send, 401, json.dumps(_UNAUTHORIZED).encode())
            return
        raw = b""
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            raw += message.get("body", b"")
            more = message.get("more_body", False)
            if len(raw) > MAX_BODY:
                break
        try:
            if len(raw) > MAX_BODY:
                raise ApiError(413, "BadRequest", "request body too large")
            body: dict[str, Any] = {}
            if needs_body and raw:
                try:
                    body = json.loads(raw)
                except ValueError:
                    raise ApiError.bad("the body is not JSON") from None
                if not isinstance(body, dict):
                    raise ApiError.bad("the body is a JSON object")
            client = scope.get("client")
            query = scope.get("query_string") or b""
            ctx = {"ip": client[0] if client else "",
                   "query": {k: v[0] for k, v in parse_qs(query.decode()).items()} if query else {}}
            result = await self.batcher.submit(lambda: work(body, ctx))
        except ApiError as exc:
            self.metrics.observe(endpoint, time.perf_counter() - t0, False, exc.type if exc.code is not None else None)
            await self._send(send, exc.status, json.dumps(exc.body(), separators=(",", ":")).encode())
            return
        payload = result if isinstance(result, bytes) else json.dumps(result, separators=(",", ":")).encode()
        self.metrics.observe(endpoint, time.perf_counter() - t0, True)
        await self._send(send, 200, payload)
