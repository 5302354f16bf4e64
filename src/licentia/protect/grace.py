"""The grace store: a product key sealed to the local container, with a deadline.

After each successful access of a package built with ``--grace`` to a license in a local
container, the product key is sealed (``Container.seal_local``) to the container that
holds the license and written to
``$LICENTIA_HOME/grace/<firm>-<product>-<feature>-v<version>.json`` (0600, atomic).

A license server's seat gives grace only as the server grants it (``recall_held``): the
lease states it, the server keeps the seat counted until it ends or the client
container's return receipt arrives, and the runtime keeps it inside the machine
container (``container/graces.py``). A record of ``source: server`` in the grace store
(made by an earlier release) is never honoured: it would let a machine that held a seat
for a moment run offline with no seat counted. The sealing context binds firm, product, feature, key version,
license id, container serial, source, the time of the access and the deadline, so no clear field of
the record can be changed without the record failing to open.

A record is used only when the license cannot be found (``LicenseNotFound`` or
``ServerUnreachable``; the caller decides that), and only when

- its container still opens on this machine and (for a local license) has a slot for
  the firm;
- the license is not in the slot's ``withdrawn`` list (revoked by an update, or
  deactivated here): grace never outlives a revocation that reached this machine;
- the clock was not set back: now >= max(slot virtual clock, time of the access) - 2 h;
- the deadline is after max(now, slot virtual clock, time of the access).

The deadline is the access time plus the grace period, but never later than the
license's own expiry: grace never outlives an expiry either.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..container import Container, files, graces
from ..core import errors as E
from ..core.encoding import b64d, b64e
from ..core.license import CLOCK_TOLERANCE

RECORD_FORMAT = "licentia-grace/1"
SOURCES = ("local", "server")


@dataclass(frozen=True)
class Recalled:
    key: bytes
    deadline: int
    left: int  # seconds


def record_path(home: Path, firm: int, product: int, feature: int, version: int) -> Path:
    return home / "grace" / f"{firm}-{product}-{feature}-v{version}.json"


def _context(rec: dict[str, Any]) -> bytes:
    return (
        f"licentia grace|{rec['firm']}|{rec['product']}|{rec['feature']}|{rec['version']}|"
        f"{rec['license_id']}|{rec['serial']}|{rec['source']}|{rec['stored']}|{rec['deadline']}"
    ).encode()


def store(
    home: Path,
    container: Container,
    *,
    firm: int,
    product: int,
    feature: int,
    version: int,
    license_id: int,
    expires: int | None,
    key: bytes,
    grace: int,
    now: int,
    source: str = "local",
) -> int | None:
    """Write (replace) the grace record after a successful access; return its deadline."""
    deadline = now + grace
    if expires is not None:
        deadline = min(deadline, expires)
    if deadline <= now or source not in SOURCES:
        return None
    rec: dict[str, Any] = {
        "format": RECORD_FORMAT,
        "firm": firm,
        "product": product,
        "feature": feature,
        "version": version,
        "license_id": license_id,
        "serial": container.serial,
        "source": source,
        "stored": now,
        "deadline": deadline,
    }
    rec["sealed"] = b64e(container.seal_local(key, _context(rec)))
    path = record_path(home, firm, product, feature, version)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    files.write_atomic(path, json.dumps(rec, sort_keys=True).encode(), mode=0o600)
    return deadline


def recall(
    home: Path,
    containers: dict[Path, Container | E.LicenseError],
    *,
    firm: int,
    product: int,
    feature: int,
    version: int,
    now: int,
) -> tuple[Recalled | None, str | None]:
    """(the key and time left, None) when a record may be used, else (None, why not or None)."""
    path = record_path(home, firm, product, feature, version)
    try:
        rec = json.loads(path.read_bytes())
        if rec.get("format") != RECORD_FORMAT:
            return None, None
        license_id, serial, source = int(rec["license_id"]), str(rec["serial"]), str(rec["source"])
        stored, deadline = int(rec["stored"]), int(rec["deadline"])
        same = (int(rec["firm"]), int(rec["product"]), int(rec["feature"]), int(rec["version"]))
        sealed = b64d(rec["sealed"])
    except FileNotFoundError:
        return None, None
    except (OSError, ValueError, KeyError, TypeError):
        return None, "the grace record is unreadable"
    if same != (firm, product, feature, version):
        return None, "the grace record is for another product"
    container = next((c for c in containers.values() if not isinstance(c, E.LicenseError) and c.serial == serial), None)
    if container is None:
        return None, f"the container {serial} that held the license is gone or locked"
    try:
        slot = container.slots().get(firm)
    except E.LicenseError:
        return None, f"container {serial} cannot be read"
    if source == "server":
        return None, "a license server's seat gives no grace period"
    if slot is None:
        return None, f"container {serial} holds nothing of firm {firm}"
    if slot is not None and license_id in (slot.withdrawn or []):
        return None, f"license {license_id} was revoked or deactivated"
    vclock = slot.vclock if slot is not None else 0
    seen = max(vclock, stored)
    if now + CLOCK_TOLERANCE < seen:
        return None, "the system clock is behind the container's clock"
    if deadline <= max(now, seen):
        return None, "the grace period is over"
    try:
        key = container.unseal_local(sealed, _context(rec))
    except E.LicenseError:
        return None, "the grace record does not open"
    return Recalled(key, deadline, deadline - max(now, vclock)), None


def forget(home: Path, firm: int, product: int, feature: int, version: int) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(record_path(home, firm, product, feature, version))


def recall_held(
    containers: dict[Path, Container | E.LicenseError],
    *,
    firm: int,
    product: int,
    feature: int,
    version: int,
    now: int,
) -> tuple[Recalled | None, str | None]:
    """The grace a license server granted with a seat and this machine's container holds:
    (the key and time left, None), else (None, why not or None when there is none)."""
    why: str | None = None
    best: tuple[int, Container, dict[str, Any], dict[str, Any], int] | None = None
    for container in containers.values():
        if isinstance(container, E.LicenseError):
            continue
        try:
            slot = container.slots().get(firm)
        except E.LicenseError:
            continue
        for rec in (slot.graces if slot is not None else None) or []:
            if (rec.get("product_code"), rec.get("feature_code")) != (product, feature):
                continue
            sealed = next((k for k in rec.get("keys") or [] if k.get("version") == version), None)
            if sealed is None:
                why = f"the license server's grace holds no product key of version {version}"
                continue
            seen = max(slot.vclock if slot is not None else 0, int(rec["stored"]))
            if now + CLOCK_TOLERANCE < seen:
                why = "the system clock is behind the container's clock"
                continue
            if int(rec["deadline"]) <= max(now, seen):
                why = "the license server's grace is over"
                continue
            if best is None or int(rec["deadline"]) > best[0]:
                best = (int(rec["deadline"]), container, rec, sealed, seen)
    if best is None:
        return None, why
    deadline, container, rec, sealed, seen = best
    try:
        key = container.unseal_local(b64d(sealed["sealed"]), graces.context(firm, rec, version))
    except (E.LicenseError, KeyError, ValueError):
        return None, "the license server's grace does not open"
    return Recalled(key, deadline, deadline - max(now, seen)), None
