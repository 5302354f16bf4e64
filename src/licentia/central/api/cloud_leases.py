"""Cloud leases over HTTP: the license server protocol under ``/api/v1/cloud``, for a
signed-in device (``Authorization: Bearer lcs_...``; docs/cloud.md, docs/formats.md).

    GET    /api/v1/cloud/challenge             a nonce for the device's machine proof
    POST   /api/v1/cloud/leases                access: a lease, the entry, sealed product keys
    POST   /api/v1/cloud/leases/{id}/renew     heartbeat
    DELETE /api/v1/cloud/leases/{id}?client=   release
    POST   /api/v1/cloud/leases/{id}/return    give a lease's grace back (the container's receipt)
    GET    /api/v1/cloud/leases                the live leases of the person's devices

Refusals answer as a license server's do (``seats.protocol``: ``{"error": {"type",
"message", "code"?, ...}}``), so that the runtime's client of license servers serves
both; an unknown or expired session answers 401 as Central's other calls.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from ...core import errors as E
from ...core.encoding import JsonRejected, strict_loads
from ...seats.protocol import error_body, status_of
from ..cloud_leases import CloudLeases
from .deps import bearer_token, client_address

router = APIRouter(prefix="/cloud", tags=["cloud leases"])

MAX_BODY = 64 * 1024


def _seats(request: Request) -> CloudLeases:
    seats: CloudLeases = request.app.state.cloud_leases
    return seats


def _json(obj: Any, status: int = 200) -> Response:
    body = obj if isinstance(obj, bytes) else json.dumps(obj, separators=(",", ":")).encode()
    return Response(body, status_code=status, media_type="application/json")


async def _body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if len(raw) > MAX_BODY:
        raise E.BadRequest("request body too large")
    try:
        body = strict_loads(raw, max_bytes=MAX_BODY)
    except (JsonRejected, ValueError):
        raise E.BadRequest("the body is not JSON") from None
    if not isinstance(body, dict):
        raise E.BadRequest("the body is a JSON object")
    return body


async def _answer(request: Request, work: Any, *args: Any, posted: bool = False) -> Response:
    """``work(token, *args)`` (and the posted JSON body last) on the cloud leases' few threads
    (``CloudLeases.run``): a transaction holding a license's row lock is not left waiting for
    the interpreter behind dozens of others. A refusal answers as a license server's."""
    try:
        body = (await _body(request),) if posted else ()
        return _json(await _seats(request).run(work, bearer_token(request), *args, *body))
    except E.SeatError as error:
        return _json(error_body(error), status_of(error))


@router.get("/challenge", summary="A nonce for the device's machine proof (answered once, within 2 minutes)")
async def challenge(request: Request) -> Response:
    return _json(_seats(request).challenge())


@router.post(
    "/leases",
    summary="A cloud lease: the license server protocol's access, for a linked device",
    responses={403: {"description": "refused"}, 404: {"description": "no cloud license"}, 409: {"description": "full"}},
)
async def access(request: Request) -> Response:
    return await _answer(request, _seats(request).access, client_address(request), posted=True)


@router.post("/leases/{lease_id}/renew", summary="Renew a cloud lease (a heartbeat signed by its holder)")
async def renew(lease_id: str, request: Request) -> Response:
    return await _answer(request, _seats(request).renew, lease_id, posted=True)


@router.delete("/leases/{lease_id}", summary="Release a cloud lease (signed by its holder)")
async def release(lease_id: str, request: Request, client: str = "", counter: str = "", proof: str = "") -> Response:
    return await _answer(request, _seats(request).release, lease_id, client, counter, proof)


@router.post("/leases/{lease_id}/return", summary="Give a cloud lease's grace back (the container's receipt)")
async def return_grace(lease_id: str, request: Request) -> Response:
    return await _answer(request, _seats(request).return_grace, lease_id, posted=True)


@router.get("/leases", summary="The live cloud leases of the signed-in person's devices")
async def leases(request: Request) -> Response:
    seats = _seats(request)
    device = await seats.run(seats.device, bearer_token(request))
    return _json(await seats.run(seats.leases_of, device.person))
