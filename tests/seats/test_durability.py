"""The store: what the engine acknowledged is on disk, for a new engine on the same file."""

from __future__ import annotations

from licentia.core import errors as E
from tests.seats.helpers import acquire, cl, lic, refused


def test_state_survives_a_new_engine_on_the_same_file(make, clock):
    eng = make()
    a = acquire(eng, cl(1), licenses=[lic(quantity=1)])
    eng2 = make()
    assert refused(eng2, cl(2), licenses=[lic(quantity=1)]).error is E.SeatsExhausted
    eng2.renew(a.id, "c1")
