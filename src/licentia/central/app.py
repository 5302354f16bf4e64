"""The ASGI app factory: ``create_app(settings, *, clock=None)``."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from fastapi_offline import FastAPIOffline
from sqlalchemy.exc import DBAPIError

from .api import accounts, cloud_leases, cloud_pages, cloud_proxies, reporting, routes, user
from .api import errors as api_errors
from .api.lane import ProtocolLane
from .api.limits import Guard, Limits, TokenBuckets, parse_networks
from .cloud_leases import CloudLeases
from .db import current_revision, head_revision, schema_lag
from .services import Context
from .services.billing import BillingRollup
from .services.retention import RetentionService
from .settings import Settings, SettingsError
from .startup import prepare

log = logging.getLogger("licentia.central")

API_PREFIX = "/api/v1"
DOCS_ASSETS = "/docs/assets"
CLOUD_SWEEP = 30.0  # seconds between expiring silent cloud leases and forgetting stale challenges
READY_TIMEOUT = 2.0  # seconds GET /ready waits for the database before it answers 503 (within probes' timeouts)
#: GET /ready's reasons for a 503, by what went wrong (the details go to the log)
NOT_READY = {
    "unavailable": "database unavailable",
    "behind": "database schema behind this version",
    "newer": "database schema newer than this version",
}


def _default_clock() -> int:
    return int(time.time())


def request_limits(settings: Settings) -> Limits:
    """The limits every request meets before it is read (api/limits.py)."""
    try:
        proxies = parse_networks(settings.forwarded_allow_ips)
    except ValueError as exc:
        raise SettingsError(f"LICENTIA_FORWARDED_ALLOW_IPS: {exc}") from None
    return Limits(
        protocol_body=settings.max_body,
        api_body=settings.max_api_body,
        body_timeout=settings.body_timeout,
        inflight_per_address=settings.inflight_per_address,
        rejections_burst=settings.refused_burst,
        rejections_per_second=settings.refused_per_second,
        trusted_proxies=proxies,
    )


async def _every(interval: float, job: Callable[[], object], what: str) -> None:
    """``job`` every ``interval`` seconds while Central serves, in a worker thread; a failed
    run is logged and the next one comes at the next interval."""
    if interval <= 0:
        return
    while True:
        await asyncio.sleep(interval)
        try:
            await asyncio.to_thread(job)
        except Exception:
            log.exception("%s failed; the next run is in %.0f s", what, interval)


def _rollup_once(ctx: Context) -> None:
    with ctx.db.session() as session:
        BillingRollup(ctx, session).refresh()


def _cloud_usage_once(ctx: Context) -> None:
    from .services.attempts import AttemptService
    from .services.cloud_usage import CloudUsage

    with ctx.db.session() as session:
        CloudUsage(ctx, session, attempts=AttemptService(ctx, session)).copy_all()


def _purge_once(ctx: Context) -> None:
    with ctx.db.session() as session:
        RetentionService(ctx, session).purge()


def create_app(settings: Settings, *, clock: Callable[[], int] | None = None) -> FastAPI:
    """Build Central: prepares data dir, keys and schema, then wires the routes.

    ``clock`` returns Unix seconds; Central reads the time only through it.
    """
    ctx = prepare(settings, clock or _default_clock)
    # PostgreSQL: the activation protocol runs on a few dedicated threads that overlap
    # their network waits, or on the event loop with protocol_threads=0 (a database on
    # the same host). SQLite always runs it on the event loop: api.deps.call_protocol.
    seats = CloudLeases(ctx)
    threads = 0 if ctx.db.sqlite else settings.protocol_threads
    protocol = ThreadPoolExecutor(threads, thread_name_prefix="central-protocol") if threads else None

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        jobs = [
            asyncio.create_task(
                _every(settings.usage_purge_interval, functools.partial(_purge_once, ctx), "usage retention run")
            ),
            asyncio.create_task(
                _every(settings.usage_rollup_interval, functools.partial(_rollup_once, ctx), "usage billing rollup")
            ),
            asyncio.create_task(_every(CLOUD_SWEEP, seats.prune, "cloud lease sweep")),
            asyncio.create_task(
                _every(settings.cloud_usage_interval, functools.partial(_cloud_usage_once, ctx), "cloud usage copy")
            ),
        ]
        yield
        for job in jobs:
            job.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await job
        if protocol is not None:
            protocol.shutdown(wait=True)
        seats.close()
        ctx.db.dispose()

    # Swagger UI at /docs with its scripts and styles from the installed fastapi-offline
    # package, not a CDN: the documentation works on a network without Internet access
    app = FastAPIOffline(
        static_url=DOCS_ASSETS,
        title="licentia License Central",
        version="1",
        description="Firms, items, customers, tickets and the activation protocol. "
        "Vendor endpoints need 'Authorization: Bearer <API key>'.",
        docs_url="/docs",
        redoc_url=None,
        lifespan=lifespan,
        responses={"4XX": {"description": 'Refused: {"error": {"code": "...", "message": "..."}}'}},
    )
    app.state.central = ctx
    app.state.protocol_executor = protocol
    app.state.cloud_leases = seats
    limits = request_limits(settings)
    app.state.rejections = buckets = TokenBuckets(limits.rejections_burst, limits.rejections_per_second)
    # inside Guard (added last, so outermost): the protocol's POSTs, answered past FastAPI's routing
    protocol_routes = {API_PREFIX + path: route for path, route in routes.PROTOCOL.items()}
    app.add_middleware(ProtocolLane, ctx=ctx, executor=protocol, routes=protocol_routes, buckets=buckets)
    app.add_middleware(Guard, limits=limits, buckets=buckets)
    api_errors.install(app)

    for router in routes.ROUTERS:
        app.include_router(router, prefix=API_PREFIX)
    app.include_router(reporting.router, prefix=API_PREFIX)
    for router in accounts.ROUTERS:
        app.include_router(router, prefix=API_PREFIX)
    app.include_router(cloud_leases.router, prefix=API_PREFIX)
    app.include_router(cloud_proxies.router, prefix=API_PREFIX)
    app.include_router(user.router, prefix=API_PREFIX)
    app.include_router(cloud_pages.router)
    _add_probes(app, ctx)
    return app


def create_cloud_app(settings: Settings, *, clock: Callable[[], int] | None = None) -> FastAPI:
    """Only the cloud leases (``licentia cloud serve``): stateless, on Central's database, so
    that any number of such processes serve them behind a load balancer beside Central's
    own (which serves them too). Devices sign in at Central; here they only use leases."""
    ctx = prepare(settings, clock or _default_clock)
    seats = CloudLeases(ctx)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        sweep = asyncio.create_task(_every(CLOUD_SWEEP, seats.prune, "cloud lease sweep"))
        yield
        sweep.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sweep
        seats.close()
        ctx.db.dispose()

    app = FastAPI(
        title="licentia cloud leases",
        version="1",
        description="The license server protocol for devices signed in to the vendor's cloud.",
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.central = ctx
    app.state.cloud_leases = seats
    limits = request_limits(settings)
    buckets = TokenBuckets(limits.rejections_burst, limits.rejections_per_second)
    app.add_middleware(Guard, limits=limits, buckets=buckets)
    app.state.rejections = buckets
    api_errors.install(app)
    app.include_router(cloud_leases.router, prefix=API_PREFIX)
    _add_probes(app, ctx)
    return app


def _not_ready(ctx: Context) -> str | None:
    """Why this process should get no requests now, or None: a database round trip
    reads the schema's revision, which must be this version's head. The details go to
    the log; the answer says only what kind of trouble it is."""
    try:
        try:
            revision = current_revision(ctx.db.engine)
        except DBAPIError as exc:
            if not exc.connection_invalidated:
                raise
            revision = current_revision(ctx.db.engine)  # the server dropped it (a restart): a fresh connection
    except Exception as exc:  # noqa: BLE001 - whatever keeps the database from answering: not ready
        detail = exc.orig if isinstance(exc, DBAPIError) else exc
        log.warning("not ready: the database does not answer: %s", str(detail).strip().replace("\n", " "))
        return NOT_READY["unavailable"]
    lag = schema_lag(revision)
    if lag is not None:
        log.warning(
            "not ready: the database's schema is at revision %s, this version's is %s", revision, head_revision()
        )
        return NOT_READY[lag]
    return None


def _add_probes(app: FastAPI, ctx: Context) -> None:
    """``GET /health``, liveness: the process answers, whatever the database does.
    ``GET /ready``, readiness: the database answers and its schema is at this version's
    head; else 503. Probes that come while one check runs wait for that one (a database
    that hangs holds one thread, not one per probe), at most ``READY_TIMEOUT`` seconds."""
    head = head_revision()
    running: list[asyncio.Future[str | None]] = []

    @app.get("/health", tags=["health"], summary="Liveness check")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get(
        "/ready",
        tags=["health"],
        summary="Readiness check",
        response_model=dict[str, str],
        responses={
            200: {"description": f'Ready: {{"status": "ready", "revision": "{head}"}} (the schema\'s revision)'},
            503: {
                "description": 'Not ready: {"status": "not ready", "reason": "..."}, the reason one of '
                + ", ".join(f'"{r}"' for r in NOT_READY.values())
            },
        },
    )
    async def ready() -> JSONResponse | dict[str, str]:
        loop = asyncio.get_running_loop()
        check = running[0] if running and not running[0].done() and running[0].get_loop() is loop else None
        if check is None:
            check = asyncio.ensure_future(asyncio.to_thread(_not_ready, ctx))
            running[:] = [check]
        try:
            reason = await asyncio.wait_for(asyncio.shield(check), READY_TIMEOUT)
        except TimeoutError:
            log.warning("not ready: the database did not answer within %.0f s", READY_TIMEOUT)
            reason = NOT_READY["unavailable"]
        if reason is None:
            return {"status": "ready", "revision": head}
        return JSONResponse({"status": "not ready", "reason": reason}, status_code=503)
