"""Signing in to the vendor's cloud: sessions, a device's sign-in by a short code
confirmed in a browser (the OAuth 2.0 device authorization grant's shape, RFC 8628),
and a password sign-in for scripts.

- A **session** is an opaque random token (``lcs_...``); Central keeps only its SHA-256.
  ``web`` sessions (the browser pages) carry a CSRF token and live 30 minutes unused,
  12 hours at most; ``device`` sessions (a linked device) 30 days unused, 90 at most
  (settings).
- A **device** is linked by its machine container: it signs a ``cloud-link`` document
  (core/cloudlink.py) with the container's key, and Central records the container's
  serial and public key with the account. Logging out, a reset, a new password or a
  disabled account unlink it; it must sign in again.
- **Sign-in by code**: the device asks for a device code (secret, kept by the device)
  and a user code (``BCDF-GHJK``, shown to the person); the person signs in on
  ``/cloud/device`` in a browser, sees the device's name and address, and confirms;
  the device polls with its device code and gets its session. Codes live 10 minutes.
- Failed sign-ins count per address and per account (AttemptService); device codes are
  limited per address.
"""

from __future__ import annotations

import hashlib
import secrets
import time
import uuid
from typing import Any

from sqlalchemy import bindparam, delete, func, select, update

from ...core import cloudlink
from ...core.documents import DocumentInvalid
from ...core.errors import (
    BadInput,
    Forbidden,
    NotFound,
    ServiceError,
    TooManyDeviceSwaps,
    TooManySignIns,
    Unauthorized,
)
from ..db import run_read, run_write
from ..models import Account, AccountRole, AccountSession, CloudDevice, DeviceAuthorization, Firm
from ..protocol_db import Row, protocol_for
from .accounts import (
    AccountService,
    Person,
    changed_rows,
    check_password,
    needs_rehash,
    normalize_login,
    verify_password,
)
from .accounts import hash_password as _hash_password
from .attempts import AttemptService
from .base import Service, check_code

TOKEN_PREFIX = "lcs_"  # noqa: S105 - the prefix of every session token, not a secret
#: session kinds: a browser's pages, a linked device's, a user-licensing API caller's (no device)
WEB, DEVICE, USER = "web", "device", "user"
#: a device code and its user code live this long (RFC 8628 suggests minutes, not more)
CODE_TTL = 600
#: seconds a device waits between two polls
POLL_INTERVAL = 5
#: device codes one address may ask for in the attempt window
CODES_PER_ADDRESS = 10
#: the user code's letters: no vowels (no words), no look-alikes (RFC 8628, section 6.1)
USER_CODE_LETTERS = "BCDFGHJKLMNPQRSTVWXZ"
USER_CODE_LENGTH = 8
#: a session's last use is written at most this often
SEEN_EVERY = 60
SWAP_PERIOD = 30 * 86400  # the period device swaps are counted in

BAD_LOGIN = "The login or the password is not right."
SIGN_IN_AGAIN = "Your session has ended: sign in again ('licentia cloud login')."


#: a session by its token's hash, with its account, firm and linked device
Q_SESSION = (
    select(
        AccountSession.id.label("session_id"),
        AccountSession.created,
        AccountSession.seen,
        AccountSession.device_id,
        AccountSession.csrf,
        Account.id.label("account_id"),
        Account.login,
        Account.role,
        Account.firm_id,
        Account.customer_id,
        Account.disabled,
        Firm.code.label("firm_code"),
        CloudDevice.serial,
        CloudDevice.sign_pub,
        CloudDevice.name,
    )
    .join(Account, Account.id == AccountSession.account_id)
    .join(Firm, Firm.id == Account.firm_id)
    .outerjoin(CloudDevice, (CloudDevice.id == AccountSession.device_id) & CloudDevice.unlinked.is_(None))
    .where(
        AccountSession.token_hash == bindparam("token_hash"),
        AccountSession.kind.in_(bindparam("kinds", expanding=True)),
    )
)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def new_user_code() -> str:
    return "".join(secrets.choice(USER_CODE_LETTERS) for _ in range(USER_CODE_LENGTH))


def normalize_user_code(text: Any) -> str | None:
    """``bcdf-ghjk`` or ``BCDF GHJK`` as stored; None when it cannot be a user code."""
    if not isinstance(text, str) or len(text) > 32:
        return None
    code = "".join(c for c in text.upper() if c not in "- ")
    if len(code) != USER_CODE_LENGTH or any(c not in USER_CODE_LETTERS for c in code):
        return None
    return code


def show_user_code(code: str) -> str:
    return f"{code[:4]}-{code[4:]}"


def account_key(firm_id: uuid.UUID, login: str) -> str:
    """How the attempt counter names an account (its key column holds 128 characters)."""
    return f"{firm_id.hex}:{login}"[:128]


class SignInService(Service):
    def __init__(self, ctx: Any, session: Any, *, attempts: AttemptService, accounts: AccountService):
        super().__init__(ctx, session)
        self.attempts = attempts
        self.accounts = accounts

    # ---------------------------------------------------------------- password sign-in

    def sign_in(
        self,
        *,
        firm_code: int,
        login: str,
        password: str,
        address: str,
        link: Any = None,
        kind: str = DEVICE,
    ) -> dict[str, Any]:
        """A session for ``login``'s password: a ``web`` session (with its CSRF token), or a
        ``device`` session for the device the ``cloud-link`` document proves."""
        firm_code = check_code(firm_code)
        login = normalize_login(login)
        if not isinstance(password, str) or len(password) > 1024:
            raise BadInput("A password has at most 1024 characters.")
        proven = self._link(link, firm_code, address) if kind == DEVICE else None
        firm = run_read(self.session, lambda: self.session.scalars(select(Firm).where(Firm.code == firm_code)).first())
        if firm is None:
            self.attempts.record("sign-in", address)
            raise Unauthorized(BAD_LOGIN, reason=f"sign-in for unknown firm {firm_code}")
        who = account_key(firm.id, login)
        self.attempts.check(address, account=who)
        account = run_read(
            self.session,
            lambda: self.session.scalars(
                select(Account).where(Account.firm_id == firm.id, Account.login == login)
            ).first(),
        )
        if account is None or not verify_password(account.password_hash, password):
            self.attempts.record("sign-in", address, account=who)
            raise Unauthorized(BAD_LOGIN, reason=f"failed sign-in for {login} of firm {firm_code} from {address}")
        if account.disabled:
            raise Forbidden("This account is disabled. Ask the vendor.", code="account_disabled")
        rehash = _hash_password(password) if account.password_hash and needs_rehash(account.password_hash) else None

        def tx() -> dict[str, Any]:
            if rehash is not None:
                self.session.execute(update(Account).where(Account.id == account.id).values(password_hash=rehash))
            device = self._linked(account, proven, address) if proven is not None else None
            return self._open(account, firm.code, kind, address, device)

        return run_write(self.session, tx)

    # ---------------------------------------------------------------- sign-in by code

    def start(self, *, link: Any, address: str, base_url: str) -> dict[str, Any]:
        """A device asks to sign in: its device code (secret) and the code the person confirms."""
        proven = self._link(link, None, address)
        now = self.now()

        def tx() -> dict[str, Any]:
            firm = self.session.scalars(select(Firm).where(Firm.code == proven.firm_code)).first()
            if firm is None:
                raise NotFound("firm", f"There is no firm {proven.firm_code} in this Central. Check the firm code.")
            recent = self.session.scalar(
                select(func.count())
                .select_from(DeviceAuthorization)
                .where(
                    DeviceAuthorization.address == address,
                    DeviceAuthorization.created > now - self.ctx.settings.attempt_window,
                )
            )
            if (recent or 0) >= CODES_PER_ADDRESS:
                raise TooManySignIns(self.ctx.settings.attempt_window)
            self.session.execute(delete(DeviceAuthorization).where(DeviceAuthorization.expires <= now))
            device_code = secrets.token_urlsafe(32)
            user_code = new_user_code()
            while self.session.scalar(select(DeviceAuthorization.id).where(DeviceAuthorization.user_code == user_code)):
                user_code = new_user_code()  # pragma: no cover - one in 2.5e10 per live code
            self.session.add(
                DeviceAuthorization(
                    code_hash=token_hash(device_code),
                    user_code=user_code,
                    firm_id=firm.id,
                    device_name=proven.name,
                    serial=proven.serial,
                    sign_pub=proven.sign_pub,
                    address=address[:64],
                    created=now,
                    expires=now + CODE_TTL,
                    state="pending",
                )
            )
            shown = show_user_code(user_code)
            uri = f"{base_url}/cloud/device"
            return {
                "device_code": device_code,
                "user_code": shown,
                "verification_uri": uri,
                "verification_uri_complete": f"{uri}?code={shown}",
                "expires_in": CODE_TTL,
                "interval": POLL_INTERVAL,
            }

        return run_write(self.session, tx)

    def code_firm(self, user_code: Any, address: str) -> int:
        """The firm a waiting user code signs in to (the browser's sign-in form names no
        firm: the code does); a code that waits for nothing is counted as a failed attempt."""
        self.attempts.check(address, sign_in=True)
        code = normalize_user_code(user_code)

        def read() -> int | None:
            return self.session.scalar(
                select(Firm.code)
                .join(DeviceAuthorization, DeviceAuthorization.firm_id == Firm.id)
                .where(*self._waiting(code))
            )

        firm_code = run_read(self.session, read) if code else None
        if firm_code is None:
            self.attempts.record("device-code", address)
            raise NotFound("code", "This code is not one waiting for you: check it, or start again on the device.")
        return int(firm_code)

    def pending(self, user_code: Any, person: Person, address: str) -> dict[str, Any]:
        """What the confirm page shows of a code: the device's name and address, when it
        asked. A code of another firm is as unknown as a mistyped one (and counted)."""
        code = normalize_user_code(user_code)
        row = run_read(self.session, lambda: self._pending(code, person)) if code else None
        if row is None:
            self.attempts.record("device-code", address)
            raise NotFound("code", "This code is not one waiting for you: check it, or start again on the device.")
        return {
            "user_code": show_user_code(row.user_code),
            "device_name": row.device_name,
            "address": row.address,
            "serial": row.serial,
            "created": row.created,
            "expires": row.expires,
        }

    def decide(self, user_code: Any, person: Person, address: str, *, approve: bool) -> dict[str, Any]:
        """The person confirms (or refuses) the device sign-in of ``user_code``."""
        self.attempts.check(address, sign_in=True)
        code = normalize_user_code(user_code)

        def tx() -> DeviceAuthorization | None:
            row = self._pending(code, person, lock=True) if code else None
            if row is not None:
                row.state = "approved" if approve else "denied"
                row.account_id = person.account_id
                self.accounts.audit_person(
                    person, "device.approve" if approve else "device.deny", device=row.device_name, serial=row.serial
                )
            return row

        row = run_write(self.session, tx)
        if row is None:
            self.attempts.record("device-code", address)
            raise NotFound("code", "This code is not one waiting for you: check it, or start again on the device.")
        return {"approved": approve, "device_name": row.device_name}

    def poll(self, device_code: Any, address: str) -> dict[str, Any]:
        """The device asks whether its code was confirmed: its session once it was."""
        if not isinstance(device_code, str) or len(device_code) > 128:
            raise BadInput("device_code is the code Central gave the device.")
        now = self.now()

        def tx() -> dict[str, Any] | ServiceError:
            row = self.session.scalars(
                select(DeviceAuthorization)
                .where(DeviceAuthorization.code_hash == token_hash(device_code))
                .with_for_update()
            ).first()
            if row is None or row.state == "used":
                return BadInput("This device code is not known (or was used): start again.", code="invalid_grant")
            if row.expires <= now:
                return BadInput("The code expired: start again ('licentia cloud login').", code="expired_token")
            if row.state == "denied":
                return Forbidden("The sign-in was refused in the browser.", code="access_denied")
            if row.state == "pending":
                early = row.polled is not None and now - row.polled < POLL_INTERVAL
                row.polled = now
                if early:
                    return BadInput(f"Poll at most every {POLL_INTERVAL} s.", code="slow_down")
                return BadInput("Waiting for the person to confirm in the browser.", code="authorization_pending")
            row.state = "used"
            account = self.session.get(Account, row.account_id)
            firm_code = self.session.scalar(select(Firm.code).where(Firm.id == row.firm_id))
            if account is None or firm_code is None or account.disabled:
                return Forbidden("This account is disabled. Ask the vendor.", code="account_disabled")
            proven = cloudlink.Link(
                serial=row.serial, sign_pub=row.sign_pub, firm_code=firm_code, name=row.device_name, time=row.created
            )
            device = self._linked(account, proven, address)
            return self._open(account, firm_code, DEVICE, address, device)

        out = run_write(self.session, tx)
        if isinstance(out, ServiceError):
            raise out
        return out

    # ---------------------------------------------------------------- sessions

    def authenticate(self, token: str | None, kind: str | tuple[str, ...]) -> Person:
        """The person of a live session of ``kind`` (or of one of several kinds, which live
        as long: ``device`` and ``user``); Unauthorized otherwise."""
        return self._session(token, kind)[0]

    def device(self, token: str | None) -> tuple[Person, Row]:
        """The person of a live device session and its row: the linked device's ``serial``,
        ``sign_pub`` and ``name`` (None once unlinked), read in one statement."""
        person, row = self._session(token, DEVICE)
        return person, row

    def web(self, token: str | None) -> tuple[Person, str]:
        """The person of a live browser sign-in and its CSRF token; Unauthorized otherwise."""
        person, row = self._session(token, WEB)
        if not row.csrf:
            raise Unauthorized("Sign in first.")
        return person, str(row.csrf)

    def _session(self, token: str | None, kind: str | tuple[str, ...]) -> tuple[Person, Row]:
        """The person of a live session of ``kind`` and the session's row (with its linked
        device's columns, None for a browser's or once unlinked), in one statement (compiled
        once: it runs on every call of a signed-in device); Unauthorized otherwise."""
        kinds = (kind,) if isinstance(kind, str) else kind
        if not token or not token.startswith(TOKEN_PREFIX) or len(token) > 128:
            raise Unauthorized(SIGN_IN_AGAIN if DEVICE in kinds else "Sign in first.")
        now = self.now()
        idle, most = self._lifetime(kinds[0])
        with protocol_for(self.ctx.db.engine).transaction(write=False) as tx:
            row = tx.first(Q_SESSION, {"token_hash": token_hash(token), "kinds": list(kinds)})
        if row is None:
            raise Unauthorized(SIGN_IN_AGAIN, reason="unknown session token")
        if now - row.seen > idle or now - row.created > most or row.disabled:
            raise Unauthorized(SIGN_IN_AGAIN, reason=f"session of {row.login} expired or account disabled")
        if now - row.seen >= SEEN_EVERY:

            def touch() -> None:
                self.session.execute(update(AccountSession).where(AccountSession.id == row.session_id).values(seen=now))
                if row.device_id is not None:
                    self.session.execute(update(CloudDevice).where(CloudDevice.id == row.device_id).values(seen=now))

            run_write(self.session, touch)
        person = Person(
            account_id=row.account_id,
            login=row.login,
            role=AccountRole(row.role),
            firm_id=row.firm_id,
            firm_code=row.firm_code,
            customer_id=row.customer_id,
            session_id=row.session_id,
            device_id=row.device_id,
        )
        return person, row

    def sign_out(self, person: Person) -> dict[str, Any]:
        """End this session; a device session also unlinks its device."""

        def tx() -> dict[str, Any]:
            self.session.execute(delete(AccountSession).where(AccountSession.id == person.session_id))
            if person.device_id is not None:
                self._unlink(person.account_id, person.device_id, "self")
            return {"signed_out": True, "device_unlinked": person.device_id is not None}

        return run_write(self.session, tx)

    def me(self, person: Person) -> dict[str, Any]:
        def tx() -> dict[str, Any]:
            account = self.session.get(Account, person.account_id)
            assert account is not None  # noqa: S101 - authenticated just now
            view = {
                "firm_code": person.firm_code,
                "login": account.login,
                "name": account.name,
                "role": account.role,
                "customer": self.accounts.customer_number(account),
                "groups": self.accounts.groups_of(account.id),
                "device": str(person.device_id) if person.device_id else None,
            }
            return view

        return run_read(self.session, tx)

    def devices(self, person: Person) -> list[dict[str, Any]]:
        return run_read(self.session, lambda: self.accounts.devices_of(person.account_id))

    def unlink(self, person: Person, device: str) -> dict[str, Any]:
        """Unlink one of the person's devices (its sessions end with it)."""
        try:
            device_id = uuid.UUID(device)
        except (ValueError, TypeError, AttributeError):
            raise NotFound("device", "You have no such device: 'licentia cloud devices' lists yours.") from None

        def tx() -> dict[str, Any]:
            if device_id == person.device_id:
                done = self._unlink(person.account_id, device_id, "self")  # this device: a sign-out
            else:
                self._check_swaps(person)
                done = self._unlink(person.account_id, device_id, "swap")
            if not done:
                raise NotFound("device", "You have no such device: 'licentia cloud devices' lists yours.")
            self.accounts.audit_person(person, "device.unlink", device=str(device_id))
            return {"device": str(device_id), "unlinked": True}

        return run_write(self.session, tx)

    def change_password(self, person: Person, old: str, new: str, address: str) -> dict[str, Any]:
        """A new password for the person's own account (the old one checked): every other
        session ends and every other device is unlinked."""
        check_password(new)
        self.attempts.check(address, account=account_key(person.firm_id, person.login))
        account = run_read(self.session, lambda: self.session.get(Account, person.account_id))
        if account is None or not isinstance(old, str) or not verify_password(account.password_hash, old):
            self.attempts.record("password", address, account=account_key(person.firm_id, person.login))
            raise Unauthorized("The current password is not right.")
        encoded = _hash_password(new)

        def tx() -> dict[str, Any]:
            self.session.execute(update(Account).where(Account.id == person.account_id).values(password_hash=encoded))
            ended = changed_rows(
                self.session.execute(
                    delete(AccountSession).where(
                        AccountSession.account_id == person.account_id, AccountSession.id != person.session_id
                    )
                )
            )
            others = self.session.scalars(
                select(CloudDevice.id).where(
                    CloudDevice.account_id == person.account_id,
                    CloudDevice.unlinked.is_(None),
                    CloudDevice.id != person.device_id,
                )
            ).all()
            for device_id in others:
                self._unlink(person.account_id, device_id, "reset")
            self.accounts.audit_person(person, "account.password", ended_sessions=ended)
            return {"password": "changed", "sessions_ended": ended, "devices_unlinked": len(others)}

        return run_write(self.session, tx)

    # ---------------------------------------------------------------- inside

    def _link(self, link: Any, firm_code: int | None, address: str) -> cloudlink.Link:
        try:
            proven = cloudlink.verify_link(link, self.now())
        except DocumentInvalid as exc:
            self.attempts.record("cloud-link", address)
            raise BadInput(
                "The device's proof is not valid: sign in again from the device (is its clock right?).",
                code="invalid_device_proof",
                reason=f"cloud-link from {address}: {exc.reason}",
            ) from None
        if firm_code is not None and proven.firm_code != firm_code:
            raise BadInput("The device's proof names another firm.", code="invalid_device_proof")
        return proven

    def _lifetime(self, kind: str) -> tuple[int, int]:
        """How long a session of ``kind`` lives unused, and at most (seconds)."""
        s = self.ctx.settings
        return (s.web_session_idle, s.web_session_max) if kind == WEB else (s.session_idle, s.session_max)

    def _waiting(self, code: str | None) -> tuple[Any, ...]:
        """The conditions of a user code that still waits for its person."""
        return (
            DeviceAuthorization.user_code == code,
            DeviceAuthorization.state == "pending",
            DeviceAuthorization.expires > self.now(),
        )

    def _pending(self, code: str | None, person: Person, *, lock: bool = False) -> DeviceAuthorization | None:
        stmt = select(DeviceAuthorization).where(*self._waiting(code), DeviceAuthorization.firm_id == person.firm_id)
        if lock:
            stmt = stmt.with_for_update()
        return self.session.scalars(stmt).first()

    def _linked(self, account: Account, proven: cloudlink.Link, address: str) -> CloudDevice:
        """The account's live link of this container (the same key), or a new one."""
        now = self.now()
        device = self.session.scalars(
            select(CloudDevice).where(
                CloudDevice.account_id == account.id,
                CloudDevice.serial == proven.serial,
                CloudDevice.sign_pub == proven.sign_pub,
                CloudDevice.unlinked.is_(None),
            )
        ).first()
        if device is None:
            device = CloudDevice(
                account_id=account.id,
                firm_id=account.firm_id,
                serial=proven.serial,
                sign_pub=proven.sign_pub,
                name=proven.name,
                linked=now,
                address=address[:64],
                seen=now,
            )
            self.session.add(device)
            self.session.flush()
        else:
            device.name, device.address, device.seen = proven.name, address[:64], now
        return device

    def _open(
        self, account: Account, firm_code: int, kind: str, address: str, device: CloudDevice | None
    ) -> dict[str, Any]:
        """A new session (inside a write transaction); the account's expired ones go."""
        now = self.now()
        idle, most = self._lifetime(kind)
        self.session.execute(
            delete(AccountSession).where(
                AccountSession.account_id == account.id,
                AccountSession.kind == kind,
                (AccountSession.seen < now - idle) | (AccountSession.created < now - most),
            )
        )
        token = new_token()
        csrf = secrets.token_urlsafe(32) if kind == WEB else None
        self.session.add(
            AccountSession(
                token_hash=token_hash(token),
                account_id=account.id,
                kind=kind,
                device_id=device.id if device else None,
                csrf=csrf,
                address=address[:64],
                created=now,
                seen=now,
            )
        )
        out: dict[str, Any] = {
            "session": token,
            "firm_code": firm_code,
            "login": account.login,
            "role": account.role,
            "idle_expiry": idle,
            "expires": now + most,
        }
        if device is not None:
            out["device"] = str(device.id)
        if csrf is not None:
            out["csrf"] = csrf
        return out

    def _check_swaps(self, person: Person) -> None:
        """A person unlinks at most LICENTIA_CLOUD_DEVICE_SWAPS other devices in 30 days (a
        swap frees a personal license's device seat for another device)."""
        allowed = self.ctx.settings.cloud_device_swaps
        since = self.now() - SWAP_PERIOD
        times = self.session.scalars(
            select(CloudDevice.unlinked)
            .where(
                CloudDevice.account_id == person.account_id,
                CloudDevice.unlinked_by == "swap",
                CloudDevice.unlinked > since,
            )
            .order_by(CloudDevice.unlinked)
        ).all()
        if len(times) >= allowed:
            oldest = times[len(times) - allowed] if allowed else self.now()
            until = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime((oldest or 0) + SWAP_PERIOD))
            raise TooManyDeviceSwaps(allowed, until)

    def _unlink(self, account_id: uuid.UUID, device_id: uuid.UUID, by: str) -> bool:
        done = changed_rows(
            self.session.execute(
                update(CloudDevice)
                .where(
                    CloudDevice.id == device_id, CloudDevice.account_id == account_id, CloudDevice.unlinked.is_(None)
                )
                .values(unlinked=self.now(), unlinked_by=by)
            )
        )
        self.session.execute(delete(AccountSession).where(AccountSession.device_id == device_id))
        return bool(done)
