"""Benchmark: the network license server on loopback.

- access + release pairs (two requests: POST /api/v1/leases, DELETE /api/v1/leases/{id})
  per second with 1, 16 and 64 concurrent clients, with p50 and p99 pair latency;
- at 64 clients, requests per second against a hello-world endpoint (GET /hello) on the
  same server stack (FastAPI + uvicorn with uvloop and httptools, the same process);
  target: access+release requests/s >= 0.5 x hello-world requests/s;
- memory (RSS of the server process) for 10,000 active leases;
- the floor (one verify, one signature, one product-key seal, one commit, one after the
  other) and the server's own work without HTTP (its ASGI app called in this process), each
  pair rate over the floor.

The server is `licentia server start` in its own process; the load generator is a light
asyncio client (raw HTTP/1.1 on kept-alive connections, uvloop when available) in a
second process, so that each gets one of the machine's cores. Every access signs a
lease with the server container's key, seals the product key to the session, and
commits its lease and usage event (hash-chained, the head signed) before answering.

    .venv/bin/python bench/bench_server.py [--seconds 3] [--leases 10000]

Prints a markdown table and a JSON summary.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))

FLOOR_TARGET = 0.5
TARGET = 0.5
LEVELS = (1, 16, 64)
MEMORY_LEASES = 10_000


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ---------------------------------------------------------------- the load generator (its own process)


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


def _post(path: str, body: bytes) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body


_HOLDER: Any = None


def _holder() -> Any:
    """The load generator's session signing key (as the runtime's, one per process)."""
    global _HOLDER
    if _HOLDER is None:
        from licentia.core import hazmat

        _HOLDER = hazmat.Ed25519PrivateKey.generate()
    return _HOLDER


def _access_body(session: str, cid: str) -> bytes:
    # what the runtime sends for a first access (a fresh client lease id: "reconnect": false),
    # signed with the session's Ed25519 key as the runtime signs it
    from licentia.core import grants, hazmat
    from licentia.core.encoding import b64e

    key = _holder()
    body = {
        "firm_code": 10101,
        "product_code": 1,
        "feature_code": 0,
        "units": 0,
        "release_date": None,
        "mode": "user",
        "client_lease_id": cid,
        "reconnect": False,
        "session": session,
        "holder": b64e(hazmat.raw_public(key.public_key())),
        "nonce": cid,
        "user": "bench",
        "host": "bench-host",
        "pid": 1,
        "groups": [],
    }
    body["proof"] = grants.prove(key, grants.LEASE_REQUEST, grants.request_proof_payload(body))
    return json.dumps(body).encode()


def _release_query(lease_id: str, cid: str) -> str:
    from licentia.core import grants

    proof = grants.prove(_holder(), grants.LEASE_RELEASE, grants.lease_proof_payload(lease_id, 1))
    return f"client={cid}&counter=1&proof={proof}"


async def _connect(port: int, n: int) -> list[Conn]:
    conns = []
    for _ in range(n):
        r, w = await asyncio.open_connection("127.0.0.1", port)
        conns.append(Conn(r, w))
    return conns


async def _pairs(port: int, clients: int, seconds: float, session: str) -> dict[str, Any]:
    conns = await _connect(port, clients)
    latencies: list[float] = []
    stop = time.perf_counter() + 0.3 + seconds
    measure_from = time.perf_counter() + 0.3  # warm-up
    done = every = 0
    cpu0 = time.process_time()

    async def worker(k: int, conn: Conn) -> None:
        nonlocal done, every
        i = 0
        while True:
            t0 = time.perf_counter()
            if t0 >= stop:
                return
            cid = f"b{k}-{i}"
            i += 1
            status, body = await conn.call(_post("/api/v1/leases", _access_body(session, cid)))
            if status != 200:
                raise RuntimeError(f"access failed: {status} {body[:200]!r}")
            lease_id = json.loads(body)["lease_id"]
            query = _release_query(lease_id, cid)
            raw = f"DELETE /api/v1/leases/{lease_id}?{query} HTTP/1.1\r\nHost: bench\r\n\r\n".encode()
            status, body = await conn.call(raw)
            if status != 200:
                raise RuntimeError(f"release failed: {status} {body[:200]!r}")
            t1 = time.perf_counter()
            every += 1
            if t0 >= measure_from:
                latencies.append(t1 - t0)
                done += 1

    await asyncio.gather(*(worker(k, c) for k, c in enumerate(conns)))
    cpu = time.process_time() - cpu0
    for c in conns:
        c.writer.close()
    latencies.sort()
    return {
        "clients": clients,
        "pairs": done,
        "pairs_per_second": round(done / seconds, 1),
        "requests_per_second": round(2 * done / seconds, 1),
        "p50_ms": round(statistics.median(latencies) * 1e3, 2),
        "p99_ms": round(latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1e3, 2),
        "pairs_with_warmup": every,  # what the CPU figures divide by
        "load_cpu_us_per_pair": round(cpu / every * 1e6),  # the load generator's own CPU (signing, HTTP)
    }


async def _hello(port: int, clients: int, seconds: float, path: str = "/hello") -> dict[str, Any]:
    conns = await _connect(port, clients)
    raw = f"GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n".encode()
    stop = time.perf_counter() + 0.3 + seconds
    measure_from = time.perf_counter() + 0.3
    done = 0

    async def worker(conn: Conn) -> None:
        nonlocal done
        while True:
            t0 = time.perf_counter()
            if t0 >= stop:
                return
            status, _ = await conn.call(raw)
            if status != 200:
                raise RuntimeError("hello failed")
            if t0 >= measure_from:
                done += 1

    await asyncio.gather(*(worker(c) for c in conns))
    for c in conns:
        c.writer.close()
    return {"clients": clients, "requests": done, "requests_per_second": round(done / seconds, 1)}


async def _hold(port: int, count: int, session: str) -> int:
    conns = await _connect(port, 32)
    made = 0

    async def worker(k: int, conn: Conn) -> None:
        nonlocal made
        for i in range(k, count, len(conns)):
            status, body = await conn.call(_post("/api/v1/leases", _access_body(session, f"hold-{i}")))
            if status != 200:
                raise RuntimeError(f"access failed: {status} {body[:200]!r}")
            made += 1

    await asyncio.gather(*(worker(k, c) for k, c in enumerate(conns)))
    for c in conns:
        c.writer.close()
    return made


def load_main(port: int, task: str, clients: int, seconds: float) -> None:
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    from licentia.core import hazmat
    from licentia.core.encoding import b64e

    session = b64e(hazmat.raw_public(hazmat.X25519PrivateKey.generate().public_key()))
    if task == "pairs":
        out: Any = asyncio.run(_pairs(port, clients, seconds, session))
    elif task == "hello":
        out = asyncio.run(_hello(port, clients, seconds))
    elif task == "hello-asgi":
        out = asyncio.run(_hello(port, clients, seconds, "/hello-asgi"))
    else:
        t0 = time.perf_counter()
        made = asyncio.run(_hold(port, clients, session))
        out = {"leases": made, "seconds": round(time.perf_counter() - t0, 2)}
    print(json.dumps(out))


def run_load(port: int, task: str, clients: int, seconds: float) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LICENTIA_")}
    env["PYTHONPATH"] = str(ROOT / "src")
    out = subprocess.run(
        [sys.executable, __file__, "--load", task, str(port), str(clients), str(seconds)],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    if out.returncode != 0:
        raise RuntimeError(out.stderr)
    return json.loads(out.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------- the floor


def floor_rate(seconds: float) -> dict[str, Any]:
    """The work a grant cannot avoid, one after the other in one process: one Ed25519 verify
    of the client's proof, one Ed25519 signature (the lease), one product-key seal to the
    session, one commit of a row (WAL, synchronous=NORMAL, as the seat store)."""
    import sqlite3

    from licentia.core import grants, hazmat
    from licentia.core.encoding import b64e

    holder = hazmat.Ed25519PrivateKey.generate()
    holder_pub = holder.public_key()
    server = hazmat.Ed25519PrivateKey.generate()
    session = hazmat.X25519PrivateKey.generate()
    session_pub = b64e(hazmat.raw_public(session.public_key()))
    message = b"licentia/lease-request\n" + b"x" * 300
    signature = hazmat.sign(holder, message)
    product_key = os.urandom(32)
    work = Path(tempfile.mkdtemp(prefix="licentia-bench-floor-"))
    try:
        db = sqlite3.connect(work / "floor.db", isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, body BLOB)")
        done = 0
        start = time.perf_counter()
        stop = start + seconds
        while time.perf_counter() < stop:
            assert hazmat.verify(holder_pub, signature, message)
            lease = hazmat.sign(server, message)
            grants.seal_lease_key(session_pub, "130-AAAA-BBBB-CCCC", "d" * 64, 1, product_key)
            db.execute("BEGIN IMMEDIATE")
            db.execute("INSERT INTO t (body) VALUES (?)", (lease,))
            db.execute("COMMIT")
            done += 1
        elapsed = time.perf_counter() - start
        db.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {"grants": done, "seconds": round(elapsed, 3), "per_second": round(done / elapsed, 1)}


# ---------------------------------------------------------------- the server


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _server_data(data: Path, quantity: int) -> None:
    """A license server's data folder: its machine container, holding a license of
    ``quantity`` seats for 10101:1 from a test firm."""
    from licentia.container import MachineContainer, read_system_traits
    from licentia.core.license import Options
    from tests.factory import Firm

    now = int(time.time())
    firm = Firm()
    c = MachineContainer.create(data, "medium", read_system_traits(), now)
    req = c.make_request("activate", now, ticket="00000-00000-00000-00000-00000")
    c.apply_update(firm.grant(req, now=now, options=Options(quantity=quantity)), now)


def inprocess_rate(seconds: float, clients: int = 16) -> dict[str, Any]:
    """The server's own work for access + release pairs, without HTTP: the client API's
    ASGI app called in this process (its group commits, proofs, seat engine, answers), in
    rounds of ``clients`` accesses and then their ``clients`` releases, each round's
    requests at once. Only the ASGI calls are timed; the client's signing of its releases
    is not. An upper bound of what one server process can answer, whatever its HTTP."""
    from asgi_call import asgi_call

    from licentia.core import hazmat
    from licentia.core.encoding import b64e
    from licentia.server import Settings, create_app

    work = Path(tempfile.mkdtemp(prefix="licentia-bench-inprocess-"))
    try:
        data = work / "data"
        _server_data(data, 1_000_000)
        api = create_app(Settings(data_dir=data, discovery=False, lease_ttl=600))
        session = b64e(hazmat.raw_public(hazmat.X25519PrivateKey.generate().public_key()))

        async def call(method: str, path: str, query: bytes = b"", body: bytes = b"") -> bytes:
            status, answer = await asgi_call(api, method, path, query=query, body=body)
            if status != 200:
                raise RuntimeError(f"{method} {path}: {status} {answer[:200]!r}")
            return answer

        async def run() -> dict[str, Any]:
            timed, pairs, n = 0.0, 0, 0
            stop = time.perf_counter() + 0.3 + seconds
            measure_from = time.perf_counter() + 0.3
            while time.perf_counter() < stop:
                cids = [f"p{n + k}" for k in range(clients)]
                n += clients
                bodies = [_access_body(session, cid) for cid in cids]
                t0 = time.perf_counter()
                answers = await asyncio.gather(*(call("POST", "/api/v1/leases", body=b) for b in bodies))
                t1 = time.perf_counter()
                ids = [json.loads(a)["lease_id"] for a in answers]
                queries = [_release_query(lid, cid).encode() for lid, cid in zip(ids, cids, strict=True)]
                t2 = time.perf_counter()
                await asyncio.gather(
                    *(call("DELETE", f"/api/v1/leases/{lid}", q) for lid, q in zip(ids, queries, strict=True))
                )
                t3 = time.perf_counter()
                if t0 >= measure_from:
                    timed += (t1 - t0) + (t3 - t2)
                    pairs += clients
            return {"pairs": pairs, "seconds": round(timed, 3), "pairs_per_second": round(pairs / timed, 1)}

        async def with_lifespan() -> dict[str, Any]:
            async with api.app.router.lifespan_context(api.app):
                return await run()

        try:
            import uvloop

            return uvloop.run(with_lifespan())
        except ImportError:
            return asyncio.run(with_lifespan())
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _start_server(work: Path, quantity: int) -> tuple[subprocess.Popen[bytes], int, Path]:
    """``licentia server start`` on a free port of 127.0.0.1, its data in ``work`` (a license
    of ``quantity`` seats), once it answers: (process, port, data folder)."""
    import httpx

    data = work / "data"
    _server_data(data, quantity)
    config = work / "server.toml"
    config.write_text("[server]\ndiscovery = false\nlease_ttl = 600\n")
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LICENTIA_")}
    env["PYTHONPATH"] = str(ROOT / "src")
    with open(work / "server.log", "wb") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "licentia",
                "server",
                "start",
                "--data",
                str(data),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--config",
                str(config),
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 60
    while True:
        if proc.poll() is not None:
            raise RuntimeError((work / "server.log").read_text())
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return proc, port, data
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError("the license server did not start")
        time.sleep(0.1)


def cpu_seconds(pid: int) -> float:
    """User + system CPU of one process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pairs_with_cpu(proc: subprocess.Popen[bytes], port: int, clients: int, seconds: float) -> dict[str, Any]:
    """``run_load`` pairs, with the server's CPU per pair beside the load generator's."""
    before = cpu_seconds(proc.pid)
    out = run_load(port, "pairs", clients, seconds)
    out["server_cpu_us_per_pair"] = round((cpu_seconds(proc.pid) - before) / out["pairs_with_warmup"] * 1e6)
    return out


def two_servers(work: Path, seconds: float, quantity: int, rounds: int = 3) -> dict[str, Any]:
    """Two independent license servers, each with its own data and its own load generator
    of 32 clients, measured at once: the sum of their pairs/s is what a license server
    spread over two processes could reach at best on this machine (no state shared between
    them, so none of the coordination such a server would need). Median of ``rounds``."""
    from concurrent.futures import ThreadPoolExecutor

    started = [_start_server(work / f"two-{n}", quantity) for n in range(2)]
    try:
        sums = []
        with ThreadPoolExecutor(2) as pool:
            for _ in range(rounds):
                outs = list(pool.map(lambda n: run_load(started[n][1], "pairs", 32, seconds), range(2)))
                sums.append(round(sum(o["pairs_per_second"] for o in outs), 1))
        sums.sort()
        return {"servers": 2, "clients_each": 32, "pairs_per_second": sums[len(sums) // 2], "rounds": sums}
    finally:
        for proc, _, _ in started:
            proc.terminate()
            proc.wait(20)


def main() -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="measured seconds per level (default 3)")
    parser.add_argument("--leases", type=int, default=MEMORY_LEASES, help="active leases for the memory figure")
    parser.add_argument(
        "--two-servers",
        action="store_true",
        help="also measure two independent servers at once (the most two processes could reach here)",
    )
    args = parser.parse_args()

    import httpx

    work = Path(tempfile.mkdtemp(prefix="licentia-bench-server-"))
    proc = None
    bound: dict[str, Any] | None = None
    try:
        proc, port, data = _start_server(work / "one", args.leases + 1000)
        levels = [run_load(port, "pairs", n, args.seconds) for n in LEVELS[:-1]]
        # the machine is shared and noisy: at 64 clients, alternate the two measurements
        # three times and keep the median run of each
        runs64, hellos = [], []
        for _ in range(3):
            runs64.append(pairs_with_cpu(proc, port, LEVELS[-1], args.seconds))
            hellos.append(run_load(port, "hello", LEVELS[-1], args.seconds))
        levels.append(sorted(runs64, key=lambda r: r["requests_per_second"])[1])
        hello = sorted(hellos, key=lambda r: r["requests_per_second"])[1]
        hello_raw = run_load(port, "hello-asgi", 64, args.seconds)
        floor = floor_rate(args.seconds)
        alone = inprocess_rate(args.seconds)
        ratio_alone = round(alone["pairs_per_second"] / floor["per_second"], 3)
        at64 = levels[-1]
        ratio = round(at64["requests_per_second"] / hello["requests_per_second"], 3)
        ratio_raw = round(at64["requests_per_second"] / hello_raw["requests_per_second"], 3)
        ratio_floor = round(at64["pairs_per_second"] / floor["per_second"], 3)

        def db_size() -> int:
            return sum(p.stat().st_size for p in data.glob("seats.db*"))

        before, db_before = rss_kib(proc.pid), db_size()
        held = run_load(port, "hold", args.leases, 0)
        after, db_after = rss_kib(proc.pid), db_size()
        answer = httpx.get(f"http://127.0.0.1:{port}/api/v1/licenses", timeout=30)
        if answer.status_code != 200:
            log = (work / "one" / "server.log").read_text()[-3000:]
            raise RuntimeError(f"{answer.status_code} {answer.text[:300]} {log}")
        status = answer.json()["licenses"][0]
        memory = {
            "active_leases": status["in_use"],
            "created_in_s": held["seconds"],
            "rss_before_mib": round(before / 1024, 1),
            "rss_after_mib": round(after / 1024, 1),
            "rss_growth_mib": round((after - before) / 1024, 1),
            "bytes_per_lease": round((after - before) * 1024 / max(1, status["in_use"])),
            "database_growth_mib": round((db_after - db_before) / 2**20, 1),
            "database_bytes_per_lease": round((db_after - db_before) / max(1, status["in_use"])),
        }
        proc.terminate()
        proc.wait(20)
        proc = None
        if args.two_servers:
            bound = two_servers(work, args.seconds, 1_000_000)
            bound["over_floor"] = round(bound["pairs_per_second"] / floor["per_second"], 3)
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(work, ignore_errors=True)
    result = {
        "levels": levels,
        "hello_at_64": hello,
        "hello_raw_asgi_at_64": hello_raw,
        "ratio_at_64": ratio,
        "ratio_at_64_vs_raw_asgi": ratio_raw,
        "target_ratio": TARGET,
        "floor": floor,
        "ratio_at_64_vs_floor": ratio_floor,
        "server_work_alone": alone,
        "ratio_server_work_alone_vs_floor": ratio_alone,
        "target_floor_ratio": FLOOR_TARGET,
        "memory": memory,
        "two_servers": bound,
    }
    print("| clients | access+release pairs/s | requests/s | p50 pair ms | p99 pair ms |")
    print("|---|---|---|---|---|")
    for lv in levels:
        print(
            f"| {lv['clients']} | {lv['pairs_per_second']} | {lv['requests_per_second']} | {lv['p50_ms']} | "
            f"{lv['p99_ms']} |"
        )
    print(f"| 64, GET /hello (FastAPI route) | | {hello['requests_per_second']} | | |")
    print(f"| 64, GET /hello-asgi (raw ASGI) | | {hello_raw['requests_per_second']} | | |")
    ok = "ok" if ratio >= TARGET else "BELOW TARGET"
    print(
        f"\nratio at 64 clients (access+release requests/s over hello-world requests/s): {ratio} ({ok}; "
        f"target >= {TARGET}); against the raw ASGI hello world: {ratio_raw}"
    )
    ok_floor = "ok" if ratio_floor >= FLOOR_TARGET else "BELOW GOAL"
    print(
        f"the floor (verify + sign + seal + commit, one process): {floor['per_second']} grants/s; access+release "
        f"pairs at 64 clients over it: {ratio_floor} ({ok_floor}; goal >= {FLOOR_TARGET})"
    )
    print(
        f"the server's own work without HTTP (in-process, 16 at once): {alone['pairs_per_second']} pairs/s, "
        f"{ratio_alone} x the floor: the most one server process could reach, whatever its HTTP"
    )
    print(
        f"CPU per pair at 64 clients: the server {at64['server_cpu_us_per_pair']} us, the load generator "
        f"{at64['load_cpu_us_per_pair']} us (both on this machine's cores)"
    )
    if bound is not None:
        print(
            f"two independent servers at once, 32 clients each: {bound['pairs_per_second']} pairs/s, "
            f"{bound['over_floor']} x the floor: the most two server processes could reach here"
        )
    print(
        f"memory for {memory['active_leases']} active leases: RSS {memory['rss_before_mib']} -> "
        f"{memory['rss_after_mib']} MiB (+{memory['rss_growth_mib']} MiB, {memory['bytes_per_lease']} B/lease); "
        f"database +{memory['database_growth_mib']} MiB ({memory['database_bytes_per_lease']} B/lease, "
        f"with its usage event)\n"
    )
    print(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--load":
        load_main(int(sys.argv[3]), sys.argv[2], int(sys.argv[4]), float(sys.argv[5]))
    else:
        main()
