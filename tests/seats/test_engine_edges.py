"""The seat engine at its edges: each refusal's type, the client's message and the log
line, and the checks a borrow, a renewal and a release pass through (written against the
changes mutation testing found unnoticed; docs/testing.md)."""

from __future__ import annotations

import dataclasses

import pytest

from licentia.core import errors as E
from licentia.seats import Refusal
from tests.seats.helpers import BORROWER, F, P, acquire, cl, lic


def _borrow(eng, client, candidates, days=2):
    with pytest.raises(Refusal) as info:
        eng.borrow(client, firm_code=F, product_code=P, days=days, borrower=BORROWER, candidates=candidates)
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

CONTAINER = {"serial": "130-AAAA-BBBB-CCCC", "sign_pub": "k"}
OTHER = {"serial": "130-BBBB-CCCC-DDDD", "sign_pub": "k2"}


def _graced(n, container=CONTAINER, user="alice", host="h1"):
    return dataclasses.replace(cl(n, user=user, host=host), container=dict(container))


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
    lease = _take(eng, _graced(1))
    assert eng.end_borrow(lease.id, CONTAINER["serial"]) is None
    assert eng.lease(lease.id).state == "active" and eng.lease(lease.id).grace_until is not None
    borrower = {**BORROWER, "serial": CONTAINER["serial"]}
    b = eng.borrow(cl(2, user="bob"), firm_code=F, product_code=P, days=2, borrower=borrower, candidates=[lic()])
    assert eng.end_grace(b.id, CONTAINER["serial"]) == []
    assert eng.lease(b.id).state == "active"
    assert _finals(eng, clock, "return") == []


def test_a_grace_receipt_ends_the_grace_of_every_lease_of_that_container_on_the_license(make, clock):
    """Leases of one container on one license, with another container's lease between them:
    the receipt of one ends the grace of both of its own, never the other's."""
    eng = make(ttl=30)
    first = _take(eng, _graced(1))
    stranger = _take(eng, _graced(2, OTHER, user="bob", host="h2"))
    second = _take(eng, _graced(3))
    assert eng.release(first.id, first.client_lease_id) is True  # given up without a receipt: on grace
    released_at = clock()
    clock.advance(600)
    ended = eng.end_grace(first.id, CONTAINER["serial"])
    assert sorted(x.id for x in ended) == sorted([first.id, second.id])
    assert eng.lease(first.id).state == "returned"
    assert eng.lease(second.id).state == "active" and eng.lease(second.id).grace_until is None
    assert eng.lease(stranger.id).grace_until is not None
    (back,) = _finals(eng, clock, "return")
    assert back["leaseId"] == first.id and back["releaseTime"] == released_at


def test_a_lost_grace_seat_returned_ends_at_the_administrators_release(make, clock):
    eng = make(ttl=30)
    lease = _take(eng, _graced(1))
    clock.advance(10)
    assert eng.release(lease.id, admin=True) is True
    (lost,) = _finals(eng, clock, "lost")
    assert lost["reason"] == "released by the administrator; counted until the grant ends or the borrower returns it"
    assert eng.release(lease.id, admin=True) is False  # lost once: a second release changes nothing
    assert len(_finals(eng, clock, "lost")) == 1
    released = clock()
    clock.advance(600)
    assert [x.id for x in eng.end_grace(lease.id, CONTAINER["serial"])] == [lease.id]
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
    with pytest.raises(Refusal) as info:
        eng.borrow(
            cl(2, user="bob"),
            firm_code=F,
            product_code=P,
            days=2,
            borrower={**BORROWER, "serial": "130-X"},
            candidates=[lic(quantity=3)],
        )
    r = info.value
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
    import json

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
