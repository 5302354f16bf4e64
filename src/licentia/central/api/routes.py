"""The REST API under /api/v1. Routes parse, call one service method, and answer."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import PlainTextResponse

from ..services import ActivationService, MeteringService, UsageService, normalize
from ..services.catalog import MAX_OFFSET, MAX_PAGE, PAGE_SIZE
from . import schemas
from .deps import (
    ApiKeysDep,
    AuditDep,
    CallerDep,
    CatalogDep,
    ContainersDep,
    FirmsDep,
    ProtocolMethod,
    ServiceFactory,
    TicketsDep,
    activation_service,
    client_address,
    metering_service,
    run_protocol,
    usage_service,
)

FirmQuery = Query(default=None, description="admin key only: the firm")
LimitQuery = Query(default=PAGE_SIZE, ge=1, le=MAX_PAGE, description=f"rows in the page (at most {MAX_PAGE})")
OffsetQuery = Query(default=0, ge=0, le=MAX_OFFSET, description="rows to skip: the rows of the pages before")


async def _ticket_path(ticket: str) -> str:
    """The canonical ticket id: a typo is answered (400) before the API key or any
    database lookup, because this dependency is declared first."""
    return normalize(ticket)


TicketPath = Annotated[str, Depends(_ticket_path)]

# ---------------------------------------------------------------- firms and keys

firms = APIRouter(tags=["firms"])


@firms.post("/firms", status_code=201, summary="Create a firm with its first signing key (admin)")
def create_firm(body: schemas.FirmCreate, caller: CallerDep, svc: FirmsDep) -> dict[str, Any]:
    return svc.create(caller, code=body.code, name=body.name)


@firms.get("/firms/{code}", summary="A firm and its keys (admin, or the firm's vendor)")
def get_firm(code: int, caller: CallerDep, svc: FirmsDep) -> dict[str, Any]:
    return svc.get(caller, code)


@firms.patch("/firms/{code}", summary="Change a firm's settings: its usage retention (admin, or the firm's vendor)")
def update_firm(code: int, body: schemas.FirmUpdate, caller: CallerDep, svc: FirmsDep) -> dict[str, Any]:
    return svc.update(caller, code, usage_retention_days=body.usage_retention_days)


@firms.get(
    "/firms/{code}/public-key",
    summary="The firm's public keys, for pinning (no API key)",
    responses={200: {"content": {"application/json": {}, "application/x-pem-file": {}}}},
)
def public_key(code: int, svc: FirmsDep, format: Literal["json", "pem"] = "json") -> Any:  # noqa: A002 - the query parameter's name
    if format == "pem":
        return PlainTextResponse(svc.public_pem(code), media_type="application/x-pem-file")
    return svc.public_keys(code)


@firms.get(
    "/firms/{code}/products/{product}/keys/{version}",
    summary="The product key of a product and key version, as a firm-signed key file (vendor; audited)",
)
def product_key(code: int, product: int, version: int, caller: CallerDep, svc: FirmsDep) -> dict[str, Any]:
    return svc.product_key(caller, code, product, version)


@firms.post(
    "/firms/{code}/keys/rotate",
    summary="Activate the staged signing key (or a new one), endorsed by the old one; stage=true publishes the "
    "next key without signing with it",
)
def rotate_key(
    code: int,
    caller: CallerDep,
    svc: FirmsDep,
    stage: bool = Query(
        default=False,
        description="publish the next key, endorsed by the active key, without signing with it yet; "
        "when a staged key exists, it is returned unchanged",
    ),
) -> dict[str, Any]:
    return svc.rotate(caller, code, stage=stage)


@firms.post("/firms/{code}/keys/{kid}/retire", summary="Stop publishing an inactive key (an older or a staged one)")
def retire_key(code: int, kid: str, caller: CallerDep, svc: FirmsDep) -> dict[str, Any]:
    return svc.retire(caller, code, kid)


# ---------------------------------------------------------------- API keys and audit

admin = APIRouter(tags=["admin"])


@admin.post("/apikeys", status_code=201, summary="Create an API key; the key is shown only here (admin)")
def create_api_key(body: schemas.ApiKeyCreate, caller: CallerDep, svc: ApiKeysDep) -> dict[str, Any]:
    return svc.create(caller, firm_code=body.firm_code, role=body.role, label=body.label)


@admin.post("/apikeys/{key_id}/revoke", summary="Revoke an API key (admin)")
def revoke_api_key(key_id: str, caller: CallerDep, svc: ApiKeysDep) -> dict[str, Any]:
    return svc.revoke(caller, key_id)


@admin.get("/audit", summary="Latest audit log rows (vendor: own firm)")
def audit_log(
    caller: CallerDep, svc: AuditDep, firm_code: int | None = None, limit: int = Query(default=100, ge=1, le=1000)
) -> list[dict[str, Any]]:
    return svc.list(caller, firm_code=firm_code, limit=limit)


# ---------------------------------------------------------------- items and customers

catalog = APIRouter(tags=["catalog"])


@catalog.post("/items", status_code=201, summary="Create an item (or a module item with module_of)")
def create_item(body: schemas.ItemCreate, caller: CallerDep, svc: CatalogDep) -> dict[str, Any]:
    return svc.create_item(
        caller,
        firm_code=body.firm_code,
        item_id=body.item_id,
        name=body.name,
        product_code=body.product_code,
        feature_map=body.feature_map,
        level=body.level,
        key_versions=body.key_versions,
        module_of=body.module_of,
        options=body.options.model_dump(exclude_none=True),
        policy=body.on_manipulation,
        flag_window_days=body.flag_window_days,
        cloud=body.cloud,
    )


@catalog.get("/items", summary="A page of the firm's items, by item id")
def list_items(
    caller: CallerDep,
    svc: CatalogDep,
    firm_code: int | None = FirmQuery,
    limit: int = LimitQuery,
    offset: int = OffsetQuery,
) -> list[dict[str, Any]]:
    return svc.list_items(caller, firm_code, limit=limit, offset=offset)


@catalog.get("/items/{item_id}", summary="One item")
def get_item(item_id: str, caller: CallerDep, svc: CatalogDep, firm_code: int | None = FirmQuery) -> dict[str, Any]:
    return svc.get_item(caller, item_id, firm_code)


@catalog.post("/customers", status_code=201, summary="Create a customer")
def create_customer(body: schemas.CustomerCreate, caller: CallerDep, svc: CatalogDep) -> dict[str, Any]:
    return svc.create_customer(caller, firm_code=body.firm_code, name=body.name, number=body.number, email=body.email)


@catalog.get("/customers", summary="A page of the firm's customers, by customer number")
def list_customers(
    caller: CallerDep,
    svc: CatalogDep,
    firm_code: int | None = FirmQuery,
    limit: int = LimitQuery,
    offset: int = OffsetQuery,
) -> list[dict[str, Any]]:
    return svc.list_customers(caller, firm_code, limit=limit, offset=offset)


@catalog.get("/customers/{number}", summary="One customer")
def get_customer(number: str, caller: CallerDep, svc: CatalogDep, firm_code: int | None = FirmQuery) -> dict[str, Any]:
    return svc.get_customer(caller, number, firm_code)


# ---------------------------------------------------------------- tickets

tickets = APIRouter(tags=["tickets"])


@tickets.post("/tickets", status_code=201, summary="Order: one ticket per license")
def create_tickets(body: schemas.OrderCreate, caller: CallerDep, svc: TicketsDep) -> dict[str, Any]:
    return svc.create_order(
        caller, firm_code=body.firm_code, customer=body.customer, items=body.items, count=body.quantity_of_licenses
    )


@tickets.get("/tickets", summary="A page of the firm's tickets, newest first; filtered by customer, item, state")
def list_tickets(
    caller: CallerDep,
    svc: TicketsDep,
    firm_code: int | None = FirmQuery,
    customer: Annotated[str | None, Query(max_length=64, description="only this customer's tickets")] = None,
    item: Annotated[str | None, Query(max_length=32, description="only tickets licensing this item")] = None,
    state: Annotated[schemas.TicketStateName | None, Query(description="only tickets in this state")] = None,
    limit: int = LimitQuery,
    offset: int = OffsetQuery,
) -> list[dict[str, Any]]:
    return svc.list_tickets(
        caller, firm_code=firm_code, customer=customer, item=item, state=state, limit=limit, offset=offset
    )


@tickets.get("/tickets/{ticket}/info", summary="What a ticket needs, for activation (no API key)")
def ticket_info(ticket: TicketPath, request: Request, svc: TicketsDep) -> dict[str, Any]:
    return svc.public_info(ticket, client_address(request))


@tickets.get("/tickets/{ticket}", summary="One ticket (vendor)")
def get_ticket(ticket: TicketPath, caller: CallerDep, svc: TicketsDep) -> dict[str, Any]:
    return svc.get(caller, ticket)


@tickets.post("/tickets/{ticket}/revoke", summary="Revoke a ticket: it leaves the container at the next sync")
def revoke_ticket(ticket: TicketPath, caller: CallerDep, svc: TicketsDep) -> dict[str, Any]:
    return svc.revoke(caller, ticket)


# ---------------------------------------------------------------- containers

containers = APIRouter(tags=["containers"])


@containers.get("/containers", summary="A page of the containers that held the firm's licenses, newest first")
def list_containers(
    caller: CallerDep,
    svc: ContainersDep,
    firm_code: int | None = FirmQuery,
    limit: int = LimitQuery,
    offset: int = OffsetQuery,
) -> list[dict[str, Any]]:
    return svc.list_containers(caller, firm_code, limit=limit, offset=offset)


@containers.get("/containers/{serial}", summary="A container's slot for the firm")
def get_container(
    serial: str, caller: CallerDep, svc: ContainersDep, firm_code: int | None = FirmQuery
) -> dict[str, Any]:
    return svc.show(caller, serial, firm_code)


@containers.post("/containers/{serial}/clear", summary="Lift a manipulation flag (the firm's vendor)")
def clear_container(
    serial: str, caller: CallerDep, svc: ContainersDep, body: schemas.FirmScope | None = None
) -> dict[str, Any]:
    return svc.clear(caller, serial, body.firm_code if body else None)


# ---------------------------------------------------------------- activation protocol

protocol = APIRouter(tags=["activation"])


def _doc_body(description: str) -> dict[str, Any]:
    """OpenAPI for a body that is one signed document (read raw, verified by the service)."""
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"type": "object", "description": description}}},
        }
    }


_DOC_BODY = _doc_body("a signed request document")
_RECEIPT_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "properties": {"receipt": {"type": "object", "description": "a signed receipt document"}},
                }
            }
        },
    }
}


#: The protocol's routes (under the API prefix): the service method each runs, and what
#: builds its service. ``api.lane`` sends a POST to these paths straight here; the routes
#: below declare them (OpenAPI) and serve any request that comes another way.
PROTOCOL: dict[str, tuple[ProtocolMethod, ServiceFactory]] = {
    "/activations": (ActivationService.activate, activation_service),
    "/sync": (ActivationService.sync, activation_service),
    "/reports": (ActivationService.report, activation_service),
    # consume gets the MeteringService that metering_service makes
    "/consumptions": (MeteringService.consume, metering_service),  # type: ignore[dict-item]
    "/deactivations": (ActivationService.deactivate, activation_service),
    # upload gets the UsageService that usage_service makes
    "/usage-uploads": (UsageService.upload, usage_service),  # type: ignore[dict-item]
}


async def _answer(request: Request, path: str) -> Response:
    text = await run_protocol(request, *PROTOCOL[path], await request.body())
    return Response(text, media_type="application/json")


@protocol.post("/activations", summary="Activate a ticket: request in, update out", openapi_extra=_DOC_BODY)
async def activate(request: Request) -> Response:
    return await _answer(request, "/activations")


@protocol.post("/sync", summary="Sync one firm's licenses: request in, full-state update out", openapi_extra=_DOC_BODY)
async def sync(request: Request) -> Response:
    return await _answer(request, "/sync")


@protocol.post(
    "/reports",
    summary="A usage report: request in, signed acknowledgement (or full-state update) out",
    openapi_extra=_DOC_BODY,
)
async def report(request: Request) -> Response:
    return await _answer(request, "/reports")


@protocol.post(
    "/consumptions",
    summary="Online metering: a container-signed consumption in, Central's firm-signed count out",
    openapi_extra=_doc_body("a container-signed consume document"),
)
async def consume(request: Request) -> Response:
    return await _answer(request, "/consumptions")


@protocol.post("/deactivations", summary="Deactivate with the container's receipt", openapi_extra=_RECEIPT_BODY)
async def deactivate(request: Request) -> Response:
    return await _answer(request, "/deactivations")


@protocol.post(
    "/usage-uploads",
    summary="A license server's usage log: a container-signed upload in, Central's firm-signed anchor out "
    "(409 anchor_mismatch with anchored_seq: upload again from there; 409 usage_chain_broken: the log was "
    "rewritten, cut or forked)",
    openapi_extra=_doc_body("a usage-upload document signed by the license server's container"),
)
async def usage_upload(request: Request) -> Response:
    return await _answer(request, "/usage-uploads")


# The protocol first: route matching walks this list, and activations are the hot path.
ROUTERS = [protocol, firms, admin, catalog, tickets, containers]
