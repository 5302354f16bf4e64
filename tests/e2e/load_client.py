"""Load for the license server tests: THREADS threads each take a seat, hold it, release it.

    python load_client.py FIRM PEMFILE THREADS ITERATIONS HOLD_SECONDS [STOP_FILE]

Runs ITERATIONS rounds per thread (or until STOP_FILE exists) and prints one JSON line:
counts per outcome and the ids of every lease the server acknowledged.
"""

import json
import os
import sys
import threading
import time

import licentia

firm, pem = int(sys.argv[1]), sys.argv[2]
threads, iterations, hold = int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
stop_file = sys.argv[6] if len(sys.argv) > 6 else None
licentia.trust(firm, pem)
lock = threading.Lock()
counts: dict = {}
acked: list = []
start = threading.Barrier(threads)


def work() -> None:
    start.wait()
    for _ in range(iterations):
        if stop_file and os.path.exists(stop_file):
            break
        try:
            h = licentia.access(firm, 1)
        except licentia.LicenseError as exc:
            with lock:
                counts[type(exc).__name__] = counts.get(type(exc).__name__, 0) + 1
            time.sleep(hold / 2)
            continue
        with lock:
            counts["ok"] = counts.get("ok", 0) + 1
            acked.append(h.grant.lease_id)
        time.sleep(hold)
        h.release()


pool = [threading.Thread(target=work) for _ in range(threads)]
for t in pool:
    t.start()
for t in pool:
    t.join()
print(json.dumps({"counts": counts, "acked": acked}))
