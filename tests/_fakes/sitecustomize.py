"""Test-only: loaded into child processes (PYTHONPATH) to inject clock and traits.

Reads the JSON file named by LICENTIA_TEST_FAKES: {"time_file": path, "traits": {...}}.
The clock reads the time file on every call, so a test can move time while the
child runs. Shipped code never reads this variable.
"""

import json
import os

_path = os.environ.get("LICENTIA_TEST_FAKES")
if _path:
    with open(_path) as fh:
        _fakes = json.load(fh)
    import licentia._testing as _t

    clock = None
    if "time_file" in _fakes:
        _time_file = _fakes["time_file"]

        def clock() -> int:
            with open(_time_file) as f:
                return int(f.read().strip())

    traits = None
    if "traits" in _fakes:
        _traits = dict(_fakes["traits"])

        def traits() -> dict:
            return dict(_traits)

    _t.install(clock=clock, traits=traits)
