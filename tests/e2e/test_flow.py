"""Whole flows across processes: a real License Central server, the real CLI, real apps.

Each "machine" is its own LICENTIA_HOME with its own injected traits (loaded into
the child processes by tests/_fakes/sitecustomize.py); Central runs as
`licentia central serve` on a free port.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT, central_process, child_env, free_port
from tests.factory import machine_traits, other_machine

FAKES_DIR = ROOT / "tests" / "_fakes"
FIRM = 4242


class Machine:
    def __init__(self, root: Path, name: str, traits: dict[str, str], now: int):
        self.dir = root / name
        self.dir.mkdir(parents=True)
        self.home = self.dir / "home"
        self.time_file = self.dir / "time"
        self.time_file.write_text(str(now))
        self.fakes = self.dir / "fakes.json"
        self.fakes.write_text(json.dumps({"time_file": str(self.time_file), "traits": traits}))

    @property
    def now(self) -> int:
        return int(self.time_file.read_text())

    def set_time(self, t: int) -> None:
        self.time_file.write_text(str(t))

    def env(self, **extra: str) -> dict[str, str]:
        env = child_env({"LICENTIA_HOME": str(self.home), "LICENTIA_TEST_FAKES": str(self.fakes), **extra})
        env["PYTHONPATH"] = f"{FAKES_DIR}{os.pathsep}{env['PYTHONPATH']}"
        return env

    def cli(self, *args: str, ok: bool = True, cwd: Path | None = None) -> subprocess.CompletedProcess:
        out = subprocess.run(
            [sys.executable, "-m", "licentia", *args],
            env=self.env(),
            capture_output=True,
            text=True,
            cwd=cwd or self.dir,
            timeout=120,
        )
        if ok:
            assert out.returncode == 0, f"{args}: {out.stdout}\n{out.stderr}"
        else:
            assert out.returncode != 0, f"{args} should have failed: {out.stdout}"
            assert "Traceback" not in out.stderr + out.stdout
        return out

    def app(self, pem: Path, *access_args: int, **kw: int) -> str:
        code = (
            "import sys, licentia\n"
            f"licentia.trust({FIRM}, sys.argv[1])\n"
            "try:\n"
            f"    h = licentia.access(*{list(access_args)!r}, **{kw!r})\n"
            "    print('OK', h.license_id, h.units_left)\n"
            "except licentia.LicenseError as e:\n"
            "    print(type(e).__name__, e)\n"
        )
        out = subprocess.run(
            [sys.executable, "-c", code, str(pem)], env=self.env(), capture_output=True, text=True, timeout=60
        )
        assert out.returncode == 0, out.stderr
        return out.stdout.strip()


@pytest.fixture(scope="module")
def central(tmp_path_factory):
    data = tmp_path_factory.mktemp("central")
    admin = secrets.token_urlsafe(24)
    with central_process(data, admin) as url:
        yield url, admin


@pytest.fixture(scope="module")
def vendor(central, tmp_path_factory):
    """A firm, a vendor key, an item, a customer; returns a function that orders tickets."""
    url, admin = central
    root = tmp_path_factory.mktemp("vendor")

    def run(*args: str, key: str = admin) -> str:
        env = child_env({"LICENTIA_CENTRAL_URL": url, "LICENTIA_API_KEY": key})
        out = subprocess.run(
            [sys.executable, "-m", "licentia", "vendor", *args], env=env, capture_output=True, text=True, timeout=60
        )
        assert out.returncode == 0, f"{args}: {out.stdout}{out.stderr}"
        return out.stdout

    run("firm", "create", "--code", str(FIRM), "--name", "E2E Software")
    vkey = run("apikey", "create", "--firm-code", str(FIRM)).strip().split()[-1]
    pem = root / "firm.pem"
    run("firm", "public-key", str(FIRM), "-o", str(pem), key=vkey)
    run(
        "item",
        "create",
        "--item-id",
        "E-00001-1",
        "--name",
        "E2E Pro",
        "--product-code",
        "1",
        "--feature-map",
        "0x7",
        "--units",
        "50",
        "--expires-days",
        "30",
        key=vkey,
    )
    run("customer", "create", "--number", "C-1", "--name", "Ada", key=vkey)

    def order(n: int = 1) -> list[str]:
        out = run("ticket", "create", "--customer", "C-1", "--item", "E-00001-1", "--count", str(n), key=vkey)
        return [line.strip() for line in out.splitlines() if line.strip()]

    return {"url": url, "pem": pem, "order": order, "run": lambda *a: run(*a, key=vkey)}


def test_online_activation_access_deactivation_and_move(vendor, tmp_path):
    url, pem = vendor["url"], vendor["pem"]
    (ticket,) = vendor["order"]()
    now = int(time.time())
    a = Machine(tmp_path, "a", machine_traits(), now)
    b = Machine(tmp_path, "b", other_machine(), now)

    a.cli("activate", ticket, "--central", url)
    listed = json.loads(a.cli("list", "--json").stdout)
    assert listed[0]["licenses"][0]["ticket"] == ticket
    license_id = listed[0]["licenses"][0]["license_id"]
    assert a.app(pem, FIRM, 1, 0b101, units=5) == f"OK {license_id} 45"
    assert a.app(pem, FIRM, 1, 0b1000).startswith("FeatureNotLicensed")

    refused = b.cli("activate", ticket, "--central", url, ok=False)
    assert "deactivate" in refused.stderr.lower()

    a.cli("deactivate", ticket)
    assert a.app(pem, FIRM, 1).startswith("LicenseNotFound")
    b.cli("activate", ticket, "--central", url)
    assert b.app(pem, FIRM, 1).startswith("OK")
    assert "activated" in vendor["run"]("ticket", "show", ticket)


def test_offline_activation_is_idempotent(vendor, tmp_path):
    url, pem = vendor["url"], vendor["pem"]
    (ticket,) = vendor["order"]()
    m = Machine(tmp_path, "m", machine_traits(), int(time.time()))
    depot = Machine(tmp_path, "depot", other_machine(), int(time.time()))
    m.cli("activate", ticket, "--offline", "-o", "request.json")
    shutil.copy(m.dir / "request.json", depot.dir / "request.json")
    depot.cli("depot", "submit", "request.json", "--central", url, "-o", "update.json")
    depot.cli("depot", "submit", "request.json", "--central", url, "-o", "again.json")
    assert json.loads((depot.dir / "update.json").read_text()) == json.loads((depot.dir / "again.json").read_text())
    shutil.copy(depot.dir / "update.json", m.dir / "update.json")
    m.cli("apply", "update.json")
    assert m.app(pem, FIRM, 1).startswith("OK")
    replay = m.cli("apply", "update.json", ok=False)
    assert "already" in replay.stderr or "older" in replay.stderr
    assert m.app(pem, FIRM, 1).startswith("OK")


def test_offline_deactivation_receipt_frees_the_ticket(vendor, tmp_path):
    url = vendor["url"]
    (ticket,) = vendor["order"]()
    m = Machine(tmp_path, "m", machine_traits(), int(time.time()))
    n = Machine(tmp_path, "n", other_machine(), int(time.time()))
    m.cli("activate", ticket, "--central", url)
    m.cli("deactivate", ticket, "--offline", "-o", "receipt.json")
    n.cli("activate", ticket, "--central", url, ok=False)  # not freed until the receipt arrives
    m.cli("depot", "submit", "receipt.json", "--central", url)
    n.cli("activate", ticket, "--central", url)


def test_revocation_reaches_the_container_at_sync(vendor, tmp_path):
    url, _pem = vendor["url"], vendor["pem"]
    keep, revoke = vendor["order"](2)
    m = Machine(tmp_path, "m", machine_traits(), int(time.time()))
    m.cli("activate", keep, "--central", url)
    m.cli("activate", revoke, "--central", url)
    assert len(json.loads(m.cli("list", "--json").stdout)[0]["licenses"]) == 2
    vendor["run"]("ticket", "revoke", revoke)
    m.cli("sync")
    tickets = [lic["ticket"] for lic in json.loads(m.cli("list", "--json").stdout)[0]["licenses"]]
    assert tickets == [keep]


def test_mistyped_ticket_is_caught_before_any_network_call(tmp_path):
    m = Machine(tmp_path, "m", machine_traits(), int(time.time()))
    from licentia.core import codes

    good = codes.new_ticket_id()
    typo = good[:-1] + ("0" if good[-1] != "0" else "1")
    out = m.cli("activate", typo, "--central", f"http://127.0.0.1:{free_port()}", ok=False)
    assert "typo" in out.stderr and "reach" not in out.stderr
    assert not m.home.exists() or not any((m.home / "containers").glob("130-*"))


def test_a_restored_backup_is_rebased_flagged_and_cleared(vendor, tmp_path):
    url, pem = vendor["url"], vendor["pem"]
    first, second = vendor["order"](2)
    m = Machine(tmp_path, "m", machine_traits(), int(time.time()))
    m.cli("activate", first, "--central", url)
    backup = tmp_path / "backup"
    shutil.copytree(m.home, backup)
    m.cli("activate", second, "--central", url)
    assert m.app(pem, FIRM, 1, units=20).startswith("OK")
    m.cli("sync")  # Central has seen the 20 units
    shutil.rmtree(m.home)
    shutil.copytree(backup, m.home)  # files restored from a backup: one license, no unit used
    m.set_time(m.now + 3600)
    out = m.cli("sync", ok=False)
    assert "manipulation detected" in out.stderr.lower() and "E2E Software" in out.stderr
    # rebased: both licenses are back, with the use Central had seen; the user keeps working
    listed = json.loads(m.cli("list", "--json").stdout)[0]
    assert sorted(lic["units_left"] for lic in listed["licenses"]) == [30, 50]
    assert m.app(pem, FIRM, 1).startswith("OK")
    shown = json.loads(vendor["run"]("container", "show", listed["serial"]))
    assert shown["flagged"] is True and shown["flags"][0]["action"] == "rebase"
    vendor["run"]("container", "clear", listed["serial"])
    m.cli("sync")
    assert json.loads(vendor["run"]("container", "show", listed["serial"]))["flagged"] is False


def test_demo_runs(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "licentia", "demo"],
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=180,
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Demo finished" in out.stdout and "deactivated" in out.stdout
