"""API keys: who is calling, and the admin's management of vendor keys."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from ...core.errors import BadInput, NotFound, Unauthorized
from ..db import run_read, run_write
from ..keys import api_key_id, hash_api_key, new_api_key, same_hash
from ..models import ApiKey, Firm, Role
from .base import Actor, Service

NO_KEY = "Give an API key: 'Authorization: Bearer <key>' (CLI: --api-key or LICENTIA_API_KEY)."
BAD_KEY = "This API key is not valid. Ask the Central administrator for a key."


class AuthService(Service):
    def authenticate(self, authorization: str | None) -> Actor:
        if not authorization or not authorization[:7].lower() == "bearer ":
            raise Unauthorized(NO_KEY)
        key = authorization[7:].strip()
        if not key:
            raise Unauthorized(NO_KEY)
        digest = hash_api_key(key)
        if same_hash(digest, self.ctx.keys.admin_hash):
            return Actor(api_key_id(digest), Role.admin)

        def lookup() -> Actor:
            row = self.session.execute(
                select(ApiKey, Firm.code).outerjoin(Firm, ApiKey.firm_id == Firm.id).where(ApiKey.key_hash == digest)
            ).first()
            if row is None or row[0].revoked:
                raise Unauthorized(BAD_KEY, reason=f"unknown or revoked API key {api_key_id(digest)}")
            key_row, firm_code = row
            return Actor(key_row.key_id, Role(key_row.role), key_row.firm_id, firm_code)

        return run_read(self.session, lookup)


class ApiKeyService(Service):
    def create(
        self, actor: Actor, *, firm_code: int | None, role: str = "vendor", label: str | None = None
    ) -> dict[str, Any]:
        self.require_admin(actor)
        if role not in (Role.vendor, Role.admin):
            raise BadInput("role is 'vendor' or 'admin'.")
        role_value = Role(role)
        if role_value is Role.vendor and firm_code is None:
            raise BadInput("A vendor key belongs to one firm: give firm_code (--firm-code).")
        if role_value is Role.admin and firm_code is not None:
            raise BadInput("An admin key belongs to no firm: leave out firm_code.")
        key = new_api_key()
        digest = hash_api_key(key)

        def tx() -> dict[str, Any]:
            firm = self.firm_by_code(firm_code) if firm_code is not None else None
            row = ApiKey(
                key_id=api_key_id(digest),
                key_hash=digest,
                role=role_value.value,
                firm_id=firm.id if firm else None,
                label=label,
                revoked=False,
                created=self.now(),
            )
            self.session.add(row)
            self.audit(actor, "apikey.create", firm_code, key_id=row.key_id, role=row.role, label=label)
            return {"key": key, "key_id": row.key_id, "role": row.role, "firm_code": firm_code, "label": label}

        return run_write(self.session, tx)

    def revoke(self, actor: Actor, key_id: str) -> dict[str, Any]:
        self.require_admin(actor)

        def tx() -> dict[str, Any]:
            row = self.session.scalars(select(ApiKey).where(ApiKey.key_id == key_id).with_for_update()).first()
            if row is None:
                raise NotFound("api_key", f"There is no API key {key_id}.")
            firm_code = self.session.scalar(select(Firm.code).where(Firm.id == row.firm_id)) if row.firm_id else None
            if not row.revoked:
                row.revoked = True
                self.audit(actor, "apikey.revoke", firm_code, key_id=key_id)
            return {"key_id": key_id, "role": row.role, "firm_code": firm_code, "revoked": True}

        return run_write(self.session, tx)
