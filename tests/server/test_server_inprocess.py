"""The server's HTTP layer and settings in-process (ASGI test client, injected clock and traits)."""

from __future__ import annotations

import json
import os
import stat

import pytest
from fastapi.testclient import TestClient

from licentia import _testing
from licentia.container import MachineContainer
from licentia.core import exchange, grants, hazmat
from licentia.core.documents import DocumentInvalid, sign_document
from licentia.core.encoding import b64e
from licentia.core.license import LicenseEntry, Options
from licentia.server import Settings, SettingsError, create_app
from licentia.server.settings import load_admin_token, server_table
from tests.factory import T0, Firm, machine_traits

TICKET = "00000-00000-00000-00000-00000"


@pytest.fixture
def traits():
    _testing.install(traits=machine_traits)  # the autouse fixture puts the system's back


@pytest.fixture
def app(tmp_path, clock, traits):
    firm = Firm()
    data = tmp_path / "data"
    c = MachineContainer.create(data, "medium", machine_traits(), T0)
    req = c.make_request("activate", T0, ticket=TICKET)
    c.apply_update(firm.grant(req, now=T0, options=Options(quantity=1, units=10)), T0)
    settings = Settings(data_dir=data, discovery=False, clock=clock, admin_token="adm")
    with TestClient(create_app(settings)) as client:
        client.firm = firm  # type: ignore[attr-defined]
        client.container = c  # type: ignore[attr-defined]
        yield client


class Holder:
    """A client session's Ed25519 key: it signs lease requests, renewals and releases."""

    def __init__(self):
        self.key = hazmat.Ed25519PrivateKey.generate()
        self.pub = b64e(hazmat.raw_public(self.key.public_key()))
        self.counter = 0

    def sign(self, request):
        return {**request, "proof": grants.prove(self.key, grants.LEASE_REQUEST, grants.request_proof_payload(request))}

    def proof(self, kind, lease_id, counter=None):
        if counter is None:
            self.counter += 1
            counter = self.counter
        return counter, grants.prove(self.key, kind, grants.lease_proof_payload(lease_id, counter))

    def renew(self, lease_id, client="c1", counter=None):
        counter, proof = self.proof(grants.LEASE_RENEW, lease_id, counter)
        return {"client_lease_id": client, "counter": counter, "proof": proof}

    def release(self, lease_id, client="c1", counter=None):
        counter, proof = self.proof(grants.LEASE_RELEASE, lease_id, counter)
        return {"client": client, "counter": str(counter), "proof": proof}


HOLDER = Holder()


def body(holder=None, **kw):
    holder = holder or HOLDER
    session = b64e(hazmat.raw_public(hazmat.X25519PrivateKey.generate().public_key()))
    out = {
        "firm_code": 10101,
        "product_code": 1,
        "client_lease_id": "c1",
        "session": session,
        "nonce": "n1",
        "user": "u",
        "host": "h",
        "holder": holder.pub,
    }
    out.update(kw)
    return holder.sign(out)


@pytest.mark.parametrize(
    "bad",
    [
        {"firm_code": "x"},
        {"mode": "shared"},
        {"session": "not-a-key"},
        {"client_lease_id": ""},
        {"units": -1},
        {"groups": "eng"},
        {"firm_code": 0},
    ],
)
def test_bad_requests_get_400(app, bad):
    r = app.post("/api/v1/leases", json=body(**bad))
    assert r.status_code == 400 and r.json()["error"]["type"] == "BadRequest"


def test_not_json_and_not_an_object(app):
    assert app.post("/api/v1/leases", content=b"{nope").status_code == 400
    assert app.post("/api/v1/leases", json=[1, 2]).status_code == 400


@pytest.mark.parametrize(
    "raw",
    [
        b"[" * 30000 + b"]" * 30000,  # deep enough to exhaust the parser's recursion, within the body limit
        b'{"firm_code": 10101, "firm_code": 1}',
        b'{"firm_code": NaN}',
        b'{"firm_code": 1e400}',
        rb'{"user": "\ud800"}',
    ],
    ids=["deep", "duplicate-key", "nan", "infinite", "lone-surrogate"],
)
def test_a_body_no_document_reader_would_accept_is_400(app, raw):
    r = app.post("/api/v1/leases", content=raw, headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["error"]["message"] == "the body is not JSON"


def test_lease_grant_verifies_back_to_the_firm_and_seals_the_key(app):
    session_key = hazmat.X25519PrivateKey.generate()
    session = b64e(hazmat.raw_public(session_key.public_key()))
    r = app.post("/api/v1/leases", json=body(session=session, units=3))
    assert r.status_code == 200, r.text
    data = r.json()
    firm = app.firm
    entry = LicenseEntry.verify(data["entry"], {hazmat.key_id(firm.key.public_key()): firm.key.public_key()})
    lease = grants.verify_lease(data["lease"], entry)
    assert lease.session == session and lease.nonce == "n1" and lease.lease_id == data["lease_id"]
    (sealed,) = data["keys"]
    key = grants.unseal_lease_key(session_key, session, entry.serial, entry.digest, sealed)
    assert key == exchange.derive_product_key(firm.secret, firm.code, 1, 1)
    # another session's key cannot open it
    with pytest.raises(DocumentInvalid):
        grants.unseal_lease_key(hazmat.X25519PrivateKey.generate(), session, entry.serial, entry.digest, sealed)
    # a lease signed by any other key does not verify against the entry
    impostor = hazmat.Ed25519PrivateKey.generate()
    forged = grants.build_lease(
        lambda t, p: sign_document(t, p, impostor),
        lease_id="x",
        client_lease_id="c1",
        entry=entry,
        feature_code=0,
        mode="user",
        session=session,
        nonce="n1",
        issued=T0,
        expires=T0 + 1,
    )
    with pytest.raises(DocumentInvalid):
        grants.verify_lease(forged, entry)
    # units were counted in the server's container
    slot = app.container.slots()[firm.code]
    assert slot.license_state(entry).units_used == 3
    assert (
        app.post("/api/v1/leases", json=body(client_lease_id="c2", units=20)).json()["error"]["type"]
        == "UnitsExhausted"
    )


def test_renew_release_and_admin(app, clock):
    me = Holder()
    lease_id = app.post("/api/v1/leases", json=body(me)).json()["lease_id"]
    assert app.post(f"/api/v1/leases/{lease_id}/renew", json=me.renew(lease_id, client="other")).status_code == 404
    assert app.post(f"/api/v1/leases/{lease_id}/renew", json=me.renew(lease_id)).status_code == 200
    assert app.delete(f"/api/v1/leases/{lease_id}", params=me.release(lease_id, client="other")).json() == {
        "released": False
    }
    assert app.get("/api/v1/admin/status").status_code == 401
    status = app.get("/api/v1/admin/status", headers={"Authorization": "Bearer adm"}).json()
    assert [s["lease_id"] for s in status["sessions"]] == [lease_id]
    assert app.delete(f"/api/v1/leases/{lease_id}", params=me.release(lease_id)).json() == {"released": True}
    clock.advance(200)
    assert app.post(f"/api/v1/leases/{lease_id}/renew", json=me.renew(lease_id)).status_code == 404


def _sessions(app):
    return app.get("/api/v1/admin/status", headers={"Authorization": "Bearer adm"}).json()["sessions"]


def _denials(app, clock):
    """The denials in the server's usage log."""
    server = app.app.server
    return [e for e in server.engine.usage(0, clock.now + 10, events=True) if e.get("event") == "deny"]


def test_a_client_lease_id_is_no_bearer_token(app, clock):
    """Another session sending a live lease's client lease id gets no lease, no key, no seat."""
    owner, thief = Holder(), Holder()
    first = app.post("/api/v1/leases", json=body(owner))
    assert first.status_code == 200
    for n in range(3):
        r = app.post("/api/v1/leases", json=body(thief, nonce=f"t{n}"))  # the same client lease id "c1"
        assert r.status_code == 403 and r.json()["error"]["type"] == "AccessDenied", r.text
        assert "lease" not in r.json() and "keys" not in r.json()
    assert [s["lease_id"] for s in _sessions(app)] == [first.json()["lease_id"]]
    assert len(_denials(app, clock)) == 3
    # the owner's own reconnect (same key, same client lease id, a counter above the
    # lease's) still finds its seat
    again = app.post("/api/v1/leases", json=body(owner, nonce="again", counter=1))
    assert again.status_code == 200 and again.json()["lease_id"] == first.json()["lease_id"]


def test_a_request_without_a_valid_proof_of_its_key_is_refused(app):
    unsigned = {k: v for k, v in body(Holder()).items() if k != "proof"}
    assert app.post("/api/v1/leases", json=unsigned).status_code == 403
    forged = body(Holder())
    forged["holder"] = Holder().pub  # names a key it did not sign with
    assert app.post("/api/v1/leases", json=forged).status_code == 403
    assert _sessions(app) == []


def test_renewals_and_releases_need_the_holders_proof_and_a_rising_counter(app, clock):
    owner, thief = Holder(), Holder()
    lease_id = app.post("/api/v1/leases", json=body(owner)).json()["lease_id"]
    renew = f"/api/v1/leases/{lease_id}/renew"
    assert app.post(renew, json={"client_lease_id": "c1"}).status_code == 404  # no proof
    assert app.post(renew, json=thief.renew(lease_id)).status_code == 404  # another key
    signed = owner.renew(lease_id)
    assert app.post(renew, json=signed).status_code == 200
    assert app.post(renew, json=signed).status_code == 404  # replayed
    assert app.delete(f"/api/v1/leases/{lease_id}", params={"client": "c1"}).json() == {"released": False}
    assert app.delete(f"/api/v1/leases/{lease_id}", params=thief.release(lease_id)).json() == {"released": False}
    stale = owner.release(lease_id, counter=1)  # a counter already used
    assert app.delete(f"/api/v1/leases/{lease_id}", params=stale).json() == {"released": False}
    assert [s["lease_id"] for s in _sessions(app)] == [lease_id]
    assert len(_denials(app, clock)) == 6  # every refused renewal and release is in the usage log
    assert app.delete(f"/api/v1/leases/{lease_id}", params=owner.release(lease_id)).json() == {"released": True}


def test_settings_from_the_config_file(tmp_path):
    assert server_table({"server": {"lease_ttl": 60, "linger": 5, "heartbeat": 2}}) == {
        "lease_ttl": 60,
        "linger": 5,
        "heartbeat": 2.0,
    }
    assert server_table({"server": {"max_grace": "3d"}}) == {"max_grace": 3 * 86400}
    assert server_table({"server": {"max_grace": 0}}) == {"max_grace": 0}
    for bad in (
        {"lease_ttl": 0},
        {"ttl": 5},
        {"tls_cert": "x"},
        {"durability": "maybe"},
        {"discovery": "yes"},
        {"max_grace": "soon"},
        {"max_grace": -1},
        {"max_grace": True},
    ):
        with pytest.raises(SettingsError):
            server_table({"server": bad})
    cfg = tmp_path / "s.toml"
    cfg.write_text("[server]\nlease_ttl = 45\n")
    s = Settings.from_env({"LICENTIA_SERVER_DATA": str(tmp_path / "d")}, config_path=cfg, port=1234)
    assert (s.lease_ttl, s.port, s.data_dir, s.heartbeat_seconds) == (45, 1234, tmp_path / "d", 15)
    assert Settings.from_env({}).data_dir.name == ".licentia-server"
    with pytest.raises(SettingsError):
        Settings.from_env({}, config_path=tmp_path / "missing.toml")


def test_admin_token_file_is_made_private(tmp_path):
    s = Settings(data_dir=tmp_path / "d")
    token, source = load_admin_token(s)
    assert source.endswith("admin.token") and len(token) > 30
    assert stat.S_IMODE(os.stat(s.admin_token_file).st_mode) == 0o600
    assert load_admin_token(s)[0] == token
    assert load_admin_token(Settings(data_dir=tmp_path / "d", admin_token="env"))[0] == "env"


def test_container_signs_only_grant_documents(tmp_path):
    c = MachineContainer.create(tmp_path, "medium", machine_traits(), T0)
    assert c.sign("lease", {"a": 1})["payload"]["type"] == "lease"
    for kind in ("request", "receipt", "update", "license"):
        with pytest.raises(ValueError, match=f"a container does not sign '{kind}' documents"):
            c.sign(kind, {})


def test_access_mode_is_checked_before_anything_else(tmp_path):
    from licentia.runtime import Runtime

    rt = Runtime(tmp_path, clock=lambda: T0, traits=lambda: machine_traits())
    with pytest.raises(ValueError, match="mode is one of"):
        rt.access(10101, 1, mode="shared", firm_key=Firm().pem)


def test_local_license_ignores_the_mode_and_has_no_server(tmp_path):
    from licentia.runtime import Runtime

    firm = Firm()
    c = MachineContainer.create(tmp_path, "medium", machine_traits(), T0)
    req = c.make_request("activate", T0, ticket=TICKET)
    c.apply_update(firm.grant(req, now=T0), T0)
    rt = Runtime(tmp_path, clock=lambda: T0, traits=lambda: machine_traits())
    with rt.access(firm.code, 1, mode="exclusive", firm_key=firm.pem) as h:
        assert h.server is None and not h.lease_lost


def test_each_refusal_has_one_status_and_its_wire_name():
    from licentia.core import errors as E
    from licentia.seats.protocol import error_body, status_of

    cases = [
        (E.BadRequest("bad"), 400, {"type": "BadRequest", "message": "bad"}),
        (E.LeaseUnknown("gone"), 404, {"type": "LeaseUnknown", "message": "gone"}),
        (E.LeaseRevoked("revoked"), 410, {"type": "LeaseRevoked", "message": "revoked"}),
        (E.BorrowUnknown("none"), 404, {"type": "BorrowUnknown", "message": "none"}),
        (E.ServerBusy("later"), 503, {"type": "Unavailable", "message": "later"}),
        (
            E.Refusal(E.LicenseNotFound, "no license", "log"),
            404,
            {"type": "LicenseNotFound", "message": "no license", "code": 10},
        ),
        (
            E.Refusal(E.SeatsExhausted, "full", "log", seats=2, in_use=2),
            409,
            {"type": "SeatsExhausted", "message": "full", "code": 22, "seats": 2, "in_use": 2},
        ),
        (E.Refusal(E.AccessDenied, "rules", "rule #1"), 403, {"type": "AccessDenied", "message": "rules", "code": 23}),
        (E.Refusal(E.UnitsExhausted, "units"), 403, {"type": "UnitsExhausted", "message": "units", "code": 14}),
    ]
    for error, status, body in cases:
        assert status_of(error) == status and error_body(error) == {"error": body}
        assert list(error_body(error)["error"]) == list(body)  # the order on the wire


def test_metrics_and_the_license_list_stay_open_unless_the_operator_makes_them_private(tmp_path, clock, traits):
    data = tmp_path / "data"
    for private, status in ((False, 200), (True, 401)):
        settings = Settings(data_dir=data, discovery=False, clock=clock, admin_token="adm", private_views=private)
        with TestClient(create_app(settings)) as client:
            assert client.get("/metrics").status_code == status
            assert client.get("/api/v1/licenses").status_code == status
            admin = {"Authorization": "Bearer adm"}
            assert client.get("/metrics", headers=admin).status_code == 200
            assert client.get("/api/v1/licenses", headers=admin).status_code == 200
    assert server_table({"server": {"private_views": True}}) == {"private_views": True}


def _machine_proof(container, app, holder, client, server="http://testserver"):
    challenge = client.get("/api/v1/challenge").json()
    payload = {
        "serial": container.serial,
        "sign_pub": container.sign_pub,
        "server": server,
        "nonce": challenge["nonce"],
        "time": challenge["time"],
        "holder": holder.pub,
    }
    return container.sign(grants.SEAT_PROOF, payload)


def _site(tmp_path, clock, *, lease_ttl=None, server=None, **options):
    """A license server (its app) whose container holds a license of 10101:1 with
    ``options`` (``server``: settings of the server besides the defaults here), the firm,
    and a laptop's machine container that clients prove."""
    firm = Firm()
    data = tmp_path / "data"
    c = MachineContainer.create(data, "medium", machine_traits(), T0)
    c.apply_update(firm.grant(c.make_request("activate", T0, ticket=TICKET), now=T0, options=Options(**options)), T0)
    laptop = MachineContainer.create(tmp_path / "laptop", "medium", machine_traits(), T0)
    settings = {"admin_token": "adm", **({} if lease_ttl is None else {"lease_ttl": lease_ttl}), **(server or {})}
    return create_app(Settings(data_dir=data, discovery=False, clock=clock, **settings)), laptop, firm


def _grace_return(container, lease_id, firm):
    """``container``'s receipt giving back the grace of ``lease_id``."""
    payload = {"serial": container.serial, "lease_id": lease_id, "firm_code": firm.code, "vtime": T0}
    return container.sign(grants.GRACE_RETURN, payload)


def test_station_seats_are_per_proven_container_and_source_address(tmp_path, clock, traits):
    app, laptop, _ = _site(tmp_path, clock, quantity=1)
    with TestClient(app, client=("127.0.0.2", 40000)) as here, TestClient(app, client=("127.0.0.3", 40000)) as there:
        one, two, three = Holder(), Holder(), Holder()
        first = body(one, client_lease_id="s1", mode="station", machine=_machine_proof(laptop, app, one, here))
        assert here.post("/api/v1/leases", json=one.sign(first)).status_code == 200
        # another process of the same container, from the same address: the same seat
        same = body(two, client_lease_id="s2", mode="station", machine=_machine_proof(laptop, app, two, here))
        assert here.post("/api/v1/leases", json=two.sign(same)).status_code == 200
        # the same container's proof from another address is another station
        other = body(three, client_lease_id="s3", mode="station", machine=_machine_proof(laptop, app, three, there))
        r = there.post("/api/v1/leases", json=three.sign(other))
        assert r.status_code == 409 and r.json()["error"]["type"] == "SeatsExhausted"
        # a proof answers one challenge once: replayed, it is refused
        replay = body(Holder(), client_lease_id="s4", mode="station", machine=same["machine"])
        assert here.post("/api/v1/leases", json=replay).status_code == 403


def test_a_first_access_naming_a_live_leases_client_lease_id_is_refused_to_another_session(tmp_path, clock, traits):
    """``"reconnect": false`` says the client lease id is new; the server looks anyway: a
    live lease's client lease id is its holder's alone, so other processes of one machine
    cannot stack exclusive leases (or any other) on its seat by naming it."""
    app, laptop, _ = _site(tmp_path, clock, quantity=2)
    with TestClient(app, client=("127.0.0.2", 40000)) as here:
        owner = Holder()
        proof = _machine_proof(laptop, app, owner, here)
        first = here.post("/api/v1/leases", json=body(owner, client_lease_id="p1", mode="exclusive", machine=proof))
        assert first.status_code == 200
        for mode in ("exclusive", "user", "station"):
            other = Holder()
            proof = _machine_proof(laptop, app, other, here)
            ask = body(other, client_lease_id="p1", reconnect=False, mode=mode, machine=proof)
            r = here.post("/api/v1/leases", json=ask)
            assert r.status_code == 403 and r.json()["error"]["type"] == "AccessDenied", (mode, r.text)
        assert [s["lease_id"] for s in _sessions(here)] == [first.json()["lease_id"]]
        assert len(_denials(here, clock)) == 3
        # the owner asking for its seat back (a counter above the lease's) gets its own lease
        back = body(owner, client_lease_id="p1", reconnect=False, mode="exclusive", counter=1)
        retry = here.post("/api/v1/leases", json=back)
        assert retry.status_code == 200 and retry.json()["lease_id"] == first.json()["lease_id"]
        assert len(_sessions(here)) == 1


def test_a_sniffed_lease_request_cannot_be_replayed(tmp_path, clock, traits):
    """A request copied off the network gets no lease: not as it was (its machine proof
    answered its challenge once), not without its machine proof (the holder's proof covers
    it), not after the lease it got was released, and a copied request for a seat back
    cannot keep a dead client's lease alive (its counter was used)."""
    app, laptop, _ = _site(tmp_path, clock, quantity=3, lease_ttl=100)
    with TestClient(app, client=("127.0.0.2", 40000)) as victim, TestClient(app, client=("127.0.0.3", 40000)) as eve:
        alice = Holder()
        sent = body(alice, client_lease_id="a1", reconnect=False, mode="station", user="alice")
        sent = alice.sign({**sent, "machine": _machine_proof(laptop, app, alice, victim)})
        lease_id = victim.post("/api/v1/leases", json=sent).json()["lease_id"]
        stripped = {k: v for k, v in sent.items() if k != "machine"}
        for copy in (sent, stripped):
            r = eve.post("/api/v1/leases", json=copy)
            assert r.status_code == 403 and r.json()["error"]["type"] == "AccessDenied", r.text
        assert victim.delete(f"/api/v1/leases/{lease_id}", params=alice.release(lease_id, "a1")).json() == {
            "released": True
        }
        for copy in (sent, stripped):
            assert eve.post("/api/v1/leases", json=copy).status_code == 403
        assert _sessions(victim) == []
        # a seat asked back after a drop, copied: refused, and the lease ends at its time
        bob = Holder()
        first = victim.post("/api/v1/leases", json=body(bob, client_lease_id="b1", reconnect=False, user="bob"))
        back = body(bob, client_lease_id="b1", nonce="n2", counter=1, user="bob")
        assert victim.post("/api/v1/leases", json=back).json()["lease_id"] == first.json()["lease_id"]
        for _ in range(3):
            clock.advance(60)
            assert eve.post("/api/v1/leases", json=back).status_code == 403
        app.server.engine.sweep()
        assert _sessions(victim) == []  # bob's process is gone: no copy kept its seat


def test_an_access_whose_units_the_container_refuses_keeps_no_seat(app, clock):
    """Units are counted in the server's container after the seat is taken; when the
    container refuses them (another access used them up first), the seat goes back at
    once, the refusal is in the usage log as a denial, and no denial is written against
    the client for a release it never sent."""
    a = Holder()
    lease_id = app.post("/api/v1/leases", json=body(a, client_lease_id="a", units=10)).json()["lease_id"]
    assert app.delete(f"/api/v1/leases/{lease_id}", params=a.release(lease_id, "a")).json() == {"released": True}
    # within the server's look at its container (a fraction of a second), the license still
    # seems to have units: the seat is taken, then the container refuses the unit
    r = app.post("/api/v1/leases", json=body(Holder(), client_lease_id="b", units=1))
    assert r.status_code == 403 and r.json()["error"]["type"] == "UnitsExhausted", r.text
    assert _sessions(app) == []
    (denial,) = _denials(app, clock)
    assert denial["reason"].startswith("units refused by the container") and denial["fail"] == 1
    # the one seat is free for the next client at once
    assert app.post("/api/v1/leases", json=body(Holder(), client_lease_id="c")).status_code == 200


class _Claimed:
    """A key pair that claims a container serial it was never given (any client can make one)."""

    def __init__(self, serial):
        self.serial = serial
        self.key = hazmat.Ed25519PrivateKey.generate()
        self.sign_pub = b64e(hazmat.raw_public(self.key.public_key()))

    def sign(self, doc_type, payload):
        return sign_document(doc_type, payload, self.key)


def test_a_grace_receipt_ends_only_the_grace_of_the_container_that_signed_it(tmp_path, clock, traits):
    """A receipt signed by a key that merely claims another container's serial gives back
    the grace of its own lease only: the real container's grace seat stays counted."""
    app, laptop, firm = _site(tmp_path, clock, quantity=2, max_grace=86400)
    forger = _Claimed(laptop.serial)
    with TestClient(app, client=("127.0.0.2", 40000)) as here, TestClient(app, client=("127.0.0.3", 40000)) as eve:
        alice = Holder()
        ask = body(alice, client_lease_id="a1", grace=86400, machine=_machine_proof(laptop, app, alice, here))
        held = here.post("/api/v1/leases", json=ask).json()["lease_id"]
        assert here.delete(f"/api/v1/leases/{held}", params=alice.release(held, "a1")).json() == {"released": True}
        assert [s["state"] for s in _sessions(here)] == ["grace"]  # released without its receipt
        mallory = Holder()
        ask = body(mallory, client_lease_id="m1", grace=60, machine=_machine_proof(forger, app, mallory, eve))
        own = eve.post("/api/v1/leases", json=ask).json()["lease_id"]
        receipt = _grace_return(forger, own, firm)
        answer = eve.post(f"/api/v1/leases/{own}/return", json={"receipt": receipt}).json()
        assert answer["leases"] == [own]  # its own lease, and no other container's lease id
        states = {s["lease_id"]: s["state"] for s in _sessions(here)}
        assert states == {held: "grace", own: "active"}


def _borrow_ask(serial, who, sign_pub=None, box_pub=None):
    def pub(key):
        return b64e(hazmat.raw_public(key.public_key()))

    container = {
        "serial": serial,
        "sign_pub": sign_pub or pub(hazmat.Ed25519PrivateKey.generate()),
        "box_pub": box_pub or pub(hazmat.X25519PrivateKey.generate()),
    }
    ask = {"firm_code": 10101, "product_code": 1, "days": 7, "client_lease_id": f"b-{who}", "user": who}
    return {**ask, "container": container}


def test_a_borrow_made_under_another_containers_serial_is_lifted_by_the_administrators_release(tmp_path, clock, traits):
    """Anyone can name a container serial in a borrow; while that borrow lives, the serial's
    own container is refused (one serial, one set of keys). Once the administrator releases
    it (lost: counted until it ends), the serial borrows again with its own keys, once."""
    app, laptop, _ = _site(tmp_path, clock, quantity=3)
    admin = {"Authorization": "Bearer adm"}
    with TestClient(app, client=("127.0.0.2", 40000)) as here, TestClient(app, client=("127.0.0.3", 40000)) as eve:
        squat = eve.post("/api/v1/borrows", json=_borrow_ask(laptop.serial, "mallory"))
        assert squat.status_code == 200
        own = _borrow_ask(laptop.serial, "alice", laptop.sign_pub, laptop.box_pub)
        refused = here.post("/api/v1/borrows", json=own)
        assert refused.status_code == 403 and refused.json()["error"]["type"] == "AccessDenied"
        squat_id = squat.json()["borrow_id"]
        assert here.delete(f"/api/v1/admin/sessions/{squat_id}", headers=admin).json() == {"released": True}
        first = here.post("/api/v1/borrows", json=own)
        assert first.status_code == 200, first.text
        again = here.post("/api/v1/borrows", json=own)
        assert again.json()["borrow_id"] == first.json()["borrow_id"]  # the same borrow, not a second seat
        status = here.get("/api/v1/admin/status", headers=admin).json()
        assert sorted(b["state"] for b in status["borrowed"]) == ["active", "lost"]
        assert status["licenses"][0]["in_use"] == 2  # the released one stays counted until it ends


def test_challenges_kept_are_bounded_and_the_oldest_go_first(tmp_path, clock, traits, monkeypatch):
    """``GET /challenge`` needs nothing, so a flood of them must not grow the server's
    memory or its work per request: at most MAX_CHALLENGES are kept, stale ones leave as
    time passes and, past the cap, the oldest leave first (a real client answers its
    challenge within moments)."""
    from licentia.server import core

    monkeypatch.setattr(core, "MAX_CHALLENGES", 50)
    app, laptop, _ = _site(tmp_path, clock, quantity=2)
    server = app.server
    with TestClient(app) as client:
        first = client.get("/api/v1/challenge").json()
        for _ in range(200):
            client.get("/api/v1/challenge")
        assert len(server._challenges) == 50
        holder = Holder()

        def proof(challenge):
            payload = {
                "serial": laptop.serial,
                "sign_pub": laptop.sign_pub,
                "server": "http://testserver",
                "nonce": challenge["nonce"],
                "time": challenge["time"],
                "holder": holder.pub,
            }
            return laptop.sign(grants.SEAT_PROOF, payload)

        # the flood pushed the first challenge out; a fresh one is answered
        assert client.post("/api/v1/leases", json=body(holder, machine=proof(first))).status_code == 403
        fresh = client.get("/api/v1/challenge").json()
        assert (
            client.post("/api/v1/leases", json=body(holder, client_lease_id="c2", machine=proof(fresh))).status_code
            == 200
        )
        clock.advance(core.CHALLENGE_TTL + 1)
        client.get("/api/v1/challenge")
        assert len(server._challenges) == 1  # the stale ones left with the next request


def test_admin_token_guesses_on_the_api_count_against_the_address_as_sign_ins_do(app):
    """The admin API takes the admin token as a bearer; wrong ones count against the
    address like failed sign-ins on the page, and past the limit even the right token
    waits (429), on the API and on the page, while other addresses are not held up."""
    status = "/api/v1/admin/status"
    for n in range(5):
        assert app.get(status, headers={"Authorization": f"Bearer guess-{n}"}).status_code == 401
    right = {"Authorization": "Bearer adm"}
    assert app.get(status, headers=right).status_code == 429
    assert app.post("/admin/login", data={"token": "adm"}, headers={"Origin": "http://testserver"}).status_code == 429
    with TestClient(app.app, client=("127.0.0.7", 40000)) as elsewhere:
        assert elsewhere.get(status, headers=right).status_code == 200


def test_a_query_string_that_is_not_utf8_is_a_plain_refusal(app):
    """Bytes no client encodes (an HTTP server may pass them on) answer as any bad release,
    never a server error."""
    import anyio

    lease_id = app.post("/api/v1/leases", json=body(Holder())).json()["lease_id"]
    sent: list[dict] = []

    async def call():
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "DELETE",
            "scheme": "http",
            "path": f"/api/v1/leases/{lease_id}",
            "raw_path": f"/api/v1/leases/{lease_id}".encode(),
            "query_string": b"client=c1\xff&counter=1&proof=\xfe",
            "root_path": "",
            "headers": [(b"host", b"testserver")],
            "client": ("127.0.0.1", 40000),
            "server": ("testserver", 80),
        }

        async def receive():
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message):
            sent.append(message)

        await app.app(scope, receive, send)

    anyio.run(call)
    assert sent[0]["status"] == 200 and sent[1]["body"] == b'{"released":false}'
    assert [s["lease_id"] for s in _sessions(app)] == [lease_id]


def test_a_seat_back_for_another_product_keeps_the_first_leases_grace_counted(tmp_path, clock, traits):
    """A request under a live lease's client lease id for another license ends that lease,
    but a lease whose grace the client's container holds stays counted for its grace (as a
    release without the receipt leaves it): otherwise the seat was free while the grace ran."""
    firm = Firm()
    data = tmp_path / "data"
    c = MachineContainer.create(data, "medium", machine_traits(), T0)
    req = c.make_request("activate", T0, ticket=TICKET)
    request = exchange.verify_request(req)
    entries = [
        firm.entry(request, product=1, options=Options(quantity=1, max_grace=86400)),
        firm.entry(request, product=2, options=Options(quantity=5)),
    ]
    c.apply_update(firm.update(req, entries), T0)
    laptop = MachineContainer.create(tmp_path / "laptop", "medium", machine_traits(), T0)
    app = create_app(Settings(data_dir=data, discovery=False, clock=clock, admin_token="adm"))
    with TestClient(app, client=("127.0.0.2", 40000)) as here, TestClient(app, client=("127.0.0.3", 40000)) as there:
        alice, bob = Holder(), Holder()
        ask = body(alice, client_lease_id="a1", grace=86400, machine=_machine_proof(laptop, app, alice, here))
        assert here.post("/api/v1/leases", json=ask).status_code == 200
        assert there.post("/api/v1/leases", json=body(bob, client_lease_id="b1")).status_code == 409
        other = here.post("/api/v1/leases", json=body(alice, client_lease_id="a1", product_code=2, counter=1))
        assert other.status_code == 200
        states = sorted((s["product_code"], s["state"]) for s in _sessions(here))
        assert states == [(1, "grace"), (2, "active")]
        refused = there.post("/api/v1/leases", json=body(bob, client_lease_id="b2"))
        assert refused.status_code == 409 and refused.json()["error"]["type"] == "SeatsExhausted"


def test_a_grace_receipt_ends_the_grace_of_its_own_feature_only(tmp_path, clock, traits):
    """The container keeps one grace record per server, product and feature, and gives back
    one of them with a receipt: the server ends the grace of the leases of that feature only;
    another feature's grace, still held in the container, keeps its seat counted."""
    app, real, firm = _site(tmp_path, clock, quantity=2, max_grace=86400)
    laptop = _Claimed(real.serial)  # a container's key pair, which signs the receipt here
    with TestClient(app, client=("127.0.0.2", 40000)) as here:
        holder = Holder()
        leases = {}
        for feature, cid in ((1, "f1"), (2, "f2")):
            proof = _machine_proof(laptop, app, holder, here)
            ask = body(holder, client_lease_id=cid, feature_code=feature, grace=86400, machine=proof)
            leases[feature] = here.post("/api/v1/leases", json=ask).json()["lease_id"]
        receipt = _grace_return(laptop, leases[1], firm)
        answer = here.post(f"/api/v1/leases/{leases[1]}/return", json={"receipt": receipt}).json()
        assert answer["leases"] == [leases[1]]
        grace = {s["lease_id"]: s["grace_until"] for s in _sessions(here)}
        assert grace[leases[1]] is None and grace[leases[2]] is not None


def test_a_grace_receipt_ends_the_grace_of_the_url_its_record_was_kept_under(tmp_path, clock, traits):
    """A container keeps a grace record per server URL, product and feature: one server
    reached under two URLs (its address and its name) gives two records. A receipt gives
    back one of them, so the server ends the grace of the leases taken under that URL only;
    the other record, still in the container, keeps its seat counted."""
    app, real, firm = _site(tmp_path, clock, quantity=2, max_grace=86400)
    laptop = _Claimed(real.serial)
    with TestClient(app, client=("127.0.0.2", 40000)) as here:
        holder = Holder()
        leases = {}
        for url, cid in (("http://127.0.0.1:22370", "by-address"), ("http://licenses.example:22370", "by-name")):
            proof = _machine_proof(laptop, app, holder, here, server=url)
            ask = body(holder, client_lease_id=cid, grace=86400, machine=proof)
            leases[cid] = here.post("/api/v1/leases", json=ask).json()["lease_id"]
        lease = leases["by-address"]
        receipt = _grace_return(laptop, lease, firm)
        answer = here.post(f"/api/v1/leases/{lease}/return", json={"receipt": receipt}).json()
        assert answer["leases"] == [lease]
        grace = {s["lease_id"]: s["grace_until"] for s in _sessions(here)}
        assert grace[lease] is None and grace[leases["by-name"]] is not None


def test_admin_token_guesses_on_the_client_api_count_against_the_address(tmp_path, clock, traits):
    """The client API takes the access token, or the admin token: a wrong bearer token
    there counts against the address as on the admin API, so that the answers cannot tell
    a right guess of the admin token from a wrong one past the limit."""
    app, _, _ = _site(tmp_path, clock, server={"admin_token": "adm-secret", "access_token": "acc"}, quantity=1)
    with TestClient(app, client=("127.0.0.2", 40000)) as guesser, TestClient(app) as client:
        for n in range(5):
            assert guesser.get("/api/v1/challenge", headers={"Authorization": f"Bearer g{n}"}).status_code == 401
        assert guesser.get("/api/v1/challenge", headers={"Authorization": "Bearer adm-secret"}).status_code == 429
        # the right access token still works from there, and other addresses are not held up
        assert guesser.get("/api/v1/challenge", headers={"Authorization": "Bearer acc"}).status_code == 200
        assert client.get("/api/v1/challenge", headers={"Authorization": "Bearer adm-secret"}).status_code == 200


def test_health_tells_a_broken_config_without_its_path_or_text(tmp_path, clock):
    """``/health`` answers anyone: it says the config file is broken, while the file's path
    and the error's words (which quote its rules: users, addresses) stay with the log and
    the administrator's status."""
    config = tmp_path / "secret-site" / "server.toml"
    config.parent.mkdir()
    config.write_text("[[rules]]\naction = 'deny'\nusers = ['mallory']\n")
    site, _, _ = _site(tmp_path, clock, server={"config_path": config})
    admin = {"Authorization": "Bearer adm"}
    with TestClient(site) as app:
        assert app.get("/health").json()["config_error"] is None
        config.write_text("[[rules]]\naction = 'deny'\nips = ['10.9.8.7-mallory']\n")
        assert app.post("/api/v1/admin/reload", headers=admin).json()["reloaded"] is False
        health = app.get("/health").json()
        assert health["status"] == "ok" and health["config_error"]
        assert "secret-site" not in json.dumps(health) and "mallory" not in json.dumps(health), health
        told = app.get("/api/v1/admin/status", headers=admin).json()["server"]["config_error"]
        assert "secret-site" in told and "mallory" in told, told
