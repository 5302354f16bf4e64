"""Cloud accounts and customers' groups: made by the vendor (an API key), and groups'
members changed by their admins (a signed-in ``Person``).

An account belongs to one firm: its login is unique within the firm, and nothing of
another firm's accounts is visible to or changeable by the firm's vendor key or people.
A customer's person (role ``customer-user`` or ``customer-admin``) names the customer;
groups belong to a customer and hold only that customer's people. A customer admin
administers every group of the customer; a member with ``admin`` its own group.
"""

from __future__ import annotations

import functools
import re
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import CursorResult, delete, select, update

from ...core.errors import BadInput, Conflict, Forbidden, NotFound
from ..db import run_read, run_write
from ..models import (
    CUSTOMER_ROLES,
    Account,
    AccountGroup,
    AccountRole,
    AccountSession,
    CloudDevice,
    Customer,
    Firm,
    GroupMember,
    Role,
)
from .base import Actor, Service
from .catalog import PAGE_SIZE, page

MIN_PASSWORD = 10
MAX_PASSWORD = 1024  # hashing costs the same for any length; a bound keeps a request small
MAX_LOGIN = 254
MAX_GROUP_NAME = 100


@dataclass(frozen=True)
class Person:
    """A signed-in account: who it is, its firm and customer, and the session it used."""

    account_id: uuid.UUID
    login: str
    role: AccountRole
    firm_id: uuid.UUID
    firm_code: int
    customer_id: uuid.UUID | None
    session_id: uuid.UUID
    device_id: uuid.UUID | None = None

    @property
    def audit_id(self) -> str:
        """How the audit log names this person (its ``actor`` column holds 32 characters)."""
        return "account:" + self.account_id.hex[:24]


# ---------------------------------------------------------------- logins and passwords


_LOGIN = re.compile(r"[a-z0-9][a-z0-9@._+-]{0,253}")


def normalize_login(text: Any) -> str:
    """A login as stored: trimmed and lower case; letters, digits and ``@._+-`` (an e-mail
    address, a user name), at most 254 characters: safe in a URL path as it is."""
    login = text.strip().lower() if isinstance(text, str) else ""
    if not login.isascii() or not _LOGIN.fullmatch(login):
        raise BadInput(
            f"A login is 1 to {MAX_LOGIN} letters, digits and @ . _ + -, starting with a letter or digit, "
            "like an e-mail address."
        )
    return login


def check_password(password: Any) -> str:
    if not isinstance(password, str) or not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise BadInput(f"A password has {MIN_PASSWORD} to {MAX_PASSWORD} characters.")
    if not password.strip():
        raise BadInput("A password is more than spaces.")
    return password


@functools.cache
def _hasher() -> Any:
    """argon2id with the RFC 9106 low-memory parameters (64 MiB, 3 passes, 4 lanes)."""
    from argon2 import PasswordHasher

    return PasswordHasher()


def hash_password(password: str) -> str:
    encoded: str = _hasher().hash(password)
    return encoded


@functools.cache
def _unknown_hash() -> str:
    """A hash to verify against when the login is unknown: the answer takes as long."""
    return hash_password("licentia: no such account")


def verify_password(encoded: str | None, password: str) -> bool:
    """Whether ``password`` matches ``encoded`` (None: an account without a password, which
    costs a verification all the same)."""
    from argon2.exceptions import InvalidHashError, VerificationError

    try:
        ok: bool = _hasher().verify(encoded or _unknown_hash(), password)
    except (VerificationError, InvalidHashError):
        return False
    return ok and encoded is not None


def needs_rehash(encoded: str) -> bool:
    return bool(_hasher().check_needs_rehash(encoded))


def changed_rows(result: Any) -> int:
    """How many rows an UPDATE or DELETE changed."""
    counted: CursorResult[Any] = result
    return int(counted.rowcount or 0)


# ---------------------------------------------------------------- views


def account_view(account: Account, firm_code: int, customer: str | None) -> dict[str, Any]:
    return {
        "firm_code": firm_code,
        "login": account.login,
        "name": account.name,
        "role": account.role,
        "customer": customer,
        "disabled": account.disabled,
        "has_password": account.password_hash is not None,
        "created": account.created,
    }


def _role(text: str) -> AccountRole:
    try:
        return AccountRole(text)
    except ValueError:
        raise BadInput(f"role is one of {', '.join(r.value for r in AccountRole)}.") from None


def _group_name(text: Any) -> str:
    if not isinstance(text, str) or not 1 <= len(name := text.strip()) <= MAX_GROUP_NAME or not name.isprintable():
        raise BadInput(f"A group name is 1 to {MAX_GROUP_NAME} printable characters.")
    return name


class AccountService(Service):
    # ---------------------------------------------------------------- accounts (the vendor)

    def create(
        self,
        actor: Actor,
        *,
        firm_code: int | None,
        login: str,
        name: str,
        role: str,
        customer: str | None = None,
        password: str | None = None,
    ) -> dict[str, Any]:
        login = normalize_login(login)
        name = name.strip()
        if not name or len(name) > 200:
            raise BadInput("An account needs a name of at most 200 characters.")
        role_value = _role(role)
        if role_value in CUSTOMER_ROLES and customer is None:
            raise BadInput(f"A {role_value.value} account belongs to a customer: give its customer number.")
        if role_value not in CUSTOMER_ROLES and customer is not None:
            raise BadInput(f"A {role_value.value} account belongs to no customer: leave the customer out.")
        encoded = hash_password(check_password(password)) if password is not None else None

        def tx() -> dict[str, Any]:
            firm = self.scoped_firm(actor, firm_code)
            cust = self.customer(firm, customer) if customer is not None else None
            if self.account(firm, login, missing_ok=True) is not None:
                raise Conflict("account_exists", f"Firm {firm.code} already has an account {login}.")
            account = Account(
                firm_id=firm.id,
                login=login,
                name=name,
                role=role_value.value,
                customer_id=cust.id if cust else None,
                password_hash=encoded,
                disabled=False,
                created=self.now(),
            )
            self.session.add(account)
            self.session.flush()
            view = account_view(account, firm.code, customer)
            self.audit(actor, "account.create", firm.code, login=login, role=role_value.value, customer=customer)
            return view

        return run_write(self.session, tx)

    def get(self, actor: Actor, login: str, firm_code: int | None = None) -> dict[str, Any]:
        login = normalize_login(login)

        def tx() -> dict[str, Any]:
            firm = self.scoped_firm(actor, firm_code)
            account = self.account(firm, login)
            view = account_view(account, firm.code, self.customer_number(account))
            view["groups"] = self.groups_of(account.id)
            view["devices"] = self.devices_of(account.id)
            return view

        return run_read(self.session, tx)

    def list_accounts(
        self,
        actor: Actor,
        firm_code: int | None = None,
        *,
        customer: str | None = None,
        limit: int = PAGE_SIZE,
        offset: int = 0,
    ) -> list[dict[str, Any]]:
        """A page of the firm's accounts by login (a customer's only, when named)."""
        limit, offset = page(limit, offset)

        def tx() -> list[dict[str, Any]]:
            firm = self.scoped_firm(actor, firm_code)
            stmt = (
                select(Account, Customer.number)
                .outerjoin(Customer, Customer.id == Account.customer_id)
                .where(Account.firm_id == firm.id)
            )
            if customer is not None:
                stmt = stmt.where(Account.customer_id == self.customer(firm, customer).id)
            rows = self.session.execute(stmt.order_by(Account.login).limit(limit).offset(offset)).all()
            return [account_view(a, firm.code, number) for a, number in rows]

        return run_read(self.session, tx)

    def update(
        self,
        actor: Actor,
        login: str,
        firm_code: int | None = None,
        *,
        name: str | None = None,
        disabled: bool | None = None,
        password: str | None = None,
    ) -> dict[str, Any]:
        """Rename, disable or enable an account, or set its password. Disabling it, or a new
        password, ends its sessions and unlinks its devices: each must sign in again."""
        login = normalize_login(login)
        if name is not None:
            name = name.strip()
            if not name or len(name) > 200:
                raise BadInput("An account needs a name of at most 200 characters.")
        encoded = hash_password(check_password(password)) if password is not None else None

        def tx() -> dict[str, Any]:
            firm = self.scoped_firm(actor, firm_code)
            account = self.account(firm, login, lock=True)
            changed: dict[str, Any] = {}
            if name is not None and name != account.name:
                account.name = changed["name"] = name
            if disabled is not None and disabled != account.disabled:
                account.disabled = changed["disabled"] = disabled
            if encoded is not None:
                account.password_hash = encoded
                changed["password"] = "set"  # noqa: S105 - what the audit row says, not a password
            ended = self.end_access(account.id) if account.disabled or encoded is not None else 0
            if changed:
                self.audit(actor, "account.update", firm.code, login=login, ended_sessions=ended, **changed)
            return account_view(account, firm.code, self.customer_number(account))

        return run_write(self.session, tx)

    def reset(self, actor: Actor, login: str, firm_code: int | None = None) -> dict[str, Any]:
        """End every session of the account and unlink its devices: each must sign in again."""
        login = normalize_login(login)

        def tx() -> dict[str, Any]:
            firm = self.scoped_firm(actor, firm_code)
            account = self.account(firm, login, lock=True)
            devices = len(self.devices_of(account.id))
            ended = self.end_access(account.id)
            self.audit(actor, "account.reset", firm.code, login=login, sessions=ended, devices=devices)
            return {"firm_code": firm.code, "login": login, "sessions_ended": ended, "devices_unlinked": devices}

        return run_write(self.session, tx)

    def end_access(self, account_id: uuid.UUID) -> int:
        """Inside a write transaction: delete the account's sessions, unlink its devices;
        how many sessions ended."""
        ended = changed_rows(
            self.session.execute(delete(AccountSession).where(AccountSession.account_id == account_id))
        )
        self.session.execute(
            update(CloudDevice)
            .where(CloudDevice.account_id == account_id, CloudDevice.unlinked.is_(None))
            .values(unlinked=self.now(), unlinked_by="reset")
        )
        return int(ended or 0)

    def devices_of(self, account_id: uuid.UUID) -> list[dict[str, Any]]:
        rows = self.session.scalars(
            select(CloudDevice)
            .where(CloudDevice.account_id == account_id, CloudDevice.unlinked.is_(None))
            .order_by(CloudDevice.linked, CloudDevice.id)
        )
        return [device_view(d) for d in rows]

    # ---------------------------------------------------------------- groups (the vendor)

    def create_group(self, actor: Actor, customer: str, name: str, firm_code: int | None = None) -> dict[str, Any]:
        name = _group_name(name)

        def tx() -> dict[str, Any]:
            firm = self.scoped_firm(actor, firm_code)
            cust = self.customer(firm, customer)
            if self.group(cust, name, missing_ok=True) is not None:
                raise Conflict("group_exists", f"Customer {customer} already has a group {name}.")
            group = AccountGroup(firm_id=firm.id, customer_id=cust.id, name=name, created=self.now())
            self.session.add(group)
            self.session.flush()
            self.audit(actor, "group.create", firm.code, customer=customer, group=name)
            return self._group_view(group, firm.code, cust.number)

        return run_write(self.session, tx)

    def list_groups(
        self,
        actor: Actor,
        firm_code: int | None = None,
        *,
        customer: str | None = None,
        limit: int = PAGE_SIZE,
        offset: int = 0,
    ) -> list[dict[str, Any]]:
        limit, offset = page(limit, offset)

        def tx() -> list[dict[str, Any]]:
            firm = self.scoped_firm(actor, firm_code)
            stmt = (
                select(AccountGroup, Customer.number)
                .join(Customer, Customer.id == AccountGroup.customer_id)
                .where(AccountGroup.firm_id == firm.id)
            )
            if customer is not None:
                stmt = stmt.where(AccountGroup.customer_id == self.customer(firm, customer).id)
            stmt = stmt.order_by(Customer.number, AccountGroup.name).limit(limit).offset(offset)
            return [self._group_view(g, firm.code, number) for g, number in self.session.execute(stmt).all()]

        return run_read(self.session, tx)

    def get_group(self, actor: Actor, customer: str, name: str, firm_code: int | None = None) -> dict[str, Any]:
        name = _group_name(name)

        def tx() -> dict[str, Any]:
            firm = self.scoped_firm(actor, firm_code)
            cust = self.customer(firm, customer)
            group = self.group(cust, name)
            return self._group_view(group, firm.code, cust.number, members=True)

        return run_read(self.session, tx)

    def set_member(
        self, actor: Actor, customer: str, name: str, login: str, *, admin: bool = False, firm_code: int | None = None
    ) -> dict[str, Any]:
        """Add an account of the customer to the group, or change whether it administers it."""
        name, login = _group_name(name), normalize_login(login)

        def tx() -> dict[str, Any]:
            firm = self.scoped_firm(actor, firm_code)
            cust = self.customer(firm, customer)
            group = self.group(cust, name)
            account = self.account(firm, login)
            view = self._put_member(group, account, admin)
            self.audit(actor, "group.member", firm.code, customer=customer, group=name, login=login, admin=admin)
            return view

        return run_write(self.session, tx)

    def remove_member(
        self, actor: Actor, customer: str, name: str, login: str, firm_code: int | None = None
    ) -> dict[str, Any]:
        name, login = _group_name(name), normalize_login(login)

        def tx() -> dict[str, Any]:
            firm = self.scoped_firm(actor, firm_code)
            cust = self.customer(firm, customer)
            group = self.group(cust, name)
            account = self.account(firm, login)
            self._drop_member(group, account)
            self.audit(actor, "group.remove", firm.code, customer=customer, group=name, login=login)
            return self._group_view(group, firm.code, cust.number, members=True)

        return run_write(self.session, tx)

    # ---------------------------------------------------------------- groups (their admins)

    def my_groups(self, person: Person) -> list[dict[str, Any]]:
        """The groups a person sees: every group of the customer for a customer admin, the
        groups it is a member of otherwise (with their members where it administers them)."""

        def tx() -> list[dict[str, Any]]:
            if person.customer_id is None:
                return []
            number = self.number_of(person.customer_id)
            stmt = select(AccountGroup).where(AccountGroup.customer_id == person.customer_id)
            if person.role is not AccountRole.customer_admin:
                stmt = stmt.join(GroupMember, GroupMember.group_id == AccountGroup.id).where(
                    GroupMember.account_id == person.account_id
                )
            out = []
            for group in self.session.scalars(stmt.order_by(AccountGroup.name)):
                out.append(self._group_view(group, person.firm_code, number, members=self.administers(person, group)))
            return out

        return run_read(self.session, tx)

    def person_set_member(self, person: Person, name: str, login: str, *, admin: bool = False) -> dict[str, Any]:
        """A group admin (or the customer admin) adds an account of its customer to a group."""
        name, login = _group_name(name), normalize_login(login)

        def tx() -> dict[str, Any]:
            group, account = self._as_admin(person, name, login)
            view = self._put_member(group, account, admin)
            self.audit_person(person, "group.member", group=name, login=login, admin=admin)
            return view

        return run_write(self.session, tx)

    def person_remove_member(self, person: Person, name: str, login: str) -> dict[str, Any]:
        name, login = _group_name(name), normalize_login(login)

        def tx() -> dict[str, Any]:
            group, account = self._as_admin(person, name, login)
            self._drop_member(group, account)
            self.audit_person(person, "group.remove", group=name, login=login)
            number = self.number_of(group.customer_id)
            return self._group_view(group, person.firm_code, number, members=True)

        return run_write(self.session, tx)

    def reset_group(self, actor: Actor, customer: str, name: str, firm_code: int | None = None) -> dict[str, Any]:
        """The vendor resets a group's access credentials: every member's sessions end and
        every member's devices are unlinked (each signs in again)."""
        name = _group_name(name)

        def tx() -> dict[str, Any]:
            firm = self.scoped_firm(actor, firm_code)
            group = self.group(self.customer(firm, customer), name)
            done = self._reset_members(group, keep=None)
            self.audit(actor, "group.reset", firm.code, customer=customer, group=name, **done)
            return {"firm_code": firm.code, "customer": customer, "name": name, **done}

        return run_write(self.session, tx)

    def person_reset_group(self, person: Person, name: str) -> dict[str, Any]:
        """A group's admin (or the customer's) resets the group's access credentials: every
        other member must sign in again on each device (the admin's own account is kept)."""
        name = _group_name(name)

        def tx() -> dict[str, Any]:
            group = self.administered_group(person, name)
            done = self._reset_members(group, keep=person.account_id)
            self.audit_person(person, "group.reset", group=name, **done)
            number = self.number_of(group.customer_id)
            return {"firm_code": person.firm_code, "customer": number, "name": name, **done}

        return run_write(self.session, tx)

    def _reset_members(self, group: AccountGroup, *, keep: uuid.UUID | None) -> dict[str, int]:
        stmt = select(GroupMember.account_id).where(GroupMember.group_id == group.id)
        if keep is not None:
            stmt = stmt.where(GroupMember.account_id != keep)
        members = self.session.scalars(stmt).all()
        devices = sessions = 0
        for account_id in members:
            devices += len(self.devices_of(account_id))
            sessions += self.end_access(account_id)
        return {"members": len(members), "sessions_ended": sessions, "devices_unlinked": devices}

    def administered_group(self, person: Person, name: str) -> AccountGroup:
        group = None
        if person.customer_id is not None:
            group = self.session.scalars(
                select(AccountGroup).where(AccountGroup.customer_id == person.customer_id, AccountGroup.name == name)
            ).first()
        if group is None:
            raise NotFound("group", f"You have no group {name}. 'licentia cloud groups' lists yours.")
        if not self.administers(person, group):
            raise Forbidden(f"You do not administer group {name}: ask its admin or your customer admin.")
        return group

    def _as_admin(self, person: Person, name: str, login: str) -> tuple[AccountGroup, Account]:
        """The person's customer's group ``name`` and account ``login``, when the person
        administers the group; the same NotFound for a group or login of another customer."""
        group = self.administered_group(person, name)
        account = self.session.scalars(
            select(Account).where(
                Account.firm_id == person.firm_id, Account.login == login, Account.customer_id == group.customer_id
            )
        ).first()
        if account is None:
            raise NotFound("account", f"Your organisation has no account {login}. Ask the vendor to create it.")
        return group, account

    def administers(self, person: Person, group: AccountGroup) -> bool:
        if group.customer_id != person.customer_id:
            return False
        if person.role is AccountRole.customer_admin:
            return True
        admin = self.session.scalar(
            select(GroupMember.admin).where(
                GroupMember.group_id == group.id, GroupMember.account_id == person.account_id
            )
        )
        return bool(admin)

    def audit_person(self, person: Person, action: str, **detail: Any) -> None:
        self.audit(Actor(person.audit_id, Role.account), action, person.firm_code, **detail)

    # ---------------------------------------------------------------- shared

    def _put_member(self, group: AccountGroup, account: Account, admin: bool) -> dict[str, Any]:
        if account.customer_id != group.customer_id:
            raise BadInput(f"Account {account.login} is not a person of the group's customer.")
        row = self.session.get(GroupMember, (group.id, account.id), with_for_update=True)
        if row is None:
            self.session.add(GroupMember(group_id=group.id, account_id=account.id, admin=admin, added=self.now()))
        else:
            row.admin = admin
        self.session.flush()
        number = self.number_of(group.customer_id)
        firm_code = self.session.scalar(select(Firm.code).where(Firm.id == group.firm_id))
        assert firm_code is not None  # noqa: S101 - a group's firm exists (a foreign key)
        return self._group_view(group, firm_code, number, members=True)

    def _drop_member(self, group: AccountGroup, account: Account) -> None:
        gone = changed_rows(
            self.session.execute(
                delete(GroupMember).where(GroupMember.group_id == group.id, GroupMember.account_id == account.id)
            )
        )
        if not gone:
            raise NotFound("member", f"Account {account.login} is not in group {group.name}.")

    def _group_view(
        self, group: AccountGroup, firm_code: int, customer: str | None, *, members: bool = False
    ) -> dict[str, Any]:
        view: dict[str, Any] = {"firm_code": firm_code, "customer": customer, "name": group.name}
        if members:
            rows = self.session.execute(
                select(Account.login, Account.name, GroupMember.admin)
                .join(GroupMember, GroupMember.account_id == Account.id)
                .where(GroupMember.group_id == group.id)
                .order_by(Account.login)
            ).all()
            view["members"] = [{"login": r.login, "name": r.name, "admin": r.admin} for r in rows]
        return view

    def groups_of(self, account_id: uuid.UUID) -> list[dict[str, Any]]:
        rows = self.session.execute(
            select(AccountGroup.name, GroupMember.admin)
            .join(GroupMember, GroupMember.group_id == AccountGroup.id)
            .where(GroupMember.account_id == account_id)
            .order_by(AccountGroup.name)
        ).all()
        return [{"name": r.name, "admin": r.admin} for r in rows]

    def account(self, firm: Firm, login: str, *, lock: bool = False, missing_ok: bool = False) -> Account:
        stmt = select(Account).where(Account.firm_id == firm.id, Account.login == login)
        if lock:
            stmt = stmt.with_for_update()
        row = self.session.scalars(stmt).first()
        if row is None and not missing_ok:
            raise NotFound("account", f"Firm {firm.code} has no account {login}. Check the login.")
        return row  # type: ignore[return-value]  # None only with missing_ok

    def customer(self, firm: Firm, number: str) -> Customer:
        row = self.session.scalars(
            select(Customer).where(Customer.firm_id == firm.id, Customer.number == number)
        ).first()
        if row is None:
            raise NotFound("customer", f"Firm {firm.code} has no customer {number}. Check the customer number.")
        return row

    def customer_number(self, account: Account) -> str | None:
        return self.number_of(account.customer_id)

    def number_of(self, customer_id: uuid.UUID | None) -> str | None:
        """A customer's number, by its id (None: no customer)."""
        if customer_id is None:
            return None
        return self.session.scalar(select(Customer.number).where(Customer.id == customer_id))

    def group(self, customer: Customer, name: str, *, missing_ok: bool = False) -> AccountGroup:
        row = self.session.scalars(
            select(AccountGroup).where(AccountGroup.customer_id == customer.id, AccountGroup.name == name)
        ).first()
        if row is None and not missing_ok:
            raise NotFound("group", f"Customer {customer.number} has no group {name}. Check the group name.")
        return row  # type: ignore[return-value]  # None only with missing_ok


def device_view(device: CloudDevice) -> dict[str, Any]:
    return {
        "device": str(device.id),
        "name": device.name,
        "serial": device.serial,
        "linked": device.linked,
        "seen": device.seen,
        "address": device.address,
    }
