"""The seat engine at its edges: each refusal's type, the client's message and the log
line, and the checks a borrow, a renewal and a release pass through (written against the
changes mutation testing found unnoticed; docs/testing.md)."""

from __future__ import annotations

import dataclasses
import json
import sqlite3

import pytest

from licentia.core import errors as E
from licentia.core import grants, hazmat
from licentia.core.encoding import b64e
from licentia.seats import Refusal, SeatEngine
from licentia.seats.store import SqliteSeatStore
from tests.seats.helpers import BORROWER, CONTAINER, F, P, acquire, cl, graced, lic


def _borrow(eng, client, candidates, days=2, serial=BORROWER["serial"]):
    """The refusal of a borrow into the container ``serial`` (the borrower's keys)."""
    with pytest.raises(Refusal) as info:
        eng.borrow(
            client,
            firm_code=F,
            product_code=P,
            days=days,
            borrower={**BORROWER, "serial": serial},
            candidates=candidates,
        )
    return info.value


# ---------------------------------------------------------------- borrowing


def test_a_borrow_of_a_product_the_server_does_not_serve(make):
    r = _borrow(make(), cl(1), [])
    assert r.error is E.LicenseNotFound
    assert r.client_message == f"the license server has no license for {F}:{P}"


@pytest.mark.parametrize("days", [0, -1])
def test_a_borrow_for_less_than_a_day(make, days):
    eng = make()
    r = _borrow(eng, cl(1), [lic()], days=days)
    assert r.error is E.AccessDenied
    assert r.client_message == "borrow for at least one day"
    assert r.log == f"alice@h1: borrow days={days}"
    assert eng.sessions() == []


def test_a_borrow_passes_the_products_access_rules(make):
    """A deny rule of the product refuses the borrow as it refuses the access; another
    product's rule does not."""
    eng = make(f"[[rules]]\naction = 'deny'\nusers = ['bob']\nproduct = '{F}:{P}'\n[borrow]\nmax_days = 5")
    r = _borrow(eng, cl(2, user="bob"), [lic()])
    assert r.error is E.AccessDenied
    assert eng.sessions() == []
    other = make(f"[[rules]]\naction = 'deny'\nusers = ['bob']\nproduct = '{F}:{P + 1}'\n[borrow]\nmax_days = 5")
    b = other.borrow(cl(2, user="bob"), firm_code=F, product_code=P, days=2, borrower=BORROWER, candidates=[lic()])
    assert b.user == "bob"
    acquire(other, cl(3))


# ---------------------------------------------------------------- renewing


def _renew_error(eng, lease_id, client_lease_id):
    with pytest.raises(E.LeaseUnknown) as info:
        eng.renew(lease_id, client_lease_id)
    return info.value


def test_each_renewal_refusal_and_its_message(make, clock):
    eng = make(ttl=60)
    lease = acquire(eng, cl(1))
    unknown = _renew_error(eng, "no-such-lease", "c1")
    assert type(unknown) is E.LeaseUnknown and str(unknown) == "no such lease"
    assert str(_renew_error(eng, lease.id, "c2")) == "no such lease"  # another client's lease id
    assert eng.release(lease.id, admin=True) is True
    revoked = _renew_error(eng, lease.id, "c1")
    assert type(revoked) is E.LeaseRevoked and str(revoked) == "the administrator released this lease"
    mine = acquire(eng, cl(2, user="bob"))
    assert eng.release(mine.id, mine.client_lease_id) is True
    assert str(_renew_error(eng, mine.id, mine.client_lease_id)) == f"lease {eng.lease(mine.id).state}"


def test_a_lease_renews_until_its_last_second_and_ends_at_its_expiry(make, clock):
    """A renewal at the lease's expiry is too late; the usage log ends the lease at that
    expiry, not at the time the late renewal came."""
    eng = make(ttl=60)
    lease = acquire(eng, cl(1))
    clock.advance(59)
    assert eng.renew(lease.id, "c1").expires == clock() + 60
    expires = clock() + 60
    clock.advance(60 + 25)  # the renewal comes 25 s after the lease expired
    late = _renew_error(eng, lease.id, "c1")
    assert type(late) is E.LeaseUnknown and str(late) == "lease expired"
    assert eng.lease(lease.id).state == "expired"
    (final,) = [e for e in eng.usage(0, clock() + 1, events=True) if e["event"] == "expire"]
    assert final["releaseTime"] == expires and final["seconds"] == expires - lease.access_time


def test_a_renewal_right_at_the_expiry_is_refused(make, clock):
    eng = make(ttl=60)
    lease = acquire(eng, cl(1))
    clock.advance(60)
    assert str(_renew_error(eng, lease.id, "c1")) == "lease expired"


def test_a_lease_on_grace_renews_after_its_expiry(make, clock):
    """A client back within its grace renews the lease it holds (the seat stayed counted)."""
    eng = make(ttl=60)
    client = dataclasses.replace(cl(1), container={"serial": "130-AAAA-BBBB-CCCC", "sign_pub": "k"})
    graceful = [dataclasses.replace(lic(quantity=1), max_grace=3600)]
    lease = eng.acquire(client, firm_code=F, product_code=P, grace=3600, candidates=graceful)
    assert lease.grace_until == clock() + 3600
    clock.advance(600)
    back = eng.renew(lease.id, "c1")
    assert back.state == "active" and back.expires == clock() + 60


# ---------------------------------------------------------------- returns, losses, sweeps

OTHER = {"serial": "130-BBBB-CCCC-DDDD", "sign_pub": "k2"}


def _take(eng, client, quantity=3):
    candidates = [dataclasses.replace(lic(quantity=quantity), max_grace=7200)]
    return eng.acquire(client, firm_code=F, product_code=P, grace=7200, candidates=candidates)


def _finals(eng, clock, kind):
    return [e for e in eng.usage(0, clock() + 1, events=True) if e["event"] == kind]


def test_a_returned_borrow_ends_in_the_log_when_it_came_back(make, clock):
    eng = make("[borrow]\nmax_days = 5")
    b = eng.borrow(cl(1), firm_code=F, product_code=P, days=2, borrower=BORROWER, candidates=[lic()])
    clock.advance(3600)
    assert eng.end_borrow(b.id, BORROWER["serial"]).state == "returned"
    (back,) = _finals(eng, clock, "return")
    assert back["leaseId"] == b.id and back["releaseTime"] == clock() and back["seconds"] == 3600


def test_a_borrow_receipt_names_a_borrow_and_a_grace_receipt_a_lease(make, clock):
    """A grace lease's id is no borrow id, and a borrow's id no lease with grace, even for
    the serial of the container that holds it."""
    eng = make("[borrow]\nmax_days = 5")
    lease = _take(eng, graced(1))
    assert eng.end_borrow(lease.id, CONTAINER["serial"]) is None
    assert eng.lease(lease.id).state == "active" and eng.lease(lease.id).grace_until is not None
    borrower = {**BORROWER, "serial": CONTAINER["serial"]}
    b = eng.borrow(cl(2, user="bob"), firm_code=F, product_code=P, days=2, borrower=borrower, candidates=[lic()])
    assert eng.end_grace(b.id, **CONTAINER) == []
    assert eng.lease(b.id).state == "active"
    assert _finals(eng, clock, "return") == []


def test_a_grace_receipt_ends_the_grace_of_every_lease_of_that_container_on_the_license(make, clock):
    """Leases of one container on one license, with another container's lease between them:
    the receipt of one ends the grace of both of its own, never the other's."""
    eng = make(ttl=30)
    first = _take(eng, graced(1))
    stranger = _take(eng, graced(2, user="bob", host="h2", container=OTHER))
    second = _take(eng, graced(3))
    assert eng.release(first.id, first.client_lease_id) is True  # given up without a receipt: on grace
    released_at = clock()
    clock.advance(600)
    ended = eng.end_grace(first.id, **CONTAINER)
    assert sorted(x.id for x in ended) == sorted([first.id, second.id])
    assert eng.lease(first.id).state == "returned"
    assert eng.lease(second.id).state == "active" and eng.lease(second.id).grace_until is None
    assert eng.lease(stranger.id).grace_until is not None
    (back,) = _finals(eng, clock, "return")
    assert back["leaseId"] == first.id and back["releaseTime"] == released_at


def test_a_lost_grace_seat_returned_ends_at_the_administrators_release(make, clock):
    eng = make(ttl=30)
    lease = _take(eng, graced(1))
    clock.advance(10)
    assert eng.release(lease.id, admin=True) is True
    (lost,) = _finals(eng, clock, "lost")
    assert lost["reason"] == "released by the administrator; counted until the grant ends or the borrower returns it"
    assert eng.release(lease.id, admin=True) is False  # lost once: a second release changes nothing
    assert len(_finals(eng, clock, "lost")) == 1
    released = clock()
    clock.advance(600)
    assert [x.id for x in eng.end_grace(lease.id, **CONTAINER)] == [lease.id]
    (back,) = _finals(eng, clock, "return")
    assert back["releaseTime"] == released


def test_the_sweep_ends_a_silent_lease_at_its_expiry_and_frees_a_lingering_seat(make, clock):
    eng = make(ttl=60, linger=300)
    silent = acquire(eng, cl(1))
    gone = acquire(eng, cl(2, user="bob"))
    assert eng.release(gone.id, gone.client_lease_id) is True
    assert eng.lease(gone.id).state == "lingering"
    clock.advance(1000)
    assert eng.sweep() == 2
    (expired,) = _finals(eng, clock, "expire")
    assert expired["leaseId"] == silent.id and expired["releaseTime"] == silent.expires
    assert eng.lease(silent.id).state == "expired"
    assert eng.lease(gone.id).state == "released" and eng.lease(gone.id).linger_until is None


def test_the_lending_cap_says_why(make):
    eng = make("[borrow]\nmax_days = 5\nmax_seats = 1")
    eng.borrow(cl(1), firm_code=F, product_code=P, days=2, borrower=BORROWER, candidates=[lic(quantity=3)])
    r = _borrow(eng, cl(2, user="bob"), [lic(quantity=3)], serial="130-X")
    assert r.error is E.AccessDenied
    assert r.client_message == "the license server lends no more seats of this product now; ask its administrator"
    assert r.log == f"bob@h1: [borrow] max_seats 1 reached for {F}:{P}"


def test_nolimit_needs_a_license_without_a_seat_limit(make, clock):
    eng = make()
    with pytest.raises(Refusal) as info:
        acquire(eng, cl(1), mode="nolimit", licenses=[lic(quantity=2)])
    r = info.value
    assert r.error is E.AccessDenied
    assert (
        r.client_message == "this license counts seats: the 'nolimit' access mode needs a license without a seat limit"
    )
    assert r.log == f"alice@h1: nolimit asked for, every license of {F}:{P} counts seats"
    free = acquire(eng, cl(2), mode="nolimit", licenses=[lic(quantity=2), lic(key="S/0", quantity=0)])
    assert free.license_key == "S/0" and free.seat == ""
    assert eng.seats_in_use(["S/0"]) == {"S/0": 0}


# ---------------------------------------------------------------- the usage log's retention


def _head(eng):
    with eng.store.snapshot() as tx:
        return json.loads(tx.get_meta("usage_head"))


def test_without_a_retention_nothing_is_pruned(make, clock):
    eng = make()
    eng.release(acquire(eng, cl(1)).id)
    clock.advance(400 * 86400)
    assert eng.prune() == 0
    assert len(eng.usage(0, clock() + 1, events=True)) == 2


def test_pruning_every_event_signs_a_head_at_the_anchor(make, clock, key):
    eng = make(retention_days=1)
    for i in range(2):
        eng.release(acquire(eng, cl(i)).id)
    clock.advance(2 * 86400)
    assert eng.prune() == 4
    head = _head(eng)["payload"]
    assert head["time"] == clock() and head["seq"] == head["anchor_seq"] == 4
    result = eng.verify_usage(key.public_key())
    assert result["ok"] and result["events"] == 0, result


# ---------------------------------------------------------------- releasing


def test_a_release_after_the_expiry_ends_the_lease_at_its_expiry(make, clock):
    """Released after its expiry, before a sweep: the lease expired; the log says when."""
    eng = make(ttl=60, linger=300)
    lease = acquire(eng, cl(1))
    clock.advance(90)
    assert eng.release(lease.id, "c1") is True
    assert eng.lease(lease.id).state == "expired"
    (final,) = _finals(eng, clock, "expire")
    assert final["leaseId"] == lease.id and final["releaseTime"] == lease.expires
    assert _finals(eng, clock, "release") == []


def test_the_administrators_release_revokes_a_live_lease_once(make, clock):
    eng = make(ttl=60)
    lease = acquire(eng, cl(1))
    clock.advance(10)
    assert eng.release(lease.id, admin=True) is True
    (revoked,) = _finals(eng, clock, "revoke")
    assert revoked["releaseTime"] == clock() and revoked["reason"] == "released by the administrator"
    assert eng.lease(lease.id).state == "revoked"
    assert eng.release(lease.id, admin=True) is False  # no longer live
    assert len(_finals(eng, clock, "revoke")) == 1


def test_a_client_cannot_release_a_borrow_nor_a_lease_twice(make, clock):
    eng = make("[borrow]\nmax_days = 5")
    b = eng.borrow(cl(1), firm_code=F, product_code=P, days=2, borrower=BORROWER, candidates=[lic()])
    assert eng.release(b.id, "c1") is False
    assert eng.lease(b.id).state == "active"
    lease = acquire(eng, cl(2, user="bob"))
    assert eng.release(lease.id, "c2") is True
    assert eng.release(lease.id, "c2") is False
    assert len(_finals(eng, clock, "release")) == 1


def test_a_lingering_seat_and_the_releases_that_do_not_linger(make, clock):
    eng = make(ttl=60, linger=1)
    held = acquire(eng, cl(1))
    clock.advance(5)
    assert eng.release(held.id, "c1") is True
    assert eng.lease(held.id).state == "lingering"
    (release,) = _finals(eng, clock, "release")
    assert release["releaseTime"] == clock()
    free = acquire(eng, cl(2), mode="nolimit", licenses=[lic(key="S/0", quantity=0)])
    assert eng.release(free.id, "c2") is True
    assert eng.lease(free.id).state == "released"  # a nolimit lease holds no seat to keep
    still = make(ttl=60)  # no linger
    other = acquire(still, cl(3, user="carol"), licenses=[lic(key="S/9")])
    assert still.release(other.id, "c3") is True
    assert still.lease(other.id).state == "released"


def test_grace_ends_at_its_last_second(make, clock):
    """At the second the grace ends, a release or the administrator's no longer keeps the seat."""
    eng = make(ttl=120)
    mine = _take(eng, graced(1))
    theirs = _take(eng, graced(2, user="bob", host="h2", container=OTHER))
    clock.advance(7199)
    eng.renew(mine.id, mine.client_lease_id)
    eng.renew(theirs.id, theirs.client_lease_id)
    clock.advance(1)  # now == grace_until
    assert eng.release(mine.id, mine.client_lease_id) is True
    assert eng.lease(mine.id).state == "released"
    assert eng.release(theirs.id, admin=True) is True
    assert eng.lease(theirs.id).state == "revoked"


# ---------------------------------------------------------------- proofs of the holder's key


class _Holder:
    """A client session's Ed25519 key: it signs renewals and releases."""

    def __init__(self):
        self.key = hazmat.Ed25519PrivateKey.generate()
        self.pub = b64e(hazmat.raw_public(self.key.public_key()))

    def proof(self, kind, lease_id, counter):
        return grants.prove(self.key, kind, grants.lease_proof_payload(lease_id, counter))


def test_an_unproven_renewal_or_release_is_logged_as_an_invalid_access(make, clock):
    eng = make(ttl=60)
    holder = _Holder()
    client = dataclasses.replace(cl(7, user="dora", host="h7", ip="10.0.0.7"), pid=4242, holder=holder.pub)
    lease = eng.acquire(client, firm_code=F, product_code=P, feature_code=3, mode="station", candidates=[lic()])
    assert eng.renew(lease.id, "c7", counter=1, proof=holder.proof(grants.LEASE_RENEW, lease.id, 1)).id == lease.id
    replay = holder.proof(grants.LEASE_RENEW, lease.id, 1)
    with pytest.raises(E.LeaseUnknown):
        eng.renew(lease.id, "c7", counter=1, proof=replay)
    with pytest.raises(E.LeaseUnknown):
        eng.renew(lease.id, "c7", counter=0, proof=holder.proof(grants.LEASE_RENEW, lease.id, 0))
    assert eng.release(lease.id, "c7", counter=2, proof="not-a-proof") is False
    forged = _Holder().proof(grants.LEASE_RELEASE, lease.id, 3)
    assert eng.release(lease.id, "c7", counter=3, proof=forged) is False
    denials = [e for e in eng.usage(0, clock() + 1, events=True) if e["event"] == "deny"]
    assert [d["reason"] for d in denials] == [
        f"lease-renew of lease {lease.id} replayed (counter not above the last)",
        f"lease-renew of lease {lease.id} replayed (counter not above the last)",
        f"lease-release of lease {lease.id} without a valid proof of the lease's key",
        f"lease-release of lease {lease.id} without a valid proof of the lease's key",
    ]
    for d in denials:
        assert (d["firmCode"], d["productCode"], d["featureCode"], d["mode"]) == (F, P, 3, "station")
        assert (d["invalid"], d["fail"], d["success"]) == (1, 0, 0)
        assert (d["userIdentification"], d["host"], d["ip"]) == ("dora@h7", "h7", "10.0.0.7")
    assert eng.lease(lease.id).state == "active" and eng.lease(lease.id).proof_counter == 1
    assert eng.release(lease.id, "c7", counter=2, proof=holder.proof(grants.LEASE_RELEASE, lease.id, 2)) is True


# ---------------------------------------------------------------- more of borrowing


def test_a_borrow_never_starts_on_a_license_that_ends_now(make, clock):
    eng = make("[borrow]\nmax_days = 5")
    ending = lic(key="S/E", valid_until=clock())
    r = _borrow(eng, cl(1), [ending])
    assert r.error is E.LicenseExpired
    assert r.client_message == "the license ends before a borrow could start"
    assert r.log == f"S/E valid until {clock()}"
    (denial,) = [e for e in eng.usage(0, clock() + 1, events=True) if e["event"] == "deny"]
    assert (denial["firmCode"], denial["productCode"], denial["mode"]) == (F, P, "borrow")
    assert (denial["fail"], denial["invalid"]) == (1, 0)
    # the next license serves the borrow, for its last second
    last = lic(key="S/L", valid_until=clock() + 1)
    b = eng.borrow(cl(1), firm_code=F, product_code=P, days=2, borrower=BORROWER, candidates=[ending, last])
    assert b.license_key == "S/L" and b.expires == clock() + 1
    assert b.seat == f"borrow:{b.id}" and b.mode == "borrow"


def test_a_refused_borrow_logs_the_feature_asked_for(make, clock):
    eng = make()
    with pytest.raises(Refusal):
        eng.borrow(cl(1), firm_code=F, product_code=P, feature_code=5, days=0, borrower=BORROWER, candidates=[lic()])
    (denial,) = [e for e in eng.usage(0, clock() + 1, events=True) if e["event"] == "deny"]
    assert denial["featureCode"] == 5
    ok = eng.borrow(cl(1), firm_code=F, product_code=P, days=1, borrower=BORROWER, candidates=[lic()])
    assert ok.feature_code == 0


def test_a_serial_that_borrowed_with_other_keys_is_told_so(make):
    eng = make("[borrow]\nmax_days = 5")
    b = eng.borrow(cl(1), firm_code=F, product_code=P, days=2, borrower=BORROWER, candidates=[lic()])
    impostor = {**BORROWER, "box_pub": "another-box"}
    with pytest.raises(Refusal) as info:
        eng.borrow(cl(2), firm_code=F, product_code=P, days=2, borrower=impostor, candidates=[lic()])
    r = info.value
    assert r.client_message == "this container serial has borrowed the license with other keys"
    assert r.log == f"alice@h1: borrow {b.id} of S/1 asked again for {BORROWER['serial']} with another key"


def test_a_borrow_obeys_the_products_max_rule(make):
    eng = make(f"[[rules]]\naction = 'max'\nusers = ['bob']\nseats = 1\nproduct = '{F}:{P}'\n[borrow]\nmax_days = 5")
    eng.borrow(cl(1, user="bob"), firm_code=F, product_code=P, days=2, borrower=BORROWER, candidates=[lic(quantity=5)])
    assert _borrow(eng, cl(2, user="bob"), [lic(quantity=5)], serial="130-X").error is E.AccessDenied


# ---------------------------------------------------------------- pools and machines


def test_every_license_full_is_told_as_the_products_seats(make):
    eng = make()
    one, two = lic(key="S/A", quantity=1, license_id=1), lic(key="S/B", quantity=1, license_id=2)
    acquire(eng, cl(1, user="u1"), licenses=[one])
    acquire(eng, cl(2, user="u2"), licenses=[two])
    with pytest.raises(Refusal) as info:
        acquire(eng, cl(3, user="u3"), licenses=[one, two])
    r = info.value
    assert r.error is E.SeatsExhausted
    assert r.client_message == (
        f"all 2 seat(s) of product {F}:{P} on this license server are in use; try again later or ask for more seats"
    )
    assert r.log == "u3@h1: 1/1 seats of S/A in use; u3@h1: 1/1 seats of S/B in use"
    assert (r.seats, r.in_use) == (2, 2)
    with pytest.raises(Refusal) as info:  # one license: its own words
        acquire(eng, cl(3, user="u3"), licenses=[one])
    assert info.value.client_message == "all 1 seat(s) of license 1 are in use"


def test_full_licenses_beside_one_refused_for_another_reason_say_so_license_by_license(make):
    """Two licenses full and a third refused because the machine holds it exclusively: the
    answer is not 'every seat of the product is in use' (one is free)."""
    eng = make()
    one, two = lic(key="S/A", quantity=1, license_id=1), lic(key="S/B", quantity=1, license_id=2)
    three = lic(key="S/C", quantity=5, license_id=3)
    acquire(eng, cl(1, user="u1", host="o1"), licenses=[one])
    acquire(eng, cl(2, user="u2", host="o2"), licenses=[two])
    acquire(eng, cl(3, user="me", host="mine"), mode="exclusive", licenses=[three])
    with pytest.raises(Refusal) as info:
        acquire(eng, cl(4, user="me", host="mine"), licenses=[one, two, three])
    assert "of product" not in info.value.client_message


def test_exclusive_access_holds_a_seat_named_by_its_machine_and_keeps_others_off(make):
    eng = make()
    client = cl(1, host="box")
    lease = acquire(eng, client, mode="exclusive", licenses=[lic(quantity=5)])
    assert lease.seat == f"exclusive:{client.machine}"
    with pytest.raises(Refusal) as info:
        acquire(eng, cl(2, host="box"), mode="exclusive", licenses=[lic(quantity=5)])
    r = info.value
    assert r.client_message == (
        "another process on this host uses this license: exclusive access allows one process per host"
    )
    assert r.log == "alice@box: exclusive refused, S/1 is in use on box"
    with pytest.raises(Refusal) as info:
        acquire(eng, cl(3, host="box"), mode="user", licenses=[lic(quantity=5)])
    r = info.value
    assert r.client_message == "a process on this host holds this license in exclusive mode"
    assert r.log == "alice@box: S/1 is held exclusively on box"


# ---------------------------------------------------------------- what the log and the view say


def test_a_refused_access_is_logged_with_what_was_asked(make, clock):
    eng = make()
    acquire(eng, cl(1), licenses=[lic(quantity=1)])
    with pytest.raises(Refusal):
        eng.acquire(
            cl(2, user="bob"), firm_code=F, product_code=P, feature_code=4, mode="station", candidates=[lic(quantity=1)]
        )
    (denial,) = [e for e in eng.usage(0, clock() + 1, events=True) if e["event"] == "deny"]
    assert (denial["firmCode"], denial["productCode"], denial["featureCode"], denial["mode"]) == (F, P, 4, "station")
    assert (denial["success"], denial["fail"], denial["invalid"]) == (0, 1, 0)


def test_a_denial_decided_outside_the_engine_is_logged_as_told(make, clock):
    eng = make()
    clock.advance(7)
    eng.record_denial(cl(1), firm_code=F, product_code=P, invalid=True, reason="no such feature")
    (denial,) = eng.usage(0, clock() + 1, events=True)
    assert (denial["time"], denial["featureCode"], denial["mode"]) == (clock(), 0, "user")
    assert (denial["invalid"], denial["reason"]) == (1, "no such feature")


def test_the_view_counts_a_running_session_up_to_now(make, clock):
    eng = make(ttl=3600)
    acquire(eng, cl(1))
    clock.advance(100)
    (row,) = eng.usage(0, clock() + 1)
    assert row["seconds"] == 100 and "releaseTime" not in row


def test_the_administrator_revoking_a_lingering_seat_keeps_its_release_time(make, clock):
    eng = make(ttl=60, linger=600)
    lease = acquire(eng, cl(1))
    clock.advance(5)
    eng.release(lease.id, "c1")
    released = clock()
    clock.advance(20)
    assert eng.release(lease.id, admin=True) is True
    after = eng.lease(lease.id)
    assert after.state == "revoked" and after.end_time == released and after.linger_until is None
    assert _finals(eng, clock, "revoke") == []  # the session ended at the release, logged then
    active = acquire(eng, cl(2, user="bob"))
    clock.advance(5)
    eng.release(active.id, admin=True)
    assert eng.lease(active.id).end_time == clock()


def test_a_grace_of_one_second_and_none_on_a_license_ending_now(make, clock):
    eng = make()
    client = graced(1)
    one = eng.acquire(
        client,
        firm_code=F,
        product_code=P,
        grace=1,
        candidates=[dataclasses.replace(lic(key="S/1"), max_grace=3600)],
    )
    assert one.grace_until == clock() + 1
    ending = dataclasses.replace(lic(key="S/2", valid_until=clock()), max_grace=3600)
    assert eng.acquire(graced(2), firm_code=F, product_code=P, grace=60, candidates=[ending]).grace_until is None


def test_a_new_process_takes_over_a_crashed_ones_grace_seat_and_the_log_says_so(make, clock):
    eng = make(ttl=30)
    first = _take(eng, graced(1), quantity=1)
    clock.advance(100)  # the process died 70 s ago: its grace holds the seat
    again = _take(eng, graced(2), quantity=1)
    assert again.seat == first.seat
    old = eng.lease(first.id)
    assert old.state == "released" and old.end_time == first.expires
    (taken,) = [e for e in _finals(eng, clock, "release") if e["leaseId"] == first.id]
    assert taken["releaseTime"] == first.expires
    assert taken["reason"] == "its seat and grace taken over by a new process of its machine"


def test_a_station_seat_is_shared_not_taken_over(make, clock):
    """Station processes of one machine share one seat; a crashed one's grace is not taken
    over (the new process shares the seat while the old lease lives on its grace)."""
    eng = make(ttl=30)
    candidates = [dataclasses.replace(lic(quantity=1), max_grace=7200)]
    first = eng.acquire(graced(1), firm_code=F, product_code=P, mode="station", grace=7200, candidates=candidates)
    clock.advance(100)
    again = eng.acquire(graced(2), firm_code=F, product_code=P, mode="station", grace=7200, candidates=candidates)
    assert again.seat == first.seat
    assert eng.lease(first.id).state == "active"  # on its grace, not ended
    assert eng.seats_in_use(["S/1"]) == {"S/1": 1}


# ---------------------------------------------------------------- acquiring and reconnecting


def test_acquire_defaults_and_an_unknown_mode(make, clock):
    eng = make()
    client = graced(1)
    graceful = [dataclasses.replace(lic(), max_grace=3600)]
    lease = eng.acquire(client, firm_code=F, product_code=P, candidates=graceful)
    assert (lease.mode, lease.feature_code, lease.grace_until) == ("user", 0, None)
    with pytest.raises(ValueError, match="^mode is one of user, station, exclusive, nolimit$"):
        eng.acquire(cl(2), firm_code=F, product_code=P, mode="floating", candidates=[lic()])


def test_a_product_the_server_does_not_serve(make, clock):
    eng = make()
    with pytest.raises(Refusal) as info:
        eng.acquire(cl(1), firm_code=F, product_code=P, candidates=[])
    r = info.value
    assert r.error is E.LicenseNotFound
    assert r.client_message == f"the license server has no license for {F}:{P}"


def test_a_reconnect_gets_its_own_lease_back_from_its_new_address(make, clock):
    eng = make(ttl=60)
    lease = acquire(eng, cl(1, ip="10.0.0.1"))
    clock.advance(30)
    back = acquire(eng, cl(1, ip="10.0.0.9"))
    assert back.id == lease.id and back.ip == "10.0.0.9" and back.expires == clock() + 60
    (renew,) = [e for e in eng.usage(0, clock() + 1, events=True) if e["event"] == "renew"]
    assert renew["reason"] == "reconnect" and renew["leaseId"] == lease.id
    again = acquire(eng, cl(1, ip=""))  # no address seen: the one it had stays
    assert again.id == lease.id and eng.lease(lease.id).ip == "10.0.0.9"


def test_a_client_lease_id_is_looked_up_on_every_access(make, clock):
    """A live lease's client lease id gets that lease back: a second lease never shares its id."""
    eng = make()
    lease = acquire(eng, cl(1))
    again = eng.acquire(cl(1), firm_code=F, product_code=P, candidates=[lic()])
    assert again.id == lease.id and [s.id for s in eng.sessions()] == [lease.id]


def test_another_session_naming_a_live_client_lease_id_is_refused(make, clock):
    eng = make()
    holder = _Holder()
    lease = acquire(eng, dataclasses.replace(cl(1), holder=holder.pub))
    with pytest.raises(Refusal) as info:
        acquire(eng, dataclasses.replace(cl(1), holder=_Holder().pub))
    r = info.value
    assert r.error is E.AccessDenied
    assert r.client_message == "this client lease id belongs to another session"
    assert r.log == f"alice@h1: client lease id of lease {lease.id} from another session key"


def test_a_reconnect_after_the_expiry_ends_the_old_lease_at_its_expiry(make, clock):
    eng = make(ttl=60)
    lease = acquire(eng, cl(1))
    clock.advance(100)
    fresh = acquire(eng, cl(1))
    assert fresh.id != lease.id
    (expired,) = _finals(eng, clock, "expire")
    assert expired["leaseId"] == lease.id and expired["releaseTime"] == lease.expires


def test_a_client_lease_id_asking_for_another_license_ends_its_old_lease_now(make, clock):
    eng = make(ttl=60)
    lease = acquire(eng, cl(1), licenses=[lic(key="S/1")])
    clock.advance(10)
    fresh = acquire(eng, cl(1), licenses=[lic(key="S/2")])
    assert fresh.license_key == "S/2" and fresh.id != lease.id
    assert eng.lease(lease.id).state == "expired"
    (expired,) = _finals(eng, clock, "expire")
    assert expired["releaseTime"] == clock()


def test_a_borrow_is_never_taken_for_a_reconnect(make, clock):
    eng = make("[borrow]\nmax_days = 5")
    b = eng.borrow(cl(1), firm_code=F, product_code=P, days=2, borrower=BORROWER, candidates=[lic()])
    lease = acquire(eng, cl(1))
    assert lease.id != b.id and lease.mode == "user"


def test_an_exclusive_holder_on_one_license_leaves_the_next_license_to_its_machine(make, clock):
    eng = make()
    acquire(eng, cl(1, host="box"), mode="exclusive", licenses=[lic(key="S/1")])
    lease = acquire(eng, cl(2, host="box"), licenses=[lic(key="S/1"), lic(key="S/2")])
    assert lease.license_key == "S/2"


def test_a_new_process_asking_for_a_longer_grace_gets_it(make, clock):
    eng = make(ttl=30)
    candidates = [dataclasses.replace(lic(quantity=1), max_grace=7200)]
    first = eng.acquire(graced(1), firm_code=F, product_code=P, grace=1800, candidates=candidates)
    clock.advance(100)
    again = eng.acquire(graced(2), firm_code=F, product_code=P, grace=7200, candidates=candidates)
    assert again.seat == first.seat and again.grace_until == clock() + 7200


def test_a_station_process_sharing_the_seat_gets_its_grace(make, clock):
    eng = make(ttl=30)
    candidates = [dataclasses.replace(lic(quantity=1), max_grace=7200)]
    eng.acquire(graced(1), firm_code=F, product_code=P, mode="station", grace=600, candidates=candidates)
    clock.advance(10)
    second = eng.acquire(graced(2), firm_code=F, product_code=P, mode="station", grace=600, candidates=candidates)
    assert second.grace_until == clock() + 600


# ---------------------------------------------------------------- the engine itself


def test_the_engines_lease_time_and_its_floor(make, clock, tmp_path):
    assert acquire(make(), cl(1)).expires == clock() + 120
    assert acquire(make(ttl=1), cl(2), licenses=[lic(key="S/2")]).expires == clock() + 1
    with pytest.raises(ValueError, match="^ttl is at least 1 second$"):
        make(ttl=0)


def test_lease_ids_made_in_one_second_differ(make, clock):
    eng = make()
    ids = {acquire(eng, cl(n, user=f"u{n}"), licenses=[lic(quantity=0)]).id for n in range(5)}
    assert len(ids) == 5
    assert len({len(i) for i in ids}) == 1 and all(i.startswith(f"{clock():09x}") for i in ids)


def test_a_lease_carries_its_licenses_ticket(make):
    lease = acquire(make(), cl(1))
    assert lease.ticket == "t" and lease.feature_map == 0xFF and lease.license_id == 1


def test_a_license_without_a_seat_limit_never_runs_out(make, clock):
    eng = make(f"[[rules]]\naction = 'reserve'\nusers = ['bob']\nseats = 1\nproduct = '{F}:{P}'")
    unlimited = [lic(quantity=0)]
    leases = [acquire(eng, cl(n, user=f"u{n}"), licenses=unlimited) for n in range(4)]
    assert len({lease.seat for lease in leases}) == 4


def test_the_engine_counts_what_it_logged(make, clock):
    eng = make()
    eng.release(acquire(eng, cl(1)).id)
    acquire(eng, cl(2, user="bob"))
    assert eng.counters == {"access": 2, "release": 1}


def test_each_append_signs_a_head_of_its_time(make, clock):
    eng = make()
    acquire(eng, cl(1))
    clock.advance(42)
    acquire(eng, cl(2, user="bob"))
    head = _head(eng)["payload"]
    assert head["time"] == clock() and head["seq"] == 2 and head["anchor_seq"] == 0


def test_without_a_signer_the_head_is_kept_unsigned(tmp_path, clock):
    store = SqliteSeatStore(tmp_path / "unsigned.db")
    try:
        eng = SeatEngine(store, clock=clock)
        acquire(eng, cl(1))
        head = _head(eng)
        assert (head["kid"], head["sig"]) == ("", "")
        assert head["payload"]["seq"] == 1 and head["payload"]["time"] == clock()
    finally:
        store.close()


def test_events_after_pruning_everything_chain_on_from_the_anchor(make, clock, key):
    eng = make(retention_days=1)
    eng.release(acquire(eng, cl(1)).id)
    clock.advance(2 * 86400)
    assert eng.prune() == 2
    eng.release(acquire(eng, cl(2)).id)
    result = eng.verify_usage(key.public_key())
    assert result["ok"] and result["events"] == 2, result
    assert _head(eng)["payload"]["seq"] == 4


def test_a_lingering_seat_of_one_second_is_taken_back(make, clock):
    eng = make(ttl=60, linger=1)
    lease = acquire(eng, cl(1), licenses=[lic(quantity=1)])
    eng.release(lease.id, "c1")
    again = acquire(eng, cl(2), licenses=[lic(quantity=1)])  # the same user on the same machine
    assert again.seat == lease.seat
    assert eng.lease(lease.id).state == "released"


def test_a_borrow_is_looked_up_by_its_id_and_a_lease_is_not_a_borrow(make):
    eng = make("[borrow]\nmax_days = 5")
    b = eng.borrow(cl(1), firm_code=F, product_code=P, days=2, borrower=BORROWER, candidates=[lic()])
    lease = acquire(eng, cl(2, user="bob"))
    found = eng.borrow_lease(b.id)
    assert found is not None and found.id == b.id and found.borrower == BORROWER
    assert eng.borrow_lease(lease.id) is None
    assert eng.borrow_lease("no-such-id") is None


def test_a_release_records_when_the_seat_was_given_up(make, clock):
    eng = make(ttl=60)
    lease = acquire(eng, cl(1))
    clock.advance(7)
    eng.release(lease.id, "c1")
    assert eng.lease(lease.id).end_time == clock()


def test_a_returned_borrow_records_its_end_and_one_returned_late_ends_at_its_expiry(make, clock):
    eng = make("[borrow]\nmax_days = 5")
    b = eng.borrow(cl(1), firm_code=F, product_code=P, days=1, borrower=BORROWER, candidates=[lic()])
    clock.advance(600)
    eng.end_borrow(b.id, BORROWER["serial"])
    assert eng.lease(b.id).end_time == clock()
    other = {**BORROWER, "serial": "130-LATE"}
    late = eng.borrow(cl(2), firm_code=F, product_code=P, days=1, borrower=other, candidates=[lic()])
    clock.advance(86400 + 50)  # the receipt comes after the borrow ran out, before a sweep
    assert eng.end_borrow(late.id, "130-LATE").state == "returned"
    (back,) = [e for e in _finals(eng, clock, "return") if e["leaseId"] == late.id]
    assert back["releaseTime"] == late.expires and eng.lease(late.id).end_time == late.expires


def test_a_serial_that_borrowed_one_license_gets_that_borrow_back_among_others(make, clock):
    eng = make("[borrow]\nmax_days = 5")
    b = eng.borrow(cl(1), firm_code=F, product_code=P, days=2, borrower=BORROWER, candidates=[lic(key="S/2")])
    again = eng.borrow(
        cl(1), firm_code=F, product_code=P, days=2, borrower=BORROWER, candidates=[lic(key="S/1"), lic(key="S/2")]
    )
    assert again.id == b.id and len(eng.sessions()) == 1


def test_a_borrow_refused_on_every_license_gives_the_reason_closest_to_success(make, clock):
    eng = make("[borrow]\nmax_days = 5")
    full = lic(key="S/F", quantity=1)
    acquire(eng, cl(9, user="zed"), licenses=[full])
    ending = lic(key="S/E", valid_until=clock())
    r = _borrow(eng, cl(1), [ending, full])
    expected = max((E.LicenseExpired, E.SeatsExhausted), key=lambda error: error.rank)
    assert r.error is expected
    assert _borrow(eng, cl(1), [full, ending]).error is expected


def test_held_seats_given_back_record_their_end_and_a_single_seat_is_held_once(make, clock):
    eng = make()
    eng.hold(cl(1), lic(quantity=5), tag="proxy:7", seats=2, until=clock() + 60, borrower=BORROWER)
    clock.advance(5)
    eng.hold(cl(1), lic(quantity=5), tag="proxy:7", seats=0, until=clock() + 60, borrower=BORROWER)
    back = _finals(eng, clock, "return")
    assert len(back) == 2 and all(eng.lease(e["leaseId"]).end_time == clock() for e in back)
    one = make()
    held = one.hold(cl(1), lic(key="S/9", quantity=1), tag="proxy:8", seats=3, until=clock() + 60, borrower=BORROWER)
    assert held == 1


def test_a_release_on_grace_says_until_when_the_seat_stays_counted(make, clock):
    eng = make(ttl=30)
    lease = _take(eng, graced(1))
    eng.release(lease.id, lease.client_lease_id)
    (grace,) = _finals(eng, clock, "grace")
    assert grace["reason"] == f"counted until {lease.grace_until} unless the client container's return receipt comes"


def test_a_grace_seat_swept_at_its_end_records_that_end(make, clock):
    eng = make(ttl=30)
    lease = _take(eng, graced(1))
    eng.release(lease.id, lease.client_lease_id)
    clock.advance(7200)
    eng.sweep()
    after = eng.lease(lease.id)
    assert after.state == "expired" and after.end_time == lease.grace_until
    (expired,) = _finals(eng, clock, "expire")
    assert expired["releaseTime"] == lease.grace_until and "reason" not in expired


def test_a_denial_signs_the_head_at_its_time(make, clock):
    eng = make()
    clock.advance(9)
    eng.record_denial(cl(1), firm_code=F, product_code=P, invalid=False, reason="expired")
    assert _head(eng)["payload"]["time"] == clock()


def test_the_store_keeps_each_events_access_time(make, clock, tmp_path):
    """The event table's access time is what the cloud's store reads its sessions by."""
    eng = make()
    lease = acquire(eng, cl(1))
    clock.advance(30)
    eng.release(lease.id, "c1")
    eng.record_denial(cl(2), firm_code=F, product_code=P, invalid=False, reason="no")
    db = sqlite3.connect(tmp_path / "seats.db")
    try:
        rows = db.execute("SELECT kind, access_time FROM events ORDER BY seq").fetchall()
    finally:
        db.close()
    assert rows == [("access", lease.access_time), ("release", lease.access_time), ("deny", clock())]


def test_an_exclusive_access_never_takes_a_lingering_seat(make, clock):
    """A released seat lingering on the machine is no process in use: an exclusive access
    is granted, on a seat of its own, and the lingering seat stays as it was."""
    eng = make(ttl=60, linger=300)
    client = cl(1, host="box")
    lease = acquire(eng, client, licenses=[lic(quantity=5)])
    eng.release(lease.id, "c1")
    sole = acquire(eng, cl(2, host="box"), mode="exclusive", licenses=[lic(quantity=5)])
    assert sole.seat == f"exclusive:{client.machine}"
    assert eng.lease(lease.id).state == "lingering"
    assert eng.seats_in_use(["S/1"]) == {"S/1": 2}


# ---------------------------------------------------------------- the server log: why, for the administrator


def test_each_refusal_and_loss_tells_the_log_why(make, clock, caplog):
    eng = make("[borrow]\nmax_days = 5")
    with caplog.at_level("INFO", logger="licentia.seats"):
        with pytest.raises(Refusal):
            eng.acquire(cl(1), firm_code=F, product_code=P, candidates=[])
        with pytest.raises(Refusal):
            eng.borrow(cl(1), firm_code=F, product_code=P, days=0, borrower=BORROWER, candidates=[lic()])
        holder = _Holder()
        lease = acquire(eng, dataclasses.replace(cl(2, user="bob"), holder=holder.pub))
        eng.release(lease.id, "c2", counter=0, proof=holder.proof(grants.LEASE_RELEASE, lease.id, 0))
        b = eng.borrow(cl(3), firm_code=F, product_code=P, days=2, borrower=BORROWER, candidates=[lic()])
        eng.release(b.id, admin=True)
    lines = [r.getMessage() for r in caplog.records]
    assert f"refused alice@h1 for {F}:{P}: the license server has no license for {F}:{P}" in lines
    assert f"refused borrowing {F}:{P} to alice@h1: alice@h1: borrow days=0" in lines
    assert f"lease-release of lease {lease.id} refused: replayed (counter not above the last)" in lines
    assert f"borrowed seat {b.id} released by the administrator: counted until {b.expires} unless returned" in lines


def test_a_release_right_at_the_expiry_is_an_expiry(make, clock):
    eng = make(ttl=60, linger=300)
    lease = acquire(eng, cl(1))
    clock.advance(60)
    assert eng.release(lease.id, "c1") is True
    assert eng.lease(lease.id).state == "expired"
