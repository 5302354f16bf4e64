"""`make bench`: run every benchmark, print the figures, keep them in bench/results/."""

from __future__ import annotations

import datetime as _dt
import platform
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCHES = [
    "bench_runtime.py",
    "bench_central.py",
    "bench_counters.py",
    "bench_protect.py",
    "bench_server.py",
    "bench_hostile.py",
    "bench_cloud.py",
    "bench_usage.py",  # 200,000 usage rows; the 10 M run: docs/performance.md, "Usage store"
]


def main() -> int:
    out_dir = HERE / "results"
    out_dir.mkdir(exist_ok=True)
    stamp = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H%M%SZ")
    header = f"# {stamp} on {platform.node()} ({platform.machine()}, Python {platform.python_version()})"
    print(header)
    failed = 0
    for name in BENCHES:
        print(f"\n## {name}\n", flush=True)
        proc = subprocess.run([sys.executable, str(HERE / name)], capture_output=True, text=True)
        print(proc.stdout, end="")
        if proc.returncode != 0:
            failed += 1
            print(proc.stderr, file=sys.stderr)
        (out_dir / f"{stamp}-{name.removesuffix('.py')}.txt").write_text(header + "\n" + proc.stdout)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
