"""Every route of License Central and of the license server, called once against a real
`licentia central serve` / `licentia server start` process.

The routes are listed from the apps themselves (FastAPI's routes, the routers Central
includes, the static mount of /docs, and the license server's client API in front of
FastAPI), so a new route is called here without anyone adding it: it must answer, and
never with a 5xx. The routes this file knows get real data (a firm, an item, a ticket, an
activated container, a lease id) and their expected status; an unknown one gets the
default call, and the list of known routes says which routes are new."""

from __future__ import annotations

import inspect
import re
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from licentia.server import Settings, create_app
from licentia.server.app import API, ClientApi
from tests.central.central_helpers import ADMIN_KEY, FakeContainer, Vendor, central_app, error_code, make_settings
from tests.conftest import central_process
from tests.server.netsite import Site

pytestmark = pytest.mark.slow

PARAM = re.compile(r"{(\w+)(?::\w+)?}")


def app_routes(routes: list[Any], prefix: str = "") -> set[tuple[str, str]]:
    """(method, path) of every route: plain routes, the routers an app includes (flattened
    or kept as included routers, depending on the FastAPI version) and static mounts."""
    found: set[tuple[str, str]] = set()
    for route in routes:
        included = getattr(route, "original_router", None)
        if included is not None:
            found |= app_routes(included.routes, prefix + route.include_context.prefix)
        elif hasattr(route, "methods") and route.methods:
            found |= {(m, prefix + route.path) for m in route.methods if m != "HEAD"}
        elif hasattr(route, "app") and hasattr(route, "path"):  # a Mount: files below its path
            found.add(("GET", prefix + route.path + "/{file}"))
        else:
            raise AssertionError(f"a route of a kind this test cannot list: {route!r}")
    return found


def fill(template: str, values: dict[str, str]) -> str:
    missing = [name for name in PARAM.findall(template) if name not in values]
    assert not missing, f"{template}: no value for {missing}: give the new path parameter one here"
    return PARAM.sub(lambda m: values[m.group(1)], template)


def routed(r: httpx.Response) -> bool:
    """The request reached a handler: not the framework's own 'no such path' or 'no such method'."""
    if r.status_code == 405:
        return False
    if r.status_code != 404:
        return True
    try:
        body = r.json()
    except ValueError:
        return True
    if body == {"detail": "Not Found"}:
        return False  # FastAPI's answer for a path it has no route for
    return not (isinstance(body, dict) and body.get("error", {}).get("code") == "not_found")  # Central's


# ---------------------------------------------------------------- License Central


def test_every_central_route_answers_in_a_live_process(tmp_path):
    with central_app(make_settings(tmp_path / "enum")) as app:
        routes = app_routes(app.routes)
    assert ("POST", "/api/v1/activations") in routes and ("GET", "/health") in routes  # the listing works
    admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
    now = int(time.time())
    (tmp_path / "live").mkdir()
    with central_process(tmp_path / "live", ADMIN_KEY) as url, httpx.Client(base_url=url, timeout=30) as http:
        vendor = Vendor(http, 30303)
        firm = vendor.firm_code
        t_activate, t_revoke = vendor.tickets(2)
        box = FakeContainer()
        extra_key = http.post("/api/v1/apikeys", json={"firm_code": firm}, headers=admin).json()
        values = {
            "code": str(firm),
            "product": "7",
            "version": "1",
            "item_id": vendor.item,
            "number": vendor.customer,
            "ticket": t_revoke,
            "serial": box.serial,
            "key_id": str(extra_key["key_id"]),
            "kid": "",
            # cloud accounts: names nobody has (each such call answers 4xx, never 5xx)
            "login": "nobody@example.com",
            "name": "Engineering",
            "group": "Engineering",
            "device": "00000000-0000-0000-0000-000000000000",
            "lease_id": "0000000000000000000000",
        }
        v = vendor.headers
        activated: dict[str, Any] = {}

        def activate() -> httpx.Response:
            r = http.post("/api/v1/activations", json=box.request("activate", ticket=t_activate, now=now))
            activated["update"] = box.apply(r.json()) if r.status_code == 200 else None
            return r

        def rotate() -> httpx.Response:
            values["kid"] = http.get(f"/api/v1/firms/{firm}", headers=v).json()["keys"][0]["kid"]
            return http.post(f"/api/v1/firms/{firm}/keys/rotate", headers=v)

        def asset() -> httpx.Response:
            page = http.get("/docs").text
            found = re.search(r"/docs/assets/([\w.\-]+)", page)
            assert found, "the docs page names no asset"
            return http.get(f"/docs/assets/{found.group(1)}")

        def deactivate() -> httpx.Response:
            (entry,) = activated["update"].entries
            return http.post("/api/v1/deactivations", json={"receipt": box.receipt(firm, entry.license_id, t_activate)})

        # (method, path) -> (call, expected status, expected error code): in this order
        known: dict[tuple[str, str], tuple[Any, int, str | None]] = {
            ("GET", "/health"): (lambda: http.get("/health"), 200, None),
            ("GET", "/ready"): (lambda: http.get("/ready"), 200, None),
            ("GET", "/openapi.json"): (lambda: http.get("/openapi.json"), 200, None),
            ("GET", "/docs"): (lambda: http.get("/docs"), 200, None),
            ("GET", "/docs/oauth2-redirect"): (lambda: http.get("/docs/oauth2-redirect"), 200, None),
            ("GET", "/docs/assets/{file}"): (asset, 200, None),
            ("POST", "/api/v1/firms"): (
                lambda: http.post("/api/v1/firms", json={"code": firm + 1, "name": "Another"}, headers=admin),
                201,
                None,
            ),
            ("GET", "/api/v1/firms/{code}"): (lambda: http.get(f"/api/v1/firms/{firm}", headers=v), 200, None),
            ("GET", "/api/v1/firms/{code}/public-key"): (
                lambda: http.get(f"/api/v1/firms/{firm}/public-key"),
                200,
                None,
            ),
            ("GET", "/api/v1/firms/{code}/products/{product}/keys/{version}"): (
                lambda: http.get(f"/api/v1/firms/{firm}/products/7/keys/1", headers=v),
                200,
                None,
            ),
            ("POST", "/api/v1/apikeys"): (
                lambda: http.post("/api/v1/apikeys", json={"firm_code": firm}, headers=admin),
                201,
                None,
            ),
            ("GET", "/api/v1/audit"): (lambda: http.get("/api/v1/audit", headers=v), 200, None),
            ("POST", "/api/v1/items"): (lambda: v_post("/items", {"name": "Second", "product_code": 8}), 201, None),
            ("GET", "/api/v1/items"): (lambda: http.get("/api/v1/items", headers=v), 200, None),
            ("GET", "/api/v1/items/{item_id}"): (
                lambda: http.get(f"/api/v1/items/{vendor.item}", headers=v),
                200,
                None,
            ),
            ("POST", "/api/v1/customers"): (lambda: v_post("/customers", {"name": "Customer B"}), 201, None),
            ("GET", "/api/v1/customers"): (lambda: http.get("/api/v1/customers", headers=v), 200, None),
            ("GET", "/api/v1/customers/{number}"): (
                lambda: http.get(f"/api/v1/customers/{vendor.customer}", headers=v),
                200,
                None,
            ),
            ("POST", "/api/v1/tickets"): (
                lambda: v_post("/tickets", {"customer": vendor.customer, "items": [vendor.item]}),
                201,
                None,
            ),
            ("GET", "/api/v1/tickets"): (lambda: http.get("/api/v1/tickets", headers=v), 200, None),
            ("GET", "/api/v1/tickets/{ticket}/info"): (lambda: http.get(f"/api/v1/tickets/{t_revoke}/info"), 200, None),
            ("GET", "/api/v1/tickets/{ticket}"): (
                lambda: http.get(f"/api/v1/tickets/{t_revoke}", headers=v),
                200,
                None,
            ),
            ("POST", "/api/v1/tickets/{ticket}/revoke"): (lambda: v_post(f"/tickets/{t_revoke}/revoke"), 200, None),
            ("POST", "/api/v1/activations"): (activate, 200, None),
            ("POST", "/api/v1/sync"): (
                lambda: http.post("/api/v1/sync", json=box.request("sync", firm_code=firm, now=now)),
                200,
                None,
            ),
            ("POST", "/api/v1/reports"): (
                lambda: http.post("/api/v1/reports", json=box.request("report", firm_code=firm, now=now)),
                200,
                None,
            ),
            ("POST", "/api/v1/consumptions"): (
                lambda: http.post("/api/v1/consumptions", json={"payload": {}, "kid": "", "sig": ""}),
                400,
                "invalid_request",
            ),
            ("GET", "/api/v1/containers"): (lambda: http.get("/api/v1/containers", headers=v), 200, None),
            ("GET", "/api/v1/containers/{serial}"): (
                lambda: http.get(f"/api/v1/containers/{box.serial}", headers=v),
                200,
                None,
            ),
            ("POST", "/api/v1/deactivations"): (deactivate, 200, None),
            ("POST", "/api/v1/containers/{serial}/clear"): (
                lambda: v_post(f"/containers/{box.serial}/clear"),
                200,
                None,
            ),
            ("POST", "/api/v1/firms/{code}/keys/rotate"): (rotate, 200, None),
            ("POST", "/api/v1/firms/{code}/keys/{kid}/retire"): (
                lambda: v_post(f"/firms/{firm}/keys/{values['kid']}/retire"),
                200,
                None,
            ),
            ("POST", "/api/v1/apikeys/{key_id}/revoke"): (
                lambda: http.post(f"/api/v1/apikeys/{extra_key['key_id']}/revoke", headers=admin),
                200,
                None,
            ),
        }

        def v_post(path: str, body: Any = None) -> httpx.Response:
            return http.post("/api/v1" + path, json=body, headers=v)

        answers: dict[tuple[str, str], httpx.Response] = {}
        for route, (call, status, code) in known.items():
            if route in routes:
                r = answers[route] = call()
                assert r.status_code == status, (route, r.status_code, r.text[:300])
                if code is not None:
                    assert error_code(r) == code, (route, r.text[:300])
        for method, path in sorted(routes - set(known)):  # a route this file does not know yet
            answers[(method, path)] = http.request(
                method, fill(path, values), headers=admin, json={} if method in ("POST", "PUT", "PATCH") else None
            )
    for route, r in answers.items():
        assert r.status_code < 500, (route, r.status_code, r.text[:300])
        assert routed(r), (route, r.status_code, r.text[:300])
    assert set(answers) == routes
    assert not set(known) - routes, f"routes gone from Central: {sorted(set(known) - routes)}"


# ---------------------------------------------------------------- the license server

#: the license server's client API (routed in front of FastAPI, in ClientApi._route): the
#: route, the ClientApi method that serves it
CLIENT_API = {
    ("POST", API + "/leases"): "access",
    ("POST", API + "/leases/{id}/renew"): "renew",
    ("DELETE", API + "/leases/{id}"): "release",
    ("POST", API + "/leases/{id}/return"): "return_grace",
    ("POST", API + "/borrows"): "borrow",
    ("POST", API + "/borrows/{id}/return"): "give_back",
    ("GET", API + "/licenses"): "licenses",
    ("GET", API + "/challenge"): "challenge",
}


def client_api_routes() -> set[tuple[str, str]]:
    """The client API's routes, checked against ClientApi itself: each one routes to its
    method, every method that serves a request (body, call) has a route here, and every
    path ClientApi answers before FastAPI (``path == "..."``) is listed too."""
    served = {
        name
        for name, fn in inspect.getmembers(ClientApi, inspect.isfunction)
        if list(inspect.signature(fn).parameters) == ["self", "body", "call"]
    }
    assert served == set(CLIENT_API.values()), f"a ClientApi handler without a route here: {served}"
    api = ClientApi.__new__(ClientApi)
    for (method, path), name in CLIENT_API.items():
        rest = path.replace("{id}", "x")[len(API) + 1 :]
        route = ClientApi._route(api, method, rest)
        assert route is not None and route[1].__name__ == name, (method, path, route)
    raw = set(re.findall(r'path == "(/[^"]+)"', inspect.getsource(ClientApi.__call__)))
    assert raw, "ClientApi answers no raw path any more: drop this part"
    return set(CLIENT_API) | {("GET", p) for p in raw}


def test_every_license_server_route_answers_in_a_live_process(tmp_path):
    from licentia.container import MachineContainer
    from tests.factory import T0, machine_traits

    enum_dir = tmp_path / "enum"
    MachineContainer.create(enum_dir, "medium", machine_traits(), T0)
    api = create_app(Settings(data_dir=enum_dir, discovery=False, admin_token="adm"))
    try:
        routes = app_routes(api.app.routes) | client_api_routes()
    finally:
        api.server.close()
    assert ("GET", "/health") in routes and ("POST", API + "/leases") in routes

    site = Site(tmp_path / "site")
    site.add_license(quantity=2)
    site.write_config("[borrow]\nmax_days = 7\n")
    site.start()
    try:
        token = {"Authorization": f"Bearer {site.admin_token()}"}
        origin = {"Origin": site.url}
        values = {"id": "nosuchlease", "lease_id": "nosuchlease"}
        with httpx.Client(base_url=site.url, timeout=30, follow_redirects=False) as http:
            page: dict[str, str] = {}

            def login() -> httpx.Response:
                r = http.post("/admin/login", data={"token": site.admin_token()}, headers=origin)
                found = re.search(r'name="csrf" value="([^"]+)"', http.get("/admin").text)
                page["csrf"] = found.group(1) if found else ""
                return r

            # (method, path) -> (call, expected status): in this order
            known: dict[tuple[str, str], tuple[Any, int]] = {
                ("GET", "/health"): (lambda: http.get("/health"), 200),
                ("GET", "/hello"): (lambda: http.get("/hello"), 200),
                ("GET", "/hello-asgi"): (lambda: http.get("/hello-asgi"), 200),
                ("GET", "/metrics"): (lambda: http.get("/metrics"), 200),
                ("GET", API + "/licenses"): (lambda: http.get(API + "/licenses"), 200),
                ("GET", API + "/challenge"): (lambda: http.get(API + "/challenge"), 200),
                ("POST", API + "/leases"): (lambda: http.post(API + "/leases", json={}), 400),
                ("POST", API + "/leases/{id}/renew"): (
                    lambda: http.post(API + "/leases/nosuchlease/renew", json={"client_lease_id": "c1"}),
                    404,
                ),
                ("DELETE", API + "/leases/{id}"): (lambda: http.delete(API + "/leases/nosuchlease?client=c1"), 200),
                ("POST", API + "/leases/{id}/return"): (
                    lambda: http.post(API + "/leases/nosuchlease/return", json={"receipt": {}}),
                    404,
                ),
                ("POST", API + "/borrows"): (lambda: http.post(API + "/borrows", json={}), 400),
                ("POST", API + "/borrows/{id}/return"): (
                    lambda: http.post(API + "/borrows/nosuchborrow/return", json={"receipt": {}}),
                    404,
                ),
                ("GET", API + "/admin/status"): (lambda: http.get(API + "/admin/status", headers=token), 200),
                ("DELETE", API + "/admin/sessions/{lease_id}"): (
                    lambda: http.delete(API + "/admin/sessions/nosuchlease", headers=token),
                    200,
                ),
                ("POST", API + "/admin/reload"): (lambda: http.post(API + "/admin/reload", headers=token), 200),
                ("GET", "/admin"): (lambda: http.get("/admin"), 200),
                ("POST", "/admin/login"): (login, 303),
                ("POST", "/admin/sessions/{lease_id}/release"): (
                    lambda: http.post(
                        "/admin/sessions/nosuchlease/release", data={"csrf": page["csrf"]}, headers=origin
                    ),
                    303,
                ),
                ("POST", "/admin/logout"): (
                    lambda: http.post("/admin/logout", data={"csrf": page["csrf"]}, headers=origin),
                    303,
                ),
            }
            answers: dict[tuple[str, str], httpx.Response] = {}
            for route, (call, status) in known.items():
                if route in routes:
                    r = answers[route] = call()
                    assert r.status_code == status, (route, r.status_code, r.text[:300])
            for method, path in sorted(routes - set(known)):  # a route this file does not know yet
                answers[(method, path)] = http.request(
                    method, fill(path, values), headers=token, json={} if method in ("POST", "PUT", "PATCH") else None
                )
        assert site.proc is not None and site.proc.poll() is None, site.log()
    finally:
        site.stop()
    for route, r in answers.items():
        assert r.status_code < 500, (route, r.status_code, r.text[:300])
        assert routed(r), (route, r.status_code, r.text[:300])
    assert set(answers) == routes
    assert not set(known) - routes, f"routes gone from the license server: {sorted(set(known) - routes)}"
    assert "Traceback" not in site.log()


def test_the_route_listing_sees_included_routers_and_mounts(tmp_path: Path):
    """The listing itself: Central's included API router and /docs' static files are in it."""
    with central_app(make_settings(tmp_path / "enum")) as app:
        routes = app_routes(app.routes)
    assert ("GET", "/api/v1/tickets/{ticket}/info") in routes
    assert ("GET", "/docs/assets/{file}") in routes
    assert not any(method == "HEAD" for method, _ in routes)
