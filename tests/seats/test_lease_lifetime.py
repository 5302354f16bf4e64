"""How long a lease holds its seat: TTL and heartbeats, linger, reconnect, the administrator's release."""

from __future__ import annotations

import pytest

from licentia.core import errors as E
from licentia.seats import LeaseRevoked, LeaseUnknown
from tests.seats.helpers import acquire, cl, lic, refused


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
    first = acquire(eng, cl(1), licenses=one)
    eng.release(first.id, "c1")
    assert eng.lease(first.id).state == "lingering"
    # the same user on another machine, and another user on this one, find the seat taken
    assert refused(eng, cl(3, host="h2"), licenses=one).error is E.SeatsExhausted
    assert refused(eng, cl(4, user="bob"), licenses=one).error is E.SeatsExhausted
    back = acquire(eng, cl(2), licenses=one)  # alice@h1 again: takes the lingering seat
    assert back.id != first.id and back.seat == first.seat and back.state == "active"
    assert eng.lease(first.id).state == "released"
    assert eng.seats_in_use(["S/1"]) == {"S/1": 1}
    clock.advance(31)  # past the linger: the seat is alice's lease's, not free
    assert refused(eng, cl(4, user="bob"), licenses=one).error is E.SeatsExhausted
    eng.release(back.id, "c2")
    clock.advance(31)
    acquire(eng, cl(4, user="bob"), licenses=one)


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
