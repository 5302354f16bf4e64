"""Access modes and seat counting: user, station, exclusive, nolimit, pooling several licenses."""

from __future__ import annotations

from licentia.core import errors as E
from tests.seats.helpers import acquire, cl, lic, refused


def test_user_mode_counts_a_seat_per_access(make):
    eng = make()
    a = acquire(eng, cl(1))
    acquire(eng, cl(2))
    r = refused(eng, cl(3))
    assert r.error is E.SeatsExhausted and (r.seats, r.in_use) == (2, 2)
    assert "2 seat" in r.client_message
    assert eng.release(a.id, "c1")
    acquire(eng, cl(3))


def test_station_mode_shares_one_seat_per_user_and_host(make):
    eng = make()
    one = [lic(quantity=1)]
    acquire(eng, cl(1), "station", one)
    acquire(eng, cl(2), "station", one)  # same user and host: same seat
    assert eng.seats_in_use(["S/1"]) == {"S/1": 1}
    assert refused(eng, cl(3, user="bob"), "station", one).error is E.SeatsExhausted
    assert refused(eng, cl(4), "user", one).error is E.SeatsExhausted


def test_exclusive_mode_one_process_per_host(make):
    eng = make()
    a = acquire(eng, cl(1), "exclusive")
    r = refused(eng, cl(2), "exclusive")
    assert r.error is E.AccessDenied and "exclusive" in r.client_message
    assert refused(eng, cl(3), "user").error is E.AccessDenied  # any other process on that host
    acquire(eng, cl(4, host="h2"), "exclusive")  # another host takes its own seat
    assert eng.release(a.id, "c1")
    acquire(eng, cl(2), "exclusive")


def test_exclusive_refused_while_the_host_has_other_leases(make):
    eng = make()
    acquire(eng, cl(1), "user")
    assert refused(eng, cl(2), "exclusive").error is E.AccessDenied


def test_nolimit_only_on_licenses_without_a_seat_limit(make):
    eng = make()
    r = refused(eng, cl(1), "nolimit")
    assert r.error is E.AccessDenied and "nolimit" in r.client_message
    free = [lic(quantity=0)]
    for i in range(5):
        acquire(eng, cl(i), "nolimit", free)
    assert eng.seats_in_use(["S/1"]) == {"S/1": 0}


def test_pooling_over_several_licenses_of_a_product(make):
    eng = make()
    two = [lic("S/1", 1, 1), lic("S/2", 1, 2)]
    a = acquire(eng, cl(1), licenses=two)
    b = acquire(eng, cl(2), licenses=two)
    assert {a.license_id, b.license_id} == {1, 2}
    r = refused(eng, cl(3), licenses=two)
    assert r.error is E.SeatsExhausted and r.seats == 2 and "all 2 seat" in r.client_message


def test_station_seats_go_by_the_proven_machine_not_by_reported_names(make):
    """Cloned VMs report the same user and host name: each proven container is its own station."""
    eng = make()
    one = [lic(quantity=1)]
    acquire(eng, cl(1, machine="130-AAAA@10.0.0.1"), "station", one)
    acquire(eng, cl(2, machine="130-AAAA@10.0.0.1"), "station", one)  # the same container: the same seat
    assert refused(eng, cl(3, machine="130-BBBB@10.0.0.2"), "station", one).error is E.SeatsExhausted
    assert refused(eng, cl(4, machine="130-AAAA@10.0.0.9"), "station", one).error is E.SeatsExhausted  # other address
    assert refused(eng, cl(5, machine=None), "station", one).error is E.SeatsExhausted  # proved nothing
    assert eng.seats_in_use(["S/1"]) == {"S/1": 1}


def test_exclusive_goes_by_the_proven_machine(make):
    eng = make()
    acquire(eng, cl(1, machine="130-AAAA@10.0.0.1"), "exclusive")
    assert refused(eng, cl(2, machine="130-AAAA@10.0.0.1"), "user").error is E.AccessDenied
    acquire(eng, cl(3, machine="130-BBBB@10.0.0.1"), "exclusive")  # same names, another container
