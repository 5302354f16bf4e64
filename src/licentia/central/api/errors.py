"""Every error leaves as ``{"error": {"code": "...", "message": "..."}}``.

The one place where Central's service errors (``licentia.core.errors.ServiceError``)
get their HTTP status, and where their private ``reason`` is logged.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ...core import errors as E
from .limits import REPORTING_PREFIX, TokenBuckets, error_body

log = logging.getLogger("licentia.central")

_HTTP_CODES = {404: "not_found", 405: "method_not_allowed"}

#: HTTP status of each service error (the closest class in the MRO wins)
STATUS: dict[type[E.ServiceError], int] = {
    E.BadInput: 400,
    E.InvalidTicket: 400,
    E.InvalidRequest: 400,
    E.InvalidReceipt: 400,
    E.MalformedInput: 400,
    E.InvalidItems: 400,
    E.Unauthorized: 401,
    E.Forbidden: 403,
    E.KeyMismatch: 403,
    E.NotFound: 404,
    E.Conflict: 409,
    E.TooManyAttempts: 429,
    E.TooManyDeviceSwaps: 429,
    E.Unavailable: 503,
}


def status_of(exc: E.ServiceError) -> int:
    for cls in type(exc).__mro__:
        status = STATUS.get(cls)
        if status is not None:
            return status
    return 500


def error(status: int, code: str, message: str, path: str = "") -> JSONResponse:
    return JSONResponse(error_body(path, status, code, message), status_code=status)


def service_error(exc: E.ServiceError, address: str, buckets: TokenBuckets | None, path: str = "") -> JSONResponse:
    """The answer to a service error; its private reason goes to the log."""
    if exc.reason:
        log.warning("%s: %s", exc.code, exc.reason)
    if isinstance(exc, E.MalformedInput) and buckets is not None:  # refused before it was read: the address's bucket
        buckets.take(address)
    status = status_of(exc)
    body = exc.body()
    if path.startswith(REPORTING_PREFIX):
        body = {**error_body(path, status, exc.code, exc.message), "error": body["error"]}
    return JSONResponse(body, status_code=status)


def install(app: FastAPI) -> None:
    @app.exception_handler(E.ServiceError)
    async def _central(request: Request, exc: E.ServiceError) -> JSONResponse:
        address = request.client.host if request.client else "unknown"
        return service_error(exc, address, getattr(request.app.state, "rejections", None), request.url.path)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = []
        for err in exc.errors()[:3]:
            where = ".".join(str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path"))
            problems.append(f"{where or 'body'}: {err.get('msg', 'invalid')}")
        return error(422, "invalid_input", "Check the input: " + "; ".join(problems) + ".", request.url.path)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        message = "No such endpoint: see /docs." if exc.status_code == 404 else str(exc.detail)
        return error(exc.status_code, code, message, request.url.path)

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception) -> JSONResponse:
        log.exception("internal error on %s %s", request.method, request.url.path)
        message = "Central had an internal error; the operator finds the details in its log."
        return error(500, "internal_error", message, request.url.path)
