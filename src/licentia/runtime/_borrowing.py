"""Borrowing: a license server's seat taken into this machine's container for offline use.

The server signs a borrow grant (with its container's key) naming this machine's
container; the firm-signed entry names the server's container, so the grant verifies
back to the firm key. Giving it back removes it here first, then sends the container's
signed return receipt; a receipt the server did not confirm is kept and sent again.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..container import files
from ..core import errors as E
from ..core import grants
from ..core.documents import DocumentInvalid, document_digest
from ..core.license import LicenseEntry
from ._netclient import API
from ._runtime import Runtime
from ._servers import parse_server
from .activation import container_for


def borrow(
    runtime: Runtime, firm_code: int, product_code: int, days: int, *, feature_code: int = 0, level: str = "medium"
) -> dict[str, Any]:
    """Borrow a seat into this machine's container; returns what was stored."""
    net = runtime.network().net
    servers = net.servers()
    if not servers:
        raise E.ServerUnreachable(
            "no license server to borrow from: set LICENTIA_HOST, run 'licentia config "
            "server add HOST', or 'licentia config discovery on'"
        )
    container = container_for(runtime, level)
    body = {
        "firm_code": firm_code,
        "product_code": product_code,
        "feature_code": feature_code,
        "days": days,
        "client_lease_id": f"borrow-{container.serial}",
        "container": {"serial": container.serial, "sign_pub": container.sign_pub, "box_pub": container.box_pub},
        **net.identity(),
    }
    failures: list[tuple[int, type[E.LicenseError], str]] = []
    tried: list[str] = []
    for server in servers:
        try:
            proof = net.machine_proof(server, container, container.box_pub)  # the key the keys are sealed to
            status, data = net.post(server, f"{API}/borrows", {**body, **({"machine": proof} if proof else {})})
        except E.ServerUnreachable as exc:
            tried.append(str(exc))
            continue
        if status != 200 or not isinstance(data, dict):
            cls, message, _ = net.error(server, status, data)
            failures.append((cls.rank, cls, message))
            tried.append(message)
            continue
        try:
            entry = LicenseEntry.from_payload(
                data["entry"]["payload"], digest=document_digest(data["entry"]), document=data["entry"]
            )
            grant = grants.verify_borrow(data["grant"], entry)
        except (DocumentInvalid, KeyError, TypeError) as exc:
            raise E.rejected(f"borrow answer from {server.label}: {getattr(exc, 'reason', exc)}") from None
        if grant.client_serial != container.serial or grant.client_key != container.sign_pub:
            raise E.rejected("borrow grant names another container")
        record = {"entry": data["entry"], "grant": data["grant"], "keys": data.get("keys") or [], "server": server.url}
        container.add_borrowed(firm_code, record, borrow_id=grant.borrow_id, vtime=int(data.get("time") or 0))
        runtime.reset()
        return {
            "borrow_id": grant.borrow_id,
            "server": server.label,
            "container": container.serial,
            "license_id": entry.license_id,
            "expires": grant.expires,
        }
    if failures:
        _, cls, message = max(failures, key=lambda f: f[0])
        raise cls(message, tried=tried)
    tried_servers = ", ".join(s.label for s in servers)
    raise E.ServerUnreachable(
        E.with_next_step(E.ServerUnreachable, f"no license server answered: tried {tried_servers}"), tried=tried
    )


def borrowed(runtime: Runtime) -> list[dict[str, Any]]:
    """Borrowed licenses in this machine's containers."""
    out = []
    for container, slot in runtime.iter_slots():
        for record in slot.borrowed or []:
            payload = record["grant"]["payload"]
            out.append(
                {
                    "container": container,
                    "firm_code": slot.firm_code,
                    "product_code": payload.get("product_code"),
                    "borrow_id": record["id"],
                    "expires": payload.get("expires"),
                    "server": record.get("server"),
                }
            )
    return out


def give_back(runtime: Runtime, firm_code: int, product_code: int) -> list[dict[str, Any]]:
    """Return the borrowed licenses of (firm, product): remove them here, then tell the server.

    A receipt the server did not confirm is kept in ``$LICENTIA_HOME/receipts/`` and sent
    at the next ``licentia return``; until then the seat stays taken on the server."""
    done = []
    pending = _pending_returns(runtime)
    for item in borrowed(runtime):
        if item["firm_code"] != firm_code or item["product_code"] != product_code:
            continue
        receipt = item["container"].remove_borrowed(firm_code, item["borrow_id"], runtime.clock())
        runtime.reset()
        pending.append((item["borrow_id"], str(item["server"]), receipt, None))
    if not pending:
        raise E.LicenseNotFound(f"no borrowed license of firm {firm_code}, product {product_code} on this machine")
    net = runtime.network().net
    for borrow_id, url, receipt, path in pending:
        server = parse_server(url)
        try:
            status, data = net.post(server, f"{API}/borrows/{borrow_id}/return", {"receipt": receipt})
            ok = status == 200 or status == 404  # 404: the server forgot it (expired): nothing left to free
        except E.ServerUnreachable:
            ok = False
        if ok:
            if path is not None:
                path.unlink(missing_ok=True)
            done.append({"borrow_id": borrow_id, "server": server.label, "returned": True})
        else:
            kept = path or _keep_return(runtime, borrow_id, url, receipt)
            done.append({"borrow_id": borrow_id, "server": server.label, "returned": False, "kept": str(kept)})
    return done


def _keep_return(runtime: Runtime, borrow_id: str, url: str, receipt: dict[str, Any]) -> Path:
    folder = runtime.home / "receipts"
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = folder / f"return-{borrow_id}.json"
    files.write_atomic(path, json.dumps({"server": url, "borrow_id": borrow_id, "receipt": receipt}).encode())
    return path


def _pending_returns(runtime: Runtime) -> list[tuple[str, str, dict[str, Any], Path | None]]:
    out: list[tuple[str, str, dict[str, Any], Path | None]] = []
    for path in sorted((runtime.home / "receipts").glob("return-*.json")):
        try:
            doc = json.loads(path.read_bytes())
            out.append((str(doc["borrow_id"]), str(doc["server"]), doc["receipt"], path))
        except (OSError, ValueError, KeyError):
            continue
    return out
