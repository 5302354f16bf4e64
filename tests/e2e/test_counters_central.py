"""Counters that cannot be reset: units, trials and rollbacks answer to Central.

Each test plays an attack (or the honest case next to it) with the runtime's own
activation, sync and deactivation against a real License Central on 127.0.0.1, on
SQLite and on PostgreSQL. Machines are runtimes over their own homes with injected
traits; one injected clock drives Central and the machines.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from licentia.core import errors as E
from licentia.core.encoding import canonical
from licentia.runtime import Runtime, activation
from tests.central.central_helpers import ServerThread, Vendor, central_app, make_settings
from tests.factory import machine_traits, other_machine

FIRM = 30303
PRODUCT = 7
HOUR, DAY = 3600, 86400


@dataclass
class Site:
    url: str
    http: httpx.Client
    vendor: Vendor
    clock: Any
    root: Path
    pem: str

    def item(self, **options: Any) -> str:
        policy = {k: options.pop(k) for k in ("on_manipulation", "flag_window_days") if k in options}
        body = {"name": "Metered", "product_code": PRODUCT, "feature_map": 3, "options": options, **policy}
        r = self.vendor.post("/items", body)
        assert r.status_code == 201, r.text
        return str(r.json()["item_id"])

    def ticket(self, item: str) -> str:
        return self.vendor.tickets(1, [item])[0]

    def ticket_view(self, ticket: str) -> dict[str, Any]:
        r = self.vendor.get(f"/tickets/{ticket}")
        assert r.status_code == 200, r.text
        return dict(r.json())

    def container_view(self, serial: str) -> dict[str, Any]:
        r = self.vendor.get(f"/containers/{serial}")
        assert r.status_code == 200, r.text
        return dict(r.json())

    def machine(self, name: str, traits: dict[str, str] | None = None) -> Machine:
        return Machine(self, self.root / name, traits or machine_traits())


class Machine:
    """One end-user machine: each call is a fresh runtime, as each CLI run or app start is."""

    def __init__(self, site: Site, home: Path, traits: dict[str, str]):
        self.site, self.home, self.traits = site, home, traits

    def rt(self) -> Runtime:
        rt = Runtime(self.home, clock=self.site.clock, traits=lambda: dict(self.traits))
        rt.trust(FIRM, self.site.pem)
        return rt

    def activate(self, ticket: str) -> str:
        container, _ = activation.activate(ticket, self.site.url, runtime=self.rt())
        return container.serial

    def deactivate(self, ticket: str) -> None:
        activation.deactivate(ticket, runtime=self.rt())

    def sync(self) -> list[Any]:
        return activation.sync(runtime=self.rt())

    def access(self, units: int = 0) -> Any:
        return self.rt().access(FIRM, PRODUCT, units=units)

    def backup(self, to: Path) -> None:
        shutil.copytree(self.home, to)

    def restore(self, backup: Path) -> None:
        shutil.rmtree(self.home)
        shutil.copytree(backup, self.home)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def site(request: pytest.FixtureRequest, tmp_path: Path, clock: Any) -> Iterator[Site]:
    url = None if request.param == "sqlite" else request.getfixturevalue("pg_url")
    with central_app(make_settings(tmp_path / "central", url), clock) as app, ServerThread(app) as srv:
        with httpx.Client(base_url=srv.url, timeout=30) as http:
            vendor = Vendor(http, FIRM)
            pem = http.get(f"/api/v1/firms/{FIRM}/public-key", params={"format": "pem"}).text
            yield Site(srv.url, http, vendor, clock, tmp_path, pem)


# ---------------------------------------------------------------- deactivate + activate


def test_units_continue_after_deactivate_and_activate_on_the_same_machine(site):
    ticket = site.ticket(site.item(units=100))
    m = site.machine("m")
    m.activate(ticket)
    assert m.access(units=60).units_left == 40
    m.deactivate(ticket)
    assert site.ticket_view(ticket)["consumed"] == 60
    m.activate(ticket)
    with pytest.raises(E.UnitsExhausted):
        m.access(units=41)
    # the re-issued entry carries the 60 units; the old local count is not added again
    assert m.access(units=40).units_left == 0
    m.deactivate(ticket)
    assert site.ticket_view(ticket)["consumed"] == 100


def test_units_continue_on_another_machine(site):
    ticket = site.ticket(site.item(units=100))
    a, b = site.machine("a"), site.machine("b", other_machine())
    a.activate(ticket)
    a.access(units=70)
    a.deactivate(ticket)
    b.activate(ticket)
    with pytest.raises(E.UnitsExhausted):
        b.access(units=31)
    assert b.access(units=30).units_left == 0


def test_an_expired_trial_stays_expired_after_reactivation(site):
    ticket = site.ticket(site.item(usage_period_days=1))
    m = site.machine("m")
    m.activate(ticket)
    m.access()  # starts the one-day trial
    site.clock.advance(2 * DAY)
    with pytest.raises(E.LicenseExpired):
        m.access()
    m.deactivate(ticket)
    m.activate(ticket)
    with pytest.raises(E.LicenseExpired):
        m.access()


def test_a_trial_runs_from_its_first_use_ever_on_another_machine(site):
    ticket = site.ticket(site.item(usage_period_days=1))
    a, b = site.machine("a"), site.machine("b", other_machine())
    a.activate(ticket)
    a.access()
    site.clock.advance(12 * HOUR)
    a.deactivate(ticket)
    b.activate(ticket)
    assert b.access().expires == site.ticket_view(ticket)["first_use"] + DAY
    site.clock.advance(13 * HOUR)
    with pytest.raises(E.LicenseExpired):
        b.access()


# ---------------------------------------------------------------- restored backups


@pytest.mark.parametrize("when", ["newer", "equal", "older"])
def test_a_restored_backup_is_noticed_at_the_next_sync_and_rebased(site, tmp_path, when):
    ticket = site.ticket(site.item(units=100))
    m = site.machine("m")
    serial = m.activate(ticket)
    t_backup = site.clock.now
    m.backup(tmp_path / "backup")
    site.clock.advance(HOUR)
    m.access(units=30)
    m.sync()  # Central has seen the 30 units
    t_sync = site.clock.now
    assert site.ticket_view(ticket)["consumed"] == 30
    m.restore(tmp_path / "backup")
    assert m.access().units_left == 100  # the restored files regained the units locally ...
    site.clock.set({"newer": t_sync + HOUR, "equal": t_sync, "older": t_backup}[when])
    with pytest.raises(E.ManipulationDetected) as caught:
        m.sync()  # ... until the next contact with Central
    assert "restored" in str(caught.value) and f"Firm {FIRM}" in str(caught.value)
    # rebase (the default): the user keeps working with what Central saw consumed
    assert m.access().units_left == 70
    shown = site.container_view(serial)
    assert shown["flagged"] is True and shown["flags"][0]["action"] == "rebase"
    assert site.ticket_view(ticket)["flags"] == 1
    m.sync()  # later contacts are honest and answered as usual
    assert m.access(units=70).units_left == 0


def test_a_restored_backup_is_noticed_even_when_no_unit_was_used(site, tmp_path):
    """Restore, then any contact: the restored state has a successor Central saw (a fork)."""
    ticket = site.ticket(site.item(units=100))
    m = site.machine("m")
    serial = m.activate(ticket)
    m.backup(tmp_path / "backup")
    site.clock.advance(HOUR)
    m.sync()
    m.restore(tmp_path / "backup")
    site.clock.advance(HOUR)
    with pytest.raises(E.ManipulationDetected):
        m.sync()
    assert site.container_view(serial)["flagged"] is True


def test_a_restored_backup_pushed_to_a_higher_generation_is_noticed_by_its_counters(site, tmp_path):
    ticket = site.ticket(site.item(units=100))
    m = site.machine("m")
    m.activate(ticket)
    m.backup(tmp_path / "backup")
    site.clock.advance(HOUR)
    m.access(units=30)
    m.sync()
    m.restore(tmp_path / "backup")
    for _ in range(5):  # many clock observations raise the restored state's generation
        site.clock.advance(2 * HOUR)
        m.access()
    with pytest.raises(E.ManipulationDetected):
        m.sync()
    assert m.access().units_left == 70


def test_withdraw_removes_the_license_and_blocks_the_ticket_until_the_vendor_clears_it(site, tmp_path):
    ticket = site.ticket(site.item(units=100, on_manipulation="withdraw"))
    m = site.machine("m")
    serial = m.activate(ticket)
    m.backup(tmp_path / "backup")
    site.clock.advance(HOUR)
    m.access(units=30)
    m.sync()
    m.restore(tmp_path / "backup")
    site.clock.advance(HOUR)
    with pytest.raises(E.ManipulationDetected):
        m.sync()
    with pytest.raises(E.ManipulationDetected) as caught:
        m.access()
    assert caught.value.code == E.ManipulationDetected.code and f"Firm {FIRM}" in str(caught.value)
    assert site.ticket_view(ticket)["state"] == "blocked"
    with pytest.raises(E.ActivationError):
        site.machine("b", other_machine()).activate(ticket)
    r = site.vendor.post(f"/containers/{serial}/clear")
    assert r.status_code == 200, r.text
    assert site.ticket_view(ticket)["state"] == "deactivated"
    m.activate(ticket)
    assert m.access().units_left == 70


def test_a_second_flag_within_the_vendor_period_escalates_rebase_to_withdraw(site, tmp_path):
    ticket = site.ticket(site.item(units=100, flag_window_days=30))
    m = site.machine("m")
    m.activate(ticket)
    for attempt in range(2):
        m.backup(tmp_path / f"backup{attempt}")
        site.clock.advance(HOUR)
        m.access(units=10)
        m.sync()
        m.restore(tmp_path / f"backup{attempt}")
        site.clock.advance(HOUR)
        with pytest.raises(E.ManipulationDetected):
            m.sync()
    with pytest.raises(E.ManipulationDetected):
        m.access()
    assert site.ticket_view(ticket)["state"] == "blocked"


def test_honest_restore_after_a_disk_failure_keeps_working_and_loses_only_unreported_units(site, tmp_path):
    ticket = site.ticket(site.item(units=100))
    m = site.machine("m")
    m.activate(ticket)
    m.access(units=5)
    m.sync()
    m.backup(tmp_path / "nightly")
    site.clock.advance(HOUR)
    m.access(units=20)
    m.sync()
    site.clock.advance(HOUR)
    m.access(units=10)  # never reported: the disk fails now
    m.restore(tmp_path / "nightly")
    site.clock.advance(HOUR)
    with pytest.raises(E.ManipulationDetected):
        m.sync()
    assert m.access().units_left == 75


def test_an_offline_request_delivered_after_a_later_online_sync_is_superseded_not_flagged(site, tmp_path):
    first, second = site.ticket(site.item(units=100)), site.ticket(site.item(units=100))
    m = site.machine("m")
    serial = m.activate(first)
    late = activation.make_request(second, runtime=m.rt())
    site.clock.advance(HOUR)
    m.sync()
    with pytest.raises(E.ActivationError) as caught:
        activation.submit(late, site.url)
    assert "superseded" in str(caught.value).lower()
    assert site.container_view(serial)["flagged"] is False
    m.activate(second)  # a new request goes through
    m.sync()
    assert site.container_view(serial)["flagged"] is False


def test_a_replayed_request_is_answered_again_not_flagged(site):
    ticket = site.ticket(site.item(units=100))
    m = site.machine("m")
    serial = m.activate(ticket)
    rt = m.rt()
    container = rt.container(serial)
    request = container.make_request("sync", site.clock.now, firm_code=FIRM)
    first = activation.submit(request, site.url)
    container.apply_update(first, site.clock.now)
    site.clock.advance(HOUR)
    m.access(units=3)
    m.sync()
    assert canonical(activation.submit(request, site.url)) == canonical(first)
    assert site.container_view(serial)["flagged"] is False


def test_deactivation_receipts_report_counters_and_central_keeps_the_maximum(site, tmp_path):
    ticket = site.ticket(site.item(units=100))
    m = site.machine("m")
    serial = m.activate(ticket)
    m.access(units=10)
    m.sync()
    m.backup(tmp_path / "backup")
    m.access(units=15)
    m.restore(tmp_path / "backup")
    # a receipt from the restored files claims 10 units: Central keeps 10 (it never saw 25),
    # and the receipt's counters are not below what it recorded
    m.deactivate(ticket)
    assert site.ticket_view(ticket)["consumed"] == 10
    assert site.container_view(serial)["flagged"] is False
