"""The reporting API through a customer's signed-in person: a customer admin sees its
customer's use, a user its own, in the body's session object (``{"token": ...}``) or the
Authorization header; nothing of another customer or firm, including through the billing
rollup. The data are test_reporting's (the source's August 2023), on real SQLite."""

from __future__ import annotations

from typing import Any

import pytest
import test_reporting
from central_helpers import FakeContainer
from test_accounts import PASSWORD, link
from test_reporting import BILLING, FIRM, LICENSE, PRODUCT, post, refused

from licentia.central.services.billing import BillingRollup

# test_reporting's fixtures: its store and the source's firm with its August 2023 uses
store = test_reporting.store
source = test_reporting.source

API = "/api/v1"
AUGUST = {"from": "2023-08-01T00:00:00", "to": "2023-08-31T23:59:59"}


def account(client: Any, firm: Any, login: str, role: str, customer: str | None) -> None:
    body = {"login": login, "name": login, "role": role, "password": PASSWORD}
    if customer is not None:
        body["customer"] = customer
    r = client.post(API + "/accounts", json=body, headers=firm.headers)
    assert r.status_code == 201, r.text


def sign_in(client: Any, login: str, now: int) -> str:
    body = {"firm_code": FIRM, "login": login, "password": PASSWORD, "link": link(FakeContainer(), FIRM, now)}
    r = client.post(API + "/cloud/sessions", json=body)
    assert r.status_code == 201, r.text
    return str(r.json()["session"])


@pytest.fixture
def people(client, store, source, clock) -> dict[str, str]:
    """An admin of customer 20230306, its user bob (with uses of his own), a staff member."""
    account(client, source, "admin@c306.example", "customer-admin", "20230306")
    account(client, source, "bob@c306.example", "customer-user", "20230306")
    account(client, source, "staff@vendor.example", "staff", None)
    two = next(t for t in source.tickets.values() if t["customer"] == "20230306")
    store.use(two, "2023-08-24T08:00:00", "2023-08-24T09:00:00", user="bob@c306.example")
    store.use(two, "2023-08-25T08:00:00", "2023-08-25T08:30:00", user="bob@c306.example")
    return {name: sign_in(client, login, clock.now) for name, login in (
        ("admin", "admin@c306.example"), ("bob", "bob@c306.example"), ("staff", "staff@vendor.example"))}  # fmt: skip


def report(client: Any, path: str, token: str, flt: dict[str, Any] | None = None, *, header: bool = False) -> Any:
    body: dict[str, Any] = {"filter": {**AUGUST, **(flt or {})}}
    if header:
        return post(client, path, {"session": {}, **body}, {"Authorization": f"Bearer {token}"})
    return post(client, path, {"session": {"token": token}, **body}, {})


def rows(r: Any, name: str) -> list[dict[str, Any]]:
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["errorCode"] == 0
    return list(body[name])


def test_a_customer_admin_sees_its_customers_use_only(client, source, people):
    vendor = rows(post(client, LICENSE, {"session": {}, "filter": AUGUST}, source.headers), "licenseUsageList")
    mine = rows(report(client, LICENSE, people["admin"]), "licenseUsageList")
    assert len(vendor) == 8 and len(mine) == 4  # the customer's two licenses: two sessions and bob's two
    tickets_306 = {t["license_id"] for t in source.tickets.values() if t["customer"] == "20230306"}
    assert {e["ticketLicenseId"] for e in mine} == tickets_306
    assert rows(report(client, LICENSE, people["admin"], header=True), "licenseUsageList") == mine
    product = rows(report(client, PRODUCT, people["admin"]), "productUsageList")
    assert {p["customer"] for p in product} == {"20230306"}
    assert sum(p["success"] for p in product) == 4


def test_a_user_sees_its_own_use_only(client, people):
    mine = rows(report(client, LICENSE, people["bob"]), "licenseUsageList")
    assert [e["userIdentification"] for e in mine] == ["bob@c306.example"] * 2
    product = rows(report(client, PRODUCT, people["bob"]), "productUsageList")
    assert [(p["user"], p["seconds"], p["success"]) for p in product] == [("bob@c306.example", 5400, 2)]
    refused(report(client, BILLING, people["bob"]), 403, 3)  # the billing view is the admin's


def test_the_billing_view_of_an_admin_with_and_without_the_rollup(app, client, people):
    live = rows(report(client, BILLING, people["admin"]), "billingList")
    assert live and {b["customer"] for b in live} == {"20230306"}
    ctx = app.state.central
    with ctx.db.session() as session:
        BillingRollup(ctx, session).refresh()
    assert rows(report(client, BILLING, people["admin"]), "billingList") == live


def test_another_customers_values_answer_as_unknown_ones(client, people, source):
    other = next(t for t in source.tickets.values() if t["customer"] == "20230301")["ticket"]
    for name, real, fake in (
        ("customerIdentification", "20230301", "29999999"),
        ("ticketId", other, "MWFQF-RCQZM-T1A2F-3W0V4-5PCE2"),
    ):
        for person in ("admin", "bob"):
            a = report(client, LICENSE, people[person], {name: real})
            b = report(client, LICENSE, people[person], {name: fake})
            refused(a, 404, 4)
            # one answer for both, status, code and words alike (only the value asked for differs)
            assert (a.status_code, a.text.replace(real, "V")) == (b.status_code, b.text.replace(fake, "V"))
    # the customer's own number is its scope again
    assert len(rows(report(client, LICENSE, people["admin"], {"customerIdentification": "20230306"}),
                    "licenseUsageList")) == 4  # fmt: skip


def test_sessions_that_may_not_see_usage(client, people, clock):
    refused(report(client, LICENSE, people["staff"]), 403, 3)  # the vendor's staff: the API key
    refused(report(client, LICENSE, "lcs_" + "x" * 43), 401, 2)
    for session in ({"token": 7}, {"token": people["admin"], "extra": 1}, {"user": "admin"}):
        r = post(client, LICENSE, {"session": session, "filter": AUGUST}, {})
        refused(r, 400, 5)
    clock.advance(31 * 86400)  # unused for longer than a device session lives
    refused(report(client, LICENSE, people["admin"]), 401, 2)
