"""The ``proxy-grant`` reader: a grant the firm signed for this container is read as
written; any other (another container's, another key's, a field changed or of the wrong
shape) is refused with DocumentInvalid, never another exception."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from licentia.core import codes, hazmat
from licentia.core import proxy as P
from licentia.core.documents import DocumentInvalid, sign_document
from licentia.core.encoding import b64e
from tests.factory import T0

FIRM = hazmat.Ed25519PrivateKey.generate()
KEYS = {hazmat.key_id(FIRM.public_key()): FIRM.public_key()}
SERIAL = codes.new_serial()
DEVICE = (codes.new_serial(), b64e(hazmat.raw_public(hazmat.Ed25519PrivateKey.generate().public_key())))


def payload(**changes: Any) -> dict[str, Any]:
    members = [{"login": "ada@example.com", "devices": [{"serial": DEVICE[0], "sign_pub": DEVICE[1]}]},
               {"login": "bob@example.com", "devices": []}]  # fmt: skip
    licenses = [{"license_id": 1, "product_code": 12, "seats": 2}]
    p = P.grant_payload(
        firm_code=63101,
        serial=SERIAL,
        group="Engineering",
        proxy="lan",
        members=members,
        licenses=licenses,
        state=P.state_digest(members, [{"license_id": 1, "entry": "ab" * 32}]),
        issued=T0,
        until=T0 + 3600,
        refresh=900,
        poll=15,
    )
    p.update(changes)
    return p


def grant(key: hazmat.Ed25519PrivateKey = FIRM, **changes: Any) -> dict[str, Any]:
    return sign_document(P.PROXY_GRANT, payload(**changes), key)


def test_a_grant_reads_as_written():
    g = P.verify_grant(grant(), KEYS, serial=SERIAL)
    assert (g.firm_code, g.serial, g.group, g.proxy, g.licenses) == (63101, SERIAL, "Engineering", "lan", {1})
    assert (g.issued, g.until, g.refresh, g.poll) == (T0, T0 + 3600, 900, 15)
    ada = g.member_of(*DEVICE)
    assert ada is not None and ada.login == "ada@example.com"
    assert g.member_of(DEVICE[0], b64e(b"x" * 32)) is None  # the serial with another key: no member's
    assert g.member_of(codes.new_serial(), DEVICE[1]) is None


@pytest.mark.parametrize(
    "doc",
    [
        grant(hazmat.Ed25519PrivateKey.generate()),  # another key
        grant(serial=codes.new_serial()),  # another container's
        grant(until=T0 - 1),  # ends before it was issued
        grant(members=[{"login": "x", "devices": ["130-..."]}]),
        grant(members=["ada"]),
        grant(members=[{"login": "x", "devices": [{"serial": 5, "sign_pub": "k"}]}]),
        grant(members=[{"login": "x", "devices": [{"serial": "s"}]}]),
        grant(licenses=[1]),
        grant(licenses=[{"license_id": "1"}]),
        grant(firm_code=0),
        grant(serial="nope"),
        grant(state=None),
        grant(refresh=True),
        {"payload": "x"},
        [],
        None,
    ],
)
def test_a_grant_not_for_this_container_or_not_as_written_is_refused(doc):
    with pytest.raises(DocumentInvalid):
        P.verify_grant(doc, KEYS, serial=SERIAL)


def test_a_changed_field_breaks_the_signature():
    doc = copy.deepcopy(grant())
    doc["payload"]["members"][1]["devices"].append({"serial": DEVICE[0], "sign_pub": DEVICE[1]})
    with pytest.raises(DocumentInvalid):
        P.verify_grant(doc, KEYS, serial=SERIAL)


def test_the_state_digest_follows_members_devices_and_licenses():
    members = [{"login": "a", "devices": []}]
    base = P.state_digest(members, [{"license_id": 1, "entry": "e"}])
    assert base == P.state_digest([{"login": "a", "devices": []}], [{"entry": "e", "license_id": 1}])
    assert base != P.state_digest([{"login": "a", "devices": [{"serial": "s", "sign_pub": "k"}]}],
                                  [{"license_id": 1, "entry": "e"}])  # fmt: skip
    assert base != P.state_digest(members, [{"license_id": 1, "entry": "f"}])
    assert base != P.state_digest([], [{"license_id": 1, "entry": "e"}])


def test_the_state_digest_is_the_documented_one():
    """docs/formats.md 12.13: SHA-256 of the canonical JSON (keys sorted, no spaces) of
    ``{"licenses": ..., "members": ...}``, computed here from the text itself."""
    import hashlib

    members = [{"login": "a", "devices": [{"serial": "s", "sign_pub": "k"}]}]
    licenses = [{"license_id": 1, "entry": "e"}]
    text = (
        '{"licenses":[{"entry":"e","license_id":1}],'
        '"members":[{"devices":[{"serial":"s","sign_pub":"k"}],"login":"a"}]}'
    )
    assert P.state_digest(members, licenses) == hashlib.sha256(text.encode()).hexdigest()


def test_a_grant_at_its_bounds():
    doc = grant(until=T0, refresh=1, poll=1)  # ends when issued: read, with the shortest intervals
    g = P.verify_grant(doc, KEYS, serial=SERIAL)
    assert (g.until, g.refresh, g.poll) == (T0, 1, 1) and g.document is doc
    g = P.verify_grant(grant(refresh=0, poll=-5), KEYS, serial=SERIAL)
    assert (g.refresh, g.poll) == (1, 1)  # never below a second


@pytest.mark.parametrize(
    "code,firm",
    [
        ("lcp_10101.secret", 10101),
        ("lcp_123456789.s", 123456789),
        ("lcp_1234567890.s", None),  # ten digits: no firm code
        ("lcp_10101.", None),  # no secret
        ("lcp_10101", None),
        ("lcp_.secret", None),
        ("lcp_1x1.secret", None),
        ("lcp_+1.secret", None),
        ("lpx_10101.secret", None),  # a session token, not a link code
        ("xlcp_10101.secret", None),
        ("", None),
    ],
)
def test_the_firm_a_link_code_names(code, firm):
    from licentia.core.proxy import code_firm

    assert code_firm(code) == firm
