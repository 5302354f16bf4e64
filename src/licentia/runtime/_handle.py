"""``Handle``: a granted access, holding the grant it came from."""

from __future__ import annotations

import datetime as _dt
import os
from typing import TYPE_CHECKING

from ..core import errors as E

if TYPE_CHECKING:  # pragma: no cover
    from ..container.interfaces import Grant
    from ..core.license import AccessRequest, LicenseEntry


class Handle:
    """A granted access. Use as a context manager or call ``release()``.

    ``grant`` is where the license and its product keys come from (a container on this
    machine, a license server's lease, ...); the handle asks it, never which kind it is.

    ``expires`` is when the license ends, in Unix seconds (None: it does not end);
    ``expires_at`` is the same moment as an aware UTC ``datetime``.
    """

    __slots__ = (
        "firm_code",
        "product_code",
        "feature_code",
        "feature_map",
        "units_left",
        "expires",
        "container_serial",
        "license_id",
        "text",
        "grant",
        "_entry",
        "_pid",
        "_released",
        "__weakref__",
    )

    def __init__(
        self, entry: LicenseEntry, grant: Grant, request: AccessRequest, units_left: int | None, expires: int | None
    ):
        self.firm_code = entry.firm_code
        self.product_code = entry.product_code
        self.feature_code = request.feature_code
        self.feature_map = entry.feature_map
        self.units_left = units_left
        self.expires = expires
        self.container_serial = grant.serial
        self.license_id = entry.license_id
        self.text = entry.text
        self.grant = grant
        self._entry = entry
        self._pid = os.getpid()
        self._released = False

    @property
    def expires_at(self) -> _dt.datetime | None:
        """When the license ends, as an aware UTC ``datetime`` (None: it does not end)."""
        if self.expires is None:
            return None
        return _dt.datetime.fromtimestamp(self.expires, _dt.UTC)

    @property
    def released(self) -> bool:
        return self._released or self._pid != os.getpid()

    @property
    def server(self) -> str | None:
        """``host:port`` of the license server this handle's seat is on (None: a local license)."""
        return self.grant.server

    @property
    def grace(self) -> int:
        """Seconds this machine may run offline on the license server's grace (0: none)."""
        return self.grant.grace

    @property
    def lease_lost(self) -> bool:
        """True while a network lease is lost (renewals failed; the runtime keeps trying)."""
        return self.grant.lost

    @property
    def data(self) -> bytes | None:
        """The license's protected data, if any."""
        return self._entry.options.data

    def product_key(self, version: int = 1) -> bytes:
        """The product key of ``version`` sealed in this license."""
        if self.released:
            raise E.LicenseError(
                "this handle was released (or belongs to the parent process): call licentia.access() again "
                "for a new one"
            )
        key = self.grant.product_key(self._entry, version)
        if key is None:
            raise E.LicenseNotFound(
                f"license {self.license_id} holds no product key of version {version}: renew the license or "
                "ask the vendor for one that covers this release"
            )
        return key

    def release(self) -> None:
        self._released = True
        self.grant.release()

    def __enter__(self) -> Handle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def __repr__(self) -> str:
        return (
            f"<licentia.Handle firm={self.firm_code} product={self.product_code} license={self.license_id} "
            f"container={self.container_serial}{' released' if self.released else ''}>"
        )
