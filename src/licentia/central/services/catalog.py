"""Items (what a ticket licenses, with an options template) and customers."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import InstrumentedAttribute, Session, aliased

from ...core import codes
from ...core.encoding import b64d, b64e
from ...core.errors import BadInput, Conflict, NotFound
from ...core.license import DAY, Options
from ..db import run_read, run_write
from ..models import Customer, Firm, Item, Level, Policy
from .base import Actor, Service

#: Option template fields: relative (days from first activation) or absolute (Unix time).
TEMPLATE_INTS = (
    "expires_days",
    "expires",
    "not_before",
    "usage_period_days",
    "units",
    "quantity",
    "maintenance_days",
    "maintenance_until",
    "sync_interval_days",
    "report_interval_hours",
    "offline_allowance",
    "max_grace",
)
#: What items made from now on with units or a time limit get unless the vendor says
#: otherwise (0 removes either): an online machine reports daily, an offline one syncs monthly.
#: An item of more than one seat (quantity > 1: served by a license server) syncs monthly
#: too, so that the server's usage log reaches Central and a withdrawn license leaves it.
DEFAULT_REPORT_HOURS = 24
DEFAULT_SYNC_DAYS = 30
_LIMITED = ("units", "expires", "expires_days", "usage_period_days")

#: A list answers one page: this many rows unless the caller asks for another number,
#: at most MAX_PAGE; the next page starts at ``offset`` = the rows seen so far.
PAGE_SIZE = 100
MAX_PAGE = 1000
MAX_OFFSET = 2**62


def page(limit: int, offset: int) -> tuple[int, int]:
    """A list's page, checked: ``limit`` rows (1 to MAX_PAGE) after the first ``offset``."""
    if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= MAX_PAGE:
        raise BadInput(f"limit is a whole number from 1 to {MAX_PAGE}.")
    if not isinstance(offset, int) or isinstance(offset, bool) or not 0 <= offset <= MAX_OFFSET:
        raise BadInput("offset is a whole number of 0 or more.")
    return limit, offset


def clean_template(raw: dict[str, Any] | None) -> dict[str, Any]:
    """Check an options template; return it without unset fields."""
    raw = dict(raw or {})
    unknown = set(raw) - set(TEMPLATE_INTS) - {"data", "local_only", "metering", "user_seats"}
    if unknown:
        raise BadInput(f"Unknown option(s): {', '.join(sorted(unknown))}.")
    out: dict[str, Any] = {}
    for name in TEMPLATE_INTS:
        value = raw.get(name)
        if value is None:
            continue
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise BadInput(f"Option {name} is a whole number of 0 or more.")
        out[name] = value
    for a, b in (("expires_days", "expires"), ("maintenance_days", "maintenance_until")):
        if a in out and b in out:
            raise BadInput(f"Give {a} or {b}, not both.")
    if raw.get("data") is not None:
        data = raw["data"]
        try:
            if not isinstance(data, str):
                raise ValueError
            out["data"] = b64e(b64d(data.replace("+", "-").replace("/", "_").rstrip("=")))
        except ValueError:
            raise BadInput("Option data is base64 text.") from None
    if raw.get("local_only"):
        if not isinstance(raw["local_only"], bool):
            raise BadInput("Option local_only is true or false.")
        out["local_only"] = True
    _choices(raw, out)
    out.setdefault("quantity", 1)
    if any(name in out for name in _LIMITED):
        out.setdefault("report_interval_hours", DEFAULT_REPORT_HOURS)
        out.setdefault("sync_interval_days", DEFAULT_SYNC_DAYS)
    if out["quantity"] > 1:
        out.setdefault("sync_interval_days", DEFAULT_SYNC_DAYS)
    return out


def _choices(raw: dict[str, Any], out: dict[str, Any]) -> None:
    """The template's options of named choices (``metering``, ``user_seats``), checked into ``out``."""
    metering = raw.get("metering")
    if metering not in (None, "local", "online"):
        raise BadInput("Option metering is local or online.")
    if metering == "online":
        if "units" not in out:
            raise BadInput("Online metering counts units: give the item units too.")
        out["metering"] = "online"
    user_seats = raw.get("user_seats")
    if user_seats not in (None, "person", "device"):
        raise BadInput("Option user_seats is person or device.")
    if user_seats is not None:
        out["user_seats"] = user_seats


def absolute_options(template: dict[str, Any], first_activation: int) -> Options:
    """The license options of a ticket, fixed at its first activation."""

    def days(name: str) -> int | None:
        value = template.get(name)
        return None if value is None else value * DAY

    def interval(name: str, unit: int) -> int | None:
        value = template.get(name)
        return value * unit if value else None  # 0: none

    expires = template.get("expires")
    if template.get("expires_days") is not None:
        expires = first_activation + template["expires_days"] * DAY
    maintenance = template.get("maintenance_until")
    if template.get("maintenance_days") is not None:
        maintenance = first_activation + template["maintenance_days"] * DAY
    data = template.get("data")
    return Options(
        expires=expires,
        not_before=template.get("not_before"),
        usage_period=days("usage_period_days"),
        units=template.get("units"),
        quantity=template.get("quantity", 1),
        maintenance_until=maintenance,
        sync_interval=interval("sync_interval_days", DAY),
        data=None if data is None else b64d(data),
        local_only=bool(template.get("local_only", False)),
        report_interval=interval("report_interval_hours", 3600),
        metering=template.get("metering", "local"),
        offline_allowance=int(template.get("offline_allowance", 0)),
        max_grace=template.get("max_grace"),
    )


def template_expired(template: dict[str, Any] | None, now: int) -> bool:
    """Whether an options template's absolute expiry has passed: its item is sold and
    activated no more."""
    expires = (template or {}).get("expires")
    return expires is not None and expires <= now


def item_expired(item: Item, now: int) -> bool:
    return template_expired(item.options, now)


def item_view(item: Item, firm_code: int, module_of: str | None, now: int) -> dict[str, Any]:
    expires = (item.options or {}).get("expires")
    return {
        "item_id": item.item_id,
        "firm_code": firm_code,
        "name": item.name,
        "product_code": item.product_code,
        "feature_map": item.feature_map,
        "level": item.level,
        "key_versions": list(item.key_versions),
        "options": dict(item.options),
        "module_of": module_of,
        "on_manipulation": item.policy,
        "flag_window_days": item.flag_window_days,
        "cloud": bool(item.cloud),
        # an absolute expiry: how near it is (whole days left, rounded down; 0 on the last day)
        "expires_in_days": None if expires is None else max(0, (expires - now) // DAY),
        "expired": template_expired(item.options, now),
    }


def customer_view(customer: Customer, firm_code: int) -> dict[str, Any]:
    return {"number": customer.number, "firm_code": firm_code, "name": customer.name, "email": customer.email}


def check_item_codes(item_id: str | None, feature_map: int, product_code: int | None) -> str | None:
    """Check the codes of a new item; return its item id in canonical form (if given)."""
    try:
        if item_id is not None:
            item_id = codes.normalize_item_id(item_id)
        codes.check_feature(feature_map)
        if product_code is not None:
            codes.check_product_code(product_code)
    except codes.InvalidCode as exc:
        raise BadInput(f"{exc}.") from None
    return item_id


def check_key_versions(key_versions: list[int] | None) -> list[int]:
    """The key versions of a new item, sorted, each once (default: version 1)."""
    versions = sorted(set(key_versions or [1]))
    if not versions or any(not isinstance(v, int) or isinstance(v, bool) or v < 1 for v in versions):
        raise BadInput("key_versions are whole numbers from 1.")
    return versions


def bump_counter(session: Session, firm: Firm, column: InstrumentedAttribute[int], by: int = 1) -> int:
    """Add ``by`` to a per-firm counter atomically; return its new value."""
    return int(
        session.execute(
            update(Firm).where(Firm.id == firm.id).values({column: column + by}).returning(column),
            execution_options={"synchronize_session": False},
        ).scalar_one()
    )


class CatalogService(Service):
    # ---------------------------------------------------------------- items

    def create_item(
        self,
        actor: Actor,
        *,
        firm_code: int | None,
        name: str,
        product_code: int | None,
        item_id: str | None = None,
        feature_map: int = 0xFFFFFFFF,
        level: str = "medium",
        key_versions: list[int] | None = None,
        module_of: str | None = None,
        options: dict[str, Any] | None = None,
        policy: str = Policy.rebase.value,
        flag_window_days: int = 90,
        cloud: bool = False,
    ) -> dict[str, Any]:
        name = name.strip()
        if not name:
            raise BadInput("An item needs a name.")
        if policy not in {p.value for p in Policy}:
            raise BadInput("on_manipulation is rebase or withdraw.")
        if not isinstance(flag_window_days, int) or isinstance(flag_window_days, bool) or flag_window_days < 0:
            raise BadInput("flag_window_days is a whole number of 0 or more.")
        item_id = check_item_codes(item_id, feature_map, product_code)
        if level not in {lv.value for lv in Level}:
            raise BadInput("level is loose, medium or tight.")
        versions = check_key_versions(key_versions)
        template = clean_template(options)

        def tx() -> dict[str, Any]:
            firm = self.scoped_firm(actor, firm_code)
            base = None if module_of is None else self._module_base(firm, module_of, product_code)
            product = product_code if base is None else base.product_code
            if product is None:
                raise BadInput("An item needs a product code (product_code).")
            item = Item(
                firm_id=firm.id,
                item_id=self._new_item_id(firm, item_id, product),
                name=name,
                product_code=product,
                feature_map=feature_map,
                level=level if base is None else base.level,
                key_versions=versions,
                options=template,
                policy=policy,
                flag_window_days=flag_window_days,
                module_of_id=base.id if base else None,
                created=self.now(),
                cloud=bool(cloud),
            )
            self.session.add(item)
            self.session.flush()
            view = item_view(item, firm.code, base.item_id if base else None, self.now())
            self.audit(actor, "item.create", firm.code, **view)
            return view

        return run_write(self.session, tx)

    def _module_base(self, firm: Firm, module_of: str, product_code: int | None) -> Item:
        """The base item a new module item extends; a module has its base's product code."""
        base = self.item(firm, module_of)
        if base.module_of_id is not None:
            raise BadInput(f"{module_of} is itself a module item: a module extends a base item.")
        if product_code is not None and product_code != base.product_code:
            raise BadInput(f"A module item has its base item's product code {base.product_code}.")
        return base

    def _new_item_id(self, firm: Firm, item_id: str | None, product: int) -> str:
        """The id given, if free; or the firm's next free F-NNNNN-<product>."""
        if item_id is not None:
            if self._item_exists(firm, item_id):
                raise Conflict("item_exists", f"Item {item_id} already exists. Pick another item id.")
            return item_id
        while True:
            n = bump_counter(self.session, firm, Firm.item_counter)
            candidate = f"F-{n:05d}-{product}"
            if not self._item_exists(firm, candidate):
                return candidate

    def get_item(self, actor: Actor, item_id: str, firm_code: int | None = None) -> dict[str, Any]:
        def tx() -> dict[str, Any]:
            firm = self.scoped_firm(actor, firm_code)
            item = self.item(firm, item_id)
            return item_view(item, firm.code, self._module_of(item), self.now())

        return run_read(self.session, tx)

    def list_items(
        self, actor: Actor, firm_code: int | None = None, *, limit: int = PAGE_SIZE, offset: int = 0
    ) -> list[dict[str, Any]]:
        """A page of the firm's items, by item id."""
        limit, offset = page(limit, offset)

        def tx() -> list[dict[str, Any]]:
            firm = self.scoped_firm(actor, firm_code)
            base = aliased(Item)
            rows = self.session.execute(
                select(Item, base.item_id)
                .outerjoin(base, Item.module_of_id == base.id)
                .where(Item.firm_id == firm.id)
                .order_by(Item.item_id)
                .limit(limit)
                .offset(offset)
            ).all()
            now = self.now()
            return [item_view(item, firm.code, module_of, now) for item, module_of in rows]

        return run_read(self.session, tx)

    def item(self, firm: Firm, item_id: str) -> Item:
        text = item_id.strip(codes.ITEM_ID_SPACE).upper() if isinstance(item_id, str) and item_id.isascii() else item_id
        item = self.session.scalars(select(Item).where(Item.firm_id == firm.id, Item.item_id == text)).first()
        if item is None:
            raise NotFound("item", f"Firm {firm.code} has no item {item_id}. Check the item id.")
        return item

    def _item_exists(self, firm: Firm, item_id: str) -> bool:
        return self.session.scalar(select(Item.id).where(Item.firm_id == firm.id, Item.item_id == item_id)) is not None

    def _module_of(self, item: Item) -> str | None:
        if item.module_of_id is None:
            return None
        return self.session.scalar(select(Item.item_id).where(Item.id == item.module_of_id))

    # ---------------------------------------------------------------- customers

    def create_customer(
        self, actor: Actor, *, firm_code: int | None, name: str, number: str | None = None, email: str | None = None
    ) -> dict[str, Any]:
        name = name.strip()
        if not name:
            raise BadInput("A customer needs a name.")
        if number is not None:
            number = number.strip()
            if not number:
                raise BadInput("A customer number is not empty.")
        if email is not None and "@" not in email:
            raise BadInput("The e-mail address has no '@'.")

        def tx() -> dict[str, Any]:
            firm = self.scoped_firm(actor, firm_code)
            new_number = self._new_customer_number(firm, number)
            customer = Customer(firm_id=firm.id, number=new_number, name=name, email=email, created=self.now())
            self.session.add(customer)
            self.session.flush()
            view = customer_view(customer, firm.code)
            self.audit(actor, "customer.create", firm.code, **view)
            return view

        return run_write(self.session, tx)

    def get_customer(self, actor: Actor, number: str, firm_code: int | None = None) -> dict[str, Any]:
        def tx() -> dict[str, Any]:
            firm = self.scoped_firm(actor, firm_code)
            return customer_view(self.customer(firm, number), firm.code)

        return run_read(self.session, tx)

    def list_customers(
        self, actor: Actor, firm_code: int | None = None, *, limit: int = PAGE_SIZE, offset: int = 0
    ) -> list[dict[str, Any]]:
        """A page of the firm's customers, by customer number."""
        limit, offset = page(limit, offset)

        def tx() -> list[dict[str, Any]]:
            firm = self.scoped_firm(actor, firm_code)
            rows = self.session.scalars(
                select(Customer)
                .where(Customer.firm_id == firm.id)
                .order_by(Customer.number)
                .limit(limit)
                .offset(offset)
            )
            return [customer_view(c, firm.code) for c in rows]

        return run_read(self.session, tx)

    def customer(self, firm: Firm, number: str) -> Customer:
        stmt = select(Customer).where(Customer.firm_id == firm.id, Customer.number == number)
        row = self.session.scalars(stmt).first()
        if row is None:
            raise NotFound("customer", f"Firm {firm.code} has no customer {number}. Check the customer number.")
        return row

    def _new_customer_number(self, firm: Firm, number: str | None) -> str:
        """The number given, if free; or the firm's next free number."""
        if number is not None:
            if self._customer_exists(firm, number):
                raise Conflict("customer_exists", f"Customer {number} already exists. Pick another number.")
            return number
        while True:
            candidate = str(bump_counter(self.session, firm, Firm.customer_counter))
            if not self._customer_exists(firm, candidate):
                return candidate

    def _customer_exists(self, firm: Firm, number: str) -> bool:
        stmt = select(Customer.id).where(Customer.firm_id == firm.id, Customer.number == number)
        return self.session.scalar(stmt) is not None
