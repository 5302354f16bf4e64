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


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("[[rules]]\naction = 'block'\nusers = ['x']", "rules #1: action is one of deny, allow, reserve, max"),
        ("[[rules]]\naction = 'deny'", "rules #1: name at least one of users, groups, hosts, ips"),
        ("[[rules]]\naction = 'deny'\nips = ['not-an-ip']", "rules #1.ips: 'not-an-ip' is not an IP address or CIDR"),
        ("[[rules]]\naction = 'max'\nusers = ['x']\nseats = -1", "rules #1: max needs seats = a whole number of 0"),
        ("[[rules]]\naction = 'reserve'\nusers = ['x']\nseats = true", "rules #1: reserve needs seats = a whole"),
        ("[[rules]]\naction = 'reserve'\nusers = ['x']\nseats = 1.5", "rules #1: reserve needs seats = a whole"),
        ("[[rules]]\naction = 'deny'\nusers = ['x']\nseats = 1", "rules #1: seats applies to reserve and max only"),
        ("[[rules]]\naction = 'deny'\nuser = ['x']", "rules #1: unknown key(s) user"),
        ("[[rules]]\naction = 'deny'\nusers = ['x']\nname = 3", "rules #1: name is text"),
        (
            "[[rules]]\naction = 'deny'\nusers = ['x']\n[[rules]]\naction = 'deny'\nusers = ['']",
            "rules #2.users is a list of non-empty strings",
        ),
        ("[[rules]]\naction = 'deny'\nusers = ['x']\nproduct = '10101'", "rules #1: product is FIRM:PRODUCT"),
        ("[[rules]]\naction = 'deny'\nusers = ['x']\nproduct = 'a:b'", "rules #1: product is FIRM:PRODUCT"),
        ("rules = ['deny']", "rules #1 is a table"),
        ("rules = 'deny'", "rules is an array of tables: write [[rules]]"),
        ("groups = ['eng']", "[groups] maps a group name to a list of user names"),
        ("[groups]\neng = [1]", "groups.eng is a list of non-empty strings"),
        ("borrow = 1", "[borrow] is a table"),
        ("[borrow]\nmax_day = 1", "[borrow]: unknown key(s) max_day"),
        ("[borrow]\nenabled = 'yes'", "[borrow] enabled is true or false"),
        ("[borrow]\nmax_days = 'long'", "[borrow] max_days is a whole number of 0 or more"),
        ("[borrow]\nmax_days = -1", "[borrow] max_days is a whole number of 0 or more"),
        ("[borrow]\nmax_seats = -1", "[borrow] max_seats is a whole number of 0 or more"),
        ("[borrow]\nmax_seats = false", "[borrow] max_seats is a whole number of 0 or more"),
        ("not toml [", "not valid TOML"),
    ],
)
def test_bad_acl_is_refused_with_a_reason(text, reason):
    with pytest.raises(AclError) as info:
        Acl.from_toml(text)
    assert str(info.value).startswith(reason), str(info.value)


def test_good_acl_reads_as_written():
    acl = Acl.from_toml("""
[groups]
eng = ["alice", "bob"]
[[rules]]
action = "reserve"
name = "eng seats"
product = "10101:*"
groups = ["eng"]
seats = 0
[[rules]]
action = "max"
product = "10101:2"
users = ["carol"]
hosts = ["Kiosk-*"]
ips = ["10.9.0.0/16"]
seats = 3
[borrow]
enabled = false
max_days = 0
max_seats = 0
""")
    reserve, cap = acl.rules
    assert (reserve.index, reserve.action, reserve.firm, reserve.product, reserve.seats, reserve.name) == (
        1,
        "reserve",
        10101,
        None,
        0,
        "eng seats",
    )
    assert (cap.index, cap.action, cap.firm, cap.product, cap.seats) == (2, "max", 10101, 2, 3)
    assert cap.who.hosts == ("kiosk-*",) and cap.who.users == ("carol",) and len(cap.who.ips) == 1
    assert acl.groups == {"eng": frozenset({"alice", "bob"})}
    assert (acl.borrow.enabled, acl.borrow.max_days, acl.borrow.max_seats) == (False, 0, 0)
    assert len(acl.digest) == 16
    assert reserve.describe() == "rule #1 'eng seats' (RESERVE 0 10101:*)"
    assert cap.describe() == "rule #2 (MAX 3 10101:2)"
    default = Acl.from_toml("")
    assert default.rules == () and (default.borrow.enabled, default.borrow.max_days, default.borrow.max_seats) == (
        True,
        7,
        None,
    )
