"""Firms and their keys: the Ed25519 signing keys (rotated, each new key endorsed by
the previous one) and the product-key secret, both sealed under the master key.

A firm key is in one of four states, all read from the ``firm_keys`` row:

- active: the one key that signs (``active``);
- staged: the next key, published and endorsed but not signing yet: neither active nor
  retired, and made after the active key (``created_seq`` greater than the active key's);
- previous: an older inactive key, still published so licenses it signed keep verifying;
- retired: no longer published (``retired``).
"""

from __future__ import annotations

import os
from typing import Any

from sqlalchemy import func, select

from ...core import codes, exchange, hazmat
from ...core.errors import BadInput, Conflict, NotFound
from ..db import run_read, run_write
from ..keys import SecretBox
from ..models import Firm, FirmKey
from .base import Actor, Service, check_code

#: how long a firm may keep its usage events (days): a day at least, ten years at most
MIN_RETENTION_DAYS = 1
MAX_RETENTION_DAYS = 3650


def _is_staged(key: FirmKey, active_seq: int) -> bool:
    return not key.active and not key.retired and key.created_seq > active_seq


def _key_views(keys: list[FirmKey]) -> list[dict[str, Any]]:
    """The public view of each key, oldest first: kid, PEM and state (``staged``: published
    as the next key, not signing yet)."""
    active_seq = max((k.created_seq for k in keys if k.active), default=0)
    return [
        {
            "kid": k.kid,
            "pem": k.public_pem,
            "active": k.active,
            "retired": k.retired,
            "staged": _is_staged(k, active_seq),
        }
        for k in keys
    ]


class FirmService(Service):
    # ---------------------------------------------------------------- API

    def create(self, actor: Actor, *, code: int, name: str) -> dict[str, Any]:
        self.require_admin(actor)
        code = check_code(code)
        name = name.strip()
        if not name:
            raise BadInput("A firm needs a name.")

        def tx() -> dict[str, Any]:
            if self.session.scalar(select(Firm.id).where(Firm.code == code)) is not None:
                raise Conflict("firm_exists", f"Firm {code} already exists. Pick another firm code.")
            now = self.now()
            firm = Firm(
                code=code,
                name=name,
                secret_enc=self.ctx.box.seal(code, SecretBox.PRODUCT_SECRET, os.urandom(32)),
                license_counter=0,
                item_counter=0,
                customer_counter=0,
                created=now,
            )
            self.session.add(firm)
            self.session.flush()
            key = self._new_key(firm, seq=1, endorsement=None)
            self.audit(actor, "firm.create", code, name=name, kid=key.kid)
            return self._view(firm, [key])

        return run_write(self.session, tx)

    def get(self, actor: Actor, code: int) -> dict[str, Any]:
        code = check_code(code)
        self.require_firm_access(actor, code)

        def tx() -> dict[str, Any]:
            firm = self.firm_by_code(code)
            return self._view(firm, self._keys(firm))

        return run_read(self.session, tx)

    def update(self, actor: Actor, code: int, *, usage_retention_days: int | None = None) -> dict[str, Any]:
        """Change a firm's settings (the admin, or the firm's vendor)."""
        code = check_code(code)
        self.require_firm_access(actor, code)
        if usage_retention_days is not None and not MIN_RETENTION_DAYS <= usage_retention_days <= MAX_RETENTION_DAYS:
            span = f"{MIN_RETENTION_DAYS} to {MAX_RETENTION_DAYS}"
            raise BadInput(f"usage_retention_days is from {span}: the days usage events are kept.")

        def tx() -> dict[str, Any]:
            firm = self.firm_by_code(code, lock=True)
            if usage_retention_days is not None and usage_retention_days != firm.usage_retention_days:
                before = firm.usage_retention_days
                firm.usage_retention_days = usage_retention_days
                self.audit(actor, "firm.update", code, usage_retention_days=[before, usage_retention_days])
            self.session.flush()
            return self._view(firm, self._keys(firm))

        return run_write(self.session, tx)

    def public_keys(self, code: int) -> dict[str, Any]:
        """For anyone: every key (with state) and the endorsements linking them."""
        code = check_code(code)

        def tx() -> dict[str, Any]:
            firm = self.firm_by_code(code)
            keys = self._keys(firm)
            return {
                "firm_code": code,
                "keys": _key_views(keys),
                "endorsements": [k.endorsement for k in keys if k.endorsement],
            }

        return run_read(self.session, tx)

    def public_pem(self, code: int) -> str:
        view = self.public_keys(code)
        return "".join(k["pem"] for k in view["keys"] if not k["retired"])

    def rotate(self, actor: Actor, code: int, *, stage: bool = False) -> dict[str, Any]:
        """Rotate the firm's signing key, or (``stage``) publish the next one first.

        Without ``stage``: the staged key, if there is one, becomes the active key; otherwise
        a new key is made and activated at once. With ``stage``: a new key is made, endorsed
        by the active key, and published as ``staged`` (neither active nor retired); the
        active key keeps signing until the next rotation without ``stage`` activates it.
        Apps pin the staged key with the active one (``licentia vendor firm public-key CODE
        --format python``), so they keep accepting licenses signed after that rotation.

        Staging while a staged key exists makes no new key and returns the firm as it is:
        the staged key is published and may already be pinned in shipped apps, so it is
        never replaced silently. Retire it to stage a different one.

        Either way the new active key is endorsed by the previous one, and licenses are
        signed by the active key only. Audited (``firm.stage_key``, ``firm.rotate_key``)."""
        code = check_code(code)
        self.require_firm_access(actor, code)

        def tx() -> dict[str, Any]:
            firm = self.firm_by_code(code, lock=True)  # one rotation at a time
            keys = self._keys(firm)
            old = self._active(firm)
            staged = [k for k in keys if _is_staged(k, old.created_seq)]
            if stage:
                if staged:
                    return self._view(firm, keys)
                new = self._make_next(firm, old, active=False)
                self.audit(actor, "firm.stage_key", code, active_kid=old.kid, staged_kid=new.kid)
                return self._view(firm, self._keys(firm))
            old.active = False
            self.session.flush()
            if staged:
                new = staged[0]
                new.active = True
                self.session.flush()
            else:
                new = self._make_next(firm, old, active=True)
            self.audit(actor, "firm.rotate_key", code, old_kid=old.kid, new_kid=new.kid, was_staged=bool(staged))
            return self._view(firm, self._keys(firm))

        return run_write(self.session, tx)

    def retire(self, actor: Actor, code: int, kid: str) -> dict[str, Any]:
        """Stop publishing an inactive key: an older key, or a staged one (it never signed;
        the next rotation then makes a new key). The active key cannot be retired."""
        code = check_code(code)
        self.require_firm_access(actor, code)

        def tx() -> dict[str, Any]:
            firm = self.firm_by_code(code, lock=True)
            key = self.session.scalars(
                select(FirmKey).where(FirmKey.firm_id == firm.id, FirmKey.kid == kid).with_for_update()
            ).first()
            if key is None:
                raise NotFound("key", f"Firm {code} has no key {kid}.")
            if key.active:
                raise Conflict("active_key", "The active signing key cannot be retired: rotate the key first.")
            if not key.retired:
                key.retired = True
                self.audit(actor, "firm.retire_key", code, kid=kid)
            return self._view(firm, self._keys(firm))

        return run_write(self.session, tx)

    def product_key(self, actor: Actor, code: int, product_code: int, version: int) -> dict[str, Any]:
        """The product key of (firm, product, version) as a firm-signed key file; audited."""
        from ...core import keyfile

        code = check_code(code)
        self.require_firm_access(actor, code)
        try:
            codes.check_product_code(product_code)
        except codes.InvalidCode as exc:
            raise BadInput(str(exc)) from None
        if version < 1 or version > 1_000_000:
            raise BadInput("A key version is a whole number from 1.")

        def tx() -> dict[str, Any]:
            firm = self.firm_by_code(code)
            key = exchange.derive_product_key(self.product_secret(firm), code, product_code, version)
            self.audit(actor, "firm.export_product_key", code, product_code=product_code, version=version)
            return keyfile.build(code, product_code, version, key, self.signing_key(firm))

        return run_write(self.session, tx)

    # ---------------------------------------------------------------- for other services

    def signing_key(self, firm: Firm) -> hazmat.Ed25519PrivateKey:
        return self._private(firm, self._active(firm))

    def product_secret(self, firm: Firm) -> bytes:
        return self.ctx.open_secret(firm.code, SecretBox.PRODUCT_SECRET, firm.secret_enc)

    def endorsements(self, firm: Firm) -> list[dict[str, Any]]:
        rows = self.session.scalars(
            select(FirmKey.endorsement)
            .where(FirmKey.firm_id == firm.id, FirmKey.endorsement.is_not(None))
            .order_by(FirmKey.created_seq)
        )
        return [r for r in rows if r]

    # ---------------------------------------------------------------- internals

    def _keys(self, firm: Firm) -> list[FirmKey]:
        stmt = select(FirmKey).where(FirmKey.firm_id == firm.id).order_by(FirmKey.created_seq)
        return list(self.session.scalars(stmt))

    def _active(self, firm: Firm) -> FirmKey:
        key = self.session.scalars(select(FirmKey).where(FirmKey.firm_id == firm.id, FirmKey.active.is_(True))).first()
        if key is None:  # pragma: no cover - every firm is made with an active key
            raise NotFound("key", f"Firm {firm.code} has no active signing key.")
        return key

    def _private(self, firm: Firm, key: FirmKey) -> hazmat.Ed25519PrivateKey:
        return self.ctx.signing_key(firm.code, key.kid, key.private_enc)

    def _make_next(self, firm: Firm, current: FirmKey, *, active: bool) -> FirmKey:
        """A new key after every key the firm has, endorsed by ``current`` (the active key)."""
        last = self.session.scalar(select(func.max(FirmKey.created_seq)).where(FirmKey.firm_id == firm.id))
        private = hazmat.Ed25519PrivateKey.generate()
        endorsement = exchange.endorse_key(self._private(firm, current), firm.code, private.public_key())
        return self._new_key(firm, seq=(last or 0) + 1, endorsement=endorsement, private=private, active=active)

    def _new_key(
        self,
        firm: Firm,
        *,
        seq: int,
        endorsement: dict[str, Any] | None,
        private: hazmat.Ed25519PrivateKey | None = None,
        active: bool = True,
    ) -> FirmKey:
        private = private or hazmat.Ed25519PrivateKey.generate()
        public = private.public_key()
        kid = hazmat.key_id(public)
        key = FirmKey(
            firm_id=firm.id,
            kid=kid,
            public_pem=hazmat.public_pem(public),
            private_enc=self.ctx.box.seal(firm.code, SecretBox.signing_key(kid), hazmat.raw_private(private)),
            active=active,
            retired=False,
            endorsement=endorsement,
            created_seq=seq,
            created=self.now(),
        )
        self.session.add(key)
        self.session.flush()
        return key

    @staticmethod
    def _view(firm: Firm, keys: list[FirmKey]) -> dict[str, Any]:
        return {
            "code": firm.code,
            "name": firm.name,
            "created": firm.created,
            "usage_retention_days": firm.usage_retention_days,
            "keys": _key_views(keys),
        }
