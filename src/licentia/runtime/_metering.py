"""Online metering on the runtime's side: a consumption is a container-signed call to
License Central, retried once with the same idempotency key (never charged twice);
offline, the container may count up to the item's offline allowance, which the next
usage report settles."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..client import CentralClient, CentralRefused, CentralUnreachable
from ..core import errors as E
from ..core import hazmat
from ..core.documents import DocumentInvalid, require, verify_document
from ..core.license import LicenseEntry

if TYPE_CHECKING:  # pragma: no cover
    from ..container import Container, Slot

#: a consumption waits this long for Central before counting as offline
TIMEOUT = 10.0
ATTEMPTS = 2


def consume(
    container: Container,
    slot: Slot,
    entry: LicenseEntry,
    units: int,
    *,
    start_usage: bool,
    now: int,
    keys: dict[str, hazmat.Ed25519PublicKey],
    check: Callable[[Slot], None],
) -> Slot:
    """Consume ``units`` of an online-metered license; the slot as recorded after it."""
    central = slot.central
    answer = None
    if central:
        payload = {
            "serial": container.serial,
            "firm_code": entry.firm_code,
            "license_id": entry.license_id,
            "entry": entry.digest,
            "units": units,
            "key": uuid.uuid4().hex,
            "created": now,
        }
        doc = container.sign("consume", payload)
        for _ in range(ATTEMPTS):
            try:
                with CentralClient(central, timeout=TIMEOUT) as client:
                    answer = client.consume(doc)
                break
            except CentralUnreachable:
                continue
            except CentralRefused as exc:
                if exc.status is not None and exc.status >= 500:  # busy or failing: as if unreachable
                    continue
                if exc.code == "units_exhausted":
                    where = f"container {container.serial} {entry.summary()}"
                    raise E.UnitsExhausted(E.with_next_step(E.UnitsExhausted, f"{where}: {exc}")) from None
                raise E.ActivationError(f"License Central refused the consumption: {exc}") from None
    if answer is None:
        return _offline(container, entry, units, start_usage=start_usage, now=now, check=check)
    try:
        counted = verify_document(answer, "consumption", keys)
        online = require(counted, "online", int)
        if (counted.get("serial"), counted.get("entry"), counted.get("key")) != (
            container.serial,
            entry.digest,
            doc["payload"]["key"],
        ):
            raise DocumentInvalid("the count is for another consumption")
    except DocumentInvalid as exc:
        raise E.rejected(f"consumption answer refused: {exc.reason}") from None
    return container.record_online(entry, online, start_usage=start_usage, now=now)


def _offline(
    container: Container,
    entry: LicenseEntry,
    units: int,
    *,
    start_usage: bool,
    now: int,
    check: Callable[[Slot], None],
) -> Slot:
    allowance = entry.options.offline_allowance
    if allowance <= 0:
        raise E.UnitsExhausted(
            f"{entry.summary()}: its units are counted by License Central, which cannot be reached: "
            "connect to the network and try again"
        )

    def within(slot: Slot) -> None:
        check(slot)
        pending = slot.unsettled(entry)
        if pending + units > allowance:
            raise E.UnitsExhausted(
                f"{entry.summary()}: License Central cannot be reached and {pending} of the {allowance} units "
                "allowed offline are used: connect to the network and try again"
            )

    return container.record_access(entry, units=units, start_usage=start_usage, now=now, check=within)
