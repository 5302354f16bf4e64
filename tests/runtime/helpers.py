"""Helpers of the runtime tests: a runtime over a home, a license installed in it."""

from licentia.container import MachineContainer
from licentia.runtime import Runtime
from tests.factory import machine_traits

TICKET = "00000-00000-00000-00000-00000"


def runtime(home, clock, traits=None):
    return Runtime(home, clock=clock, traits=lambda: dict(traits or machine_traits()))


def install(home, firm, clock, level="medium", **entry_kw):
    c = MachineContainer.create(home, level, machine_traits(), clock())
    req = c.make_request("activate", clock(), ticket=TICKET)
    c.apply_update(firm.grant(req, now=clock(), **entry_kw), clock())
    return c
