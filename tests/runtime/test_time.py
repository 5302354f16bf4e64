"""Time: the virtual clock, sync intervals, maintenance periods."""

import pytest

from licentia.core import errors as E
from licentia.core.license import CLOCK_TOLERANCE, Options
from tests.factory import DAY, T0
from tests.runtime.helpers import TICKET, install, runtime


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


def _borrowed(home, firm, clock, *, vtime, days=7, options=None, at=T0):
    """A license borrowed from a license server's container into a container under
    ``home`` (the grant signed by the server's container, the server's time ``vtime``)."""
    from licentia.container import MachineContainer
    from licentia.core import grants
    from licentia.core.documents import document_digest
    from licentia.core.license import LicenseEntry
    from tests.factory import machine_traits, other_machine

    server = MachineContainer.create(home / "server", "medium", other_machine(), T0)
    req = server.make_request("activate", T0, ticket=TICKET)
    server.apply_update(firm.grant(req, now=T0, options=options or Options(quantity=1)), T0)
    (doc,) = server.slots()[firm.code].entries
    entry = LicenseEntry.from_payload(doc["payload"], digest=document_digest(doc), document=doc)
    client = MachineContainer.create(home, "medium", machine_traits(), T0)
    grant = grants.build_borrow(
        server.sign,
        borrow_id="b1",
        entry=entry,
        client_serial=client.serial,
        client_key=client.sign_pub,
        issued=at,
        expires=at + days * DAY,
    )
    client.add_borrowed(firm.code, {"entry": doc, "grant": grant, "keys": []}, borrow_id="b1", vtime=vtime)
    return client


@pytest.mark.parametrize(
    "options",
    [Options(quantity=1), Options(quantity=1, expires=T0 + 100 * DAY)],
    ids=["untimed-license", "timed-license"],
)
def test_borrowed_license_refused_when_the_clock_is_set_back(tmp_path, clock, firm, options):
    """A borrow runs until its grant ends; setting the clock back further than the tolerance
    below the server's signed time (the container's virtual clock) stops it, even for a
    license that has no end of its own."""
    served_at = T0 + 3 * DAY
    _borrowed(tmp_path, firm, clock, vtime=served_at, options=options)
    rt = runtime(tmp_path, clock)
    rt.trust(firm.code, firm.pem)
    clock.set(served_at)
    handle = rt.access(firm.code, 1)
    assert handle.expires == T0 + 7 * DAY  # the grant's end
    clock.set(served_at - CLOCK_TOLERANCE)  # within the tolerance (an NTP step, a late CMOS fix)
    assert rt.access(firm.code, 1)
    clock.set(served_at - CLOCK_TOLERANCE - 1)
    with pytest.raises(E.ClockTampered) as info:
        rt.access(firm.code, 1)
    assert "set the clock right" in str(info.value)
    clock.set(served_at - 30 * DAY)  # far back: before the grant was even issued
    with pytest.raises(E.ClockTampered):
        rt.access(firm.code, 1)
    clock.set(served_at + DAY)  # the clock put right: the borrow works again until it ends
    assert rt.access(firm.code, 1)
    clock.set(T0 + 7 * DAY)
    with pytest.raises(E.LicenseExpired):
        rt.access(firm.code, 1)


def test_borrowed_license_use_is_remembered_against_a_clock_set_back(tmp_path, clock, firm):
    """Used on day 6 of a 7-day borrow, then the clock set back to day 1: the borrow must not
    get six more days."""
    _borrowed(tmp_path, firm, clock, vtime=T0)
    rt = runtime(tmp_path, clock)
    rt.trust(firm.code, firm.pem)
    clock.set(T0 + 6 * DAY)
    assert rt.access(firm.code, 1)
    clock.set(T0 + DAY)
    with pytest.raises(E.ClockTampered):
        rt.access(firm.code, 1)


def test_a_license_borrowed_long_after_its_issue_counts_its_sync_interval_from_the_borrow(tmp_path, clock, firm):
    """The server was in sync when it signed the borrow: a 30-day sync interval runs from
    there, not from the day Central issued the license (40 days before)."""
    at = T0 + 40 * DAY
    _borrowed(tmp_path, firm, clock, vtime=at, days=60, options=Options(quantity=1, sync_interval=30 * DAY), at=at)
    rt = runtime(tmp_path, clock)
    rt.trust(firm.code, firm.pem)
    clock.set(at + DAY)
    assert rt.access(firm.code, 1)
    clock.set(at + 30 * DAY + 1)  # past the sync interval counted from the borrow
    with pytest.raises(E.SyncRequired):
        rt.access(firm.code, 1)
