"""``licentia vendor account ...`` and ``licentia vendor group ...``: the people who sign
in to the vendor's cloud, and customers' groups of them (the vendor's API key).

A password is read from stdin (``--password-stdin``), never taken as an argument."""

from __future__ import annotations

import sys
from enum import StrEnum
from typing import Annotated
from urllib.parse import quote

import typer

from . import _common
from .vendor import (
    PAGE_SIZE,
    CentralOpt,
    Column,
    FirmOpt,
    JsonOpt,
    KeyOpt,
    LimitOpt,
    OffsetOpt,
    _call,
    _guard,
    _list,
    _note,
    _out,
    _show,
    firm_query,
)

account_app = typer.Typer(no_args_is_help=True, help="Cloud accounts: the people who sign in.")
group_app = typer.Typer(no_args_is_help=True, help="Customers' groups of accounts.")


class AccountRole(StrEnum):
    staff = "staff"
    partner = "partner"
    customer_user = "customer-user"
    customer_admin = "customer-admin"


PasswordOpt = Annotated[
    bool, typer.Option("--password-stdin", help="Read the account's password from stdin (one line).")
]


def _password() -> str:
    line = sys.stdin.readline().rstrip("\r\n")
    if not line:
        _common.fail("give the password as one line on stdin")
    return line


def _q(text: str) -> str:
    return quote(text, safe="@")


@account_app.command("create")
def account_create(
    login: Annotated[str, typer.Argument(help="The login, unique within the firm (an e-mail address).")],
    name: Annotated[str, typer.Option("--name", help="The person's name.")],
    role: Annotated[AccountRole, typer.Option("--role", help="Who the person is.")] = AccountRole.customer_user,
    customer: Annotated[
        str | None, typer.Option("--customer", help="Customer number (customer-user and customer-admin).")
    ] = None,
    password_stdin: PasswordOpt = False,
    firm_code: FirmOpt = None,
    central: CentralOpt = None,
    api_key: KeyOpt = None,
) -> None:
    """Create an account; prints its login. Without a password it cannot sign in yet."""

    def run() -> None:
        body = {"firm_code": firm_code, "login": login, "name": name, "role": role.value, "customer": customer}
        if password_stdin:
            body["password"] = _password()
        made = _call(central, api_key, "POST", "/accounts", {k: v for k, v in body.items() if v is not None})
        _note(
            f"account {made['login']} ({made['role']}"
            + (f" of customer {made['customer']})" if made["customer"] else ")")
        )
        _out(made["login"])

    _guard(run)


ACCOUNT_COLUMNS = [
    Column("login", lambda r: r["login"]),
    Column("name", lambda r: r["name"], wrap=True),
    Column("role", lambda r: r["role"]),
    Column("customer", lambda r: r["customer"]),
    Column("state", lambda r: "disabled" if r["disabled"] else ("active" if r["has_password"] else "no password")),
]


@account_app.command("list")
def account_list(
    customer: Annotated[str | None, typer.Option("--customer", help="Only this customer's people.")] = None,
    as_json: JsonOpt = False,
    limit: LimitOpt = PAGE_SIZE,
    offset: OffsetOpt = 0,
    firm_code: FirmOpt = None,
    central: CentralOpt = None,
    api_key: KeyOpt = None,
) -> None:
    """List the firm's accounts, by login."""
    params = {"firm_code": firm_code, "customer": customer}
    _guard(
        lambda: _list(
            central,
            api_key,
            "accounts",
            "/accounts",
            ACCOUNT_COLUMNS,
            as_json=as_json,
            limit=limit,
            offset=offset,
            params=params,
        )
    )


@account_app.command("show")
def account_show(
    login: Annotated[str, typer.Argument(help="The login.")],
    firm_code: FirmOpt = None,
    central: CentralOpt = None,
    api_key: KeyOpt = None,
) -> None:
    """An account, its groups and its linked devices."""
    params = firm_query(firm_code)
    _guard(lambda: _show(_call(central, api_key, "GET", f"/accounts/{_q(login)}", params=params)))


@account_app.command("set")
def account_set(
    login: Annotated[str, typer.Argument(help="The login.")],
    name: Annotated[str | None, typer.Option("--name", help="A new name.")] = None,
    disable: Annotated[
        bool | None, typer.Option("--disable/--enable", help="Disable the account (its sessions end), or enable it.")
    ] = None,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Set a new password from stdin: every session ends.")
    ] = False,
    firm_code: FirmOpt = None,
    central: CentralOpt = None,
    api_key: KeyOpt = None,
) -> None:
    """Rename, disable or enable an account, or set its password."""

    def run() -> None:
        body = {"firm_code": firm_code, "name": name, "disabled": disable}
        if password_stdin:
            body["password"] = _password()
        body = {k: v for k, v in body.items() if v is not None}
        made = _call(central, api_key, "PATCH", f"/accounts/{_q(login)}", body)
        _note(f"account {made['login']}: {'disabled' if made['disabled'] else 'enabled'}, name {made['name']}")

    _guard(run)


@account_app.command("reset")
def account_reset(
    login: Annotated[str, typer.Argument(help="The login.")],
    firm_code: FirmOpt = None,
    central: CentralOpt = None,
    api_key: KeyOpt = None,
) -> None:
    """End every session of an account and unlink its devices: each must sign in again."""

    def run() -> None:
        params = firm_query(firm_code)
        with_params = f"/accounts/{_q(login)}/reset"
        done = _call(central, api_key, "POST", with_params, params=params)
        _note(
            f"account {done['login']}: {done['sessions_ended']} session(s) ended, "
            f"{done['devices_unlinked']} device(s) unlinked"
        )

    _guard(run)


@account_app.command("cloud")
def account_cloud(
    login: Annotated[str, typer.Argument(help="The login.")],
    firm_code: FirmOpt = None,
    central: CentralOpt = None,
    api_key: KeyOpt = None,
) -> None:
    """The account's personal cloud container and its licenses."""
    _guard(lambda: _show(_call(central, api_key, "GET", f"/accounts/{_q(login)}/cloud", params=firm_query(firm_code))))


# ---------------------------------------------------------------- groups


@group_app.command("create")
def group_create(
    customer: Annotated[str, typer.Argument(help="Customer number.")],
    name: Annotated[str, typer.Argument(help="The group's name, unique for the customer.")],
    firm_code: FirmOpt = None,
    central: CentralOpt = None,
    api_key: KeyOpt = None,
) -> None:
    """Create a group of a customer's people; prints its name."""

    def run() -> None:
        made = _call(
            central,
            api_key,
            "POST",
            f"/customers/{_q(customer)}/groups",
            {"name": name, **({"firm_code": firm_code} if firm_code is not None else {})},
        )
        _note(f"group {made['name']} of customer {made['customer']}")
        _out(made["name"])

    _guard(run)


GROUP_COLUMNS = [Column("customer", lambda r: r["customer"]), Column("group", lambda r: r["name"], wrap=True)]


@group_app.command("list")
def group_list(
    customer: Annotated[str | None, typer.Option("--customer", help="Only this customer's groups.")] = None,
    as_json: JsonOpt = False,
    limit: LimitOpt = PAGE_SIZE,
    offset: OffsetOpt = 0,
    firm_code: FirmOpt = None,
    central: CentralOpt = None,
    api_key: KeyOpt = None,
) -> None:
    """List the firm's groups, by customer and name."""
    params = {"firm_code": firm_code, "customer": customer}
    _guard(
        lambda: _list(
            central,
            api_key,
            "groups",
            "/groups",
            GROUP_COLUMNS,
            as_json=as_json,
            limit=limit,
            offset=offset,
            params=params,
        )
    )


@group_app.command("show")
def group_show(
    customer: Annotated[str, typer.Argument(help="Customer number.")],
    name: Annotated[str, typer.Argument(help="The group.")],
    firm_code: FirmOpt = None,
    central: CentralOpt = None,
    api_key: KeyOpt = None,
) -> None:
    """A group and its members."""
    params = firm_query(firm_code)
    _guard(lambda: _show(_call(central, api_key, "GET", f"/customers/{_q(customer)}/groups/{_q(name)}", params=params)))


@group_app.command("add")
def group_add(
    customer: Annotated[str, typer.Argument(help="Customer number.")],
    name: Annotated[str, typer.Argument(help="The group.")],
    login: Annotated[str, typer.Argument(help="An account of the customer.")],
    admin: Annotated[bool, typer.Option("--admin", help="The account administers the group.")] = False,
    firm_code: FirmOpt = None,
    central: CentralOpt = None,
    api_key: KeyOpt = None,
) -> None:
    """Add an account of the customer to a group (or change whether it administers it)."""

    def run() -> None:
        body = {"admin": admin, **({"firm_code": firm_code} if firm_code is not None else {})}
        _call(central, api_key, "PUT", f"/customers/{_q(customer)}/groups/{_q(name)}/members/{_q(login)}", body)
        _note(f"{login} is in group {name} of customer {customer}" + (" as an admin" if admin else ""))

    _guard(run)


@group_app.command("remove")
def group_remove(
    customer: Annotated[str, typer.Argument(help="Customer number.")],
    name: Annotated[str, typer.Argument(help="The group.")],
    login: Annotated[str, typer.Argument(help="The account to remove.")],
    firm_code: FirmOpt = None,
    central: CentralOpt = None,
    api_key: KeyOpt = None,
) -> None:
    """Remove an account from a group."""

    def run() -> None:
        params = firm_query(firm_code)
        _call(
            central,
            api_key,
            "DELETE",
            f"/customers/{_q(customer)}/groups/{_q(name)}/members/{_q(login)}",
            params=params,
        )
        _note(f"{login} left group {name} of customer {customer}")

    _guard(run)


@group_app.command("cloud")
def group_cloud(
    customer: Annotated[str, typer.Argument(help="Customer number.")],
    name: Annotated[str, typer.Argument(help="The group.")],
    firm_code: FirmOpt = None,
    central: CentralOpt = None,
    api_key: KeyOpt = None,
) -> None:
    """The group's enterprise cloud container and its licenses."""
    path = f"/customers/{_q(customer)}/groups/{_q(name)}/cloud"
    _guard(lambda: _show(_call(central, api_key, "GET", path, params=firm_query(firm_code))))


@group_app.command("reset")
def group_reset(
    customer: Annotated[str, typer.Argument(help="Customer number.")],
    name: Annotated[str, typer.Argument(help="The group.")],
    firm_code: FirmOpt = None,
    central: CentralOpt = None,
    api_key: KeyOpt = None,
) -> None:
    """Reset a group's access credentials: every member's sessions end and every member's
    devices are unlinked (each signs in again)."""

    def run() -> None:
        path = f"/customers/{_q(customer)}/groups/{_q(name)}/reset"
        done = _call(central, api_key, "POST", path, params=firm_query(firm_code))
        _note(
            f"group {name}: {done['members']} member(s), {done['sessions_ended']} session(s) ended, "
            f"{done['devices_unlinked']} device(s) unlinked"
        )

    _guard(run)
