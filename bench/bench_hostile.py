"""Benchmark: License Central's `/health` latency with and without hostile clients.

`licentia central serve` (SQLite, one worker) on 127.0.0.1. A probe asks `/health` every
20 ms and records the latency, first on a quiet server, then while three hostile clients
run on other loopback addresses:

- 127.0.0.2 sends declared-huge bodies (64 MiB `Content-Length`) and chunked bodies
  without a size, over and over;
- 127.0.0.3 sends bodies Central does not accept (deep nesting, NaN, 1e400, lone
  surrogates, duplicate keys) as fast as it gets answers, with a fresh allowance
  (`LICENTIA_REFUSED_BURST` high) so that every one is parsed and refused, not just
  turned away at the door;
- 127.0.0.4 keeps eight bodies trickling at one byte a second.

Prints a table of p50 / p99 / max of the probe and how many hostile requests were
answered, and how (all 4xx). Run: .venv/bin/python bench/bench_hostile.py [--seconds 10]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

ACT = "/api/v1/activations"
JUNK = [
    b"[" * 50_000 + b"]" * 50_000,
    b'{"payload": {"v": 1, "x": NaN}, "kid": "k", "sig": "s"}',
    b'{"payload": {"v": 1, "x": 1e400}, "kid": "k", "sig": "s"}',
    b'{"payload": {"v": 1, "x": "\\ud800"}, "kid": "k", "sig": "s"}',
    b'{"payload": {"v": 1}, "payload": {"v": 1}, "kid": "k", "sig": "s"}',
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def send_raw(address: str, port: int, head: bytes, chunks: list[bytes], pause: float = 0.0) -> int:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=60, source_address=(address, 0)) as s:
            s.sendall(head)
            try:
                for chunk in chunks:
                    s.sendall(chunk)
                    if pause:
                        time.sleep(pause)
            except OSError:
                pass
            answer = s.recv(64)
    except OSError:
        return 0
    return int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.1 ") else 0


class Hostile:
    def __init__(self, port: int):
        self.port = port
        self.stop = threading.Event()
        self.statuses: dict[int, int] = {}
        self.lock = threading.Lock()

    def count(self, status: int) -> None:
        with self.lock:
            self.statuses[status] = self.statuses.get(status, 0) + 1

    def huge(self) -> None:
        declared = (f"POST {ACT} HTTP/1.1\r\nHost: x\r\nContent-Length: {64 * 2**20}\r\n\r\n").encode()
        chunked = f"POST {ACT} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
        chunk = b"%x\r\n%s\r\n" % (2**20, b"[" * 2**20)
        while not self.stop.is_set():
            self.count(send_raw("127.0.0.2", self.port, declared, [b"[" * 2**20] * 4))
            self.count(send_raw("127.0.0.2", self.port, chunked, [chunk] * 4))

    def junk(self) -> None:
        transport = httpx.HTTPTransport(local_address="127.0.0.3")
        with httpx.Client(base_url=f"http://127.0.0.1:{self.port}", transport=transport, timeout=60) as c:
            i = 0
            while not self.stop.is_set():
                self.count(c.post(ACT, content=JUNK[i % len(JUNK)]).status_code)
                i += 1

    def trickle(self) -> None:
        head = f"POST {ACT} HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n".encode()
        while not self.stop.is_set():
            self.count(send_raw("127.0.0.4", self.port, head, [b"{"] * 1000, pause=1.0))

    def start(self) -> list[threading.Thread]:
        threads = [threading.Thread(target=f, daemon=True) for f in (self.huge, self.junk)]
        threads += [threading.Thread(target=self.trickle, daemon=True) for _ in range(8)]
        for t in threads:
            t.start()
        return threads


def probe(base: str, seconds: float) -> dict[str, float]:
    latencies = []
    with httpx.Client(base_url=base, timeout=30) as c:
        stop = time.monotonic() + seconds
        while time.monotonic() < stop:
            t0 = time.perf_counter()
            status = c.get("/health").status_code
            latencies.append(time.perf_counter() - t0)
            if status != 200:
                raise RuntimeError(f"/health answered {status}")
            time.sleep(0.02)
    latencies.sort()
    return {
        "probes": len(latencies),
        "p50_ms": round(statistics.median(latencies) * 1e3, 2),
        "p99_ms": round(latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1e3, 2),
        "max_ms": round(latencies[-1] * 1e3, 2),
    }


def main() -> dict[str, object]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="licentia-bench-hostile-"))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LICENTIA_")}
    env.update(
        {
            "PYTHONPATH": str(ROOT / "src"),
            "LICENTIA_ADMIN_KEY": "bench-admin-key-0123456789",
            "LICENTIA_MASTER_KEY": os.urandom(32).hex(),
            "LICENTIA_REFUSED_BURST": "1000000000",
            "LICENTIA_BODY_TIMEOUT": "5",
        }
    )
    with open(work / "central.log", "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "licentia", "central", "serve", "--data", str(work / "data"), "--port", str(port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(base + "/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError((work / "central.log").read_text())
            time.sleep(0.1)
        quiet = probe(base, args.seconds)
        hostile = Hostile(port)
        threads = hostile.start()
        time.sleep(1.0)
        loud = probe(base, args.seconds)
        hostile.stop.set()
        for t in threads:
            t.join(30)
    finally:
        proc.terminate()
        proc.wait(30)
    tracebacks = (work / "central.log").read_text(errors="replace").count("Traceback")
    answered = sum(hostile.statuses.values())
    result = {
        "quiet": quiet,
        "hostile": loud,
        "hostile_answers": dict(sorted(hostile.statuses.items())),
        "tracebacks_in_log": tracebacks,
    }
    print("| `/health` | probes | p50 ms | p99 ms | max ms |")
    print("|---|---|---|---|---|")
    for name, row in (("quiet", quiet), ("under hostile load", loud)):
        print(f"| {name} | {row['probes']} | {row['p50_ms']} | {row['p99_ms']} | {row['max_ms']} |")
    print(
        f"\nhostile requests answered: {answered}, by status {result['hostile_answers']} "
        f"(0: the client gave up first); tracebacks in the log: {tracebacks}\n"
    )
    print(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
