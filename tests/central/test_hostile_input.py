"""Central under hostile input: a real `licentia central serve` process, clients on several
loopback addresses (127.0.0.2, 127.0.0.3, ...), huge, slow, deep and non-finite bodies.
Central answers each with a 4xx, keeps serving everyone else, and logs no traceback."""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest
from central_helpers import ADMIN_KEY, MASTER_KEY, FakeContainer, Vendor, wait_health

from tests.conftest import PYTHON, child_env, free_port

pytestmark = pytest.mark.slow

ACT = "/api/v1/activations"


def hostile_env(**extra: str) -> dict[str, str]:
    return {"LICENTIA_ADMIN_KEY": ADMIN_KEY, "LICENTIA_MASTER_KEY": MASTER_KEY, "LICENTIA_BODY_TIMEOUT": "2", **extra}


def client_from(address: str, base: str) -> httpx.Client:
    return httpx.Client(base_url=base, transport=httpx.HTTPTransport(local_address=address), timeout=30)


def raw_request(address: str, port: int, head: bytes, body_chunks=(), pause: float = 0.0) -> int:
    """Send a request over a socket bound to ``address``; the status Central answered
    (0 when it closed without one)."""
    with socket.create_connection(("127.0.0.1", port), timeout=30, source_address=(address, 0)) as s:
        s.sendall(head)
        try:
            for chunk in body_chunks:
                s.sendall(chunk)
                if pause:
                    time.sleep(pause)
        except (BrokenPipeError, ConnectionResetError):
            pass
        answer = b""
        try:
            while b"\r\n" not in answer:
                more = s.recv(4096)
                if not more:
                    break
                answer += more
        except (TimeoutError, ConnectionResetError):
            pass
    return int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.1 ") else 0


def junk_bodies() -> list[bytes]:
    """Deeply nested, non-finite, out-of-range, lone-surrogate and duplicate-key bodies."""
    kinds = [
        b"[" * 50_000 + b"]" * 50_000,
        b'{"payload": {"v": 1, "x": NaN}, "kid": "k", "sig": "s"}',
        b'{"payload": {"v": 1, "x": Infinity}, "kid": "k", "sig": "s"}',
        b'{"payload": {"v": 1, "x": 1e400}, "kid": "k", "sig": "s"}',
        b'{"payload": {"v": 1, "x": "\\ud800"}, "kid": "k", "sig": "s"}',
        b'{"payload": {"v": 1}, "payload": {"v": 1}, "kid": "k", "sig": "s"}',
        b'{"payload": {"v": 1, "n": 123456789012345678901234567890}, "kid": "k", "sig": "s"}',
        b"\xff\xfe not utf-8",
    ]
    return [kinds[i % len(kinds)] for i in range(1000)]


@pytest.fixture
def central(tmp_path: Path):
    port = free_port()
    with logged_central(tmp_path, port, hostile_env()) as (proc, log):
        base = f"http://127.0.0.1:{port}"
        wait_health(base)
        yield base, port, proc, log


@contextlib.contextmanager
def logged_central(tmp_path: Path, port: int, env: dict[str, str]):
    """`licentia central serve` with its output in a file (a pipe nobody reads would fill up)."""
    log = tmp_path / "central.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [PYTHON, "-m", "licentia", "central", "serve", "--data", str(tmp_path / "data"), "--port", str(port)],
            env=child_env(env),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        yield proc, log
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_hostile_clients_do_not_stop_the_others(central):
    base, port, proc, log_path = central
    with httpx.Client(base_url=base, timeout=30) as good:
        vendor = Vendor(good, 30303)
        tickets = vendor.tickets(2)
    statuses: dict[str, list[int]] = {"huge": [], "junk": [], "slow": []}

    def huge() -> None:  # 127.0.0.2: a declared 64 MiB body, then one that never says its size
        head = (
            f"POST {ACT} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {64 * 2**20}\r\n\r\n"
        ).encode()
        statuses["huge"].append(raw_request("127.0.0.2", port, head, [b"[" * 2**20] * 64))
        head = f"POST {ACT} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
        chunk = b"%x\r\n%s\r\n" % (2**20, b"[" * 2**20)
        statuses["huge"].append(raw_request("127.0.0.2", port, head, [chunk] * 64))

    def junk() -> None:  # 127.0.0.3: a thousand bodies licentia does not accept
        with client_from("127.0.0.3", base) as c:
            for body in junk_bodies():
                statuses["junk"].append(
                    c.post(ACT, content=body, headers={"content-type": "application/json"}).status_code
                )

    def slow() -> None:  # 127.0.0.4: one byte a second
        head = (
            f"POST {ACT} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
        ).encode()
        statuses["slow"].append(raw_request("127.0.0.4", port, head, [b"{"] * 30, pause=1.0))

    threads = [threading.Thread(target=f) for f in (huge, junk, slow)]
    for t in threads:
        t.start()
    time.sleep(0.5)
    with httpx.Client(base_url=base, timeout=30) as good:  # 127.0.0.1, meanwhile
        assert good.get("/health").status_code == 200
        box = FakeContainer()
        r = good.post(ACT, json=box.request("activate", ticket=tickets[0], now=int(time.time())))
        assert r.status_code == 200, r.text
        for t in threads:
            t.join(90)
        assert good.get("/health").status_code == 200
        r = good.post(ACT, json=FakeContainer().request("activate", ticket=tickets[1], now=int(time.time())))
        assert r.status_code == 200, r.text
    assert statuses["huge"] and all(s == 413 for s in statuses["huge"]), statuses["huge"]
    assert statuses["slow"] == [408]
    assert len(statuses["junk"]) == 1000
    assert all(400 <= s < 500 for s in statuses["junk"]), sorted(set(statuses["junk"]))
    assert statuses["junk"][0] == 400 and statuses["junk"][-1] == 429  # the address ran out of refusals
    proc.terminate()
    proc.wait(30)
    log = log_path.read_text(errors="replace")
    assert "Traceback" not in log, log[-3000:]
    assert "refused POST /api/v1/activations from 127.0.0.4: " in log  # one line, no traceback
    assert "refused every request from 127.0.0.3 for a while" in log
    assert log.count("127.0.0.3") < 200  # a flood of refusals does not flood the log


def test_malformed_protocol_bodies_are_refused_before_they_are_read(tmp_path):
    """Only the typed error, and no database write: the address's refusals are counted in
    the process (the attempts table stays empty)."""
    import sqlite3

    port = free_port()
    data = tmp_path / "data"
    with logged_central(tmp_path, port, hostile_env(LICENTIA_REFUSED_BURST="5")):
        base = f"http://127.0.0.1:{port}"
        wait_health(base)
        with client_from("127.0.0.5", base) as c:
            answers = [c.post(ACT, content=body) for body in junk_bodies()[1:8]]
        assert [a.status_code for a in answers[:5]] == [400] * 5
        assert {a.json()["error"]["code"] for a in answers[:5]} == {"malformed_input"}
        assert [a.status_code for a in answers[5:]] == [429, 429]
        with client_from("127.0.0.5", base) as c:
            assert c.get("/health").status_code == 429  # the address, whatever it asks now
        with client_from("127.0.0.6", base) as c:
            assert c.get("/health").status_code == 200  # other addresses are not touched
    db = sqlite3.connect(data / "central.db")
    assert db.execute("SELECT COUNT(*) FROM attempts").fetchone() == (0,)


def test_vendor_api_bodies_get_the_same_json_rules(tmp_path):
    port = free_port()
    with logged_central(tmp_path, port, hostile_env()):
        base = f"http://127.0.0.1:{port}"
        wait_health(base)
        admin = {"Authorization": f"Bearer {ADMIN_KEY}", "content-type": "application/json"}
        with httpx.Client(base_url=base, timeout=30) as c:
            for body in (
                b'{"code": 40404, "name": "F", "name": "G"}',
                b'{"code": 40404, "name": "\\ud800"}',
                b'{"code": NaN, "name": "F"}',
                b"[" * 100 + b"]" * 100,
            ):
                r = c.post("/api/v1/firms", content=body, headers=admin)
                assert r.status_code == 400 and r.json()["error"]["code"] == "malformed_input", r.text
            r = c.post("/api/v1/firms", content=b'{"code": 40404, "name": "F"}', headers=admin)
            assert r.status_code == 201, r.text
            big = json.dumps({"code": 40405, "name": "x" * (2 * 2**20)}).encode()
            r = c.post("/api/v1/firms", content=big, headers=admin)
            assert r.status_code == 413 and "1048576" in r.json()["error"]["message"]


def test_in_flight_requests_per_address_are_capped(tmp_path):
    port = free_port()
    env = hostile_env(LICENTIA_INFLIGHT_PER_ADDRESS="2", LICENTIA_BODY_TIMEOUT="3")
    with logged_central(tmp_path, port, env):
        base = f"http://127.0.0.1:{port}"
        wait_health(base)
        head = f"POST {ACT} HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n".encode()
        held: list[int] = []
        slow = [
            threading.Thread(target=lambda: held.append(raw_request("127.0.0.7", port, head, [b"{"] * 3, pause=0.5)))
            for _ in range(2)
        ]
        for t in slow:
            t.start()
        time.sleep(0.5)  # both bodies are on their way
        with client_from("127.0.0.7", base) as c:
            assert c.get("/health").status_code == 429
        with client_from("127.0.0.8", base) as c:
            assert c.get("/health").status_code == 200
        for t in slow:
            t.join(30)
        assert held == [408, 408]


def test_forwarded_for_counts_only_behind_a_trusted_proxy(tmp_path):
    """Behind a trusted proxy each client has its own allowance; elsewhere the header
    changes nothing (a client cannot pose as someone else)."""
    port = free_port()
    env = hostile_env(LICENTIA_FORWARDED_ALLOW_IPS="127.0.0.9", LICENTIA_REFUSED_BURST="3")
    with logged_central(tmp_path, port, env):
        base = f"http://127.0.0.1:{port}"
        wait_health(base)
        with client_from("127.0.0.9", base) as proxy:
            for _ in range(3):
                r = proxy.post(ACT, content=b"[NaN]", headers={"x-forwarded-for": "198.51.100.7"})
                assert r.status_code == 400
            assert proxy.get("/health", headers={"x-forwarded-for": "198.51.100.7"}).status_code == 429
            assert proxy.get("/health", headers={"x-forwarded-for": "198.51.100.8"}).status_code == 200
            assert proxy.get("/health").status_code == 200  # the proxy itself
        with client_from("127.0.0.10", base) as direct:  # not a trusted proxy: the header is ignored
            for _ in range(3):
                direct.post(ACT, content=b"[NaN]", headers={"x-forwarded-for": f"198.51.100.{_ + 20}"})
            assert direct.get("/health", headers={"x-forwarded-for": "198.51.100.99"}).status_code == 429
