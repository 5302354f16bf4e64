"""The license server's HTTP service: ``create_app(settings)``.

Client API (JSON, HTTP/1.1, kept-alive; docs/formats.md "License server protocol"):

    POST   /api/v1/leases                    access: a lease, the entry, sealed product keys
    POST   /api/v1/leases/{id}/renew         heartbeat
    DELETE /api/v1/leases/{id}?client=...    release
    POST   /api/v1/leases/{id}/return        give a lease's grace back (the container's receipt)
    GET    /api/v1/challenge                 a fresh nonce for a machine proof
    POST   /api/v1/borrows                   borrow a seat into the client's container
    POST   /api/v1/borrows/{id}/return       give it back (with the container's receipt)
    GET    /api/v1/licenses                  what the server serves, seats in use

With an access token set, those need ``Authorization: Bearer <token>``. Operators:
``GET /health``, ``GET /metrics``, ``GET /admin`` (page), ``GET /api/v1/admin/status``,
``DELETE /api/v1/admin/sessions/{id}``, ``POST /api/v1/admin/reload`` (admin token).

Handlers run the (short, synchronous) seat work on the event loop: one SQLite writer,
no thread hand-offs. Reload: SIGHUP, a change of the config file, or the reload endpoint.

A refusal is a ``SeatError`` from ``LicenseServer``; this module alone chooses its HTTP
status (``seats.protocol.STATUS``) and writes its body ``{"error": {"type", "message", "code"?, ...}}``.
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
from typing import Any, NamedTuple
from urllib.parse import parse_qs

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from ..core import errors as E
from ..core.encoding import JsonRejected, strict_loads
from ..seats.protocol import error_body, status_of
from . import admin as admin_page
from . import discovery
from .core import LicenseServer
from .metrics import Metrics
from .settings import Settings, load_admin_token

log = logging.getLogger("licentia.server")


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


API = "/api/v1"
MAX_BODY = 64 * 1024
PRUNE_EVERY = 3600.0
#: seconds after a start before the first sync with License Central (at most; less when the interval is shorter)
FIRST_CENTRAL_SYNC = 60.0

TOO_LARGE = 413  # a BadRequest whose body is over MAX_BODY
#: /health's words for a config file that did not load (the details: the log, licentia server status)
CONFIG_BROKEN = "the config file did not load; the previous config stays live (see the server's log)"


def _denial(error: E.SeatError) -> str | None:
    """The metrics' denial label: the LicenseError type of a refused access."""
    return error.type if isinstance(error, E.Refusal) else None


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def _json(obj: Any, status: int = 200) -> Response:
    return Response(_dumps(obj), status_code=status, media_type="application/json")


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
        except Exception:  # the commit failed: nothing was acknowledged
            log.exception("seat transaction failed")
            for _, future in todo:
                if not future.done():
                    future.set_exception(E.ServerBusy("the license server could not store this; try again"))
            return
        for future, result, error in done:
            if future.done():
                continue
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(result)


class _Lifecycle:
    """What runs beside the requests: the lease sweeper, the config watcher, SIGHUP, discovery,
    the periodic sync with License Central."""

    def __init__(self, server: LicenseServer, settings: Settings):
        self.server = server
        self.settings = settings
        self.tasks: list[asyncio.Task[None]] = []
        self.transport: asyncio.DatagramTransport | None = None

    def reload(self, reason: str) -> None:
        log.warning("reloading config (%s)", reason)
        self.server.load_config()

    async def sweeper(self) -> None:
        last_prune = 0.0
        while True:
            await asyncio.sleep(self.server.settings.sweep_interval)
            try:
                self.server.engine.sweep()
                if time.monotonic() - last_prune > PRUNE_EVERY:
                    last_prune = time.monotonic()
                    self.server.engine.prune()
            except Exception:  # keep sweeping
                log.exception("lease sweep failed")

    async def central_syncer(self, interval: float) -> None:
        """Every ``interval`` seconds (the first time after at most a minute): upload the usage
        log to License Central and sync the licenses, in a worker thread. A failure is logged
        and tried again at the next interval; it never stops the server."""
        await asyncio.sleep(min(interval, FIRST_CENTRAL_SYNC))
        while True:
            try:
                done = await asyncio.to_thread(self.server.sync_central)
                if done is not None:
                    log.info("%s %d license update(s) applied.", done.usage.summary(), done.updates)
            except Exception as exc:  # noqa: BLE001 - logged; the server serves on, the next interval tries again
                log.error("sync with License Central failed (tried again in %g s): %s", interval, exc)
            await asyncio.sleep(interval)

    async def proxy_refresher(self) -> None:
        """A proxy's refreshes (``server.proxy``): the update trigger looked at every poll
        interval, a refresh when it changed or the refresh interval passed; in a worker
        thread, never stopping the server."""
        from .core import server_runtime
        from .proxy import Refresher

        settings = self.server.settings
        data = settings.data_dir
        refresher = Refresher(data, lambda: server_runtime(data, settings.binding_key_file), self.server.clock)
        while True:
            try:
                if await asyncio.to_thread(refresher.run_once):
                    self.server.rescan()
            except Exception:
                log.exception("proxy refresh failed")
            await asyncio.sleep(refresher.poll_seconds)

    async def watcher(self) -> None:
        while True:
            await asyncio.sleep(self.server.settings.config_poll)
            try:
                if self.server.config_changed():
                    self.reload("the config file changed")
            except Exception:
                log.exception("config check failed")

    @contextlib.asynccontextmanager
    async def lifespan(self, _app: FastAPI) -> AsyncIterator[None]:
        loop = asyncio.get_running_loop()
        self.tasks = [
            asyncio.create_task(self.sweeper()),
            asyncio.create_task(self.watcher()),
            asyncio.create_task(self.proxy_refresher()),
        ]
        if self.settings.central_sync > 0:
            self.tasks.append(asyncio.create_task(self.central_syncer(self.settings.central_sync)))
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signal.SIGHUP, self.reload, "SIGHUP")
        settings = self.settings
        if settings.discovery:
            self.transport = await discovery.start(
                settings.discovery_bind, settings.discovery_port, settings.port, settings.tls
            )
        try:
            yield
        finally:
            self._stop(loop)

    def _stop(self, loop: asyncio.AbstractEventLoop) -> None:
        for task in self.tasks:
            task.cancel()
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.remove_signal_handler(signal.SIGHUP)
        if self.transport is not None:
            self.transport.close()
        self.server.close()


class _Operators:
    """The operators' endpoints (FastAPI routes): health, metrics, the admin API and page."""

    def __init__(self, server: LicenseServer, settings: Settings, admin_token: str, metrics: Metrics):
        self.server = server
        self.settings = settings
        self.admin_token = admin_token
        self.metrics = metrics
        self.sessions = admin_page.AdminSessions()

    def mount(self, app: FastAPI) -> None:
        routes: list[tuple[str, str, Callable[..., Any]]] = [
            ("GET", "/hello", self.hello),
            ("GET", "/health", self.health),
            ("GET", "/metrics", self.prometheus),
            ("GET", API + "/admin/status", self.admin_status),
            ("DELETE", API + "/admin/sessions/{lease_id}", self.admin_release),
            ("POST", API + "/admin/reload", self.admin_reload),
            ("GET", "/admin", self.admin_html),
            ("POST", "/admin/login", self.admin_login),
            ("POST", "/admin/logout", self.admin_logout),
            ("POST", "/admin/sessions/{lease_id}/release", self.admin_release_form),
        ]
        for method, path, handler in routes:
            app.add_api_route(path, handler, methods=[method])

    def admin_ok(self, request: Request) -> bool:
        """The admin token as a bearer (the API, the CLI), or a live admin page session."""
        return _same(_bearer(request), self.admin_token) or self._page_csrf(request) is not None

    def _page_csrf(self, request: Request) -> str | None:
        return self.sessions.csrf(request.cookies.get(admin_page.COOKIE))

    @staticmethod
    def _same_origin(request: Request) -> bool:
        """A browser's POST names where it comes from: it must be this server's own page."""
        own = f"{request.url.scheme}://{request.headers.get('host', '')}"
        origin = request.headers.get("origin")
        if origin is not None:
            return origin == own
        referer = request.headers.get("referer")
        return referer is not None and (referer == own or referer.startswith(own + "/"))

    async def _form(self, request: Request) -> dict[str, str]:
        form = parse_qs((await request.body())[:4096].decode(errors="replace"))
        return {k: v[0] for k, v in form.items() if v}

    async def _page_post(self, request: Request) -> Response | None:
        """None when a page form may act: a live session, its CSRF token, this server's origin."""
        csrf = self._page_csrf(request)
        form = await self._form(request)
        if csrf is None:
            return HTMLResponse(admin_page.render(None), status_code=401)
        if not self._same_origin(request) or not _same(form.get("csrf", ""), csrf):
            log.warning("admin form refused from %s: foreign origin or no CSRF token", client_address(request))
            return HTMLResponse("forbidden: the form did not come from this server's admin page", status_code=403)
        return None

    def need_admin(self, request: Request) -> Response | None:
        """None when the request may use an admin endpoint; else the refusal. A wrong bearer
        token counts against the address as a failed sign-in on the page does, and past the
        limit even the right one waits (429), so the token cannot be guessed through the API."""
        address = client_address(request)
        if self.sessions.throttled(address):
            return _json(
                {"error": {"type": "TooManyAttempts", "message": "too many failed sign-ins: wait ten minutes"}}, 429
            )
        if self.admin_ok(request):
            return None
        if _bearer(request):
            self.sessions.failed(address)
            log.warning("admin token refused from %s", address)
        return _json({"error": {"type": "Unauthorized", "message": "admin token required"}}, 401)

    async def hello(self) -> Response:
        """A hello-world endpoint on the same stack (the benchmark's yardstick)."""
        return _json({"hello": "world"})

    async def health(self) -> Response:
        """Anyone may ask: a broken config file is told, but not its path nor the error's
        words, which quote its rules (users, addresses); those are in the log and in the
        administrator's status."""
        server = self.server
        return _json(
            {
                "status": "ok",
                "config_version": server.config_version,
                "config_digest": server.config_digest,
                "config_error": None if server.config_error is None else CONFIG_BROKEN,
            }
        )

    async def prometheus(self, request: Request) -> Response:
        if self.settings.private_views:
            denied = self.need_admin(request)
            if denied:
                return denied
        return Response(self.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    async def admin_status(self, request: Request) -> Response:
        return self.need_admin(request) or _json(self.server.status())

    async def admin_release(self, lease_id: str, request: Request) -> Response:
        return self.need_admin(request) or _json({"released": self.server.admin_release(lease_id)})

    async def admin_reload(self, request: Request) -> Response:
        denied = self.need_admin(request)
        if denied:
            return denied
        server = self.server
        server.rescan()
        live = server.load_config()
        return _json({"reloaded": live, "config_version": server.config_version, "config_error": server.config_error})

    async def admin_html(self, request: Request) -> Response:
        csrf = self._page_csrf(request)
        status = self.server.status() if csrf is not None else None
        return HTMLResponse(admin_page.render(status, csrf=csrf or ""), headers={"Cache-Control": "no-store"})

    async def admin_login(self, request: Request) -> Response:
        address = client_address(request)
        if self.sessions.throttled(address):
            return HTMLResponse(
                admin_page.render(None, failed="Too many failed sign-ins: wait ten minutes."), status_code=429
            )
        if not self._same_origin(request):
            return HTMLResponse("forbidden: sign in from this server's admin page", status_code=403)
        token = (await self._form(request)).get("token", "")
        if not _same(token, self.admin_token):
            self.sessions.failed(address)
            log.warning("admin sign-in failed from %s", address)
            return HTMLResponse(admin_page.render(None, failed="That token is not right."), status_code=401)
        response = RedirectResponse("/admin", status_code=303)
        response.set_cookie(
            admin_page.COOKIE,
            self.sessions.open(),
            httponly=True,
            samesite="strict",
            path="/admin",
            secure=self.settings.tls,
            max_age=admin_page.ABSOLUTE,
        )
        return response

    async def admin_logout(self, request: Request) -> Response:
        refused = await self._page_post(request)
        if refused is not None:
            return refused
        self.sessions.close(request.cookies.get(admin_page.COOKIE))
        response = RedirectResponse("/admin", status_code=303)
        response.delete_cookie(admin_page.COOKIE, path="/admin")
        return response

    async def admin_release_form(self, lease_id: str, request: Request) -> Response:
        refused = await self._page_post(request)
        if refused is not None:
            return refused
        self.server.admin_release(lease_id)
        return RedirectResponse("/admin", status_code=303)


def create_app(settings: Settings, *, server: LicenseServer | None = None) -> ClientApi:
    server = server or LicenseServer(settings)
    admin_token, admin_source = load_admin_token(settings)
    metrics = Metrics(server)
    app = FastAPI(
        title="licentia license server",
        version="1",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        lifespan=_Lifecycle(server, settings).lifespan,
    )
    app.state.license_server = server
    app.state.admin_source = admin_source
    app.state.metrics = metrics
    operators = _Operators(server, settings, admin_token, metrics)
    operators.mount(app)
    return ClientApi(app, server, _Batcher(server), metrics, admin_token, operators.sessions)


# ---------------------------------------------------------------- the client API

_JSON_HEADERS = [(b"content-type", b"application/json")]
_UNAUTHORIZED = json.dumps(
    {
        "error": {
            "type": "Unauthorized",
            "message": "this license server needs its access token: set LICENTIA_SERVER_TOKEN",
        }
    }
).encode()


_THROTTLED = json.dumps(
    {"error": {"type": "TooManyAttempts", "message": "too many wrong tokens from this address: wait ten minutes"}}
).encode()


class _Call(NamedTuple):
    """What a client request carries besides its body."""

    ip: str
    item: str  # the lease or borrow id of the path ("" for a collection)
    query: dict[str, str]


Work = Callable[[dict[str, Any], _Call], Any]


def _token(scope: dict[str, Any]) -> str:
    for name, value in scope.get("headers") or ():
        if name == b"authorization":
            text = value.decode("latin-1")
            return text[7:].strip() if text[:7].lower() == "bearer " else ""
    return ""


async def _read_body(receive: Callable[..., Any]) -> bytes | None:
    """The request body, cut off once over MAX_BODY; None when the client went away."""
    raw = b""
    more = True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        raw += message.get("body", b"")
        more = message.get("more_body", False)
        if len(raw) > MAX_BODY:
            break
    return raw


def _parse_body(raw: bytes) -> dict[str, Any]:
    try:
        body = strict_loads(raw)  # depth, numbers, surrogates and duplicate keys as for any document
    except JsonRejected:
        raise E.BadRequest("the body is not JSON") from None
    if not isinstance(body, dict):
        raise E.BadRequest("the body is a JSON object")
    return body


def _call(scope: dict[str, Any], item: str) -> _Call:
    client = scope.get("client")
    query = scope.get("query_string") or b""
    # latin-1 decodes any bytes (a client encodes none beyond ASCII; what it sent anyway
    # matches no lease and no proof), so a query string is never a server error
    fields = {k: v[0] for k, v in parse_qs(query.decode("latin-1")).items()} if query else {}
    return _Call(client[0] if client else "", item, fields)


class ClientApi:
    """The client API as a lean ASGI layer in front of the FastAPI app (which serves the
    operators' endpoints): the hot path (access, renew, release) skips the framework's
    routing and dependency machinery. Every other path goes to FastAPI."""

    def __init__(
        self,
        app: FastAPI,
        server: LicenseServer,
        batcher: _Batcher,
        metrics: Metrics,
        admin_token: str,
        sessions: admin_page.AdminSessions,
    ):
        self.app = app
        self.state = app.state
        self.server = server
        self.batcher = batcher
        self.metrics = metrics
        self.admin_token = admin_token
        self.sessions = sessions  # the admin sign-in limit per address, shared with the operators' endpoints

    def client_ok(self, given: str) -> bool:
        token = self.server.settings.access_token
        return not token or _same(given, token) or _same(given, self.admin_token)

    async def __call__(self, scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]) -> None:
        if scope["type"] == "http":
            path: str = scope["path"]
            if path.startswith(API + "/"):
                route = self._route(scope["method"], path[len(API) + 1 :])
                if route is not None:
                    await self._handle(scope, receive, send, *route)
                    return
            elif path == "/hello-asgi":  # the raw ASGI yardstick of the benchmark
                await self._send(send, 200, b'{"hello":"world"}')
                return
        await self.app(scope, receive, send)

    # ------------------------------------------------------------ routes

    def _route(self, method: str, rest: str) -> tuple[str, Work, bool, str] | None:
        """(endpoint, handler, reads a body, the id in the path) of a client API path."""
        parts = rest.split("/")
        if parts[0] == "leases":
            if len(parts) == 1 and method == "POST":
                return "access", self.access, True, ""
            if len(parts) == 3 and parts[2] == "renew" and method == "POST":
                return "renew", self.renew, True, parts[1]
            if len(parts) == 2 and method == "DELETE":
                return "release", self.release, False, parts[1]
            if len(parts) == 3 and parts[2] == "return" and method == "POST":
                return "return", self.return_grace, True, parts[1]
        elif parts[0] == "borrows":
            if len(parts) == 1 and method == "POST":
                return "borrow", self.borrow, True, ""
            if len(parts) == 3 and parts[2] == "return" and method == "POST":
                return "return", self.give_back, True, parts[1]
        elif rest == "licenses" and method == "GET":
            return "licenses", self.licenses, False, ""
        elif rest == "challenge" and method == "GET":
            return "challenge", self.challenge, False, ""
        return None

    def challenge(self, body: dict[str, Any], call: _Call) -> dict[str, Any]:
        return self.server.challenge()

    def access(self, body: dict[str, Any], call: _Call) -> bytes:
        return self.server.access(body, call.ip)

    def renew(self, body: dict[str, Any], call: _Call) -> dict[str, Any]:
        return self.server.renew(call.item, body)

    def release(self, body: dict[str, Any], call: _Call) -> dict[str, Any]:
        q = call.query
        return self.server.release(call.item, q.get("client", ""), q.get("counter", ""), q.get("proof", ""))

    def return_grace(self, body: dict[str, Any], call: _Call) -> dict[str, Any]:
        return self.server.return_grace(call.item, body)

    def borrow(self, body: dict[str, Any], call: _Call) -> dict[str, Any]:
        return self.server.borrow(body, call.ip)

    def give_back(self, body: dict[str, Any], call: _Call) -> dict[str, Any]:
        return self.server.return_borrowed(call.item, body)

    def licenses(self, body: dict[str, Any], call: _Call) -> dict[str, Any]:
        return {
            "licenses": [
                {k: v for k, v in lic.items() if k != "ticket"}
                for lic in self.server.licenses()
                if lic["status"] != "local only"
            ]
        }

    # ------------------------------------------------------------ requests

    @staticmethod
    async def _send(send: Callable[..., Any], status: int, body: bytes) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [*_JSON_HEADERS, (b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def _refuse(
        self, send: Callable[..., Any], endpoint: str, t0: float, error: E.SeatError, status: int | None = None
    ) -> None:
        self.metrics.observe(endpoint, time.perf_counter() - t0, False, _denial(error))
        await self._send(send, status or status_of(error), _dumps(error_body(error)))

    async def _handle(
        self,
        scope: dict[str, Any],
        receive: Callable[..., Any],
        send: Callable[..., Any],
        endpoint: str,
        work: Work,
        needs_body: bool,
        item: str,
    ) -> None:
        t0 = time.perf_counter()
        given = _token(scope)
        private = endpoint == "licenses" and self.server.settings.private_views
        # a bearer that is not the access token is the admin token or a guess at it: guesses
        # count against the address as the admin sign-ins do, and past the limit even the
        # right one waits, so the answers tell no right guess from a wrong one
        suspect = bool(given) and not _same(given, self.server.settings.access_token or "")
        call = _call(scope, item)
        address = call.ip or "unknown"
        if suspect and self.sessions.throttled(address):
            self.metrics.observe(endpoint, time.perf_counter() - t0, False)
            await self._send(send, 429, _THROTTLED)
            return
        if not (self.client_ok(given) and (not private or _same(given, self.admin_token))):
            if suspect:
                self.sessions.failed(address)
            self.metrics.observe(endpoint, time.perf_counter() - t0, False)
            await self._send(send, 401, _UNAUTHORIZED)
            return
        raw = await _read_body(receive)
        if raw is None:
            return
        if len(raw) > MAX_BODY:
            await self._refuse(send, endpoint, t0, E.BadRequest("request body too large"), TOO_LARGE)
            return
        try:
            body = _parse_body(raw) if needs_body and raw else {}
            result = await self.batcher.submit(lambda: work(body, call))
        except E.SeatError as exc:
            await self._refuse(send, endpoint, t0, exc)
            return
        payload = result if isinstance(result, bytes) else _dumps(result)
        self.metrics.observe(endpoint, time.perf_counter() - t0, True)
        await self._send(send, 200, payload)
