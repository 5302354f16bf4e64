"""Counters that cannot be reset: units, trials and rollbacks answer to Central.

Each test plays an attack (or the honest case next to it) with the runtime's own
activation, sync and deactivation against a real License Central on 127.0.0.1, on
SQLite and on PostgreSQL. Machines are runtimes over their own homes with injected
traits; one injected clock drives Central and the machines.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from licentia.central.models import UsageEvent
from licentia.core import errors as E
from licentia.core.encoding import canonical
from licentia.runtime import Runtime, activation
from tests.central.central_helpers import ServerThread, Vendor, central_app, make_settings
from tests.conftest import child_env, free_port
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
    engine: Any = None  # Central's database

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


@contextlib.contextmanager
def running_site(tmp_path: Path, clock: Any, url: str | None = None, wrap: Any = None) -> Iterator[Site]:
    """Central on 127.0.0.1 (``wrap``: an ASGI layer in front of it) with a firm and its vendor."""
    with (
        central_app(make_settings(tmp_path / "central", url), clock) as app,
        ServerThread(wrap(app) if wrap else app) as srv,
        httpx.Client(base_url=srv.url, timeout=30) as http,
    ):
        vendor = Vendor(http, FIRM)
        pem = http.get(f"/api/v1/firms/{FIRM}/public-key", params={"format": "pem"}).text
        yield Site(srv.url, http, vendor, clock, tmp_path, pem, app.state.central.db.engine)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def site(request: pytest.FixtureRequest, tmp_path: Path, clock: Any) -> Iterator[Site]:
    url = None if request.param == "sqlite" else request.getfixturevalue("pg_url")
    with running_site(tmp_path, clock, url) as s:
        yield s


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


# ---------------------------------------------------------------- usage reports


def _wait(predicate, what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def _slot(rt: Runtime) -> Any:
    ((_, slot),) = [(c, s) for c, s in rt.iter_slots() if s.firm_code == FIRM]
    return slot


def test_an_online_machine_reports_in_the_background_and_never_needs_a_sync(site):
    ticket = site.ticket(site.item(units=100, sync_interval_days=2, report_interval_hours=24))
    m = site.machine("m")
    m.activate(ticket)
    rt = m.rt()
    for day in range(1, 6):
        site.clock.advance(DAY + 60)
        rt.access(FIRM, PRODUCT, units=1)  # never SyncRequired: each day's report counts as a sync
        _wait(lambda: rt.reporter().sent == day, f"the report of day {day}")  # noqa: B023 - waited on at once
        assert _slot(rt).last_sync == site.clock.now
    assert site.ticket_view(ticket)["consumed"] == 5  # each report carried the unit of its access
    site.clock.advance(3 * DAY)  # offline for longer than the sync interval: the limit holds
    with pytest.raises(E.SyncRequired):
        site.machine("m").access()


def test_a_revocation_reaches_an_online_machine_within_one_report_interval(site):
    ticket = site.ticket(site.item(units=100, report_interval_hours=24))
    m = site.machine("m")
    m.activate(ticket)
    assert site.vendor.post(f"/tickets/{ticket}/revoke").status_code == 200
    rt = m.rt()
    site.clock.advance(DAY + 60)
    rt.access(FIRM, PRODUCT)  # still here: the report this access starts brings the revocation
    _wait(lambda: not _slot(rt).entries, "the revocation")
    with pytest.raises(E.LicenseNotFound):
        m.access()


class _Gate:
    """An ASGI layer that holds every usage report until the test opens it."""

    def __init__(self) -> None:
        self.app: Any = None
        self.entered, self.opened = threading.Event(), threading.Event()

    def around(self, app: Any) -> _Gate:
        self.app = app
        return self

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"].endswith("/reports"):
            self.entered.set()
            await asyncio.to_thread(self.opened.wait, 30)
        await self.app(scope, receive, send)


def test_the_reporter_never_blocks_access_while_central_holds_the_report(tmp_path, clock):
    gate = _Gate()
    with running_site(tmp_path, clock, wrap=gate.around) as s:
        m = s.machine("m")
        m.activate(s.ticket(s.item(units=100, report_interval_hours=1)))
        rt = m.rt()
        clock.advance(2 * HOUR)
        assert rt.access(FIRM, PRODUCT, units=1).units_left == 99  # returns while the report is on its way
        assert gate.entered.wait(20) and not gate.opened.is_set()
        assert rt.access(FIRM, PRODUCT, units=1).units_left == 98  # Central holds the report: access goes on
        gate.opened.set()
        _wait(lambda: rt.reporter().sent == 1, "the held report's answer")
        assert _slot(rt).last_sync == clock.now


def test_the_reporter_never_raises_into_access_when_central_is_down(tmp_path, clock, caplog):
    with running_site(tmp_path, clock) as s:
        m = s.machine("m")
        m.activate(s.ticket(s.item(units=100, report_interval_hours=1)))
    # Central is gone now
    rt = m.rt()
    clock.advance(2 * HOUR)
    with caplog.at_level(logging.WARNING, logger="licentia"):
        assert rt.access(FIRM, PRODUCT, units=1).units_left == 99
        _wait(lambda: "usage report" in caplog.text, "the failure in the log")
    assert rt.access(FIRM, PRODUCT, units=1).units_left == 98  # and the next access is not held up either
    assert rt.reporter().sent == 0


# ---------------------------------------------------------------- online metering

CHILD = r"""
import json, sys
from licentia.core import errors
from licentia.runtime import Runtime
home, pem, traits, now, n = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
rt = Runtime(home, clock=lambda: now, traits=lambda: dict(traits))
rt.trust(%d, pem)
ok = refused = 0
for _ in range(n):
    try:
        rt.access(%d, %d, units=1)
        ok += 1
    except errors.UnitsExhausted:
        refused += 1
print(json.dumps([ok, refused]))
""" % (FIRM, FIRM, PRODUCT)  # noqa: UP031 - the child's source holds braces: % leaves them alone


def test_online_metering_is_exact_under_concurrent_processes(site):
    ticket = site.ticket(site.item(units=40, metering="online"))
    m = site.machine("m")
    m.activate(ticket)
    pem = site.root / "firm.pem"
    pem.write_text(site.pem)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", CHILD, str(m.home), str(pem), json.dumps(m.traits), str(site.clock.now), "12"],
            env=child_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    results = []
    for p in procs:
        out, err = p.communicate(timeout=240)
        assert p.returncode == 0, err
        results.append(json.loads(out))
    assert sum(ok for ok, _ in results) == 40 and sum(no for _, no in results) == 8
    assert site.ticket_view(ticket)["consumed"] == 40
    with pytest.raises(E.UnitsExhausted):
        m.access(units=1)


def test_a_retried_consumption_is_charged_once_and_a_reused_key_is_refused(site):
    ticket = site.ticket(site.item(units=10, metering="online"))
    m = site.machine("m")
    serial = m.activate(ticket)
    rt = m.rt()
    container = rt.container(serial)
    entry = next(iter(rt.verified_entries(container, _slot(rt), rt.trusted(FIRM))[0]))
    payload = {
        "serial": serial,
        "firm_code": FIRM,
        "license_id": entry.license_id,
        "entry": entry.digest,
        "units": 3,
        "key": "retry-1",
        "created": site.clock.now,
    }
    doc = container.sign("consume", payload)
    first = site.http.post("/api/v1/consumptions", json=doc)
    again = site.http.post("/api/v1/consumptions", json=doc)  # the answer was lost: the client retries
    assert first.status_code == 200 and again.status_code == 200 and first.content == again.content
    assert site.ticket_view(ticket)["consumed"] == 3
    other = container.sign("consume", {**payload, "units": 4})  # the same key for another call
    r = site.http.post("/api/v1/consumptions", json=other)
    assert r.status_code == 409 and r.json()["error"]["code"] == "idempotency_key_reused"
    assert site.ticket_view(ticket)["consumed"] == 3
    assert m.access(units=7).units_left == 0  # the runtime sees Central's count


def test_offline_consumption_uses_the_allowance_and_the_next_report_settles_it(site):
    ticket = site.ticket(site.item(units=100, metering="online", offline_allowance=5, report_interval_hours=1))
    m = site.machine("m")
    serial = m.activate(ticket)
    m.access(units=10)
    rt = m.rt()
    container = rt.container(serial)

    def point(url: str) -> None:  # the network goes away (and comes back)
        def change(slots):
            slots[FIRM].central = url

        container.mutate(change)

    point(f"http://127.0.0.1:{free_port()}")
    assert m.access(units=3).units_left == 87
    with pytest.raises(E.UnitsExhausted):
        m.access(units=3)  # 3 + 3 > the 5 allowed offline
    assert m.access(units=2).units_left == 85
    point(site.url)
    site.clock.advance(2 * HOUR)
    rt = m.rt()
    rt.access(FIRM, PRODUCT)  # due: the report carries the 5 offline units
    _wait(lambda: _slot(rt).last_sync == site.clock.now, "the report")
    assert site.ticket_view(ticket)["consumed"] == 15
    assert m.access(units=4).units_left == 81  # online again: Central counts


def test_a_restored_backup_is_noticed_at_the_next_report_and_a_replayed_report_is_not(site, tmp_path):
    ticket = site.ticket(site.item(units=100, report_interval_hours=1))
    m = site.machine("m")
    serial = m.activate(ticket)
    m.backup(tmp_path / "backup")
    site.clock.advance(2 * HOUR)
    rt = m.rt()
    rt.access(FIRM, PRODUCT, units=30)  # a report is due: it carries the 30 units
    _wait(lambda: rt.reporter().sent == 1, "the report")
    report = rt.container(serial).make_request("report", site.clock.now, firm_code=FIRM)
    first = site.http.post("/api/v1/reports", json=report)
    again = site.http.post("/api/v1/reports", json=report)  # replayed: the stored answer, no flag
    assert first.status_code == again.status_code == 200 and first.content == again.content
    assert site.container_view(serial)["flagged"] is False
    m.restore(tmp_path / "backup")
    site.clock.advance(2 * HOUR)
    rt = m.rt()
    assert rt.access(FIRM, PRODUCT).units_left == 100  # the restored files, until the report ...
    _wait(lambda: rt.reporter().sent == 1, "the report of the restored files")
    assert m.access().units_left == 70  # ... brought the rebased entry back
    assert site.container_view(serial)["flagged"] is True


# ---------------------------------------------------------------- the usage store


def _report(site: Site, view: str, name: str) -> list[dict[str, Any]]:
    r = site.http.post(f"/api/v1/reporting/{view}", json={"filter": {}}, headers=site.vendor.headers)
    assert r.status_code == 200, r.text
    return list(r.json()[name])


def test_counted_units_reach_the_usage_store_and_the_billing_view(site):
    """Units a container's counters gained (seen in a deactivation receipt or a sync) and
    units Central counted online land in the usage store once each: the billing view counts
    them; the license and product views, which list uses, do not."""
    ticket = site.ticket(site.item(units=100))
    m = site.machine("m")
    m.activate(ticket)
    m.access(units=60)
    m.deactivate(ticket)  # the receipt carries the counter: 60
    m.activate(ticket)
    m.access(units=15)
    m.sync()  # the request carries the new entry's counter: 15
    m.sync()  # nothing new: nothing more stored
    online = site.ticket(site.item(units=10, metering="online"))
    other = site.machine("o", other_machine())
    other.activate(online)
    other.access(units=3)  # counted by Central as it is used
    days = _report(site, "billing", "billingList")  # one customer, two items, one day
    assert [(d["units"], d["sessions"], d["refusals"], d["peakSeats"]) for d in days] == [(75, 0, 0, 0), (3, 0, 0, 0)]
    assert _report(site, "license-usage", "licenseUsageList") == []
    assert _report(site, "product-usage", "productUsageList") == []
    with site.engine.connect() as conn:
        rows = conn.execute(select(UsageEvent.source, UsageEvent.units).order_by(UsageEvent.id)).all()
    assert [tuple(r) for r in rows] == [("container", 60), ("container", 15), ("online", 3)]
