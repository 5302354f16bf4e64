"""Dependency wiring, in one place: the context, one Session per request, the caller."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from ..services import (
    ActivationService,
    ApiKeyService,
    AuditService,
    AuthService,
    CatalogService,
    ContainerService,
    Context,
    FirmService,
    TicketService,
)
from ..services import Actor

_bearer = HTTPBearer(auto_error=False, description="An API key: the admin key or a vendor key.")


# The cheap dependencies are ``async``: FastAPI then runs them on the event loop
# instead of hopping to the thread pool for each (they do no I/O; a Session
# connects only when a service first uses it, in the thread pool).


async def context(request: Request) -> Context:
    return request.app.state.central  # type: ignore[no-any-return]


async def session(ctx: Annotated[Context, Depends(context)]) -> AsyncIterator[Session]:
    s = ctx.db.session()
    try:
        yield s
    finally:
        if s.in_transaction():  # pragma: no cover - services always end their transactions
            s.rollback()
        s.close()


async def run_protocol(request: Request, method: str, *args: Any) -> str:
    """Run one ActivationService method with its own Session.

    The protocol routes skip FastAPI's dependency solving (it costs as much as a
    database statement) and build their service here. SQLite: the call runs right
    on the event loop. Its writes are serialized anyway and take about a
    millisecond; handing them to a thread costs more than that, because every
    short C call there (signature, statement, commit) releases the interpreter
    lock and then waits for the busy event loop to give it back. (Run one worker
    per SQLite database.) PostgreSQL: the app's protocol threads, which overlap
    their waits on the network.
    """
    ctx: Context = request.app.state.central

    def call() -> str:
        with ctx.db.session() as s:
            return getattr(ActivationService(ctx, s), method)(*args)  # type: ignore[no-any-return]

    executor = request.app.state.protocol_executor
    if executor is None:  # SQLite, or PostgreSQL with protocol_threads=0
        return call()
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(executor, call)


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def actor(
    ctx: Annotated[Context, Depends(context)],
    db: Annotated[Session, Depends(session)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Actor:
    header = f"Bearer {credentials.credentials}" if credentials else None
    return AuthService(ctx, db).authenticate(header)


def _factory(cls):  # type: ignore[no-untyped-def]
    async def make(ctx: Annotated[Context, Depends(context)], db: Annotated[Session, Depends(session)]):  # type: ignore[no-untyped-def]
        return cls(ctx, db)

    make.__name__ = f"get_{cls.__name__}"
    return make


CallerDep = Annotated[Actor, Depends(actor)]
FirmsDep = Annotated[FirmService, Depends(_factory(FirmService))]
ApiKeysDep = Annotated[ApiKeyService, Depends(_factory(ApiKeyService))]
CatalogDep = Annotated[CatalogService, Depends(_factory(CatalogService))]
TicketsDep = Annotated[TicketService, Depends(_factory(TicketService))]
ActivationDep = Annotated[ActivationService, Depends(_factory(ActivationService))]
ContainersDep = Annotated[ContainerService, Depends(_factory(ContainerService))]
AuditDep = Annotated[AuditService, Depends(_factory(AuditService))]
