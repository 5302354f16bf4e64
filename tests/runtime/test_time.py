"""Time: the virtual clock, sync intervals, maintenance periods."""


import pytest

from licentia.core import errors as E
from licentia.core.license import CLOCK_TOLERANCE, Options
from tests.factory import DAY, T0
from tests.runtime.helpers import install, runtime


def test_clock_set_back(tmp_path, clock, firm):
    install(tmp_path, firm, clock, options=Options(expires=T0 + 100 * DAY), license_id=1)
    rt = runtime(tmp_path, clock)
    rt.trust(firm.code, firm.pem)
    clock.advance(30 * DAY)
    rt.access(firm.code, 1)  # records an observation: time moved on noticeably
    clock.advance(-(CLOCK_TOLERANCE + 3600))
    with pytest.raises(E.ClockTampered):
        rt.access(firm.code, 1)
    clock.advance(CLOCK_TOLERANCE + 3600)
    assert rt.access(firm.code, 1)


def test_clock_set_back_leaves_untimed_licenses_working(tmp_path, clock, firm):
    install(tmp_path, firm, clock)
    rt = runtime(tmp_path, clock)
    rt.trust(firm.code, firm.pem)
    clock.advance(30 * DAY)
    rt.access(firm.code, 1)
    clock.advance(-60 * DAY)
    assert rt.access(firm.code, 1)


def test_sync_interval(tmp_path, clock, firm):
    install(tmp_path, firm, clock, options=Options(sync_interval=7 * DAY))
    rt = runtime(tmp_path, clock)
    rt.trust(firm.code, firm.pem)
    clock.advance(6 * DAY)
    rt.access(firm.code, 1)
    clock.advance(2 * DAY)
    with pytest.raises(E.SyncRequired, match="licentia sync"):
        rt.access(firm.code, 1)


def test_maintenance_with_release_date(tmp_path, clock, firm):
    import datetime as dt

    install(tmp_path, firm, clock, options=Options(maintenance_until=T0))
    rt = runtime(tmp_path, clock)
    rt.trust(firm.code, firm.pem)
    assert rt.access(firm.code, 1, release_date=T0 - DAY)
    with pytest.raises(E.MaintenanceExpired):
        rt.access(firm.code, 1, release_date=dt.date(2030, 1, 1))


def test_a_refused_access_moves_the_virtual_clock(tmp_path, clock, firm):
    """Expire the license, then set the clock back: the refusal saw the time."""
    install(tmp_path, firm, clock, options=Options(expires=T0 + 40 * DAY), license_id=1)
    rt = runtime(tmp_path, clock)
    rt.trust(firm.code, firm.pem)
    clock.advance(41 * DAY)
    with pytest.raises(E.LicenseExpired):
        rt.access(firm.code, 1)
    clock.set(T0 + 600)  # +10 minutes
    with pytest.raises(E.ClockTampered):
        runtime(tmp_path, clock).access(firm.code, 1, firm_key=firm.pem)
