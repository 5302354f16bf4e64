"""The ``/admin`` page: licenses, seats in use, sessions, borrowed seats, a release button.

The template lives here (not in a data file) so that the page ships with the code.
The admin token is given once in a login form (rate limited per address); the server
then keeps a session of its own and the browser only its random id, in an HttpOnly,
SameSite=Strict cookie scoped to ``/admin`` (idle and absolute expiry, sign out). Every
form the page posts carries the session's CSRF token, and the server checks that
Origin (or Referer) is its own.
"""

from __future__ import annotations

import datetime as _dt
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from jinja2 import Environment, select_autoescape

COOKIE = "licentia_admin"
IDLE = 30 * 60  # seconds a session lives without a request
ABSOLUTE = 8 * 3600  # seconds a session lives at most
LOGIN_FAILURES = 5  # failed sign-ins per address ...
LOGIN_WINDOW = 600  # ... within this many seconds, then 429 until the window passes
MAX_ADDRESSES = 10_000  # addresses whose failures are remembered at once
MAX_SESSIONS = 1000


@dataclass
class _Session:
    csrf: str
    created: float
    seen: float


class AdminSessions:
    """Server-side admin sessions and the sign-in throttle (one per server process)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        self._sessions: dict[str, _Session] = {}
        self._failures: dict[str, list[float]] = {}
        self._lock = threading.Lock()

    def open(self) -> str:
        """A new session; its id goes into the cookie."""
        now = self._clock()
        sid = secrets.token_urlsafe(32)
        with self._lock:
            if len(self._sessions) >= MAX_SESSIONS:
                oldest = min(self._sessions, key=lambda k: self._sessions[k].seen)
                del self._sessions[oldest]
            self._sessions[sid] = _Session(secrets.token_urlsafe(32), now, now)
        return sid

    def csrf(self, sid: str | None) -> str | None:
        """The CSRF token of a live session (and the session is seen now), else None."""
        if not sid:
            return None
        now = self._clock()
        with self._lock:
            session = self._sessions.get(sid)
            if session is None:
                return None
            if now - session.seen > IDLE or now - session.created > ABSOLUTE:
                del self._sessions[sid]
                return None
            session.seen = now
            return session.csrf

    def close(self, sid: str | None) -> None:
        with self._lock:
            self._sessions.pop(sid or "", None)

    def throttled(self, address: str) -> bool:
        now = self._clock()
        with self._lock:
            recent = [t for t in self._failures.get(address, []) if now - t < LOGIN_WINDOW]
            self._failures[address] = recent
            return len(recent) >= LOGIN_FAILURES

    def failed(self, address: str) -> None:
        now = self._clock()
        with self._lock:
            if address not in self._failures and len(self._failures) >= MAX_ADDRESSES:
                # many addresses failing at once: forget those whose failures are all old, and,
                # if every one is recent, the first recorded (the table stays bounded)
                stale = [a for a, ts in self._failures.items() if not ts or now - ts[-1] >= LOGIN_WINDOW]
                for a in stale or [next(iter(self._failures))]:
                    del self._failures[a]
            self._failures.setdefault(address, []).append(now)


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>licentia license server</title>
<style>
body{font-family:system-ui,sans-serif;margin:2em;color:#222}
table{border-collapse:collapse;margin-bottom:2em}th,td{border:1px solid #ccc;padding:.3em .6em;text-align:left}
th{background:#f3f3f3}.muted{color:#777}form{display:inline}
</style></head><body>
<h1>licentia license server</h1>
{% if not authed %}
<form method="post" action="/admin/login"><label>Admin token <input type="password" name="token" autofocus></label>
<button type="submit">Sign in</button></form>
{% if failed %}<p>{{ failed }}</p>{% endif %}
{% else %}
<p class="muted">containers {{ s.server.containers|join(", ") }} · config version {{ s.server.config_version }}
{% if s.server.config_error %}· <strong>config error: {{ s.server.config_error }}</strong>{% endif %}
· lease TTL {{ s.server.lease_ttl }} s · linger {{ s.server.linger }} s · {{ when(s.server.time) }}</p>
<h2>Licenses</h2>
<table><tr><th>firm</th><th>product</th><th>license</th><th>text</th><th>seats</th><th>in use</th>
<th>expires</th><th>status</th></tr>
{% for l in s.licenses %}<tr><td>{{ l.firm_code }}</td><td>{{ l.product_code }}</td><td>{{ l.license_id }}</td>
<td>{{ l.text }}</td><td>{{ l.seats if l.seats else "no limit" }}</td><td>{{ l.in_use }}</td>
<td>{{ when(l.expires) }}</td><td>{{ l.status }}</td></tr>
{% else %}<tr><td colspan="8" class="muted">no licenses: activate a ticket with 'licentia server activate'</td></tr>
{% endfor %}</table>
<h2>Sessions</h2>
<table><tr><th>user</th><th>host</th><th>address</th><th>product</th><th>mode</th><th>since</th>\
<th>state</th><th></th></tr>
{% for x in s.sessions %}<tr><td>{{ x.user }}</td><td>{{ x.host }}</td><td>{{ x.ip }}</td>
<td>{{ x.firm_code }}:{{ x.product_code }}</td><td>{{ x.mode }}</td><td>{{ when(x.since) }}</td><td>{{ x.state }}</td>
<td><form method="post" action="/admin/sessions/{{ x.lease_id }}/release">\
<input type="hidden" name="csrf" value="{{ csrf }}"><button type="submit">release</button></form></td></tr>
{% else %}<tr><td colspan="8" class="muted">no sessions</td></tr>{% endfor %}</table>
<h2>Borrowed seats</h2>
<table><tr><th>user</th><th>host</th><th>container</th><th>product</th><th>since</th><th>until</th><th></th></tr>
{% for x in s.borrowed %}<tr><td>{{ x.user }}</td><td>{{ x.host }}</td><td>{{ x.borrower }}</td>
<td>{{ x.firm_code }}:{{ x.product_code }}</td><td>{{ when(x.since) }}</td><td>{{ when(x.expires) }}</td>
<td><form method="post" action="/admin/sessions/{{ x.lease_id }}/release">\
<input type="hidden" name="csrf" value="{{ csrf }}"><button type="submit">release</button></form></td></tr>
{% else %}<tr><td colspan="7" class="muted">no borrowed seats</td></tr>{% endfor %}</table>
<form method="post" action="/admin/logout">\
<input type="hidden" name="csrf" value="{{ csrf }}"><button type="submit">Sign out</button></form>
{% endif %}
</body></html>
"""

_env = Environment(autoescape=select_autoescape(default=True, default_for_string=True))
_template = _env.from_string(_PAGE)


def _when(ts: int | None) -> str:
    if ts is None:
        return "-"
    return _dt.datetime.fromtimestamp(ts, _dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def render(status: dict[str, Any] | None, *, failed: str = "", csrf: str = "") -> str:
    return _template.render(authed=status is not None, s=status, failed=failed, when=_when, csrf=csrf)
