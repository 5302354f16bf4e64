"""A license server as proxy of a group's enterprise cloud container, across processes:
`licentia central serve`, the group's admin making the proxy's link code with
`licentia cloud proxy create` on her signed-in machine, `licentia server proxy link` on
the server's data directory, `licentia server start` on 127.0.0.1, and applications
(`licentia.access()` in their own processes) on LAN machines that ask that server only
(`licentia config cloud off`). The proxy serves the group's members' linked devices, under
the member's login, and no one else; never more seats than it holds, while the license's
other seat is still the cloud's to lease directly."""

from __future__ import annotations

import contextlib
import json
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.central.central_helpers import ADMIN_KEY, Vendor
from tests.conftest import central_process, free_port, healthy_process
from tests.e2e.test_cloud_application import firm_pem, make_ada
from tests.e2e.test_cloud_login import PASSWORD, password_login, vendor_cli
from tests.e2e.test_flow import Machine
from tests.factory import machine_traits, other_machine

pytestmark = pytest.mark.slow

FIRM = 62301
GROUP = "Engineering"

APP = """
import sys, licentia
licentia.trust(int(sys.argv[1]), sys.argv[2])
try:
    h = licentia.access(int(sys.argv[1]), 9)
except licentia.LicenseError as e:
    print(type(e).__name__, e, flush=True)
    sys.exit(0)
print("OK", h.server, flush=True)
sys.stdin.readline()  # hold the license until told to end
"""


class App:
    """An application process on ``machine`` (APP): its first line says OK and where its seat
    is, or the error's class and message."""

    def __init__(self, machine: Machine, pem: Path):
        self.proc = subprocess.Popen(
            [sys.executable, "-c", APP, str(FIRM), str(pem)], env=machine.env(USER="osuser", LOGNAME="osuser"),
            cwd=machine.dir,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        out = self.proc.stdout
        assert out is not None
        lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=lambda: lines.put(out.readline()), daemon=True).start()
        try:
            self.said = lines.get(timeout=60).strip()
        except queue.Empty:
            self.stop()
            raise AssertionError(f"the application on {machine.dir.name} said nothing in 60 s") from None
        if not self.said:  # it ended without a word: show why
            self.stop()
            self.said = "EXITED " + (self.proc.stderr.read() if self.proc.stderr else "")

    def stop(self) -> None:
        """End it (its seat goes back at exit); killed if it does not end in time."""
        if self.proc.poll() is None:
            with contextlib.suppress(OSError, ValueError):
                assert self.proc.stdin is not None
                self.proc.stdin.write("\n")
                self.proc.stdin.flush()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


@contextlib.contextmanager
def license_server(machine: Machine, data: Path) -> Iterator[str]:
    """`licentia server start` as ``machine`` on 127.0.0.1 and a free port (no discovery);
    yields its address once /health answers; always stopped."""
    port = free_port()
    config = machine.dir / "server.toml"
    config.write_text("[server]\ndiscovery = false\n")
    argv = [sys.executable, "-m", "licentia", "server", "start", "--data", str(data), "--host", "127.0.0.1",
            "--port", str(port), "--config", str(config)]  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    with healthy_process(argv, env=machine.env(), log_path=machine.dir / "server.log", url=url, cwd=machine.dir):
        yield f"127.0.0.1:{port}"


def test_a_proxy_license_server_serves_the_groups_members_devices_only_and_its_seats_only(tmp_path):
    (tmp_path / "central").mkdir()
    with central_process(tmp_path / "central", ADMIN_KEY) as url, httpx.Client(base_url=url, timeout=30) as http:
        # the vendor: a cloud item of 2 seats, ada (a customer's person) admin of Engineering,
        # a ticket of it in the group's cloud container
        vendor = Vendor(http, FIRM)
        make_ada(url, vendor)
        r = vendor.post("/items", {"name": "Team", "product_code": 9, "cloud": True, "options": {"quantity": 2}})
        assert r.status_code == 201, r.text
        item = r.json()["item_id"]
        r = vendor.post(f"/customers/{vendor.customer}/groups", {"name": GROUP})
        assert r.status_code in (200, 201), r.text
        r = http.put(f"/api/v1/customers/{vendor.customer}/groups/{GROUP}/members/ada@example.com",
                     json={"admin": True}, headers=vendor.headers)  # fmt: skip
        assert r.status_code in (200, 201), r.text
        r = vendor.post("/tickets", {"customer": vendor.customer, "items": [item], "quantity_of_licenses": 1})
        assert r.status_code in (200, 201), r.text
        ticket = r.json()["tickets"][0]["ticket"]
        r = http.post(f"/api/v1/tickets/{ticket}/cloud-activation", json={"customer": vendor.customer, "group": GROUP},
                      headers=vendor.headers)  # fmt: skip
        assert r.status_code in (200, 201), r.text
        pem = firm_pem(http, FIRM, tmp_path)

        now = int(time.time())
        laptop = Machine(tmp_path, "laptop", machine_traits(), now)
        desk = Machine(tmp_path, "desk", other_machine(), now)
        stranger = Machine(tmp_path, "stranger", machine_traits(machine_id="c" * 32, hostname="stranger"), now)
        bobs = Machine(tmp_path, "bobs", machine_traits(machine_id="d" * 32, hostname="bobs"), now)
        lan = Machine(tmp_path, "lan", machine_traits(machine_id="b" * 32, hostname="license-server"), now)
        data = lan.dir / "server-data"

        # ada, signed in on her laptop, makes the proxy's one-time link code: 1 seat of 2
        password_login(laptop, url, FIRM, "--name", "Ada's laptop")
        password_login(desk, url, FIRM, "--name", "Ada's desk")
        # bob: a person of the same customer, signed in on his machine, not in the group
        vendor_cli(url, vendor.key, "account", "create", "bob@example.com", "--name", "Bob", "--role", "customer-user",
                   "--customer", vendor.customer, "--password-stdin", stdin=PASSWORD + "\n")  # fmt: skip
        signed = subprocess.run(
            [sys.executable, "-m", "licentia", "cloud", "login", "--central", url, "--firm-code", str(FIRM),
             "--login", "bob@example.com", "--password-stdin"],
            env=bobs.env(), input=PASSWORD + "\n", capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert signed.returncode == 0, signed.stderr
        made = laptop.cli("cloud", "proxy", "create", GROUP, "lan", "--seats", "1")
        code = made.stdout.splitlines()[0].strip()
        assert code.startswith(f"lcp_{FIRM}."), made.stdout
        assert "licentia server proxy link" in made.stderr

        # the server links once; the code does not link a second time
        linked = lan.cli("server", "proxy", "link", url, code, "--data", str(data))
        assert "group Engineering, proxy lan, 1 member(s); product 9: 1 seat(s)" in " ".join(linked.stdout.split())
        again = lan.cli("server", "proxy", "link", url, code, "--data", str(data), ok=False)
        assert "used already" in again.stderr and "proxy_bound" in again.stderr, again.stderr
        (status,) = json.loads(lan.cli("server", "proxy", "status", "--data", str(data), "--json").stdout)
        assert status["firm_code"] == FIRM and status["grant"]["payload"]["group"] == GROUP
        (listed,) = json.loads(laptop.cli("cloud", "proxy", "list", GROUP, "--json").stdout)
        assert (listed["name"], listed["state"], listed["seats_held"]) == ("lan", "linked", 1)

        apps: list[App] = []
        with license_server(lan, data) as server:
            try:
                for machine in (laptop, desk, stranger, bobs):
                    machine.cli("config", "server", "add", server)
                    assert "cloud: off" in machine.cli("config", "cloud", "off").stdout

                # ada's laptop: the license from the proxy, under her login
                apps.append(held := App(laptop, pem))
                assert held.said == f"OK {server}", held.said  # the seat is the license server's
                shown = json.loads(
                    lan.cli("server", "status", "--url", f"http://{server}", "--data", str(data), "--json").stdout
                )
                assert [s["user"] for s in shown["sessions"]] == ["ada@example.com"]
                (lic,) = [x for x in shown["licenses"] if x["firm_code"] == FIRM]
                assert (lic["product_code"], lic["seats"], lic["in_use"]) == (9, 1, 1)
                (proxied,) = shown["proxy"]
                assert (proxied["group"], proxied["proxy"], proxied["members"]) == (GROUP, "lan", 1)

                # a LAN machine that no one linked, and one a person outside the group linked: refused
                for machine in (stranger, bobs):
                    apps.append(refused := App(machine, pem))
                    assert refused.said.startswith("AccessDenied"), refused.said
                    assert "members of group Engineering only" in refused.said, refused.said

                # ada's desk, the proxy's only seat held by the laptop: no second seat from it
                apps.append(busy := App(desk, pem))
                assert busy.said.startswith("SeatsExhausted"), busy.said

                # the desk with the cloud back in the search (after the servers): the license's
                # other seat, directly from the cloud
                desk.cli("config", "cloud", "last")
                apps.append(direct := App(desk, pem))
                assert direct.said.startswith("OK") and direct.said != f"OK {server}", direct.said
                devices = json.loads(laptop.cli("cloud", "devices", "--json").stdout)
                assert sorted((d["name"], d["leases"]) for d in devices) == [("Ada's desk", 1), ("Ada's laptop", 0)]
                # both seats in use (1 proxy + 1 direct): nothing more, from either
                apps.append(third := App(desk, pem))
                assert third.said.startswith("SeatsExhausted"), third.said
                assert "all 1 seat(s)" in third.said and "all 2 seat(s)" in third.said, third.said

                # the laptop's application ends: its seat is the proxy's again, the desk's to take
                held.stop()
                desk.cli("config", "cloud", "off")
                apps.append(after := App(desk, pem))
                assert after.said == f"OK {server}", after.said
                shown = json.loads(
                    lan.cli("server", "status", "--url", f"http://{server}", "--data", str(data), "--json").stdout
                )
                assert [(s["user"], s["host"]) for s in shown["sessions"]] == [("ada@example.com", "other")]
            finally:
                for app in apps:
                    app.stop()
