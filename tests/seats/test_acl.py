"""Access rules: deny, allow, reserve and max; rules that cannot be used are refused with a reason."""

from __future__ import annotations

import pytest

from licentia.core import errors as E
from licentia.seats import Acl, AclError
from tests.seats.acl_rules import ACL
from tests.seats.helpers import acquire, cl, lic, refused


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
