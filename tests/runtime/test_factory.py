"""The one runtime factory and the test seam: clock and traits are injected, never patched."""

import time

import pytest

import licentia
from licentia import _testing
from licentia.container import Container, Grant
from licentia.core import errors as E
from licentia.runtime import factory, get_runtime, make_runtime, system_clock
from tests.factory import T0, machine_traits, other_machine
from tests.runtime.helpers import install


def test_install_sets_the_clock_and_traits_of_every_runtime_the_factory_makes(tmp_path):
    clock = _testing.FakeClock(T0)
    shared = get_runtime()
    _testing.install(clock=clock, traits=other_machine)
    made = make_runtime(tmp_path)
    for rt in (shared, made, get_runtime()):
        assert rt.clock() == T0
        assert rt.traits() == other_machine()
    clock.advance(60)
    assert made.clock() == T0 + 60 == shared.clock()
    assert made.home == tmp_path


def test_uninstall_puts_the_system_back_and_forgets_the_shared_runtime():
    _testing.install(clock=_testing.FakeClock(T0))
    before = get_runtime()
    _testing.uninstall()
    assert factory.clock is system_clock
    after = get_runtime()
    assert after is not before
    assert abs(after.clock() - time.time()) < 5


def test_a_license_in_a_container_is_its_own_grant(tmp_path, clock, firm):
    container = install(tmp_path, firm, clock)
    _testing.install(clock=clock, traits=machine_traits)
    with make_runtime(tmp_path).access(firm.code, 1, firm_key=firm.pem) as handle:
        grant = handle.grant
        assert grant.serial == container.serial == handle.container_serial
        assert grant.holder is not None and grant.holder.serial == container.serial
        assert handle.server is None and not handle.lease_lost
        assert handle.product_key(1) == grant.product_key(handle._entry, 1)
    assert handle.released
    with pytest.raises(E.LicenseError, match="this handle was released") as info:
        handle.product_key(1)
    assert type(info.value) is E.LicenseError  # not a subclass: nothing about the license itself


def test_the_machine_container_has_what_the_interfaces_ask(tmp_path, clock, firm):
    container = install(tmp_path, firm, clock)
    for interface in (Grant, Container):
        members = {n for n in vars(interface) if not n.startswith("_")} | set(interface.__annotations__)
        missing = [n for n in members if not hasattr(container, n)]
        assert missing == [], interface.__name__


def test_every_exception_derives_from_one_base():
    import inspect

    classes = [c for _, c in inspect.getmembers(E, inspect.isclass) if issubclass(c, Exception)]
    assert len(classes) > 40
    assert all(issubclass(c, licentia.LicentiaError) for c in classes)
