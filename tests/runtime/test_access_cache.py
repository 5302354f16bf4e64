"""The access cache (runtime/_hot.py): a cached access answers what the full search would.

Freshness rule: a change made by this process is seen at the next call; a change made by
another process within ``WATCH_NS`` (10 ms). The time window ends at the license's end,
the sync deadline, the next clock observation and the next usage report; a clock set back
is evaluated again. ``trust()``, ``reset()`` and ``fork`` clear the cache.
"""

import json
import os
import select
import subprocess
import sys
import time

import pytest

from licentia.container import OBSERVE_STEP, MachineContainer, files
from licentia.core import errors as E
from licentia.core.license import CLOCK_TOLERANCE, Options
from licentia.runtime import _runtime
from tests.conftest import child_env
from tests.factory import DAY, T0, Firm, machine_traits
from tests.runtime.helpers import TICKET, install, runtime

# a child process that changes a container: apply an update file, or remove a license
CHANGE = r"""
import json, sys
from pathlib import Path
from licentia.container import MachineContainer
path, traits, op, arg, now = sys.argv[1:6]
c = MachineContainer.open(Path(path), json.loads(traits))
if op == "apply":
    c.apply_update(Path(arg).read_bytes(), int(now))
else:
    c.remove_license(10101, int(arg), int(now))
print("done")
"""

# a child process that consumes units one at a time, with an access that consumes nothing in between
CONSUME = r"""
import json, os, sys, time
from licentia.runtime import Runtime
home, pem, traits, n, go, now = sys.argv[1:7]
rt = Runtime(home, clock=lambda: int(now), traits=lambda: dict(json.loads(traits)))
rt.trust(10101, pem)
deadline = time.monotonic() + 60
while not os.path.exists(go) and time.monotonic() < deadline:
    time.sleep(0.001)
for _ in range(int(n)):
    rt.access(10101, 1, units=1).release()
    rt.access(10101, 1).release()
print("done")
"""


@pytest.fixture
def evaluations(monkeypatch):
    """The times at which the runtime evaluated a license in full (a cached access adds none)."""
    calls = []
    real = _runtime.evaluate

    def counting(entry, state, request, now, vclock):
        calls.append(now)
        return real(entry, state, request, now, vclock)

    monkeypatch.setattr(_runtime, "evaluate", counting)
    return calls


@pytest.fixture
def slow_watch(monkeypatch):
    """State files stat'ed at most every 10 s: only this process's own signal can show a change."""
    monkeypatch.setattr(files, "WATCH_NS", 10 * 10**9)


def cached_runtime(home, clock, firm, evaluations):
    """A runtime whose next access(firm, 1) is answered from the cache (checked)."""
    rt = runtime(home, clock)
    rt.trust(firm.code, firm.pem)
    rt.access(firm.code, 1).release()
    before = len(evaluations)
    rt.access(firm.code, 1).release()
    rt.access(firm.code, 1).release()
    assert len(evaluations) <= before + 1  # the second access at the latest is a hit
    before = len(evaluations)
    rt.access(firm.code, 1).release()
    assert len(evaluations) == before
    return rt


def change_in_another_process(container, op, arg, now=T0):
    out = subprocess.run(
        [sys.executable, "-c", CHANGE, str(container.path), json.dumps(machine_traits()), op, str(arg), str(now)],
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0 and out.stdout.strip() == "done", out.stderr
    time.sleep(files.WATCH_NS / 1e9)  # the bound of the freshness rule


def test_a_cached_access_answers_as_the_full_search(tmp_path, clock, firm, evaluations):
    c = install(tmp_path, firm, clock, options=Options(expires=T0 + 10 * DAY, units=7), feature_map=0b110)
    rt = cached_runtime(tmp_path, clock, firm, evaluations)
    before = len(evaluations)
    with rt.access(firm.code, 1, 0b100) as first:
        pass
    with rt.access(firm.code, 1, 0b100) as h:
        assert len(evaluations) == before + 1  # the first access of this feature; the second a hit
        assert (h.firm_code, h.product_code, h.feature_code, h.feature_map) == (firm.code, 1, 0b100, 0b110)
        assert (h.license_id, h.container_serial, h.units_left, h.expires) == (1, c.serial, 7, T0 + 10 * DAY)
        assert h.grant.holder is not None and h.server is None and len(h.product_key(1)) == 32
        assert h is not first and not h.released
    assert h.released and first.released
    with pytest.raises(E.FeatureNotLicensed):
        rt.access(firm.code, 1, 0b001)
    with pytest.raises(ValueError, match="mode"):
        rt.access(firm.code, 1, mode="nonsense")


def test_an_update_by_another_process_is_seen_within_the_bound(tmp_path, clock, firm, evaluations):
    c = install(tmp_path, firm, clock, license_id=1, feature_map=0b1)
    from licentia.core import exchange

    # the updates are made before anything is cached: making a request writes the state
    req = c.make_request("sync", T0, firm_code=firm.code)
    renewed = tmp_path / "renewed.json"
    renewed.write_text(json.dumps(firm.update(req, [firm.entry(exchange.verify_request(req), license_id=2)])))
    req = c.make_request("sync", T0, firm_code=firm.code)
    revoked = tmp_path / "revoked.json"
    revoked.write_text(json.dumps(firm.update(req, [])))

    rt = cached_runtime(tmp_path, clock, firm, evaluations)
    assert rt.access(firm.code, 1).license_id == 1
    change_in_another_process(c, "apply", renewed)
    assert rt.access(firm.code, 1).license_id == 2
    assert rt.access(firm.code, 1, 0b10).license_id == 2  # a feature only the new license has
    change_in_another_process(c, "apply", revoked)
    with pytest.raises(E.LicenseNotFound):
        rt.access(firm.code, 1)


def test_a_removal_by_another_process_is_seen_within_the_bound(tmp_path, clock, firm, evaluations):
    c = install(tmp_path, firm, clock, license_id=1)
    rt = cached_runtime(tmp_path, clock, firm, evaluations)
    change_in_another_process(c, "remove", 1)
    with pytest.raises(E.LicenseNotFound):
        rt.access(firm.code, 1)


def test_a_removal_by_another_object_in_this_process_is_seen_at_the_next_call(
    tmp_path, clock, firm, evaluations, slow_watch
):
    c = install(tmp_path, firm, clock, license_id=1)
    rt = cached_runtime(tmp_path, clock, firm, evaluations)
    MachineContainer.open(c.path, machine_traits()).remove_license(firm.code, 1, T0)
    with pytest.raises(E.LicenseNotFound):
        rt.access(firm.code, 1)


def test_a_license_in_a_container_searched_first_is_seen_at_the_next_call(
    tmp_path, clock, firm, evaluations, slow_watch
):
    """The full search takes the first container that grants: a cached grant from a later one
    depends on the ones before it too."""
    a = MachineContainer.create(tmp_path, "medium", machine_traits(), T0)
    b = MachineContainer.create(tmp_path, "tight", machine_traits(), T0)
    first, second = sorted([a, b], key=lambda c: c.path)
    req = second.make_request("activate", T0, ticket=TICKET)
    second.apply_update(firm.grant(req, license_id=2), T0)
    req = first.make_request("activate", T0, ticket=TICKET)  # made now: making a request writes the state
    rt = cached_runtime(tmp_path, clock, firm, evaluations)
    assert rt.access(firm.code, 1).container_serial == second.serial
    MachineContainer.open(first.path, machine_traits()).apply_update(firm.grant(req, license_id=1), T0)
    assert rt.access(firm.code, 1).container_serial == first.serial


def test_a_grant_that_follows_a_refusal_is_not_cached(tmp_path, clock, firm, evaluations):
    """The first license is not valid yet, the second grants: once the first is valid, the
    full search answers with it, so the second must not be served from the cache."""
    c = MachineContainer.create(tmp_path, "medium", machine_traits(), T0)
    req = c.make_request("activate", T0, ticket=TICKET)
    from licentia.core import exchange

    r = exchange.verify_request(req)
    later = firm.entry(r, license_id=1, options=Options(not_before=T0 + 600))
    c.apply_update(firm.update(req, [later, firm.entry(r, license_id=2)]), T0)
    rt = runtime(tmp_path, clock)
    rt.trust(firm.code, firm.pem)
    assert rt.access(firm.code, 1).license_id == 2
    assert rt.access(firm.code, 1).license_id == 2
    clock.advance(600)
    assert rt.access(firm.code, 1).license_id == 1


def test_a_container_found_by_a_rescan_that_comes_first_is_seen(tmp_path, clock, firm, evaluations):
    """A failed access looks for new containers; one that sorts before the granting container
    answers the next access, as the full search would."""
    a = MachineContainer.create(tmp_path, "medium", machine_traits(), T0)
    b = MachineContainer.create(tmp_path, "tight", machine_traits(), T0)
    first, second = sorted([a, b], key=lambda c: c.path)
    for container, license_id in ((first, 1), (second, 2)):
        req = container.make_request("activate", T0, ticket=TICKET)
        container.apply_update(firm.grant(req, license_id=license_id), T0)
    hidden = first.path.with_name(f".{first.path.name}")  # a dot directory is not a container
    first.path.rename(hidden)
    rt = cached_runtime(tmp_path, clock, firm, evaluations)
    assert rt.access(firm.code, 1).license_id == 2
    hidden.rename(first.path)  # the container appears
    assert rt.access(firm.code, 1).license_id == 2  # the container table is not looked at again yet
    with pytest.raises(E.LicenseNotFound):
        rt.access(firm.code, 9)  # not licensed: the runtime looks for new containers
    assert rt.access(firm.code, 1).license_id == 1


def test_a_clock_set_back_is_evaluated_again_and_refused_beyond_the_tolerance(tmp_path, clock, firm, evaluations):
    install(tmp_path, firm, clock, options=Options(expires=T0 + 100 * DAY))
    clock.advance(30 * DAY)
    rt = cached_runtime(tmp_path, clock, firm, evaluations)  # its first access recorded the time
    before = len(evaluations)
    clock.advance(-60)  # a minute back, within the tolerance: evaluated again, granted
    assert rt.access(firm.code, 1)
    assert evaluations[before:] == [clock()]
    clock.advance(-(CLOCK_TOLERANCE + 3600))
    with pytest.raises(E.ClockTampered):
        rt.access(firm.code, 1)
    clock.advance(CLOCK_TOLERANCE + 3600)
    assert rt.access(firm.code, 1)


@pytest.mark.parametrize(
    ("options", "last_good", "error"),
    [
        (Options(expires=T0 + 600), T0 + 599, E.LicenseExpired),
        (Options(usage_period=600), T0 + 599, E.LicenseExpired),
        (Options(sync_interval=600), T0 + 600, E.SyncRequired),
    ],
    ids=["expiry", "usage-period", "sync-deadline"],
)
def test_the_end_of_a_cached_grant_refuses_the_next_call(tmp_path, clock, firm, evaluations, options, last_good, error):
    install(tmp_path, firm, clock, options=options)
    rt = cached_runtime(tmp_path, clock, firm, evaluations)
    clock.set(last_good)
    before = len(evaluations)
    assert rt.access(firm.code, 1)
    assert len(evaluations) == before  # still the cached grant
    clock.advance(1)
    with pytest.raises(error):
        rt.access(firm.code, 1)


def test_a_cached_grant_still_records_the_clock_every_observe_step(tmp_path, clock, firm, evaluations):
    c = install(tmp_path, firm, clock)
    rt = cached_runtime(tmp_path, clock, firm, evaluations)
    clock.advance(OBSERVE_STEP)
    rt.access(firm.code, 1)
    assert c.slots()[firm.code].vclock == T0
    clock.advance(1)
    rt.access(firm.code, 1)
    assert c.slots()[firm.code].vclock == T0 + OBSERVE_STEP + 1  # a clock set back later is noticed


def test_a_usage_report_falling_due_is_considered(tmp_path, clock, firm, evaluations):
    c = MachineContainer.create(tmp_path, "medium", machine_traits(), T0)
    req = c.make_request("activate", T0, ticket=TICKET)
    c.apply_update(firm.grant(req, options=Options(report_interval=600)), T0, central="http://127.0.0.1:9")

    class Reporter:
        pid = os.getpid()

        def __init__(self):
            self.due = []

        def consider(self, container, slot, every, now):
            self.due.append(now)

    rt = cached_runtime(tmp_path, clock, firm, evaluations)
    rt._reporter = reporter = Reporter()
    clock.advance(599)
    rt.access(firm.code, 1)
    assert reporter.due == []
    clock.advance(1)
    rt.access(firm.code, 1)
    assert reporter.due == [T0 + 600]


@pytest.mark.parametrize("clear", ["trust-another-key", "reset"])
def test_trust_and_reset_clear_the_cache(tmp_path, clock, firm, evaluations, clear):
    install(tmp_path, firm, clock)
    rt = cached_runtime(tmp_path, clock, firm, evaluations)
    if clear == "reset":
        rt.reset()
    else:
        rt.trust(firm.code, Firm(code=firm.code).pem)
    before = len(evaluations)
    assert rt.access(firm.code, 1)
    assert len(evaluations) == before + 1


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_does_not_inherit_the_cache(tmp_path, clock, firm, evaluations):
    install(tmp_path, firm, clock)
    rt = cached_runtime(tmp_path, clock, firm, evaluations)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: report through the pipe, never return into pytest
        ok = False
        try:
            before = len(evaluations)
            handle = rt.access(firm.code, 1)
            ok = len(evaluations) == before + 1 and not handle.released and len(handle.product_key(1)) == 32
        finally:
            os.write(w, b"1" if ok else b"0")
            os._exit(0)
    os.close(w)
    try:
        assert select.select([r], [], [], 60)[0], "the child did not answer"
        assert os.read(r, 1) == b"1"
    finally:
        os.close(r)
        os.waitpid(pid, 0)
    before = len(evaluations)
    assert not rt.access(firm.code, 1).released
    assert len(evaluations) == before  # the parent keeps its cache


def test_units_stay_exact_with_two_processes_and_cached_accesses(tmp_path, clock, firm, evaluations):
    c = install(tmp_path, firm, clock, options=Options(units=1000))
    pem = tmp_path / "firm.pem"
    pem.write_text(firm.pem)
    rt = cached_runtime(tmp_path, clock, firm, evaluations)
    assert rt.access(firm.code, 1).units_left == 1000
    go = tmp_path / "go"
    args = [str(tmp_path), str(pem), json.dumps(machine_traits()), "40", str(go), str(T0)]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", CONSUME, *args], env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        for _ in range(2)
    ]
    go.touch()
    for p in procs:
        out, err = p.communicate(timeout=240)
        assert p.returncode == 0, err
    time.sleep(files.WATCH_NS / 1e9)
    assert rt.access(firm.code, 1).units_left == 1000 - 80  # the cached access saw their units
    for _ in range(5):  # and this process consumes too
        assert rt.access(firm.code, 1, units=1)
    handle = rt.access(firm.code, 1)
    assert handle.units_left == 1000 - 85
    fresh = MachineContainer.open(c.path, machine_traits())
    assert fresh.slots()[firm.code].license_state(handle._entry).units_used == 85
