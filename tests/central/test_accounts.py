"""Cloud accounts: the vendor's accounts and groups, sessions, a device's sign-in by a
code confirmed in the browser, the password sign-in for scripts, and the isolation of
firms, customers and groups. Real Central (in-process), real SQLite, real argon2id and
Ed25519; the clock is injected."""

from __future__ import annotations

from typing import Any

import pytest
from central_helpers import ADMIN_KEY, FakeContainer, Vendor, central_app, dump_state, error_code, make_settings
from fastapi.testclient import TestClient
from sqlalchemy import select

from licentia.central.models import Account, AccountSession, DeviceAuthorization
from licentia.central.services import accounts as accounts_service
from licentia.core import hazmat
from licentia.core.cloudlink import CLOUD_LINK, LINK_SKEW, link_payload
from licentia.core.documents import sign_document
from licentia.core.encoding import b64e

API = "/api/v1"
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
ORIGIN = {"Origin": "http://testserver"}
PASSWORD = "correct horse battery"
FIRM_A, FIRM_B = 61001, 61002


def link(box: FakeContainer, firm_code: int, now: int, name: str = "Ada's laptop") -> dict[str, Any]:
    """The cloud-link document a device signs with its container key."""
    payload = link_payload(
        serial=box.serial,
        sign_pub=b64e(hazmat.raw_public(box.sign_key.public_key())),
        firm_code=firm_code,
        name=name,
        time=now,
    )
    return sign_document(CLOUD_LINK, payload, box.sign_key)


def ok(r: Any, status: int = 200) -> Any:
    assert r.status_code == status, r.text
    return r.json()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


class Site:
    """A firm with a customer, its admin, two users and a group."""

    def __init__(self, client: TestClient, firm_code: int, *, passwords: bool = True):
        self.client = client
        self.vendor = Vendor(client, firm_code)
        self.firm_code = firm_code
        self.customer = self.vendor.customer
        other = ok(self.vendor.post("/customers", {"name": "Other Customer"}), 201)
        self.other_customer = other["number"]
        for login, role, customer in (
            ("admin@example.com", "customer-admin", self.customer),
            ("ada@example.com", "customer-user", self.customer),
            ("bob@example.com", "customer-user", self.customer),
            ("eve@example.com", "customer-user", self.other_customer),
        ):
            body = {"login": login, "name": login.split("@")[0].title(), "role": role, "customer": customer}
            if passwords and login in ("admin@example.com", "ada@example.com"):
                body["password"] = PASSWORD
            ok(self.vendor.post("/accounts", body), 201)
        ok(self.vendor.post(f"/customers/{self.customer}/groups", {"name": "Engineering"}), 201)
        self.put(f"/customers/{self.customer}/groups/Engineering/members/ada@example.com", {"admin": True})

    def put(self, path: str, body: Any) -> Any:
        return ok(self.client.put(API + path, json=body, headers=self.vendor.headers))

    def sign_in(self, login: str, now: int, box: FakeContainer | None = None, password: str = PASSWORD) -> Any:
        body = {
            "firm_code": self.firm_code,
            "login": login,
            "password": password,
            "link": link(box or FakeContainer(), self.firm_code, now),
        }
        return self.client.post(API + "/cloud/sessions", json=body)


@pytest.fixture
def site(client: TestClient) -> Site:
    return Site(client, FIRM_A)


# ---------------------------------------------------------------- the vendor's accounts and groups


def test_the_vendor_makes_accounts_and_groups(client, site, engine):
    v = site.vendor
    account = ok(v.get("/accounts/ADA@example.com"))  # logins are case-insensitive
    assert account["login"] == "ada@example.com" and account["role"] == "customer-user"
    assert account["customer"] == site.customer and account["has_password"] and not account["disabled"]
    assert account["groups"] == [{"name": "Engineering", "admin": True}] and account["devices"] == []
    listed = ok(v.get("/accounts"))
    assert [a["login"] for a in listed] == [
        "ada@example.com",
        "admin@example.com",
        "bob@example.com",
        "eve@example.com",
    ]
    assert [a["login"] for a in ok(v.get(f"/accounts?customer={site.other_customer}"))] == ["eve@example.com"]
    group = ok(v.get(f"/customers/{site.customer}/groups/Engineering"))
    assert group["members"] == [{"login": "ada@example.com", "name": "Ada", "admin": True}]
    site.put(f"/customers/{site.customer}/groups/Engineering/members/bob@example.com", {})
    assert ok(v.get("/groups")) == [{"firm_code": FIRM_A, "customer": site.customer, "name": "Engineering"}]
    stored = client.app.state.central.db.engine
    with stored.connect() as conn:
        hashed = conn.execute(select(Account.password_hash).where(Account.login == "ada@example.com")).scalar_one()
    assert hashed.startswith("$argon2id$") and PASSWORD not in hashed


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"login": "x@example.com", "name": "X", "role": "customer-user"}, "invalid_input"),  # no customer
        ({"login": "x@example.com", "name": "X", "role": "staff", "customer": "1"}, "invalid_input"),
        ({"login": "has space@example.com", "name": "X", "role": "staff"}, "invalid_input"),
        ({"login": "x/y@example.com", "name": "X", "role": "staff"}, "invalid_input"),
        ({"login": "x@example.com", "name": "X", "role": "staff", "password": "short"}, "invalid_input"),
        ({"login": "x@example.com", "name": "X", "role": "staff", "password": " " * 12}, "invalid_input"),
        ({"login": "ada@EXAMPLE.com", "name": "X", "role": "staff"}, "account_exists"),
        ({"login": "x@example.com", "name": "X", "role": "customer-user", "customer": "NOPE"}, "unknown_customer"),
        ({"login": "x@example.com", "name": "X", "role": "owner"}, "invalid_input"),
    ],
)
def test_a_bad_account_is_refused_and_changes_nothing(client, site, engine, body, code):
    before = dump_state(engine)
    r = site.vendor.post("/accounts", body)
    assert r.status_code in (400, 404, 409, 422) and error_code(r) == code, r.text
    assert dump_state(engine) == before


def test_a_group_holds_only_its_customers_people(client, site, engine):
    before = dump_state(engine)
    path = f"{API}/customers/{site.customer}/groups/Engineering/members/eve@example.com"
    r = client.put(path, json={}, headers=site.vendor.headers)
    assert r.status_code == 400 and "not a person of the group's customer" in r.text
    r = client.post(
        f"{API}/customers/{site.customer}/groups", json={"name": "Engineering"}, headers=site.vendor.headers
    )
    assert r.status_code == 409 and error_code(r) == "group_exists"
    assert dump_state(engine) == before


# ---------------------------------------------------------------- password sign-in and sessions


def test_a_device_signs_in_with_its_password_and_its_container(client, site, clock):
    box = FakeContainer()
    signed = ok(site.sign_in("Ada@Example.com", clock.now, box), 201)
    assert signed["login"] == "ada@example.com" and signed["session"].startswith("lcs_")
    me = ok(client.get(API + "/cloud/me", headers=bearer(signed["session"])))
    assert me["customer"] == site.customer and me["groups"] == [{"name": "Engineering", "admin": True}]
    (device,) = ok(client.get(API + "/cloud/devices", headers=bearer(signed["session"])))
    assert device["serial"] == box.serial and device["name"] == "Ada's laptop" and device["address"] == "203.0.113.7"
    # the same container signs in again: the same device, not a second one
    again = ok(site.sign_in("ada@example.com", clock.now, box), 201)
    assert again["device"] == signed["device"]
    # the token is stored as its hash only
    with client.app.state.central.db.engine.connect() as conn:
        hashes = conn.execute(select(AccountSession.token_hash)).scalars().all()
    assert signed["session"] not in hashes and hazmat.sha256(signed["session"].encode()).hex() in hashes


def test_a_wrong_password_is_refused_the_same_as_an_unknown_login(client, site, clock, engine):
    before = dump_state(engine)
    wrong = site.sign_in("ada@example.com", clock.now, password="wrong horse battery")
    unknown = site.sign_in("nobody@example.com", clock.now)
    no_password = site.sign_in("bob@example.com", clock.now)  # an account without a password
    for r in (wrong, unknown, no_password):
        assert r.status_code == 401 and r.json() == wrong.json()
    assert dump_state(engine) == before


def test_failed_sign_ins_are_limited_per_account_and_per_address(tmp_path, clock):
    settings = make_settings(tmp_path / "data", login_attempts_per_account=3, attempts_per_address=5)
    with central_app(settings, clock) as app, TestClient(app, client=("198.51.100.1", 1)) as c:
        site = Site(c, FIRM_A)
        for _ in range(3):
            assert site.sign_in("ada@example.com", clock.now, password="not the password").status_code == 401
        # the account is locked for the window, even with its password, from any address
        with TestClient(app, client=("198.51.100.2", 1)) as other:
            body = {
                "firm_code": FIRM_A,
                "login": "ada@example.com",
                "password": PASSWORD,
                "link": link(FakeContainer(), FIRM_A, clock.now),
            }
            r = other.post(API + "/cloud/sessions", json=body)
            assert r.status_code == 429 and error_code(r) == "too_many_attempts" and "sign-ins" in r.text
            # another account from that address still signs in
            assert other.post(API + "/cloud/sessions", json={**body, "login": "admin@example.com"}).status_code == 201
        # the first address: two more failures on another account reach its limit of 5
        for _ in range(2):
            assert site.sign_in("admin@example.com", clock.now, password="not the password").status_code == 401
        assert site.sign_in("admin@example.com", clock.now).status_code == 429
        clock.advance(settings.attempt_window + 1)
        assert site.sign_in("ada@example.com", clock.now).status_code == 201


def test_sessions_end_when_idle_and_at_their_limit(tmp_path, clock):
    settings = make_settings(tmp_path / "data", session_idle=3600, session_max=4 * 3600)
    with central_app(settings, clock) as app, TestClient(app) as c:
        site = Site(c, FIRM_A)
        idle = ok(site.sign_in("ada@example.com", clock.now), 201)["session"]
        busy = ok(site.sign_in("admin@example.com", clock.now), 201)["session"]
        clock.advance(3000)
        assert c.get(API + "/cloud/me", headers=bearer(busy)).status_code == 200  # seen: its idle time restarts
        clock.advance(700)
        assert c.get(API + "/cloud/me", headers=bearer(idle)).status_code == 401  # 3,700 s unused
        for _ in range(4):  # used every 50 minutes: alive until its 4 hours are up
            assert c.get(API + "/cloud/me", headers=bearer(busy)).status_code == 200
            clock.advance(3000)
        r = c.get(API + "/cloud/me", headers=bearer(busy))
        assert r.status_code == 401 and "sign in again" in r.text
        assert c.get(API + "/cloud/me", headers=bearer("lcs_" + "x" * 43)).status_code == 401
        assert c.get(API + "/cloud/me", headers={"Authorization": f"Bearer {site.vendor.key}"}).status_code == 401


def test_disable_reset_and_new_password_end_sessions_and_unlink_devices(client, site, clock):
    v = site.vendor
    first = ok(site.sign_in("ada@example.com", clock.now), 201)["session"]
    ok(client.post(f"{API}/accounts/ada@example.com/reset", headers=v.headers))
    assert client.get(API + "/cloud/me", headers=bearer(first)).status_code == 401
    assert ok(v.get("/accounts/ada@example.com"))["devices"] == []
    second = ok(site.sign_in("ada@example.com", clock.now), 201)["session"]
    ok(client.patch(f"{API}/accounts/ada@example.com", json={"disabled": True}, headers=v.headers))
    assert client.get(API + "/cloud/me", headers=bearer(second)).status_code == 401
    r = site.sign_in("ada@example.com", clock.now)
    assert r.status_code == 403 and error_code(r) == "account_disabled"
    ok(client.patch(f"{API}/accounts/ada@example.com", json={"disabled": False}, headers=v.headers))
    third = ok(site.sign_in("ada@example.com", clock.now), 201)["session"]
    ok(client.patch(f"{API}/accounts/ada@example.com", json={"password": "a brand new password"}, headers=v.headers))
    assert client.get(API + "/cloud/me", headers=bearer(third)).status_code == 401
    assert site.sign_in("ada@example.com", clock.now).status_code == 401
    assert site.sign_in("ada@example.com", clock.now, password="a brand new password").status_code == 201


def test_a_person_changes_the_password_and_other_devices_are_unlinked(client, site, clock):
    here = ok(site.sign_in("ada@example.com", clock.now), 201)["session"]
    there = ok(site.sign_in("ada@example.com", clock.now), 201)["session"]  # another container
    r = client.post(API + "/cloud/password", json={"old": "wrong", "new": "x" * 12}, headers=bearer(here))
    assert r.status_code == 401
    done = ok(client.post(API + "/cloud/password", json={"old": PASSWORD, "new": "y" * 12}, headers=bearer(here)))
    assert done["devices_unlinked"] == 1
    assert client.get(API + "/cloud/me", headers=bearer(here)).status_code == 200
    assert client.get(API + "/cloud/me", headers=bearer(there)).status_code == 401
    assert len(ok(client.get(API + "/cloud/devices", headers=bearer(here)))) == 1


def test_sign_out_and_unlinking_a_device(client, site, clock):
    a = ok(site.sign_in("ada@example.com", clock.now), 201)
    b = ok(site.sign_in("ada@example.com", clock.now), 201)
    ok(client.delete(f"{API}/cloud/devices/{b['device']}", headers=bearer(a["session"])))
    assert client.get(API + "/cloud/me", headers=bearer(b["session"])).status_code == 401
    r = client.delete(f"{API}/cloud/devices/{b['device']}", headers=bearer(a["session"]))
    assert r.status_code == 404
    assert ok(client.post(API + "/cloud/sign-out", headers=bearer(a["session"])))["device_unlinked"]
    assert client.get(API + "/cloud/me", headers=bearer(a["session"])).status_code == 401
    assert ok(site.vendor.get("/accounts/ada@example.com"))["devices"] == []


# ---------------------------------------------------------------- the device's proof


def test_a_forged_stale_or_foreign_link_is_refused_and_stores_nothing(client, site, clock, engine):
    box, other = FakeContainer(), FakeContainer()
    good = link(box, FIRM_A, clock.now)
    forged = {**good, "sig": link(other, FIRM_A, clock.now)["sig"]}  # signed by another key
    stolen = link(other, FIRM_A, clock.now)
    stolen["payload"]["sign_pub"] = good["payload"]["sign_pub"]  # names a key it was not signed by
    stale = link(box, FIRM_A, clock.now - LINK_SKEW - 1)
    future = link(box, FIRM_A, clock.now + LINK_SKEW + 1)
    foreign = link(box, FIRM_B, clock.now)  # made for another firm
    renamed = {**good, "payload": {**good["payload"], "name": "Mallory's box"}}
    before = dump_state(engine)
    for doc in (forged, stolen, stale, future, foreign, renamed, {"payload": {}}, {}):
        body = {"firm_code": FIRM_A, "login": "ada@example.com", "password": PASSWORD, "link": doc}
        r = client.post(API + "/cloud/sessions", json=body)
        assert r.status_code == 400 and error_code(r) == "invalid_device_proof", r.text
        assert client.post(API + "/cloud/device-codes", json={"link": doc}).status_code in (400, 404)
    assert dump_state(engine) == before


# ---------------------------------------------------------------- the sign-in by code


def start(client: TestClient, box: FakeContainer, firm_code: int, now: int, name: str = "Ada's laptop") -> Any:
    return ok(client.post(API + "/cloud/device-codes", json={"link": link(box, firm_code, now, name)}))


def browser_sign_in(client: TestClient, code: str, login: str, password: str = PASSWORD) -> Any:
    form = {"code": code, "login": login, "password": password}
    return client.post("/cloud/device/sign-in", data=form, headers=ORIGIN, follow_redirects=False)


def csrf_of(page: str) -> str:
    marker = 'name="csrf" value="'
    start_at = page.index(marker) + len(marker)
    return page[start_at : page.index('"', start_at)]


def test_a_device_signs_in_by_a_code_confirmed_in_the_browser(client, site, clock, engine):
    box = FakeContainer()
    grant = start(client, box, FIRM_A, clock.now)
    assert grant["verification_uri"] == "http://testserver/cloud/device"
    assert grant["expires_in"] == 600 and grant["interval"] == 5
    code, device_code = grant["user_code"], grant["device_code"]
    assert len(code) == 9 and code[4] == "-"

    def poll() -> Any:
        return client.post(API + "/cloud/token", json={"device_code": device_code})

    assert error_code(poll()) == "authorization_pending"
    assert error_code(poll()) == "slow_down"  # again at once
    clock.advance(5)

    # the person signs in on the page the device named, with the code
    r = browser_sign_in(client, code.lower().replace("-", " "), "ada@example.com")
    assert r.status_code == 303 and r.headers["location"] == f"/cloud/device?code={code}"
    cookie = r.cookies.get("licentia_cloud")
    assert (
        cookie
        and "httponly" in r.headers["set-cookie"].lower()
        and "samesite=strict" in r.headers["set-cookie"].lower()
    )
    page = client.get(r.headers["location"])
    assert page.status_code == 200 and page.headers["x-frame-options"] == "DENY"
    assert "Ada&#39;s laptop" in page.text and "203.0.113.7" in page.text and code in page.text
    csrf = csrf_of(page.text)

    # a form without the session's CSRF token, or from another origin, is refused
    before = dump_state(engine)
    form = {"code": code, "decision": "approve", "csrf": csrf}
    assert client.post("/cloud/device/confirm", data={**form, "csrf": "x"}, headers=ORIGIN).status_code == 403
    assert client.post("/cloud/device/confirm", data={**form, "csrf": "ä" * 43}, headers=ORIGIN).status_code == 403
    evil = {"Origin": "http://evil.example"}
    assert client.post("/cloud/device/confirm", data=form, headers=evil).status_code == 403
    assert client.post("/cloud/device/confirm", data=form).status_code == 403  # neither Origin nor Referer
    assert dump_state(engine) == before
    assert error_code(poll()) == "authorization_pending"

    done = client.post("/cloud/device/confirm", data=form, headers=ORIGIN)
    assert done.status_code == 200 and "is signed in" in done.text
    clock.advance(5)
    session = ok(poll())
    assert session["login"] == "ada@example.com" and session["session"].startswith("lcs_")
    (device,) = ok(client.get(API + "/cloud/devices", headers=bearer(session["session"])))
    assert device["serial"] == box.serial
    clock.advance(5)
    assert error_code(poll()) == "invalid_grant"  # a device code is used once


def test_a_refused_or_expired_code_gives_no_session(client, site, clock):
    refused = start(client, FakeContainer(), FIRM_A, clock.now)
    r = browser_sign_in(client, refused["user_code"], "ada@example.com")
    page = client.get(r.headers["location"])
    form = {"code": refused["user_code"], "decision": "deny", "csrf": csrf_of(page.text)}
    assert "Refused" in client.post("/cloud/device/confirm", data=form, headers=ORIGIN).text
    r = client.post(API + "/cloud/token", json={"device_code": refused["device_code"]})
    assert r.status_code == 403 and error_code(r) == "access_denied"

    late = start(client, FakeContainer(), FIRM_A, clock.now)
    clock.advance(601)
    r = client.post(API + "/cloud/token", json={"device_code": late["device_code"]})
    assert r.status_code == 400 and error_code(r) == "expired_token"
    page = client.get(f"/cloud/device?code={late['user_code']}")
    assert page.status_code == 404 and "not one waiting for you" in page.text


def test_device_codes_are_limited_per_address(client, site, clock):
    for _ in range(10):
        start(client, FakeContainer(), FIRM_A, clock.now)
    r = client.post(API + "/cloud/device-codes", json={"link": link(FakeContainer(), FIRM_A, clock.now)})
    assert r.status_code == 429 and "sign-ins" in r.text and "ticket" not in r.text


def test_the_sign_in_form_must_come_from_centrals_page(client, site, clock):
    grant = start(client, FakeContainer(), FIRM_A, clock.now)
    form = {"code": grant["user_code"], "login": "ada@example.com", "password": PASSWORD}
    r = client.post("/cloud/device/sign-in", data=form, headers={"Origin": "http://evil.example"})
    assert r.status_code == 403 and "licentia_cloud" not in r.headers.get("set-cookie", "")


def test_a_mistyped_code_is_counted_as_a_failed_attempt(tmp_path, clock):
    settings = make_settings(tmp_path / "data", attempts_per_address=3)
    with central_app(settings, clock) as app, TestClient(app) as c:
        Site(c, FIRM_A)
        grant = start(c, FakeContainer(), FIRM_A, clock.now)
        for wrong in ("BBBB-BBBB", "CCCC-CCCC", "not a code"):
            assert browser_sign_in(c, wrong, "ada@example.com").status_code == 404
        r = browser_sign_in(c, grant["user_code"], "ada@example.com")
        assert r.status_code == 429  # the right code, after too many wrong ones from this address
        assert "Too many failed sign-ins" in r.text and "ticket" not in r.text


# ---------------------------------------------------------------- firms, customers and groups apart


def test_two_firms_people_never_meet(client, clock, engine):
    a, b = Site(client, FIRM_A), Site(client, FIRM_B)  # the same logins in both firms
    ada_a = ok(a.sign_in("ada@example.com", clock.now), 201)["session"]
    assert ok(client.get(API + "/cloud/me", headers=bearer(ada_a)))["firm_code"] == FIRM_A
    # A's password is not B's account's
    ok(client.patch(f"{API}/accounts/ada@example.com", json={"password": "only in firm b!"}, headers=b.vendor.headers))
    assert a.sign_in("ada@example.com", clock.now, password="only in firm b!").status_code == 401
    # a code started for firm B cannot be confirmed by firm A's person
    grant = start(client, FakeContainer(), FIRM_B, clock.now)
    r = browser_sign_in(client, grant["user_code"], "ada@example.com")  # the code names firm B: B's ada
    assert r.status_code == 401  # B's ada has another password now
    a_grant = start(client, FakeContainer(), FIRM_A, clock.now)
    r = browser_sign_in(client, a_grant["user_code"], "ada@example.com")
    assert r.status_code == 303
    before = dump_state(engine)
    page = client.get(f"/cloud/device?code={grant['user_code']}")  # firm A's session, firm B's code
    assert page.status_code == 404
    csrf = csrf_of(client.get(r.headers["location"]).text)
    form = {"code": grant["user_code"], "decision": "approve", "csrf": csrf}
    assert client.post("/cloud/device/confirm", data=form, headers=ORIGIN).status_code == 404
    # A's group admin cannot touch B's groups or people
    for call in (
        client.put(f"{API}/cloud/groups/Engineering/members/bob@example.com", json={}, headers=bearer(ada_a)),
        client.get(API + "/cloud/groups", headers=bearer(ada_a)),
    ):
        assert "Firm 61002" not in call.text and b.customer not in call.text.replace(a.customer, "")
    after = dump_state(engine)
    changed = {t for t in before if before[t] != after[t]} - {"group_members", "account_sessions"}
    assert not changed
    with client.app.state.central.db.engine.connect() as conn:
        states = conn.execute(select(DeviceAuthorization.state, DeviceAuthorization.firm_id)).all()
    assert sorted(s for s, _ in states) == ["pending", "pending"]


def test_group_admins_change_their_groups_only(client, site, clock, engine):
    ada = ok(site.sign_in("ada@example.com", clock.now), 201)["session"]  # admin of Engineering
    admin = ok(site.sign_in("admin@example.com", clock.now), 201)["session"]  # the customer's admin
    ok(client.post(f"{API}/customers/{site.customer}/groups", json={"name": "Sales"}, headers=site.vendor.headers), 201)
    site.put(f"/customers/{site.customer}/groups/Sales/members/admin@example.com", {})

    # ada sees her group with its members, and not Sales
    (group,) = ok(client.get(API + "/cloud/groups", headers=bearer(ada)))
    assert group["name"] == "Engineering" and [m["login"] for m in group["members"]] == ["ada@example.com"]
    added = ok(client.put(f"{API}/cloud/groups/Engineering/members/bob@example.com", json={}, headers=bearer(ada)))
    assert [m["login"] for m in added["members"]] == ["ada@example.com", "bob@example.com"]
    before = dump_state(engine)
    refusals = [
        (client.put(f"{API}/cloud/groups/Sales/members/bob@example.com", json={}, headers=bearer(ada)), 403),
        # a person of another customer of the same firm: as unknown as a login nobody has
        (client.put(f"{API}/cloud/groups/Engineering/members/eve@example.com", json={}, headers=bearer(ada)), 404),
        (client.put(f"{API}/cloud/groups/Engineering/members/nobody@example.com", json={}, headers=bearer(ada)), 404),
        (client.put(f"{API}/cloud/groups/Nope/members/bob@example.com", json={}, headers=bearer(ada)), 404),
    ]
    for r, status in refusals:
        assert r.status_code == status, r.text
    assert refusals[1][0].json() == {
        "error": {
            **refusals[2][0].json()["error"],
            "message": refusals[2][0].json()["error"]["message"].replace("nobody@example.com", "eve@example.com"),
        }
    }
    assert dump_state(engine) == before
    # the customer's admin administers every group of the customer
    groups = ok(client.get(API + "/cloud/groups", headers=bearer(admin)))
    assert [g["name"] for g in groups] == ["Engineering", "Sales"] and all("members" in g for g in groups)
    ok(client.delete(f"{API}/cloud/groups/Engineering/members/bob@example.com", headers=bearer(admin)))
    # bob (a plain member now gone) cannot administer anything
    site.put(f"/customers/{site.customer}/groups/Sales/members/ada@example.com", {"admin": False})
    r = client.delete(f"{API}/cloud/groups/Sales/members/admin@example.com", headers=bearer(ada))
    assert r.status_code == 403


def test_resetting_a_groups_credentials_signs_its_members_out(client, site, clock, engine):
    site.put(f"/customers/{site.customer}/groups/Engineering/members/bob@example.com", {})
    ok(client.patch(f"{API}/accounts/bob@example.com", json={"password": PASSWORD}, headers=site.vendor.headers))
    ada = ok(site.sign_in("ada@example.com", clock.now), 201)["session"]  # the group's admin
    bob = ok(site.sign_in("bob@example.com", clock.now), 201)["session"]
    admin = ok(site.sign_in("admin@example.com", clock.now), 201)["session"]  # not in the group
    before = dump_state(engine)
    r = client.post(f"{API}/cloud/groups/Engineering/reset", headers=bearer(bob))  # a plain member
    assert r.status_code == 403 and dump_state(engine) == before
    done = ok(client.post(f"{API}/cloud/groups/Engineering/reset", headers=bearer(ada)))
    assert (done["members"], done["devices_unlinked"]) == (1, 1)  # bob's; ada keeps her own
    assert client.get(API + "/cloud/me", headers=bearer(bob)).status_code == 401
    assert client.get(API + "/cloud/me", headers=bearer(ada)).status_code == 200
    assert client.get(API + "/cloud/me", headers=bearer(admin)).status_code == 200
    # the vendor's reset takes every member, the group's admin too
    done = ok(client.post(f"{API}/customers/{site.customer}/groups/Engineering/reset", headers=site.vendor.headers))
    assert (done["members"], done["devices_unlinked"]) == (2, 1)
    assert client.get(API + "/cloud/me", headers=bearer(ada)).status_code == 401
    assert client.get(API + "/cloud/me", headers=bearer(admin)).status_code == 200


def test_the_audit_log_names_the_person(client, site, clock):
    ada = ok(site.sign_in("ada@example.com", clock.now), 201)["session"]
    ok(client.put(f"{API}/cloud/groups/Engineering/members/bob@example.com", json={}, headers=bearer(ada)))
    rows = ok(client.get(API + "/audit", headers=site.vendor.headers))
    (row,) = [r for r in rows if r["action"] == "group.member" and r["role"] == "account"]
    assert row["actor"].startswith("account:") and row["detail"]["login"] == "bob@example.com"


def test_password_hashes_take_the_same_time_for_unknown_accounts():
    """An unknown login is checked against a real hash too (not answered at once)."""
    assert accounts_service.verify_password(None, PASSWORD) is False
    encoded = accounts_service.hash_password(PASSWORD)
    assert accounts_service.verify_password(encoded, PASSWORD) is True
    assert accounts_service.verify_password(encoded, PASSWORD + "!") is False
    assert accounts_service._unknown_hash().startswith("$argon2id$")
    assert accounts_service.verify_password("not a hash", PASSWORD) is False


# ---------------------------------------------------------------- the same on PostgreSQL

ON_POSTGRESQL = [
    test_a_device_signs_in_by_a_code_confirmed_in_the_browser,
    test_a_wrong_password_is_refused_the_same_as_an_unknown_login,
    test_disable_reset_and_new_password_end_sessions_and_unlink_devices,
    test_two_firms_people_never_meet,
    test_group_admins_change_their_groups_only,
    test_a_forged_stale_or_foreign_link_is_refused_and_stores_nothing,
]


@pytest.mark.postgres
@pytest.mark.parametrize("check", ON_POSTGRESQL, ids=[f.__name__[5:] for f in ON_POSTGRESQL])
def test_on_postgresql(check, tmp_path, pg_url, clock):
    import inspect

    with (
        central_app(make_settings(tmp_path / "data", pg_url), clock) as app,
        TestClient(app, client=("203.0.113.7", 50000)) as c,
    ):
        given = {"client": c, "clock": clock, "engine": app.state.central.db.engine}
        wanted = inspect.signature(check).parameters
        if "site" in wanted:
            given["site"] = Site(c, FIRM_A)
        check(**{name: given[name] for name in wanted})
