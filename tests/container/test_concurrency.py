"""8 processes consuming 500 units each, at once, end with exactly 4000 consumed."""

import json
import subprocess
import sys
import threading

import pytest

from licentia.container import MachineContainer
from licentia.core.documents import document_digest
from licentia.core.license import LicenseEntry, Options
from licentia.runtime import Runtime
from tests.conftest import child_env
from tests.factory import T0, Firm, machine_traits

CHILD = (
    r"""
import json, sys
from licentia.runtime import Runtime
home, pem, traits, n, go = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
rt = Runtime(home, clock=lambda: %d, traits=lambda: dict(traits))
rt.trust(10101, pem)
import os, time
while not os.path.exists(go):
    time.sleep(0.001)
for _ in range(n):
    rt.access(10101, 1, units=1).release()
print("done")
"""  # noqa: UP031 - the child's source holds braces: % leaves them alone
    % T0
)


def units_used(slot, license_id):
    """Units counted under the slot's entry for ``license_id``."""
    doc = next(d for d in slot.entries if d["payload"]["license_id"] == license_id)
    return slot.license_state(LicenseEntry.from_payload(doc["payload"], digest=document_digest(doc))).units_used


def setup(tmp_path, units):
    firm = Firm()
    c = MachineContainer.create(tmp_path / "home", "medium", machine_traits(), T0)
    req = c.make_request("activate", T0, ticket="00000-00000-00000-00000-00000")
    c.apply_update(firm.grant(req, options=Options(units=units)), T0)
    pem = tmp_path / "firm.pem"
    pem.write_text(firm.pem)
    return firm, c, pem


@pytest.mark.slow
def test_eight_processes_consume_exactly(tmp_path):
    firm, c, pem = setup(tmp_path, units=5000)
    go = tmp_path / "go"
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                CHILD,
                str(tmp_path / "home"),
                str(pem),
                json.dumps(machine_traits()),
                "500",
                str(go),
            ],
            env=child_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(8)
    ]
    go.touch()
    for p in procs:
        out, err = p.communicate(timeout=240)
        assert p.returncode == 0, err
    fresh = MachineContainer.open(c.path, machine_traits())
    assert units_used(fresh.slots()[firm.code], 1) == 4000


def test_threads_never_go_below_zero(tmp_path):
    firm, c, pem = setup(tmp_path, units=300)
    rt = Runtime(tmp_path / "home", clock=lambda: T0, traits=machine_traits)
    rt.trust(firm.code, pem)
    granted = []
    errors = []

    def worker():
        for _ in range(100):
            try:
                rt.access(firm.code, 1, units=1)
                granted.append(1)
            except Exception as exc:  # noqa: BLE001
                errors.append(type(exc).__name__)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(granted) == 300 and set(errors) == {"UnitsExhausted"} and len(errors) == 100
    assert units_used(MachineContainer.open(c.path, machine_traits()).slots()[firm.code], 1) == 300
