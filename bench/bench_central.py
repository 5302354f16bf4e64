"""Benchmark: License Central activations per second with 8 concurrent clients,
against a real uvicorn server on 127.0.0.1 (a separate process), on SQLite and on
PostgreSQL, compared with the raw rate of one Ed25519 signature plus one row
insert and commit under the same database settings (SQLite: WAL + BEGIN
IMMEDIATE, checkpoints in the background; PostgreSQL: the same throwaway
cluster), 8 concurrent threads.

    .venv/bin/python bench/bench_central.py [--per-client 120] [--raw-ops 600] [--rounds 3]

Each round measures Central and then the raw floor, so every ratio has its
denominator from the same run; the round with the median ratio is reported, with
the server's CPU milliseconds per activation (all its processes). Prints a
markdown table and a JSON summary (target: ratio >= 0.5 with one worker, on
SQLite and on PostgreSQL). On SQLite it also measures Central's own work without HTTP
(the app called through ASGI in this process) against the floor measured right after.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tests"))

import httpx  # noqa: E402
from sqlalchemy import BigInteger, Column, Integer, LargeBinary, MetaData, Table, insert  # noqa: E402

from licentia.central.db import Database, write_tx  # noqa: E402
from licentia.core import codes, exchange, hazmat  # noqa: E402

CLIENTS = 8
ADMIN_KEY = "bench-admin-key-0123456789abcdef"
MASTER_KEY = "77" * 32
TARGET = 0.5


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """``licentia central serve`` in its own process."""

    def __init__(
        self,
        data: Path,
        database_url: str | None,
        workers: int = 1,
        protocol_threads: int = 2,
        env_extra: dict[str, str] | None = None,
    ):
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("LICENTIA_")}
        env.update(
            {"LICENTIA_ADMIN_KEY": ADMIN_KEY, "LICENTIA_MASTER_KEY": MASTER_KEY, "PYTHONPATH": str(ROOT / "src")}
        )
        if database_url:
            env["LICENTIA_DATABASE_URL"] = database_url
        env["LICENTIA_PROTOCOL_THREADS"] = str(protocol_threads)
        env.update(env_extra or {})
        self.log = open(data.parent / f"server-{self.port}.log", "wb")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "licentia",
                "central",
                "serve",
                "--data",
                str(data),
                "--port",
                str(self.port),
                "--workers",
                str(workers),
            ],
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def __enter__(self) -> Server:
        deadline = time.monotonic() + 60
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"Central did not start (see {self.log.name})")
            try:
                if httpx.get(self.url + "/health", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("Central did not answer within 60 s")
            time.sleep(0.1)

    def cpu_seconds(self) -> float:
        """CPU time so far of the server and its worker processes (Linux /proc), 0.0 elsewhere."""
        return _tree_cpu(self.proc.pid)

    def __exit__(self, *exc: object) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


def _tree_cpu(pid: int) -> float:
    """CPU seconds of a process and its live descendants (uvicorn's workers)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return 0.0
    own = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return own + sum(_tree_cpu(int(child)) for child in children)


def _request(ticket: str) -> bytes:
    sign = hazmat.Ed25519PrivateKey.generate()
    box = hazmat.X25519PrivateKey.generate()
    doc = exchange.build_request(
        serial=codes.new_serial(),
        level="medium",
        sign_key=sign,
        box_pub=hazmat.raw_public(box.public_key()),
        slots={},
        action="activate",
        now=int(time.time()),
        ticket=ticket,
    )
    return json.dumps(doc).encode()


def _tickets(c: Any, api: str, count: int) -> list[str]:
    """A firm, an item and a customer made through Central's API (``c``: an httpx client,
    ``api``: the API's path prefix), and ``count`` tickets of that item."""
    admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
    c.post(f"{api}/firms", json={"code": 90909, "name": "Bench"}, headers=admin).raise_for_status()
    item = c.post(
        f"{api}/items",
        json={"firm_code": 90909, "name": "Bench", "product_code": 1, "options": {"expires_days": 30}},
        headers=admin,
    ).json()["item_id"]
    cust = c.post(f"{api}/customers", json={"firm_code": 90909, "name": "Bench"}, headers=admin).json()["number"]
    return [
        t["ticket"]
        for t in c.post(
            f"{api}/tickets",
            json={"firm_code": 90909, "customer": cust, "items": [item], "quantity_of_licenses": count},
            headers=admin,
        ).json()["tickets"]
    ]


def central_rate(
    database_url: str | None, work: Path, per_client: int, workers: int = 1, protocol_threads: int = 2
) -> dict[str, Any]:
    work.mkdir(parents=True, exist_ok=True)
    data = work / f"central-{'pg' if database_url else 'sqlite'}-{workers}"
    with (
        Server(data, database_url, workers=workers, protocol_threads=protocol_threads) as srv,
        httpx.Client(base_url=srv.url + "/api/v1", timeout=60) as c,
    ):
        total = CLIENTS * per_client + CLIENTS
        tickets = _tickets(c, "", total)
        bodies = [_request(t) for t in tickets]
        warm, bodies = bodies[:CLIENTS], bodies[CLIENTS:]
        shares = [bodies[i::CLIENTS] for i in range(CLIENTS)]
        barrier = threading.Barrier(CLIENTS + 1)

        def client(share: list[bytes], warmup: bytes) -> int:
            # The load generator is kept light (stdlib http.client, one kept-alive
            # connection per client) so that the machine's two cores go to Central
            # and its database, as they would with clients on other machines.
            import http.client

            conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=60)
            headers = {"Content-Type": "application/json"}

            def post(body: bytes) -> None:
                conn.request("POST", "/api/v1/activations", body=body, headers=headers)
                response = conn.getresponse()
                payload = response.read()
                if response.status != 200:
                    raise RuntimeError(f"activation failed: {response.status} {payload[:200]!r}")

            post(warmup)
            barrier.wait()
            for body in share:
                post(body)
            conn.close()
            return len(share)

        with ThreadPoolExecutor(CLIENTS) as pool:
            futures = [pool.submit(client, shares[i], warm[i]) for i in range(CLIENTS)]
            barrier.wait()
            cpu0, start = srv.cpu_seconds(), time.perf_counter()
            done = sum(f.result() for f in futures)
            elapsed, cpu = time.perf_counter() - start, srv.cpu_seconds() - cpu0
    return {
        "activations": done,
        "seconds": round(elapsed, 3),
        "per_second": round(done / elapsed, 1),
        "server_cpu_ms_per_activation": round(cpu / done * 1000, 2),
        "server_busy": round(cpu / elapsed, 2),
    }


def inprocess_rate(work: Path, count: int) -> dict[str, Any]:
    """Central's own work for an activation on SQLite, without HTTP: the app called through
    ASGI in this process, one activation after the other (on SQLite the protocol runs on
    the event loop anyway). Only the calls are timed. An upper bound of what one Central
    process could answer, whatever its HTTP server."""
    from asgi_call import asgi_call
    from starlette.testclient import TestClient

    from licentia.central.app import create_app
    from licentia.central.settings import Settings

    work.mkdir(parents=True, exist_ok=True)
    settings = Settings(data_dir=work / "inprocess", admin_key=ADMIN_KEY, master_key=MASTER_KEY)
    app = create_app(settings)
    with TestClient(app) as c:
        tickets = _tickets(c, "/api/v1", count + 20)
        bodies = [_request(t) for t in tickets]
        for body in bodies[:20]:  # warm-up
            c.post("/api/v1/activations", content=body, headers={"content-type": "application/json"}).raise_for_status()

        async def one(body: bytes) -> None:
            status, _ = await asgi_call(app, "POST", "/api/v1/activations", body=body)
            if status != 200:
                raise RuntimeError(f"activation failed: {status}")

        async def run() -> float:
            start = time.perf_counter()
            for body in bodies[20:]:
                await one(body)
            return time.perf_counter() - start

        elapsed = c.portal.call(run)
    return {"activations": count, "seconds": round(elapsed, 3), "per_second": round(count / elapsed, 1)}


def raw_rate(database_url: str, ops_per_thread: int) -> dict[str, Any]:
    """One Ed25519 signature + one row insert + commit, 8 threads, same DB settings."""
    db = Database(database_url, pool_size=CLIENTS)  # Central's settings (SQLite: its background checkpoints)
    engine = db.engine
    meta = MetaData()
    table = Table(
        "bench_raw",
        meta,
        Column("id", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True),
        Column("n", Integer),
        Column("sig", LargeBinary),
    )
    meta.drop_all(engine)
    meta.create_all(engine)
    key = hazmat.Ed25519PrivateKey.generate()
    barrier = threading.Barrier(CLIENTS + 1)

    def worker(n: int) -> int:
        from sqlalchemy.orm import Session

        with Session(engine) as session:
            barrier.wait()
            for i in range(ops_per_thread):
                sig = hazmat.sign(key, f"{n}:{i}".encode())
                with write_tx(session):
                    session.execute(insert(table).values(n=n, sig=sig))
        return ops_per_thread

    with ThreadPoolExecutor(CLIENTS) as pool:
        futures = [pool.submit(worker, n) for n in range(CLIENTS)]
        barrier.wait()
        start, cpu0 = time.perf_counter(), time.process_time()
        done = sum(f.result() for f in futures)
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu0
    meta.drop_all(engine)
    db.dispose()
    return {
        "operations": done,
        "seconds": round(elapsed, 3),
        "per_second": round(done / elapsed, 1),
        "cpu_ms_per_operation": round(cpu / done * 1000, 3),  # this process's threads (SQLite runs in it)
        "busy": round(cpu / elapsed, 2),
    }


def crypto_ms(count: int = 2000) -> dict[str, float]:
    """The cryptography one activation performs, alone on one thread, in ms: verifying the
    request's signature, signing the license entry and the update, sealing the product key
    to the container (X25519 with a fresh key, HKDF, AES-GCM). Messages of an activation's
    sizes; the fastest of three runs of ``count``."""
    request = os.urandom(900)
    container = hazmat.Ed25519PrivateKey.generate()
    signature = hazmat.sign(container, request)
    firm = hazmat.Ed25519PrivateKey.generate()
    box = hazmat.raw_public(hazmat.X25519PrivateKey.generate().public_key())
    entry, update, product_key = os.urandom(700), os.urandom(1500), os.urandom(32)
    steps: dict[str, Callable[[], object]] = {
        "verify the request": lambda: hazmat.verify(container.public_key(), signature, request),
        "sign entry and update": lambda: (hazmat.sign(firm, entry), hazmat.sign(firm, update)),
        "seal the product key": lambda: hazmat.seal(box, product_key, b"bench"),
    }
    out = {}
    for name, step in steps.items():
        best = float("inf")
        for _ in range(3):
            start = time.perf_counter()
            for _ in range(count):
                step()
            best = min(best, (time.perf_counter() - start) / count)
        out[name] = round(best * 1000, 4)
    out["total"] = round(sum(out.values()), 4)
    return out


def _rounds(rounds: int, central: Any, raw: Any, note: str) -> dict[str, Any]:
    """Alternate Central and raw measurements; report the median of the per-round ratios."""
    import statistics

    pairs = []
    for i in range(rounds):
        c, r = central(i), raw(i)
        pairs.append((c, r, c["per_second"] / r["per_second"]))
    pairs.sort(key=lambda p: p[2])
    c, r, ratio = pairs[len(pairs) // 2]
    return {
        "central": c,
        "raw": r,
        "ratio": round(ratio, 3),
        "ratios": [round(p[2], 3) for p in pairs],
        "median_of": rounds,
        "note": note,
        "spread": round(statistics.pstdev(p[2] for p in pairs), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--per-client", type=int, default=120, help="activations per client and round (default 120)")
    parser.add_argument("--raw-ops", type=int, default=600, help="raw operations per thread and round (default 600)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds; the median ratio is reported (default 3)")
    args = parser.parse_args()

    import pgcluster

    work = Path(tempfile.mkdtemp(prefix="licentia-bench-central-"))
    results: dict[str, Any] = {"clients": CLIENTS, "target_ratio": TARGET, "backends": {}}
    try:
        results["backends"]["sqlite"] = _rounds(
            args.rounds,
            lambda i: central_rate(None, work / f"r{i}", args.per_client),
            lambda i: raw_rate(f"sqlite:///{work / f'raw{i}.db'}", args.raw_ops),
            "WAL + BEGIN IMMEDIATE for both; one Central worker",
        )
        alone = inprocess_rate(work / "alone", CLIENTS * args.per_client)
        raw = raw_rate(f"sqlite:///{work / 'raw-alone.db'}", args.raw_ops)
        results["sqlite_work_alone"] = {
            "central": alone,
            "raw": raw,
            "ratio": round(alone["per_second"] / raw["per_second"], 3),
            "note": "Central's own work without HTTP (ASGI in-process), then the raw floor",
        }
        if pgcluster.available():
            cluster = pgcluster.start(max_connections=200)
            try:
                variants = [
                    ("postgresql", 1, 2, "Central with 1 worker, protocol on 2 threads (the default)"),
                    (
                        "postgresql, protocol on the event loop",
                        1,
                        0,
                        "Central with 1 worker, LICENTIA_PROTOCOL_THREADS=0 (database on the same host)",
                    ),
                    ("postgresql, 2 workers", 2, 2, "Central with 2 workers (one per core), default threads"),
                ]
                for name, workers, threads, note in variants:
                    tag = f"{workers}{threads}"
                    results["backends"][name] = _rounds(
                        args.rounds,
                        lambda i, w=workers, t=threads, g=tag: central_rate(
                            cluster.create_database(f"bench_c{g}_{i}"),
                            work / f"p{g}{i}",
                            args.per_client,
                            workers=w,
                            protocol_threads=t,
                        ),
                        lambda i, g=tag: raw_rate(cluster.create_database(f"bench_r{g}_{i}"), args.raw_ops),
                        f"throwaway PostgreSQL 15 cluster (fsync off) for both; {note}",
                    )
            finally:
                cluster.stop()
        else:
            results["backends"]["postgresql"] = {"skipped": f"{pgcluster.WHAT} not available"}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    # what reaching the goal asks of one worker: its activations take at most 1 / (goal x
    # floor) of one core each, the HTTP server and the load generator's share included
    crypto = crypto_ms()
    sqlite = results["backends"]["sqlite"]
    budget = 1000 / (TARGET * sqlite["raw"]["per_second"])
    results["budget"] = {
        "sqlite_floor_per_second": sqlite["raw"]["per_second"],
        "sqlite_floor_cpu_ms_per_operation": sqlite["raw"]["cpu_ms_per_operation"],
        "sqlite_floor_busy_cores": sqlite["raw"]["busy"],
        "ms_of_one_core_per_activation_at_the_goal": round(budget, 3),
        "central_cpu_ms_per_activation": sqlite["central"]["server_cpu_ms_per_activation"],
        "central_busy_cores": sqlite["central"]["server_busy"],
        "crypto_ms_per_activation_alone": crypto,
    }

    print(
        "| backend | Central activations/s (8 clients) | raw sign+insert+commit/s (8 threads) | ratio "
        "| server CPU ms per activation |"
    )
    print("|---|---|---|---|---|")
    for name, r in results["backends"].items():
        if "skipped" in r:
            print(f"| {name} | skipped: {r['skipped']} | | | |")
        else:
            ok = "ok" if r["ratio"] >= TARGET else "BELOW TARGET"
            print(
                f"| {name} | {r['central']['per_second']} | {r['raw']['per_second']} | {r['ratio']} ({ok}; "
                f"rounds {', '.join(map(str, r['ratios']))}) | {r['central']['server_cpu_ms_per_activation']} |"
            )
    alone = results["sqlite_work_alone"]
    print(
        f"\nCentral's own work on SQLite without HTTP (in-process, one after the other): "
        f"{alone['central']['per_second']} activations/s, {alone['ratio']} x the raw floor measured right after "
        "(the most one Central process could reach, whatever its HTTP server)"
    )
    b = results["budget"]
    print(
        f"\nThe SQLite floor: {b['sqlite_floor_per_second']}/s on {b['sqlite_floor_busy_cores']} cores "
        f"({b['sqlite_floor_cpu_ms_per_operation']} ms of CPU per operation). At the goal of {TARGET} x, one "
        f"worker has {b['ms_of_one_core_per_activation_at_the_goal']} ms of one core per activation; Central took "
        f"{b['central_cpu_ms_per_activation']} ms (busy {b['central_busy_cores']} cores), of which the "
        f"cryptography alone is {b['crypto_ms_per_activation_alone']['total']} ms "
        f"({', '.join(f'{k} {v}' for k, v in b['crypto_ms_per_activation_alone'].items() if k != 'total')})"
    )
    print()
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
