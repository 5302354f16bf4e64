"""Grace held for a license server's seat, inside the client's machine container.

A license server may grant a lease grace (the smaller of the protected package's
``--grace``, the license's ``max_grace`` and the server's cap) and keeps the seat counted
until the grace ends or the container's return receipt arrives. The client keeps the
grace as a record in its machine container's firm slot (``graces``), inside the state the
container MACs, so it is removed in the same write that makes the receipt:

    {"server": url, "lease_id", "product_code", "feature_code", "license_id",
     "stored": local time of the access, "deadline": local time the grace ends,
     "keys": [{"version", "sealed": seal_local(product key, context)}]}

One record per (server, product, feature): a newer access replaces it, and giving it back
removes it whichever lease wrote it (a receipt says that no record of the product and
feature from that server is left, so the server may end the grace of every lease of that
feature it still counts for this container, and of no other feature).
"""

from __future__ import annotations

from typing import Any

GRACE_CONTEXT = "licentia seat grace"


def context(firm_code: int, record: dict[str, Any], version: int) -> bytes:
    """What a record's sealed product key is bound to: every field of the record."""
    return (
        f"{GRACE_CONTEXT}|{firm_code}|{record['server']}|{record['lease_id']}|{record['product_code']}|"
        f"{record['feature_code']}|{record['license_id']}|{record['stored']}|{record['deadline']}|{version}"
    ).encode()


def same_product(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return (a.get("server"), a.get("product_code"), a.get("feature_code")) == (
        b.get("server"),
        b.get("product_code"),
        b.get("feature_code"),
    )


def receipt_payload(serial: str, firm_code: int, lease_id: str, vtime: int) -> dict[str, Any]:
    return {"serial": serial, "lease_id": lease_id, "firm_code": firm_code, "vtime": vtime}
