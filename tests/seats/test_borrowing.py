"""Borrowing: a seat taken into a client's container until it is returned or runs out."""

from __future__ import annotations

import pytest

from licentia.core import errors as E
from licentia.seats import Refusal
from tests.seats.helpers import BORROWER, F, P, acquire, cl, lic, refused


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
        eng.borrow(
            cl(2), firm_code=F, product_code=P, days=3, borrower={**BORROWER, "serial": "130-X"}, candidates=lics
        )
    assert info.value.error is E.AccessDenied
    with pytest.raises(Refusal):
        eng.borrow(
            cl(3, user="bob"),
            firm_code=F,
            product_code=P,
            days=1,
            borrower={**BORROWER, "serial": "130-Y"},
            candidates=lics,
        )
    clock.advance(86400)
    eng.sweep()
    acquire(eng, cl(4), licenses=[lic(quantity=1)])


def test_a_borrow_is_bound_to_its_containers_keys(make, clock):
    """Another container presenting the borrower's (public) serial with its own key gets nothing."""
    eng = make("[borrow]\nmax_days = 5")
    one = [lic(quantity=1)]
    b = eng.borrow(cl(1), firm_code=F, product_code=P, days=3, borrower=BORROWER, candidates=one)
    impostor = {**BORROWER, "sign_pub": "another-key", "box_pub": "another-box"}
    with pytest.raises(Refusal) as info:
        eng.borrow(cl(2), firm_code=F, product_code=P, days=3, borrower=impostor, candidates=one)
    assert info.value.error is E.AccessDenied
    assert eng.borrow(cl(1), firm_code=F, product_code=P, days=3, borrower=BORROWER, candidates=one).id == b.id
    denials = [e for e in eng.usage(0, clock() + 1, events=True) if e["event"] == "deny"]
    assert len(denials) == 1 and "another key" in denials[0]["reason"]


def test_an_administrators_release_of_a_borrow_keeps_it_counted_until_it_ends_or_returns(make, clock):
    """The borrowed copy keeps working offline: releasing it on the server must not free the seat."""
    eng = make("[borrow]\nmax_days = 5")
    one = [lic(quantity=1)]
    b = eng.borrow(cl(1), firm_code=F, product_code=P, days=2, borrower=BORROWER, candidates=one)
    assert eng.release(b.id, admin=True) is True
    assert eng.lease(b.id).state == "lost"
    assert refused(eng, cl(2), licenses=one).error is E.SeatsExhausted  # still counted
    with pytest.raises(Refusal):  # borrow -> release -> borrow is no way around it
        eng.borrow(cl(3), firm_code=F, product_code=P, days=2, borrower={**BORROWER, "serial": "130-Z"}, candidates=one)
    events = [e["event"] for e in eng.usage(0, clock() + 1, events=True)]
    assert "lost" in events
    assert eng.end_borrow(b.id, BORROWER["serial"]) is not None  # the return receipt arrives: freed
    acquire(eng, cl(2), licenses=one)


def test_a_lost_borrow_frees_its_seat_when_the_grant_ends(make, clock):
    eng = make("[borrow]\nmax_days = 1")
    one = [lic(quantity=1)]
    b = eng.borrow(cl(1), firm_code=F, product_code=P, days=1, borrower=BORROWER, candidates=one)
    eng.release(b.id, admin=True)
    clock.advance(86400)
    eng.sweep()
    assert eng.lease(b.id).state == "expired"
    acquire(eng, cl(2), licenses=one)


def _borrow(eng, n, licenses, **kw):
    """Client ``n`` borrows into a container of its own (serial and keys of its own)."""
    borrower = {"serial": f"130-BORROW-{n:04d}", "sign_pub": f"sign-{n}", "box_pub": f"box-{n}"}
    return eng.borrow(
        cl(n, user=f"u{n}", host=f"laptop-{n}"),
        firm_code=F,
        product_code=P,
        days=3,
        borrower=borrower,
        candidates=licenses,
        **kw,
    )


def test_borrowing_stops_at_the_seat_limit(make, clock):
    """Every borrowed seat counts: the borrow after the last seat is refused, and so is an
    access while all seats are out on loan; a returned seat can be borrowed again."""
    eng = make("[borrow]\nmax_days = 5")
    three = [lic(quantity=3)]
    taken = [_borrow(eng, n, three) for n in (1, 2, 3)]
    assert len({b.id for b in taken}) == 3
    assert eng.seats_in_use(["S/1"]) == {"S/1": 3}
    with pytest.raises(Refusal) as info:
        _borrow(eng, 4, three)
    assert info.value.error is E.SeatsExhausted
    assert (info.value.seats, info.value.in_use) == (3, 3)
    assert "all 3 seat(s)" in info.value.client_message and "borrow, 3/3" in info.value.log
    denied = refused(eng, cl(5, user="desk", host="desk-1"), licenses=three)
    assert denied.error is E.SeatsExhausted and denied.in_use == 3
    assert eng.seats_in_use(["S/1"]) == {"S/1": 3}  # the refusals took nothing
    kinds = [e["event"] for e in eng.usage(0, clock() + 1, events=True)]
    assert kinds.count("borrow") == 3 and kinds.count("deny") == 2
    assert eng.end_borrow(taken[0].id, "130-BORROW-0001") is not None
    again = _borrow(eng, 4, three)
    assert again.mode == "borrow" and eng.seats_in_use(["S/1"]) == {"S/1": 3}
    with pytest.raises(Refusal) as info:
        _borrow(eng, 6, three)
    assert info.value.error is E.SeatsExhausted


def test_borrowing_counts_the_seats_taken_by_access_too(make, clock):
    """Seats held by running processes count against a borrow, and a borrow against them."""
    eng = make("[borrow]\nmax_days = 5")
    two = [lic(quantity=2)]
    acquire(eng, cl(1), licenses=two)
    _borrow(eng, 2, two)
    with pytest.raises(Refusal) as info:
        _borrow(eng, 3, two)
    assert info.value.error is E.SeatsExhausted and info.value.in_use == 2
    assert refused(eng, cl(4, user="bob"), licenses=two).error is E.SeatsExhausted
