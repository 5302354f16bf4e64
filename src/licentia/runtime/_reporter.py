"""Usage reports: a background thread tells License Central what the containers counted.

An access to a license whose entry carries a report interval asks ``Reporter.consider``
whether a report is due (one comparison in the common case: Central answered within
the interval). A due report is queued for the process's reporter thread, which makes
the container-signed report (counters, generation, chain), sends it to the Central the
slot was activated from, and applies the answer: Central's signed acknowledgement (it
counts as a sync) or a full update when something changed (a revocation, a renewal, a
rebase). Nothing here ever raises into the application or delays ``access()``: failures
go to the ``licentia`` log, and the next attempt waits ``RETRY`` seconds (or the interval,
when shorter). The thread is a daemon: it ends with the process.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..client import CentralClient
from ..core import errors as E
from ..core.documents import doc_type, parse

if TYPE_CHECKING:  # pragma: no cover
    from ..container import Container, Slot

log = logging.getLogger("licentia")

#: after a failed report, the next attempt waits this long (or the report interval)
RETRY = 600
#: a report is small; Central that does not answer in this time is treated as down
TIMEOUT = 10.0


class Reporter:
    """One per runtime and process: the queue of due reports and the thread that sends them
    (``clock``: the runtime's)."""

    def __init__(self, clock: Callable[[], int]) -> None:
        self._clock = clock
        self.pid = os.getpid()
        self._due: dict[tuple[str, int], tuple[Container, str]] = {}
        self._next: dict[tuple[str, int], int] = {}  # no attempt before this time
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self.sent = 0  # reports Central answered (for tests and the benchmark)

    def consider(self, container: Container, slot: Slot, interval: int, now: int) -> None:
        """Queue a report of ``slot`` when one is due; never blocks, never raises."""
        if now < (slot.last_sync or 0) + interval or not slot.central:
            return
        key = (container.serial, slot.firm_code)
        if now < self._next.get(key, 0):
            return
        with self._lock:
            if key in self._due:
                return
            self._due[key] = (container, slot.central)
            self._next[key] = now + min(interval, RETRY)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="licentia-reporter", daemon=True)
                self._thread.start()
        self._wake.set()

    def _run(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            with self._lock:
                batch = list(self._due.items())
                self._due.clear()
            for (serial, firm), (container, central) in batch:
                try:
                    self.report(container, firm, central)
                except Exception as exc:  # noqa: BLE001 - a report never raises into the application
                    log.warning("usage report of container %s firm %s to %s failed: %s", serial, firm, central, exc)

    def report(self, container: Container, firm_code: int, central: str) -> str:
        """Send one report now and apply Central's answer; returns the answer's type."""
        doc = container.make_request("report", self._clock(), firm_code=firm_code)
        with CentralClient(central, timeout=TIMEOUT) as client:
            answer: dict[str, Any] = client.report(doc)
        kind = doc_type(parse(answer))
        if kind == "update":
            update = container.apply_update(answer, self._clock(), central=central)
            if update.manipulation:
                log.warning("License Central: %s", update.message)
        elif kind == "report-ack":
            container.apply_ack(answer, self._clock())
        else:
            raise E.rejected(f"License Central answered a report with a {kind} document")
        self.sent += 1
        return kind
