"""Central's database schema: one declarative base, UUID keys, enums stored by value.

The migration in ``migrations/versions`` creates exactly this schema (a test
checks that they agree). ``audit_log`` is append-only: the code only inserts,
and database triggers refuse UPDATE and DELETE.
"""

from __future__ import annotations

import enum
import uuid
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    Uuid,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# SQLite only makes INTEGER PRIMARY KEY an auto-increment rowid.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class Role(enum.StrEnum):
    """Who made a call: an API key's role, or (``account``, in the audit log) a signed-in person."""

    admin = "admin"
    vendor = "vendor"
    account = "account"


class Level(enum.StrEnum):
    loose = "loose"
    medium = "medium"
    tight = "tight"


class TicketState(enum.StrEnum):
    new = "new"
    activated = "activated"
    deactivated = "deactivated"
    revoked = "revoked"
    blocked = "blocked"  # withdrawn after manipulation, until the vendor clears the container


class Policy(enum.StrEnum):
    """What an item's tickets get when Central sees a container's files restored or forked."""

    rebase = "rebase"  # re-issue with Central's counts; flag for review; the user keeps working
    withdraw = "withdraw"  # take the license back; the ticket is blocked until the vendor clears it


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


def _uuid() -> uuid.UUID:
    return uuid.uuid4()


class Firm(Base):
    __tablename__ = "firms"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=_uuid)
    code: Mapped[int] = mapped_column(BigInteger, unique=True)
    name: Mapped[str] = mapped_column(String(200))
    secret_enc: Mapped[bytes] = mapped_column(LargeBinary)  # product-key secret, under the master key
    license_counter: Mapped[int] = mapped_column(BigInteger, default=0)
    item_counter: Mapped[int] = mapped_column(Integer, default=0)
    customer_counter: Mapped[int] = mapped_column(Integer, default=0)
    created: Mapped[int] = mapped_column(BigInteger)
    #: how long the usage store keeps this firm's events (days, by access time)
    usage_retention_days: Mapped[int] = mapped_column(Integer, default=400)

    keys: Mapped[list[FirmKey]] = relationship(back_populates="firm", order_by="FirmKey.created_seq")


class FirmKey(Base):
    __tablename__ = "firm_keys"
    __table_args__ = (UniqueConstraint("firm_id", "kid"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=_uuid)
    firm_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("firms.id"))
    kid: Mapped[str] = mapped_column(String(16))
    public_pem: Mapped[str] = mapped_column(Text)
    private_enc: Mapped[bytes] = mapped_column(LargeBinary)  # raw Ed25519 private key, under the master key
    active: Mapped[bool] = mapped_column(Boolean, default=False)
    retired: Mapped[bool] = mapped_column(Boolean, default=False)
    endorsement: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)  # by the previous key
    created_seq: Mapped[int] = mapped_column(Integer)  # 1, 2, ... per firm: rotation order
    created: Mapped[int] = mapped_column(BigInteger)

    firm: Mapped[Firm] = relationship(back_populates="keys")


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=_uuid)
    key_id: Mapped[str] = mapped_column(String(16), unique=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)  # SHA-256 hex of the key
    role: Mapped[str] = mapped_column(String(16))
    firm_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("firms.id"), nullable=True)
    label: Mapped[str | None] = mapped_column(String(200), nullable=True)
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)
    created: Mapped[int] = mapped_column(BigInteger)


class Item(Base):
    __tablename__ = "items"
    __table_args__ = (UniqueConstraint("firm_id", "item_id"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=_uuid)
    firm_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("firms.id"))
    item_id: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(200))
    product_code: Mapped[int] = mapped_column(BigInteger)
    feature_map: Mapped[int] = mapped_column(BigInteger)
    level: Mapped[str] = mapped_column(String(16))
    key_versions: Mapped[list[int]] = mapped_column(JSON)
    options: Mapped[dict[str, Any]] = mapped_column(JSON)  # the template (relative or absolute times)
    policy: Mapped[str] = mapped_column(String(16), default=Policy.rebase.value)  # on manipulation
    flag_window_days: Mapped[int] = mapped_column(Integer, default=90)  # a second flag within: withdraw
    module_of_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("items.id"), nullable=True)
    created: Mapped[int] = mapped_column(BigInteger)
    #: its tickets may be activated into cloud containers (held by Central, used from devices)
    cloud: Mapped[bool] = mapped_column(Boolean, default=False)


class Customer(Base):
    __tablename__ = "customers"
    __table_args__ = (UniqueConstraint("firm_id", "number"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=_uuid)
    firm_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("firms.id"))
    number: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str | None] = mapped_column(String(320), nullable=True)
    created: Mapped[int] = mapped_column(BigInteger)


class Container(Base):
    __tablename__ = "containers"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=_uuid)
    serial: Mapped[str] = mapped_column(String(32), unique=True)
    level: Mapped[str] = mapped_column(String(16))
    sign_pub: Mapped[str] = mapped_column(String(64))
    box_pub: Mapped[str] = mapped_column(String(64))
    created: Mapped[int] = mapped_column(BigInteger)


class ContainerFirm(Base):
    """Where one container's slot for one firm stands, as Central saw it."""

    __tablename__ = "container_firms"
    __table_args__ = (UniqueConstraint("container_id", "firm_id"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=_uuid)
    container_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("containers.id"))
    firm_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("firms.id"))
    reported_seq: Mapped[int] = mapped_column(BigInteger, default=0)
    reported_vtime: Mapped[int] = mapped_column(BigInteger, default=0)
    issued_seq: Mapped[int] = mapped_column(BigInteger, default=0)
    flagged: Mapped[bool] = mapped_column(Boolean, default=False)  # for the vendor's review
    flagged_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    reported_gen: Mapped[int] = mapped_column(BigInteger, default=0)  # highest generation seen
    last_contact: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


class ChainLink(Base):
    """A document of one container slot's chain that Central knows: received (``gen``
    set) or named as an earlier document by one it received (``gen`` NULL); and the one
    document that named it as its predecessor (a second one is a fork)."""

    __tablename__ = "chain_links"

    slot_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("container_firms.id"), primary_key=True)
    digest: Mapped[str] = mapped_column(String(64), primary_key=True)
    gen: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    successor: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created: Mapped[int] = mapped_column(BigInteger)


class Activation(Base):
    """One signed entry of a ticket in one container, with the counters reported under it
    (merged: the maximum of units, the earliest first use)."""

    __tablename__ = "activations"
    __table_args__ = (Index("ix_activations_ticket", "ticket_id"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=_uuid)
    ticket_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tickets.id"))
    container_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("containers.id"))
    number: Mapped[int] = mapped_column(Integer)  # 1, 2, ... per ticket
    digest: Mapped[str] = mapped_column(String(64), unique=True)  # of the signed entry
    units: Mapped[int] = mapped_column(BigInteger, default=0)  # counted by the container
    online_units: Mapped[int] = mapped_column(BigInteger, default=0)  # counted here (online metering)
    first_use: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    created: Mapped[int] = mapped_column(BigInteger)
    ended: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


class IdempotencyKey(Base):
    """The answer to a call made with an idempotency key (scoped to the caller and the
    license), returned again to a retry; the same key with other parameters is refused."""

    __tablename__ = "idempotency_keys"
    __table_args__ = (Index("ix_idempotency_keys_created", "created"),)

    scope: Mapped[str] = mapped_column(String(160), primary_key=True)
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    params: Mapped[str] = mapped_column(String(64))  # SHA-256 of the call's parameters
    response: Mapped[str] = mapped_column(Text)
    created: Mapped[int] = mapped_column(BigInteger)


class Flag(Base):
    """Manipulation Central saw, for the vendor's review (``vendor container show``)."""

    __tablename__ = "manipulation_flags"
    __table_args__ = (Index("ix_manipulation_flags_ticket_time", "ticket_id", "time"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    time: Mapped[int] = mapped_column(BigInteger)
    container_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("containers.id"))
    firm_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("firms.id"))
    ticket_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("tickets.id"), nullable=True)
    action: Mapped[str] = mapped_column(String(16))  # rebase | withdraw
    reason: Mapped[str] = mapped_column(Text)
    document: Mapped[str] = mapped_column(String(64))
    cleared: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


class TicketItem(Base):
    __tablename__ = "ticket_items"

    ticket_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tickets.id"), primary_key=True)
    item_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("items.id"), primary_key=True)


class Ticket(Base):
    __tablename__ = "tickets"
    __table_args__ = (
        UniqueConstraint("firm_id", "license_id"),
        Index("ix_tickets_container_state", "container_id", "firm_id", "state"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=_uuid)
    ticket: Mapped[str] = mapped_column(String(32), unique=True)
    firm_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("firms.id"))
    license_id: Mapped[int] = mapped_column(BigInteger)
    order_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    customer_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("customers.id"))
    item_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("items.id"))  # the base item
    state: Mapped[str] = mapped_column(String(16))
    container_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("containers.id"), nullable=True)
    options: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)  # absolute, fixed at 1st activation
    first_activated: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    activated: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    entry: Mapped[str | None] = mapped_column(Text, nullable=True)  # the signed license entry (JSON)
    activation_count: Mapped[int] = mapped_column(Integer, default=0)
    created: Mapped[int] = mapped_column(BigInteger)
    revoked: Mapped[int | None] = mapped_column(BigInteger, nullable=True)

    items: Mapped[list[Item]] = relationship(secondary="ticket_items", order_by="Item.item_id", viewonly=True)
    base_item: Mapped[Item] = relationship(foreign_keys=[item_id], viewonly=True)
    customer: Mapped[Customer] = relationship(viewonly=True)
    container: Mapped[Container | None] = relationship(viewonly=True)


class ProcessedRequest(Base):
    """An answered activation/sync request: its update, returned again byte for byte."""

    __tablename__ = "processed_requests"

    digest: Mapped[str] = mapped_column(String(64), primary_key=True)
    container_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("containers.id"))
    firm_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("firms.id"))
    action: Mapped[str] = mapped_column(String(16))
    response: Mapped[str] = mapped_column(Text)
    created: Mapped[int] = mapped_column(BigInteger)


class ProcessedReceipt(Base):
    __tablename__ = "processed_receipts"

    digest: Mapped[str] = mapped_column(String(64), primary_key=True)
    container_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("containers.id"))
    ticket_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tickets.id"))
    response: Mapped[str] = mapped_column(Text)
    created: Mapped[int] = mapped_column(BigInteger)


class UsageEvent(Base):
    """The one usage store: a use of a license, from whatever source reported it (a license
    server's anchored log, and later container reports, cloud leases and user-licensing
    calls), in one shape. A session is one row (its release filled in when its final event
    comes); a refusal is one row with ``fail`` or ``invalid`` set. The scope columns
    (firm, customer, item) are joined from Central when the row is written."""

    __tablename__ = "usage_events"
    __table_args__ = (
        UniqueConstraint("container_id", "seq"),
        Index("ix_usage_events_session", "container_id", "lease_id"),
        # each view's scope then its order: a page is a range of one index, read once
        Index("ix_usage_events_firm_time", "firm_id", "access_time", "id"),
        Index("ix_usage_events_customer_time", "firm_id", "customer_id", "access_time", "id"),
        Index("ix_usage_events_item_time", "firm_id", "item_id", "access_time", "id"),
        Index("ix_usage_events_ticket_time", "ticket_id", "access_time"),
        # the sessions held into a period: released after its start, or still open
        Index("ix_usage_events_release", "firm_id", "release_time"),
        Index(
            "ix_usage_events_open",
            "firm_id",
            "customer_id",
            "item_id",
            sqlite_where=text("release_time IS NULL AND success > 0"),
            postgresql_where=text("release_time IS NULL AND success > 0"),
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    firm_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("firms.id"))
    source: Mapped[str] = mapped_column(String(16))  # "server", ...
    container_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("containers.id"), nullable=True)
    seq: Mapped[int | None] = mapped_column(BigInteger, nullable=True)  # the opening event's, in its log
    lease_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    access_time: Mapped[int] = mapped_column(BigInteger)
    release_time: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    seconds: Mapped[int] = mapped_column(BigInteger, default=0)
    success: Mapped[int] = mapped_column(Integer, default=0)
    fail: Mapped[int] = mapped_column(Integer, default=0)
    invalid: Mapped[int] = mapped_column(Integer, default=0)
    firm_code: Mapped[int] = mapped_column(BigInteger)
    product_code: Mapped[int] = mapped_column(BigInteger)
    feature_code: Mapped[int] = mapped_column(BigInteger)
    feature_map: Mapped[int] = mapped_column(BigInteger)
    license_id: Mapped[int] = mapped_column(BigInteger)
    ticket_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("tickets.id"), nullable=True)
    customer_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("customers.id"), nullable=True)
    item_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("items.id"), nullable=True)
    user_ident: Mapped[str] = mapped_column(String(256), default="")
    host: Mapped[str] = mapped_column(String(256), default="")
    address: Mapped[str] = mapped_column(String(256), default="")
    mode: Mapped[str] = mapped_column(String(16), default="")
    seat: Mapped[str | None] = mapped_column(String(256), nullable=True)
    units: Mapped[int] = mapped_column(BigInteger, default=0)


#: the product view rollup's key columns, in the order of its unique constraint
USAGE_DAY_KEY = (
    "firm_id",
    "item_id",
    "day",
    "customer_id",
    "ticket_id",
    "license_id",
    "product_code",
    "feature_code",
    "user_ident",
)


class UsageDay(Base):
    """The product view's rollup of usage_events: per license, user and UTC day of access
    (with every scope column the views filter on), the seconds, accesses, refusals and
    units. Written in the transaction that writes the events; rebuilt from them by
    ``licentia central usage rollup`` after a bulk load. Only events whose ticket Central
    knows (and so its customer and item) are rolled up: the views join both."""

    __tablename__ = "usage_days"
    __table_args__ = (
        UniqueConstraint(*USAGE_DAY_KEY),
        Index("ix_usage_days_customer", "firm_id", "customer_id", "day"),
        Index("ix_usage_days_ticket", "ticket_id", "day"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    firm_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("firms.id"))
    item_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("items.id"))
    day: Mapped[int] = mapped_column(Integer)  # UTC days since 1970-01-01
    customer_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("customers.id"))
    ticket_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tickets.id"))
    license_id: Mapped[int] = mapped_column(BigInteger)
    product_code: Mapped[int] = mapped_column(BigInteger)
    feature_code: Mapped[int] = mapped_column(BigInteger)
    user_ident: Mapped[str] = mapped_column(String(256))
    firm_code: Mapped[int] = mapped_column(BigInteger)
    seconds: Mapped[int] = mapped_column(BigInteger, default=0)
    success: Mapped[int] = mapped_column(BigInteger, default=0)
    fail: Mapped[int] = mapped_column(BigInteger, default=0)
    invalid: Mapped[int] = mapped_column(BigInteger, default=0)
    units: Mapped[int] = mapped_column(BigInteger, default=0)


class UsageBillingDay(Base):
    """The billing view's rollup: per customer, item and UTC day that ended, the figures of
    the day (peak of seats held at one instant, seat-seconds, sessions, units, refusals).
    Peaks do not add up across writes, so a job computes the days the writes marked stale
    (``usage_billing_stale``) once they have ended; a day with no use has no row."""

    __tablename__ = "usage_billing_days"
    __table_args__ = (Index("ix_usage_billing_days_firm", "firm_id", "day"),)

    customer_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("customers.id"), primary_key=True)
    item_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("items.id"), primary_key=True)
    day: Mapped[int] = mapped_column(Integer, primary_key=True)
    firm_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("firms.id"))
    firm_code: Mapped[int] = mapped_column(BigInteger)
    peak_seats: Mapped[int] = mapped_column(BigInteger)
    seat_seconds: Mapped[int] = mapped_column(BigInteger)
    sessions: Mapped[int] = mapped_column(BigInteger)
    units: Mapped[int] = mapped_column(BigInteger)
    refusals: Mapped[int] = mapped_column(BigInteger)


class UsageBillingStale(Base):
    """A customer's item's day whose billing figures changed since the job computed them:
    a write's sessions and refusals mark their days; the billing view computes these days
    from the events until the job has run."""

    __tablename__ = "usage_billing_stale"

    customer_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("customers.id"), primary_key=True)
    item_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("items.id"), primary_key=True)
    day: Mapped[int] = mapped_column(Integer, primary_key=True)
    firm_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("firms.id"))


class UsageRollupState(Base):
    """The rollup job's marks: ``billing_final`` is when the last complete run of the billing
    job began (every day that ended before it is in usage_billing_days, or stale)."""

    __tablename__ = "usage_rollup_state"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger)


class UsageAnchor(Base):
    """A point of a license server's usage log that Central verified and holds: the chain's
    hash after event ``seq``. Uploads extend the latest one; an anchor the vendor set aside
    (clearing a flag) has ``superseded`` set, and the next upload starts a new chain."""

    __tablename__ = "usage_anchors"

    container_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("containers.id"), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    hash: Mapped[str] = mapped_column(String(64))
    time: Mapped[int] = mapped_column(BigInteger)  # Central's time
    upload: Mapped[str] = mapped_column(String(64))  # the digest of the upload that reached it
    superseded: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


class AuditEntry(Base):
    """Append-only: inserted by the code, UPDATE/DELETE refused by triggers."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    time: Mapped[int] = mapped_column(BigInteger)
    actor: Mapped[str] = mapped_column(String(32))  # API key id
    role: Mapped[str] = mapped_column(String(16))
    firm_code: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    action: Mapped[str] = mapped_column(String(64))
    detail: Mapped[dict[str, Any]] = mapped_column(JSON)


class AccountRole(enum.StrEnum):
    """Who a cloud account is: the vendor's staff, a partner (a reseller), or a person of
    a customer (a user, or an admin of the customer's groups and cloud licenses)."""

    staff = "staff"
    partner = "partner"
    customer_user = "customer-user"
    customer_admin = "customer-admin"


#: the roles of a customer's people: their account names the customer
CUSTOMER_ROLES = frozenset({AccountRole.customer_user, AccountRole.customer_admin})


class Account(Base):
    """A person who signs in to the vendor's cloud: owned by one firm (its login is unique
    within the firm only), a customer's person when its role says so."""

    __tablename__ = "accounts"
    __table_args__ = (UniqueConstraint("firm_id", "login"), Index("ix_accounts_customer", "customer_id"))

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=_uuid)
    firm_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("firms.id"))
    login: Mapped[str] = mapped_column(String(254))  # lower case (services/accounts.normalize_login)
    name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(24))
    customer_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("customers.id"), nullable=True)
    password_hash: Mapped[str | None] = mapped_column(String(200), nullable=True)  # argon2id, encoded
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created: Mapped[int] = mapped_column(BigInteger)


class AccountGroup(Base):
    """A customer's group of accounts (an enterprise cloud container is assigned to one)."""

    __tablename__ = "account_groups"
    __table_args__ = (UniqueConstraint("customer_id", "name"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=_uuid)
    firm_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("firms.id"))
    customer_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("customers.id"))
    name: Mapped[str] = mapped_column(String(100))
    created: Mapped[int] = mapped_column(BigInteger)


class GroupMember(Base):
    __tablename__ = "group_members"
    __table_args__ = (Index("ix_group_members_account", "account_id"),)

    group_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("account_groups.id"), primary_key=True)
    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("accounts.id"), primary_key=True)
    admin: Mapped[bool] = mapped_column(Boolean, default=False)  # administers the group
    added: Mapped[int] = mapped_column(BigInteger)


class CloudDevice(Base):
    """A device linked to an account: its credential is the device's machine container key
    (serial and Ed25519 public key); ``unlinked`` once logged out or reset."""

    __tablename__ = "cloud_devices"
    __table_args__ = (Index("ix_cloud_devices_account", "account_id", "unlinked"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=_uuid)
    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("accounts.id"))
    firm_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("firms.id"))
    serial: Mapped[str] = mapped_column(String(32))
    sign_pub: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(200))
    linked: Mapped[int] = mapped_column(BigInteger)
    unlinked: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    address: Mapped[str] = mapped_column(String(64))  # where it was last seen from
    seen: Mapped[int] = mapped_column(BigInteger)
    #: who ended the link: "self" (signed out on the device), "swap" (the person unlinked it
    #: from another device: counted against the swaps of 30 days), "reset" (a reset or a new
    #: password); None on links made before swaps were counted
    unlinked_by: Mapped[str | None] = mapped_column(String(8), nullable=True)


class CloudKind(enum.StrEnum):
    personal = "personal"  # one account's
    enterprise = "enterprise"  # a customer's group's


class CloudContainer(Base):
    """A container the vendor holds in Central for one account (personal) or one group
    (enterprise): registered in ``containers`` (its serial and public keys, level
    ``cloud``) so that its licenses are ordinary firm-signed entries naming it; its
    private keys never leave Central (under the master key, like firm secrets)."""

    __tablename__ = "cloud_containers"
    __table_args__ = (UniqueConstraint("container_id"), UniqueConstraint("account_id"), UniqueConstraint("group_id"))

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=_uuid)
    firm_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("firms.id"))
    container_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("containers.id"))
    kind: Mapped[str] = mapped_column(String(16))
    account_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("accounts.id"), nullable=True)
    group_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("account_groups.id"), nullable=True)
    keys_enc: Mapped[bytes] = mapped_column(LargeBinary)  # Ed25519 + X25519 private keys, under the master key
    created: Mapped[int] = mapped_column(BigInteger)


class CloudProxy(Base):
    """A license server that proxies a group's enterprise cloud container (a **proxy**): made
    by a group admin with a number of seats and a one-time link code; bound, when the server
    links, to the server's machine container (its serial and key), after which its session
    token is the credential. ``entries`` are the firm-signed entries Central issued to that
    container at the last refresh (each for the seats held, until ``until``)."""

    __tablename__ = "cloud_proxies"
    __table_args__ = (
        UniqueConstraint("group_id", "name"),
        UniqueConstraint("token_hash"),
        Index("ix_cloud_proxies_container", "container_id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=_uuid)
    firm_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("firms.id"))
    group_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("account_groups.id"))
    name: Mapped[str] = mapped_column(String(100))
    seats: Mapped[int] = mapped_column(Integer)  # per license of the group's container
    created: Mapped[int] = mapped_column(BigInteger)
    created_by: Mapped[str] = mapped_column(String(254))
    code_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)  # SHA-256 of the link code's secret
    code_expires: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    container_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("containers.id"), nullable=True)
    token_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)  # SHA-256 of the session token
    linked: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    address: Mapped[str | None] = mapped_column(String(64), nullable=True)  # where it last refreshed from
    refreshed: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    until: Mapped[int | None] = mapped_column(BigInteger, nullable=True)  # its seats and entries end then
    entries: Mapped[str | None] = mapped_column(Text, nullable=True)  # JSON list of the entries' texts
    ended: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    ended_by: Mapped[str | None] = mapped_column(String(16), nullable=True)  # unlinked | flagged


class CloudLease(Base):
    """A seat of a cloud license (``licentia.seats``' lease, kept in Central's database:
    ``central/cloud_seats.py``). ``n`` orders leases of one client as they were made."""

    __tablename__ = "cloud_leases"
    __table_args__ = (
        Index("ix_cloud_leases_live", "license_key", "live_until", "seat", "mode"),
        Index("ix_cloud_leases_client", "client_lease_id", "access_time"),
        Index("ix_cloud_leases_until", "live_until"),
        Index("ix_cloud_leases_machine", "license_key", "machine", "mode", "state", "live_until"),
        Index("ix_cloud_leases_device", "device", "live_until"),
    )

    n: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(64), unique=True)
    client_lease_id: Mapped[str] = mapped_column(String(128))
    license_key: Mapped[str] = mapped_column(String(160))
    firm_code: Mapped[int] = mapped_column(BigInteger)
    product_code: Mapped[int] = mapped_column(BigInteger)
    license_id: Mapped[int] = mapped_column(BigInteger)
    feature_code: Mapped[int] = mapped_column(BigInteger)
    feature_map: Mapped[int] = mapped_column(BigInteger)
    ticket: Mapped[str | None] = mapped_column(String(32), nullable=True)
    mode: Mapped[str] = mapped_column(String(16))
    seat: Mapped[str] = mapped_column(String(512))
    user_name: Mapped[str] = mapped_column(String(256))
    host: Mapped[str] = mapped_column(String(256))
    ip: Mapped[str] = mapped_column(String(64))
    groups: Mapped[str] = mapped_column(Text)
    pid: Mapped[int] = mapped_column(BigInteger)
    access_time: Mapped[int] = mapped_column(BigInteger)
    renewed: Mapped[int] = mapped_column(BigInteger)
    expires: Mapped[int] = mapped_column(BigInteger)
    state: Mapped[str] = mapped_column(String(16))
    end_time: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    linger_until: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    live_until: Mapped[int] = mapped_column(BigInteger)
    borrower: Mapped[str | None] = mapped_column(Text, nullable=True)
    first_use: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    holder: Mapped[str | None] = mapped_column(String(64), nullable=True)
    proof_counter: Mapped[int] = mapped_column(BigInteger, default=0)
    machine: Mapped[str | None] = mapped_column(String(256), nullable=True)
    grace_until: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    #: the linked device holding the lease (its machine container's serial): a device's
    #: leases are counted across licenses
    device: Mapped[str | None] = mapped_column(String(32), nullable=True)


class CloudSeatEvent(Base):
    """The cloud seats' usage log: hash-chained events, as a license server keeps them."""

    __tablename__ = "cloud_seat_events"
    __table_args__ = (Index("ix_cloud_seat_events_time", "time"), Index("ix_cloud_seat_events_lease", "lease_id"))

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    time: Mapped[int] = mapped_column(BigInteger)
    kind: Mapped[str] = mapped_column(String(16))
    lease_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    access_time: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    body: Mapped[str] = mapped_column(Text)
    hash: Mapped[str] = mapped_column(String(64))


class CloudSeatMeta(Base):
    """The cloud seats' own values (the usage log's head and anchor); the row ``chain`` is
    what a transaction that appends to the log locks first."""

    __tablename__ = "cloud_seat_meta"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class CloudProof(Base):
    """A device's machine proof Central has accepted: the challenge it answered, kept until
    the challenge would be stale anyway, so that no proof is accepted twice."""

    __tablename__ = "cloud_proofs"
    __table_args__ = (Index("ix_cloud_proofs_until", "until"),)

    nonce: Mapped[str] = mapped_column(String(96), primary_key=True)
    until: Mapped[int] = mapped_column(BigInteger)


class CloudSeatLock(Base):
    """One row per cloud license: a transaction that counts or takes its seats locks it
    first, so two Central processes never both give out its last seat."""

    __tablename__ = "cloud_seat_locks"

    license_key: Mapped[str] = mapped_column(String(160), primary_key=True)


class AccountSession(Base):
    """A signed-in session: an opaque random token, stored as its SHA-256 only; ``web``
    (the browser pages: a cookie and a CSRF token) or ``device`` (a linked device)."""

    __tablename__ = "account_sessions"
    __table_args__ = (Index("ix_account_sessions_account", "account_id"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=_uuid)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("accounts.id"))
    kind: Mapped[str] = mapped_column(String(8))  # "web" | "device"
    device_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("cloud_devices.id"), nullable=True)
    csrf: Mapped[str | None] = mapped_column(String(64), nullable=True)  # web sessions
    address: Mapped[str] = mapped_column(String(64))
    created: Mapped[int] = mapped_column(BigInteger)
    seen: Mapped[int] = mapped_column(BigInteger)


class DeviceAuthorization(Base):
    """A device's sign-in in progress (the OAuth 2.0 device authorization grant's shape):
    the device polls with its device code (stored as its SHA-256), the person confirms the
    short user code in a browser."""

    __tablename__ = "device_authorizations"
    __table_args__ = (Index("ix_device_authorizations_address", "address", "created"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=_uuid)
    code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_code: Mapped[str] = mapped_column(String(8), unique=True)
    firm_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("firms.id"))
    device_name: Mapped[str] = mapped_column(String(200))
    serial: Mapped[str] = mapped_column(String(32))
    sign_pub: Mapped[str] = mapped_column(String(64))
    address: Mapped[str] = mapped_column(String(64))
    created: Mapped[int] = mapped_column(BigInteger)
    expires: Mapped[int] = mapped_column(BigInteger)
    state: Mapped[str] = mapped_column(String(10))  # pending | approved | denied | used
    account_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("accounts.id"), nullable=True)
    polled: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


class Attempt(Base):
    """A failed public attempt (activation, info, deactivation), for rate limiting."""

    __tablename__ = "attempts"
    __table_args__ = (Index("ix_attempts_scope_key_time", "scope", "key", "time"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    time: Mapped[int] = mapped_column(BigInteger)
    scope: Mapped[str] = mapped_column(String(8))  # "address" | "ticket" | "account"
    key: Mapped[str] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(16))


#: Tables that record what happened rather than state: tests compare all other tables.
LOG_TABLES = ("audit_log", "attempts")


def table_of(model: type[Base]) -> Table:
    """The Core table of a model (statements built once, run without the ORM)."""
    return Base.metadata.tables[model.__tablename__]
