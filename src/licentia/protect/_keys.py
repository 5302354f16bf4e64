"""Product keys for protected code and data, from a license (or the grace store).

One key per (firm, product, feature, key version) per process: the first import (or
``open_protected``) calls ``licentia.access``, keeps the handle for the life of the
process (released at exit) and keeps the key in memory only.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import warnings
from typing import TYPE_CHECKING, Any

from ..core import errors as E
from .fileformat import format_duration

if TYPE_CHECKING:  # pragma: no cover
    from ..runtime import Handle, Runtime

_log = logging.getLogger("licentia")

#: only these failures may fall back to a grace record: never expiry, revocation, tampering...
GRACE_ON = (E.LicenseNotFound, E.ServerUnreachable)


class GraceWarning(UserWarning):
    """A protected package runs on its grace period: the license could not be found."""


_lock = threading.Lock()
_keys: dict[tuple[int, int, int, int], bytes] = {}
_handles: list[Handle] = []


def product_key(
    firm: int, product: int, feature: int, version: int, *, firm_key: Any = None, grace: int = 0, label: str = ""
) -> bytes:
    """The product key of ``version``; raises the ``LicenseError`` when no license gives it."""
    ident = (firm, product, feature, version)
    key = _keys.get(ident)
    if key is not None:
        return key
    with _lock:
        key = _keys.get(ident)
        if key is None:
            key = _acquire(firm, product, feature, version, firm_key=firm_key, grace=grace, label=label)
            _keys[ident] = key
    return key


def _acquire(firm: int, product: int, feature: int, version: int, *, firm_key: Any, grace: int, label: str) -> bytes:
    from ..runtime import get_runtime

    rt = get_runtime()
    handle = None
    try:
        handle = rt.access(firm, product, feature, firm_key=firm_key, grace=grace)
        try:
            key = handle.product_key(version)
        except E.LicenseNotFound as exc:
            raise E.LicenseNotFound(
                f"license {handle.license_id} does not carry product key version {version}, which this release "
                "needs (a license for an older release does not open it): renew the license or ask the vendor",
                tried=exc.tried,
            ) from None
    except E.LicenseError as exc:
        if handle is not None:
            handle.release()
        if grace and isinstance(exc, GRACE_ON):
            recalled = _from_grace(rt, firm, product, feature, version, exc, label)
            if recalled is not None:
                return recalled
        raise
    _handles.append(handle)
    atexit.register(handle.release)
    if grace:
        _store_grace(rt, handle, firm, product, feature, version, key, grace, label)
    return key


def _store_grace(
    rt: Runtime, handle: Handle, firm: int, product: int, feature: int, version: int, key: bytes, grace: int, label: str
) -> None:
    from . import grace as _grace

    container = handle.grant.holder
    if container is None:
        # a license server's seat: only the grace the server granted (it keeps the seat
        # counted meanwhile; the runtime holds it in the machine container), never ours
        _grace.forget(rt.home, firm, product, feature, version)
        if handle.grace:
            _log.info("%s: the license server granted %s of grace", label, format_duration(handle.grace))
        else:
            _log.info("%s: the license server grants this seat no grace period", label)
        return
    try:
        source = "local"
        _grace.store(
            rt.home,
            container,
            firm=firm,
            product=product,
            feature=feature,
            version=version,
            license_id=handle.license_id,
            expires=handle.expires,
            key=key,
            grace=grace,
            now=rt.clock(),
            source=source,
        )
    except (OSError, E.LicenseError) as exc:  # never fail a licensed start for grace
        _log.warning("%s: could not write the grace record: %s", label, exc)


def _from_grace(
    rt: Runtime, firm: int, product: int, feature: int, version: int, exc: E.LicenseError, label: str
) -> bytes | None:
    from . import grace as _grace

    now = rt.clock()
    try:
        containers = rt.containers(rescan=True)
    except OSError:
        return None
    found, why = _grace.recall(
        rt.home, containers, firm=firm, product=product, feature=feature, version=version, now=now
    )
    if found is None:
        held, why_held = _grace.recall_held(
            containers, firm=firm, product=product, feature=feature, version=version, now=now
        )
        found, why = (held, None) if held is not None else (None, why or why_held)
    if found is None:
        if why:
            _log.warning("%s: no grace period: %s", label, why)
            exc.args = (f"{exc.args[0] if exc.args else exc} (no grace period: {why})",)
        return None
    import datetime as _dt

    until = _dt.datetime.fromtimestamp(found.deadline, _dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    message = (
        f"{label}: no license found ({exc}); running on the grace period, {format_duration(found.left)} left "
        f"(until {until}). Make the license available again before then."
    )
    _log.warning("%s", message)
    warnings.warn(message, GraceWarning, stacklevel=2)
    return found.key


def _after_fork_in_child() -> None:
    global _lock
    _lock = threading.Lock()


os.register_at_fork(after_in_child=_after_fork_in_child)
