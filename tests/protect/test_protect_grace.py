"""Grace: a license that cannot be found keeps a --grace build running until its deadline,
never after expiry or revocation, never with the clock set back."""

from __future__ import annotations

import json
import stat

import pytest

from licentia.container import MachineContainer
from licentia.core import errors as E
from licentia.core.license import Options
from licentia.protect import _keys, grace
from tests.factory import DAY, T0, machine_traits
from tests.protect.helpers import EXPECTED_RUN, FIRM_CODE, PRODUCT, Machine
from tests.protect.test_protect_package import REPORT, report

REPORT_CODE = REPORT.format(module="sampleapp")

GRACE = 3 * DAY


def state_file(machine: Machine):
    assert machine.container is not None
    return machine.container.path / "state.json"


def lose_license(machine: Machine, firm) -> bytes:
    """Activate another product's license first and return that state: restoring it later makes our
    license unfindable while its container (and firm slot) stay. In the field: a license server or a
    cloud container out of reach, a license that went away without a revocation."""
    machine.activate(firm, product=PRODUCT + 1)
    return state_file(machine).read_bytes()


def test_only_not_found_and_unreachable_fall_back_to_grace():
    assert (E.LicenseNotFound, E.ServerUnreachable) == _keys.GRACE_ON
    assert not issubclass(E.LicenseExpired, _keys.GRACE_ON) and not issubclass(E.LicenseInvalid, _keys.GRACE_ON)


def test_grace_honoured_with_a_warning_then_refused_after_the_deadline(firm, built, machine):
    out = built(grace=GRACE)
    before = lose_license(machine, firm)
    machine.activate(firm)
    r = machine.run(out, "-m", "sampleapp")
    assert r.returncode == 0 and "grace" not in r.stderr, r.stderr
    record = machine.home / "grace" / f"{FIRM_CODE}-{PRODUCT}-0-v1.json"
    assert stat.S_IMODE(record.stat().st_mode) == 0o600
    assert json.loads(record.read_text())["deadline"] == T0 + GRACE

    state_file(machine).write_bytes(before)  # the license cannot be found any more
    machine.set_time(T0 + DAY)
    r = machine.run(out, "-m", "sampleapp")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == EXPECTED_RUN
    assert "GraceWarning" in r.stderr and "running on the grace period, 2 days left" in r.stderr

    machine.set_time(T0 + GRACE + 1)
    lines = report(machine, out)
    assert lines[0] == "ERROR ProtectedImportError True LicenseNotFound"
    assert "no grace period: the grace period is over" in lines[1]

    machine.set_time(T0 - DAY)  # setting the clock back does not bring it back
    lines = report(machine, out)
    assert "no grace period: the system clock is behind the container's clock" in lines[1]


def test_no_grace_after_revocation(firm, built, machine):
    out = built(grace=GRACE)
    machine.activate(firm)
    assert report(machine, out) == ["IMPORTED"]
    machine.revoke_all(firm)
    machine.set_time(T0 + 60)
    lines = report(machine, out)
    assert lines[0] == "ERROR ProtectedImportError True LicenseNotFound"
    assert "was revoked or deactivated" in lines[1]


def test_no_grace_after_expiry(firm, built, machine):
    out = built(grace=GRACE)
    before = lose_license(machine, firm)
    machine.activate(firm, options=Options(expires=T0 + DAY))
    assert report(machine, out) == ["IMPORTED"]
    machine.set_time(T0 + 2 * DAY)
    lines = report(machine, out)
    assert lines[0] == "ERROR ProtectedImportError True LicenseExpired" and "grace period" not in lines[1]
    state_file(machine).write_bytes(before)  # even unfindable: the deadline stopped at the expiry
    lines = report(machine, out)
    assert lines[0] == "ERROR ProtectedImportError True LicenseNotFound"
    assert "the grace period is over" in lines[1]


def test_an_edited_grace_record_does_not_open(firm, built, machine):
    out = built(grace=GRACE)
    before = lose_license(machine, firm)
    machine.activate(firm)
    assert report(machine, out) == ["IMPORTED"]
    record = machine.home / "grace" / f"{FIRM_CODE}-{PRODUCT}-0-v1.json"
    rec = json.loads(record.read_text())
    rec["deadline"] += 365 * DAY
    record.write_text(json.dumps(rec))
    state_file(machine).write_bytes(before)
    machine.set_time(T0 + DAY)
    lines = report(machine, out)
    assert lines[0] == "ERROR ProtectedImportError True LicenseNotFound"
    assert "the grace record does not open" in lines[1]


def test_without_grace_nothing_is_stored_and_nothing_recalled(firm, built, machine):
    out = built()
    before = lose_license(machine, firm)
    machine.activate(firm)
    assert report(machine, out) == ["IMPORTED"]
    assert not (machine.home / "grace").exists()
    state_file(machine).write_bytes(before)
    lines = report(machine, out)
    assert lines[0] == "ERROR ProtectedImportError True LicenseNotFound" and "grace period" not in lines[1]


@pytest.mark.slow
def test_a_brief_license_server_seat_never_turns_into_days_offline(firm, built, tmp_path):
    """Four machines each take the one seat for a moment (released at exit), then the server
    is out of reach: the license allows no grace on network seats, so none of them runs."""
    from tests.server.netsite import Site

    out = built(grace=GRACE)
    site = Site(tmp_path / "site", firm=firm)
    try:
        site.add_license(quantity=1)
        site.start()
        machines = [Machine(tmp_path / f"client{n}") for n in range(4)]
        for m in machines:
            r = m.run(out, "-m", "sampleapp", env=m.env(out, LICENTIA_HOST=site.host))
            assert r.returncode == 0 and r.stdout.splitlines() == EXPECTED_RUN, r.stderr
            assert not (m.home / "grace" / f"{FIRM_CODE}-{PRODUCT}-0-v1.json").exists()
        site.stop()
        for m in machines:
            m.set_time(T0 + 60)
            r = m.code(out, REPORT_CODE, env=m.env(out, LICENTIA_HOST=site.host))
            lines = r.stdout.strip().splitlines()
            assert lines[0] == "ERROR ProtectedImportError True ServerUnreachable", r.stderr
            assert "running on the grace period" not in r.stderr
    finally:
        site.stop()


CRASH_CODE = "import os, signal, sampleapp; os.kill(os.getpid(), signal.SIGKILL)"


@pytest.mark.slow
def test_network_grace_keeps_the_seat_counted_and_runs_only_where_it_was_granted(firm, built, tmp_path):
    """The license allows grace on network seats. A normal exit gives the grace back (so a
    brief seat never turns into days offline); a crash keeps the seat counted for the grace,
    so only that machine runs offline and the (N+1)-th machine never runs."""
    from tests.server.netsite import Site

    out = built(grace=GRACE)
    site = Site(tmp_path / "site", firm=firm)
    try:
        site.add_license(quantity=1, max_grace=GRACE)
        site.start()
        machines = [Machine(tmp_path / f"client{n}") for n in range(4)]

        def env(m: Machine) -> dict[str, str]:
            return m.env(out, LICENTIA_HOST=site.host)

        for m in machines:  # one after the other: each exits normally and gives its grace back
            r = m.run(out, "-m", "sampleapp", env=env(m))
            assert r.returncode == 0 and r.stdout.splitlines() == EXPECTED_RUN, r.stderr
            assert site.seats_in_use() == 0
        crashed = machines[0]
        r = crashed.code(out, CRASH_CODE, env=env(crashed))
        assert r.returncode == -9, r.stderr
        site.advance(3600)  # far past the lease TTL
        assert [s["state"] for s in site.status()["sessions"]] == ["grace"]
        for m in machines[1:]:
            lines = m.code(out, REPORT_CODE, env=env(m)).stdout.strip().splitlines()
            assert lines[0] == "ERROR ProtectedImportError True SeatsExhausted", lines
        site.stop()
        for m in machines:
            m.set_time(T0 + DAY)
        r = crashed.code(out, REPORT_CODE, env=env(crashed))
        assert r.stdout.strip().splitlines()[0] == "IMPORTED", r.stderr
        assert "running on the grace period, 2 days left" in r.stderr
        for m in machines[1:]:  # they gave their grace back: nothing to run on
            lines = m.code(out, REPORT_CODE, env=env(m)).stdout.strip().splitlines()
            assert lines[0] == "ERROR ProtectedImportError True ServerUnreachable", lines
        crashed.set_time(T0 + GRACE + 1)
        lines = crashed.code(out, REPORT_CODE, env=env(crashed)).stdout.strip().splitlines()
        assert lines[0] == "ERROR ProtectedImportError True ServerUnreachable", lines
    finally:
        site.stop()


# ---------------------------------------------------------------- the store itself, in-process


def _store(home, container, now=T0, expires=None, license_id=7):
    return grace.store(
        home,
        container,
        firm=FIRM_CODE,
        product=PRODUCT,
        feature=0,
        version=1,
        license_id=license_id,
        expires=expires,
        key=b"k" * 32,
        grace=GRACE,
        now=now,
    )


def _recall(home, container, now):
    return grace.recall(
        home, {container.path: container}, firm=FIRM_CODE, product=PRODUCT, feature=0, version=1, now=now
    )


def test_store_and_recall_rules(tmp_path, firm):
    m = Machine(tmp_path / "m")
    lid = m.activate(firm, product=PRODUCT + 1)  # the firm slot exists
    c = MachineContainer.open(m.container.path, machine_traits())
    assert _store(m.home, c, expires=T0 + DAY) == T0 + DAY  # capped at the license's expiry
    assert _store(m.home, c, expires=T0) is None  # nothing to keep for an expired license
    assert _store(m.home, c) == T0 + GRACE
    found, why = _recall(m.home, c, T0 + DAY)
    assert found is not None and why is None
    assert (found.key, found.deadline, found.left) == (b"k" * 32, T0 + GRACE, 2 * DAY)
    assert _recall(m.home, c, T0 + GRACE) == (None, "the grace period is over")
    assert _recall(m.home, c, T0 - 3 * 3600)[1] == "the system clock is behind the container's clock"
    # another product's record never answers
    assert grace.recall(m.home, {c.path: c}, firm=FIRM_CODE, product=PRODUCT, feature=1, version=1, now=T0) == (
        None,
        None,
    )
    # a record sealed to another container does not open here
    other = Machine(tmp_path / "other")
    other.activate(firm, product=PRODUCT + 1)
    c2 = MachineContainer.open(other.container.path, machine_traits())
    _store(m.home, c2)
    assert _recall(m.home, c, T0)[1].startswith("the container ")
    # a license server's seat: sealed to a container without the firm's slot
    fresh = Machine(tmp_path / "fresh")
    fresh.container = MachineContainer.create(fresh.home, "medium", machine_traits(), T0)
    c3 = MachineContainer.open(fresh.container.path, machine_traits())
    grace.store(
        fresh.home,
        c3,
        firm=FIRM_CODE,
        product=PRODUCT,
        feature=0,
        version=1,
        license_id=3,
        expires=None,
        key=b"s" * 32,
        grace=GRACE,
        now=T0,
        source="server",
    )
    found, why = grace.recall(
        fresh.home, {c3.path: c3}, firm=FIRM_CODE, product=PRODUCT, feature=0, version=1, now=T0 + 60
    )
    assert found is None and why == "a license server's seat gives no grace period"  # an earlier release's record
    assert _store(m.home, c) == T0 + GRACE
    record = m.home / "grace" / f"{FIRM_CODE}-{PRODUCT}-0-v1.json"
    rec = json.loads(record.read_text())
    rec["source"] = "server"  # a record claiming a server's seat is never honoured
    record.write_text(json.dumps(rec))
    assert _recall(m.home, c, T0) == (None, "a license server's seat gives no grace period")
    rec["source"], rec["license_id"] = "local", rec["license_id"] + 1  # every clear field is bound
    record.write_text(json.dumps(rec))
    assert _recall(m.home, c, T0) == (None, "the grace record does not open")
    # withdrawn licenses never get grace
    _store(m.home, c, license_id=lid)
    assert _recall(m.home, c, T0)[0] is not None
    m.revoke_all(firm)
    c = MachineContainer.open(m.container.path, machine_traits())
    assert _recall(m.home, c, T0) == (None, f"license {lid} was revoked or deactivated")
