"""Access control for a license server: who may take seats of which product.

The rules live in the server's TOML config (docs/server.md)::

    [groups]
    eng = ["alice", "bob"]

    [[rules]]
    action = "deny"            # deny | allow | reserve | max
    product = "10101:1"        # FIRM:PRODUCT, FIRM:* or * (the default)
    users = ["mallory"]        # any of users, groups, hosts, ips matches (shell patterns for
    hosts = ["kiosk-*"]        #   users and hosts; IPs and CIDR networks for ips)
    ips = ["10.9.0.0/16"]
    groups = ["contractors"]

    [[rules]]
    action = "reserve"         # keep 2 seats for eng: others cannot take the last 2 free ones
    product = "10101:1"
    groups = ["eng"]
    seats = 2

    [borrow]
    max_days = 7               # the administrator's cap on licentia borrow --days
    max_seats = 2              # seats of one product out on loan at once
    groups = ["laptops"]       # who may borrow (empty: everyone the rules admit)

Precedence, as in the established license servers' options files: deny > reserve >
max > allow. A matching deny refuses; a client in a reserve rule's population is
admitted and may take that rule's unused reserved seats even past a max; a max refuses
a new seat once the rule's population holds ``seats``; when a product has allow rules,
a client that matches none (and no reserve) is refused.

User, host and group names are what the client says; only ``ips`` (the address the
server sees) can be relied on.
"""

from __future__ import annotations

import fnmatch
import hashlib
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ..core import errors as E
from ..core import tomlfile
from ..core.errors import AclError as AclError  # re-exported
from .model import Client, Lease, Refusal

ACTIONS = ("deny", "allow", "reserve", "max")
_SELECTORS = ("users", "groups", "hosts", "ips")
_RULE_KEYS = {"action", "product", "seats", "name", *_SELECTORS}
_BORROW_KEYS = {"enabled", "max_days", "max_seats", *_SELECTORS}


def _strings(value: Any, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise AclError(f"{where} is a list of non-empty strings")
    return tuple(value)


def parse_product(text: Any, where: str) -> tuple[int | None, int | None]:
    """ "FIRM:PRODUCT", "FIRM:*" or "*" -> (firm or None, product or None)."""
    if text is None or text == "*":
        return (None, None)
    if not isinstance(text, str) or ":" not in text:
        raise AclError(f"{where}: product is FIRM:PRODUCT, FIRM:* or *")
    firm, _, product = text.partition(":")
    try:
        return (int(firm), None if product == "*" else int(product))
    except ValueError:
        raise AclError(f"{where}: product is FIRM:PRODUCT, FIRM:* or *") from None


@dataclass(frozen=True)
class Selector:
    users: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()
    hosts: tuple[str, ...] = ()
    ips: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()

    @classmethod
    def parse(cls, obj: dict[str, Any], where: str) -> Selector:
        nets = []
        for text in _strings(obj.get("ips"), f"{where}.ips"):
            try:
                nets.append(ipaddress.ip_network(text, strict=False))
            except ValueError:
                raise AclError(f"{where}.ips: {text!r} is not an IP address or CIDR network") from None
        return cls(
            users=_strings(obj.get("users"), f"{where}.users"),
            groups=_strings(obj.get("groups"), f"{where}.groups"),
            hosts=tuple(h.lower() for h in _strings(obj.get("hosts"), f"{where}.hosts")),
            ips=tuple(nets),
        )

    @property
    def empty(self) -> bool:
        return not (self.users or self.groups or self.hosts or self.ips)

    def matches(self, user: str, host: str, ip: str, groups: Iterable[str]) -> bool:
        if any(fnmatch.fnmatchcase(user, p) for p in self.users):
            return True
        if self.hosts and any(fnmatch.fnmatchcase(host.lower(), p) for p in self.hosts):
            return True
        if self.ips and ip:
            try:
                addr = ipaddress.ip_address(ip)
            except ValueError:
                addr = None
            if addr is not None and any(addr in net for net in self.ips if net.version == addr.version):
                return True
        return bool(self.groups) and bool(set(self.groups) & set(groups))


@dataclass(frozen=True)
class Rule:
    index: int
    action: str
    firm: int | None
    product: int | None
    who: Selector
    seats: int = 0
    name: str = ""

    def applies(self, firm: int, product: int) -> bool:
        return (self.firm is None or self.firm == firm) and (self.product is None or self.product == product)

    def describe(self) -> str:
        what = "*" if self.firm is None else f"{self.firm}:{'*' if self.product is None else self.product}"
        label = f" '{self.name}'" if self.name else ""
        seats = f" {self.seats}" if self.action in ("reserve", "max") else ""
        return f"rule #{self.index}{label} ({self.action.upper()}{seats} {what})"


@dataclass(frozen=True)
class BorrowPolicy:
    enabled: bool = True
    max_days: int = 7
    max_seats: int | None = None
    who: Selector = field(default_factory=Selector)


def _rule(i: int, obj: Any) -> Rule:
    """Rule number ``i`` of the [[rules]] array, checked."""
    where = f"rules #{i}"
    if not isinstance(obj, dict):
        raise AclError(f"{where} is a table")
    unknown = set(obj) - _RULE_KEYS
    if unknown:
        raise AclError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
    action = obj.get("action")
    if action not in ACTIONS:
        raise AclError(f"{where}: action is one of {', '.join(ACTIONS)}")
    firm, product = parse_product(obj.get("product"), where)
    who = Selector.parse(obj, where)
    if who.empty:
        raise AclError(f"{where}: name at least one of users, groups, hosts, ips")
    seats = obj.get("seats", 0)
    if action in ("reserve", "max"):
        if not isinstance(seats, int) or isinstance(seats, bool) or seats < 0:
            raise AclError(f"{where}: {action} needs seats = a whole number of 0 or more")
    elif "seats" in obj:
        raise AclError(f"{where}: seats applies to reserve and max only")
    name = obj.get("name", "")
    if not isinstance(name, str):
        raise AclError(f"{where}: name is text")
    return Rule(i, action, firm, product, who, int(seats), name)


@dataclass(frozen=True)
class Acl:
    rules: tuple[Rule, ...] = ()
    groups: dict[str, frozenset[str]] = field(default_factory=dict)
    borrow: BorrowPolicy = field(default_factory=BorrowPolicy)
    digest: str = ""

    # ------------------------------------------------------------ loading

    @classmethod
    def from_toml(cls, text: str | bytes) -> Acl:
        try:
            doc = tomlfile.loads(text)
        except tomlfile.TomlRejected as exc:
            raise AclError(f"not valid TOML: {exc}") from None
        raw = text.encode() if isinstance(text, str) else bytes(text)
        acl = cls.from_dict(doc)
        return cls(acl.rules, acl.groups, acl.borrow, hashlib.sha256(raw).hexdigest()[:16])

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> Acl:
        groups: dict[str, frozenset[str]] = {}
        raw_groups = doc.get("groups", {})
        if not isinstance(raw_groups, dict):
            raise AclError("[groups] maps a group name to a list of user names")
        for name, members in raw_groups.items():
            groups[name] = frozenset(_strings(members, f"groups.{name}"))
        rules = []
        raw_rules = doc.get("rules", [])
        if not isinstance(raw_rules, list):
            raise AclError("rules is an array of tables: write [[rules]]")
        for i, obj in enumerate(raw_rules, 1):
            rules.append(_rule(i, obj))
        raw_borrow = doc.get("borrow", {})
        if not isinstance(raw_borrow, dict):
            raise AclError("[borrow] is a table")
        unknown = set(raw_borrow) - _BORROW_KEYS
        if unknown:
            raise AclError(f"[borrow]: unknown key(s) {', '.join(sorted(unknown))}")
        enabled = raw_borrow.get("enabled", True)
        max_days = raw_borrow.get("max_days", 7)
        max_seats = raw_borrow.get("max_seats")
        if not isinstance(enabled, bool):
            raise AclError("[borrow] enabled is true or false")
        if not isinstance(max_days, int) or isinstance(max_days, bool) or max_days < 0:
            raise AclError("[borrow] max_days is a whole number of 0 or more")
        if max_seats is not None and (not isinstance(max_seats, int) or isinstance(max_seats, bool) or max_seats < 0):
            raise AclError("[borrow] max_seats is a whole number of 0 or more")
        borrow = BorrowPolicy(enabled, max_days, max_seats, Selector.parse(raw_borrow, "[borrow]"))
        return cls(tuple(rules), groups, borrow)

    # ------------------------------------------------------------ matching

    def groups_of(self, user: str, said: Iterable[str]) -> set[str]:
        out = set(said)
        out.update(g for g, members in self.groups.items() if user in members)
        return out

    def _client_matches(self, rule: Rule, client: Client) -> bool:
        return rule.who.matches(client.user, client.host, client.ip, self.groups_of(client.user, client.groups))

    def _lease_matches(self, rule: Rule, lease: Lease) -> bool:
        return rule.who.matches(lease.user, lease.host, lease.ip, self.groups_of(lease.user, lease.groups))

    def _rules(self, action: str, firm: int, product: int) -> list[Rule]:
        return [r for r in self.rules if r.action == action and r.applies(firm, product)]

    def has_seat_rules(self, firm: int, product: int) -> bool:
        return any(r.action in ("reserve", "max") and r.applies(firm, product) for r in self.rules)

    def admit(self, client: Client, firm: int, product: int) -> Refusal | None:
        """Deny rules and allow lists (no seat counting)."""
        for rule in self._rules("deny", firm, product):
            if self._client_matches(rule, client):
                return _denied(f"{client.ident} ({client.ip}) matches {rule.describe()}")
        if any(self._client_matches(r, client) for r in self._rules("reserve", firm, product)):
            return None
        allows = self._rules("allow", firm, product)
        if allows and not any(self._client_matches(r, client) for r in allows):
            return _denied(f"{client.ident} ({client.ip}) matches no allow rule for {firm}:{product}")
        return None

    def check_new_seat(
        self, client: Client, firm: int, product: int, total: int | None, holders: list[Lease]
    ) -> Refusal | None:
        """Reserve and max, for a client that needs a new seat of the product.

        ``total`` is the product's seats over all its licenses (None: no limit);
        ``holders`` the live counted leases of the product."""
        seats: dict[tuple[str, str], Lease] = {}
        for lease in holders:
            if lease.counted:
                seats.setdefault((lease.license_key, lease.seat), lease)
        used = len(seats)

        def used_by(rule: Rule) -> int:
            return sum(1 for lease in seats.values() if self._lease_matches(rule, lease))

        reserves = self._rules("reserve", firm, product)
        mine = [r for r in reserves if self._client_matches(r, client)]
        if any(used_by(r) < r.seats for r in mine):
            return None  # a seat reserved for this client's population is free
        for rule in self._rules("max", firm, product):
            if self._client_matches(rule, client) and used_by(rule) >= rule.seats:
                return _denied(f"{client.ident} ({client.ip}): {rule.describe()} reached")
        if total is not None:
            held_back = sum(max(0, r.seats - used_by(r)) for r in reserves if r not in mine)
            if used + held_back >= total:
                return Refusal(
                    E.SeatsExhausted,
                    f"all {total} seat(s) of product {firm}:{product} are in use or reserved for others; "
                    "try again later",
                    f"{client.ident}: {used} seat(s) in use, {held_back} reserved for others of {total}",
                    seats=total,
                    in_use=used,
                )
        return None

    def may_borrow(self, client: Client) -> Refusal | None:
        policy = self.borrow
        if not policy.enabled or policy.max_days == 0:
            return _denied(f"{client.ident}: borrowing is switched off", "this license server does not lend licenses")
        if not policy.who.empty and not policy.who.matches(
            client.user, client.host, client.ip, self.groups_of(client.user, client.groups)
        ):
            return _denied(f"{client.ident} ({client.ip}) is not in [borrow]'s users/groups/hosts/ips")
        return None


def _denied(log: str, message: str | None = None) -> Refusal:
    return Refusal(
        E.AccessDenied,
        message or "the license server's access rules refuse this access; ask its administrator",
        log,
    )


EMPTY = Acl()
