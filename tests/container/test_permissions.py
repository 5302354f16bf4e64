"""Permission-sensitive checks, run as an unprivileged user too (CI runs as root)."""

import json
import os

import pytest

from licentia.container import MachineContainer
from tests.conftest import as_nobody, require_nobody
from tests.factory import T0, machine_traits


@pytest.fixture(autouse=True)
def _tools():
    # root switches to the unprivileged user nobody: elsewhere skipped, in CI a failure
    require_nobody()


def test_other_user_cannot_read_a_container(shared_dir):
    c = MachineContainer.create(shared_dir / "home", "medium", machine_traits(), T0)
    code = (
        "import sys, json\n"
        "from pathlib import Path\n"
        "from licentia.container import MachineContainer\n"
        "p = Path(sys.argv[1])\n"
        "try:\n"
        "    (p / 'container.json').read_bytes(); print('READ')\n"
        "except PermissionError:\n"
        "    print('DENIED')\n"
    )
    out = as_nobody(code, str(c.path))
    assert out.stdout.strip() == "DENIED", out.stderr


def test_unprivileged_user_runs_a_container(shared_dir):
    home = shared_dir / "nobody-home"
    home.mkdir()
    os.chown(home, 65534, 65534)
    code = (
        "import sys, json\n"
        "from pathlib import Path\n"
        "from licentia.container import MachineContainer\n"
        "traits = json.loads(sys.argv[2])\n"
        "c = MachineContainer.create(Path(sys.argv[1]), 'medium', traits, 1800000000)\n"
        "again = MachineContainer.open(c.path, traits)\n"
        "req = again.make_request('activate', 1800000000, ticket='00000-00000-00000-00000-00000')\n"
        "mode = oct((c.path / 'state.json').stat().st_mode & 0o777)\n"
        "print(again.serial == c.serial, mode)\n"
    )
    out = as_nobody(code, str(home), json.dumps(machine_traits()))
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", "0o600"]
    made = next((home / "containers").iterdir())
    assert made.stat().st_uid == 65534
