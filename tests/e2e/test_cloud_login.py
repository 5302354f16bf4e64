"""A device signs in to a vendor's cloud account: `licentia central serve` as a process,
the vendor's CLI making the account and its group, `licentia cloud login` waiting on its
code while a real browser (chromium) signs in on Central's page and confirms, then the
person's own commands; the session is sealed to the machine: a copy of the home on
another machine is not signed in."""

from __future__ import annotations

import os
import select
import shutil
import subprocess
import sys
import time

import httpx
import pytest

from tests.browser import browser  # noqa: F401 - the fixture
from tests.central.central_helpers import ADMIN_KEY, Vendor
from tests.conftest import central_process
from tests.e2e.test_flow import Machine
from tests.factory import machine_traits, other_machine

pytestmark = pytest.mark.slow

FIRM = 62001
PASSWORD = "correct horse battery"


def vendor_cli(url: str, key: str, *args: str, stdin: str | None = None) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LICENTIA_")}
    env.update({"LICENTIA_CENTRAL_URL": url, "LICENTIA_API_KEY": key})
    out = subprocess.run(
        [sys.executable, "-m", "licentia", "vendor", *args],
        env=env, input=stdin, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 0, f"{args}: {out.stdout}\n{out.stderr}"
    return out.stdout


def password_login(machine: Machine, url: str, firm: int, *more: str) -> None:
    """`licentia cloud login --password-stdin` as ada on ``machine`` (a script's sign-in)."""
    out = subprocess.run(
        [sys.executable, "-m", "licentia", "cloud", "login", "--central", url, "--firm-code", str(firm),
         "--login", "ada@example.com", "--password-stdin", *more],
        env=machine.env(), input=PASSWORD + "\n", capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr


def read_until(proc: subprocess.Popen[bytes], marker: str, timeout: float = 60) -> str:
    """What the process wrote to stderr until it holds ``marker`` (read from the pipe's
    descriptor, so nothing waits in a buffer the descriptor does not show)."""
    assert proc.stderr is not None
    fd = proc.stderr.fileno()
    seen = b""
    deadline = time.monotonic() + timeout
    while marker.encode() not in seen:
        assert time.monotonic() < deadline, f"no {marker!r} in: {seen.decode()}"
        ready, _, _ = select.select([fd], [], [], 1)
        if ready:
            chunk = os.read(fd, 65536)
            assert chunk, f"the command ended: {seen.decode()}"
            seen += chunk
    return seen.decode()


def test_a_device_signs_in_through_the_browser_and_its_session_stays_on_the_machine(tmp_path, browser):  # noqa: F811
    (tmp_path / "central").mkdir()
    with central_process(tmp_path / "central", ADMIN_KEY) as url, httpx.Client(base_url=url, timeout=30) as http:
        vendor = Vendor(http, FIRM)
        # the vendor's CLI: an account with its password from stdin, a group it administers
        login = vendor_cli(url, vendor.key, "account", "create", "Ada@Example.com", "--name", "Ada Lovelace",
                           "--role", "customer-user", "--customer", vendor.customer, "--password-stdin",
                           stdin=PASSWORD + "\n").strip()  # fmt: skip
        assert login == "ada@example.com"
        vendor_cli(url, vendor.key, "account", "create", "bob@example.com", "--name", "Bob",
                   "--customer", vendor.customer)  # fmt: skip
        assert vendor_cli(url, vendor.key, "group", "create", vendor.customer, "Engineering").strip() == "Engineering"
        vendor_cli(url, vendor.key, "group", "add", vendor.customer, "Engineering", login, "--admin")
        listed = vendor_cli(url, vendor.key, "account", "list")
        assert "ada@example.com" in listed and "no password" in listed  # bob has none yet

        laptop = Machine(tmp_path, "laptop", machine_traits(), int(time.time()))
        proc = subprocess.Popen(
            [sys.executable, "-m", "licentia", "cloud", "login", "--central", url, "--firm-code", str(FIRM),
             "--name", "Ada's laptop"],
            env=laptop.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=laptop.dir,
        )  # fmt: skip
        try:
            said = read_until(proc, "(or open ")
            link = said.split("(or open ", 1)[1].split(")", 1)[0]
            code = said.split("enter the code ", 1)[1].split()[0]
            assert link.endswith(f"?code={code}")

            page = browser.new_page()
            page.goto(link)
            page.fill("input[name=login]", "ada@example.com")
            page.fill("input[name=password]", PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_load_state()
            assert "A device asks to use your licenses" in page.content(), page.content()
            text = page.inner_text("body")
            assert "Ada's laptop" in text and "127.0.0.1" in text and code in text  # who asks, and from where
            page.click("button[value=approve]")
            page.wait_for_selector("text=is signed in")
            _, rest = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
        err = said + rest.decode()
        assert proc.returncode == 0, err
        assert "signed in as ada@example.com" in err

        status = laptop.cli("cloud", "status").stdout
        assert "ada@example.com" in status and "Engineering (admin)" in status
        assert "Ada's laptop" in laptop.cli("cloud", "devices").stdout
        laptop.cli("cloud", "group", "add", "Engineering", "bob@example.com")
        reset = laptop.cli("cloud", "group", "reset", "Engineering").stderr  # bob's devices: none yet
        assert "0 device(s) of 1 member(s) unlinked" in reset
        assert "bob@example.com" in laptop.cli("cloud", "groups").stdout
        assert "Engineering" in vendor_cli(url, vendor.key, "account", "show", "bob@example.com")

        # cloud licenses: an item for the cloud, a ticket into ada's personal container, one
        # that ada (the group's admin) puts into the group's
        cloud_item = vendor_cli(url, vendor.key, "item", "create", "--name", "Cloud Suite", "--product-code", "9",
                                "--cloud").strip()  # fmt: skip
        mine = vendor_cli(url, vendor.key, "ticket", "create", "--customer", vendor.customer, "--item", cloud_item,
                          "--cloud-login", login).split()  # fmt: skip
        (group_ticket,) = vendor_cli(url, vendor.key, "ticket", "create", "--customer", vendor.customer,
                                     "--item", cloud_item).split()  # fmt: skip
        laptop.cli("cloud", "group", "activate", "Engineering", group_ticket)
        listed = laptop.cli("cloud", "licenses").stdout
        assert "personal (container 140-" in listed and "group Engineering (container 140-" in listed
        assert mine[0] in listed and group_ticket in listed and "Cloud Suite" in listed
        assert mine[0] in vendor_cli(url, vendor.key, "account", "cloud", login)
        assert group_ticket in vendor_cli(url, vendor.key, "group", "cloud", vendor.customer, "Engineering")
        vendor_cli(url, vendor.key, "ticket", "cloud-deactivate", mine[0])
        assert mine[0] not in laptop.cli("cloud", "licenses").stdout

        # the home copied to another machine: its container does not open there
        thief = Machine(tmp_path, "thief", other_machine(), int(time.time()))
        shutil.copytree(laptop.home, thief.home)
        stolen = thief.cli("cloud", "status", ok=False)
        assert "ada@example.com" not in stolen.stdout

        # a script signs in with the password on stdin: the same container, the same device
        password_login(laptop, url, FIRM)
        devices = laptop.cli("cloud", "devices", "--json").stdout
        assert devices.count('"serial"') == 1

        # the vendor resets the group (ada, its admin, is a member): the device must sign in again
        vendor_cli(url, vendor.key, "group", "reset", vendor.customer, "Engineering")
        assert "sign in again" in laptop.cli("cloud", "status", ok=False).stderr
        password_login(laptop, url, FIRM)

        # the vendor resets the account: the device must sign in again
        vendor_cli(url, vendor.key, "account", "reset", "ada@example.com")
        ended = laptop.cli("cloud", "status", ok=False)
        assert "sign in again" in ended.stderr
        laptop.cli("cloud", "logout")
        assert "not signed in" in laptop.cli("cloud", "status", ok=False).stderr
        # a password is never taken as an argument
        assert "--password" not in laptop.cli("cloud", "login", "--help").stdout.replace("--password-stdin", "")
