"""The ``/admin`` page: licenses, seats in use, sessions, borrowed seats, a release button.

The template lives here (not in a data file) so that the page ships with the code.
The admin token is given once in a login form and kept in an HttpOnly, SameSite=Strict
cookie scoped to ``/admin``; the release buttons post forms that carry that cookie.
"""

from __future__ import annotations

import datetime as _dt
from typing import Any

from jinja2 import Environment, select_autoescape

COOKIE = "licentia_admin"

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
{% if failed %}<p>That token is not right.</p>{% endif %}
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
<table><tr><th>user</th><th>host</th><th>address</th><th>product</th><th>mode</th><th>since</th><th>state</th><th></th></tr>
{% for x in s.sessions %}<tr><td>{{ x.user }}</td><td>{{ x.host }}</td><td>{{ x.ip }}</td>
<td>{{ x.firm_code }}:{{ x.product_code }}</td><td>{{ x.mode }}</td><td>{{ when(x.since) }}</td><td>{{ x.state }}</td>
<td><form method="post" action="/admin/sessions/{{ x.lease_id }}/release"><button type="submit">release</button></form></td></tr>
{% else %}<tr><td colspan="8" class="muted">no sessions</td></tr>{% endfor %}</table>
<h2>Borrowed seats</h2>
<table><tr><th>user</th><th>host</th><th>container</th><th>product</th><th>since</th><th>until</th><th></th></tr>
{% for x in s.borrowed %}<tr><td>{{ x.user }}</td><td>{{ x.host }}</td><td>{{ x.borrower }}</td>
<td>{{ x.firm_code }}:{{ x.product_code }}</td><td>{{ when(x.since) }}</td><td>{{ when(x.expires) }}</td>
<td><form method="post" action="/admin/sessions/{{ x.lease_id }}/release"><button type="submit">release</button></form></td></tr>
{% else %}<tr><td colspan="7" class="muted">no borrowed seats</td></tr>{% endfor %}</table>
<form method="post" action="/admin/logout"><button type="submit">Sign out</button></form>
{% endif %}
</body></html>
"""

_env = Environment(autoescape=select_autoescape(default=True, default_for_string=True))
_template = _env.from_string(_PAGE)


def _when(ts: int | None) -> str:
    if ts is None:
        return "-"
    return _dt.datetime.fromtimestamp(ts, _dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def render(status: dict[str, Any] | None, *, failed: bool = False) -> str:
    return _template.render(authed=status is not None, s=status, failed=failed, when=_when)
