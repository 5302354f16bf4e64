"""The two interfaces the runtime talks to: a **container** and a **grant**.

``Container`` is what every kind of license container offers: the machine container
today (``licentia.container.machine``); storage-medium, token and TPM containers
implement the same. The runtime, the license server and the protector use only these
methods, never a concrete kind.

``Grant`` is where a granted license and its product keys come from. A ``Handle``
holds one: a container on this machine (its own licenses and the ones it borrowed),
a license server's lease (``licentia.runtime``), and later a cloud lease or a TMR
front. Nothing outside a kind asks which kind it holds: what differs is a property
of the grant.

Both are ``typing.Protocol`` classes: a kind implements them by having the methods and
attributes, and a type checker holds it to them wherever it is used as one (the
runtime's container table, ``open_container()``, ``Handle.grant``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:  # pragma: no cover
    from ..core.exchange import Update
    from ..core.license import LicenseEntry
    from .files import StateWatch
    from .slot import Slot


class Grant(Protocol):
    """Where a granted license and its product keys come from."""

    @property
    def serial(self) -> str:
        """Serial of the container the firm-signed entry names."""
        ...

    @property
    def server(self) -> str | None:
        """``host:port`` of the license server holding the seat; None when the license is on this machine."""
        ...

    @property
    def lost(self) -> bool:
        """True while the grant is lost (a lease whose renewals fail); never for a local license."""
        ...

    @property
    def holder(self) -> Container | None:
        """The container on this machine that holds the license; None for a remote grant."""
        ...

    @property
    def grace(self) -> int:
        """Seconds of offline grace a license server granted with its seat (0: none)."""
        ...

    def product_key(self, entry: LicenseEntry, version: int) -> bytes | None:
        """The product key of ``version`` sealed with the license ``entry``; None when it holds none."""
        ...

    def release(self) -> None:
        """Give the grant back (a lease frees its seat; a local license has nothing to give back)."""
        ...


class Container(Grant, Protocol):
    """A license container: per-firm slots of firm-signed licenses, counters, keys.

    Every change is atomic and safe across processes: a reader sees the state before or
    after a change, never half of it, and concurrent changes never lose one another.
    """

    @property
    def kind(self) -> str:
        """The kind's name, as its container file records it (``"machine"``)."""
        ...

    @property
    def level(self) -> str:
        """The binding level: ``"loose"``, ``"medium"`` or ``"tight"``."""
        ...

    @property
    def sign_pub(self) -> str:
        """The container's Ed25519 public key (base64), named in every license issued to it."""
        ...

    @property
    def box_pub(self) -> str:
        """The container's X25519 public key (base64), product keys are sealed to it."""
        ...

    def slots(self) -> dict[int, Slot]:
        """The current slots by firm code (cached while the stored state is unchanged)."""
        ...

    @property
    def watch(self) -> StateWatch | None:
        """Tells a cache whether the stored state changed (``files.StateWatch``); None when
        the kind has no such signal, and a cache must then ask ``slots()`` every time."""
        ...

    def make_request(
        self, action: str, now: int, *, ticket: str | None = None, firm_code: int | None = None
    ) -> dict[str, Any]:
        """A container-signed activation or sync request."""
        ...

    def apply_update(self, data: bytes | str | dict[str, Any], now: int, *, central: str | None = None) -> Update:
        """Verify and apply a firm-signed update; nothing changes on any error."""
        ...

    def record_access(
        self, entry: LicenseEntry, *, units: int, start_usage: bool, now: int, check: Callable[[Slot], None]
    ) -> Slot:
        """Count units and the first use of an access under the entry's digest, re-checking
        with ``check`` under the lock."""
        ...

    def record_online(self, entry: LicenseEntry, online: int, *, start_usage: bool, now: int) -> Slot:
        """Record the units License Central counted under ``entry`` (online metering)."""
        ...

    def apply_ack(self, data: dict[str, Any], now: int) -> bool:
        """Apply Central's signed acknowledgement of the last usage report (a sync)."""
        ...

    def observe(self, firm_code: int, now: int) -> None:
        """Record a clock observation in a firm's slot (a refused access saw the time too)."""
        ...

    def remove_license(self, firm_code: int, license_id: int, now: int) -> dict[str, Any]:
        """Remove a license; return the container-signed receipt that proves it."""
        ...

    def sign(self, doc_type: str, payload: dict[str, Any]) -> dict[str, Any]:
        """Sign a grant or usage-log document (leases, borrows) with the container's key."""
        ...

    def seal_local(self, data: bytes, context: bytes) -> bytes:
        """Seal bytes that only this container, on a machine that opens it, can unseal."""
        ...

    def unseal_local(self, blob: bytes, context: bytes) -> bytes:
        """Inverse of ``seal_local``; LicenseInvalid when the blob or context do not match."""
        ...

    def hold_grace(self, firm_code: int, record: dict[str, Any], keys: dict[int, bytes], now: int) -> None:
        """Keep a license server's grace (``container.graces``), its product keys sealed here."""
        ...

    def drop_grace(self, firm_code: int, record: dict[str, Any], now: int) -> dict[str, Any]:
        """Remove the grace of the record's server and product; return the signed receipt."""
        ...

    def add_borrowed(self, firm_code: int, record: dict[str, Any], *, borrow_id: str, vtime: int) -> None:
        """Keep a license borrowed from a license server."""
        ...

    def remove_borrowed(self, firm_code: int, borrow_id: str, now: int) -> dict[str, Any]:
        """Remove a borrowed license; return the container-signed return receipt."""
        ...
