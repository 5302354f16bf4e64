"""Cloud containers: containers License Central holds for the vendor's customers.

A **personal** cloud container belongs to one account (a customer's person); an
**enterprise** one to one of a customer's groups. Each is made on first use: a serial
of the cloud range (``140-...``), an Ed25519 and an X25519 key whose private halves stay
in Central under the master key, and a row in ``containers`` (level ``cloud``), so that a
ticket activated into it gets the same firm-signed license entry as on any machine,
naming the cloud container. The vendor activates tickets into cloud containers; a
customer admin into the customer's groups' containers, a group admin into its group's.
No end-user machine takes part. Only items made for the cloud (``cloud``) go in, and
only tickets of the container's customer.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from typing import Any

from sqlalchemy import bindparam, select

from ...core import codes, hazmat
from ...core.encoding import b64e
from ...core.errors import BadInput, Conflict, NotFound
from ..db import run_read, run_write
from ..models import (
    Account,
    AccountGroup,
    AccountRole,
    CloudContainer,
    CloudKind,
    Container,
    Firm,
    GroupMember,
    Item,
    Ticket,
    TicketState,
)
from ..protocol_db import Tx, protocol_for
from .accounts import AccountService, Person, normalize_login
from .activation import ActivationService
from .attempts import AttemptService
from .base import Actor, Service
from .tickets import normalize, unknown_ticket

#: the serial range of cloud containers (machine containers: 130)
SERIAL_PREFIX_CLOUD = codes.SERIAL_PREFIX_CLOUD
LEVEL = "cloud"


_GROUPS = select(GroupMember.group_id).where(GroupMember.account_id == bindparam("account"))
#: the activated licenses of the cloud containers a person may use (parameters ``firm`` and
#: ``account``): its personal container's first, then its groups' by name; what a cloud
#: lease and the user-licensing API look at
Q_PERSON_LICENSES = (
    select(
        Ticket.entry,
        Ticket.ticket,
        Ticket.id.label("ticket_id"),
        Ticket.customer_id,
        Ticket.item_id,
        Container.id.label("container_id"),
        Container.serial,
        CloudContainer.kind,
        CloudContainer.keys_enc,
        AccountGroup.name.label("group"),
        Firm.code.label("firm_code"),
        Firm.secret_enc,
        Item.options.label("template"),
    )
    .join(Item, Item.id == Ticket.item_id)
    .join(CloudContainer, CloudContainer.container_id == Ticket.container_id)
    .join(Container, Container.id == CloudContainer.container_id)
    .join(Firm, Firm.id == CloudContainer.firm_id)
    .outerjoin(AccountGroup, AccountGroup.id == CloudContainer.group_id)
    .where(
        CloudContainer.firm_id == bindparam("firm"),
        Ticket.state == TicketState.activated.value,
        (CloudContainer.account_id == bindparam("account")) | CloudContainer.group_id.in_(_GROUPS),
    )
    .order_by(CloudContainer.kind.desc(), AccountGroup.name, Ticket.license_id)
)


def _purpose(serial: str) -> str:
    return f"cloud container {serial}"


class CloudService(Service):
    def __init__(self, ctx: Any, session: Any, *, accounts: AccountService):
        super().__init__(ctx, session)
        self.accounts = accounts

    # ---------------------------------------------------------------- the vendor

    def activate(
        self,
        actor: Actor,
        ticket: str,
        *,
        login: str | None = None,
        customer: str | None = None,
        group: str | None = None,
        firm_code: int | None = None,
    ) -> dict[str, Any]:
        """Activate a ticket into an account's personal cloud container (``login``) or a
        group's enterprise one (``customer`` and ``group``), made on first use."""
        ticket = normalize(ticket)
        if (login is None) == (group is None) or (group is not None and customer is None):
            raise BadInput("Name the account (login), or the customer and the group, whose cloud container it is.")
        login = normalize_login(login) if login is not None else None

        def tx() -> dict[str, Any]:
            firm = self.scoped_firm(actor, firm_code)
            if login is not None:
                account = self.accounts.account(firm, login)
                if account.customer_id is None or AccountRole(account.role) not in (
                    AccountRole.customer_user,
                    AccountRole.customer_admin,
                ):
                    raise BadInput(f"Account {login} is not a customer's person: it holds no cloud licenses.")
                box = self._personal(firm, account)
            else:
                assert customer is not None and group is not None  # noqa: S101 - checked above
                found = self.accounts.group(self.accounts.customer(firm, customer), group)
                box = self._enterprise(firm, found)
            view = self._activate(firm, box, ticket)
            self.audit(actor, "cloud.activate", firm.code, ticket=ticket, serial=view["serial"], kind=box.kind)
            return view

        return run_write(self.session, tx)

    def deactivate(self, actor: Actor, ticket: str, firm_code: int | None = None) -> dict[str, Any]:
        """Take a ticket out of the cloud container that holds it (it may be activated anew)."""
        ticket = normalize(ticket)

        def tx() -> dict[str, Any]:
            firm = self.scoped_firm(actor, firm_code)
            view = self._deactivate(firm, ticket)
            self.audit(actor, "cloud.deactivate", firm.code, ticket=ticket, serial=view["serial"])
            return view

        return run_write(self.session, tx)

    def view_of(
        self,
        actor: Actor,
        *,
        login: str | None = None,
        customer: str | None = None,
        group: str | None = None,
        firm_code: int | None = None,
    ) -> dict[str, Any]:
        """The cloud container of an account (``login``) or a group, with its licenses."""
        login = normalize_login(login) if login is not None else None

        def tx() -> dict[str, Any]:
            firm = self.scoped_firm(actor, firm_code)
            if login is not None:
                owner = CloudContainer.account_id == self.accounts.account(firm, login).id
            else:
                assert customer is not None and group is not None  # noqa: S101 - the routes give both
                owner = CloudContainer.group_id == self.accounts.group(self.accounts.customer(firm, customer), group).id
            row = self.session.execute(
                select(CloudContainer, Container.serial)
                .join(Container, Container.id == CloudContainer.container_id)
                .where(owner)
            ).first()
            if row is None:
                raise NotFound("cloud_container", "No cloud container yet: it is made with its first license.")
            return self._view(row[0], row[1])

        return run_read(self.session, tx)

    # ---------------------------------------------------------------- a customer's people

    def person_activate(self, person: Person, ticket: str, group: str) -> dict[str, Any]:
        """A customer admin (any group of its customer) or a group admin (its group)
        activates one of the customer's tickets into the group's cloud container."""
        ticket = normalize(ticket)

        def tx() -> dict[str, Any]:
            firm, found = self._administered(person, group)
            view = self._activate(firm, self._enterprise(firm, found), ticket)
            self.accounts.audit_person(person, "cloud.activate", ticket=ticket, serial=view["serial"], group=group)
            return view

        return run_write(self.session, tx)

    def person_deactivate(self, person: Person, ticket: str, group: str) -> dict[str, Any]:
        ticket = normalize(ticket)

        def tx() -> dict[str, Any]:
            firm, found = self._administered(person, group)
            box = self.session.scalars(select(CloudContainer).where(CloudContainer.group_id == found.id)).first()
            view = self._deactivate(firm, ticket, only=box)
            self.accounts.audit_person(person, "cloud.deactivate", ticket=ticket, serial=view["serial"], group=group)
            return view

        return run_write(self.session, tx)

    def licenses(self, person: Person) -> list[dict[str, Any]]:
        """The licenses a person may use from the cloud: its personal container's and those
        of the groups it is a member of."""

        def tx() -> list[dict[str, Any]]:
            groups = select(GroupMember.group_id).where(GroupMember.account_id == person.account_id)
            rows = self.session.execute(
                select(CloudContainer, Container.serial, AccountGroup.name)
                .join(Container, Container.id == CloudContainer.container_id)
                .outerjoin(AccountGroup, AccountGroup.id == CloudContainer.group_id)
                .where(
                    CloudContainer.firm_id == person.firm_id,
                    (CloudContainer.account_id == person.account_id) | CloudContainer.group_id.in_(groups),
                )
                .order_by(CloudContainer.kind.desc(), AccountGroup.name)
            ).all()
            out = []
            for box, serial, group_name in rows:
                view = self._view(box, serial)
                view["group"] = group_name
                out.append(view)
            return out

        return run_read(self.session, tx)

    # ---------------------------------------------------------------- inside

    def _administered(self, person: Person, group: str) -> tuple[Firm, AccountGroup]:
        found = self.accounts.administered_group(person, group)
        firm = self.session.get(Firm, person.firm_id)
        assert firm is not None  # noqa: S101 - the person's firm exists (a foreign key)
        return firm, found

    def _personal(self, firm: Firm, account: Account) -> CloudContainer:
        box = self.session.scalars(
            select(CloudContainer).where(CloudContainer.account_id == account.id).with_for_update()
        ).first()
        return box or self._make(firm, CloudKind.personal, account_id=account.id)

    def _enterprise(self, firm: Firm, group: AccountGroup) -> CloudContainer:
        box = self.session.scalars(
            select(CloudContainer).where(CloudContainer.group_id == group.id).with_for_update()
        ).first()
        return box or self._make(firm, CloudKind.enterprise, group_id=group.id)

    def _make(self, firm: Firm, kind: CloudKind, **owner: uuid.UUID) -> CloudContainer:
        """A new cloud container: its keys (kept under the master key) and its registration."""
        now = self.now()
        serial = codes.new_serial(SERIAL_PREFIX_CLOUD)
        sign_key = hazmat.Ed25519PrivateKey.generate()
        box_key = hazmat.X25519PrivateKey.generate()
        secret = hazmat.raw_private(sign_key) + hazmat.raw_private(box_key)
        container = Container(
            serial=serial,
            level=LEVEL,
            sign_pub=b64e(hazmat.raw_public(sign_key.public_key())),
            box_pub=b64e(hazmat.raw_public(box_key.public_key())),
            created=now,
        )
        self.session.add(container)
        self.session.flush()
        box = CloudContainer(
            firm_id=firm.id,
            container_id=container.id,
            kind=kind.value,
            keys_enc=self.ctx.box.seal(firm.code, _purpose(serial), secret),
            created=now,
            **owner,
        )
        self.session.add(box)
        self.session.flush()
        return box

    def _owner_customer(self, box: CloudContainer) -> uuid.UUID | None:
        if box.account_id is not None:
            return self.session.scalar(select(Account.customer_id).where(Account.id == box.account_id))
        return self.session.scalar(select(AccountGroup.customer_id).where(AccountGroup.id == box.group_id))

    def _activate(self, firm: Firm, box: CloudContainer, ticket: str) -> dict[str, Any]:
        """Bind a ticket of the container's customer, of an item made for the cloud."""
        row = self.session.execute(
            select(Ticket, Item)
            .join(Item, Item.id == Ticket.item_id)
            .where(Ticket.ticket == ticket, Ticket.firm_id == firm.id)
        ).first()
        if row is None:
            raise unknown_ticket(ticket)
        t, item = row
        if t.customer_id != self._owner_customer(box):
            raise Conflict(
                "ticket_of_another_customer",
                f"Ticket {ticket} was sold to another customer than the one this cloud container belongs to.",
            )
        if not item.cloud:
            raise Conflict(
                "not_for_cloud",
                f"Item {item.item_id} is not made for cloud containers: make the item with cloud allowed.",
            )
        container = self.session.get(Container, box.container_id)
        assert container is not None  # noqa: S101 - a cloud container is registered (a foreign key)
        activations = ActivationService(self.ctx, self.session, attempts=AttemptService(self.ctx, self.session))
        with self._protocol() as tx:
            signed = activations.bind_cloud(tx, ticket, container.serial, container.sign_pub, container.id, self.now())
        self.session.expire_all()  # the ticket changed under the ORM's feet
        view = self._view(box, container.serial)
        view.update(ticket=ticket, activated=signed is not None)
        return view

    def _deactivate(self, firm: Firm, ticket: str, *, only: CloudContainer | None = None) -> dict[str, Any]:
        row = self.session.execute(
            select(Ticket, CloudContainer, Container.serial)
            .join(CloudContainer, CloudContainer.container_id == Ticket.container_id)
            .join(Container, Container.id == CloudContainer.container_id)
            .where(Ticket.ticket == ticket, Ticket.firm_id == firm.id, Ticket.state == TicketState.activated.value)
            .with_for_update(of=Ticket)
        ).first()
        if row is None or (only is not None and row[1].id != only.id):
            raise NotFound(
                "ticket", f"Ticket {ticket} is not active in a cloud container of yours. Check the ticket id."
            )
        t, box, serial = row
        with self._protocol() as tx:
            ActivationService.unbind_cloud(tx, t.id, self.now())
        self.session.expire_all()
        return {**self._view(box, serial), "ticket": ticket, "deactivated": True}

    @contextlib.contextmanager
    def _protocol(self) -> Iterator[Tx]:
        """The activation protocol's statements inside this session's transaction (on its
        driver connection): the protocol's own checks and entry, written with the rest."""
        cursor = self.session.connection().connection.cursor()
        try:
            yield Tx(protocol_for(self.ctx.db.engine), cursor)
        finally:
            cursor.close()

    def _view(self, box: CloudContainer, serial: str) -> dict[str, Any]:
        firm_code = self.session.scalar(select(Firm.code).where(Firm.id == box.firm_id))
        rows = self.session.execute(
            select(Ticket.ticket, Ticket.license_id, Item.item_id, Item.name, Item.product_code, Ticket.options)
            .join(Item, Item.id == Ticket.item_id)
            .where(Ticket.container_id == box.container_id, Ticket.state == TicketState.activated.value)
            .order_by(Ticket.license_id)
        ).all()
        owner: dict[str, Any] = {}
        if box.account_id is not None:
            owner["login"] = self.session.scalar(select(Account.login).where(Account.id == box.account_id))
        else:
            group = self.session.get(AccountGroup, box.group_id)
            assert group is not None  # noqa: S101 - an enterprise container's group exists (a foreign key)
            owner["group"] = group.name
            owner["customer"] = self.accounts.number_of(group.customer_id)
        return {
            "firm_code": firm_code,
            "serial": serial,
            "kind": box.kind,
            **owner,
            "licenses": [
                {
                    "ticket": r.ticket,
                    "license_id": r.license_id,
                    "item": r.item_id,
                    "name": r.name,
                    "product_code": r.product_code,
                    "quantity": int((r.options or {}).get("quantity", 1)),
                    "expires": (r.options or {}).get("expires"),
                }
                for r in rows
            ],
        }
