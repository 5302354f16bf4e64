"""Tenancy: a vendor key of firm A reaches nothing of firm B, on any route.

Two firms are set up with every object a route can name. Every route of Central is
listed here: a firm-scoped route has a case that calls it with A's key on B's objects
(each call is refused with 403 or 404, shows nothing of B and changes nothing), and
the same calls made with B's key or the admin key succeed, so the refusals are about
the firm and not about a broken request. The other routes are listed as public, each
with the reason. A route added to Central without a line here fails this file.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from central_helpers import ADMIN_KEY, FakeContainer, Vendor, dump_state
from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from licentia.central.models import AuditEntry
from licentia.core import codes

API = "/api/v1"
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
A_CODE, B_CODE = 48117, 48213
NEW_CODE = 48999  # a firm code no firm has
SYNC = API + "/sync"

# B's objects, named so that nothing else in Central reads the same
B_ITEM, B_ITEM_NAME = "B-00002-201", "Bravo Seismic Suite"
B_MODULE, B_MODULE_NAME = "B-00003-201", "Bravo Seismic Addon"
B_PRODUCT = 201
B_CUSTOMER, B_CUSTOMER_NAME, B_EMAIL = "BRAVO-C-0001", "Bravo Customer Oy", "buyer@bravo.example"
B_KEY_LABEL = "bravo spare key"
B_LOGIN, B_PERSON, B_GROUP = "bravo.engineer@bravo.example", "Bravo Engineer Person", "Bravo Engineers"
B_CLOUD_ITEM, B_CLOUD_ITEM_NAME = "B-00005-202", "Bravo Cloud Suite"
# ids of the same shape that exist nowhere: a refusal must read like theirs
NO_ITEM, NO_MODULE, NO_CUSTOMER, NO_KID, NO_KEY_ID = (
    "B-09999-201",
    "B-09998-201",
    "NOBODY-0001",
    "00000000deadbeef",
    "00000000cafef00d",
)
NO_LOGIN, NO_GROUP = "nobody.0001@nowhere.example", "Nobody Group 0001"


# ---------------------------------------------------------------- the two firms


@dataclass
class World:
    """Firms A and B. B has every kind of object a route names; A has a ticket in a
    container it shares with B."""

    a: Vendor
    b: Vendor
    a_ticket: str  # activated in the shared container
    b_new: str  # ordered, never activated
    b_active: str  # activated in B's container
    b_revoked: str  # activated in B's container, then revoked
    b_blocked: str  # withdrawn from the shared container when its files were restored
    b_order: str
    b_serial: str  # a container holding licenses of B only
    shared_serial: str  # a container holding a license of each firm; B's slot is flagged
    b_kids: dict[str, str]  # B's signing keys by state: retired, previous, active, staged
    b_key_id: str  # B's vendor key
    b_spare_key_id: str
    b_spare_key: str
    b_cloud: str  # in B's person's personal cloud container
    b_cloud_new: str  # of B's cloud item, never activated
    b_cloud_serial: str
    no_ticket: str  # a well-formed ticket id no firm has
    no_serial: str  # a well-formed serial no container has

    @property
    def b_tickets(self) -> tuple[str, ...]:
        return (self.b_new, self.b_active, self.b_revoked, self.b_blocked)

    @property
    def secrets(self) -> tuple[str, ...]:
        """B's data: none of it may appear in an answer to A (unless A sent it)."""
        return (
            f"Firm {B_CODE}",  # B's name
            self.b.key, self.b_spare_key, self.b_key_id, self.b_spare_key_id, B_KEY_LABEL,
            B_ITEM, B_ITEM_NAME, B_MODULE, B_MODULE_NAME,
            B_CUSTOMER, B_CUSTOMER_NAME, B_EMAIL, B_LOGIN, B_PERSON, B_GROUP,
            *self.b_tickets, self.b_order, self.b_serial,
            B_CLOUD_ITEM, B_CLOUD_ITEM_NAME, self.b_cloud, self.b_cloud_new, self.b_cloud_serial,
            *self.b_kids.values(),
        )  # fmt: skip


def _ok(r: httpx.Response, status: int = 200) -> Any:
    assert r.status_code == status, r.text
    return r.json()


def build_world(client: Any, clock: Any) -> World:
    a, b = Vendor(client, A_CODE), Vendor(client, B_CODE)
    rows = _ok(client.get(API + "/audit", params={"firm_code": B_CODE}, headers=ADMIN))
    (b_key_id,) = [row["detail"]["key_id"] for row in rows if row["action"] == "apikey.create"]
    spare = _ok(client.post(API + "/apikeys", json={"firm_code": B_CODE, "label": B_KEY_LABEL}, headers=ADMIN), 201)

    # a base item with three product key versions whose licenses are withdrawn on
    # manipulation, a module item, a customer and an order of four tickets
    _ok(
        b.post(
            "/items",
            {
                "item_id": B_ITEM,
                "name": B_ITEM_NAME,
                "product_code": B_PRODUCT,
                "key_versions": [1, 2, 3],
                "options": {"units": 50},
                "on_manipulation": "withdraw",
            },
        ),
        201,
    )
    _ok(b.post("/items", {"item_id": B_MODULE, "name": B_MODULE_NAME, "module_of": B_ITEM, "feature_map": 0b100}), 201)
    _ok(b.post("/customers", {"number": B_CUSTOMER, "name": B_CUSTOMER_NAME, "email": B_EMAIL}), 201)
    # a person of the customer in one of its groups
    person = {"login": B_LOGIN, "name": B_PERSON, "role": "customer-user", "customer": B_CUSTOMER}
    _ok(b.post("/accounts", person), 201)
    _ok(b.post(f"/customers/{B_CUSTOMER}/groups", {"name": B_GROUP}), 201)
    _ok(client.put(f"{API}/customers/{B_CUSTOMER}/groups/{B_GROUP}/members/{B_LOGIN}", json={}, headers=b.headers))
    order = _ok(
        b.post("/tickets", {"customer": B_CUSTOMER, "items": [B_ITEM, B_MODULE], "quantity_of_licenses": 4}), 201
    )
    b_new, b_active, b_revoked, b_blocked = (t["ticket"] for t in order["tickets"])

    def activate(box: FakeContainer, ticket: str) -> None:
        box.apply(_ok(client.post(API + "/activations", json=box.request("activate", ticket=ticket, now=clock.now))))

    def sync(box: FakeContainer, firm_code: int) -> httpx.Response:
        return client.post(SYNC, json=box.request("sync", firm_code=firm_code, now=clock.now))

    b_box = FakeContainer()
    activate(b_box, b_active)
    activate(b_box, b_revoked)
    assert _ok(b.post(f"/tickets/{b_revoked}/revoke"))["state"] == "revoked"

    # the shared container: a ticket of each firm; then its files are copied, used and
    # put back, so its next sync for B forks the chain and B's slot is flagged
    (a_ticket,) = a.tickets()
    shared = FakeContainer(chained=True)
    activate(shared, a_ticket)
    activate(shared, b_blocked)
    shared.apply(_ok(sync(shared, B_CODE)))
    clock.advance(60)
    saved = (dict(shared.gen), {f: list(c) for f, c in shared.chain.items()})
    shared.apply(_ok(sync(shared, B_CODE)))
    clock.advance(60)
    shared.gen, shared.chain = saved
    assert shared.apply(_ok(sync(shared, B_CODE))).manipulation == {"rebased": [], "withdrawn": [4]}
    assert _ok(b.get(f"/tickets/{b_blocked}"))["state"] == "blocked"

    # B's signing keys: one retired, one previous, the active one and a staged one
    first = _ok(b.get(f"/firms/{B_CODE}"))["keys"][0]["kid"]
    _ok(b.post(f"/firms/{B_CODE}/keys/rotate"))
    _ok(b.post(f"/firms/{B_CODE}/keys/rotate"))
    _ok(b.post(f"/firms/{B_CODE}/keys/{first}/retire"))
    staged = client.post(f"{API}/firms/{B_CODE}/keys/rotate", params={"stage": "true"}, headers=b.headers)
    keys = _ok(staged)["keys"]
    states = [
        ("retired" if k["retired"] else "active" if k["active"] else "staged" if k["staged"] else "previous")
        for k in keys
    ]
    assert states == ["retired", "previous", "active", "staged"], states
    b_kids = {state: k["kid"] for state, k in zip(states, keys, strict=False)}

    # (last: the license ids above stay what the cases expect) a cloud item: one ticket in
    # the person's personal cloud container, one never activated
    _ok(b.post("/items", {"item_id": B_CLOUD_ITEM, "name": B_CLOUD_ITEM_NAME, "product_code": 202, "cloud": True}), 201)
    cloud_order = _ok(
        b.post("/tickets", {"customer": B_CUSTOMER, "items": [B_CLOUD_ITEM], "quantity_of_licenses": 2}), 201
    )
    b_cloud, b_cloud_new = (t["ticket"] for t in cloud_order["tickets"])
    box = _ok(b.post(f"/tickets/{b_cloud}/cloud-activation", {"login": B_LOGIN}))

    return World(
        a=a,
        b=b,
        a_ticket=a_ticket,
        b_new=b_new,
        b_active=b_active,
        b_revoked=b_revoked,
        b_blocked=b_blocked,
        b_order=order["order"],
        b_serial=b_box.serial,
        shared_serial=shared.serial,
        b_kids=b_kids,
        b_key_id=b_key_id,
        b_spare_key_id=spare["key_id"],
        b_spare_key=spare["key"],
        b_cloud=b_cloud,
        b_cloud_new=b_cloud_new,
        b_cloud_serial=box["serial"],
        no_ticket=codes.new_ticket_id(),
        no_serial=codes.new_serial(),
    )


@pytest.fixture
def world(client: Any, clock: Any) -> World:
    return build_world(client, clock)


# ---------------------------------------------------------------- calls and cases


@dataclass(frozen=True)
class Call:
    """One request under /api/v1."""

    method: str
    path: str
    params: dict[str, Any] | None = None
    body: Any = None
    #: who else makes this very call and succeeds (2xx): "b" (B's vendor key), "admin"
    control: tuple[str, ...] = ()
    #: what a successful call shows: B's data for B's call (the refused call had something
    #: to hide), A's data for A's call on its own scope (the answer is not just empty)
    shows: str | None = None
    #: (B's id in the call, an id nobody has): A's answer must read the same for both,
    #: so that a refusal does not tell whether B's object exists
    twin: tuple[str, str] | None = None

    def send(self, client: Any, headers: dict[str, str]) -> httpx.Response:
        return client.request(self.method, API + self.path, params=self.params, json=self.body, headers=headers)

    def sent(self) -> str:
        """The request as text: what the caller already knows."""
        return f"{self.path} {json.dumps(self.params)} {json.dumps(self.body)}"

    def swapped(self, old: str, new: str) -> Call:
        def swap(value: Any) -> Any:
            return json.loads(json.dumps(value).replace(old, new))

        return Call(self.method, self.path.replace(old, new), swap(self.params), swap(self.body))

    def __str__(self) -> str:
        query = f"?{'&'.join(f'{k}={v}' for k, v in self.params.items())}" if self.params else ""
        body = f" {json.dumps(self.body)}" if self.body is not None else ""
        return f"{self.method} {API}{self.path}{query}{body}"


@dataclass(frozen=True)
class Case:
    #: A's key on B's objects (or naming firm B): refused, showing and changing nothing
    refused: tuple[Call, ...]
    #: A's key on A's own scope, where B's objects are near (the same list, the same
    #: container): answered (2xx), showing nothing of B and changing nothing of B
    own: tuple[Call, ...] = ()


#: Every firm-scoped route: how to call it with firm B's objects.
CASES: dict[str, Callable[[World], Case]] = {}


def case(route: str) -> Callable[[Callable[[World], Case]], Callable[[World], Case]]:
    def register(make: Callable[[World], Case]) -> Callable[[World], Case]:
        assert route not in CASES, route
        CASES[route] = make
        return make

    return register


B, NEW = str(B_CODE), str(NEW_CODE)  # a firm code in a twin


@case("POST /api/v1/firms")
def _create_firm(w: World) -> Case:
    return Case(refused=(
        # refused as a vendor call, never answered 409: that would tell that firm B exists
        Call("POST", "/firms", body={"code": B_CODE, "name": "Taken Over"}, twin=(B, NEW)),
        Call("POST", "/firms", body={"code": NEW_CODE, "name": "Another Firm"}, control=("admin",)),
    ))  # fmt: skip


@case("GET /api/v1/firms/{code}")
def _get_firm(w: World) -> Case:
    return Case(
        refused=(Call("GET", f"/firms/{B_CODE}", control=("b", "admin"), shows=f"Firm {B_CODE}", twin=(B, NEW)),),
        own=(Call("GET", f"/firms/{A_CODE}", shows=f"Firm {A_CODE}"),),
    )


@case("PATCH /api/v1/firms/{code}")
def _update_firm(w: World) -> Case:
    return Case(
        refused=(
            Call("PATCH", f"/firms/{B_CODE}", body={"usage_retention_days": 30}, control=("b", "admin"),
                 shows=f"Firm {B_CODE}", twin=(B, NEW)),
        ),
        own=(Call("PATCH", f"/firms/{A_CODE}", body={"usage_retention_days": 400}, shows=f"Firm {A_CODE}"),),
    )  # fmt: skip


@case("GET /api/v1/firms/{code}/products/{product}/keys/{version}")
def _product_key(w: World) -> Case:
    return Case(
        refused=tuple(
            Call("GET", f"/firms/{B_CODE}/products/{B_PRODUCT}/keys/{v}", control=("b", "admin"), twin=(B, NEW))
            for v in (1, 2, 3)
        ),
        # A's own key for that product code
        own=(Call("GET", f"/firms/{A_CODE}/products/{B_PRODUCT}/keys/1", shows=f'"firm_code":{A_CODE}'),),
    )


@case("POST /api/v1/firms/{code}/keys/rotate")
def _rotate(w: World) -> Case:
    return Case(refused=(
        Call("POST", f"/firms/{B_CODE}/keys/rotate", params={"stage": "true"}, control=("b",),
             shows=w.b_kids["staged"], twin=(B, NEW)),
        Call("POST", f"/firms/{B_CODE}/keys/rotate", control=("b", "admin"), twin=(B, NEW)),
    ))  # fmt: skip


@case("POST /api/v1/firms/{code}/keys/{kid}/retire")
def _retire(w: World) -> Case:
    kids = w.b_kids
    return Case(refused=(
        Call("POST", f"/firms/{B_CODE}/keys/{kids['previous']}/retire", control=("b",), twin=(B, NEW)),
        Call("POST", f"/firms/{B_CODE}/keys/{kids['staged']}/retire", control=("b",), twin=(B, NEW)),
        Call("POST", f"/firms/{B_CODE}/keys/{kids['retired']}/retire", control=("b",), twin=(B, NEW)),
        Call("POST", f"/firms/{B_CODE}/keys/{kids['active']}/retire", twin=(B, NEW)),  # 409 for B: it signs
        # A's own firm with B's key: the key is looked up within firm A
        Call("POST", f"/firms/{A_CODE}/keys/{kids['previous']}/retire", twin=(kids["previous"], NO_KID)),
    ))  # fmt: skip


@case("POST /api/v1/apikeys")
def _create_api_key(w: World) -> Case:
    return Case(refused=(
        Call("POST", "/apikeys", body={"firm_code": B_CODE}, control=("admin",), twin=(B, NEW)),
        Call("POST", "/apikeys", body={"firm_code": B_CODE, "label": "intruder"}, control=("admin",), twin=(B, NEW)),
        Call("POST", "/apikeys", body={"role": "admin"}, control=("admin",)),
    ))  # fmt: skip


@case("POST /api/v1/apikeys/{key_id}/revoke")
def _revoke_api_key(w: World) -> Case:
    return Case(refused=(
        Call("POST", f"/apikeys/{w.b_spare_key_id}/revoke", control=("admin",), twin=(w.b_spare_key_id, NO_KEY_ID)),
        Call("POST", f"/apikeys/{w.b_key_id}/revoke", control=("admin",), twin=(w.b_key_id, NO_KEY_ID)),
    ))  # fmt: skip


@case("GET /api/v1/audit")
def _audit(w: World) -> Case:
    return Case(
        refused=(
            Call("GET", "/audit", params={"firm_code": B_CODE}, control=("b", "admin"), shows=B_ITEM, twin=(B, NEW)),
            Call("GET", "/audit", params={"firm_code": B_CODE, "limit": 1000}, control=("b", "admin"), shows=B_ITEM,
                 twin=(B, NEW)),
        ),
        own=(Call("GET", "/audit", shows="Product One"), Call("GET", "/audit", params={"limit": 1000}),
             Call("GET", "/audit", params={"firm_code": A_CODE}, shows="Product One")),
    )  # fmt: skip


@case("POST /api/v1/items")
def _create_item(w: World) -> Case:
    return Case(refused=(
        Call("POST", "/items", body={"firm_code": B_CODE, "name": "Intruder Item", "product_code": 301},
             control=("b", "admin"), twin=(B, NEW)),
        # refused as another firm's, never answered 409: that would tell that B has the item
        Call("POST", "/items", body={"firm_code": B_CODE, "item_id": B_ITEM, "name": "Intruder", "product_code": 201},
             twin=(B, NEW)),
        # a module of B's base item, made in A's firm
        Call("POST", "/items", body={"name": "Intruder Module", "module_of": B_ITEM}, control=("b",),
             twin=(B_ITEM, NO_ITEM)),
        Call("POST", "/items", body={"name": "Intruder Module", "module_of": B_MODULE}, twin=(B_MODULE, NO_MODULE)),
    ))  # fmt: skip


@case("GET /api/v1/items")
def _list_items(w: World) -> Case:
    return Case(
        refused=(
            Call("GET", "/items", params={"firm_code": B_CODE}, control=("b", "admin"), shows=B_ITEM_NAME,
                 twin=(B, NEW)),
            Call("GET", "/items", params={"firm_code": B_CODE, "limit": 1000, "offset": 1}, control=("b", "admin"),
                 shows=B_MODULE_NAME, twin=(B, NEW)),
        ),
        own=(Call("GET", "/items", shows="Product One"), Call("GET", "/items", params={"firm_code": A_CODE}),
             Call("GET", "/items", params={"limit": 1000}), Call("GET", "/items", params={"offset": 1})),
    )  # fmt: skip


@case("GET /api/v1/items/{item_id}")
def _get_item(w: World) -> Case:
    return Case(refused=(
        Call("GET", f"/items/{B_ITEM}", control=("b",), shows=B_ITEM_NAME, twin=(B_ITEM, NO_ITEM)),
        Call("GET", f"/items/{B_MODULE}", control=("b",), shows=B_MODULE_NAME, twin=(B_MODULE, NO_MODULE)),
        Call("GET", f"/items/{B_ITEM}", params={"firm_code": B_CODE}, control=("b", "admin"), shows=B_ITEM_NAME,
             twin=(B, NEW)),
    ))  # fmt: skip


@case("POST /api/v1/customers")
def _create_customer(w: World) -> Case:
    return Case(refused=(
        Call("POST", "/customers", body={"firm_code": B_CODE, "name": "Intruder Customer"}, control=("b", "admin"),
             twin=(B, NEW)),
        # refused as another firm's, never answered 409: that would tell that B has the customer
        Call("POST", "/customers", body={"firm_code": B_CODE, "number": B_CUSTOMER, "name": "Intruder"},
             twin=(B, NEW)),
    ))  # fmt: skip


@case("GET /api/v1/customers")
def _list_customers(w: World) -> Case:
    return Case(
        refused=(
            Call("GET", "/customers", params={"firm_code": B_CODE}, control=("b", "admin"), shows=B_EMAIL,
                 twin=(B, NEW)),
            Call("GET", "/customers", params={"firm_code": B_CODE, "limit": 1000, "offset": 0},
                 control=("b", "admin"), shows=B_EMAIL, twin=(B, NEW)),
        ),
        own=(Call("GET", "/customers", shows="a@example.com"), Call("GET", "/customers", params={"firm_code": A_CODE}),
             Call("GET", "/customers", params={"limit": 1000}), Call("GET", "/customers", params={"offset": 1})),
    )  # fmt: skip


@case("GET /api/v1/customers/{number}")
def _get_customer(w: World) -> Case:
    return Case(refused=(
        Call("GET", f"/customers/{B_CUSTOMER}", control=("b",), shows=B_EMAIL, twin=(B_CUSTOMER, NO_CUSTOMER)),
        Call("GET", f"/customers/{B_CUSTOMER}", params={"firm_code": B_CODE}, control=("b", "admin"), shows=B_EMAIL,
             twin=(B, NEW)),
    ))  # fmt: skip


@case("POST /api/v1/tickets")
def _order(w: World) -> Case:
    return Case(refused=(
        Call("POST", "/tickets", body={"firm_code": B_CODE, "customer": B_CUSTOMER, "items": [B_ITEM, B_MODULE]},
             control=("b", "admin"), twin=(B, NEW)),
        # A's firm, with one of B's objects in the order
        Call("POST", "/tickets", body={"customer": B_CUSTOMER, "items": [w.a.item]}, twin=(B_CUSTOMER, NO_CUSTOMER)),
        Call("POST", "/tickets", body={"customer": w.a.customer, "items": [B_ITEM]}, twin=(B_ITEM, NO_ITEM)),
        Call("POST", "/tickets", body={"customer": w.a.customer, "items": [w.a.item, B_MODULE]},
             twin=(B_MODULE, NO_MODULE)),
    ))  # fmt: skip


@case("GET /api/v1/tickets")
def _list_tickets(w: World) -> Case:
    return Case(
        refused=(
            Call("GET", "/tickets", params={"firm_code": B_CODE}, control=("b", "admin"), shows=w.b_new,
                 twin=(B, NEW)),
            Call("GET", "/tickets", params={"firm_code": B_CODE, "state": "blocked", "limit": 1000},
                 control=("b", "admin"), shows=w.b_blocked, twin=(B, NEW)),
            # A's firm, filtered by B's customer or item: a filter the firm does not have is 404
            Call("GET", "/tickets", params={"customer": B_CUSTOMER}, control=("b",), shows=w.b_new,
                 twin=(B_CUSTOMER, NO_CUSTOMER)),
            Call("GET", "/tickets", params={"item": B_ITEM}, control=("b",), shows=w.b_new, twin=(B_ITEM, NO_ITEM)),
            Call("GET", "/tickets", params={"item": B_MODULE, "state": "activated"}, control=("b",),
                 shows=w.b_active, twin=(B_MODULE, NO_MODULE)),
        ),
        # A's tickets only, though one is active in the container B shares
        own=(Call("GET", "/tickets", shows=w.a_ticket),
             Call("GET", "/tickets", params={"firm_code": A_CODE, "limit": 1000}, shows=w.a_ticket),
             Call("GET", "/tickets", params={"state": "activated"}, shows=w.shared_serial),
             Call("GET", "/tickets", params={"state": "blocked"}),
             Call("GET", "/tickets", params={"state": "revoked"}),
             Call("GET", "/tickets", params={"customer": w.a.customer, "item": w.a.item}, shows=w.a_ticket)),
    )  # fmt: skip


@case("GET /api/v1/tickets/{ticket}")
def _get_ticket(w: World) -> Case:
    return Case(
        refused=tuple(Call("GET", f"/tickets/{t}", control=("b", "admin"), shows=B_CUSTOMER, twin=(t, w.no_ticket))
                      for t in w.b_tickets),
        own=(Call("GET", f"/tickets/{w.a_ticket}", shows=w.shared_serial),),  # active in the container B shares
    )  # fmt: skip


@case("POST /api/v1/tickets/{ticket}/revoke")
def _revoke_ticket(w: World) -> Case:
    return Case(refused=tuple(Call("POST", f"/tickets/{t}/revoke", control=("b",), twin=(t, w.no_ticket))
                              for t in w.b_tickets))  # fmt: skip


@case("GET /api/v1/containers")
def _list_containers(w: World) -> Case:
    return Case(
        refused=(
            Call("GET", "/containers", params={"firm_code": B_CODE}, control=("b", "admin"), shows=w.b_serial,
                 twin=(B, NEW)),
            Call("GET", "/containers", params={"firm_code": B_CODE, "limit": 1000, "offset": 0},
                 control=("b", "admin"), shows=w.b_serial, twin=(B, NEW)),
        ),
        # the shared container, as A's slot; never B's own container
        own=(Call("GET", "/containers", shows=w.shared_serial),
             Call("GET", "/containers", params={"firm_code": A_CODE}, shows=w.shared_serial),
             Call("GET", "/containers", params={"limit": 1000}, shows=w.shared_serial)),
    )  # fmt: skip


@case("GET /api/v1/containers/{serial}")
def _get_container(w: World) -> Case:
    return Case(
        refused=(
            Call("GET", f"/containers/{w.b_serial}", control=("b",), shows=w.b_active, twin=(w.b_serial, w.no_serial)),
            Call("GET", f"/containers/{w.b_serial}", params={"firm_code": B_CODE}, control=("b", "admin"),
                 shows=w.b_active, twin=(B, NEW)),
            Call("GET", f"/containers/{w.shared_serial}", params={"firm_code": B_CODE}, control=("b", "admin"),
                 shows=w.b_blocked, twin=(B, NEW)),
        ),
        # A's slot of the shared container: A's ticket only, and none of B's flags
        own=(Call("GET", f"/containers/{w.shared_serial}", shows=w.a_ticket),
             Call("GET", f"/containers/{w.shared_serial}", params={"firm_code": A_CODE}, shows=w.a_ticket)),
    )  # fmt: skip


@case("POST /api/v1/containers/{serial}/clear")
def _clear_container(w: World) -> Case:
    return Case(
        refused=(
            Call("POST", f"/containers/{w.b_serial}/clear", control=("b",), twin=(w.b_serial, w.no_serial)),
            Call("POST", f"/containers/{w.b_serial}/clear", body={"firm_code": B_CODE}, control=("b", "admin"),
                 twin=(B, NEW)),
            Call("POST", f"/containers/{w.shared_serial}/clear", body={"firm_code": B_CODE}, control=("b",),
                 shows=w.b_blocked, twin=(B, NEW)),
        ),
        # clearing A's slot of the shared container leaves B's flag and B's blocked ticket
        own=(Call("POST", f"/containers/{w.shared_serial}/clear", shows=w.shared_serial),),
    )  # fmt: skip


def _reporting(path: str) -> Callable[[World], Case]:
    """A reporting view: filters that name B's firm, customer, item or ticket are answered
    like ones nobody has; A's own reports are answered."""

    def make(w: World) -> Case:
        def call(flt: dict[str, Any], **kw: Any) -> Call:
            return Call("POST", path, body={"session": {}, "filter": flt}, **kw)

        return Case(
            refused=(
                call({"firmCode": B_CODE}, control=("b", "admin"), twin=(B, NEW)),
                call({"customerIdentification": B_CUSTOMER}, control=("b",), twin=(B_CUSTOMER, NO_CUSTOMER)),
                call({"itemIdentification": B_ITEM}, control=("b",), twin=(B_ITEM, NO_ITEM)),
                call({"itemIdentification": B_MODULE}, control=("b",), twin=(B_MODULE, NO_MODULE)),
                call({"ticketId": w.b_active}, control=("b", "admin"), twin=(w.b_active, w.no_ticket)),
            ),
            own=(call({}), call({"firmCode": A_CODE}), call({"productCode": B_PRODUCT}),
                 call({"customerIdentification": w.a.customer, "itemIdentification": w.a.item})),
        )  # fmt: skip

    return make


@case("POST /api/v1/accounts")
def _create_account(w: World) -> Case:
    person = {"login": "intruder@alpha.example", "name": "Intruder", "role": "customer-user"}
    return Case(refused=(
        Call("POST", "/accounts", body={**person, "firm_code": B_CODE, "customer": B_CUSTOMER}, control=("b",),
             twin=(B, NEW)),
        # a person of B's customer, made in A's firm
        Call("POST", "/accounts", body={**person, "customer": B_CUSTOMER}, twin=(B_CUSTOMER, NO_CUSTOMER)),
    ))  # fmt: skip


@case("GET /api/v1/accounts")
def _list_accounts(w: World) -> Case:
    return Case(
        refused=(
            Call("GET", "/accounts", params={"firm_code": B_CODE}, control=("b", "admin"), shows=B_LOGIN,
                 twin=(B, NEW)),
            Call("GET", "/accounts", params={"customer": B_CUSTOMER}, control=("b",), shows=B_LOGIN,
                 twin=(B_CUSTOMER, NO_CUSTOMER)),
        ),
        own=(Call("GET", "/accounts"), Call("GET", "/accounts", params={"firm_code": A_CODE})),
    )  # fmt: skip


@case("GET /api/v1/accounts/{login}")
def _get_account(w: World) -> Case:
    return Case(refused=(
        Call("GET", f"/accounts/{B_LOGIN}", control=("b",), shows=B_GROUP, twin=(B_LOGIN, NO_LOGIN)),
        Call("GET", f"/accounts/{B_LOGIN}", params={"firm_code": B_CODE}, control=("b", "admin"), shows=B_PERSON,
             twin=(B, NEW)),
    ))  # fmt: skip


@case("PATCH /api/v1/accounts/{login}")
def _update_account(w: World) -> Case:
    return Case(refused=(
        Call("PATCH", f"/accounts/{B_LOGIN}", body={"disabled": True}, control=("b",), twin=(B_LOGIN, NO_LOGIN)),
        Call("PATCH", f"/accounts/{B_LOGIN}", body={"firm_code": B_CODE, "name": "Taken Over"},
             control=("b", "admin"), twin=(B, NEW)),
    ))  # fmt: skip


@case("POST /api/v1/accounts/{login}/reset")
def _reset_account(w: World) -> Case:
    return Case(refused=(
        Call("POST", f"/accounts/{B_LOGIN}/reset", control=("b",), twin=(B_LOGIN, NO_LOGIN)),
        Call("POST", f"/accounts/{B_LOGIN}/reset", params={"firm_code": B_CODE}, control=("b", "admin"),
             twin=(B, NEW)),
    ))  # fmt: skip


@case("POST /api/v1/customers/{number}/groups")
def _create_group(w: World) -> Case:
    return Case(refused=(
        Call("POST", f"/customers/{B_CUSTOMER}/groups", body={"name": "Intruders"}, control=("b",),
             twin=(B_CUSTOMER, NO_CUSTOMER)),
        Call("POST", f"/customers/{B_CUSTOMER}/groups", body={"name": "Intruders 2", "firm_code": B_CODE},
             control=("admin",), twin=(B, NEW)),
    ))  # fmt: skip


@case("GET /api/v1/groups")
def _list_groups(w: World) -> Case:
    return Case(
        refused=(
            Call("GET", "/groups", params={"firm_code": B_CODE}, control=("b", "admin"), shows=B_GROUP,
                 twin=(B, NEW)),
            Call("GET", "/groups", params={"customer": B_CUSTOMER}, control=("b",), shows=B_GROUP,
                 twin=(B_CUSTOMER, NO_CUSTOMER)),
        ),
        own=(Call("GET", "/groups"),),
    )  # fmt: skip


@case("GET /api/v1/customers/{number}/groups/{name}")
def _get_group(w: World) -> Case:
    return Case(refused=(
        Call("GET", f"/customers/{B_CUSTOMER}/groups/{B_GROUP}", control=("b",), shows=B_LOGIN,
             twin=(B_CUSTOMER, NO_CUSTOMER)),
        Call("GET", f"/customers/{B_CUSTOMER}/groups/{B_GROUP}", params={"firm_code": B_CODE},
             control=("b", "admin"), shows=B_LOGIN, twin=(B, NEW)),
    ))  # fmt: skip


@case("PUT /api/v1/customers/{number}/groups/{name}/members/{login}")
def _put_member(w: World) -> Case:
    path = f"/customers/{B_CUSTOMER}/groups/{B_GROUP}/members/{B_LOGIN}"
    return Case(refused=(
        Call("PUT", path, body={"admin": True}, control=("b",), shows=B_LOGIN, twin=(B_CUSTOMER, NO_CUSTOMER)),
        Call("PUT", path, body={"admin": True, "firm_code": B_CODE}, control=("b", "admin"), twin=(B, NEW)),
    ))  # fmt: skip


@case("DELETE /api/v1/customers/{number}/groups/{name}/members/{login}")
def _delete_member(w: World) -> Case:
    path = f"/customers/{B_CUSTOMER}/groups/{B_GROUP}/members/{B_LOGIN}"
    return Case(refused=(
        Call("DELETE", path, params={"firm_code": B_CODE}, twin=(B, NEW)),
        Call("DELETE", path, control=("b",), twin=(B_CUSTOMER, NO_CUSTOMER)),
    ))  # fmt: skip


@case("POST /api/v1/customers/{number}/groups/{name}/reset")
def _reset_group(w: World) -> Case:
    return Case(refused=(
        Call("POST", f"/customers/{B_CUSTOMER}/groups/{B_GROUP}/reset", control=("b",), shows=B_GROUP,
             twin=(B_CUSTOMER, NO_CUSTOMER)),
        Call("POST", f"/customers/{B_CUSTOMER}/groups/{B_GROUP}/reset", params={"firm_code": B_CODE},
             control=("b", "admin"), twin=(B, NEW)),
    ))  # fmt: skip


@case("GET /api/v1/accounts/{login}/cloud")
def _account_cloud(w: World) -> Case:
    return Case(refused=(
        Call("GET", f"/accounts/{B_LOGIN}/cloud", control=("b",), shows=w.b_cloud_serial, twin=(B_LOGIN, NO_LOGIN)),
        Call("GET", f"/accounts/{B_LOGIN}/cloud", params={"firm_code": B_CODE}, control=("b", "admin"),
             shows=w.b_cloud, twin=(B, NEW)),
    ))  # fmt: skip


@case("GET /api/v1/customers/{number}/groups/{name}/cloud")
def _group_cloud(w: World) -> Case:
    # B's group has no cloud container: B's own call answers 404 too, so no control
    return Case(refused=(
        Call("GET", f"/customers/{B_CUSTOMER}/groups/{B_GROUP}/cloud", twin=(B_CUSTOMER, NO_CUSTOMER)),
        Call("GET", f"/customers/{B_CUSTOMER}/groups/{B_GROUP}/cloud", params={"firm_code": B_CODE},
             twin=(B, NEW)),
        Call("POST", f"/tickets/{w.b_cloud_new}/cloud-activation", body={"login": B_LOGIN}, control=("b",)),
    ))  # fmt: skip


@case("POST /api/v1/tickets/{ticket}/cloud-activation")
def _cloud_activation(w: World) -> Case:
    return Case(refused=(
        # B's ticket into B's person's container, with A's key: neither is A's
        Call("POST", f"/tickets/{w.b_cloud_new}/cloud-activation", body={"login": B_LOGIN}, control=("b",),
             shows=w.b_cloud_serial, twin=(B_LOGIN, NO_LOGIN)),
        Call("POST", f"/tickets/{w.b_cloud_new}/cloud-activation",
             body={"customer": B_CUSTOMER, "group": B_GROUP, "firm_code": B_CODE}, twin=(B, NEW)),
    ))  # fmt: skip


@case("POST /api/v1/tickets/{ticket}/cloud-deactivation")
def _cloud_deactivation(w: World) -> Case:
    return Case(refused=(
        Call("POST", f"/tickets/{w.b_cloud}/cloud-deactivation", params={"firm_code": B_CODE}, twin=(B, NEW)),
        Call("POST", f"/tickets/{w.b_cloud}/cloud-deactivation", control=("b",), twin=(w.b_cloud, w.no_ticket)),
    ))  # fmt: skip


for _view in ("license-usage", "product-usage", "billing"):
    case(f"POST /api/v1/reporting/{_view}")(_reporting(f"/reporting/{_view}"))


#: Routes no vendor key scopes: they take no API key, or name no firm.
PUBLIC = {
    "GET /health": "liveness: names no firm",
    "GET /ready": "readiness: the database answers and its schema revision, names no firm",
    "GET /api/v1/firms/{code}/public-key": "a firm's public keys are published to anyone, for pinning in apps",
    "GET /api/v1/tickets/{ticket}/info": "the activation look-up: whoever holds a ticket id sees its firm, "
    "product, level and state; unknown ids count as failed attempts (test_activation.py)",
    # the activation protocol: authorized by the ticket id and the container's signed
    # request or receipt, never by an API key (test_activation.py)
    "POST /api/v1/activations": "the protocol: a ticket id and a container-signed request",
    "POST /api/v1/sync": "the protocol: a container-signed request, checked against the container's key",
    "POST /api/v1/reports": "the protocol: a container-signed request, checked against the container's key",
    "POST /api/v1/consumptions": "the protocol: a container-signed consumption, checked against the container's key",
    "POST /api/v1/deactivations": "the protocol: the container's signed receipt",
    "POST /api/v1/usage-uploads": "the protocol: a license server's usage log, signed with its container's key "
    "(test_usage_upload.py)",
    # a device signs in: authorized by the device's container-signed link and the person's
    # password or browser confirmation; then by the session, which names its account and
    # firm (test_accounts.py: two firms' people, each call of one refused to the other)
    "POST /api/v1/cloud/device-codes": "a device asks to sign in: its container-signed link (test_accounts.py)",
    "POST /api/v1/cloud/token": "a device polls with its secret device code (test_accounts.py)",
    "POST /api/v1/cloud/sessions": "a password sign-in, within the firm it names (test_accounts.py)",
    "GET /api/v1/cloud/me": "a session: its own account (test_accounts.py)",
    "POST /api/v1/cloud/sign-out": "a session: its own account (test_accounts.py)",
    "GET /api/v1/cloud/devices": "a session: its own account (test_accounts.py)",
    "DELETE /api/v1/cloud/devices/{device}": "a session: its own account's devices (test_accounts.py)",
    "POST /api/v1/cloud/password": "a session: its own account (test_accounts.py)",
    "GET /api/v1/cloud/groups": "a session: its customer's groups (test_accounts.py)",
    "PUT /api/v1/cloud/groups/{name}/members/{login}": "a session: groups it administers (test_accounts.py)",
    "DELETE /api/v1/cloud/groups/{name}/members/{login}": "a session: groups it administers (test_accounts.py)",
    "POST /api/v1/cloud/groups/{name}/reset": "a session: groups it administers (test_accounts.py)",
    "GET /api/v1/cloud/licenses": "a session: its own and its groups' cloud containers (test_cloud_containers.py)",
    "POST /api/v1/cloud/groups/{name}/licenses": "a session: groups it administers (test_cloud_containers.py)",
    "DELETE /api/v1/cloud/groups/{name}/licenses/{ticket}": "a session: groups it administers "
    "(test_cloud_containers.py)",
    "GET /api/v1/cloud/challenge": "a nonce for a device's machine proof: names nothing (test_cloud_leases.py)",
    "POST /api/v1/cloud/leases": "a session: its own and its groups' cloud licenses (test_cloud_leases.py)",
    "GET /api/v1/cloud/leases": "a session: its own devices' leases (test_cloud_leases.py)",
    "POST /api/v1/cloud/leases/{lease_id}/renew": "a session: its own device's leases (test_cloud_leases.py)",
    "DELETE /api/v1/cloud/leases/{lease_id}": "a session: its own device's leases (test_cloud_leases.py)",
    "POST /api/v1/cloud/leases/{lease_id}/return": "a session: its own device's leases (test_cloud_leases.py)",
    "POST /api/v1/cloud/groups/{group}/proxies": "a session: groups it administers (test_cloud_proxies.py)",
    "GET /api/v1/cloud/groups/{group}/proxies": "a session: groups it administers (test_cloud_proxies.py)",
    "DELETE /api/v1/cloud/groups/{group}/proxies/{name}": "a session: groups it administers (test_cloud_proxies.py)",
    "POST /api/v1/cloud/proxy/link": "a one-time link code of the firm it names and a container-signed request "
    "(test_cloud_proxies.py)",
    "POST /api/v1/cloud/proxy/refresh": "a proxy's token and its bound container's signed request "
    "(test_cloud_proxies.py)",
    "GET /api/v1/cloud/proxy/trigger": "a proxy's token: its own group (test_cloud_proxies.py)",
    "POST /api/v1/cloud/proxy/unlink": "a proxy's token: itself (test_cloud_proxies.py)",
    "POST /api/v1/user/login": "a person's sign-in, within the firm it names (test_user_licensing.py)",
    "POST /api/v1/user/logout": "a user session: its own (test_user_licensing.py)",
    "POST /api/v1/user/licenses": "a user session: its own and its groups' licenses (test_user_licensing.py)",
    "POST /api/v1/user/check": "a user session: its own and its groups' licenses (test_user_licensing.py)",
    "POST /api/v1/user/consume": "a user session: its own and its groups' licenses (test_user_licensing.py)",
    "POST /api/v1/user/access": "a user session: its own and its groups' licenses (test_user_licensing.py)",
    "POST /api/v1/user/renew": "a user session: its own leases (test_user_licensing.py)",
    "POST /api/v1/user/release": "a user session: its own leases (test_user_licensing.py)",
    "GET /cloud/device": "the browser page of a device sign-in: a web session (test_accounts.py)",
    "POST /cloud/device/sign-in": "the browser's sign-in: login and password, in the firm the code names",
    "POST /cloud/device/confirm": "a web session, its CSRF token and Central's origin (test_accounts.py)",
    "POST /cloud/device/sign-out": "a web session, its CSRF token and Central's origin (test_accounts.py)",
    # the API's own description
    "GET /openapi.json": "the API description",
    "GET /docs": "the API description, as a page",
    "GET /docs/oauth2-redirect": "part of that page",
    "MOUNT /docs/assets": "the scripts and styles of that page: static files",
}

#: Cases where Central answers otherwise than "403 or 404": the case fails until Central
#: changes, and then must leave this list (strict).
#: routes known to answer a cross-firm call otherwise than 403/404 (none now; a case listed
#: here is a strict expected failure, so it fails as soon as the route is fixed)
KNOWN: dict[str, str] = {}


# ---------------------------------------------------------------- the routes of the app

#: Path parameters that name a firm or one of its objects.
SCOPING_PATH = {"code", "item_id", "number", "ticket", "serial", "key_id", "kid", "login"}
#: Query parameters and body fields that name a firm.
SCOPING_FIELDS = {"firm_code", "code"}


def app_routes(app: Any) -> Iterator[tuple[str, Any]]:
    """Every route of the app as "METHOD /path", with its route object (HEAD left out:
    it answers as GET); a mounted app as "MOUNT /path", since it may serve anything
    below its path. Included routers are walked into."""
    try:
        from fastapi.routing import iter_route_contexts
    except ImportError:  # FastAPI that keeps included routes flat in app.routes
        routes: list[Any] = list(app.routes)
    else:
        routes = list(iter_route_contexts(app.routes))
    for route in routes:
        if not route.methods:
            yield f"MOUNT {route.path}", route
            continue
        for method in sorted(set(route.methods) - {"HEAD"}):
            yield f"{method} {route.path}", route


def _fields(schema: dict[str, Any], doc: dict[str, Any]) -> set[str]:
    """The top-level fields of a request body schema, through $ref and anyOf/oneOf/allOf."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return _fields(doc["components"]["schemas"][name], doc)
    out = set(schema.get("properties", {}))
    for key in ("anyOf", "oneOf", "allOf"):
        for part in schema.get(key, []):
            out |= _fields(part, doc)
    return out


def firm_scoped(app: Any) -> set[str]:
    """The routes that name a firm or a firm's object: in the path, the query or the body."""
    doc = app.openapi()
    out = set()
    for route, _ in app_routes(app):
        method, path = route.split(" ", 1)
        named = set(re.findall(r"{(\w+)}", path)) & SCOPING_PATH
        op = doc["paths"].get(path, {}).get(method.lower(), {})
        query = {p["name"] for p in op.get("parameters", []) if p["in"] == "query"}
        body: set[str] = set()
        for content in op.get("requestBody", {}).get("content", {}).values():
            body |= _fields(content.get("schema", {}), doc)
        if named or (query | body) & SCOPING_FIELDS:
            out.add(route)
    return out


def test_every_firm_scoped_route_has_a_case(app):
    routes = {route for route, _ in app_routes(app)}
    scoped = firm_scoped(app)
    # the classification itself: a path id, a query firm_code, a body firm_code
    assert {
        "GET /api/v1/tickets/{ticket}",
        "GET /api/v1/items",
        "POST /api/v1/tickets",
        "POST /api/v1/containers/{serial}/clear",
        "GET /api/v1/audit",
    } <= scoped
    missing = sorted(scoped - set(CASES) - set(PUBLIC))
    assert not missing, f"firm-scoped routes with no tenancy case in this file: {missing}"
    # every other route is named too, so a new route is classified by hand
    unlisted = sorted(routes - set(CASES) - set(PUBLIC))
    assert not unlisted, f"routes neither walked nor listed public in this file: {unlisted}"
    stale = sorted((set(CASES) | set(PUBLIC) | set(KNOWN)) - routes)
    assert not stale, f"routes listed in this file that Central no longer has: {stale}"
    assert not set(CASES) & set(PUBLIC)
    assert set(KNOWN) <= set(CASES)


# ---------------------------------------------------------------- the checks


def _last_audit_id(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.coalesce(func.max(AuditEntry.id), 0))).scalar_one())


def _audited_since(engine: Engine, last: int) -> list[tuple[int | None, str]]:
    with engine.connect() as conn:
        stmt = select(AuditEntry.firm_code, AuditEntry.action).where(AuditEntry.id > last).order_by(AuditEntry.id)
        return [tuple(row) for row in conn.execute(stmt)]  # type: ignore[misc]


def _shown(w: World, call: Call, r: httpx.Response) -> list[str]:
    """B's data in the answer, apart from what the call itself sent."""
    sent = call.sent()
    return [s for s in w.secrets if s in r.text and s not in sent]


def refusal_problems(client: Any, engine: Engine, w: World, call: Call, *, status: bool = True) -> list[str]:
    """What is wrong with A's answer to a call on B's objects: not refused (with
    ``status``), B's data shown, an audit row written, an answer that tells B's
    object from one that does not exist."""
    last = _last_audit_id(engine)
    r = call.send(client, w.a.headers)
    problems = []
    if r.status_code >= 500 or (status and r.status_code not in (403, 404)):
        problems.append(f"{call}: {r.status_code}, not 403 or 404: {r.text[:400]}")
    if shown := _shown(w, call, r):
        problems.append(f"{call}: the answer shows firm {B_CODE}'s {shown}: {r.text[:400]}")
    if audited := _audited_since(engine, last):
        problems.append(f"{call}: refused, yet audited: {audited}")
    if call.twin:
        real, fake = call.twin
        t = call.swapped(real, fake).send(client, w.a.headers)
        if (t.status_code, t.text.replace(fake, real)) != (r.status_code, r.text):
            problems.append(
                f"{call}: answered unlike the same call naming {fake}, which exists nowhere: "
                f"{r.status_code} {r.text[:300]} / {t.status_code} {t.text[:300]}"
            )
    return problems


def own_problems(client: Any, engine: Engine, w: World, call: Call) -> list[str]:
    """What is wrong with A's answer on its own scope: not answered, not showing A's
    data, B's data shown, an audit row of another firm."""
    last = _last_audit_id(engine)
    r = call.send(client, w.a.headers)
    problems = []
    if not 200 <= r.status_code < 300:
        problems.append(f"{call}: {r.status_code} on firm {A_CODE}'s own scope: {r.text[:400]}")
    elif call.shows and call.shows not in r.text:
        problems.append(f"{call}: firm {A_CODE}'s own answer does not show {call.shows}: {r.text[:400]}")
    if shown := _shown(w, call, r):
        problems.append(f"{call}: the answer shows firm {B_CODE}'s {shown}: {r.text[:400]}")
    if other := [row for row in _audited_since(engine, last) if row[0] != A_CODE]:
        problems.append(f"{call}: audited for another firm: {other}")
    return problems


class NotRefused(AssertionError):
    """Firm A's key got an answer on firm B that it should not have."""


def _changed_tables(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    return sorted(t for t in before.keys() | after.keys() if before.get(t) != after.get(t))


def control_problems(client: Any, w: World, c: Case) -> list[str]:
    """What is wrong with the same calls made by B's key or the admin key: not answered
    (2xx), or not showing what they should."""
    controls = [(call, who) for call in c.refused for who in call.control]
    if not controls:
        return [f"no call of this case that firm {B_CODE} or the admin makes"]
    problems = []
    for call, who in controls:
        r = call.send(client, w.b.headers if who == "b" else ADMIN)
        if not 200 <= r.status_code < 300:
            problems.append(f"{call} with the {who} key: {r.status_code} {r.text[:400]}")
        elif call.shows and call.shows not in r.text:
            problems.append(f"{call} with the {who} key does not show {call.shows}: {r.text[:400]}")
    return problems


def _route_params() -> list[Any]:
    # a known case fails only on its refusals: a failing control is reported as a failure
    return [
        pytest.param(route, id=route, marks=pytest.mark.xfail(strict=True, raises=NotRefused, reason=KNOWN[route]))
        if route in KNOWN
        else pytest.param(route, id=route)
        for route in CASES
    ]


@pytest.mark.parametrize("route", _route_params())
def test_firm_a_is_refused_where_firm_b_is_answered(route, client, engine, world):
    """A's calls on B's objects, then the same calls by B (or the admin) on one Central."""
    c = CASES[route](world)
    before = dump_state(engine)
    problems = []
    for call in c.refused:
        problems += refusal_problems(client, engine, world, call)
    for call in c.own:
        problems += own_problems(client, engine, world, call)
    if changed := _changed_tables(before, dump_state(engine)):
        problems.append(f"firm {A_CODE}'s calls changed the tables {changed}")
    controls = control_problems(client, world, c)
    assert not controls, "\n".join(["the same calls by firm B or the admin:", *controls, "firm A:", *problems])
    if problems:
        raise NotRefused("\n".join(problems))


def test_the_whole_walk_changes_nothing(client, engine, world):
    """Every call of every case, one after the other on one Central: each refused (the
    known cases: still showing nothing), and nothing changed at the end."""
    before = dump_state(engine)
    problems = []
    for route, make in CASES.items():
        c = make(world)
        for call in c.refused:
            problems += refusal_problems(client, engine, world, call, status=route not in KNOWN)
        for call in c.own:
            problems += own_problems(client, engine, world, call)
    assert not problems, "\n".join(problems)
    after = dump_state(engine)
    assert after == before, f"the walk changed the tables {_changed_tables(before, after)}"
