"""The access cache: a local grant that consumes nothing, kept for the next identical call.

A call to ``access()`` with ``units=0``, no ``firm_key`` and ``release_date`` None or in
Unix seconds, answered by a license in a container on this machine that is metered
locally, is answered again from here while all of this holds:

- **The containers are unchanged.** The ``StateWatch.version`` of the granting container,
  and of every container searched before it, is the one read before the grant was
  evaluated. Freshness rule: a change made by this process (through any runtime or
  container object in it) is seen at the next call; a change made by another process (an
  update, a revocation, a removed license, units consumed, a clock observation) is seen
  within 10 ms (``container.files.WATCH_NS``: the state file is stat'ed at most that often,
  and a changed inode, modification time or size counts as a change).
- **The time is inside the grant's window.** The runtime's clock reads no earlier than when
  the grant was evaluated (a clock set back is evaluated in full again, and refused as
  ``ClockTampered`` as before) and earlier than the first moment the evaluation could come
  out differently or the full search would write: the license's end (expiry, usage
  period), the sync deadline, the next clock observation (``OBSERVE_STEP`` after the slot's
  virtual clock) and the next usage report due.
- **Nothing cleared it:** ``trust()`` with a key not pinned before, ``reset()``, a rescan
  that found the container table changed, or ``fork`` (a child process starts with an
  empty cache).

A grant is kept only when the search that made it refused nothing before it and wrote
nothing (no units, no usage period started, no clock observation, no usage report due), so
a cached answer is the answer the full search would give. Units, online metering, borrowed
licenses and license servers always take the full search; units are counted under the
container's lock as before.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Hashable
from time import monotonic_ns

from ..container import OBSERVE_STEP, Slot
from ..container.files import StateWatch
from ..core.license import LicenseEntry, LicenseState
from ._handle import Granted

#: a cache holds at most this many grants (an application asks for a handful)
MAX_ENTRIES = 256


class Hot:
    """One cached grant: the handle's fields, what they depend on, and the time window."""

    __slots__ = ("before", "granted", "since", "until", "version", "watch")

    def __init__(
        self,
        granted: Granted,
        watched: list[tuple[StateWatch, int]],
        since: int,
        until: int,
    ) -> None:
        self.granted = granted
        self.watch, self.version = watched[-1]  # the granting container
        self.before = tuple(watched[:-1])  # containers searched before it (usually none)
        self.since = since
        self.until = until


def unchanged(before: tuple[tuple[StateWatch, int], ...]) -> bool:
    """Whether every container searched before the granting one is as it was."""
    for watch, version in before:
        if monotonic_ns() >= watch.due:
            watch.refresh()
        if watch.version != version:
            return False
    return True


def window_end(entry: LicenseEntry, state: LicenseState, slot: Slot, expires: int | None) -> int:
    """The first time (Unix seconds) at which an access granted now may come out differently
    or must write: the license's end, the sync deadline, the next clock observation, the
    next usage report due. ``evaluate()`` decides at max(now, virtual clock), which is never
    earlier than now, and the grant held at the virtual clock, so these bounds on now suffice."""
    end = slot.vclock + OBSERVE_STEP + 1  # then an access records a clock observation
    if expires is not None and expires < end:
        end = expires  # LicenseExpired from then on
    options = entry.options
    if options.sync_interval is not None:
        last = state.last_sync if state.last_sync is not None else entry.issued
        end = min(end, last + options.sync_interval + 1)  # SyncRequired from then on
    if options.report_interval is not None and slot.central:
        end = min(end, (slot.last_sync or 0) + options.report_interval)  # a report is due
    return end


class AccessCache:
    """Cached grants by (firm, product, feature, release date, mode); see the module's text.

    ``hits`` is read with a plain ``dict.get`` and only ever cleared in place; writes and
    clears hold a lock, and a grant evaluated before the last clear is not stored."""

    __slots__ = ("__weakref__", "_lock", "epoch", "hits")

    def __init__(self) -> None:
        self.hits: dict[Hashable, Hot] = {}
        self.epoch = 0
        self._lock = threading.Lock()
        _caches.add(self)

    def forget(self) -> None:
        with self._lock:
            self.epoch += 1
            self.hits.clear()

    def remember(self, key: Hashable, epoch: int, hot: Hot) -> None:
        with self._lock:
            if epoch != self.epoch:
                return  # cleared while this grant was evaluated
            if len(self.hits) >= MAX_ENTRIES:
                self.hits.clear()
            self.hits[key] = hot


_caches: weakref.WeakSet[AccessCache] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for cache in list(_caches):
        cache._lock = threading.Lock()
        cache.epoch += 1
        cache.hits.clear()


os.register_at_fork(after_in_child=_after_fork_in_child)
