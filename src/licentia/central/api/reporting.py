"""The reporting API: ``POST /api/v1/reporting/{license-usage,product-usage,billing}``.

Requests are ``{"session": {}, "filter": {...}}`` (plus ``cursor`` and ``limit`` for the
pages); answers are ``{"errorCode": 0, "<view>List": [...], "cursor": ...}``, or CSV with
``Accept: text/csv`` or ``?format=csv`` (the whole report from the cursor on, streamed a
page at a time). A refusal keeps the reporting shape: a non-zero ``errorCode`` and a
``message``, with the HTTP status every other route gives that refusal, and also
licentia's usual ``error`` object so that licentia's clients read it like any other.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine, Iterator
from typing import Annotated, Any, Literal

from fastapi import Depends, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from fastapi.routing import APIRoute, APIRouter
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field, StrictInt

from ...core import errors as E
from ...core.tables import csv_blocks
from ..services import Actor, AuthService, Context, Person
from ..services.reporting import FIELDS, MAX_NUMBER, MAX_PAGE, PAGE_SIZE, ReportingService, UsageFilter, UsageQuery
from ..services.signin import DEVICE, TOKEN_PREFIX, USER
from . import errors as api_errors
from .deps import ContextDep, SessionDep, signin_service
from .limits import REPORTING_PREFIX, error_body

log = logging.getLogger("licentia.central")

UNSUPPORTED_SESSION = 5  # errorCode of a non-empty session (the others: limits.REPORTING_CODES)


def refusal(status: int, code: str, message: str, error_code: int | None = None) -> JSONResponse:
    return JSONResponse(error_body(REPORTING_PREFIX, status, code, message, error_code), status_code=status)


class ReportingRoute(APIRoute):
    """A route whose refusals keep the reporting shape (``errorCode`` and ``message``)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except E.UnsupportedSession as exc:
                return refusal(400, exc.code, exc.message, UNSUPPORTED_SESSION)
            except E.ServiceError as exc:
                if exc.reason:
                    log.warning("%s: %s", exc.code, exc.reason)
                return refusal(api_errors.status_of(exc), exc.code, exc.message)
            except RequestValidationError as exc:
                problems = []
                for err in exc.errors()[:3]:
                    where = ".".join(str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path"))
                    problems.append(f"{where or 'body'}: {err.get('msg', 'invalid')}")
                return refusal(422, "invalid_input", "Check the input: " + "; ".join(problems) + ".")

        return route


router = APIRouter(tags=["reporting"], route_class=ReportingRoute)
_bearer = HTTPBearer(auto_error=False, description="An API key: the admin key or a vendor key.")

# ---------------------------------------------------------------- request and answer models

_SOURCE_FILTER: dict[str, Any] = {"from": "2023-08-01T00:00:00", "to": "2023-08-31T23:59:59"}


class ReportFilter(BaseModel):
    """What the report covers; every key is optional, an unknown key is refused."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [_SOURCE_FILTER]})

    from_: str | None = Field(
        default=None,
        alias="from",
        max_length=40,
        description="ISO 8601 date and time; without an offset it is UTC. Uses accessed at or after it.",
        examples=["2023-08-01T00:00:00"],
    )
    to: str | None = Field(
        default=None,
        max_length=40,
        description="ISO 8601 date and time, UTC unless it names an offset; its whole second is included.",
        examples=["2023-08-31T23:59:59"],
    )
    customerIdentification: str | None = Field(
        default=None, max_length=64, description="a customer number", examples=["20230306"]
    )
    itemIdentification: str | None = Field(
        default=None, max_length=64, description="an item id (base or module item)", examples=["B-00001-145"]
    )
    firmCode: StrictInt | None = Field(
        default=None, ge=0, le=MAX_NUMBER, description="a firm (a vendor key: its own only)"
    )
    productCode: StrictInt | None = Field(default=None, ge=0, le=MAX_NUMBER)
    featureCode: StrictInt | None = Field(default=None, ge=0, le=MAX_NUMBER)
    ticketId: str | None = Field(default=None, max_length=64, description="a ticket id")


class ReportRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"session": {}, "filter": _SOURCE_FILTER},
                {"session": {}, "filter": {"customerIdentification": "20230306", **_SOURCE_FILTER}},
                {"session": {}, "filter": {"itemIdentification": "B-00001-145", **_SOURCE_FILTER}},
            ]
        },
    )

    session: dict[str, Any] | None = Field(
        default=None,
        description='a customer\'s signed-in person: {"token": "lcs_..."} (a customer admin sees the customer\'s '
        "use, a user its own); empty or absent: the API key, or such a session, in the Authorization header "
        "(another session object is refused with errorCode 5)",
    )
    filter: ReportFilter = Field(default_factory=ReportFilter)
    cursor: str | None = Field(
        default=None, max_length=1024, description="the cursor of the previous page's answer: the next page"
    )
    limit: StrictInt = Field(default=PAGE_SIZE, ge=1, le=MAX_PAGE, description=f"rows in a page (at most {MAX_PAGE})")


class LicenseUsage(BaseModel):
    accessTime: str = Field(examples=["2023-08-08T09:18:28"])
    fail: int
    featureCode: int
    featureMap: int
    firmCode: int = Field(examples=[6000145])
    invalid: int
    productCode: int = Field(examples=[201001])
    releaseTime: str | None = Field(
        default=None, description="absent for a refused access and for a session still open"
    )
    seconds: int = Field(examples=[359])
    success: int
    ticketLicenseId: int = Field(examples=[40])
    userIdentification: str = Field(examples=["474ce7a1-903f421d"])


class ProductUsage(BaseModel):
    customer: str = Field(examples=["20230306"])
    item: str = Field(examples=["F-00002-145"])
    name: str = Field(examples=["Feature #2"])
    seconds: int = Field(examples=[24377])
    success: int = Field(description="successful accesses", examples=[1])
    user: str = Field(examples=["xyzKLF4711eDxSdfs6y"])


class BillingDay(BaseModel):
    firmCode: int
    customer: str
    item: str
    name: str
    day: str = Field(description="the UTC day", examples=["2023-08-08"])
    peakSeats: int = Field(description="the most distinct seats held at one instant of the day")
    seatSeconds: int = Field(description="seconds seats were held within the day, summed over the seats")
    seatHours: float = Field(description="seatSeconds / 3600, to three decimals")
    sessions: int = Field(description="successful accesses that began that day")
    units: int = Field(description="units consumed by those accesses")
    refusals: int = Field(description="refused accesses that day")


_CURSOR = Field(default=None, description="null on the last page; else send it back for the next page")


class LicenseUsageAnswer(BaseModel):
    errorCode: int = Field(examples=[0])
    licenseUsageList: list[LicenseUsage]
    cursor: str | None = _CURSOR


class ProductUsageAnswer(BaseModel):
    errorCode: int = Field(examples=[0])
    productUsageList: list[ProductUsage]
    cursor: str | None = _CURSOR


class BillingAnswer(BaseModel):
    errorCode: int = Field(examples=[0])
    billingList: list[BillingDay]
    cursor: str | None = _CURSOR


class Refusal(BaseModel):
    errorCode: int = Field(description="1 invalid request, 2 no or unknown API key, 3 another firm, 4 unknown "
                           "filter value, 5 session not accepted, 6 busy or too many refusals, 9 internal")  # fmt: skip
    message: str
    error: dict[str, str] = Field(description="licentia's usual error object: code and message")


# ---------------------------------------------------------------- the routes


async def _format(
    format: Literal["json", "csv"] | None = Query(  # noqa: A002 - the query parameter's name
        default=None, description="csv: the whole report as CSV (or Accept: text/csv)"
    ),
) -> str | None:
    return format


Format = Annotated[str | None, Depends(_format)]
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
LISTS = {"license": "licenseUsageList", "product": "productUsageList", "billing": "billingList"}


def _wants_csv(request: Request, fmt: str | None) -> bool:
    if fmt is not None:
        return fmt == "csv"
    return "text/csv" in request.headers.get("accept", "").lower()


def _stream(ctx: Context, q: UsageQuery, view: str) -> Iterator[str]:
    """The report as CSV, read a page at a time on a session of its own (the request's
    session is closed once the route returns), sent in blocks of whole lines: each item
    of a streamed body is a step on a worker thread and a write, so not one per line."""
    with ctx.db.session() as s:
        yield from csv_blocks(ReportingService(ctx, s).walk(q), FIELDS[view])


def _session_token(session: dict[str, Any] | None, creds: Any) -> str | None:
    """A signed-in person's session: the body's ``{"token": ...}``, or a session token in
    the Authorization header (an API key there is not one: None)."""
    if session:
        token = session.get("token")
        if set(session) != {"token"} or not isinstance(token, str):
            raise E.UnsupportedSession
        return token
    if creds is not None and creds.credentials.startswith(TOKEN_PREFIX):
        return str(creds.credentials)
    return None


def _report(
    view: str, body: ReportRequest, request: Request, ctx: Context, db: Any, creds: Any, fmt: str | None
) -> Response:
    caller: Actor | Person
    token = _session_token(body.session, creds)
    if token is not None:
        caller = signin_service(ctx, db).authenticate(token, (DEVICE, USER))
    else:
        header = f"Bearer {creds.credentials}" if creds else None
        caller = AuthService(ctx, db).authenticate(header)
    flt = UsageFilter.from_api(body.filter.model_dump(by_alias=True, exclude_none=True))
    svc = ReportingService(ctx, db)
    q = svc.query(caller, view, flt, body.cursor)
    if _wants_csv(request, fmt):
        name = f"{view}-usage.csv" if view != "billing" else "billing.csv"
        return StreamingResponse(
            _stream(ctx, q, view),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )
    page = svc.page(q, body.limit)
    return JSONResponse({"errorCode": 0, LISTS[view]: page.rows, "cursor": page.cursor})


def _responses(model: type[BaseModel]) -> dict[int | str, dict[str, Any]]:
    return {
        200: {"model": model, "content": {"text/csv": {"schema": {"type": "string"}}}},
        "4XX": {"model": Refusal, "description": "Refused: a non-zero errorCode and a message"},
    }


@router.post(
    "/reporting/license-usage",
    summary="License view: each use of a license (session or refusal) in the period, in access order",
    response_model=None,
    responses=_responses(LicenseUsageAnswer),
)
def license_usage(
    body: ReportRequest, request: Request, ctx: ContextDep, db: SessionDep, creds: Credentials, fmt: Format = None
) -> Response:
    return _report("license", body, request, ctx, db, creds, fmt)


@router.post(
    "/reporting/product-usage",
    summary="Product view: per customer, item, license and user, seconds and successful accesses summed",
    response_model=None,
    responses=_responses(ProductUsageAnswer),
)
def product_usage(
    body: ReportRequest, request: Request, ctx: ContextDep, db: SessionDep, creds: Credentials, fmt: Format = None
) -> Response:
    return _report("product", body, request, ctx, db, creds, fmt)


@router.post(
    "/reporting/billing",
    summary="Billing view: per customer, item and UTC day, peak seats, seat time, units and refusals",
    response_model=None,
    responses=_responses(BillingAnswer),
)
def billing(
    body: ReportRequest, request: Request, ctx: ContextDep, db: SessionDep, creds: Credentials, fmt: Format = None
) -> Response:
    return _report("billing", body, request, ctx, db, creds, fmt)
