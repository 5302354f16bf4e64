"""Test harness for license servers: a real `licentia server start` process on a free
127.0.0.1 port, and client processes driving the real runtime line by line.

Time and machine traits come from tests/_fakes/sitecustomize.py (a time file shared by
the server and its clients); the host name a client reports is its injected
``hostname`` trait, its user name the USER variable.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from licentia.container import MachineContainer
from licentia.core import exchange
from licentia.core.license import Options
from tests.conftest import ROOT, child_env, free_port
from tests.factory import T0, Firm, machine_traits

FAKES_DIR = ROOT / "tests" / "_fakes"
HERE = Path(__file__).resolve().parent
TICKET = "00000-00000-00000-00000-00000"

BASE_SERVER = {"lease_ttl": 30, "heartbeat": 0.3, "sweep_interval": 0.1, "config_poll": 0.1, "discovery": False}


def config_text(rules: str = "", **server: object) -> str:
    import tomli_w

    return tomli_w.dumps({"server": {**BASE_SERVER, **server}}) + "\n" + rules


def fakes_env(root: Path, name: str, traits: dict[str, str], time_file: Path, **extra: str) -> dict[str, str]:
    fakes = root / f"{name}.fakes.json"
    fakes.write_text(json.dumps({"time_file": str(time_file), "traits": traits}))
    env = child_env({"LICENTIA_TEST_FAKES": str(fakes), **extra})
    env["PYTHONPATH"] = f"{FAKES_DIR}{os.pathsep}{env['PYTHONPATH']}"
    return env


class Site:
    """A server data directory whose container holds licenses of a test firm."""

    def __init__(self, root: Path, firm: Firm | None = None, now: int = T0):
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self.firm = firm or Firm()
        self.data = root / "server-data"
        self.time_file = root / "time"
        self.time_file.write_text(str(now))
        self.pem = root / "firm.pem"
        self.pem.write_text(self.firm.pem)
        self.traits = machine_traits(hostname="license-server")
        self.container = MachineContainer.create(self.data, "medium", self.traits, now)
        self.entries: list[dict[str, Any]] = []
        self.config = root / "server.toml"
        self.config.write_text(config_text())
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = free_port()
        self.log_path = root / "server.log"

    @property
    def now(self) -> int:
        return int(self.time_file.read_text())

    def advance(self, seconds: int) -> None:
        self.time_file.write_text(str(self.now + seconds))

    def add_license(self, *, product: int = 1, quantity: int = 1, **options: Any) -> int:
        """Add a license (the update carries the firm's whole state for the container)."""
        req_doc = self.container.make_request(
            "sync" if self.entries else "activate", self.now, ticket=TICKET, firm_code=self.firm.code
        )
        req = exchange.verify_request(req_doc)
        license_id = len(self.entries) + 1
        self.entries.append(
            self.firm.entry(
                req,
                product=product,
                license_id=license_id,
                ticket=TICKET,
                options=Options(quantity=quantity, **options),
            )
        )
        # entries name the container, not the request: reuse them across updates
        self.container.apply_update(self.firm.update(req_doc, self.entries, now=self.now), self.now)
        return license_id

    def write_config(self, rules: str = "", **server: object) -> None:
        self.config.write_text(config_text(rules, **server))

    # ------------------------------------------------------------ process

    def env(self, **extra: str) -> dict[str, str]:
        return fakes_env(self.root, "server", self.traits, self.time_file, **extra)

    def start(self, *extra_args: str, wait: bool = True) -> None:
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "licentia",
                "server",
                "start",
                "--data",
                str(self.data),
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--config",
                str(self.config),
                *extra_args,
            ],
            env=self.env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.root,
        )
        log.close()
        if wait:
            self.wait_ready()

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while True:
            assert self.proc is not None and self.proc.poll() is None, self.log()
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "license server did not start:\n" + self.log()
            time.sleep(0.05)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(20)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def hup(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGHUP)

    # ------------------------------------------------------------ admin API

    def admin_token(self) -> str:
        return (self.data / "admin.token").read_text().strip()

    def status(self) -> dict[str, Any]:
        r = httpx.get(
            f"{self.url}/api/v1/admin/status", headers={"Authorization": f"Bearer {self.admin_token()}"}, timeout=10
        )
        r.raise_for_status()
        return r.json()

    def health(self) -> dict[str, Any]:
        return httpx.get(f"{self.url}/health", timeout=10).json()

    def seats_in_use(self, license_id: int = 1) -> int:
        for lic in self.status()["licenses"]:
            if lic["license_id"] == license_id:
                return int(lic["in_use"])
        raise KeyError(license_id)

    def cli(self, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
        out = subprocess.run(
            [sys.executable, "-m", "licentia", *args],
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=60,
            cwd=self.root,
        )
        if ok:
            assert out.returncode == 0, f"{args}: {out.stdout}\n{out.stderr}"
        return out


class Client:
    """A client process with its own LICENTIA_HOME, driving the runtime line by line
    (tests/server/client_repl.py)."""

    def __init__(
        self,
        site: Site,
        name: str,
        *,
        host: str | None = None,
        user: str = "alice",
        servers: str | None = None,
        same_machine_as: Client | None = None,
        **env: str,
    ):
        """``same_machine_as``: another process of the same user on that client's machine
        (its home and traits: the same machine container)."""
        self.site = site
        self.name = name
        if same_machine_as is not None:
            self.home, self.traits = same_machine_as.home, same_machine_as.traits
        else:
            self.home = site.root / f"home-{name}"
            self.traits = machine_traits(hostname=host or f"host-{name}", machine_id=f"{abs(hash(name)):032x}"[:32])
        extra = {"LICENTIA_HOME": str(self.home), "USER": user, "LOGNAME": user}
        if servers is None:
            servers = site.host
        if servers:
            extra["LICENTIA_HOST"] = servers
        extra.update(env)
        self.env = fakes_env(site.root, f"client-{name}", self.traits, site.time_file, **extra)
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE / "client_repl.py"), str(site.firm.code), str(site.pem)],
            env=self.env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=open(site.root / f"{name}.err", "wb"),
            text=True,
            bufsize=1,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.events: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put("<EOF>")

    def _next(self, timeout: float) -> str:
        try:
            return self.lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(
                f"client {self.name}: no answer in {timeout} s\n" + (self.site.root / f"{self.name}.err").read_text()
            ) from None

    def cmd(self, line: str, timeout: float = 60) -> str:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        while True:
            answer = self._next(timeout)
            if answer.startswith("EVENT "):
                self.events.append(answer[6:])
                continue
            assert answer != "<EOF>", (self.site.root / f"{self.name}.err").read_text()
            return answer

    def wait_event(self, what: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while what not in self.events:
            left = deadline - time.monotonic()
            assert left > 0, f"client {self.name}: no event {what!r} (events {self.events})"
            try:
                answer = self.lines.get(timeout=left)
            except queue.Empty:
                continue
            if answer.startswith("EVENT "):
                self.events.append(answer[6:])

    def settle(self, seconds: float) -> list[str]:
        """Read what the client prints on its own for ``seconds`` (no command is pending, so
        only events may come) and return every event seen so far. A check that an event did
        not happen reads here first: ``events`` holds only what was read."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                break
            assert line != "<EOF>", (self.site.root / f"{self.name}.err").read_text()
            assert line.startswith("EVENT "), f"client {self.name}: unexpected output {line!r}"
            self.events.append(line[6:])
        return self.events

    def access(
        self, name: str = "h", product: int = 1, mode: str = "user", feature: int = 0, units: int = 0, grace: int = 0
    ) -> str:
        return self.cmd(f"access {name} {product} {mode} {feature} {units} {grace}")

    def release(self, name: str = "h") -> str:
        return self.cmd(f"release {name}")

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def close(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(AssertionError, BrokenPipeError, OSError):
                self.cmd("exit", timeout=20)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()

    def cli(self, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
        out = subprocess.run(
            [sys.executable, "-m", "licentia", *args], env=self.env, capture_output=True, text=True, timeout=60
        )
        if ok:
            assert out.returncode == 0, f"{args}: {out.stdout}\n{out.stderr}"
        else:
            assert out.returncode != 0, f"{args} should have failed: {out.stdout}"
        return out


def max_concurrent_seats(events: list[dict[str, Any]], license_id: int | None = None) -> int:
    """Replay the server's event log: the most seats held at once (distinct leases)."""
    live: set[str] = set()
    peak = 0
    for e in events:
        if license_id is not None and e.get("ticketLicenseId") != license_id:
            continue
        kind = e["event"]
        if kind in ("access", "borrow") and e.get("mode") != "nolimit":
            live.add(e["leaseId"])
        elif kind in ("release", "expire", "revoke", "return"):
            live.discard(e["leaseId"])
        peak = max(peak, len(live))
    return peak
