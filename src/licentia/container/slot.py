"""One firm's part of a container: the per-firm state every container kind keeps."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from ..core import hazmat
from ..core.documents import document_digest
from ..core.encoding import b64d
from ..core.exchange import CHAIN_DEPTH, Counter, SlotPosition
from ..core.license import LicenseEntry, LicenseState

#: a local access records a clock observation only when time moved on this much
OBSERVE_STEP = 3600


@dataclass
class Slot:
    """One firm's part of a container."""

    firm_code: int
    seq: int = 0
    vclock: int = 0
    last_sync: int | None = None
    central: str | None = None
    pinned: dict[str, str] | None = None  # kid -> b64 raw Ed25519 public key
    endorsements: list[dict[str, Any]] | None = None
    entries: list[dict[str, Any]] | None = None  # signed license entry documents
    keys: list[dict[str, Any]] | None = None  # sealed product keys
    # entry digest -> {"units": n, "first_use": t}: what was counted under that very entry
    # (a re-issued entry starts again from the consumed_base and first_use it carries)
    counters: dict[str, dict[str, Any]] | None = None
    removed: dict[str, str] | None = None  # license_id -> digest of the removed entry
    withdrawn: list[int] | None = None  # license ids revoked by an update or removed here
    # licenses borrowed from a network license server: {"entry", "grant", "keys"} each
    borrowed: list[dict[str, Any]] | None = None
    # grace a license server granted with a seat, held here until it is given back (a
    # return receipt) or its deadline passes: container/graces.py
    graces: list[dict[str, Any]] | None = None
    gen: int = 0  # raised on every write of this slot; never goes down
    chain: list[str] | None = None  # digests of the last documents signed for this slot, newest first
    # license id -> {"product_code", "message"}: licenses Central withdrew after it saw
    # this container's files restored or forked
    notices: dict[str, dict[str, Any]] | None = None

    def to_json(self) -> dict[str, Any]:
        out = {
            "seq": self.seq,
            "vclock": self.vclock,
            "last_sync": self.last_sync,
            "central": self.central,
            "pinned": self.pinned or {},
            "endorsements": self.endorsements or [],
            "entries": self.entries or [],
            "keys": self.keys or [],
            "counters": self.counters or {},
            "removed": self.removed or {},
            "withdrawn": self.withdrawn or [],
            "gen": self.gen,
            "chain": self.chain or [],
        }
        if self.notices:
            out["notices"] = self.notices
        if self.borrowed:  # written only when present: older readers never see the key
            out["borrowed"] = self.borrowed
        if self.graces:
            out["graces"] = self.graces
        return out

    @classmethod
    def from_json(cls, firm_code: int, obj: dict[str, Any]) -> Slot:
        obj = dict(obj)
        legacy = obj.pop("licenses", None)  # counters by license id, before entry digests
        slot = cls(firm_code=firm_code, **obj)
        if legacy and slot.counters is None:
            by_id = {str(d["payload"].get("license_id")): document_digest(d) for d in slot.entries or []}
            slot.counters = {
                by_id[lid]: {"units": int(rec.get("units_used", 0)), "first_use": rec.get("first_use")}
                for lid, rec in legacy.items()
                if lid in by_id
            }
        return slot

    @functools.cached_property
    def fingerprint(self) -> tuple[int, int, tuple[str, ...]]:
        """What the slot's verified entries depend on: sequence, generation and the entries'
        signatures (a cache keyed by this never serves entries of another state)."""
        return self.seq, self.gen, tuple(str(d.get("sig")) for d in self.entries or [])

    def position(self) -> SlotPosition:
        """The slot as a signed document reports it: sequence, virtual time, generation,
        chain and the counters of every entry it holds."""
        counters = {}
        for doc in self.entries or []:
            digest = document_digest(doc)
            rec = (self.counters or {}).get(digest) or {}
            counters[digest] = Counter(int(rec.get("units", 0)), rec.get("first_use"))
        return SlotPosition(self.seq, self.vclock, self.gen, tuple(self.chain or ()), counters)

    def signed(self, digest: str) -> None:
        """Record a document this slot's state went into (the next one names it)."""
        self.chain = [digest, *(self.chain or [])][:CHAIN_DEPTH]

    def pinned_keys(self) -> dict[str, hazmat.Ed25519PublicKey]:
        return {kid: hazmat.Ed25519PublicKey.from_public_bytes(b64d(raw)) for kid, raw in (self.pinned or {}).items()}

    def license_state(self, entry: LicenseEntry) -> LicenseState:
        rec = (self.counters or {}).get(entry.digest) or {}
        used = int(rec.get("units", 0)) + int(rec.get("online", 0))  # counted here + counted at Central
        return LicenseState(units_used=used, first_use=rec.get("first_use"), last_sync=self.last_sync)

    def unsettled(self, entry: LicenseEntry) -> int:
        """Units counted here under ``entry`` that Central has not acknowledged yet."""
        rec = (self.counters or {}).get(entry.digest) or {}
        return int(rec.get("units", 0)) - int(rec.get("settled", 0))
