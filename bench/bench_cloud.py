"""Benchmark: cloud leases on PostgreSQL.

- cloud access + release pairs per second with 64 clients through one `licentia cloud
  serve` process, and through two on the same database (clients spread over both), with
  p50 and p99 pair latency. A pair is three requests, as the runtime makes them: GET
  /api/v1/cloud/challenge, POST /api/v1/cloud/leases (the request signed by the
  process's session key, the device's machine proof over the challenge), DELETE
  /api/v1/cloud/leases/{id} (signed by the holder);
- in the same run, the raw rate of the database work a grant cannot avoid: one row
  lock of the license, one insert, one commit, from 16 threads on the same database;
- the ratio of the two.

Every access authenticates the device session, checks the device's proof and records its
challenge, looks up the person's cloud licenses, takes a seat under the license's row
lock, appends the usage event to the hash-chained log, signs the lease with the cloud
container's key and seals the product key to the session; a release does the same
checks and ends the lease. The load generator is a light asyncio client (raw HTTP/1.1 on
kept-alive connections) in this process; Central and the cloud processes have their own.

    .venv/bin/python bench/bench_cloud.py [--seconds 5] [--rounds 3]

Prints a markdown table and a JSON summary. Needs PostgreSQL 15 binaries (it says so and
exits 0 without them).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tests"))

import httpx  # noqa: E402
from sqlalchemy import BigInteger, Column, Integer, MetaData, String, Table, insert, select  # noqa: E402

from licentia.central.db import Database  # noqa: E402
from licentia.core import grants, hazmat  # noqa: E402
from licentia.core.cloudlink import CLOUD_LINK, link_payload  # noqa: E402
from licentia.core.documents import sign_document  # noqa: E402
from licentia.core.encoding import b64e  # noqa: E402

CLIENTS = 64
DEVICES = 8  # 8 clients per device: within the default of 16 leases per device
RAW_THREADS = 16
FIRM = 90919
# made for each run: no secret in the repository
PASSWORD = secrets.token_urlsafe(16)
ADMIN_KEY = secrets.token_urlsafe(24)
MASTER_KEY = secrets.token_hex(32)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env(url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LICENTIA_")}
    src = str(ROOT / "src")
    env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.update(
        {
            "LICENTIA_DATABASE_URL": url,
            "LICENTIA_ADMIN_KEY": ADMIN_KEY,
            "LICENTIA_MASTER_KEY": MASTER_KEY,
            "LICENTIA_REFUSED_BURST": "100000",
            "LICENTIA_INFLIGHT_PER_ADDRESS": "1000",
            "LICENTIA_CLOUD_USAGE_INTERVAL": "0",
        }
    )
    return env


class Proc:
    """`licentia central serve` or `licentia cloud serve` in its own process."""

    def __init__(self, args: list[str], url: str, work: Path):
        self.port = _free_port()
        self.log = open(work / f"{args[0]}-{self.port}.log", "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "licentia", *args, "--data", str(work / "data"), "--port", str(self.port)],
            env=_env(url),
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self.url = f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Proc:
        deadline = time.monotonic() + 60
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"did not start (see {self.log.name})")
            try:
                if httpx.get(self.url + "/health", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("no answer within 60 s")
            time.sleep(0.1)

    def __exit__(self, *exc: object) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


class Device:
    def __init__(self) -> None:
        self.serial = "130-BNCH-" + os.urandom(4).hex().upper()[:4] + "-" + os.urandom(4).hex().upper()[:4]
        self.key = hazmat.Ed25519PrivateKey.generate()
        self.pub = b64e(hazmat.raw_public(self.key.public_key()))
        self.token = ""


def setup(central: str, devices: list[Device]) -> None:
    """A firm, a customer's person, a group with a cloud license of 1,000 seats, and the
    devices signed in."""
    admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
    with httpx.Client(base_url=central + "/api/v1", timeout=60) as c:

        def post(path: str, body: Any, status: int = 201) -> Any:
            r = c.post(path, json=body, headers=admin)
            if r.status_code != status:
                raise RuntimeError(f"{path}: {r.status_code} {r.text}")
            return r.json()

        post("/firms", {"code": FIRM, "name": "Bench"})
        item = post("/items", {"firm_code": FIRM, "name": "Cloud", "product_code": 1, "cloud": True,
                               "options": {"quantity": 1000}})["item_id"]  # fmt: skip
        customer = post("/customers", {"firm_code": FIRM, "name": "Bench"})["number"]
        post("/accounts", {"firm_code": FIRM, "login": "ada@bench.example", "name": "Ada", "role": "customer-user",
                           "customer": customer, "password": PASSWORD})  # fmt: skip
        post(f"/customers/{customer}/groups", {"firm_code": FIRM, "name": "All"})
        r = c.put(
            f"/customers/{customer}/groups/All/members/ada@bench.example", json={"firm_code": FIRM}, headers=admin
        )
        r.raise_for_status()
        (ticket,) = [
            t["ticket"] for t in post("/tickets", {"firm_code": FIRM, "customer": customer, "items": [item]})["tickets"]
        ]
        post(f"/tickets/{ticket}/cloud-activation", {"firm_code": FIRM, "customer": customer, "group": "All"}, 200)
        for d in devices:
            payload = link_payload(serial=d.serial, sign_pub=d.pub, firm_code=FIRM, name="bench", time=int(time.time()))
            link = sign_document(CLOUD_LINK, payload, d.key)
            r = c.post("/cloud/sessions", json={"firm_code": FIRM, "login": "ada@bench.example", "password": PASSWORD,
                                                "link": link})  # fmt: skip
            if r.status_code != 201:
                raise RuntimeError(f"sign-in: {r.status_code} {r.text}")
            d.token = r.json()["session"]


# ---------------------------------------------------------------- the load generator


class Conn:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader, self.writer = reader, writer

    async def call(self, raw: bytes) -> tuple[int, bytes]:
        self.writer.write(raw)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        lower = head.lower()
        i = lower.find(b"content-length:")
        n = int(lower[i + 15 : lower.find(b"\r\n", i)]) if i >= 0 else 0
        body = await self.reader.readexactly(n) if n else b""
        return status, body


class Client:
    """One application process: its session keys, its device."""

    def __init__(self, device: Device):
        self.device = device
        self.key = hazmat.Ed25519PrivateKey.generate()
        self.holder = b64e(hazmat.raw_public(self.key.public_key()))
        self.session = b64e(hazmat.raw_public(hazmat.X25519PrivateKey.generate().public_key()))
        self.auth = f"Authorization: Bearer {device.token}\r\n"

    def access_body(self, cid: str, challenge: dict[str, Any]) -> bytes:
        machine = sign_document(
            grants.SEAT_PROOF,
            {"serial": self.device.serial, "sign_pub": self.device.pub, "server": "bench",
             "nonce": challenge["nonce"], "time": challenge["time"], "holder": self.holder},
            self.device.key,
        )  # fmt: skip
        body = {
            "firm_code": FIRM, "product_code": 1, "feature_code": 0, "units": 0, "release_date": None,
            "mode": "user", "client_lease_id": cid, "reconnect": False, "session": self.session,
            "holder": self.holder, "nonce": cid, "user": "bench", "host": "bench-host", "pid": 1, "groups": [],
            "machine": machine,
        }  # fmt: skip
        body["proof"] = grants.prove(self.key, grants.LEASE_REQUEST, grants.request_proof_payload(body))
        return json.dumps(body).encode()

    def release_query(self, lease_id: str, cid: str) -> str:
        proof = grants.prove(self.key, grants.LEASE_RELEASE, grants.lease_proof_payload(lease_id, 1))
        return f"client={cid}&counter=1&proof={proof}"


async def _pairs(ports: list[int], devices: list[Device], seconds: float) -> dict[str, Any]:
    conns = []
    for k in range(CLIENTS):
        r, w = await asyncio.open_connection("127.0.0.1", ports[k % len(ports)])
        conns.append(Conn(r, w))
    latencies: list[float] = []
    start = time.perf_counter()
    measure_from, stop = start + 1.0, start + 1.0 + seconds
    done = 0

    async def worker(k: int, conn: Conn) -> None:
        nonlocal done
        client = Client(devices[k % len(devices)])
        i = 0
        while True:
            t0 = time.perf_counter()
            if t0 >= stop:
                return
            cid = f"b{k}-{i}"
            i += 1
            status, body = await conn.call(b"GET /api/v1/cloud/challenge HTTP/1.1\r\nHost: b\r\n\r\n")
            if status != 200:
                raise RuntimeError(f"challenge: {status} {body[:200]!r}")
            payload = client.access_body(cid, json.loads(body))
            raw = (
                f"POST /api/v1/cloud/leases HTTP/1.1\r\nHost: b\r\n{client.auth}Content-Type: application/json\r\n"
                f"Content-Length: {len(payload)}\r\n\r\n"
            ).encode() + payload
            status, body = await conn.call(raw)
            if status != 200:
                raise RuntimeError(f"access: {status} {body[:300]!r}")
            lease_id = json.loads(body)["lease_id"]
            raw = (
                f"DELETE /api/v1/cloud/leases/{lease_id}?{client.release_query(lease_id, cid)} HTTP/1.1\r\n"
                f"Host: b\r\n{client.auth}\r\n"
            ).encode()
            status, body = await conn.call(raw)
            if status != 200 or b'"released":true' not in body:
                raise RuntimeError(f"release: {status} {body[:200]!r}")
            t1 = time.perf_counter()
            if t0 >= measure_from:
                latencies.append(t1 - t0)
                done += 1

    await asyncio.gather(*(worker(k, c) for k, c in enumerate(conns)))
    for c in conns:
        c.writer.close()
    latencies.sort()
    return {
        "processes": len(ports),
        "clients": CLIENTS,
        "pairs": done,
        "per_second": round(done / seconds, 1),
        "p50_ms": round(statistics.median(latencies) * 1e3, 1),
        "p99_ms": round(latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1e3, 1),
    }


def raw_rate(url: str, seconds: float) -> dict[str, Any]:
    """One row lock (the license's), one insert, one commit, from RAW_THREADS threads."""
    db = Database(url, pool_size=RAW_THREADS)
    meta = MetaData()
    lock = Table("bench_lock", meta, Column("key", String(64), primary_key=True))
    rows = Table("bench_rows", meta, Column("id", BigInteger, primary_key=True, autoincrement=True),
                 Column("n", Integer), Column("body", String(200)))  # fmt: skip
    meta.drop_all(db.engine)
    meta.create_all(db.engine)
    with db.engine.begin() as conn:
        conn.execute(insert(lock).values(key="license"))
    barrier = threading.Barrier(RAW_THREADS + 1)
    stop = [0.0]

    def worker(n: int) -> int:
        done = 0
        with db.engine.connect() as conn:
            barrier.wait()
            while time.perf_counter() < stop[0]:
                with conn.begin():
                    conn.execute(select(lock.c.key).where(lock.c.key == "license").with_for_update())
                    conn.execute(insert(rows).values(n=n, body="x" * 120))
                done += 1
        return done

    with ThreadPoolExecutor(RAW_THREADS) as pool:
        futures = [pool.submit(worker, n) for n in range(RAW_THREADS)]
        stop[0] = time.perf_counter() + seconds + 60  # until the barrier lets them go
        barrier.wait()
        start = time.perf_counter()
        stop[0] = start + seconds
        done = sum(f.result() for f in futures)
        elapsed = time.perf_counter() - start
    meta.drop_all(db.engine)
    db.dispose()
    return {"threads": RAW_THREADS, "operations": done, "per_second": round(done / elapsed, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="measured seconds per run (default 5)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds; the median is reported (default 3)")
    args = parser.parse_args()

    import pgcluster

    if not pgcluster.available():
        print(f"skipped: {pgcluster.WHAT} not available")
        return
    work = Path(tempfile.mkdtemp(prefix="licentia-bench-cloud-"))
    cluster = pgcluster.start(max_connections=300)
    results: dict[str, Any] = {"clients": CLIENTS, "devices": DEVICES, "runs": {}}
    try:
        url = str(cluster.create_database("bench_cloud"))
        devices = [Device() for _ in range(DEVICES)]
        with Proc(["central", "serve"], url, work) as central:
            setup(central.url, devices)
        for processes in (1, 2):
            rounds = []
            for _ in range(args.rounds):
                procs = [Proc(["cloud", "serve"], url, work) for _ in range(processes)]
                for p in procs:
                    p.__enter__()
                try:
                    cloud = asyncio.run(_pairs([p.port for p in procs], devices, args.seconds))
                finally:
                    for p in procs:
                        p.__exit__()
                raw = raw_rate(url, args.seconds)
                rounds.append((cloud["per_second"] / raw["per_second"], cloud, raw))
            rounds.sort(key=lambda r: r[0])
            ratio, cloud, raw = rounds[len(rounds) // 2]
            results["runs"][f"{processes} process(es)"] = {
                "cloud": cloud,
                "raw": raw,
                "ratio": round(ratio, 3),
                "ratios": [round(r[0], 3) for r in rounds],
            }
    finally:
        cluster.stop()
        shutil.rmtree(work, ignore_errors=True)

    print(
        f"| cloud processes | access+release pairs/s ({CLIENTS} clients) | p50 ms | p99 ms "
        f"| raw lock+insert+commit/s ({RAW_THREADS} threads) | ratio |"
    )
    print("|---|---|---|---|---|---|")
    for name, r in results["runs"].items():
        c = r["cloud"]
        print(
            f"| {name} | {c['per_second']} | {c['p50_ms']} | {c['p99_ms']} | {r['raw']['per_second']} | {r['ratio']} |"
        )
    print()
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
