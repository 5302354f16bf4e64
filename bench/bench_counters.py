"""Benchmark: what counters that answer to Central cost.

1. A cached local ``access()`` + ``release()`` of a license whose entry carries a report
   interval (the reporter enabled, in its steady state: Central answered within the
   interval) against the same license without one, in short alternating blocks in one
   process; the difference is the median of the paired block ratios (target: within 5 %).
2. Against a real Central process on 127.0.0.1 (SQLite, and PostgreSQL when available),
   8 concurrent clients, one run: activations/s, usage reports/s (each extends its
   container's chain and reports counters: answered with a signed acknowledgement), and
   online-metering consumptions/s (each a container-signed call, counted under a row lock
   with its idempotency key), each compared with the activation rate.

    .venv/bin/python bench/bench_counters.py [--per-client 60] [--json]
"""

from __future__ import annotations

import argparse
import http.client
import json
import shutil
import statistics
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
from bench_central import ADMIN_KEY, CLIENTS, Server  # noqa: E402

from licentia.core import codes, exchange, hazmat  # noqa: E402
from licentia.core.documents import document_digest, sign_document  # noqa: E402
from licentia.core.license import Options  # noqa: E402

FIRM = 90919
TARGET_REPORTER = 0.05


# ---------------------------------------------------------------- 1. the hot path


def access_cost(rounds: int, calls: int) -> dict[str, Any]:
    from licentia.container import MachineContainer
    from licentia.runtime import Runtime
    from tests.factory import T0, Firm, machine_traits

    work = Path(tempfile.mkdtemp(prefix="licentia-bench-counters-"))
    try:
        firm = Firm()
        times: dict[str, list[float]] = {"without": [], "with": []}
        runtimes = {}
        for name, every in (("without", None), ("with", 86400)):
            home = work / name
            c = MachineContainer.create(home, "medium", machine_traits(), T0)
            req = c.make_request("activate", T0, ticket="00000-00000-00000-00000-00000")
            c.apply_update(
                firm.grant(req, now=T0, options=Options(units=10**9, report_interval=every)),
                T0,
                central="http://127.0.0.1:9",
            )  # never contacted: the interval has not run out
            rt = Runtime(home, clock=lambda: T0 + 60, traits=machine_traits)
            rt.trust(firm.code, firm.pem)
            rt.access(firm.code, 1).release()
            runtimes[name] = rt
        ratios = []
        for _ in range(rounds):  # short alternating blocks, paired: drift of a noisy machine cancels
            block = {}
            for name, rt in runtimes.items():
                access = rt.access
                start = time.perf_counter_ns()
                for _ in range(calls):
                    access(firm.code, 1).release()
                block[name] = (time.perf_counter_ns() - start) / calls
                times[name].append(block[name])
            ratios.append(block["with"] / block["without"])
        sent = runtimes["with"].reporter().sent if runtimes["with"]._reporter else 0
    finally:
        shutil.rmtree(work, ignore_errors=True)
    without, with_ = statistics.median(times["without"]), statistics.median(times["with"])
    return {
        "ns_without_reporter": round(without),
        "ns_with_reporter": round(with_),
        "difference": round(statistics.median(ratios) - 1, 4),  # median of the paired block ratios
        "rounds": rounds,
        "calls_per_round": calls,
        "reports_sent": sent,
    }


# ---------------------------------------------------------------- 2. Central


class Box:
    """A container on the wire: keys, its entry, its chain."""

    def __init__(self) -> None:
        self.serial = codes.new_serial()
        self.sign = hazmat.Ed25519PrivateKey.generate()
        self.box = hazmat.X25519PrivateKey.generate()
        self.seq = 0
        self.gen = 0
        self.chain: list[str] = []
        self.digest = ""
        self.units = 0

    def request(self, action: str, *, ticket: str | None = None, firm: int | None = None) -> dict[str, Any]:
        slots = {}
        if self.digest:
            self.gen += 1
            counters = {self.digest: exchange.Counter(self.units, None)}
            slots[FIRM] = exchange.SlotPosition(self.seq, int(time.time()), self.gen, tuple(self.chain), counters)
        doc = exchange.build_request(
            serial=self.serial,
            level="medium",
            sign_key=self.sign,
            box_pub=hazmat.raw_public(self.box.public_key()),
            slots=slots,
            action=action,
            now=int(time.time()),
            ticket=ticket,
            firm_code=firm,
        )
        self.chain = [document_digest(doc), *self.chain][: exchange.CHAIN_DEPTH]
        return doc

    def consume(self) -> dict[str, Any]:
        payload = {
            "serial": self.serial,
            "firm_code": FIRM,
            "license_id": 0,
            "entry": self.digest,
            "units": 1,
            "key": uuid.uuid4().hex,
            "created": int(time.time()),
        }
        return sign_document("consume", payload, self.sign)


def _drive(port: int, per_client: list[list[bytes]], path: str, expect: str) -> tuple[int, float]:
    barrier = threading.Barrier(CLIENTS + 1)

    def client(bodies: list[bytes]) -> int:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        headers = {"Content-Type": "application/json"}
        barrier.wait()
        for body in bodies:
            conn.request("POST", path, body=body, headers=headers)
            response = conn.getresponse()
            payload = response.read()
            if response.status != 200 or expect.encode() not in payload:
                raise RuntimeError(f"{path}: {response.status} {payload[:200]!r}")
        conn.close()
        return len(bodies)

    with ThreadPoolExecutor(CLIENTS) as pool:
        futures = [pool.submit(client, share) for share in per_client]
        barrier.wait()
        start = time.perf_counter()
        done = sum(f.result() for f in futures)
        return done, time.perf_counter() - start


def central_rates(database_url: str | None, work: Path, per_client: int) -> dict[str, Any]:
    work.mkdir(parents=True, exist_ok=True)
    data = work / f"central-{'pg' if database_url else 'sqlite'}"
    with Server(data, database_url) as srv, httpx.Client(base_url=srv.url + "/api/v1", timeout=60) as c:
        admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
        c.post("/firms", json={"code": FIRM, "name": "Bench"}, headers=admin).raise_for_status()
        item = c.post(
            "/items",
            json={
                "firm_code": FIRM,
                "name": "Metered",
                "product_code": 1,
                "options": {"units": 10**9, "metering": "online"},
            },
            headers=admin,
        )
        item.raise_for_status()
        cust = c.post("/customers", json={"firm_code": FIRM, "name": "Bench"}, headers=admin).json()["number"]
        total = CLIENTS * (per_client + 1)
        order = c.post(
            "/tickets",
            json={
                "firm_code": FIRM,
                "customer": cust,
                "items": [item.json()["item_id"]],
                "quantity_of_licenses": total,
            },
            headers=admin,
        ).json()
        tickets = [t["ticket"] for t in order["tickets"]]
        # activations: one new container each (the first CLIENTS stay for reports and consumptions)
        boxes = [Box() for _ in tickets]
        bodies = [json.dumps(b.request("activate", ticket=t)).encode() for b, t in zip(boxes, tickets, strict=True)]
        keep, rest = bodies[:CLIENTS], bodies[CLIENTS:]
        for box, body in zip(boxes[:CLIENTS], keep, strict=True):
            update = exchange.verify_update(c.post("/activations", content=body).json())
            box.seq, box.digest = update.seq, update.entries[0].digest
        done, secs = _drive(srv.port, [rest[i::CLIENTS] for i in range(CLIENTS)], "/api/v1/activations", '"update"')
        rates = {"activations": round(done / secs, 1)}
        # usage reports: each client's container reports per_client times, its counters growing
        shares = []
        for box in boxes[:CLIENTS]:
            share = []
            for _ in range(per_client):
                box.units += 1
                share.append(json.dumps(box.request("report", firm=FIRM)).encode())
            shares.append(share)
        done, secs = _drive(srv.port, shares, "/api/v1/reports", '"report-ack"')
        rates["reports"] = round(done / secs, 1)
        shares = [[json.dumps(box.consume()).encode() for _ in range(per_client)] for box in boxes[:CLIENTS]]
        done, secs = _drive(srv.port, shares, "/api/v1/consumptions", '"consumption"')
        rates["consumptions"] = round(done / secs, 1)
    rates["reports_vs_activations"] = round(rates["reports"] / rates["activations"], 2)
    rates["consumptions_vs_activations"] = round(rates["consumptions"] / rates["activations"], 2)
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--per-client", type=int, default=60, help="calls per client and kind (default 60)")
    parser.add_argument("--rounds", type=int, default=400, help="alternating access blocks (default 400)")
    parser.add_argument("--calls", type=int, default=500, help="accesses per block (default 500)")
    args = parser.parse_args()

    import pgcluster

    results: dict[str, Any] = {"access": access_cost(args.rounds, args.calls), "central": {}}
    work = Path(tempfile.mkdtemp(prefix="licentia-bench-counters-"))
    try:
        results["central"]["sqlite"] = central_rates(None, work / "s", args.per_client)
        if pgcluster.available():
            cluster = pgcluster.start(max_connections=200)
            try:
                results["central"]["postgresql"] = central_rates(
                    cluster.create_database("bench_counters"), work / "p", args.per_client
                )
            finally:
                cluster.stop()
        else:
            results["central"]["postgresql"] = {"skipped": f"{pgcluster.WHAT} not available"}
    finally:
        shutil.rmtree(work, ignore_errors=True)

    a = results["access"]
    ok = "ok" if abs(a["difference"]) <= TARGET_REPORTER else "ABOVE TARGET"
    print("| cached access() + release() | ns |")
    print("|---|---|")
    print(f"| without a report interval | {a['ns_without_reporter']} |")
    print(f"| with the reporter enabled | {a['ns_with_reporter']} ({a['difference']:+.1%}, {ok}) |")
    print()
    print("| backend | activations/s | usage reports/s | vs activations | online consumptions/s | vs activations |")
    print("|---|---|---|---|---|---|")
    for name, r in results["central"].items():
        if "skipped" in r:
            print(f"| {name} | skipped: {r['skipped']} | | | | |")
        else:
            print(
                f"| {name} | {r['activations']} | {r['reports']} | {r['reports_vs_activations']} | "
                f"{r['consumptions']} | {r['consumptions_vs_activations']} |"
            )
    print()
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
