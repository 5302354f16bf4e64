"""Atomic, multi-process-safe file storage: flock plus a per-path thread lock, and a
per-path watch that tells a cache whether a file changed."""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

_thread_locks: dict[str, threading.RLock] = {}
_registry_lock = threading.Lock()


def _thread_lock(path: Path) -> threading.RLock:
    key = str(path)
    with _registry_lock:
        lock = _thread_locks.get(key)
        if lock is None:
            lock = _thread_locks[key] = threading.RLock()
        return lock


def _reset_after_fork() -> None:
    global _registry_lock, _watch_lock
    _registry_lock = threading.Lock()
    _watch_lock = threading.Lock()
    _thread_locks.clear()


os.register_at_fork(after_in_child=_reset_after_fork)


@contextlib.contextmanager
def locked(lock_path: Path) -> Iterator[None]:
    """Exclusive lock across threads (RLock) and processes (flock)."""
    tlock = _thread_lock(lock_path)
    with tlock:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the flock


def write_atomic(path: Path, data: bytes, mode: int = 0o600) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    dfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def write_json_atomic(path: Path, obj: Any) -> None:
    write_atomic(path, json.dumps(obj, indent=1, sort_keys=True).encode())


def stat_key(path: Path | str) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


#: a watch trusts its last look at a file this long: a change made by another process is
#: seen by the next look after at most this many nanoseconds (10 ms)
WATCH_NS = 10_000_000

_versions = itertools.count(1)  # next() is atomic: no two changes get the same version
_watches: dict[str, StateWatch] = {}
_watch_lock = threading.Lock()


class StateWatch:
    """Whether a file may have changed since a cache looked at it (one per path and process).

    ``version`` takes a value never used before in this process whenever a change is seen:
    a write by this process (``wrote``, whichever object wrote) at once; a write by another
    process when ``refresh`` stats the file and finds its (inode, mtime, size) changed. A
    cache records ``version`` before it reads the file and trusts what it read while the
    version is the same; it calls ``refresh`` when ``time.monotonic_ns()`` reaches ``due``,
    so a change made by another process is seen within ``WATCH_NS`` (10 ms).
    """

    __slots__ = ("due", "key", "path", "version")

    def __init__(self, path: str) -> None:
        self.path = path
        self.key: tuple[int, int, int] | None = None
        self.version = next(_versions)
        self.due = 0  # look at the file before trusting anything

    def refresh(self) -> None:
        """Stat the file now; a changed key gives a new version."""
        self.saw(stat_key(self.path))

    def saw(self, key: tuple[int, int, int] | None) -> None:
        """Someone in this process stat'ed the file just now and found ``key``."""
        self.due = time.monotonic_ns() + WATCH_NS
        if key != self.key:
            self.key = key
            self.version = next(_versions)

    def wrote(self, key: tuple[int, int, int] | None) -> None:
        """This process wrote the file (a new version even when the stat key looks the same)."""
        self.key = key
        self.version = next(_versions)
        self.due = time.monotonic_ns() + WATCH_NS


def watch(path: Path | str) -> StateWatch:
    """The process's watch of ``path`` (shared by every object that reads or writes the file,
    however it names it)."""
    key = os.path.realpath(path)
    found = _watches.get(key)
    if found is None:
        with _watch_lock:
            found = _watches.get(key)
            if found is None:
                found = _watches[key] = StateWatch(key)
    return found
