"""Activation, deactivation, sync and offline file exchange with License Central.

httpx is imported here, lazily: only when the runtime goes on the network.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..core import errors as E
from ..container import machine as _machine
from ..container.binding import NoUsableTraits
from ..container.store import open_or_create
from ..core import codes
from ..core.documents import DocumentInvalid, doc_type, parse
from ._runtime import Runtime, get_runtime

API = "/api/v1"
TIMEOUT = 30.0


def _normalize_ticket(ticket: str) -> str:
    try:
        return codes.normalize_ticket(ticket)
    except codes.InvalidCode as exc:
        raise E.ActivationError(f"ticket {ticket!r} is not valid ({exc}); check it for typos") from None


def _post(central: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
    return _call("POST", central, path, body)


def _call(method: str, central: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    import httpx

    url = central.rstrip("/") + API + path
    try:
        with httpx.Client(timeout=TIMEOUT) as client:
            response = client.request(method, url, json=body)
    except httpx.HTTPError as exc:
        raise E.ActivationError(
            f"cannot reach License Central at {central} ({exc.__class__.__name__}): check the address, "
            "or use --offline and carry the request file to a machine with network"
        ) from None
    try:
        data = response.json()
    except ValueError:
        data = None
    if response.status_code >= 400:
        message = None
        if isinstance(data, dict) and isinstance(data.get("error"), dict):
            message = data["error"].get("message")
        raise E.ActivationError(message or f"License Central answered HTTP {response.status_code}")
    if not isinstance(data, dict):
        raise E.ActivationError("License Central sent an answer that is not JSON")
    return data


def _container_for(rt: Runtime, level: str) -> _machine.MachineContainer:
    try:
        container = open_or_create(rt.home, level, rt.traits, rt.clock())
    except NoUsableTraits as exc:
        raise E.ActivationError(str(exc)) from None
    rt.reset()
    return container


def ticket_info(ticket: str, central: str) -> dict[str, Any]:
    return _call("GET", central, f"/tickets/{_normalize_ticket(ticket)}/info")


def make_request(ticket: str, *, level: str = "medium", runtime: Runtime | None = None) -> dict[str, Any]:
    """An activation request for ``ticket`` from the container of ``level`` (no network)."""
    rt = runtime or get_runtime()
    ticket = _normalize_ticket(ticket)
    container = _container_for(rt, level)
    return container.make_request("activate", rt.clock(), ticket=ticket)


def activate(
    ticket: str, central: str, *, level: str | None = None, runtime: Runtime | None = None
) -> tuple[_machine.MachineContainer, Any]:
    """Online activation: ask Central, apply the signed update. Returns (container, update)."""
    rt = runtime or get_runtime()
    ticket = _normalize_ticket(ticket)
    if level is None:
        level = str(ticket_info(ticket, central).get("level") or "medium")
    container = _container_for(rt, level)
    request = container.make_request("activate", rt.clock(), ticket=ticket)
    update = _post(central, "/activations", request)
    applied = container.apply_update(update, rt.clock(), central=central)
    rt.reset()
    return container, applied


def submit(document: dict[str, Any], central: str) -> dict[str, Any]:
    """Depot: carry a request (-> update) or a receipt (-> confirmation) to Central."""
    try:
        kind = doc_type(parse(document))
    except DocumentInvalid:
        raise E.ActivationError("this file is not a licentia request or receipt") from None
    if kind == "request":
        action = document["payload"].get("action")
        return _post(central, "/activations" if action == "activate" else "/sync", document)
    if kind == "receipt":
        return _post(central, "/deactivations", {"receipt": document})
    raise E.ActivationError(f"a {kind} file cannot be submitted to Central; submit a request or a receipt")


def read_document(path: str | Path) -> dict[str, Any]:
    try:
        return parse(Path(path).read_bytes())
    except OSError as exc:
        raise E.ActivationError(f"cannot read {path}: {exc.strerror}") from None
    except DocumentInvalid as exc:
        raise E.rejected(f"{path}: {exc.reason}") from None


def apply(document: dict[str, Any] | bytes, *, runtime: Runtime | None = None) -> Any:
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


def _find_ticket(rt: Runtime, ticket: str) -> tuple[_machine.MachineContainer, int, int, str | None]:
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
            _post(target, "/deactivations", {"receipt": receipt})
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


def sync(central: str | None = None, *, runtime: Runtime | None = None) -> list[tuple[str, int, Any]]:
    """Fetch pending updates (revocations, signed time) for every firm slot; returns what was applied."""
    rt = runtime or get_runtime()
    done = []
    for container, slot in list(rt.iter_slots()):
        target = central or slot.central
        if not target:
            continue
        request = container.make_request("sync", rt.clock(), firm_code=slot.firm_code)
        update = _post(target, "/sync", request)
        done.append((container.serial, slot.firm_code, container.apply_update(update, rt.clock(), central=target)))
    rt.reset()
    return done


def dump(document: dict[str, Any]) -> bytes:
    return json.dumps(document, indent=1, sort_keys=True).encode() + b"\n"
