"""Request bodies of the vendor API (unknown fields are refused, to catch typos)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt

Level = Literal["loose", "medium", "tight"]
TicketStateName = Literal["new", "activated", "deactivated", "revoked", "blocked"]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FirmCreate(_Body):
    code: StrictInt = Field(description="firm code, 1..4294967295")
    name: str = Field(min_length=1, max_length=200)


class FirmUpdate(_Body):
    usage_retention_days: StrictInt | None = Field(
        default=None,
        ge=1,
        le=3650,
        description="days the usage store keeps the firm's events, by access time (default 400)",
        examples=[400],
    )


class ApiKeyCreate(_Body):
    firm_code: StrictInt | None = None
    role: Literal["vendor", "admin"] = "vendor"
    label: str | None = Field(default=None, max_length=200)


#: the largest count or time an option holds: a signed document holds whole numbers within
#: 2^53 - 1 (docs/formats.md), and relative days and hours must stay within it as seconds
MAX_COUNT = 2**53 - 1
MAX_DAYS = 10**7  # about 27,000 years
MAX_HOURS = 24 * MAX_DAYS


class OptionsTemplate(_Body):
    """Relative times (``*_days``) count from the ticket's first activation."""

    expires_days: StrictInt | None = Field(default=None, ge=0, le=MAX_DAYS)
    expires: StrictInt | None = Field(default=None, ge=0, le=MAX_COUNT, description="absolute Unix time")
    not_before: StrictInt | None = Field(default=None, ge=0, le=MAX_COUNT)
    usage_period_days: StrictInt | None = Field(default=None, ge=0, le=MAX_DAYS)
    units: StrictInt | None = Field(default=None, ge=0, le=MAX_COUNT)
    quantity: StrictInt = Field(default=1, ge=0, le=MAX_COUNT)
    maintenance_days: StrictInt | None = Field(default=None, ge=0, le=MAX_DAYS)
    maintenance_until: StrictInt | None = Field(default=None, ge=0, le=MAX_COUNT)
    sync_interval_days: StrictInt | None = Field(
        default=None,
        ge=0,
        le=MAX_DAYS,
        description="days offline before a sync is needed (0: never; default 30 with units, a time limit or "
        "a quantity above 1)",
    )
    report_interval_hours: StrictInt | None = Field(
        default=None,
        ge=0,
        le=MAX_HOURS,
        description="hours between usage reports while Central is reachable (0: none; "
        "default 24 with units or a time limit)",
    )
    user_seats: Literal["person", "device"] | None = Field(
        default=None,
        description="user licensing over REST (cloud items): a seat per person, whatever devices it uses "
        "(person, the default), or per device the caller names (device)",
    )
    metering: Literal["local", "online"] | None = Field(
        default=None, description="online: every unit consumption is a call to Central"
    )
    offline_allowance: StrictInt | None = Field(
        default=None,
        ge=0,
        le=MAX_COUNT,
        description="online metering: units a container may count while Central is unreachable",
    )
    max_grace: StrictInt | None = Field(
        default=None,
        ge=0,
        le=MAX_COUNT,
        description="seconds of offline grace a license server may grant with a seat (a "
        "protected package's --grace); absent: none on network seats",
    )
    data: str | None = Field(default=None, description="base64")
    local_only: bool = Field(default=False, description="never served by a network license server")


class ItemCreate(_Body):
    firm_code: StrictInt | None = Field(default=None, description="admin key only: the firm")
    item_id: str | None = Field(default=None, description="like F-00002-145; generated if left out")
    name: str = Field(min_length=1, max_length=200)
    product_code: StrictInt | None = Field(default=None, description="required unless module_of is given")
    feature_map: StrictInt = 0xFFFFFFFF
    level: Level = "medium"
    key_versions: list[Annotated[StrictInt, Field(ge=1, le=0xFFFFFFFF)]] = Field(default_factory=lambda: [1])
    module_of: str | None = Field(default=None, description="base item id: this item adds feature bits to it")
    options: OptionsTemplate = Field(default_factory=OptionsTemplate)
    on_manipulation: Literal["rebase", "withdraw"] = Field(
        default="rebase",
        description="when Central sees a container's files restored or forked: re-issue with Central's counts "
        "(rebase) or take the license back and block the ticket until the vendor clears it (withdraw)",
    )
    flag_window_days: StrictInt = Field(
        default=90, ge=0, description="a second flag of a ticket within this many days withdraws it"
    )
    cloud: StrictBool = Field(default=False, description="its tickets may be activated into cloud containers")


class CustomerCreate(_Body):
    firm_code: StrictInt | None = None
    number: str | None = Field(default=None, max_length=64, description="generated if left out")
    name: str = Field(min_length=1, max_length=200)
    email: str | None = Field(default=None, max_length=320)


class OrderCreate(_Body):
    firm_code: StrictInt | None = None
    customer: str = Field(description="customer number")
    items: list[str] = Field(min_length=1, description="one base item and any of its module items")
    quantity_of_licenses: StrictInt = Field(default=1, ge=1, le=1000, description="one ticket per license")


class FirmScope(_Body):
    firm_code: StrictInt | None = None


# ---------------------------------------------------------------- cloud accounts (api/accounts.py)

AccountRoleName = Literal["staff", "partner", "customer-user", "customer-admin"]


class AccountCreate(_Body):
    firm_code: StrictInt | None = Field(default=None, description="admin key only: the firm")
    login: str = Field(max_length=254, description="unique within the firm, like an e-mail address")
    name: str = Field(min_length=1, max_length=200)
    role: AccountRoleName = Field(description="customer-user and customer-admin name their customer")
    customer: str | None = Field(default=None, max_length=64, description="customer number (customer roles)")
    password: str | None = Field(
        default=None, max_length=1024, description="at least 10 characters; without one, the account cannot sign in"
    )


class AccountUpdate(_Body):
    firm_code: StrictInt | None = None
    name: str | None = Field(default=None, min_length=1, max_length=200)
    disabled: StrictBool | None = Field(default=None, description="a disabled account's sessions end")
    password: str | None = Field(default=None, max_length=1024, description="a new password ends every session")


class GroupCreate(_Body):
    firm_code: StrictInt | None = None
    name: str = Field(min_length=1, max_length=100)


class Member(_Body):
    firm_code: StrictInt | None = None
    admin: StrictBool = Field(default=False, description="the member administers the group")


class MemberByPerson(_Body):
    admin: StrictBool = False


class DeviceStart(_Body):
    link: dict[str, Any] = Field(description="the device's cloud-link document, signed by its machine container")


class DeviceToken(_Body):
    device_code: str = Field(max_length=128)


class PasswordSignIn(_Body):
    firm_code: StrictInt
    login: str = Field(max_length=254)
    password: str = Field(max_length=1024)
    link: dict[str, Any] = Field(description="the device's cloud-link document, signed by its machine container")


class PasswordChange(_Body):
    old: str = Field(max_length=1024)
    new: str = Field(max_length=1024)


class CloudActivation(_Body):
    firm_code: StrictInt | None = None
    login: str | None = Field(default=None, max_length=254, description="an account: its personal cloud container")
    customer: str | None = Field(default=None, max_length=64, description="with group: the customer")
    group: str | None = Field(default=None, max_length=100, description="a customer's group: its enterprise one")


class GroupLicense(_Body):
    ticket: str = Field(max_length=64, description="a ticket of the group's customer")


class ProxyCreate(_Body):
    name: str = Field(min_length=1, max_length=100, description="the proxy's name in its group", examples=["lan-1"])
    seats: StrictInt = Field(ge=1, le=100000, description="seats of each license it holds", examples=[5])


class ProxyLink(_Body):
    code: str = Field(min_length=1, max_length=200, description="the link code its group admin was given")
    request: dict[str, Any] = Field(description="a sync request signed by the license server's machine container")


class ProxyRefresh(_Body):
    request: dict[str, Any] = Field(description="a sync request signed by the license server's machine container")
