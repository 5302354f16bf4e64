"""Usage events: their shape, the hash chain, the signed head, the license-usage view.

Every access, renewal, release, expiry, denial, borrow and return is one event. Its
body is canonical JSON with the fields of the license-based usage view (DOMAIN.md:
``accessTime``, ``releaseTime``, ``seconds``, ``success``, ``fail``, ``invalid``,
``firmCode``, ``productCode``, ``featureCode``, ``featureMap``, ``ticketLicenseId``,
``userIdentification``) plus ``seq``, ``event``, ``time``, ``leaseId``, ``mode``,
``host`` and ``ip``. Times in stored bodies are Unix seconds.

Chain: ``hash(n) = SHA-256(hash(n-1) || body(n))`` (hex), starting from 32 zero bytes
or from the anchor left by retention pruning. After every transaction that appends
events, the engine stores a head ``{"seq", "hash", "anchor_seq", "anchor_hash",
"time"}`` signed (``type: "usage-head"``) with the server container's key. A changed,
inserted or removed event, a cut tail, or pruning outside the retention rule no longer
matches the chain or the signed head.
"""

from __future__ import annotations

import csv
import datetime as _dt
import io
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ..core import hazmat
from ..core.documents import DocumentInvalid, verify_document
from ..core.encoding import canonical
from .model import Client, Lease

GENESIS = "00" * 32
HEAD_TYPE = "usage-head"
FINAL_KINDS = ("release", "expire", "revoke", "return")

#: columns of the license-usage view, in order (DOMAIN.md), then licentia's own
VIEW_FIELDS = (
    "accessTime",
    "releaseTime",
    "seconds",
    "success",
    "fail",
    "invalid",
    "firmCode",
    "productCode",
    "featureCode",
    "featureMap",
    "ticketLicenseId",
    "userIdentification",
)
EXTRA_FIELDS = ("leaseId", "mode", "host", "ip", "event")


def chain(prev: str, body: str) -> str:
    return hazmat.sha256(bytes.fromhex(prev) + body.encode()).hex()


def lease_event(kind: str, now: int, lease: Lease, *, end: int | None = None, reason: str = "") -> dict[str, Any]:
    final = kind in FINAL_KINDS
    release = (end if end is not None else now) if final else None
    seconds = max(0, (release if release is not None else now) - lease.access_time) if kind != "access" else 0
    out = {
        "event": kind,
        "time": now,
        "leaseId": lease.id,
        "mode": lease.mode,
        "accessTime": lease.access_time,
        "releaseTime": release,
        "seconds": seconds,
        "success": 1,
        "fail": 0,
        "invalid": 0,
        "firmCode": lease.firm_code,
        "productCode": lease.product_code,
        "featureCode": lease.feature_code,
        "featureMap": lease.feature_map,
        "ticketLicenseId": lease.license_id,
        "userIdentification": lease.ident,
        "host": lease.host,
        "ip": lease.ip,
    }
    if reason:
        out["reason"] = reason
    return out


def denial_event(
    now: int,
    client: Client,
    *,
    firm_code: int,
    product_code: int,
    feature_code: int,
    mode: str,
    invalid: bool,
    reason: str,
    license_id: int = 0,
    feature_map: int = 0,
) -> dict[str, Any]:
    return {
        "event": "deny",
        "time": now,
        "leaseId": None,
        "mode": mode,
        "accessTime": now,
        "releaseTime": None,
        "seconds": 0,
        "success": 0,
        "fail": 0 if invalid else 1,
        "invalid": 1 if invalid else 0,
        "firmCode": firm_code,
        "productCode": product_code,
        "featureCode": feature_code,
        "featureMap": feature_map,
        "ticketLicenseId": license_id,
        "userIdentification": client.ident,
        "host": client.host,
        "ip": client.ip,
        "reason": reason,
    }


def encode(seq: int, body: dict[str, Any]) -> str:
    return canonical({**body, "seq": seq}).decode()


# ---------------------------------------------------------------- the view


def iso(ts: int | None) -> str | None:
    if ts is None:
        return None
    return _dt.datetime.fromtimestamp(ts, _dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")


def view_row(body: dict[str, Any], now: int | None = None) -> dict[str, Any]:
    """One licenseUsageList entry (times as ISO 8601 UTC, as in the reporting API)."""
    row = {k: body.get(k) for k in VIEW_FIELDS}
    if row["releaseTime"] is None and body.get("success") and now is not None:
        row["seconds"] = max(0, now - int(body["accessTime"]))  # still running
    row["accessTime"] = iso(body.get("accessTime"))
    row["releaseTime"] = iso(body.get("releaseTime"))
    if row["releaseTime"] is None:
        del row["releaseTime"]
    for k in EXTRA_FIELDS:
        row[k] = body.get(k)
    return row


def license_usage(
    sessions: Iterable[dict[str, Any]], finals: Iterable[dict[str, Any]], denials: Iterable[dict[str, Any]], now: int
) -> list[dict[str, Any]]:
    """Sessions (access/borrow events) completed by their final event, plus denials,
    in access-time order."""
    ends = {f["leaseId"]: f for f in finals}
    rows = []
    for start in sessions:
        end = ends.get(start["leaseId"])
        rows.append(view_row(end or start, None if end else now))
    rows.extend(view_row(d) for d in denials)
    rows.sort(key=lambda r: (r["accessTime"] or "", r.get("leaseId") or ""))
    return rows


#: a cell starting with one of these is a formula to a spreadsheet (CSV injection)
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(value: Any) -> Any:
    """A text cell a spreadsheet shows as text: a leading formula character gets a ``'``,
    and line breaks (which would split the row) become spaces."""
    if not isinstance(value, str):
        return value
    if value.startswith(FORMULA_STARTS):
        value = "'" + value
    return value.replace("\r", " ").replace("\n", " ")


def to_csv(rows: list[dict[str, Any]]) -> str:
    """The usage view as CSV; text a client chose (user and host names...) never becomes a formula."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=[*VIEW_FIELDS, *EXTRA_FIELDS], extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: spreadsheet_safe(v) for k, v in row.items()})
    return buf.getvalue()


# ---------------------------------------------------------------- verification


def verify_log(tx: Any, public_key: hazmat.Ed25519PublicKey | None, *, batch: int = 5000) -> dict[str, Any]:
    """Check the chain and the signed head; returns {"ok", "events", "first", "last", "problems"}."""
    problems: list[str] = []
    head = _signed_head(tx, public_key, problems)
    anchor_seq = int(head["anchor_seq"]) if head else 0
    # no head: only an empty log is in order
    if head is None and not problems and tx.events(0, 1):
        problems.append("the log has events but no signed head")
    walk = _walk_chain(tx, anchor_seq, str(head["anchor_hash"]) if head else GENESIS, batch, problems)
    if head is not None:
        _check_head(head, anchor_seq, walk, problems)
    if walk.changed > 20:
        problems.append(f"... {walk.changed} changed events in all")
    return {"ok": not problems, "events": walk.count, "first": walk.first, "last": walk.last, "problems": problems}


def _signed_head(tx: Any, public_key: hazmat.Ed25519PublicKey | None, problems: list[str]) -> dict[str, Any] | None:
    """The payload of the log's signed head (checked with ``public_key`` when given), or
    None when there is none or it does not verify (then a problem says so)."""
    head_text = tx.get_meta("usage_head")
    if not head_text:
        return None
    try:
        doc = json.loads(head_text)
        payload: dict[str, Any] = doc["payload"] if public_key is None else verify_document(doc, HEAD_TYPE, public_key)
        return payload
    except (ValueError, KeyError, DocumentInvalid) as exc:
        problems.append(f"the signed head of the log does not verify ({getattr(exc, 'reason', exc)})")
        return None


@dataclass
class _Walk:
    """Where a walk along the chain got to."""

    prev: str  # the hash of the last event seen
    count: int = 0
    first: int | None = None
    last: int | None = None
    changed: int = 0


def _walk_chain(tx: Any, anchor_seq: int, prev: str, batch: int, problems: list[str]) -> _Walk:
    """Walk the events after the anchor in order, checking each link of the chain."""
    walk = _Walk(prev)
    expected = anchor_seq + 1
    after = 0
    while True:
        rows = tx.events(after, batch)
        if not rows:
            break
        for seq, _time, body, stored in rows:
            if walk.first is None:
                walk.first = seq
                if seq < expected:
                    problems.append(f"event {seq} lies before the log's anchor {anchor_seq}")
            if seq > expected:
                problems.append(f"event(s) {expected}..{seq - 1} missing")
            digest = chain(walk.prev, body)
            try:
                body_seq = json.loads(body).get("seq")
            except ValueError:
                body_seq = None
            if digest != stored or body_seq != seq:
                walk.changed += 1
                if walk.changed <= 20:
                    problems.append(f"event {seq} was changed")
            walk.prev = stored
            expected = seq + 1
            walk.last = seq
            walk.count += 1
        after = rows[-1][0]
    return walk


def _check_head(head: dict[str, Any], anchor_seq: int, walk: _Walk, problems: list[str]) -> None:
    """Whether the walk ended where the signed head says the log ends."""
    last = walk.last
    if last is None and int(head["seq"]) != anchor_seq:
        problems.append(f"events {anchor_seq + 1}..{head['seq']} missing")
    elif last is not None and last < int(head["seq"]):
        problems.append(f"event(s) {last + 1}..{head['seq']} missing (the log was cut)")
    elif last is not None and last > int(head["seq"]):
        problems.append(f"event(s) {int(head['seq']) + 1}..{last} are not covered by the signed head")
    elif last is not None and walk.prev != head["hash"]:
        problems.append("the chain does not end where the signed head says")
