"""What every service shares: the context (settings, clock, master key, database),
the caller (``Actor``), firm scoping and the audit log."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from ...core import codes, exchange, hazmat
from ...core.errors import BadInput, Forbidden, NotFound
from ..db import Database
from ..keys import KeyMaterial, SecretBox
from ..models import AuditEntry, Firm, Role
from ..settings import Settings
from ._signed import Signer


@dataclass
class Context:
    """Everything a service needs besides its session; built once per app."""

    settings: Settings
    db: Database
    clock: Callable[[], int]
    keys: KeyMaterial
    box: SecretBox
    #: Decrypted firm secrets, by (firm code, purpose): immutable once made, so a
    #: process may keep them (the signing key of a kid never changes).
    secrets: dict[tuple[int, str], bytes] = field(default_factory=dict)
    signers: dict[tuple[int, str], Signer] = field(default_factory=dict)
    #: Product keys by (firm code, product code, key version): derived from a firm secret.
    product_keys: dict[tuple[int, int, int], bytes] = field(default_factory=dict)

    def now(self) -> int:
        return int(self.clock())

    def open_secret(self, firm_code: int, purpose: str, blob: bytes) -> bytes:
        cached = self.secrets.get((firm_code, purpose))
        if cached is None:
            cached = self.box.open(firm_code, purpose, blob)
            self.secrets[(firm_code, purpose)] = cached
        return cached

    def signing_key(self, firm_code: int, kid: str, private_enc: bytes) -> hazmat.Ed25519PrivateKey:
        return self.signer(firm_code, kid, private_enc).key

    def signer(self, firm_code: int, kid: str, private_enc: bytes) -> Signer:
        """The firm's signing key ``kid``, with its key id and public key."""
        signer = self.signers.get((firm_code, kid))
        if signer is None:
            raw = self.open_secret(firm_code, SecretBox.signing_key(kid), private_enc)
            signer = self.signers[(firm_code, kid)] = Signer.of(hazmat.Ed25519PrivateKey.from_private_bytes(raw))
        return signer

    def product_key(self, firm_code: int, product_code: int, version: int, secret_enc: bytes) -> bytes:
        """Central's product key for (firm, product, key version), derived once."""
        key = self.product_keys.get((firm_code, product_code, version))
        if key is None:
            secret = self.open_secret(firm_code, SecretBox.PRODUCT_SECRET, secret_enc)
            key = exchange.derive_product_key(secret, firm_code, product_code, version)
            self.product_keys[(firm_code, product_code, version)] = key
        return key


@dataclass(frozen=True)
class Actor:
    """Who called: an API key's id, its role, and (vendor) its firm."""

    key_id: str
    role: Role
    firm_id: uuid.UUID | None = None
    firm_code: int | None = None

    @property
    def admin(self) -> bool:
        return self.role is Role.admin


class Service:
    def __init__(self, ctx: Context, session: Session):
        self.ctx = ctx
        self.session = session

    def now(self) -> int:
        return self.ctx.now()

    # ---------------------------------------------------------------- scoping

    def require_admin(self, actor: Actor) -> None:
        if not actor.admin:
            raise Forbidden("This needs the admin API key.")

    def firm_by_code(self, code: int, *, lock: bool = False) -> Firm:
        stmt = select(Firm).where(Firm.code == code)
        if lock:
            stmt = stmt.with_for_update()
        firm = self.session.scalars(stmt).first()
        if firm is None:
            raise NotFound("firm", f"There is no firm {code} in Central. Check the firm code.")
        return firm

    def scoped_firm(self, actor: Actor, firm_code: int | None, *, lock: bool = False) -> Firm:
        """The firm a call works on: the vendor key's own firm, or (admin) the one named."""
        if firm_code is not None:
            firm_code = check_code(firm_code)
        if actor.admin:
            if firm_code is None:
                raise BadInput("With the admin key, name the firm: give firm_code (--firm-code).")
            return self.firm_by_code(firm_code, lock=lock)
        if firm_code is not None and firm_code != actor.firm_code:
            raise Forbidden(f"This API key belongs to firm {actor.firm_code}, not firm {firm_code}.")
        assert actor.firm_code is not None  # noqa: S101 - narrows the type: a vendor key always names its firm
        return self.firm_by_code(actor.firm_code, lock=lock)

    def require_firm_access(self, actor: Actor, firm_code: int) -> None:
        if not actor.admin and actor.firm_code != firm_code:
            raise Forbidden(f"This API key belongs to firm {actor.firm_code}, not firm {firm_code}.")

    # ---------------------------------------------------------------- audit

    def audit(self, actor: Actor, action: str, firm_code: int | None, /, **detail: Any) -> None:
        """Append one audit row (inside the caller's write transaction)."""
        self.session.add(
            AuditEntry(
                time=self.now(),
                actor=actor.key_id,
                role=actor.role.value,
                firm_code=firm_code,
                action=action,
                detail=detail,
            )
        )


def check_code(value: int) -> int:
    try:
        return codes.check_firm_code(value)
    except codes.InvalidCode as exc:
        raise BadInput(f"{exc}.") from None
