"""The seat engine in-process: modes, TTL, linger, reconnect, ACL, borrowing, durability, usage log."""

from __future__ import annotations

import json
import sqlite3

import pytest

from licentia.core import errors as E
from licentia._testing import FakeClock
from licentia.core import hazmat
from licentia.core.documents import sign_document
from licentia.seats import Acl, AclError, Client, LeaseRevoked, LeaseUnknown, Refusal, SeatEngine, SeatLicense
from licentia.seats.store import SqliteSeatStore
from tests.factory import T0

F, P = 10101, 1


def lic(key="S/1", quantity=2, license_id=1, product=P, valid_until=None):
    return SeatLicense(key=key, firm_code=F, product_code=product, license_id=license_id, quantity=quantity,
                       feature_map=0xFF, ticket="t", valid_until=valid_until)


def cl(n=1, user="alice", host="h1", ip="10.0.0.1", groups=()):
    return Client(client_lease_id=f"c{n}", user=user, host=host, ip=ip, pid=n, groups=tuple(groups))


@pytest.fixture
def clock():
    return FakeClock(T0)


@pytest.fixture
def key():
    return hazmat.Ed25519PrivateKey.generate()


@pytest.fixture
def make(tmp_path, clock, key):
    stores = []

    def make(acl_text="", **kw):
        store = SqliteSeatStore(tmp_path / "seats.db")
        stores.append(store)
        acl = Acl.from_toml(acl_text) if acl_text else Acl()
        return SeatEngine(store, clock=clock, acl=acl, signer=lambda t, p: sign_document(t, p, key), **kw)

    yield make
    for s in stores:
        s.close()


def acquire(engine, client, mode="user", licenses=None, feature=0):
    return engine.acquire(client, firm_code=F, product_code=P, feature_code=feature, mode=mode,
                          candidates=licenses or [lic()])


def refused(engine, client, mode="user", licenses=None) -> Refusal:
    with pytest.raises(Refusal) as info:
        acquire(engine, client, mode, licenses)
    return info.value


def test_user_mode_counts_a_seat_per_access(make):
    eng = make()
    a = acquire(eng, cl(1))
    acquire(eng, cl(2))
    r = refused(eng, cl(3))
    assert r.error is E.SeatsExhausted and (r.seats, r.in_use) == (2, 2)
    assert "2 seat" in r.client_message
    assert eng.release(a.id, "c1")
    acquire(eng, cl(3))


def test_station_mode_shares_one_seat_per_user_and_host(make):
    eng = make()
    one = [lic(quantity=1)]
    acquire(eng, cl(1), "station", one)
    acquire(eng, cl(2), "station", one)  # same user and host: same seat
    assert eng.seats_in_use(["S/1"]) == {"S/1": 1}
    assert refused(eng, cl(3, user="bob"), "station", one).error is E.SeatsExhausted
    assert refused(eng, cl(4), "user", one).error is E.SeatsExhausted


def test_exclusive_mode_one_process_per_host(make):
    eng = make()
    a = acquire(eng, cl(1), "exclusive")
    r = refused(eng, cl(2), "exclusive")
    assert r.error is E.AccessDenied and "exclusive" in r.client_message
    assert refused(eng, cl(3), "user").error is E.AccessDenied  # any other process on that host
    acquire(eng, cl(4, host="h2"), "exclusive")  # another host takes its own seat
    assert eng.release(a.id, "c1")
    acquire(eng, cl(2), "exclusive")


def test_exclusive_refused_while_the_host_has_other_leases(make):
    eng = make()
    acquire(eng, cl(1), "user")
    assert refused(eng, cl(2), "exclusive").error is E.AccessDenied


def test_nolimit_only_on_licenses_without_a_seat_limit(make):
    eng = make()
    r = refused(eng, cl(1), "nolimit")
    assert r.error is E.AccessDenied and "nolimit" in r.client_message
    free = [lic(quantity=0)]
    for i in range(5):
        acquire(eng, cl(i), "nolimit", free)
    assert eng.seats_in_use(["S/1"]) == {"S/1": 0}


def test_ttl_expiry_frees_the_seat_and_renewal_keeps_it(make, clock):
    eng = make(ttl=60)
    one = [lic(quantity=1)]
    a = acquire(eng, cl(1), licenses=one)
    clock.advance(50)
    eng.renew(a.id, "c1")
    clock.advance(50)
    assert refused(eng, cl(2), licenses=one).error is E.SeatsExhausted
    clock.advance(11)  # no heartbeat for 61 s
    acquire(eng, cl(2), licenses=one)
    with pytest.raises(LeaseUnknown):
        eng.renew(a.id, "c1")
    eng.sweep()
    kinds = [e["event"] for e in eng.usage(0, 2**40, events=True)]
    assert kinds.count("expire") == 1


def test_linger_keeps_the_seat_after_release(make, clock):
    eng = make(linger=30)
    one = [lic(quantity=1)]
    a = acquire(eng, cl(1), licenses=one)
    eng.release(a.id, "c1")
    assert refused(eng, cl(2, user="bob"), licenses=one).error is E.SeatsExhausted
    clock.advance(31)
    acquire(eng, cl(2, user="bob"), licenses=one)


def test_lingering_seat_goes_back_to_the_same_user_on_the_same_host(make, clock):
    eng = make(linger=30)
    one = [lic(quantity=1)]
    eng.release(acquire(eng, cl(1), licenses=one).id, "c1")
    acquire(eng, cl(2), licenses=one)  # alice@h1 again: takes the lingering seat


def test_reconnect_with_the_same_client_lease_id_never_takes_a_second_seat(make, clock):
    eng = make(ttl=60)
    a = acquire(eng, cl(1))
    again = acquire(eng, cl(1))
    assert again.id == a.id and eng.seats_in_use(["S/1"]) == {"S/1": 1}
    clock.advance(120)  # the lease expired while the client was away
    back = acquire(eng, cl(1))
    assert eng.seats_in_use(["S/1"]) == {"S/1": 1} and back.client_lease_id == "c1"


def test_admin_release_revokes(make):
    eng = make()
    a = acquire(eng, cl(1))
    assert eng.release(a.id, admin=True)
    with pytest.raises(LeaseRevoked):
        eng.renew(a.id, "c1")
    assert eng.seats_in_use(["S/1"]) == {"S/1": 0}


def test_pooling_over_several_licenses_of_a_product(make):
    eng = make()
    two = [lic("S/1", 1, 1), lic("S/2", 1, 2)]
    a = acquire(eng, cl(1), licenses=two)
    b = acquire(eng, cl(2), licenses=two)
    assert {a.license_id, b.license_id} == {1, 2}
    r = refused(eng, cl(3), licenses=two)
    assert r.error is E.SeatsExhausted and r.seats == 2 and "all 2 seat" in r.client_message


# ---------------------------------------------------------------- ACL

ACL = """
[groups]
eng = ["alice", "bob"]

[[rules]]
action = "deny"
users = ["mallory"]

[[rules]]
action = "deny"
ips = ["192.168.0.0/16"]
product = "10101:1"

[[rules]]
action = "reserve"
product = "10101:1"
groups = ["eng"]
seats = 1

[[rules]]
action = "max"
product = "10101:1"
users = ["carol"]
seats = 1
"""


def test_acl_deny_by_user_and_ip(make):
    eng = make(ACL)
    r = refused(eng, cl(1, user="mallory"))
    assert r.error is E.AccessDenied and "#1" not in r.client_message and "rule #1" in r.log
    assert "rule #2" in refused(eng, cl(2, ip="192.168.3.4")).log


def test_acl_reserve_and_max(make):
    eng = make(ACL, linger=0)
    three = [lic(quantity=3)]
    acquire(eng, cl(1, user="carol"), licenses=three)
    r = refused(eng, cl(2, user="carol", host="h2"), licenses=three)  # MAX 1 for carol
    assert r.error is E.AccessDenied and "MAX" in r.log
    acquire(eng, cl(3, user="dave"), licenses=three)
    # one seat free, reserved for eng: dave may not take it, bob may
    r = refused(eng, cl(4, user="dave", host="h9"), licenses=three)
    assert r.error is E.SeatsExhausted and "reserved" in r.client_message
    acquire(eng, cl(5, user="bob"), licenses=three)


def test_acl_reserve_beats_max_and_allow_lists(make):
    eng = make("""
[[rules]]
action = "allow"
users = ["alice"]
[[rules]]
action = "reserve"
users = ["bob"]
seats = 1
[[rules]]
action = "max"
users = ["bob"]
seats = 0
""")
    acquire(eng, cl(1, user="alice"))
    acquire(eng, cl(2, user="bob"))  # not on the allow list, MAX 0, but a reserved seat
    assert refused(eng, cl(3, user="zed")).error is E.AccessDenied


@pytest.mark.parametrize("text", [
    "[[rules]]\naction = 'block'\nusers = ['x']",
    "[[rules]]\naction = 'deny'",
    "[[rules]]\naction = 'deny'\nips = ['not-an-ip']",
    "[[rules]]\naction = 'max'\nusers = ['x']\nseats = -1",
    "[[rules]]\naction = 'deny'\nuser = ['x']",
    "[borrow]\nmax_days = 'long'",
    "not toml [",
])
def test_bad_acl_is_refused_with_a_reason(text):
    with pytest.raises(AclError):
        Acl.from_toml(text)


# ---------------------------------------------------------------- borrowing

BORROWER = {"serial": "130-AAAA-BBBB-CCCC", "sign_pub": "x", "box_pub": "y"}


def test_borrow_takes_a_seat_until_returned_or_expired(make, clock):
    eng = make("[borrow]\nmax_days = 5")
    one = [lic(quantity=1)]
    b = eng.borrow(cl(1), firm_code=F, product_code=P, days=30, borrower=BORROWER, candidates=one)
    assert b.expires == clock() + 5 * 86400  # capped by the administrator
    again = eng.borrow(cl(1), firm_code=F, product_code=P, days=3, borrower=BORROWER, candidates=one)
    assert again.id == b.id
    assert refused(eng, cl(2), licenses=one).error is E.SeatsExhausted
    assert eng.end_borrow(b.id, "other") is None
    assert eng.end_borrow(b.id, BORROWER["serial"]) is not None
    acquire(eng, cl(2), licenses=one)


def test_borrow_capped_by_the_license_and_limits(make, clock):
    eng = make("[borrow]\nmax_days = 5\nmax_seats = 1\nusers = ['alice']")
    lics = [lic(quantity=3, valid_until=clock() + 86400)]
    b = eng.borrow(cl(1), firm_code=F, product_code=P, days=3, borrower=BORROWER, candidates=lics)
    assert b.expires == clock() + 86400
    with pytest.raises(Refusal) as info:
        eng.borrow(cl(2), firm_code=F, product_code=P, days=3, borrower={**BORROWER, "serial": "130-X"},
                   candidates=lics)
    assert info.value.error is E.AccessDenied
    with pytest.raises(Refusal):
        eng.borrow(cl(3, user="bob"), firm_code=F, product_code=P, days=1, borrower={**BORROWER, "serial": "130-Y"},
                   candidates=lics)
    clock.advance(86400)
    eng.sweep()
    acquire(eng, cl(4), licenses=[lic(quantity=1)])


# ---------------------------------------------------------------- durability and the usage log


def test_state_survives_a_new_engine_on_the_same_file(make, clock):
    eng = make()
    a = acquire(eng, cl(1), licenses=[lic(quantity=1)])
    eng2 = make()
    assert refused(eng2, cl(2), licenses=[lic(quantity=1)]).error is E.SeatsExhausted
    eng2.renew(a.id, "c1")


def test_usage_view_has_the_reporting_fields(make, clock):
    eng = make(ttl=600)
    a = acquire(eng, cl(1), feature=3)
    clock.advance(359)
    eng.renew(a.id, "c1")
    eng.release(a.id, "c1")
    eng.record_denial(cl(2), firm_code=F, product_code=9, invalid=True, reason="no license")
    rows = eng.usage(T0, T0 + 1000)
    assert len(rows) == 2
    done = next(r for r in rows if r["success"])
    assert done["seconds"] == 359 and done["releaseTime"] and done["featureCode"] == 3
    assert done["ticketLicenseId"] == 1 and done["userIdentification"] == "alice@h1" and done["firmCode"] == F
    deny = next(r for r in rows if not r["success"])
    assert deny["invalid"] == 1 and deny["fail"] == 0 and "releaseTime" not in deny
    kinds = [e["event"] for e in eng.usage(T0, T0 + 1000, events=True)]
    assert kinds == ["access", "renew", "release", "deny"]


def test_usage_log_verifies_and_detects_changes_and_removals(make, clock, key, tmp_path):
    eng = make()
    for i in range(5):
        eng.release(acquire(eng, cl(i)).id)
    pub = key.public_key()
    assert eng.verify_usage(pub)["ok"]
    assert not eng.verify_usage(hazmat.Ed25519PrivateKey.generate().public_key())["ok"]
    db = sqlite3.connect(tmp_path / "seats.db")
    body = json.loads(db.execute("SELECT body FROM events WHERE seq = 3").fetchone()[0])
    body["seconds"] = 99999
    db.execute("UPDATE events SET body = ? WHERE seq = 3", (json.dumps(body, sort_keys=True, separators=(",", ":")),))
    db.commit()
    result = eng.verify_usage(pub)
    assert not result["ok"] and any("event 3" in p for p in result["problems"])
    db.close()


def test_usage_log_detects_a_removed_event_and_a_cut_tail(make, key, tmp_path):
    eng = make()
    for i in range(4):
        eng.release(acquire(eng, cl(i)).id)
    pub = key.public_key()
    db = sqlite3.connect(tmp_path / "seats.db")
    db.execute("DELETE FROM events WHERE seq = 2")
    db.commit()
    assert any("missing" in p for p in eng.verify_usage(pub)["problems"])
    last = db.execute("SELECT MAX(seq) FROM events").fetchone()[0]
    db.execute("DELETE FROM events WHERE seq = ?", (last,))
    db.commit()
    assert any("cut" in p for p in eng.verify_usage(pub)["problems"])
    db.close()


def test_retention_prunes_and_keeps_the_chain_verifiable(make, clock, key):
    eng = make(retention_days=1)
    for i in range(3):
        eng.release(acquire(eng, cl(i)).id)
    clock.advance(2 * 86400)
    eng.release(acquire(eng, cl(9)).id)
    assert eng.prune() == 6
    result = eng.verify_usage(key.public_key())
    assert result["ok"], result and result["events"] == 2
