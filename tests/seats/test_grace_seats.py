"""Seats with grace in the engine: who gets grace, how long it keeps a seat counted, what
ends it, and a new process of the same machine taking a grace seat over."""

from __future__ import annotations

import dataclasses

from licentia.seats.model import GRACE, LOST, RETURNED
from tests.seats.helpers import CONTAINER, F, P, cl, graced, lic, refused

HOUR = 3600


def take(engine, client, *, grace=2 * HOUR, licenses=None, mode="user"):
    return engine.acquire(
        client,
        firm_code=F,
        product_code=P,
        mode=mode,
        grace=grace,
        candidates=licenses or [lic(quantity=1, valid_until=None)],
    )


def graceful(quantity=1, max_grace=2 * HOUR, valid_until=None):
    return [dataclasses.replace(lic(quantity=quantity, valid_until=valid_until), max_grace=max_grace)]


def test_grace_needs_the_license_to_allow_it_and_a_proven_container(make, clock):
    engine = make()
    assert take(engine, graced(1), licenses=graceful(4, max_grace=0)).grace_until is None
    assert take(engine, cl(2), licenses=graceful(4)).grace_until is None  # no container named
    no_machine = dataclasses.replace(graced(3), machine=None)
    assert take(engine, no_machine, licenses=graceful(4)).grace_until is None
    lease = take(engine, graced(4), licenses=graceful(4), grace=10 * 24 * HOUR)
    assert lease.grace_until == clock() + 2 * HOUR  # the client asked for more: the license's cap
    assert lease.borrower == CONTAINER


def test_grace_never_outlives_the_license(make, clock):
    engine = make()
    lease = take(engine, graced(), licenses=graceful(valid_until=clock() + 600))
    assert lease.grace_until == clock() + 600


def test_a_release_without_receipt_keeps_the_seat_until_the_grace_ends(make, clock):
    engine = make(ttl=30)
    licenses = graceful()
    lease = take(engine, graced(1), licenses=licenses)
    assert engine.release(lease.id, lease.client_lease_id, counter=None) is True
    held = engine.lease(lease.id)
    assert held.state == GRACE and held.live(clock())
    other = cl(2, user="bob", host="h2")
    assert refused(engine, other, licenses=licenses).error.__name__ == "SeatsExhausted"
    clock.advance(2 * HOUR - 1)
    engine.sweep()
    assert engine.lease(lease.id).state == GRACE
    clock.advance(1)
    engine.sweep()
    assert engine.lease(lease.id).state == "expired"
    take(engine, other, licenses=licenses, grace=0)


def test_the_container_receipt_ends_the_grace_of_its_own_leases_only(make, clock):
    engine = make(ttl=30)
    licenses = graceful(quantity=2)
    mine = take(engine, graced(1), licenses=licenses)
    other = take(
        engine,
        graced(2, user="bob", host="h2", container={"serial": "130-BBBB-CCCC-DDDD", "sign_pub": "k2"}),
        licenses=licenses,
    )
    engine.release(mine.id, mine.client_lease_id)
    assert engine.end_grace(mine.id, "130-BBBB-CCCC-DDDD", "k2") == []  # another container's serial
    assert engine.end_grace(mine.id, CONTAINER["serial"], "k2") == []  # its serial, another key
    assert engine.lease(mine.id).state == GRACE
    ended = engine.end_grace(mine.id, **CONTAINER)
    assert [x.id for x in ended] == [mine.id] and engine.lease(mine.id).state == RETURNED
    assert engine.lease(other.id).grace_until is not None
    assert engine.seats_in_use(["S/1"]) == {"S/1": 1}


def test_a_receipt_for_a_held_lease_only_drops_its_grace(make, clock):
    engine = make(ttl=30)
    lease = take(engine, graced(), licenses=graceful())
    engine.end_grace(lease.id, **CONTAINER)
    held = engine.lease(lease.id)
    assert held.state == "active" and held.grace_until is None
    clock.advance(31)
    engine.sweep()
    assert engine.seats_in_use(["S/1"]) == {"S/1": 0}  # a crash now frees the seat after the TTL


def test_a_crashed_lease_is_taken_over_by_its_machine_only(make, clock):
    engine = make(ttl=30)
    licenses = graceful(quantity=2)
    first = take(engine, graced(1), licenses=licenses)
    clock.advance(60)  # its process died: only the grace keeps the seat
    stranger = take(engine, graced(2, user="bob", host="h2"), licenses=licenses)  # another machine
    assert stranger.seat != first.seat
    assert refused(engine, graced(3, user="carol", host="h3"), licenses=licenses).error.__name__ == "SeatsExhausted"
    again = take(engine, graced(4), licenses=licenses, grace=HOUR)
    assert again.seat == first.seat and again.grace_until == first.grace_until  # the longer grace carries on
    assert engine.lease(first.id).state == "released"
    assert engine.seats_in_use(["S/1"]) == {"S/1": 2}


def test_the_administrators_release_marks_a_grace_seat_lost(make, clock):
    engine = make(ttl=30)
    lease = take(engine, graced(), licenses=graceful())
    assert engine.release(lease.id, admin=True) is True
    held = engine.lease(lease.id)
    assert held.state == LOST and held.live(clock())
    import pytest

    from licentia.seats import LeaseRevoked

    with pytest.raises(LeaseRevoked):
        engine.renew(lease.id, lease.client_lease_id)
    clock.advance(2 * HOUR)
    engine.sweep()
    assert engine.lease(lease.id).state == "expired"


def test_a_grace_seat_is_taken_over_under_the_url_its_record_was_kept_under_only(make, clock):
    """The container keeps the crashed process's grace record under the server URL it named;
    a new process that reaches the server under another URL keeps a record of its own, and
    its receipt gives back that one only. Taking the seat over would leave the first record
    in the container, offline, with no lease counting its seat once the new one is returned."""
    engine = make(ttl=30)
    licenses = graceful(quantity=2)
    by_address = {**CONTAINER, "server": "http://127.0.0.1:22370"}
    by_name = {**CONTAINER, "server": "http://licenses.example:22370"}
    first = take(engine, graced(1, container=by_address), licenses=licenses)
    engine.release(first.id, first.client_lease_id)  # no receipt: only the grace keeps the seat
    other_url = take(engine, graced(2, container=by_name), licenses=licenses)
    assert other_url.seat != first.seat and engine.lease(first.id).state == GRACE
    engine.release(other_url.id, other_url.client_lease_id)
    assert [x.id for x in engine.end_grace(other_url.id, **CONTAINER)] == [other_url.id]
    assert engine.lease(first.id).state == GRACE and engine.seats_in_use(["S/1"]) == {"S/1": 1}
    again = take(engine, graced(3, container=by_address), licenses=licenses)  # the same URL: taken over
    assert again.seat == first.seat and engine.lease(first.id).state == "released"
