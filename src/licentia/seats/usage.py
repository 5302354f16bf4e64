"""Usage events: their shape, the hash chain, the signed head, the license-usage view.

Every access, renewal, release, expiry, denial, borrow and return is one event. Its
body is canonical JSON with the fields of the license-based usage view (DOMAIN.md:
``accessTime``, ``releaseTime``, ``seconds``, ``success``, ``fail``, ``invalid``,
``firmCode``, ``productCode``, ``featureCode``, ``featureMap``, ``ticketLicenseId``,
``userIdentification``) plus ``seq``, ``event``, ``time``, ``leaseId``, ``mode``,
``host``, ``ip`` and ``seat`` (the seat the lease holds: leases of one station share it;
none for a denial). Times in stored bodies are Unix seconds.

Pseudonymised logs (``[server] pseudonymise = true``): ``Pseudonymiser`` writes user,
host, address and seat as keyed hashes (``"~"`` + the first 20 hex digits of
HMAC-SHA256 under a 32-byte key kept in ``DATA/pseudonym.key``); the chain is over what
is written, which is what goes to License Central.

Chain: ``hash(n) = SHA-256(hash(n-1) || body(n))`` (hex), starting from 32 zero bytes
or from the anchor left by retention pruning. After every transaction that appends
events, the engine stores a head ``{"seq", "hash", "anchor_seq", "anchor_hash",
"time"}`` signed (``type: "usage-head"``) with the server container's key. A changed,
inserted or removed event, a cut tail, or pruning outside the retention rule no longer
matches the chain or the signed head.

Anchors: License Central answers each upload of the log (``core.anchoring``) with an
anchor signed by a firm key; the newest is kept in the meta key ``central_anchor``.
Uploads start after it (``upload_chunks``), retention pruning keeps every event after it,
and ``verify_log`` checks the local chain against it.
"""

from __future__ import annotations

import datetime as _dt
import hmac
import json
import os
import re
import secrets
import stat
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..core import anchoring, hazmat, tables
from ..core import errors as E
from ..core.anchoring import FINAL_KINDS as FINAL_KINDS  # re-exported: the kinds that end a session
from ..core.anchoring import GENESIS as GENESIS
from ..core.anchoring import chain as chain  # the one hash chain (core.anchoring), re-exported
from ..core.documents import DocumentInvalid, verify_document
from ..core.encoding import canonical
from .model import Client, Lease

HEAD_TYPE = "usage-head"
#: the meta key of the newest anchor License Central signed for this log (its JSON document)
CENTRAL_ANCHOR = "central_anchor"
#: the file in the data directory that holds the key of pseudonymised logs
PSEUDONYM_KEY = "pseudonym.key"

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
        "seat": lease.seat,
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
        "seat": None,
        "reason": reason,
    }


def encode(seq: int, body: dict[str, Any]) -> str:
    return canonical({**body, "seq": seq}).decode()


# ---------------------------------------------------------------- pseudonymised logs

_PSEUDONYM = re.compile(r"~[0-9a-f]{20}")
_NAME_EDGE = r"[\w.-]"


class Pseudonymiser:
    """Writes user, host, address and seat into the log as keyed hashes.

    ``"~" + HMAC-SHA256(key, value).hexdigest()[:20]``: the same name gives the same
    pseudonym (sessions of one user stay countable), and without the key a pseudonym
    cannot be tried against a list of names. ``userIdentification`` becomes
    ``"<hashed user>@<hashed host>"``; those names in a denial's reason text too."""

    def __init__(self, key: bytes):
        if len(key) != 32:
            raise ValueError("a pseudonym key is 32 bytes")
        self._key = key

    @classmethod
    def from_file(cls, path: Path) -> Pseudonymiser:
        """The key in ``path``, made (32 random bytes, mode 0600) when there is none.
        SettingsError when the file may be read by others or is no key."""
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "wb") as fh:
                fh.write(secrets.token_bytes(32))
                fh.flush()
                os.fsync(fh.fileno())
        try:
            mode = path.stat().st_mode
            if mode & (stat.S_IRWXG | stat.S_IRWXO):
                raise E.SettingsError(
                    f"{path} (the key of the pseudonymised usage log) may be read by other users "
                    f"(mode {stat.S_IMODE(mode):04o}): make it private with 'chmod 600 {path}'"
                )
            key = path.read_bytes()
        except OSError as exc:
            raise E.SettingsError(f"the pseudonym key {path} cannot be read: {exc.strerror}") from None
        if len(key) != 32:
            raise E.SettingsError(
                f"{path} is not a pseudonym key (32 bytes): restore it from a backup (a new key gives every "
                "name a new pseudonym)"
            )
        return cls(key)

    def pseudonym(self, value: str) -> str:
        digest = hmac.new(self._key, value.encode("utf-8", "surrogatepass"), "sha256").hexdigest()
        return "~" + digest[:20]

    def apply(self, body: dict[str, Any]) -> dict[str, Any]:
        """The body as the log keeps it."""
        out = dict(body)
        host = str(body.get("host") or "")
        ident = str(body.get("userIdentification") or "")
        user = ident[: -len(host) - 1] if ident.endswith("@" + host) else ident
        ip = str(body.get("ip") or "")
        out["userIdentification"] = f"{self.pseudonym(user)}@{self.pseudonym(host)}"
        out["host"] = self.pseudonym(host)
        out["ip"] = self.pseudonym(ip)
        if body.get("seat") is not None:
            out["seat"] = self.pseudonym(str(body["seat"]))
        if isinstance(body.get("reason"), str):
            out["reason"] = self._scrub(body["reason"], (user, host, ip))
        return out

    def _scrub(self, text: str, names: tuple[str, ...]) -> str:
        """``text`` with each of ``names`` (a whole name, not inside another word) as its pseudonym."""
        named = sorted({n for n in names if n}, key=len, reverse=True)
        if not named:
            return text
        pattern = f"(?<!{_NAME_EDGE})(?:{'|'.join(re.escape(n) for n in named)})(?!{_NAME_EDGE})"
        return re.sub(pattern, lambda m: self.pseudonym(m.group(0)), text)


def pseudonymised(bodies: Iterable[str]) -> bool:
    """Whether every event of ``bodies`` names its user, host and address by pseudonym."""
    for text in bodies:
        body = json.loads(text)
        user, _, host = str(body.get("userIdentification") or "").rpartition("@")
        if not all(_PSEUDONYM.fullmatch(str(v)) for v in (user, host, body.get("host"), body.get("ip"))):
            return False
    return True


# ---------------------------------------------------------------- uploads to License Central and anchors

Sign = Callable[[str, dict[str, Any]], dict[str, Any]]


def build_upload(
    sign: Sign, *, serial: str, time: int, base_seq: int, base_hash: str, bodies: list[str], pseudonymised: bool
) -> dict[str, Any]:
    """The upload document of ``core.anchoring.build_upload``, signed by ``sign`` (the server
    container's ``sign``: the private key stays in the container)."""
    payload = anchoring.upload_payload(
        serial=serial, time=time, base_seq=base_seq, base_hash=base_hash, bodies=bodies, pseudonymised=pseudonymised
    )
    return sign(anchoring.UPLOAD_TYPE, payload)


def stored_anchor(tx: Any) -> anchoring.Anchor | None:
    """The newest anchor License Central signed for this log (checked when it was recorded)."""
    text = tx.get_meta(CENTRAL_ANCHOR)
    if not text:
        return None
    p = json.loads(text)["payload"]
    return anchoring.Anchor(
        serial=str(p["serial"]),
        firm_code=int(p["firm_code"]),
        seq=int(p["seq"]),
        hash=str(p["hash"]),
        time=int(p["time"]),
        upload=str(p["upload"]),
    )


def _pruned(tx: Any) -> tuple[int, str] | None:
    """The anchor retention pruning left: the last pruned event and its hash."""
    pruned = json.loads(tx.get_meta("usage_anchor") or "null")
    return (int(pruned["seq"]), str(pruned["hash"])) if pruned else None


def local_hash(tx: Any, seq: int) -> str | None:
    """The chain's hash at ``seq`` as this log holds it (None: the log holds no such event)."""
    if seq == 0:
        return GENESIS
    digest = tx.event_hash(seq)
    if digest is not None:
        return str(digest)
    pruned = _pruned(tx)
    return pruned[1] if pruned is not None and pruned[0] == seq else None


def upload_base(tx: Any) -> tuple[int, str]:
    """Where the next upload starts: the stored Central anchor, else the start of the log
    (the anchor pruning left, or sequence 0)."""
    anchor = stored_anchor(tx)
    if anchor is not None:
        return anchor.seq, anchor.hash
    return _pruned(tx) or (0, GENESIS)


def next_chunk(
    tx: Any, after: int, *, max_events: int = anchoring.MAX_EVENTS, max_bytes: int = anchoring.MAX_EVENT_BYTES
) -> list[tuple[int, str]]:
    """The events after ``after`` that one upload carries: ``(seq, body)``, at most
    ``max_events`` of them and ``max_bytes`` of body text (one at least)."""
    out: list[tuple[int, str]] = []
    size = 0
    for seq, _time, body, _digest in tx.events(after, max_events):
        if seq != after + len(out) + 1:
            raise E.ActivationError(
                f"the usage log misses event {after + len(out) + 1}, so it cannot go to License Central: "
                "'licentia server usage verify' shows what is wrong"
            )
        size += len(body.encode("utf-8", "surrogatepass"))
        if out and size > max_bytes:
            break
        out.append((seq, body))
    return out


def check_anchor(tx: Any, anchor: anchoring.Anchor) -> None:
    """ActivationError unless this log's chain has the anchor's hash at the anchor's sequence."""
    local = local_hash(tx, anchor.seq)
    if local is None:
        raise E.ActivationError(
            f"License Central's anchor names event {anchor.seq}, which this server's usage log does not hold: "
            "it answers another log"
        )
    if local != anchor.hash:
        raise E.ActivationError(
            f"License Central's anchor does not match this server's usage log at event {anchor.seq}: the log "
            "differs from what was uploaded ('licentia server usage verify')"
        )


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


def to_csv(rows: list[dict[str, Any]]) -> str:
    """The usage view as CSV; text a client chose (user and host names...) never becomes a formula."""
    return tables.rows_to_csv(rows, [*VIEW_FIELDS, *EXTRA_FIELDS])


# ---------------------------------------------------------------- verification


def verify_log(
    tx: Any,
    public_key: hazmat.Ed25519PublicKey | None,
    *,
    batch: int = 5000,
    anchor_keys: dict[int, dict[str, hazmat.Ed25519PublicKey]] | None = None,
) -> dict[str, Any]:
    """Check the chain, the signed head and the stored License Central anchor (its
    signature too when ``anchor_keys``, the firm keys by firm code, are given); returns
    {"ok", "events", "first", "last", "problems", "anchor"} (anchor: {"seq", "time",
    "hash"} or None)."""
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
    anchored = _check_central_anchor(tx, anchor_keys, problems)
    return {
        "ok": not problems,
        "events": walk.count,
        "first": walk.first,
        "last": walk.last,
        "problems": problems,
        "anchor": anchored,
    }


def _check_central_anchor(
    tx: Any, keys: dict[int, dict[str, hazmat.Ed25519PublicKey]] | None, problems: list[str]
) -> dict[str, Any] | None:
    """The stored Central anchor (``{"seq", "time", "hash"}``), checked against the local
    chain (and with ``keys``, the firm keys by firm code, its signature)."""
    text = tx.get_meta(CENTRAL_ANCHOR)
    if not text:
        return None
    try:
        anchor = stored_anchor(tx)
        if keys is not None:
            anchoring.verify_anchor(text, keys.get(anchoring.anchor_firm(text), {}))
    except (ValueError, KeyError, TypeError, DocumentInvalid) as exc:
        problems.append(f"the License Central anchor kept with the log does not verify ({getattr(exc, 'reason', exc)})")
        return None
    assert anchor is not None  # noqa: S101 - narrows the type: the meta key is set
    local = local_hash(tx, anchor.seq)
    if local is not None and local != anchor.hash:
        problems.append(
            f"the log differs from what License Central anchored through event {anchor.seq}: "
            "an event up to it was changed"
        )
    elif local is None:  # pruning keeps every event after the anchor, and the anchor's own hash
        problems.append(f"the log lacks event {anchor.seq}, which License Central anchored (it was cut)")
    return {"seq": anchor.seq, "time": anchor.time, "hash": anchor.hash}


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
