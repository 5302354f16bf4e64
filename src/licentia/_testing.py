"""The test seam: the one place tests inject a clock and machine traits.

Shipped code never reads an environment variable that moves time. Tests call
``install()`` in-process, or load ``tests/_fakes/sitecustomize.py`` into child
processes, which calls ``install()`` from a fakes file the test writes.
"""

from __future__ import annotations

from typing import Callable


def install(clock: Callable[[], int] | None = None, traits: Callable[[], dict[str, str]] | None = None) -> None:
    """Replace the clock and/or trait reader of the process's default runtime."""
    from .runtime import _runtime

    rt = _runtime.get_runtime()
    if clock is not None:
        rt.clock = clock
        _runtime._DEFAULTS["clock"] = clock
    if traits is not None:
        rt.traits = traits
        _runtime._DEFAULTS["traits"] = traits


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self, now: int):
        self.now = int(now)

    def __call__(self) -> int:
        return self.now

    def advance(self, seconds: int) -> None:
        self.now += int(seconds)

    def set(self, now: int) -> None:
        self.now = int(now)
