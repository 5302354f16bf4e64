"""Activation, deactivation, sync and offline file exchange with License Central.

Central is reached through ``licentia.client`` (httpx is imported only when the runtime
goes on the network); its errors become ``ActivationError`` in one place, ``_central``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..client import CentralClient, CentralError, CentralRefused, CentralUnreachable
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
def _central(
    url: str, *, offline: str | None = None, cli: str = "licentia", ticket: str = "TICKET"
) -> Iterator[CentralClient]:
    """A client of the Central at ``url``; its errors leave as ``ActivationError``.

    ``offline`` is the command that does the same without network (named when Central
    cannot be reached); ``cli`` the command prefix the messages name, ``ticket`` the
    ticket they name."""
    try:
        with CentralClient(url) as client:
            yield client
    except CentralUnreachable as exc:
        hint = (
            f", or work offline: '{offline}' writes a request file to carry to a machine with network "
            "('licentia depot submit FILE --central URL')"
            if offline
            else ""
        )
        raise E.ActivationError(f"{exc}{hint}") from None
    except CentralRefused as exc:
        raise E.ActivationError(_refused(exc, cli, ticket)) from None
    except CentralError as exc:
        raise E.ActivationError(str(exc)) from None


_ELSEWHERE = re.compile(r"active in container (\S+?)\.?\s")


def _refused(exc: CentralRefused, cli: str, ticket: str) -> str:
    """Central's message, with the command that frees a ticket held by another container:
    that container may be a machine's or a license server's."""
    if exc.code != "ticket_bound_elsewhere":
        return str(exc)
    found = _ELSEWHERE.search(f"{exc} ")
    where = f"container {found.group(1)}" if found else "another container"
    return (
        f"This ticket is active in {where}. Deactivate it there first ('licentia deactivate {ticket}' on that "
        f"machine, or 'licentia server deactivate {ticket}' if a license server holds it), then run "
        f"'{cli} activate {ticket}' here again."
    )


def container_for(rt: Runtime, level: str) -> Container:
    """The runtime's machine container of ``level`` (made on first use); ActivationError when
    the machine offers no trait to bind to."""
    try:
        return rt.machine_container(level)
    except NoUsableTraits as exc:
        raise E.ActivationError(
            f"{exc}, so no container can be bound to it: use a license server instead "
            "('licentia config server add HOST'), or ask the vendor"
        ) from None


def ticket_info(ticket: str, central: str, *, cli: str = "licentia") -> dict[str, Any]:
    """What Central says about a ticket (its binding level, ...)."""
    ticket = _normalize_ticket(ticket)
    with _central(central, offline=_offline_activate(cli, ticket), cli=cli, ticket=ticket) as client:
        return client.ticket_info(ticket)


def _offline_activate(cli: str, ticket: str) -> str:
    return f"{cli} activate {ticket} --offline -o request.json"


def make_request(ticket: str, *, level: str = "medium", runtime: Runtime | None = None) -> dict[str, Any]:
    """An activation request for ``ticket`` from the container of ``level`` (no network)."""
    rt = runtime or get_runtime()
    ticket = _normalize_ticket(ticket)
    container = container_for(rt, level)
    return container.make_request("activate", rt.clock(), ticket=ticket)


def activate(
    ticket: str, central: str, *, level: str | None = None, runtime: Runtime | None = None, cli: str = "licentia"
) -> tuple[Container, Update]:
    """Online activation: ask Central, apply the signed update. Returns (container, update).

    ``cli`` is the command the messages name (``licentia server`` for a license server's container)."""
    rt = runtime or get_runtime()
    ticket = _normalize_ticket(ticket)
    if level is None:
        level = str(ticket_info(ticket, central, cli=cli).get("level") or "medium")
    container = container_for(rt, level)
    request = container.make_request("activate", rt.clock(), ticket=ticket)
    with _central(central, offline=_offline_activate(cli, ticket), cli=cli, ticket=ticket) as client:
        update = client.activate(request)
    applied = container.apply_update(update, rt.clock(), central=central)
    rt.reset()
    if applied.manipulation and not any(e.ticket == ticket for e in applied.entries):
        raise E.ManipulationDetected(applied.message)
    return container, applied


def submit(document: dict[str, Any], central: str) -> dict[str, Any]:
    """Depot: carry a request (-> update), a receipt (-> confirmation) or a license server's
    usage upload (-> the anchor document Central signed) to Central."""
    try:
        kind = doc_type(parse(document))
    except DocumentInvalid:
        raise E.ActivationError(
            "this file is not a licentia request or receipt: submit the file 'licentia activate --offline', "
            "'licentia sync --offline', 'licentia deactivate --offline' or 'licentia server usage export' wrote, "
            "unchanged"
        ) from None
    if kind == "usage-upload":
        with _central(central) as client:
            anchor = client.upload_usage(document).get("anchor")
        if not isinstance(anchor, dict):
            raise E.ActivationError("License Central answered the usage upload without an anchor")
        return anchor
    if kind == "usage-anchor":
        raise E.ActivationError(
            "this is License Central's anchor of a usage upload: record it on the license server with "
            "'licentia server usage anchor FILE'"
        )
    if kind == "update":
        raise E.ActivationError(
            "this is an update from License Central, not a request: apply it with 'licentia apply FILE' on the "
            "machine it is for"
        )
    if kind not in ("request", "receipt"):
        raise E.ActivationError(
            f"a {kind} file cannot be submitted to Central; submit a request, a receipt or a usage upload"
        )
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
        raise E.ActivationError(f"cannot read {path}: {exc.strerror}; check the file name") from None
    except DocumentInvalid as exc:
        raise E.rejected(f"{path}: {exc.reason}") from None


NOT_AN_UPDATE = {
    "request": "this is a request file, not an update: it goes to the vendor, or to License Central from a machine "
    "with network ('licentia depot submit FILE --central URL -o update.json'); then apply the update it gives",
    "receipt": "this is a deactivation receipt, not an update: submit it to License Central to free the ticket "
    "('licentia depot submit FILE --central URL')",
}


def apply(document: dict[str, Any] | bytes, *, runtime: Runtime | None = None) -> Update:
    """Apply an update file to the container it names."""
    rt = runtime or get_runtime()
    try:
        payload = parse(document)["payload"]
        kind = payload.get("type")
        if kind in NOT_AN_UPDATE:  # a mix-up, not a forgery: the message says all, nothing to log
            raise E.LicenseInvalid(NOT_AN_UPDATE[kind], reason=f"a {kind}, not an update")
        serial = str(payload["serial"])
        if kind != "update":
            raise KeyError
    except (DocumentInvalid, KeyError, TypeError):
        raise E.rejected("not an update document") from None
    container = rt.container(serial)
    try:
        update = container.apply_update(document, rt.clock())
    except E.ActivationError:
        _already_applied(container, payload)
        raise
    rt.reset()
    return update


def _already_applied(container: Container, payload: dict[str, Any]) -> None:
    """Raise the plain answer for an update the container is past already: the same
    sequence was applied (nothing to do), or a newer one was. The container refused it after
    verifying it, so the fields read here are the firm's."""
    try:
        firm, seq = int(payload["firm_code"]), int(payload["seq"])
        held = container.slots().get(firm)
    except (KeyError, TypeError, ValueError, E.LicenseError):
        return
    if held is None or container.serial != payload.get("serial") or seq > held.seq:
        return
    if seq == held.seq:
        raise E.ActivationError(
            f"this update (sequence {seq}) was applied to container {container.serial} already: nothing to do. "
            "Run 'licentia sync' to fetch anything newer"
        ) from None
    raise E.ActivationError(
        f"this update (sequence {seq}) is older than the container's state (sequence {held.seq}): a newer update "
        "was applied since, so there is nothing to do. Run 'licentia sync' to fetch anything newer"
    ) from None


def _find_ticket(rt: Runtime, ticket: str) -> tuple[Container, int, int, str | None]:
    for container, slot in rt.iter_slots():
        for doc in slot.entries or []:
            if doc["payload"].get("ticket") == ticket:
                return container, slot.firm_code, int(doc["payload"]["license_id"]), slot.central
    raise E.LicenseNotFound(
        f"no license of ticket {ticket} is in a container here: 'licentia list' shows the tickets on this machine"
    )


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
        assert target is not None  # noqa: S101 - narrows the type: online without a target was refused above
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


def sync(
    central: str | None = None, *, runtime: Runtime | None = None, cli: str = "licentia"
) -> list[tuple[str, int, Update]]:
    """Fetch pending updates (revocations, signed time) for every firm slot; returns what was applied.

    When Central saw a container's files restored (and re-issued or withdrew its licenses),
    every update is applied first, then ``ManipulationDetected`` says what Central did.
    ``cli`` is the command the messages name (``licentia server`` for a license server's container)."""
    rt = runtime or get_runtime()
    done = []
    for container, slot in list(rt.iter_slots()):
        target = central or slot.central
        if not target:
            continue
        request = container.make_request("sync", rt.clock(), firm_code=slot.firm_code)
        with _central(target, offline=f"{cli} sync --offline -o sync.json", cli=cli) as client:
            update = client.sync(request)
        done.append((container.serial, slot.firm_code, container.apply_update(update, rt.clock(), central=target)))
    rt.reset()
    notices = [u.message for _, _, u in done if u.manipulation]
    if notices:
        raise E.ManipulationDetected(" ".join(m or "" for m in notices).strip() or None)
    return done


def sync_requests(*, runtime: Runtime | None = None) -> list[tuple[str, int, dict[str, Any]]]:
    """Offline sync: a signed sync request for every firm slot License Central has sent an
    update to (no network), as ``(serial, firm, request)``. Each goes to Central with
    ``licentia depot submit``; the update it gives is applied with ``apply``."""
    rt = runtime or get_runtime()
    return [
        (container.serial, slot.firm_code, container.make_request("sync", rt.clock(), firm_code=slot.firm_code))
        for container, slot in list(rt.iter_slots())
        if slot.seq > 0
    ]


def dump(document: dict[str, Any]) -> bytes:
    return json.dumps(document, indent=1, sort_keys=True).encode() + b"\n"
