"""An application uses a cloud license with unchanged code: `licentia central serve` as a
process, devices linked by `licentia cloud login --password-stdin`, and the application
(`licentia.access()` in its own process) finding no local container and no license
server, then the cloud. A personal license of quantity 1 is one device at a time: the
second device gets DeviceLimitReached naming the first, until the first application
ends (its seat goes back at exit)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.central.central_helpers import ADMIN_KEY, Vendor
from tests.conftest import central_process
from tests.e2e.test_cloud_login import PASSWORD, password_login, vendor_cli
from tests.e2e.test_flow import Machine
from tests.factory import machine_traits, other_machine

pytestmark = pytest.mark.slow

FIRM = 62101


def make_ada(url: str, vendor: Vendor) -> None:
    """The customer's person ada, with a password (from stdin, through the vendor's CLI)."""
    vendor_cli(url, vendor.key, "account", "create", "ada@example.com", "--name", "Ada", "--role",
               "customer-user", "--customer", vendor.customer, "--password-stdin", stdin=PASSWORD + "\n")  # fmt: skip


def firm_pem(http: httpx.Client, firm: int, where: Path) -> Path:
    """The firm's public key as the application pins it (a PEM file)."""
    pem = where / "firm.pem"
    pem.write_text(http.get(f"/api/v1/firms/{firm}/public-key").json()["keys"][0]["pem"])
    return pem


LOSING = """
import sys, time, licentia
licentia.trust(int(sys.argv[1]), sys.argv[2])
lost = []
h = licentia.access(int(sys.argv[1]), 9, on_lease_lost=lambda handle, back: lost.append(back))
print("OK", flush=True)
sys.stdin.readline()  # the license is taken away now
deadline = time.monotonic() + 60
while not lost and time.monotonic() < deadline:
    time.sleep(0.2)
print("LOST" if lost == [False] else f"still held: {lost}", flush=True)
"""

GRACE = """
import sys, licentia
licentia.trust(int(sys.argv[1]), sys.argv[2])
try:
    h = licentia.access(int(sys.argv[1]), 9, grace=int(sys.argv[3]))
except licentia.LicenseError as e:
    print(type(e).__name__, e, flush=True)
    sys.exit(0)
print("OK", h.grace, flush=True)
sys.stdin.readline()  # hold it until told to end: the release gives the grace back
"""

APP = """
import sys, licentia
licentia.trust(int(sys.argv[1]), sys.argv[2])
try:
    h = licentia.access(int(sys.argv[1]), 9)
except licentia.LicenseError as e:
    print(type(e).__name__, e, flush=True)
    sys.exit(0)
print("OK", h.license_id, flush=True)
sys.stdin.readline()  # hold the license until told to end
"""


def test_an_application_uses_a_cloud_license_one_device_at_a_time(tmp_path):
    (tmp_path / "central").mkdir()
    with central_process(tmp_path / "central", ADMIN_KEY) as url, httpx.Client(base_url=url, timeout=30) as http:
        vendor = Vendor(http, FIRM)
        make_ada(url, vendor)
        r = vendor.post("/items", {"name": "Cloud Suite", "product_code": 9, "cloud": True, "options": {"quantity": 1}})
        assert r.status_code == 201, r.text
        per_device = vendor_cli(url, vendor.key, "item", "create", "--name", "App", "--product-code", "10", "--cloud",
                                "--user-seats", "device").strip()  # fmt: skip
        assert vendor.get(f"/items/{per_device}").json()["options"]["user_seats"] == "device"
        (ticket,) = vendor_cli(url, vendor.key, "ticket", "create", "--customer", vendor.customer,
                               "--item", r.json()["item_id"], "--cloud-login", "ada@example.com").split()  # fmt: skip
        pem = firm_pem(http, FIRM, tmp_path)

        def start(machine: Machine) -> tuple[subprocess.Popen[str], str]:
            proc = subprocess.Popen(
                [sys.executable, "-c", APP, str(FIRM), str(pem)], env=machine.env(), cwd=machine.dir,
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            )  # fmt: skip
            assert proc.stdout is not None
            return proc, proc.stdout.readline().strip()

        now = int(time.time())
        laptop = Machine(tmp_path, "laptop", machine_traits(), now)
        desk = Machine(tmp_path, "desk", other_machine(), now)
        stranger = Machine(tmp_path, "stranger", machine_traits(), now)

        # not linked: nowhere to look
        _, said = start(stranger)
        assert said.startswith("LicenseNotFound"), said

        password_login(laptop, url, FIRM, "--name", "Ada's laptop")
        password_login(desk, url, FIRM, "--name", "Ada's desk")
        first, said = start(laptop)
        try:
            assert said.startswith("OK"), said
            devices = json.loads(laptop.cli("cloud", "devices", "--json").stdout)
            assert sorted((d["name"], d["leases"], d["this"]) for d in devices) == [
                ("Ada's desk", 0, False),
                ("Ada's laptop", 1, True),
            ]
            # the license is busy on the laptop: the desk is told which device holds it
            _, said = start(desk)
            assert said.startswith("DeviceLimitReached") and "Ada's laptop" in said, said
            assert "licentia cloud logout --device" in said
        finally:
            assert first.stdin is not None
            first.stdin.write("\n")
            first.stdin.flush()
            first.wait(30)
        # the laptop's application ended: its seat went back at exit, the desk gets it
        second, said = start(desk)
        second.kill()
        assert said.startswith("OK"), said

        # the cloud taken out of the search (config.toml), then put back first
        assert "cloud: off" in desk.cli("config", "cloud", "off").stdout
        _, said = start(desk)
        assert said.startswith("LicenseNotFound"), said
        desk.cli("config", "cloud", "first")
        assert "cloud: first" in desk.cli("config", "server", "list").stdout
        third, said = start(desk)
        third.kill()
        assert said.startswith("OK"), said  # the desk's seat (its killed process's) is its own
        assert "say one of" in desk.cli("config", "cloud", "sometimes", ok=False).stderr
        assert ticket


def test_a_person_whose_license_is_taken_away_loses_it_within_a_lease_ttl(tmp_path):
    """The vendor takes the ticket out of the person's cloud container while an application
    holds it: the application's lost-lease callback runs within one lease TTL (10 s here)."""
    (tmp_path / "central").mkdir()
    settings = {"LICENTIA_CLOUD_LEASE_TTL": "10"}
    with (
        central_process(tmp_path / "central", ADMIN_KEY, settings) as url,
        httpx.Client(base_url=url, timeout=30) as http,
    ):
        vendor = Vendor(http, FIRM + 1)
        make_ada(url, vendor)
        r = vendor.post("/items", {"name": "Cloud Suite", "product_code": 9, "cloud": True})
        (ticket,) = vendor_cli(url, vendor.key, "ticket", "create", "--customer", vendor.customer,
                               "--item", r.json()["item_id"], "--cloud-login", "ada@example.com").split()  # fmt: skip
        pem = firm_pem(http, FIRM + 1, tmp_path)
        laptop = Machine(tmp_path, "laptop", machine_traits(), int(time.time()))
        password_login(laptop, url, FIRM + 1)
        app = subprocess.Popen(
            [sys.executable, "-c", LOSING, str(FIRM + 1), str(pem)], env=laptop.env(), cwd=laptop.dir,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            assert app.stdout is not None and app.stdin is not None
            said = app.stdout.readline().strip()
            assert said == "OK", said + app.stderr.read() if said != "OK" else said
            vendor_cli(url, vendor.key, "ticket", "cloud-deactivate", ticket)
            taken = time.monotonic()
            app.stdin.write("\n")
            app.stdin.flush()
            said = app.stdout.readline().strip()
            assert said == "LOST", said
            assert time.monotonic() - taken < 15  # within one lease TTL (and a heartbeat)
        finally:
            app.kill()


def test_a_cloud_lease_with_grace_is_held_in_the_device_and_given_back_at_exit(tmp_path):
    """An application asks for a day of grace; the item allows an hour: the device holds it
    in its machine container, and the seat stays the device's until the application ends
    and its container's receipt gives it back (then another device gets it)."""
    (tmp_path / "central").mkdir()
    firm = FIRM + 2
    with central_process(tmp_path / "central", ADMIN_KEY) as url, httpx.Client(base_url=url, timeout=30) as http:
        vendor = Vendor(http, firm)
        make_ada(url, vendor)
        item = {"name": "Suite", "product_code": 9, "cloud": True, "options": {"quantity": 1, "max_grace": 3600}}
        r = vendor.post("/items", item)
        vendor_cli(url, vendor.key, "ticket", "create", "--customer", vendor.customer,
                   "--item", r.json()["item_id"], "--cloud-login", "ada@example.com")  # fmt: skip
        pem = firm_pem(http, firm, tmp_path)
        now = int(time.time())
        laptop = Machine(tmp_path, "laptop", machine_traits(), now)
        desk = Machine(tmp_path, "desk", other_machine(), now)
        for machine in (laptop, desk):
            password_login(machine, url, firm)

        def start(machine: Machine) -> tuple[subprocess.Popen[str], str]:
            proc = subprocess.Popen(
                [sys.executable, "-c", GRACE, str(firm), str(pem), "86400"], env=machine.env(), cwd=machine.dir,
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            )  # fmt: skip
            assert proc.stdout is not None
            return proc, proc.stdout.readline().strip()

        first, said = start(laptop)
        try:
            assert said == "OK 3600", said  # the item's hour, not the day asked for
            graces = [g for p in laptop.home.rglob("state.json") for s in
                      json.loads(p.read_text())["body"]["slots"].values() for g in s.get("graces") or []]  # fmt: skip
            assert len(graces) == 1  # held in the laptop's machine container
            _, said = start(desk)
            assert said.startswith("DeviceLimitReached"), said
        finally:
            assert first.stdin is not None
            first.stdin.write("\n")
            first.stdin.flush()
            first.wait(30)
        graces = [g for p in laptop.home.rglob("state.json") for s in
                  json.loads(p.read_text())["body"]["slots"].values() for g in s.get("graces") or []]  # fmt: skip
        assert graces == []  # given back: the receipt went to the cloud
        second, said = start(desk)
        second.kill()
        assert said == "OK 3600", said
