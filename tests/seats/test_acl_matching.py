"""Who a rule matches (user, host, address, group; product or all) and how reserve, max and
the [borrow] policy count, each through the seat engine as a license server runs it."""

from __future__ import annotations

import pytest

from licentia.core import errors as E
from licentia.seats import Acl, AclError, Refusal
from tests.seats.helpers import BORROWER, F, P, acquire, cl, lic, refused


def _borrow(eng, client, licenses=None):
    return eng.borrow(client, firm_code=F, product_code=P, days=1, borrower=BORROWER, candidates=licenses or [lic()])


def test_a_host_rule_matches_host_names_without_regard_to_case(make):
    eng = make("[[rules]]\naction = 'deny'\nhosts = ['Kiosk-*']")
    r = refused(eng, cl(1, host="KIOSK-7"))
    assert r.error is E.AccessDenied
    assert r.client_message == "the license server's access rules refuse this access; ask its administrator"
    assert refused(eng, cl(2, host="kiosk-8")).error is E.AccessDenied
    acquire(eng, cl(3, host="desk-1"))


def test_an_address_rule_matches_the_address_and_ignores_what_is_no_address(make):
    eng = make("[[rules]]\naction = 'deny'\nips = ['10.9.0.1/16', '2001:db8::/32']")  # host bits are ignored
    assert refused(eng, cl(1, ip="10.9.3.4")).error is E.AccessDenied
    assert refused(eng, cl(2, ip="2001:db8::1")).error is E.AccessDenied
    acquire(eng, cl(3, ip="10.8.0.1"))
    acquire(eng, cl(4, ip="not-an-address"), licenses=[lic(quantity=5)])
    acquire(eng, cl(5, ip=""), licenses=[lic(quantity=5)])


def test_a_rule_for_one_product_leaves_the_others_alone(make):
    eng = make(f"[[rules]]\naction = 'deny'\nusers = ['alice']\nproduct = '{F}:2'")
    acquire(eng, cl(1))  # product 1
    with pytest.raises(Refusal) as info:
        eng.acquire(cl(2), firm_code=F, product_code=2, candidates=[lic(key="S/2", product=2)])
    assert info.value.error is E.AccessDenied
    other_firm = make(f"[[rules]]\naction = 'deny'\nusers = ['alice']\nproduct = '{F + 1}:*'")
    acquire(other_firm, cl(3), licenses=[lic(key="S/3")])


def test_names_may_be_one_string_and_groups_come_from_the_config_or_the_client(make):
    eng = make(
        "[groups]\nlab = ['bob']\n[[rules]]\naction = 'deny'\nusers = 'mallory'\n"
        "[[rules]]\naction = 'deny'\ngroups = ['lab', 'guests']"
    )
    assert refused(eng, cl(1, user="mallory")).error is E.AccessDenied
    assert refused(eng, cl(2, user="bob")).error is E.AccessDenied  # lab, by the config
    assert refused(eng, cl(3, user="zed", groups=["guests"])).error is E.AccessDenied  # by what it says
    acquire(eng, cl(4, user="carol", groups=["staff"]))


@pytest.mark.parametrize(
    "text, reason",
    [
        ("[[rules]]\naction = 'deny'\nusers = 5", "rules #1.users is a list of non-empty strings"),
        ("[[rules]]\naction = 'deny'\nusers = [1]", "rules #1.users is a list of non-empty strings"),
        ("[[rules]]\naction = 'deny'\ngroups = [true]", "rules #1.groups is a list of non-empty strings"),
        ("[[rules]]\naction = 'deny'\nhosts = ['']", "rules #1.hosts is a list of non-empty strings"),
        ("[[rules]]\naction = 'deny'\nips = [10]", "rules #1.ips is a list of non-empty strings"),
        ("[[rules]]\naction = 'deny'\nusers = ['x']\nproduct = 10101", "rules #1: product is FIRM:PRODUCT"),
        ("[borrow]\nusers = 'x'\nhosts = [2]", "[borrow].hosts is a list of non-empty strings"),
        ("[[rules]]\naction = 'deny'\nuser = 'x'\nhost = 'y'", "rules #1: unknown key(s) host, user"),
        ("[borrow]\nmax_day = 1\nseat = 1", "[borrow]: unknown key(s) max_day, seat"),
    ],
)
def test_each_selector_is_checked_where_it_stands(text, reason):
    with pytest.raises(AclError) as info:
        Acl.from_toml(text)
    assert str(info.value).startswith(reason), str(info.value)


def test_the_config_is_read_from_bytes_too_and_its_digest_names_the_text():
    text = "[[rules]]\naction = 'deny'\nusers = ['x']\nproduct = '*'\n"
    a, b = Acl.from_toml(text), Acl.from_toml(text.encode())
    assert a.digest == b.digest and len(a.digest) == 16 and a.rules == b.rules
    assert a.rules[0].firm is None and a.rules[0].product is None
    assert a.rules[0].describe() == "rule #1 (DENY *)"
    assert Acl.from_toml(text + "\n").digest != a.digest


def test_a_reserve_alone_holds_its_seats_back(make):
    """Only a reserve rule: others may not take the reserved seat, its population may."""
    eng = make("[[rules]]\naction = 'reserve'\nusers = ['bob']\nseats = 1")
    two = [lic(quantity=2)]
    acquire(eng, cl(1), licenses=two)
    r = refused(eng, cl(2, host="h2"), licenses=two)
    assert r.error is E.SeatsExhausted and (r.seats, r.in_use) == (2, 1)
    assert r.client_message == ("all 2 seat(s) of product 10101:1 are in use or reserved for others; try again later")
    assert r.log == "alice@h2: 1 seat(s) in use, 1 reserved for others of 2"
    acquire(eng, cl(3, user="bob"), licenses=two)


def test_a_reserve_its_population_uses_holds_nothing_more_back(make):
    eng = make("[[rules]]\naction = 'reserve'\nusers = ['bob']\nseats = 1")
    three = [lic(quantity=3)]
    acquire(eng, cl(1, user="bob"), licenses=three)
    acquire(eng, cl(2), licenses=three)
    acquire(eng, cl(3, host="h3"), licenses=three)  # the last seat: bob's reserve is in use, none held back
    assert eng.seats_in_use(["S/1"]) == {"S/1": 3}


def test_a_max_without_seats_is_max_zero(make):
    eng = make("[[rules]]\naction = 'max'\nusers = ['carol']")
    assert Acl.from_toml("[[rules]]\naction = 'max'\nusers = ['carol']").rules[0].seats == 0
    assert refused(eng, cl(1, user="carol")).error is E.AccessDenied
    acquire(eng, cl(2, user="dave"))


def test_a_max_alone_counts_its_population(make):
    eng = make("[[rules]]\naction = 'max'\nusers = ['carol']\nseats = 2")
    five = [lic(quantity=5)]
    acquire(eng, cl(1, user="carol"), licenses=five)
    acquire(eng, cl(2, user="carol", host="h2"), licenses=five)
    r = refused(eng, cl(3, user="carol", host="h3"), licenses=five)
    assert r.error is E.AccessDenied and "rule #1 (MAX 2 *) reached" in r.log
    acquire(eng, cl(4, user="dave"), licenses=five)


@pytest.mark.parametrize(
    "who, first, second",
    [
        ("hosts = ['lab-*']", dict(host="lab-1"), dict(user="bob", host="lab-2")),
        ("ips = ['10.7.0.0/16']", dict(ip="10.7.0.1"), dict(user="bob", host="h2", ip="10.7.0.2")),
        ("groups = ['lab']", dict(user="bob"), dict(user="carol", host="h2")),
    ],
)
def test_a_max_counts_the_seats_its_population_holds_by_host_address_or_group(make, who, first, second):
    eng = make(f"[groups]\nlab = ['bob', 'carol']\n[[rules]]\naction = 'max'\n{who}\nseats = 1")
    five = [lic(quantity=5)]
    acquire(eng, cl(1, **first), licenses=five)
    assert refused(eng, cl(2, **second), licenses=five).error is E.AccessDenied
    acquire(eng, cl(3, user="zed", host="elsewhere", ip="10.1.0.1"), licenses=five)


def test_a_full_reserve_sends_its_population_to_the_max(make):
    eng = make(
        "[groups]\neng = ['alice', 'bob']\n"
        "[[rules]]\naction = 'reserve'\ngroups = ['eng']\nseats = 1\n"
        "[[rules]]\naction = 'max'\ngroups = ['eng']\nseats = 1"
    )
    three = [lic(quantity=3)]
    acquire(eng, cl(1), licenses=three)  # the reserved seat
    r = refused(eng, cl(2, user="bob"), licenses=three)  # the reserve is used: the max decides
    assert r.error is E.AccessDenied and "MAX 1" in r.log
    acquire(eng, cl(3, user="dave"), licenses=three)


def test_a_product_reserve_admits_past_that_products_allow_list(make):
    eng = make(
        f"[[rules]]\naction = 'allow'\nusers = ['alice']\nproduct = '{F}:{P}'\n"
        f"[[rules]]\naction = 'reserve'\nusers = ['bob']\nseats = 1\nproduct = '{F}:{P}'"
    )
    acquire(eng, cl(1))
    acquire(eng, cl(2, user="bob"))
    r = refused(eng, cl(3, user="zed"), licenses=[lic(quantity=5)])
    assert r.error is E.AccessDenied and r.log == f"zed@h1 (10.0.0.1) matches no allow rule for {F}:{P}"


@pytest.mark.parametrize("policy", ["enabled = false", "max_days = 0"])
def test_borrowing_switched_off(make, policy):
    eng = make(f"[borrow]\n{policy}")
    with pytest.raises(Refusal) as info:
        _borrow(eng, cl(1))
    r = info.value
    assert r.error is E.AccessDenied
    assert r.client_message == "this license server does not lend licenses"
    assert r.log == "alice@h1: borrowing is switched off"
    acquire(eng, cl(2, user="bob"))  # access goes on


def test_borrowing_only_for_its_population(make):
    eng = make("[groups]\nlaptops = ['alice']\n[borrow]\ngroups = ['laptops']\nhosts = ['road-*']")
    _borrow(eng, cl(1))
    eng2 = make("[borrow]\nhosts = ['road-*']")
    _borrow(eng2, cl(2, user="bob", host="ROAD-3"), [lic(key="S/2")])
    with pytest.raises(Refusal) as info:
        _borrow(eng2, cl(3, user="carol", host="desk"), [lic(key="S/3")])
    assert info.value.error is E.AccessDenied
    assert info.value.log == "carol@desk (10.0.0.1) is not in [borrow]'s users/groups/hosts/ips"


def test_borrowing_by_address(make):
    eng = make("[borrow]\nips = ['10.5.0.0/16']")
    _borrow(eng, cl(1, ip="10.5.1.1"))
    with pytest.raises(Refusal) as info:
        _borrow(eng, cl(2, user="bob", ip="10.6.1.1"), [lic(key="S/2")])
    assert info.value.error is E.AccessDenied
