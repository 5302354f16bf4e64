"""``Handle``: a granted access, holding the grant it came from."""

from __future__ import annotations

import datetime as _dt
import os
from typing import TYPE_CHECKING

from ..core import errors as E

if TYPE_CHECKING:  # pragma: no cover
    from ..container.interfaces import Grant
    from ..core.license import AccessRequest, LicenseEntry


class Granted:
    """What a grant gives every handle made from it: the fields a ``Handle`` shows.

    One is made per grant; the runtime's access cache hands the same one to every handle it
    makes while the cached grant holds, so that a cached access builds a two-field handle."""

    __slots__ = (
        "container_serial",
        "entry",
        "expires",
        "feature_code",
        "feature_map",
        "firm_code",
        "grant",
        "license_id",
        "pid",
        "product_code",
        "text",
        "units_left",
    )

    def __init__(
        self, entry: LicenseEntry, grant: Grant, feature_code: int, units_left: int | None, expires: int | None
    ):
        self.firm_code = entry.firm_code
        self.product_code = entry.product_code
        self.feature_code = feature_code
        self.feature_map = entry.feature_map
        self.units_left = units_left
        self.expires = expires
        self.container_serial = grant.serial
        self.license_id = entry.license_id
        self.text = entry.text
        self.grant = grant
        self.entry = entry
        self.pid = os.getpid()  # a forked child's handles read as released


_new = object.__new__


class Handle:
    """A granted access. Use as a context manager or call ``release()``.

    ``grant`` is where the license and its product keys come from (a container on this
    machine, a license server's lease, ...); the handle asks it, never which kind it is.

    ``expires`` is when the license ends, in Unix seconds (None: it does not end);
    ``expires_at`` is the same moment as an aware UTC ``datetime``.
    """

    __slots__ = ("__weakref__", "_g", "_released")

    def __init__(
        self, entry: LicenseEntry, grant: Grant, request: AccessRequest, units_left: int | None, expires: int | None
    ):
        self._g = Granted(entry, grant, request.feature_code, units_left, expires)
        self._released = False

    @classmethod
    def _of(cls, granted: Granted) -> Handle:
        """A new handle on ``granted`` (the access cache's way: two stores, no call to ``__init__``)."""
        handle: Handle = _new(cls)
        handle._g = granted
        handle._released = False
        return handle

    @property
    def firm_code(self) -> int:
        return self._g.firm_code

    @property
    def product_code(self) -> int:
        return self._g.product_code

    @property
    def feature_code(self) -> int:
        """The feature bits this access asked for."""
        return self._g.feature_code

    @property
    def feature_map(self) -> int:
        """The feature bits the license grants."""
        return self._g.feature_map

    @property
    def units_left(self) -> int | None:
        """Units left after this access (None: the license counts no units)."""
        return self._g.units_left

    @property
    def expires(self) -> int | None:
        return self._g.expires

    @property
    def container_serial(self) -> str:
        return self._g.container_serial

    @property
    def license_id(self) -> int:
        return self._g.license_id

    @property
    def text(self) -> str:
        return self._g.text

    @property
    def grant(self) -> Grant:
        return self._g.grant

    @property
    def _entry(self) -> LicenseEntry:
        """The firm-signed license entry this handle was granted on."""
        return self._g.entry

    @property
    def expires_at(self) -> _dt.datetime | None:
        """When the license ends, as an aware UTC ``datetime`` (None: it does not end)."""
        if self.expires is None:
            return None
        return _dt.datetime.fromtimestamp(self.expires, _dt.UTC)

    @property
    def released(self) -> bool:
        return self._released or self._g.pid != os.getpid()

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
        return self._g.entry.options.data

    def product_key(self, version: int = 1) -> bytes:
        """The product key of ``version`` sealed in this license."""
        if self.released:
            raise E.LicenseError(
                "this handle was released (or belongs to the parent process): call licentia.access() again "
                "for a new one"
            )
        key = self._g.grant.product_key(self._g.entry, version)
        if key is None:
            raise E.LicenseNotFound(
                f"license {self.license_id} holds no product key of version {version}: renew the license or "
                "ask the vendor for one that covers this release"
            )
        return key

    def release(self) -> None:
        self._released = True
        self._g.grant.release()

    def __enter__(self) -> Handle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def __repr__(self) -> str:
        return (
            f"<licentia.Handle firm={self.firm_code} product={self.product_code} license={self.license_id} "
            f"container={self.container_serial}{' released' if self.released else ''}>"
        )
