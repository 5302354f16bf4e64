"""User licensing over REST (/api/v1/user): a person signs in without a device, lists its
cloud licenses, checks one and consumes units under an idempotency key. Real Central
in-process on SQLite; the concurrent consumes through two Central processes run on
PostgreSQL."""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx
import pytest
from central_helpers import ADMIN_KEY, MASTER_KEY, dump_state
from fastapi.testclient import TestClient
from sqlalchemy import select
from test_accounts import PASSWORD, bearer, ok
from test_cloud_containers import Shop

from licentia.central.models import UsageEvent as UsageRow
from tests.conftest import central_process

API = "/api/v1"
FIRM = 63201


def login(client: Any, who: str = "ada@example.com", firm: int = FIRM) -> dict[str, Any]:
    r = client.post(API + "/user/login", json={"firm_code": firm, "login": who, "password": PASSWORD})
    assert r.status_code == 201, r.text
    return dict(r.json()["session"])


@pytest.fixture
def shop(client: TestClient) -> Shop:
    s = Shop(client, FIRM)
    item = {"name": "Metered", "product_code": 21, "cloud": True, "feature_map": 3, "options": {"units": 10}}
    s.metered = ok(s.vendor.post("/items", item), 201)["item_id"]
    return s


def test_a_person_signs_in_lists_checks_and_consumes(client, shop, engine):
    (plain,) = shop.tickets()
    (metered,) = shop.tickets(item=shop.metered)
    ok(shop.activate(plain, login="ada@example.com"))
    ok(shop.activate(metered, customer=shop.customer, group="Engineering"))
    session = login(client)
    assert session["token"].startswith("lcs_") and session["expires"] > session["idle_expiry"]
    mine = ok(client.post(API + "/user/licenses", json={"session": session}))
    assert [(x["product_code"], x["units_left"], x["container"]) for x in mine] == [
        (9, None, "personal"),
        (21, 10, "group Engineering"),
    ]
    # the session in the Authorization header does the same
    assert ok(client.post(API + "/user/licenses", json={}, headers=bearer(session["token"]))) == mine

    body = {"session": session, "firm_code": FIRM, "product_code": 21}
    assert ok(client.post(API + "/user/check", json=body))["allowed"] is True
    missing = ok(client.post(API + "/user/check", json={**body, "feature_code": 4}))
    assert missing["allowed"] is False and missing["error"]["type"] == "FeatureNotLicensed"
    assert missing["error"]["code"] == 15  # the runtime's code for it
    absent = ok(client.post(API + "/user/check", json={**body, "product_code": 77}))
    assert absent["error"]["type"] == "LicenseNotFound" and absent["error"]["code"] == 10

    first = ok(client.post(API + "/user/consume", json={**body, "units": 4, "idempotency_key": "k1"}))
    assert (first["units"], first["units_left"]) == (4, 6)
    again = ok(client.post(API + "/user/consume", json={**body, "units": 4, "idempotency_key": "k1"}))
    assert again == first  # a retry: the same answer, nothing charged twice
    before = dump_state(engine)
    reused = client.post(API + "/user/consume", json={**body, "units": 5, "idempotency_key": "k1"})
    assert reused.status_code == 409 and reused.json()["error"]["code"] == "idempotency_key_reused"
    too_many = client.post(API + "/user/consume", json={**body, "units": 7, "idempotency_key": "k2"})
    assert too_many.status_code == 409 and too_many.json()["error"]["code"] == "units_exhausted"
    no_key = client.post(API + "/user/consume", json={**body, "units": 1})
    assert no_key.status_code == 422 and "idempotency_key" in no_key.json()["error"]["message"]  # required
    assert dump_state(engine) == before
    left = ok(client.post(API + "/user/licenses", json={"session": session}))[1]["units_left"]
    assert left == 6
    assert ok(client.post(API + "/user/check", json={**body}))["allowed"] is True

    with engine.connect() as conn:  # each check and the consumption: rows of the usage store, the person's
        rows = conn.execute(
            select(UsageRow.units, UsageRow.success, UsageRow.fail, UsageRow.invalid, UsageRow.product_code)
            .where(UsageRow.source == "user", UsageRow.user_ident == "ada@example.com")
            .order_by(UsageRow.id)
        ).all()
    assert [tuple(r) for r in rows] == [
        (0, 1, 0, 0, 21),  # allowed
        (0, 0, 1, 0, 21),  # a feature not licensed
        (0, 0, 0, 1, 77),  # no license
        (4, 0, 0, 0, 21),  # the consumption
        (0, 1, 0, 0, 21),  # allowed again
    ]

    ok(client.post(API + "/user/logout", json={"session": session}))
    r = client.post(API + "/user/licenses", json={"session": session})
    assert r.status_code == 401


def test_sessions_that_are_not_a_live_user_session_are_refused(client, shop, clock):
    (ticket,) = shop.tickets()
    ok(shop.activate(ticket, login="ada@example.com"))
    device = ok(shop.sign_in("ada@example.com", clock.now), 201)["session"]  # a linked device's, not a user's
    for token in (device, "lcs_" + "x" * 40, "nope"):
        r = client.post(API + "/user/licenses", json={"session": {"token": token}})
        assert r.status_code == 401, r.text
    session = login(client)
    clock.advance(31 * 86400)  # past the idle expiry
    assert client.post(API + "/user/licenses", json={"session": session}).status_code == 401
    bad = client.post(API + "/user/login", json={"firm_code": FIRM, "login": "ada@example.com", "password": "wrong"})
    assert bad.status_code == 401


def test_a_person_of_another_customer_or_firm_gets_nothing(client, shop):
    (ticket,) = shop.tickets(item=shop.metered)
    ok(shop.activate(ticket, login="ada@example.com"))
    r = client.patch(API + "/accounts/eve@example.com", json={"password": PASSWORD}, headers=shop.vendor.headers)
    ok(r)
    eve = login(client, "eve@example.com")
    assert ok(client.post(API + "/user/licenses", json={"session": eve})) == []
    body = {"session": eve, "firm_code": FIRM, "product_code": 21}
    assert ok(client.post(API + "/user/check", json=body))["allowed"] is False
    r = client.post(API + "/user/consume", json={**body, "units": 1, "idempotency_key": "e1"})
    assert r.status_code == 404
    ada = login(client)
    other_firm = {"session": ada, "firm_code": FIRM + 1, "product_code": 21}
    assert ok(client.post(API + "/user/check", json=other_firm))["error"]["type"] == "LicenseNotFound"
    ok(client.post(API + "/user/consume", json={**body, "session": ada, "units": 1, "idempotency_key": "e1"}))


@pytest.mark.slow
@pytest.mark.postgres
def test_concurrent_consumes_through_two_centrals_never_overdraw_nor_count_twice(tmp_path, pg_url):
    """Eight callers consume one unit at a time through two Central processes on one
    PostgreSQL, each call sent twice with its key (a retry after a timeout): 30 units are
    charged exactly once each, the 31st is refused."""
    env = {"LICENTIA_DATABASE_URL": pg_url, "LICENTIA_MASTER_KEY": MASTER_KEY}
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with central_process(tmp_path / "a", ADMIN_KEY, env) as one, central_process(tmp_path / "b", ADMIN_KEY, env) as two:
        with httpx.Client(base_url=one, timeout=30) as c:
            shop = Shop(c, FIRM)
            item = {"name": "Metered", "product_code": 21, "cloud": True, "options": {"units": 30}}
            metered = ok(shop.vendor.post("/items", item), 201)["item_id"]
            (ticket,) = shop.tickets(item=metered)
            ok(shop.activate(ticket, login="ada@example.com"))
            session = login(c)
        charged: list[dict[str, Any]] = []
        refused: list[str] = []
        lock = threading.Lock()

        def caller(n: int) -> None:
            clients = [httpx.Client(base_url=base, timeout=30) for base in (one, two)]
            try:
                for i in range(5):
                    body = {"session": session, "firm_code": FIRM, "product_code": 21, "units": 1,
                            "idempotency_key": f"c{n}-{i}"}  # fmt: skip
                    answers = [clients[(n + k) % 2].post(API + "/user/consume", json=body) for k in range(2)]
                    with lock:
                        if answers[0].status_code == 200:
                            assert answers[1].json() == answers[0].json()  # the retry: the same answer
                            charged.append(answers[0].json())
                        else:
                            assert answers[0].json()["error"]["code"] == "units_exhausted", answers[0].text
                            refused.append(body["idempotency_key"])
            finally:
                for client in clients:
                    client.close()

        threads = [threading.Thread(target=caller, args=(n,)) for n in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert len(charged) == 30 and len(refused) == 10
        assert sorted(a["units_left"] for a in charged) == list(range(30))  # each unit counted once
        with httpx.Client(base_url=two, timeout=30) as c:
            listed = c.post(API + "/user/licenses", json={"session": session}).json()
        assert [x["units_left"] for x in listed] == [0]


@pytest.mark.slow
def test_the_curl_walkthrough_of_the_docs_runs_against_a_real_central(tmp_path):
    """docs/cloud.md's walkthrough, run by a shell as written, against `licentia central
    serve`: it signs in, lists, checks, consumes 3 units twice under one key (charged once)."""
    import re
    import shutil
    import subprocess

    from tests.conftest import ROOT, require_system

    require_system("curl and jq", bool(shutil.which("curl") and shutil.which("jq")))
    text = (ROOT / "docs" / "cloud.md").read_text()
    section = text.split("## User licensing over REST", 1)[1]
    script = re.search(r"```sh\n(.*?)```", section, re.S)
    assert script is not None
    (tmp_path / "central").mkdir()
    with central_process(tmp_path / "central", ADMIN_KEY) as url, httpx.Client(base_url=url, timeout=30) as c:
        shop = Shop(c, FIRM)
        item = {"name": "Metered", "product_code": 9, "cloud": True, "options": {"units": 10}}
        metered = ok(shop.vendor.post("/items", item), 201)["item_id"]
        (ticket,) = shop.tickets(item=metered)
        ok(shop.activate(ticket, login="ada@example.com"))
        env = {"PATH": "/usr/bin:/bin", "CENTRAL": url, "FIRM": str(FIRM), "LOGIN": "ada@example.com",
               "PASSWORD": PASSWORD}  # fmt: skip
        out = subprocess.run(["/bin/sh", "-e", "-c", script.group(1)], env=env, capture_output=True, text=True,
                             timeout=60)  # fmt: skip
        assert out.returncode == 0, out.stderr
        assert out.stdout.splitlines() == [
            '{"product_code":9,"units_left":10}',
            '{"allowed":true}',
            '{"units":3,"units_left":7}',
            '{"units":3,"units_left":7}',
        ]
        listed = c.post(API + "/user/login", json={"firm_code": FIRM, "login": "ada@example.com", "password": PASSWORD})
        session = listed.json()["session"]
        assert c.post(API + "/user/licenses", json={"session": session}).json()[0]["units_left"] == 7


def test_a_person_reads_their_own_use_with_a_user_session(client, shop, clock):
    """The reporting API takes a user session as it takes a device's: a customer user sees
    its own consumptions (the billing view's units), not the vendor's whole use."""
    (ticket,) = shop.tickets(item=shop.metered)
    ok(shop.activate(ticket, login="ada@example.com"))
    session = login(client)
    body = {"session": session, "firm_code": FIRM, "product_code": 21, "units": 2, "idempotency_key": "r1"}
    ok(client.post(API + "/user/consume", json=body))
    day = time.strftime("%Y-%m-%dT00:00:00", time.gmtime(clock.now))
    report = {"session": {"token": session["token"]}, "filter": {"from": day, "to": day.replace("T00", "T23")}}
    r = client.post(API + "/reporting/license-usage", json=report)
    assert r.status_code == 200 and r.json()["errorCode"] == 0, r.text  # before: 401, a device session only
    r = client.post(API + "/reporting/billing", json=report)
    assert r.status_code == 403  # a customer user reads no billing, with either kind of session


def seat(client: Any, session: dict[str, Any], product: int, **more: Any) -> Any:
    return client.post(
        API + "/user/access", json={"session": session, "firm_code": FIRM, "product_code": product, **more}
    )


def lease_call(client: Any, what: str, session: dict[str, Any], lease: dict[str, Any]) -> Any:
    return client.post(f"{API}/user/{what}", json={"session": session, "lease_id": lease["lease_id"]})


def test_seats_per_person_free_themselves_after_the_ttl(client, shop, clock):
    item = {"name": "One seat", "product_code": 31, "cloud": True, "options": {"quantity": 1}}
    one = ok(shop.vendor.post("/items", item), 201)["item_id"]
    (ticket,) = shop.tickets(item=one)
    ok(shop.activate(ticket, customer=shop.customer, group="Engineering"))
    shop.put(f"/customers/{shop.customer}/groups/Engineering/members/bob@example.com", {})
    r = client.patch(API + "/accounts/bob@example.com", json={"password": PASSWORD}, headers=shop.vendor.headers)
    ok(r)
    ada, bob = login(client), login(client, "bob@example.com")
    phone = ok(seat(client, ada, 31, device="phone"))
    assert phone["ttl"] == 120 and phone["expires_in"] == 120
    laptop = ok(seat(client, ada, 31, device="laptop"))  # the same person: the same seat
    busy = seat(client, bob, 31)
    assert busy.status_code == 409 and busy.json()["error"]["code"] == 22, busy.text  # SeatsExhausted
    assert lease_call(client, "renew", bob, phone).status_code == 404  # not bob's lease
    assert ok(lease_call(client, "release", bob, phone))["released"] is False
    assert ok(lease_call(client, "release", ada, phone))["released"] is True
    assert seat(client, bob, 31).status_code == 409  # ada's laptop still holds her seat
    clock.advance(100)
    assert ok(lease_call(client, "renew", ada, laptop))["expires_in"] == 120
    clock.advance(121)  # ada's app died: no renewal within the TTL frees the seat
    held = ok(seat(client, bob, 31))
    assert held["license_id"] == phone["license_id"]
    # bob leaves the group: his next renewal ends the lease
    r = client.delete(f"{API}/customers/{shop.customer}/groups/Engineering/members/bob@example.com",
                      headers=shop.vendor.headers)  # fmt: skip
    ok(r)
    gone = lease_call(client, "renew", bob, held)
    assert gone.status_code == 410 and gone.json()["error"]["type"] == "LeaseRevoked", gone.text


def test_seats_per_device_when_the_item_says_so(client, shop):
    item = {"name": "Per device", "product_code": 32, "cloud": True, "options": {"quantity": 1, "user_seats": "device"}}
    made = ok(shop.vendor.post("/items", item), 201)
    assert made["options"]["user_seats"] == "device"
    (ticket,) = shop.tickets(item=made["item_id"])
    ok(shop.activate(ticket, login="ada@example.com"))
    ada = login(client)
    unnamed = seat(client, ada, 32)
    assert unnamed.status_code == 400 and "name the device" in unnamed.json()["error"]["message"]
    phone = ok(seat(client, ada, 32, device="phone"))
    again = ok(seat(client, ada, 32, device="phone"))  # the same device: its seat
    other = seat(client, ada, 32, device="laptop")
    assert other.status_code == 409, other.text
    ok(lease_call(client, "release", ada, phone))
    ok(lease_call(client, "release", ada, again))
    ok(seat(client, ada, 32, device="laptop"))
    bad = client.post(API + "/items", json={**item, "options": {"user_seats": "team"}}, headers=shop.vendor.headers)
    assert bad.status_code == 422
