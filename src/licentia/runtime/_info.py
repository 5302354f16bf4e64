"""``info()``: the containers on this machine and the licenses in them, for people to read."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..core import errors as E
from ..core.documents import DocumentInvalid, document_digest
from ..core.license import AccessRequest, LicenseEntry, evaluate, units_left

if TYPE_CHECKING:  # pragma: no cover
    from ..container import Container
    from ..core.hazmat import Ed25519PublicKey


def describe(
    containers: dict[Path, Container | E.LicenseError],
    trusted: Callable[[int], dict[str, Ed25519PublicKey]],
    now: int,
) -> list[dict[str, Any]]:
    """Containers and their licenses at ``now`` (verified where ``trusted`` has a firm key)."""
    out: list[dict[str, Any]] = []
    for path, result in containers.items():
        if isinstance(result, E.LicenseError):
            out.append({"serial": path.name, "kind": "machine", "status": str(result), "licenses": []})
            continue
        licenses = []
        for firm, slot in sorted(result.slots().items()):
            keys = trusted(firm)
            for doc in slot.entries or []:
                try:
                    entry = (
                        LicenseEntry.verify(doc, keys)
                        if keys
                        else LicenseEntry.from_payload(doc["payload"], digest=document_digest(doc))
                    )
                except DocumentInvalid:
                    continue
                state = slot.license_state(entry)
                ev = evaluate(entry, state, AccessRequest(firm, entry.product_code), now, slot.vclock)
                licenses.append(
                    {
                        "firm_code": firm,
                        "product_code": entry.product_code,
                        "feature_map": entry.feature_map,
                        "license_id": entry.license_id,
                        "ticket": entry.ticket,
                        "text": entry.text,
                        "expires": ev.expires if ev.ok else entry.options.expires,
                        "units_left": units_left(entry, state),
                        "status": "ok" if ev.ok else ev.message,
                        "verified": bool(keys),
                    }
                )
            for lid, notice in (slot.notices or {}).items():
                licenses.append(
                    {
                        "firm_code": firm,
                        "product_code": notice.get("product_code"),
                        "feature_map": None,
                        "license_id": int(lid),
                        "ticket": None,
                        "text": None,
                        "expires": None,
                        "units_left": None,
                        "status": notice.get("message") or "withdrawn after manipulation: contact the vendor",
                        "verified": False,
                    }
                )
            for record in slot.borrowed or []:
                payload, grant = record["entry"]["payload"], record["grant"]["payload"]
                over = max(now, slot.vclock) >= int(grant.get("expires", 0))
                licenses.append(
                    {
                        "firm_code": firm,
                        "product_code": payload.get("product_code"),
                        "feature_map": payload.get("feature_map"),
                        "license_id": payload.get("license_id"),
                        "ticket": payload.get("ticket"),
                        "text": payload.get("text"),
                        "expires": grant.get("expires"),
                        "units_left": None,
                        "status": "borrowing period over" if over else f"borrowed from {record.get('server')}",
                        "verified": False,
                    }
                )
        out.append(
            {
                "serial": result.serial,
                "kind": result.kind,
                "level": result.level,
                "path": str(path),
                "status": "ok",
                "licenses": licenses,
            }
        )
    return out
