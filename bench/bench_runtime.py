"""Runtime benchmarks: cached access vs one Ed25519 verify; first access; import time.

Run: .venv/bin/python bench/bench_runtime.py  (or `make bench`). Prints JSON, with the
per-step breakdown of a cached access under "cached_access_steps_ns".

``--profile`` prints only the breakdown (quicker), and next to it what a full search costs
and what the cached access skips: each step timed alone, with the objects of a real
cached access, in loops of its own (a timer around each step would cost more than most
steps); "unaccounted" is the measured total less the steps.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import timeit
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))

from licentia.container import MachineContainer, read_system_traits  # noqa: E402
from licentia.core import hazmat  # noqa: E402
from licentia.core.documents import signing_message  # noqa: E402
from licentia.core.encoding import b64d  # noqa: E402
from licentia.core.license import AccessRequest, Options, evaluate  # noqa: E402
from licentia.runtime import Handle, Runtime, system_clock  # noqa: E402
from tests.factory import Firm  # noqa: E402

FIRST_ACCESS = r"""
import sys, time
t0 = time.perf_counter()
import licentia
t1 = time.perf_counter()
licentia.trust(10101, sys.argv[1])
h = licentia.access(10101, 1)
h.release()
t2 = time.perf_counter()
print(f"{t1 - t0} {t2 - t1}")
"""


def best_per_op(fn, n: int, repeat: int = 7) -> float:
    """Median over ``repeat`` runs of the time per call of ``fn`` called ``n`` times."""
    runs = []
    for _ in range(repeat):
        t = time.perf_counter()
        for _ in range(n):
            fn()
        runs.append((time.perf_counter() - t) / n)
    return statistics.median(runs)


def per_op(stmts: dict[str, str], names: dict, n: int, repeat: int = 15) -> dict[str, float]:
    """Nanoseconds per run of each statement (in timeit's loop, no call around it): the
    fastest of ``repeat`` rounds, the statements taking turns in each round, so that a busy
    moment of the machine does not land on one step only."""
    timers = {name: timeit.Timer(stmt, globals=names) for name, stmt in stmts.items()}
    best = dict.fromkeys(stmts, float("inf"))
    for _ in range(repeat):
        for name, timer in timers.items():
            best[name] = min(best[name], timer.timeit(number=n) / n * 1e9)
    return best


class _Stub:
    """A method called as Runtime.access is, doing nothing: the cost of the call itself."""

    def access(
        self,
        firm_code,
        product_code,
        feature_code=0,
        *,
        units=0,
        firm_key=None,
        release_date=None,
        mode="user",
        on_lease_lost=None,
        grace=0,
    ):
        pass


def cached_steps(rt: Runtime, firm_code: int, n: int = 20_000) -> dict:
    """Per-step breakdown (ns) of a cached access() + release(), as Runtime.access runs them."""
    from time import monotonic_ns

    key = (firm_code, 1, 0, None, "user")
    hot = rt._hits[key]
    handle = Handle._of(hot.granted)
    names = {
        "rt": rt,
        "hits": rt._hits,
        "hot": hot,
        "watch": hot.watch,
        "now": rt.clock(),
        "code": firm_code,
        "Handle": Handle,
        "new": object.__new__,
        "granted": hot.granted,
        "handle": handle,
        "monotonic_ns": monotonic_ns,
        "_time": time.time,
        "system_clock": system_clock,
        "stub": _Stub(),
        "units": 0,
        "firm_key": None,
        "release_date": None,
    }
    stmts = {
        "call: rt.access(code, 1), nothing done": "stub.access(code, 1)",
        "argument checks, cache key, dict lookup": (
            "units == 0 and firm_key is None and (release_date is None)"
            " and hits.get((code, 1, 0, release_date, 'user'))"
        ),
        "clock: time.time() for the system clock": "_time() if rt.clock is system_clock else rt.clock()",
        "time window": "hot.since <= now < hot.until",
        "freshness: monotonic clock, due, version": (
            "monotonic_ns() >= watch.due; watch.version == hot.version and not hot.before"
        ),
        "a new Handle on the cached grant": "h = new(Handle); h._g = granted; h._released = False",
        "release()": "handle.release()",
        "total": "rt.access(code, 1).release()",
    }
    steps = per_op(stmts, names, n)
    total = steps.pop("total")
    out = {name: round(ns) for name, ns in steps.items()}
    out["unaccounted"] = round(total - sum(steps.values()))
    out["total"] = round(total)
    return out


def full_path_steps(rt: Runtime, container: MachineContainer, firm_code: int, n: int = 2_000) -> dict:
    """What a full search costs, and the steps of it a cached access skips (ns)."""
    slot = container.slots()[firm_code]
    (entry,), _ = rt.verified_entries(container, slot, rt.trusted(firm_code))
    request = AccessRequest(firm_code, 1)
    now = rt.clock()
    names = {
        "rt": rt,
        "container": container,
        "path": container._state_str,
        "os": os,
        "slot": slot,
        "entry": entry,
        "request": request,
        "keys": rt.trusted(firm_code),
        "now": now,
        "evaluate": evaluate,
        "state": slot.license_state(entry),
        "Handle": Handle,
    }
    stmts = {
        "os.stat of the state file": "os.stat(path)",
        "slot.license_state()": "slot.license_state(entry)",
        "evaluate()": "evaluate(entry, state, request, now, slot.vclock)",
        "Handle() with all its fields": "Handle(entry, container, request, None, None)",
        "full search + release, total": "rt._access(request, keys, False).release()",
    }
    return {name: round(ns) for name, ns in per_op(stmts, names, n).items()}


def setup(tmp: str) -> tuple[Runtime, MachineContainer, Firm, Path, Path]:
    now = int(time.time())
    home = Path(tmp) / "home"
    firm = Firm()
    c = MachineContainer.create(home, "medium", read_system_traits(), now)
    req = c.make_request("activate", now, ticket="00000-00000-00000-00000-00000")
    c.apply_update(firm.grant(req, now=now, options=Options(expires=now + 86400 * 365)), now)
    pem = Path(tmp) / "firm.pem"
    pem.write_text(firm.pem)
    rt = Runtime(home)
    rt.trust(firm.code, pem)
    rt.access(firm.code, 1).release()
    rt.access(firm.code, 1).release()
    return rt, c, firm, home, pem


def profile() -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        rt, c, firm, _, _ = setup(tmp)
        container = next(iter(rt.containers().values()))
        assert isinstance(container, MachineContainer)
        return {
            "cached_access_steps_ns": cached_steps(rt, firm.code),
            "full_path_ns": full_path_steps(rt, container, firm.code),
        }


def main() -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        rt, c, firm, home, pem = setup(tmp)

        def cached():
            rt.access(firm.code, 1).release()

        doc = c.slots()[firm.code].entries[0]
        pub = firm.key.public_key()
        sig, msg = b64d(doc["sig"]), signing_message("license", doc["payload"])

        def verify():
            hazmat.verify(pub, sig, msg)

        t_access = best_per_op(cached, 20000)
        t_verify = best_per_op(verify, 3000)
        steps = cached_steps(rt, firm.code)

        env = {k: v for k, v in os.environ.items() if not k.startswith("LICENTIA_")}
        env.update(LICENTIA_HOME=str(home), PYTHONPATH=str(ROOT / "src"))
        imports, firsts = [], []
        for _ in range(9):
            out = subprocess.run(
                [sys.executable, "-c", FIRST_ACCESS, str(pem)], env=env, capture_output=True, text=True, check=True
            )
            a, b = out.stdout.split()
            imports.append(float(a))
            firsts.append(float(b))
    return {
        "cached_access_release_us": round(t_access * 1e6, 2),
        "ed25519_verify_us": round(t_verify * 1e6, 2),
        "ratio_access_to_verify": round(t_access / t_verify, 4),
        "target_ratio": 0.02,
        "import_licentia_ms_median": round(statistics.median(imports) * 1e3, 1),
        "first_access_ms_median": round(statistics.median(firsts) * 1e3, 2),
        "cached_access_steps_ns": steps,
    }


if __name__ == "__main__":
    print(json.dumps(profile() if "--profile" in sys.argv[1:] else main(), indent=1))
