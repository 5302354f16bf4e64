"""The bootstrap's audit hook refuses to marshal protected code objects (in a child process:
an audit hook stays for the life of a process)."""

from __future__ import annotations

from tests.protect.helpers import Machine

PROBE = r"""
import io, marshal, sys
import sampleapp.core as core
from sampleapp.sub import helper

def outer():
    def inner():
        return 1
    return inner

code = core.fib.__code__
values = {
    "code": code,
    "tuple": (1, code),
    "list": [0, [helper.total.__code__]],
    "dict value": {"k": code},
    "dict key": {code: 1},
    "set": {code},
    "frozenset": frozenset({(code,)}),
    "nested code": core.crash.__code__,
}
for name, value in values.items():
    try:
        marshal.dumps(value)
        print(name, "DUMPED")
    except RuntimeError as exc:
        print(name, "refused:", exc)
try:
    marshal.dump([code], io.BytesIO())
    print("dump DUMPED")
except RuntimeError:
    print("dump refused")
# plain code and data still marshal
marshal.dumps((outer.__code__, compile("x = 1", "plain.py", "exec"), [1, {"a": frozenset({2})}]))
print("plain ok", core.fib(10))
"""


def test_protected_code_objects_cannot_be_marshalled(firm, built, machine: Machine):
    machine.activate(firm)
    for out in (built(), built(mode="ip")):
        r = machine.code(out, PROBE)
        assert r.returncode == 0, r.stderr
        lines = r.stdout.strip().splitlines()
        assert lines[-1] == "plain ok 55"
        refused = [line for line in lines[:-1] if "refused" in line]
        assert refused == lines[:-1], lines
        assert len(refused) == 9
        assert "protected code objects cannot be marshalled" in lines[0]
