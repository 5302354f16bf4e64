"""Activation, deactivation, sync and offline file exchange with License Central.

Central is reached through ``licentia.client`` (httpx is imported only when the runtime
goes on the network); its errors become ``ActivationError`` in one place, ``_central``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..client import CentralClient, CentralError, CentralUnreachable
from ..container import Container
from ..container.binding import NoUsableTraits
from ..core import codes
from ..core import errors as E
from ..core.documents import DocumentInvalid, doc_type, parse
from ..core.exchange import Update
from ._factory import get_runtime
from ._runtime import Runtime


def _normalize_ticket(ticket: str) -> str:
    try:
        return codes.normalize_ticket(ticket)
    except codes.InvalidCode as exc:
        raise E.ActivationError(f"ticket {ticket!r} is not valid ({exc}); check it for typos") from None


@contextmanager
def _central(url: str) -> Iterator[CentralClient]:
    """A client of the Central at ``url``; its errors leave as ``ActivationError``."""
    try:
        with CentralClient(url) as client:
            yield client
    except CentralUnreachable as exc:
        raise E.ActivationError(
            f"{exc}, or use --offline and carry the request file to a machine with network"
        ) from None
    except CentralError as exc:
        raise E.ActivationError(str(exc)) from None


def container_for(rt: Runtime, level: str) -> Container:
    """The runtime's machine container of ``level`` (made on first use); ActivationError when
    the machine offers no trait to bind to."""
    try:
        return rt.machine_container(level)
    except NoUsableTraits as exc:
        raise E.ActivationError(str(exc)) from None


def ticket_info(ticket: str, central: str) -> dict[str, Any]:
    """What Central says about a ticket (its binding level, ...)."""
    ticket = _normalize_ticket(ticket)
    with _central(central) as client:
        return client.ticket_info(ticket)


def make_request(ticket: str, *, level: str = "medium", runtime: Runtime | None = None) -> dict[str, Any]:
    """An activation request for ``ticket`` from the container of ``level`` (no network)."""
    rt = runtime or get_runtime()
    ticket = _normalize_ticket(ticket)
    container = container_for(rt, level)
    return container.make_request("activate", rt.clock(), ticket=ticket)


def activate(
    ticket: str, central: str, *, level: str | None = None, runtime: Runtime | None = None
) -> tuple[Container, Update]:
    """Online activation: ask Central, apply the signed update. Returns (container, update)."""
    rt = runtime or get_runtime()
    ticket = _normalize_ticket(ticket)
    if level is None:
        level = str(ticket_info(ticket, central).get("level") or "medium")
    container = container_for(rt, level)
    request = container.make_request("activate", rt.clock(), ticket=ticket)
    with _central(central) as client:
        update = client.activate(request)
    applied = container.apply_update(update, rt.clock(), central=central)
    rt.reset()
    if applied.manipulation and not any(e.ticket == ticket for e in applied.entries):
        raise E.ManipulationDetected(applied.message)
    return container, applied


def submit(document: dict[str, Any], central: str) -> dict[str, Any]:
    """Depot: carry a request (-> update) or a receipt (-> confirmation) to Central."""
    try:
        kind = doc_type(parse(document))
    except DocumentInvalid:
        raise E.ActivationError("this file is not a licentia request or receipt") from None
    if kind not in ("request", "receipt"):
        raise E.ActivationError(f"a {kind} file cannot be submitted to Central; submit a request or a receipt")
    with _central(central) as client:
        if kind == "receipt":
            return client.deactivate(document)
        if document["payload"].get("action") == "activate":
            return client.activate(document)
        return client.sync(document)


def read_document(path: str | Path) -> dict[str, Any]:
    try:
        return parse(Path(path).read_bytes())
    except OSError as exc:
        raise E.ActivationError(f"cannot read {path}: {exc.strerror}") from None
    except DocumentInvalid as exc:
        raise E.rejected(f"{path}: {exc.reason}") from None


def apply(document: dict[str, Any] | bytes, *, runtime: Runtime | None = None) -> Update:
    """Apply an update file to the container it names."""
    rt = runtime or get_runtime()
    try:
        payload = parse(document)["payload"]
        serial = str(payload["serial"])
        if payload.get("type") != "update":
            raise KeyError
    except (DocumentInvalid, KeyError, TypeError):
        raise E.rejected("not an update document") from None
    container = rt.container(serial)
    update = container.apply_update(document, rt.clock())
    rt.reset()
    return update


def _find_ticket(rt: Runtime, ticket: str) -> tuple[Container, int, int, str | None]:
    for container, slot in rt.iter_slots():
        for doc in slot.entries or []:
            if doc["payload"].get("ticket") == ticket:
                return container, slot.firm_code, int(doc["payload"]["license_id"]), slot.central
    raise E.LicenseNotFound(f"no license of ticket {ticket} is in a container on this machine")


def deactivate(
    ticket: str, central: str | None = None, *, offline: bool = False, runtime: Runtime | None = None
) -> dict[str, Any]:
    """Remove the ticket's license and return the signed receipt (sent to Central unless offline)."""
    rt = runtime or get_runtime()
    ticket = _normalize_ticket(ticket)
    container, firm, license_id, recorded = _find_ticket(rt, ticket)
    target = central or recorded
    if not offline and not target:
        raise E.ActivationError("no License Central known for this license: pass --central URL or use --offline")
    receipt = container.remove_license(firm, license_id, rt.clock())
    rt.reset()
    if not offline:
        assert target is not None
        try:
            with _central(target) as client:
                client.deactivate(receipt)
        except E.ActivationError as exc:
            kept = keep_receipt(rt, ticket, receipt)
            raise E.ActivationError(
                f"the license was removed here, but Central did not confirm it ({exc}); the receipt is kept in "
                f"{kept}: submit it with 'licentia depot submit {kept} --central URL'"
            ) from None
    return receipt


def keep_receipt(rt: Runtime, ticket: str, receipt: dict[str, Any]) -> Path:
    from ..container.files import write_atomic

    folder = rt.home / "receipts"
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = folder / f"{ticket}.json"
    write_atomic(path, dump(receipt))
    return path


def sync(central: str | None = None, *, runtime: Runtime | None = None) -> list[tuple[str, int, Update]]:
    """Fetch pending updates (revocations, signed time) for every firm slot; returns what was applied.

    When Central saw a container's files restored (and re-issued or withdrew its licenses),
    every update is applied first, then ``ManipulationDetected`` says what Central did."""
    rt = runtime or get_runtime()
    done = []
    for container, slot in list(rt.iter_slots()):
        target = central or slot.central
        if not target:
            continue
        request = container.make_request("sync", rt.clock(), firm_code=slot.firm_code)
        with _central(target) as client:
            update = client.sync(request)
        done.append((container.serial, slot.firm_code, container.apply_update(update, rt.clock(), central=target)))
    rt.reset()
    notices = [u.message for _, _, u in done if u.manipulation]
    if notices:
        raise E.ManipulationDetected(" ".join(m or "" for m in notices).strip() or None)
    return done


def dump(document: dict[str, Any]) -> bytes:
    return json.dumps(document, indent=1, sort_keys=True).encode() + b"\n"
