"""The ``proxy-grant`` document: what a proxy license server may serve, and to whom.

A license server linked to a group's enterprise cloud container (a **proxy**) gets, at
each refresh, the firm-signed license entries Central issued to its own machine
container (one per license of the group's container, for the seats it holds) and a
``proxy-grant`` signed with the same firm key. The grant names the group's members and
their linked devices (a device's credential: its machine container's serial and key),
so that the server admits a LAN client only by a device it can prove; the licenses it
proxies; until when (the vendor's proxy tolerance); and ``state``, the digest of the
members and licenses it was made from, which Central's update trigger compares.

docs/formats.md section "proxy-grant" is the reference.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from . import codes, hazmat
from .documents import DocumentInvalid, require, verify_document

PROXY_GRANT = "proxy-grant"
#: a proxy's one-time link code (``lcp_<firm>.<secret>``) and its session token (``lpx_...``)
CODE_PREFIX, TOKEN_PREFIX = "lcp_", "lpx_"


def code_firm(code: str) -> int | None:
    """The firm a link code names, None when it is no link code."""
    head, _, secret = code.removeprefix(CODE_PREFIX).partition(".")
    if not code.startswith(CODE_PREFIX) or not head.isdigit() or len(head) > 9 or not secret:
        return None
    return int(head)


@dataclass(frozen=True)
class Member:
    """A member of the proxied group: its login and the devices it has linked."""

    login: str
    devices: frozenset[tuple[str, str]]  # (container serial, base64url Ed25519 public key)


@dataclass(frozen=True)
class ProxyGrant:
    """A verified grant."""

    firm_code: int
    serial: str  # the proxy's machine container
    group: str
    proxy: str
    members: tuple[Member, ...]
    licenses: frozenset[int]  # license ids of the group's container it proxies
    issued: int
    until: int
    refresh: int  # seconds between refreshes
    poll: int  # seconds between looks at the update trigger
    state: str
    document: dict[str, Any]

    def member_of(self, serial: str, sign_pub: str) -> Member | None:
        """The member that linked the device (container ``serial`` with key ``sign_pub``)."""
        for member in self.members:
            if (serial, sign_pub) in member.devices:
                return member
        return None


def state_digest(members: list[dict[str, Any]], licenses: list[dict[str, Any]]) -> str:
    """The digest the update trigger compares: the members with their devices, and the
    group's licenses by entry (lists in a stable order)."""
    text = json.dumps({"members": members, "licenses": licenses}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def grant_payload(
    *,
    firm_code: int,
    serial: str,
    group: str,
    proxy: str,
    members: list[dict[str, Any]],
    licenses: list[dict[str, Any]],
    state: str,
    issued: int,
    until: int,
    refresh: int,
    poll: int,
) -> dict[str, Any]:
    """A grant's payload. ``members``: ``{"login", "devices": [{"serial", "sign_pub"}]}``;
    ``licenses``: ``{"license_id", "product_code", "seats"}`` (the seats held);
    ``state``: the update trigger's digest it was made at (``state_digest``)."""
    return {
        "firm_code": firm_code,
        "serial": serial,
        "group": group,
        "proxy": proxy,
        "members": members,
        "licenses": licenses,
        "issued": issued,
        "until": until,
        "refresh": refresh,
        "poll": poll,
        "state": state,
    }


def verify_grant(doc: Any, keys: dict[str, hazmat.Ed25519PublicKey], *, serial: str) -> ProxyGrant:
    """A ``proxy-grant`` signed by one of the firm's ``keys`` for the container ``serial``;
    DocumentInvalid says what is wrong."""
    if not isinstance(doc, dict) or not isinstance(doc.get("payload"), dict):
        raise DocumentInvalid("a proxy-grant document is an object with a payload")
    payload = verify_document(doc, PROXY_GRANT, keys)
    try:
        firm_code = codes.check_firm_code(require(payload, "firm_code", int))
        named = codes.check_serial(require(payload, "serial", str))
    except codes.InvalidCode as exc:
        raise DocumentInvalid(f"proxy-grant: {exc}") from None
    if named != serial:
        raise DocumentInvalid(f"proxy-grant for container {named}, not {serial}")
    members = []
    for m in require(payload, "members", list):
        if not isinstance(m, dict):
            raise DocumentInvalid("proxy-grant: a member is an object")
        devices = require(m, "devices", list)
        if not all(isinstance(d, dict) and isinstance(d.get("serial"), str) for d in devices):
            raise DocumentInvalid("proxy-grant: a device is an object with a serial")
        pairs = frozenset((require(d, "serial", str), require(d, "sign_pub", str)) for d in devices)
        members.append(Member(require(m, "login", str), pairs))
    licenses = require(payload, "licenses", list)
    if not all(isinstance(x, dict) for x in licenses):
        raise DocumentInvalid("proxy-grant: a license is an object")
    issued, until = require(payload, "issued", int), require(payload, "until", int)
    if until < issued:
        raise DocumentInvalid("proxy-grant ends before it was issued")
    return ProxyGrant(
        firm_code=firm_code,
        serial=named,
        group=require(payload, "group", str),
        proxy=require(payload, "proxy", str),
        members=tuple(members),
        licenses=frozenset(require(x, "license_id", int) for x in licenses),
        issued=issued,
        until=until,
        refresh=max(1, require(payload, "refresh", int)),
        poll=max(1, require(payload, "poll", int)),
        state=require(payload, "state", str),
        document=doc,
    )
