"""Cloud accounts over REST: the vendor's accounts and groups (an API key), and a
signed-in device's own calls under ``/cloud`` (its session: ``Authorization: Bearer
lcs_...``). The browser pages of the device sign-in are in ``api/cloud_pages.py``."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from ..services.catalog import MAX_OFFSET, MAX_PAGE, PAGE_SIZE
from .deps import AccountsDep, CallerDep, CloudDep, PersonDep, SignInDep, client_address
from .schemas import (
    AccountCreate,
    AccountUpdate,
    CloudActivation,
    DeviceStart,
    DeviceToken,
    GroupCreate,
    GroupLicense,
    Member,
    MemberByPerson,
    PasswordChange,
    PasswordSignIn,
)

FirmQuery = Query(default=None, description="admin key only: the firm")
LimitQuery = Query(default=PAGE_SIZE, ge=1, le=MAX_PAGE, description=f"rows in the page (at most {MAX_PAGE})")
OffsetQuery = Query(default=0, ge=0, le=MAX_OFFSET, description="rows to skip: the rows of the pages before")

# ---------------------------------------------------------------- the vendor's accounts and groups

accounts = APIRouter(tags=["accounts"])


@accounts.post("/accounts", status_code=201, summary="Create a cloud account (a person who signs in)")
def create_account(body: AccountCreate, caller: CallerDep, svc: AccountsDep) -> dict[str, Any]:
    return svc.create(
        caller,
        firm_code=body.firm_code,
        login=body.login,
        name=body.name,
        role=body.role,
        customer=body.customer,
        password=body.password,
    )


@accounts.get("/accounts", summary="A page of the firm's accounts, by login")
def list_accounts(
    caller: CallerDep,
    svc: AccountsDep,
    customer: Annotated[str | None, Query(description="only this customer's people")] = None,
    firm_code: int | None = FirmQuery,
    limit: int = LimitQuery,
    offset: int = OffsetQuery,
) -> list[dict[str, Any]]:
    return svc.list_accounts(caller, firm_code, customer=customer, limit=limit, offset=offset)


@accounts.get("/accounts/{login}", summary="One account, its groups and its linked devices")
def get_account(login: str, caller: CallerDep, svc: AccountsDep, firm_code: int | None = FirmQuery) -> dict[str, Any]:
    return svc.get(caller, login, firm_code)


@accounts.patch("/accounts/{login}", summary="Rename, disable or enable an account, or set its password")
def update_account(login: str, body: AccountUpdate, caller: CallerDep, svc: AccountsDep) -> dict[str, Any]:
    return svc.update(caller, login, body.firm_code, name=body.name, disabled=body.disabled, password=body.password)


@accounts.post("/accounts/{login}/reset", summary="End every session of an account and unlink its devices")
def reset_account(login: str, caller: CallerDep, svc: AccountsDep, firm_code: int | None = FirmQuery) -> dict[str, Any]:
    return svc.reset(caller, login, firm_code)


@accounts.post("/customers/{number}/groups", status_code=201, summary="Create a group of a customer's people")
def create_group(number: str, body: GroupCreate, caller: CallerDep, svc: AccountsDep) -> dict[str, Any]:
    return svc.create_group(caller, number, body.name, body.firm_code)


@accounts.get("/groups", summary="A page of the firm's groups, by customer and name")
def list_groups(
    caller: CallerDep,
    svc: AccountsDep,
    customer: Annotated[str | None, Query(description="only this customer's groups")] = None,
    firm_code: int | None = FirmQuery,
    limit: int = LimitQuery,
    offset: int = OffsetQuery,
) -> list[dict[str, Any]]:
    return svc.list_groups(caller, firm_code, customer=customer, limit=limit, offset=offset)


@accounts.get("/customers/{number}/groups/{name}", summary="A group and its members")
def get_group(
    number: str, name: str, caller: CallerDep, svc: AccountsDep, firm_code: int | None = FirmQuery
) -> dict[str, Any]:
    return svc.get_group(caller, number, name, firm_code)


@accounts.put(
    "/customers/{number}/groups/{name}/members/{login}",
    summary="Add one of the customer's accounts to a group, or change whether it administers it",
)
def put_member(number: str, name: str, login: str, body: Member, caller: CallerDep, svc: AccountsDep) -> dict[str, Any]:
    return svc.set_member(caller, number, name, login, admin=body.admin, firm_code=body.firm_code)


@accounts.delete("/customers/{number}/groups/{name}/members/{login}", summary="Remove an account from a group")
def delete_member(
    number: str, name: str, login: str, caller: CallerDep, svc: AccountsDep, firm_code: int | None = FirmQuery
) -> dict[str, Any]:
    return svc.remove_member(caller, number, name, login, firm_code)


@accounts.post(
    "/customers/{number}/groups/{name}/reset",
    summary="Reset a group's access credentials: every member's sessions end, every member's devices unlinked",
)
def reset_group(
    number: str, name: str, caller: CallerDep, svc: AccountsDep, firm_code: int | None = FirmQuery
) -> dict[str, Any]:
    return svc.reset_group(caller, number, name, firm_code)


@accounts.get("/accounts/{login}/cloud", summary="An account's personal cloud container and its licenses")
def account_cloud(login: str, caller: CallerDep, svc: CloudDep, firm_code: int | None = FirmQuery) -> dict[str, Any]:
    return svc.view_of(caller, login=login, firm_code=firm_code)


@accounts.get(
    "/customers/{number}/groups/{name}/cloud", summary="A group's enterprise cloud container and its licenses"
)
def group_cloud(
    number: str, name: str, caller: CallerDep, svc: CloudDep, firm_code: int | None = FirmQuery
) -> dict[str, Any]:
    return svc.view_of(caller, customer=number, group=name, firm_code=firm_code)


@accounts.post(
    "/tickets/{ticket}/cloud-activation",
    summary="Activate a ticket into an account's or a group's cloud container (made on first use)",
)
def cloud_activation(ticket: str, body: CloudActivation, caller: CallerDep, svc: CloudDep) -> dict[str, Any]:
    return svc.activate(
        caller, ticket, login=body.login, customer=body.customer, group=body.group, firm_code=body.firm_code
    )


@accounts.post("/tickets/{ticket}/cloud-deactivation", summary="Take a ticket out of the cloud container that holds it")
def cloud_deactivation(
    ticket: str, caller: CallerDep, svc: CloudDep, firm_code: int | None = FirmQuery
) -> dict[str, Any]:
    return svc.deactivate(caller, ticket, firm_code)


# ---------------------------------------------------------------- a device signs in, and its own calls

cloud = APIRouter(tags=["cloud"])


def _base_url(request: Request) -> str:
    public: str | None = request.app.state.central.settings.public_url
    return public or f"{request.url.scheme}://{request.headers.get('host', request.url.netloc)}"


@cloud.post(
    "/cloud/device-codes",
    summary="A device asks to sign in: a device code for it, a user code for the person's browser (no key)",
)
def device_codes(body: DeviceStart, request: Request, svc: SignInDep) -> dict[str, Any]:
    return svc.start(link=body.link, address=client_address(request), base_url=_base_url(request))


@cloud.post(
    "/cloud/token",
    summary="The device polls with its device code; its session once the person confirmed (no key)",
    description="Until then: 400 with code authorization_pending (or slow_down: poll less often), "
    "expired_token, invalid_grant; 403 access_denied when the person refused.",
)
def device_token(body: DeviceToken, request: Request, svc: SignInDep) -> dict[str, Any]:
    return svc.poll(body.device_code, client_address(request))


@cloud.post("/cloud/sessions", status_code=201, summary="Sign a device in with a login and password (scripts)")
def password_sign_in(body: PasswordSignIn, request: Request, svc: SignInDep) -> dict[str, Any]:
    return svc.sign_in(
        firm_code=body.firm_code,
        login=body.login,
        password=body.password,
        address=client_address(request),
        link=body.link,
    )


@cloud.get("/cloud/me", summary="The signed-in account: login, role, customer, groups (session)")
def me(person: PersonDep, svc: SignInDep) -> dict[str, Any]:
    return svc.me(person)


@cloud.post("/cloud/sign-out", summary="End this session and unlink this device (session)")
def sign_out(person: PersonDep, svc: SignInDep) -> dict[str, Any]:
    return svc.sign_out(person)


@cloud.get("/cloud/devices", summary="The account's linked devices (session)")
def devices(person: PersonDep, svc: SignInDep) -> list[dict[str, Any]]:
    return svc.devices(person)


@cloud.delete("/cloud/devices/{device}", summary="Unlink one of the account's devices (session)")
def unlink(device: str, person: PersonDep, svc: SignInDep) -> dict[str, Any]:
    return svc.unlink(person, device)


@cloud.post("/cloud/password", summary="Change the account's password: other sessions end (session)")
def change_password(body: PasswordChange, request: Request, person: PersonDep, svc: SignInDep) -> dict[str, Any]:
    return svc.change_password(person, body.old, body.new, client_address(request))


@cloud.get("/cloud/groups", summary="The groups the account sees: all of its customer's for a customer admin (session)")
def my_groups(person: PersonDep, svc: AccountsDep) -> list[dict[str, Any]]:
    return svc.my_groups(person)


@cloud.put("/cloud/groups/{name}/members/{login}", summary="A group's admin adds a person of its customer (session)")
def my_put_member(name: str, login: str, body: MemberByPerson, person: PersonDep, svc: AccountsDep) -> dict[str, Any]:
    return svc.person_set_member(person, name, login, admin=body.admin)


@cloud.delete("/cloud/groups/{name}/members/{login}", summary="A group's admin removes a person (session)")
def my_delete_member(name: str, login: str, person: PersonDep, svc: AccountsDep) -> dict[str, Any]:
    return svc.person_remove_member(person, name, login)


@cloud.post(
    "/cloud/groups/{name}/reset",
    summary="A group's admin resets its access credentials: every other member signs in again (session)",
)
def my_group_reset(name: str, person: PersonDep, svc: AccountsDep) -> dict[str, Any]:
    return svc.person_reset_group(person, name)


@cloud.get("/cloud/licenses", summary="The cloud containers the account may use and their licenses (session)")
def my_licenses(person: PersonDep, svc: CloudDep) -> list[dict[str, Any]]:
    return svc.licenses(person)


@cloud.post("/cloud/groups/{name}/licenses", summary="A group's admin activates a ticket into its cloud container")
def my_group_activate(name: str, body: GroupLicense, person: PersonDep, svc: CloudDep) -> dict[str, Any]:
    return svc.person_activate(person, body.ticket, name)


@cloud.delete("/cloud/groups/{name}/licenses/{ticket}", summary="A group's admin takes a ticket out of it")
def my_group_deactivate(name: str, ticket: str, person: PersonDep, svc: CloudDep) -> dict[str, Any]:
    return svc.person_deactivate(person, ticket, name)


ROUTERS = [accounts, cloud]
