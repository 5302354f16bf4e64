"""One firm's part of a container: the per-firm state every container kind keeps."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..core import hazmat
from ..core.encoding import b64d
from ..core.license import LicenseState

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
    licenses: dict[str, dict[str, Any]] | None = None  # license_id -> {units_used, first_use}
    removed: dict[str, str] | None = None  # license_id -> digest of the removed entry
    withdrawn: list[int] | None = None  # license ids revoked by an update or removed here
    # licenses borrowed from a network license server: {"entry", "grant", "keys"} each
    borrowed: list[dict[str, Any]] | None = None

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
            "licenses": self.licenses or {},
            "removed": self.removed or {},
            "withdrawn": self.withdrawn or [],
        }
        if self.borrowed:  # written only when present: older readers never see the key
            out["borrowed"] = self.borrowed
        return out

    @classmethod
    def from_json(cls, firm_code: int, obj: dict[str, Any]) -> Slot:
        return cls(firm_code=firm_code, **obj)

    def pinned_keys(self) -> dict[str, hazmat.Ed25519PublicKey]:
        return {kid: hazmat.Ed25519PublicKey.from_public_bytes(b64d(raw)) for kid, raw in (self.pinned or {}).items()}

    def license_state(self, license_id: int) -> LicenseState:
        rec = (self.licenses or {}).get(str(license_id), {})
        return LicenseState(
            units_used=int(rec.get("units_used", 0)), first_use=rec.get("first_use"), last_sync=self.last_sync
        )
