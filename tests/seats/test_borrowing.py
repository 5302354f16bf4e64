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
        eng.borrow(cl(2), firm_code=F, product_code=P, days=3, borrower={**BORROWER, "serial": "130-X"},
                   candidates=lics)
    assert info.value.error is E.AccessDenied
    with pytest.raises(Refusal):
        eng.borrow(cl(3, user="bob"), firm_code=F, product_code=P, days=1, borrower={**BORROWER, "serial": "130-Y"},
                   candidates=lics)
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
        eng.borrow(cl(3), firm_code=F, product_code=P, days=2, borrower={**BORROWER, "serial": "130-Z"},
                   candidates=one)
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
