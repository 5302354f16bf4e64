"""The runtime factory: the one place runtimes are made, and the API's module functions.

``factory`` makes every runtime of the process (the shared one behind
``licentia.access()``, the CLI's, a license server's) with its clock and trait reader;
``licentia._testing.install()`` sets them.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..container import read_system_traits
from ._handle import Handle
from ._runtime import Clock, Runtime, TraitsReader, system_clock


class RuntimeFactory:
    """Makes this process's runtimes: the shared one behind ``licentia.access()``, the CLI's,
    a license server's. Its clock and trait reader are the process's defaults;
    ``licentia._testing.install()`` sets them (the seam for tests, vendors' tests too)."""

    def __init__(self, clock: Clock = system_clock, traits: TraitsReader = read_system_traits):
        self.clock = clock
        self.traits = traits
        self._shared: Runtime | None = None
        self._lock = threading.Lock()

    def configure(self, *, clock: Clock | None = None, traits: TraitsReader | None = None) -> None:
        """Set the clock and/or trait reader of every runtime made from now on, and of the shared one."""
        if clock is not None:
            self.clock = clock
        if traits is not None:
            self.traits = traits
        shared = self._shared
        if shared is not None:
            shared.clock, shared.traits = self.clock, self.traits

    def reset(self) -> None:
        """Back to the system clock and traits; the shared runtime is made anew on next use."""
        with self._lock:
            self.clock, self.traits, self._shared = system_clock, read_system_traits, None

    def make(self, home: Path | None = None) -> Runtime:
        """A new runtime over ``home`` (default: ``LICENTIA_HOME`` or the user's data dir)."""
        return Runtime(home, clock=self.clock, traits=self.traits)

    def shared(self) -> Runtime:
        """The process's shared runtime (made on first use)."""
        rt = self._shared
        if rt is None:
            with self._lock:
                if self._shared is None:
                    self._shared = self.make()
                rt = self._shared
        return rt

    def _after_fork_in_child(self) -> None:
        self._lock = threading.Lock()
        rt = self._shared
        if rt is not None:
            rt._lock = threading.RLock()
            rt._net = None  # no leases, HTTP connections or heartbeat thread from the parent
            rt.reset()


factory = RuntimeFactory()
"""The one runtime factory of the process."""


def get_runtime() -> Runtime:
    """The process's shared runtime (the one behind ``licentia.access()``)."""
    return factory.shared()


def make_runtime(home: Path | str | None = None) -> Runtime:
    """A new runtime over ``home`` with the factory's clock and trait reader."""
    return factory.make(Path(home) if home is not None else None)


os.register_at_fork(after_in_child=factory._after_fork_in_child)


def access(
    firm_code: int,
    product_code: int,
    feature_code: int = 0,
    *,
    units: int = 0,
    firm_key: str | bytes | os.PathLike[str] | None = None,
    release_date: Any = None,
    mode: str = "user",
    on_lease_lost: Callable[[Handle, bool], Any] | None = None,
    grace: int = 0,
) -> Handle:
    """Find a license for (firm, product, features) and return a Handle, or raise a LicenseError.

    Local containers first, then license servers. ``mode`` counts a server's seats:
    ``"user"`` (a seat per access), ``"station"`` (one seat per user and host),
    ``"exclusive"`` (one process per host), ``"nolimit"`` (no seat; licenses without a seat
    limit only). ``on_lease_lost(handle, back)`` is called from the heartbeat thread when a
    server lease is lost (``back=False``) and when it came back (``back=True``).
    ``grace`` (seconds) asks a license server for grace with the seat: up to that long
    offline, as far as the license and the server allow (``handle.grace``; a protected
    package built with ``--grace`` asks for it).
    """
    return get_runtime().access(
        firm_code,
        product_code,
        feature_code,
        units=units,
        firm_key=firm_key,
        release_date=release_date,
        mode=mode,
        on_lease_lost=on_lease_lost,
        grace=grace,
    )


def trust(firm_code: int, pem: str | bytes | os.PathLike[str]) -> None:
    """Pin the firm's public key(s) for this process: PEM text with one or more keys (bytes,
    or a str holding ``-----BEGIN``: never read as a path), or a file path.

    Pin them in code, with the constant ``licentia vendor firm public-key CODE --format
    python`` prints (the firm's active and staged keys): a key file the end user can
    replace lets a self-signed license in."""
    get_runtime().trust(firm_code, pem)


def info() -> list[dict[str, Any]]:
    """The containers on this machine and the licenses in them."""
    return get_runtime().info()
