"""Dependency wiring, in one place: the context, one Session per request, the caller,
and every service built with the services it uses."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Executor
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from ..services import (
    AccountService,
    ActivationService,
    Actor,
    ApiKeyService,
    AttemptService,
    AuditService,
    AuthService,
    CatalogService,
    CloudService,
    ContainerService,
    Context,
    FirmService,
    MeteringService,
    Person,
    ProxyService,
    SignInService,
    TicketService,
    UsageService,
)

_bearer = HTTPBearer(auto_error=False, description="An API key: the admin key or a vendor key.")

#: An ActivationService method the protocol routes call: (service, body, client address) -> answer.
ProtocolMethod = Callable[[ActivationService, bytes, str], str]
#: What builds the service a protocol method runs on, with its collaborators.
ServiceFactory = Callable[[Context, Session], ActivationService]

# ---------------------------------------------------------------- services and their collaborators


def activation_service(ctx: Context, db: Session) -> ActivationService:
    return ActivationService(ctx, db, attempts=AttemptService(ctx, db))


def metering_service(ctx: Context, db: Session) -> MeteringService:
    return MeteringService(ctx, db, attempts=AttemptService(ctx, db))


def usage_service(ctx: Context, db: Session) -> UsageService:
    return UsageService(ctx, db, attempts=AttemptService(ctx, db))


def signin_service(ctx: Context, db: Session) -> SignInService:
    return SignInService(ctx, db, attempts=AttemptService(ctx, db), accounts=AccountService(ctx, db))


def ticket_service(ctx: Context, db: Session) -> TicketService:
    return TicketService(ctx, db, catalog=CatalogService(ctx, db), attempts=AttemptService(ctx, db))


# ---------------------------------------------------------------- the protocol routes


async def call_protocol(
    ctx: Context,
    executor: Executor | None,
    method: ProtocolMethod,
    body: bytes,
    address: str,
    service: ServiceFactory = activation_service,
) -> str:
    """Run one ActivationService method with its own Session (for the attempt counts).

    The protocol skips FastAPI's dependency solving (``api.lane`` and the routes
    build their service here). SQLite: the call runs right on the event loop. Its
    writes are serialized anyway and take about a millisecond; handing them to a
    thread costs more than that, because every short C call there (signature,
    statement, commit) releases the interpreter lock and then waits for the busy
    event loop to give it back. (Run one worker per SQLite database.) PostgreSQL:
    the app's protocol threads, which overlap their waits on the network.
    """

    def call() -> str:
        with ctx.db.session() as s:
            return method(service(ctx, s), body, address)

    if executor is None:  # SQLite, or PostgreSQL with protocol_threads=0
        return call()
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(executor, call)


async def run_protocol(request: Request, method: ProtocolMethod, service: ServiceFactory, body: bytes) -> str:
    """``call_protocol`` for a route's request."""
    app = request.app
    return await call_protocol(
        app.state.central, app.state.protocol_executor, method, body, client_address(request), service
    )


def bearer_token(request: Request) -> str | None:
    """The token of an ``Authorization: Bearer ...`` header (None without one)."""
    value = request.headers.get("authorization", "")
    return value[7:].strip() if value[:7].lower() == "bearer " else None


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


# ---------------------------------------------------------------- FastAPI dependencies
# The cheap dependencies are ``async``: FastAPI then runs them on the event loop
# instead of hopping to the thread pool for each (they do no I/O; a Session
# connects only when a service first uses it, in the thread pool).


async def context(request: Request) -> Context:
    central: Context = request.app.state.central
    return central


ContextDep = Annotated[Context, Depends(context)]


async def session(ctx: ContextDep) -> AsyncIterator[Session]:
    s = ctx.db.session()
    try:
        yield s
    finally:
        if s.in_transaction():  # pragma: no cover - services always end their transactions
            s.rollback()
        s.close()


SessionDep = Annotated[Session, Depends(session)]


def actor(
    ctx: ContextDep,
    db: SessionDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Actor:
    header = f"Bearer {credentials.credentials}" if credentials else None
    return AuthService(ctx, db).authenticate(header)


_session_bearer = HTTPBearer(
    auto_error=False, scheme_name="session", description="A signed-in device's session ('licentia cloud login')."
)


def person(
    ctx: ContextDep,
    db: SessionDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_session_bearer)],
) -> Person:
    """The signed-in person of a device session (``Authorization: Bearer lcs_...``)."""
    return signin_service(ctx, db).authenticate(credentials.credentials if credentials else None, "device")


async def get_accounts(ctx: ContextDep, db: SessionDep) -> AccountService:
    return AccountService(ctx, db)


async def get_signin(ctx: ContextDep, db: SessionDep) -> SignInService:
    return signin_service(ctx, db)


async def get_cloud(ctx: ContextDep, db: SessionDep) -> CloudService:
    return CloudService(ctx, db, accounts=AccountService(ctx, db))


async def get_proxies(ctx: ContextDep, db: SessionDep) -> ProxyService:
    accounts = AccountService(ctx, db)
    attempts = AttemptService(ctx, db)
    activation = ActivationService(ctx, db, attempts=attempts)
    return ProxyService(ctx, db, accounts=accounts, activation=activation, attempts=attempts)


async def get_firms(ctx: ContextDep, db: SessionDep) -> FirmService:
    return FirmService(ctx, db)


async def get_api_keys(ctx: ContextDep, db: SessionDep) -> ApiKeyService:
    return ApiKeyService(ctx, db)


async def get_catalog(ctx: ContextDep, db: SessionDep) -> CatalogService:
    return CatalogService(ctx, db)


async def get_tickets(ctx: ContextDep, db: SessionDep) -> TicketService:
    return ticket_service(ctx, db)


async def get_containers(ctx: ContextDep, db: SessionDep) -> ContainerService:
    return ContainerService(ctx, db)


async def get_audit(ctx: ContextDep, db: SessionDep) -> AuditService:
    return AuditService(ctx, db)


CallerDep = Annotated[Actor, Depends(actor)]
FirmsDep = Annotated[FirmService, Depends(get_firms)]
ApiKeysDep = Annotated[ApiKeyService, Depends(get_api_keys)]
CatalogDep = Annotated[CatalogService, Depends(get_catalog)]
TicketsDep = Annotated[TicketService, Depends(get_tickets)]
ContainersDep = Annotated[ContainerService, Depends(get_containers)]
AuditDep = Annotated[AuditService, Depends(get_audit)]
PersonDep = Annotated[Person, Depends(person)]
AccountsDep = Annotated[AccountService, Depends(get_accounts)]
SignInDep = Annotated[SignInService, Depends(get_signin)]
CloudDep = Annotated[CloudService, Depends(get_cloud)]
ProxiesDep = Annotated[ProxyService, Depends(get_proxies)]
