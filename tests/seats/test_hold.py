"""``SeatEngine.hold``: seats of a license held for a tag (a proxy license server) as
borrows into one container until a time, kept, topped up and given back on each call,
never touching another holder's seats."""

from __future__ import annotations

from tests.seats.helpers import BORROWER, acquire, cl, lic

TAG = "proxy:7"


def _held(eng, key="S/1"):
    return sorted(
        (lease.seat, lease.expires, lease.state)
        for lease in eng.sessions()
        if lease.license_key == key and lease.seat.startswith(TAG + "#")
    )


def _returns(eng, clock):
    return [e for e in eng.usage(0, clock() + 1, events=True) if e["event"] == "return"]


def test_hold_takes_seats_as_borrows_into_the_container_until_the_time(make, clock):
    eng = make()
    until = clock() + 3600
    assert eng.hold(cl(1), lic(quantity=5), tag=TAG, seats=3, until=until, borrower=BORROWER) == 3
    leases = [lease for lease in eng.sessions() if lease.seat.startswith(TAG)]
    assert sorted(lease.seat for lease in leases) == [f"{TAG}#1", f"{TAG}#2", f"{TAG}#3"]
    assert {(lease.mode, lease.expires, lease.feature_code) for lease in leases} == {("borrow", until, 0)}
    assert all(lease.borrower == BORROWER for lease in leases)
    assert eng.seats_in_use(["S/1"]) == {"S/1": 3}


def test_a_second_hold_keeps_tops_up_and_gives_back(make, clock):
    eng = make()
    first = clock() + 3600
    eng.hold(cl(1), lic(quantity=5), tag=TAG, seats=2, until=first, borrower=BORROWER)
    clock.advance(60)
    later = clock() + 3600
    assert eng.hold(cl(1), lic(quantity=5), tag=TAG, seats=4, until=later, borrower=BORROWER) == 4
    assert _held(eng) == [(f"{TAG}#{n}", later, "active") for n in (1, 2, 3, 4)]  # kept ones extended
    assert _returns(eng, clock) == []
    clock.advance(60)
    assert eng.hold(cl(1), lic(quantity=5), tag=TAG, seats=1, until=later, borrower=BORROWER) == 1
    assert _held(eng) == [(f"{TAG}#1", later, "active")]  # the lowest seat kept
    back = _returns(eng, clock)
    assert len(back) == 3 and {e["releaseTime"] for e in back} == {clock()}
    assert eng.seats_in_use(["S/1"]) == {"S/1": 1}


def test_hold_stops_at_the_licenses_free_seats_and_leaves_others_alone(make, clock):
    eng = make()
    theirs = acquire(eng, cl(1), licenses=[lic(quantity=3)])
    other = eng.hold(cl(2), lic(quantity=3), tag="proxy:8", seats=1, until=clock() + 60, borrower=BORROWER)
    assert other == 1
    assert eng.hold(cl(3), lic(quantity=3), tag=TAG, seats=5, until=clock() + 60, borrower=BORROWER) == 1
    assert eng.seats_in_use(["S/1"]) == {"S/1": 3}
    assert eng.hold(cl(3), lic(quantity=3), tag=TAG, seats=0, until=clock() + 60, borrower=BORROWER) == 0
    assert eng.lease(theirs.id).state == "active"
    assert [lease.seat for lease in eng.sessions() if lease.seat.startswith("proxy:8#")] == ["proxy:8#1"]
    assert eng.seats_in_use(["S/1"]) == {"S/1": 2}


def test_a_license_without_a_seat_limit_is_held_as_asked(make, clock):
    eng = make()
    assert eng.hold(cl(1), lic(quantity=0), tag=TAG, seats=4, until=clock() + 60, borrower=BORROWER) == 4


def test_a_hold_until_now_gives_every_seat_back(make, clock):
    eng = make()
    eng.hold(cl(1), lic(quantity=5), tag=TAG, seats=2, until=clock() + 60, borrower=BORROWER)
    assert eng.hold(cl(1), lic(quantity=5), tag=TAG, seats=2, until=clock(), borrower=BORROWER) == 0
    assert _held(eng) == [] and len(_returns(eng, clock)) == 2
    assert eng.hold(cl(1), lic(quantity=5), tag=TAG, seats=-1, until=clock() + 60, borrower=BORROWER) == 0


def test_a_lost_held_seat_is_still_the_holders(make, clock):
    """The administrator's release marks a held seat lost; the next hold counts it as held
    (it stays counted until it ends) and gives it back when no longer wanted."""
    eng = make()
    until = clock() + 3600
    eng.hold(cl(1), lic(quantity=2), tag=TAG, seats=2, until=until, borrower=BORROWER)
    seat_one = next(lease for lease in eng.sessions() if lease.seat == f"{TAG}#1")
    assert eng.release(seat_one.id, admin=True) is True
    assert eng.lease(seat_one.id).state == "lost"
    assert eng.hold(cl(1), lic(quantity=2), tag=TAG, seats=2, until=until, borrower=BORROWER) == 2
    assert eng.seats_in_use(["S/1"]) == {"S/1": 2}
    assert eng.hold(cl(1), lic(quantity=2), tag=TAG, seats=1, until=until, borrower=BORROWER) == 1
    assert eng.lease(seat_one.id).state == "lost"  # the lowest seat is kept
    assert eng.seats_in_use(["S/1"]) == {"S/1": 1}


def test_a_gap_in_the_held_seats_is_filled_by_the_next_number(make, clock):
    eng = make()
    until = clock() + 3600
    eng.hold(cl(1), lic(quantity=5), tag=TAG, seats=3, until=until, borrower=BORROWER)
    two = next(lease for lease in eng.sessions() if lease.seat == f"{TAG}#2")
    eng.end_borrow(two.id, BORROWER["serial"])  # a returned seat
    assert eng.hold(cl(1), lic(quantity=5), tag=TAG, seats=3, until=until, borrower=BORROWER) == 3
    assert [seat for seat, _, _ in _held(eng)] == [f"{TAG}#1", f"{TAG}#2", f"{TAG}#3"]
