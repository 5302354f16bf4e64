"""The test seam: the one place tests inject a clock and machine traits.

``install(clock=..., traits=...)`` sets them on the runtime factory that
``licentia.access()``, the ``licentia`` command and the license server all make their
runtimes from, so a vendor's own tests can move time or pretend to be another machine
without patching anything. Shipped code never reads an environment variable that
moves time: licentia's own tests call ``install()`` in-process, or load
``tests/_fakes/sitecustomize.py`` into child processes, which calls ``install()`` from
a fakes file the test writes.

    from licentia._testing import FakeClock, install
    clock = FakeClock(1_700_000_000)
    install(clock=clock)
    clock.advance(86400)   # a day later, for every runtime of the process
"""

from __future__ import annotations

import threading
from collections.abc import Callable


def install(clock: Callable[[], int] | None = None, traits: Callable[[], dict[str, str]] | None = None) -> None:
    """Set the clock and/or trait reader of the process's runtime factory (and its shared runtime)."""
    from .runtime import factory

    factory.configure(clock=clock, traits=traits)


def uninstall() -> None:
    """Back to the system clock and this machine's traits; forget the shared runtime."""
    from .runtime import factory

    factory.reset()


def installed() -> tuple[Callable[[], int], Callable[[], dict[str, str]]]:
    """The clock and trait reader the runtime factory uses now (to put them back after a test)."""
    from .runtime import factory

    return factory.clock, factory.traits


class FakeClock:
    """A clock the test moves by hand (safe to move from several threads)."""

    def __init__(self, now: int):
        self.now = int(now)
        self._lock = threading.Lock()

    def __call__(self) -> int:
        return self.now

    def advance(self, seconds: int) -> None:
        with self._lock:
            self.now += int(seconds)

    def set(self, now: int) -> None:
        self.now = int(now)
