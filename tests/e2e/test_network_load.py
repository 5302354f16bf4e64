"""The license server under load: 200 concurrent clients against 10 seats; kill -9 and restart."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.factory import machine_traits
from tests.server.netsite import Site, fakes_env, max_concurrent_seats

pytestmark = pytest.mark.slow
LOAD = Path(__file__).resolve().parent / "load_client.py"


def load(site: Site, name: str, threads: int, iterations: int, hold: float, stop: Path | None = None):
    env = fakes_env(
        site.root,
        name,
        machine_traits(hostname=name),
        site.time_file,
        LICENTIA_HOME=str(site.root / f"home-{name}"),
        LICENTIA_HOST=site.host,
    )
    args = [sys.executable, str(LOAD), str(site.firm.code), str(site.pem), str(threads), str(iterations), str(hold)]
    if stop is not None:
        args.append(str(stop))
    return subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def results(procs) -> list[dict]:
    out = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=240)
        assert p.returncode == 0, stderr
        out.append(json.loads(stdout.strip().splitlines()[-1]))
    return out


def events(site: Site) -> list[dict]:
    text = site.cli("server", "usage", "--data", str(site.data), "--events", "--json").stdout
    return json.loads(text)["events"]


def test_200_concurrent_clients_never_hold_more_than_10_seats(tmp_path):
    site = Site(tmp_path)
    site.add_license(quantity=10)
    site.start()
    try:
        procs = [load(site, f"load{i}", 50, 4, 0.05) for i in range(4)]
        done = results(procs)
        granted = sum(r["counts"].get("ok", 0) for r in done)
        exhausted = sum(r["counts"].get("SeatsExhausted", 0) for r in done)
        others = {k: v for r in done for k, v in r["counts"].items() if k not in ("ok", "SeatsExhausted")}
        assert granted >= 10 and exhausted > 0 and not others, (granted, exhausted, others)
        log = events(site)
        assert max_concurrent_seats(log) <= 10
        assert max_concurrent_seats(log) >= 5  # the load really contended
        acked = {lid for r in done for lid in r["acked"]}
        assert acked <= {e["leaseId"] for e in log if e["event"] == "access"}
        assert site.seats_in_use() == 0  # every seat came back
        assert "intact" in site.cli("server", "usage", "verify", "--data", str(site.data)).stdout
    finally:
        site.stop()


def test_kill_9_under_load_loses_no_acknowledged_event_and_never_oversells(tmp_path):
    site = Site(tmp_path)
    site.add_license(quantity=10)
    site.start()
    stop = tmp_path / "stop"
    try:
        procs = [load(site, f"load{i}", 20, 10_000, 0.02, stop) for i in range(2)]
        time.sleep(1.5)
        site.kill9()
        time.sleep(0.3)
        site.start()
        time.sleep(1.5)
        stop.write_text("stop")
        done = results(procs)
        granted = sum(r["counts"].get("ok", 0) for r in done)
        assert granted > 20
        assert sum(r["counts"].get("ServerUnreachable", 0) for r in done) > 0  # the kill was felt
        log = events(site)
        accessed = {e["leaseId"] for e in log if e["event"] == "access"}
        acked = {lid for r in done for lid in r["acked"]}
        assert acked <= accessed, f"{len(acked - accessed)} acknowledged lease(s) missing from the log"
        assert max_concurrent_seats(log) <= 10
        # leases cut off by the kill run out after their TTL; nothing is left over
        site.advance(31)
        time.sleep(0.5)
        assert site.seats_in_use() == 0
        assert "intact" in site.cli("server", "usage", "verify", "--data", str(site.data)).stdout
    finally:
        stop.write_text("stop")
        site.stop()
