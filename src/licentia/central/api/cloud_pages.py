"""The browser side of a device's sign-in: ``/cloud/device``.

The person opens the link ``licentia cloud login`` shows, signs in with the login and
password of the account (the code names the firm), sees which device asks, from which
address and when, and confirms or refuses. The sign-in opens a ``web`` session: a random
token in an HttpOnly, SameSite=Strict cookie scoped to ``/cloud`` (30 minutes unused, 12
hours at most); every form posts the session's CSRF token, and Central checks that the
Origin (or Referer) is its own (``LICENTIA_PUBLIC_URL`` where a proxy stands in front).
The pages may not be framed, and nothing is cached.
"""

from __future__ import annotations

import hmac
import logging
from typing import Any
from urllib.parse import parse_qs, quote

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, select_autoescape
from starlette.concurrency import run_in_threadpool

from ...core import errors as E
from ..services import Person
from ..services.signin import WEB, normalize_user_code, show_user_code
from .deps import client_address, signin_service

log = logging.getLogger("licentia.central")

COOKIE = "licentia_cloud"
PATH = "/cloud/device"
MAX_FORM = 4096

HEADERS = {
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",  # not no-referrer: a browser then sends its form posts with Origin: null
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'",
}

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>Sign in a device</title>
<style>
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:36em;color:#222;padding:0 1em}
label{display:block;margin:.6em 0}input{font-size:1em;padding:.3em}button{font-size:1em;padding:.4em 1em}
.code{font-family:monospace;font-size:1.4em;letter-spacing:.1em}.muted{color:#666}.warn{color:#a00}
table{border-collapse:collapse}td{padding:.2em .8em .2em 0}
</style></head><body>
<h1>Sign in a device</h1>
{% if message %}<p class="{{ 'warn' if warn else '' }}">{{ message }}</p>{% endif %}
{% if step == "sign-in" %}
<form method="post" action="/cloud/device/sign-in">
<label>Code shown on the device <input name="code" value="{{ code }}" class="code" autocomplete="off" required></label>
<label>Login <input name="login" autocomplete="username" required></label>
<label>Password <input type="password" name="password" autocomplete="current-password" required></label>
<button type="submit">Sign in</button></form>
{% elif step == "code" %}
<p>Signed in as <strong>{{ login }}</strong>.</p>
<form method="get" action="/cloud/device">
<label>Code shown on the device <input name="code" value="{{ code }}" class="code" autocomplete="off" required></label>
<button type="submit">Next</button></form>
{% elif step == "confirm" %}
<p>Signed in as <strong>{{ login }}</strong>. A device asks to use your licenses:</p>
<table>
<tr><td>code</td><td class="code">{{ p.user_code }}</td></tr>
<tr><td>device</td><td><strong>{{ p.device_name }}</strong></td></tr>
<tr><td>its address</td><td><strong>{{ p.address }}</strong></td></tr>
<tr><td>asked</td><td>{{ when(p.created) }}</td></tr>
</table>
<p class="warn">Confirm only a device you are signing in yourself, right now. If you got this link or code
from someone else, refuse.</p>
<form method="post" action="/cloud/device/confirm"><input type="hidden" name="csrf" value="{{ csrf }}">
<input type="hidden" name="code" value="{{ p.user_code }}">
<button type="submit" name="decision" value="approve">Confirm this device</button>
<button type="submit" name="decision" value="deny">Refuse</button></form>
{% elif step == "done" %}
<p>{{ done }}</p>
{% endif %}
{% if csrf %}<form method="post" action="/cloud/device/sign-out"><input type="hidden" name="csrf" value="{{ csrf }}">
<p class="muted">{{ login }} · <button type="submit">Sign out</button></p></form>{% endif %}
</body></html>
"""

_env = Environment(autoescape=select_autoescape(default=True, default_for_string=True))
_template = _env.from_string(_PAGE)


def _when(ts: int) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def render(step: str, *, status: int = 200, **values: Any) -> HTMLResponse:
    values.setdefault("csrf", "")
    html = _template.render(step=step, when=_when, **values)
    return HTMLResponse(html, status_code=status, headers=HEADERS)


def _origin(request: Request) -> str:
    public: str | None = request.app.state.central.settings.public_url
    return public or f"{request.url.scheme}://{request.headers.get('host', '')}"


def same_origin(request: Request) -> bool:
    """A browser's POST names where it comes from: it must be Central's own page."""
    own = _origin(request)
    origin = request.headers.get("origin")
    if origin is not None:
        return origin == own
    referer = request.headers.get("referer")
    return referer is not None and (referer == own or referer.startswith(own + "/"))


async def _form(request: Request) -> dict[str, str]:
    body = (await request.body())[:MAX_FORM]
    return {k: v[0] for k, v in parse_qs(body.decode(errors="replace")).items() if v}


def _web_person(request: Request) -> tuple[Person, str] | None:
    """The person of the browser's session and its CSRF token (None: not signed in)."""
    ctx = request.app.state.central
    token = request.cookies.get(COOKIE)
    if not token:
        return None
    with ctx.db.session() as db:
        try:
            return signin_service(ctx, db).web(token)
        except E.Unauthorized:
            return None


router = APIRouter(include_in_schema=False)


@router.get(PATH)
def device_page(request: Request, code: str = "") -> Response:
    shown = code.strip()[:32]
    found = _web_person(request)
    if found is None:
        return render("sign-in", code=shown)
    person, csrf = found
    if not shown:
        return render("code", login=person.login, csrf=csrf, code="")
    ctx = request.app.state.central
    with ctx.db.session() as db:
        try:
            pending = signin_service(ctx, db).pending(shown, person, client_address(request))
        except E.ServiceError as exc:
            return render(
                "code", status=_status(exc), login=person.login, csrf=csrf, code=shown, message=exc.message, warn=True
            )
    return render("confirm", login=person.login, csrf=csrf, p=pending)


@router.post(PATH + "/sign-in")
async def sign_in(request: Request) -> Response:
    if not same_origin(request):
        log.warning("device sign-in form refused from %s: foreign origin", client_address(request))
        return render("sign-in", status=403, message="Sign in from this page of Central.", warn=True, code="")
    form = await _form(request)
    return await run_in_threadpool(_sign_in, request, form)


def _sign_in(request: Request, form: dict[str, str]) -> Response:
    code = form.get("code", "").strip()[:32]
    ctx = request.app.state.central
    address = client_address(request)
    with ctx.db.session() as db:
        svc = signin_service(ctx, db)
        try:
            firm_code = svc.code_firm(code, address)
            opened = svc.sign_in(
                firm_code=firm_code,
                login=form.get("login", ""),
                password=form.get("password", ""),
                address=address,
                kind=WEB,
            )
        except E.ServiceError as exc:
            if exc.reason:
                log.warning("%s: %s", exc.code, exc.reason)
            return render("sign-in", status=_status(exc), message=exc.message, warn=True, code=code)
    target = PATH + (f"?code={quote(show_user_code(c))}" if (c := normalize_user_code(code)) else "")
    response = RedirectResponse(target, status_code=303, headers=HEADERS)
    response.set_cookie(
        COOKIE,
        opened["session"],
        httponly=True,
        samesite="strict",
        path="/cloud",
        secure=_origin(request).startswith("https://"),
        max_age=ctx.settings.web_session_max,
    )
    return response


@router.post(PATH + "/confirm")
async def confirm(request: Request) -> Response:
    form = await _form(request)
    return await run_in_threadpool(_confirm, request, form)


def _confirm(request: Request, form: dict[str, str]) -> Response:
    found = _web_person(request)
    if found is None:
        return render(
            "sign-in",
            status=401,
            message="Your sign-in ended: sign in again.",
            warn=True,
            code=form.get("code", "")[:32],
        )
    person, csrf = found
    refused = _foreign(request, form, csrf)
    if refused is not None:
        return refused
    approve = form.get("decision") == "approve"
    ctx = request.app.state.central
    with ctx.db.session() as db:
        try:
            decided = signin_service(ctx, db).decide(
                form.get("code", ""), person, client_address(request), approve=approve
            )
        except E.ServiceError as exc:
            return render(
                "code", status=_status(exc), login=person.login, csrf=csrf, code="", message=exc.message, warn=True
            )
    done = (
        f"Device {decided['device_name']} is signed in. You can close this window."
        if approve
        else f"Refused: device {decided['device_name']} is not signed in."
    )
    return render("done", login=person.login, csrf=csrf, done=done)


@router.post(PATH + "/sign-out")
async def sign_out(request: Request) -> Response:
    form = await _form(request)
    return await run_in_threadpool(_sign_out, request, form)


def _sign_out(request: Request, form: dict[str, str]) -> Response:
    found = _web_person(request)
    if found is not None:
        person, csrf = found
        refused = _foreign(request, form, csrf)
        if refused is not None:
            return refused
        ctx = request.app.state.central
        with ctx.db.session() as db:
            signin_service(ctx, db).sign_out(person)
    response = RedirectResponse(PATH, status_code=303, headers=HEADERS)
    response.delete_cookie(COOKIE, path="/cloud")
    return response


def _foreign(request: Request, form: dict[str, str], csrf: str) -> Response | None:
    """403 for a form that did not come from Central's own page (its Origin, or Referer)
    or lacks the session's CSRF token (compared as bytes: any text is compared, never an
    error); None when it may act."""
    if same_origin(request) and hmac.compare_digest(form.get("csrf", "").encode(), csrf.encode()):
        return None
    log.warning("device sign-in form refused from %s: foreign origin or no CSRF token", client_address(request))
    return render("done", status=403, done="Refused: this form did not come from Central's page.")


def _status(exc: E.ServiceError) -> int:
    from .errors import status_of

    return status_of(exc)
