"""User licensing over REST, under ``/api/v1/user`` (docs/cloud.md, "User licensing over
REST"): for platforms that run no licensing runtime (SaaS back ends, mobile apps).

A person signs in with ``POST /user/login`` and gets a ``session`` object; every other
call carries it in its body (``"session": {"token": "lcs_..."}``), as the source's
examples do, or as ``Authorization: Bearer lcs_...``.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import Field, StrictInt

from ...core import errors as E
from ...core.license import AccessRequest
from ...seats.protocol import error_body, status_of
from ..cloud_leases import CloudLeases
from ..services.accounts import Person
from ..services.attempts import AttemptService
from ..services.signin import USER
from ..services.user_licensing import MAX_KEY, UserLicensing
from .deps import ContextDep, SessionDep, client_address, signin_service
from .schemas import _Body

router = APIRouter(prefix="/user", tags=["user licensing"])
_bearer = HTTPBearer(auto_error=False, description="a user session: lcs_...")

SESSION: Any = {"token": "lcs_(the token of POST /user/login)"}


class Session(_Body):
    """The ``session`` object of POST /user/login, sent back as it came (only its token counts)."""

    token: str = Field(max_length=128, description="the session token of POST /user/login")
    expires: StrictInt | None = Field(default=None, description="as login answered it (not read)")
    idle_expiry: StrictInt | None = Field(default=None, description="as login answered it (not read)")


class Login(_Body):
    firm_code: StrictInt = Field(description="the vendor's firm code")
    login: str = Field(max_length=254)
    password: str = Field(max_length=1024)

    model_config = {
        "extra": "forbid",
        "json_schema_extra": {"examples": [{"firm_code": 10101, "login": "ada@example.com", "password": "..."}]},
    }


class Call(_Body):
    session: Session | None = Field(default=None, description="or the token in the Authorization header")

    model_config = {"extra": "forbid", "json_schema_extra": {"examples": [{"session": SESSION}]}}


class Check(Call):
    firm_code: StrictInt
    product_code: StrictInt
    feature_code: StrictInt = Field(default=0, ge=0, le=2**32 - 1, description="feature bits the use needs")

    model_config = {
        "extra": "forbid",
        "json_schema_extra": {"examples": [{"session": SESSION, "firm_code": 10101, "product_code": 9}]},
    }


class Consume(Check):
    units: StrictInt = Field(ge=1, le=2**53 - 1)
    idempotency_key: str = Field(
        min_length=1,
        max_length=MAX_KEY,
        description="required: a retried call with the same key charges nothing and answers as the first; "
        "the same key with other parameters is refused (409)",
    )
    license_id: StrictInt | None = Field(default=None, description="this license (default: the first that allows it)")

    model_config = {
        "extra": "forbid",
        "json_schema_extra": {
            "examples": [
                {
                    "session": SESSION,
                    "firm_code": 10101,
                    "product_code": 9,
                    "units": 5,
                    "idempotency_key": "order-4711-render",
                }
            ]
        },
    }


class Access(Check):
    device: str | None = Field(
        default=None, max_length=128, description="the device it runs on, where the item counts seats per device"
    )

    model_config = {
        "extra": "forbid",
        "json_schema_extra": {"examples": [{"session": SESSION, "firm_code": 10101, "product_code": 9}]},
    }


class LeaseCall(Call):
    lease_id: str = Field(max_length=64, description="the lease_id of POST /user/access")

    model_config = {"extra": "forbid", "json_schema_extra": {"examples": [{"session": SESSION, "lease_id": "..."}]}}


def _person(body: Call, ctx: Any, db: Any, creds: HTTPAuthorizationCredentials | None) -> Person:
    token = body.session.token if body.session is not None else (creds.credentials if creds else None)
    return signin_service(ctx, db).authenticate(token, USER)


def _service(ctx: Any, db: Any) -> UserLicensing:
    return UserLicensing(ctx, db, attempts=AttemptService(ctx, db))


Creds = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


@router.post("/login", status_code=201, summary="Sign in: a session for the other calls")
def login(body: Login, request: Request, ctx: ContextDep, db: SessionDep) -> dict[str, Any]:
    opened = signin_service(ctx, db).sign_in(
        firm_code=body.firm_code, login=body.login, password=body.password, address=client_address(request), kind=USER
    )
    return {
        "session": {"token": opened["session"], "expires": opened["expires"], "idle_expiry": opened["idle_expiry"]},
        "login": opened["login"],
        "role": opened["role"],
        "firm_code": opened["firm_code"],
    }


@router.post("/logout", summary="End the session")
def logout(body: Call, ctx: ContextDep, db: SessionDep, creds: Creds) -> dict[str, Any]:
    person = _person(body, ctx, db, creds)
    return signin_service(ctx, db).sign_out(person)


@router.post("/licenses", summary="My licenses: product, features, seats, units left, expiry")
def licenses(body: Call, ctx: ContextDep, db: SessionDep, creds: Creds) -> list[dict[str, Any]]:
    return _service(ctx, db).licenses(_person(body, ctx, db, creds))


@router.post("/check", summary="May I use this product (and features) now? Else the reason, with its code")
def check(body: Check, ctx: ContextDep, db: SessionDep, creds: Creds) -> dict[str, Any]:
    request = AccessRequest(body.firm_code, body.product_code, body.feature_code)
    return _service(ctx, db).check(_person(body, ctx, db, creds), request)


@router.post("/consume", summary="Consume units, once per idempotency key")
def consume(body: Consume, ctx: ContextDep, db: SessionDep, creds: Creds) -> dict[str, Any]:
    request = AccessRequest(body.firm_code, body.product_code, body.feature_code)
    person = _person(body, ctx, db, creds)
    return _service(ctx, db).consume_units(person, request, body.units, body.idempotency_key, body.license_id)


def _seats(request: Request) -> CloudLeases:
    seats: CloudLeases = request.app.state.cloud_leases
    return seats


def _seat_call(work: Any, *args: Any) -> Any:
    """A seat call's answer; a refusal answers with the runtime's error code and type
    (``{"error": {"type", "message", "code", ...}}``, as the seat protocol does)."""
    try:
        return work(*args)
    except E.SeatError as error:
        return JSONResponse(error_body(error), status_code=status_of(error))


@router.post(
    "/access",
    summary="Take a seat (per person, or per device as the item says): it lives ttl seconds unless renewed",
    responses={409: {"description": "every seat in use"}},
)
def access(body: Access, request: Request, ctx: ContextDep, db: SessionDep, creds: Creds) -> Any:
    person = _person(body, ctx, db, creds)
    wanted = AccessRequest(body.firm_code, body.product_code, body.feature_code)
    return _seat_call(_seats(request).user_access, person, wanted, body.device, client_address(request))


@router.post("/renew", summary="Keep a seat: renew before ttl seconds have passed")
def renew(body: LeaseCall, request: Request, ctx: ContextDep, db: SessionDep, creds: Creds) -> Any:
    return _seat_call(_seats(request).user_renew, _person(body, ctx, db, creds), body.lease_id)


@router.post("/release", summary="Give a seat back")
def release(body: LeaseCall, request: Request, ctx: ContextDep, db: SessionDep, creds: Creds) -> Any:
    return _seat_call(_seats(request).user_release, _person(body, ctx, db, creds), body.lease_id)
