"""Runtime benchmarks: cached access vs one Ed25519 verify; first access; import time.

Run: .venv/bin/python bench/bench_runtime.py  (or `make bench`). Prints JSON.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))

from licentia.container import MachineContainer, read_system_traits  # noqa: E402
from licentia.core import hazmat  # noqa: E402
from licentia.core.documents import signing_message  # noqa: E402
from licentia.core.encoding import b64d  # noqa: E402
from licentia.core.license import Options  # noqa: E402
from licentia.runtime import Runtime  # noqa: E402
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


def main() -> dict:
    now = int(time.time())
    with tempfile.TemporaryDirectory() as tmp:
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

        def cached():
            rt.access(firm.code, 1).release()

        doc = c.slots()[firm.code].entries[0]
        pub = firm.key.public_key()
        sig, msg = b64d(doc["sig"]), signing_message("license", doc["payload"])

        def verify():
            hazmat.verify(pub, sig, msg)

        t_access = best_per_op(cached, 20000)
        t_verify = best_per_op(verify, 3000)

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
        "target_ratio": 0.1,
        "import_licentia_ms_median": round(statistics.median(imports) * 1e3, 1),
        "first_access_ms_median": round(statistics.median(firsts) * 1e3, 2),
    }


if __name__ == "__main__":
    print(json.dumps(main(), indent=1))
