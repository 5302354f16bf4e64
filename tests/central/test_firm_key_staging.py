"""Staged firm keys: the next key is published (and pinned by apps) before it signs; the
next rotation activates exactly that key. Over the API and through the vendor CLI."""

from __future__ import annotations

import httpx
import pytest
from central_helpers import ADMIN_KEY, FakeContainer, ServerThread, Vendor, central_app, error_code, make_settings
from sqlalchemy import select

from licentia.central.models import AuditEntry, FirmKey
from licentia.core import exchange, hazmat, keyfile
from tests.cli.helpers import vendor

ACT = "/api/v1/activations"


def keys_of(client, code: int) -> list[dict]:
    r = client.get(f"/api/v1/firms/{code}/public-key")
    assert r.status_code == 200, r.text
    return r.json()["keys"]


def active_kid(client, code: int) -> str:
    (kid,) = [k["kid"] for k in keys_of(client, code) if k["active"]]
    return kid


def issue(client, v: Vendor, clock) -> dict:
    """A license from Central's own activation flow: the signed update for a new ticket."""
    (ticket,) = v.tickets()
    box = FakeContainer()
    r = client.post(ACT, json=box.request("activate", ticket=ticket, now=clock.now))
    assert r.status_code == 200, r.text
    return r.json()


def signers(update: dict) -> set[str]:
    """The kids that signed an update and every license entry in it."""
    return {update["kid"], *(e["kid"] for e in update["payload"]["entries"])}


def audit(engine, code: int, action: str) -> list[dict]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(AuditEntry.detail)
            .where(AuditEntry.firm_code == code, AuditEntry.action == action)
            .order_by(AuditEntry.id)
        ).all()
    return [r.detail for r in rows]


def test_a_staged_key_is_published_but_signs_only_after_the_next_rotation(client, engine, clock):
    v = Vendor(client, 61)
    old = active_kid(client, 61)

    r = v.post("/firms/61/keys/rotate?stage=true")
    assert r.status_code == 200, r.text
    firm_keys = r.json()["keys"]
    assert [(k["active"], k["retired"], k["staged"]) for k in firm_keys] == [(True, False, False), (False, False, True)]
    staged = firm_keys[1]["kid"]
    assert active_kid(client, 61) == old  # the active key is unchanged

    # published to anyone: the JSON view names it staged, the PEM (every key not retired) holds it
    public = client.get("/api/v1/firms/61/public-key").json()
    assert [(k["kid"], k["staged"]) for k in public["keys"]] == [(old, False), (staged, True)]
    pem = client.get("/api/v1/firms/61/public-key?format=pem").text
    assert set(keyfile.keys_from_pem(pem)) == {old, staged}
    # endorsed by the active key, as a rotated key is
    old_pub = hazmat.load_public_pem(public["keys"][0]["pem"])
    assert staged in exchange.accept_keys(61, {old: old_pub}, public["endorsements"])
    assert audit(engine, 61, "firm.stage_key") == [{"active_kid": old, "staged_kid": staged}]

    # licenses issued meanwhile are signed by the active key only
    before = issue(client, v, clock)
    assert signers(before) == {old}
    exchange.verify_update(before, {old: old_pub})  # verifies against the old key alone

    # a plain rotation activates exactly the staged key: no new key is made
    r = v.post("/firms/61/keys/rotate")
    assert r.status_code == 200, r.text
    after_keys = r.json()["keys"]
    assert [(k["kid"], k["active"], k["staged"]) for k in after_keys] == [(old, False, False), (staged, True, False)]
    with engine.connect() as conn:
        assert len(conn.execute(select(FirmKey.id)).all()) == 2
    assert audit(engine, 61, "firm.rotate_key") == [{"old_kid": old, "new_kid": staged, "was_staged": True}]

    after = issue(client, v, clock)
    assert signers(after) == {staged}
    staged_pub = hazmat.load_public_pem(after_keys[1]["pem"])
    exchange.verify_update(after, {staged: staged_pub})  # an app that pinned both keys verifies both
    exchange.verify_update(before, {old: old_pub, staged: staged_pub})


def test_staging_twice_returns_the_staged_key_unchanged(client, engine):
    v = Vendor(client, 62)
    first = v.post("/firms/62/keys/rotate?stage=true").json()
    again = v.post("/firms/62/keys/rotate?stage=true")
    assert again.status_code == 200, again.text
    assert again.json() == first  # the staged key shipped apps may pin is never replaced
    assert [k["staged"] for k in keys_of(client, 62)] == [False, True]
    assert len(audit(engine, 62, "firm.stage_key")) == 1


def test_a_staged_key_can_be_retired_and_the_next_rotation_makes_a_new_key(client, engine):
    v = Vendor(client, 63)
    old = active_kid(client, 63)
    staged = v.post("/firms/63/keys/rotate?stage=true").json()["keys"][1]["kid"]

    r = v.post(f"/firms/63/keys/{staged}/retire")
    assert r.status_code == 200, r.text
    assert [(k["kid"], k["retired"], k["staged"]) for k in r.json()["keys"]] == [
        (old, False, False),
        (staged, True, False),
    ]
    assert set(keyfile.keys_from_pem(client.get("/api/v1/firms/63/public-key?format=pem").text)) == {old}
    assert audit(engine, 63, "firm.retire_key") == [{"kid": staged}]

    # no staged key left: a plain rotation makes and activates a fresh key, as without staging
    r = v.post("/firms/63/keys/rotate")
    fresh = active_kid(client, 63)
    assert fresh not in (old, staged) and [k["kid"] for k in r.json()["keys"]] == [old, staged, fresh]
    assert audit(engine, 63, "firm.rotate_key") == [{"old_kid": old, "new_kid": fresh, "was_staged": False}]
    # a retired key never comes back: the next staging makes another key
    r = v.post("/firms/63/keys/rotate?stage=true")
    assert [k["kid"] for k in r.json()["keys"] if k["staged"]] not in ([], [staged])
    # the active key still cannot be retired
    r = v.post(f"/firms/63/keys/{fresh}/retire")
    assert r.status_code == 409 and error_code(r) == "active_key"


def test_a_firm_cannot_stage_or_retire_another_firms_key(client):
    a, b = Vendor(client, 64), Vendor(client, 65)
    before = keys_of(client, 65)
    r = a.post("/firms/65/keys/rotate?stage=true")
    assert r.status_code == 403 and error_code(r) == "forbidden"
    assert keys_of(client, 65) == before
    staged = b.post("/firms/65/keys/rotate?stage=true").json()["keys"][1]["kid"]
    for path in (f"/firms/65/keys/{staged}/retire", "/firms/65/keys/rotate"):
        r = a.post(path)
        assert r.status_code == 403 and error_code(r) == "forbidden", path
    assert [k["staged"] for k in keys_of(client, 65)] == [False, True]
    # firm 64's key names its own firm only: firm 65's kid is not firm 64's
    r = a.post(f"/firms/64/keys/{staged}/retire")
    assert r.status_code == 404


# ---------------------------------------------------------------- the vendor CLI


@pytest.fixture
def server(tmp_path):
    with central_app(make_settings(tmp_path / "data")) as app, ServerThread(app) as srv:
        yield srv


def constant(text: str, code: int) -> str:
    """The constant the printed Python source defines (and nothing else)."""
    scope: dict = {}
    exec(compile(text, "<firm keys>", "exec"), scope)  # noqa: S102 - the command's own output
    scope.pop("__builtins__")
    assert list(scope) == [f"FIRM_{code}_KEYS"]
    return scope[f"FIRM_{code}_KEYS"]


def published(url: str, code: int) -> set[str]:
    return {k["kid"] for k in httpx.get(f"{url}/api/v1/firms/{code}/public-key").json()["keys"] if not k["retired"]}


def test_public_key_format_python_holds_every_published_key_including_the_staged_one(server, tmp_path):
    url = server.url
    assert vendor(["firm", "create", "--code", "70707", "--name", "Py"], url=url, key=ADMIN_KEY).code == 0
    key = vendor(["apikey", "create", "--firm-code", "70707"], url=url, key=ADMIN_KEY).out.strip()
    first = httpx.get(f"{url}/api/v1/firms/70707/public-key").json()["keys"][0]["kid"]

    # without a staged key: the constant holds the active key, and the vendor is told to stage
    code, out, err = vendor(["firm", "public-key", "70707", "--format", "python"], url=url, key=None)
    assert code == 0, err
    assert set(keyfile.keys_from_pem(constant(out, 70707))) == {first}
    assert "no staged key" in err and "rotate-key 70707 --stage" in err

    code, out, err = vendor(["firm", "rotate-key", "70707", "--stage"], url=url, key=key)
    assert code == 0, err
    staged = out.strip()
    assert "staged key" in err and staged in err
    code, out, err = vendor(["firm", "rotate-key", "70707", "--stage"], url=url, key=key)  # kept, printed again
    assert (code, out.strip()) == (0, staged)

    code, out, err = vendor(["firm", "public-key", "70707", "--format", "python"], url=url, key=None)
    assert code == 0 and "no staged key" not in err, err
    lines = out.splitlines()
    assert lines[0] == f"# licentia: firm 70707's public keys (kid {first} active, {staged} staged), pinned in code."
    assert lines[1] == "# licentia.trust(70707, FIRM_70707_KEYS)"
    pinned = constant(out, 70707)
    assert set(keyfile.keys_from_pem(pinned)) == {first, staged} == published(url, 70707)
    # the same keys as the PEM format (still the default), block for block
    code, pem, err = vendor(["firm", "public-key", "70707"], url=url, key=None)
    assert code == 0 and pinned == pem == httpx.get(f"{url}/api/v1/firms/70707/public-key?format=pem").text

    # -o FILE writes the same source
    target = tmp_path / "firm_keys.py"
    code, out, err = vendor(["firm", "public-key", "70707", "--format", "python", "-o", str(target)], url=url, key=None)
    assert code == 0 and out == "" and str(target) in err and "FIRM_70707_KEYS" in err
    assert constant(target.read_text(), 70707) == pinned

    # rotate (activates the staged key), stage the next, retire the first: exactly the published keys
    assert vendor(["firm", "rotate-key", "70707"], url=url, key=key).out.strip() == staged
    third = vendor(["firm", "rotate-key", "70707", "--stage"], url=url, key=key).out.strip()
    assert (
        httpx.post(
            f"{url}/api/v1/firms/70707/keys/{first}/retire", headers={"Authorization": f"Bearer {key}"}
        ).status_code
        == 200
    )
    code, out, err = vendor(["firm", "public-key", "70707", "--format", "python"], url=url, key=None)
    assert code == 0, err
    assert f"(kid {staged} active, {third} staged)" in out.splitlines()[0]
    assert set(keyfile.keys_from_pem(constant(out, 70707))) == {staged, third} == published(url, 70707)

    code, out, err = vendor(["firm", "public-key", "70708", "--format", "python"], url=url, key=None)
    assert code != 0 and out == "" and len(err.strip().splitlines()) == 1
