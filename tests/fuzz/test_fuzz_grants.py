"""Leases, borrowed licenses, return receipts and proofs of possession under any input: the
verified grant or ``DocumentInvalid`` (a proof: True or False), never another exception.

A license server signs its grants with its container's key, which a firm-signed entry
names; here the server is a real machine container (its ``sign``, as the server uses it)
and, for grants with any ``type`` or ``v``, its key. Each reader gets genuine grants with
one change anywhere inside, signed again by the server (or by a key no entry names), and
genuine entries with one change, signed again by the firm. ``make fuzz`` runs them with
many more examples."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from licentia.container import MachineContainer, graces
from licentia.core import codes, exchange, grants, hazmat
from licentia.core.documents import DocumentInvalid, sign_document
from licentia.core.encoding import b64d, b64e
from licentia.core.license import LicenseEntry, Options
from tests.factory import T0, Firm, machine_traits
from tests.strategies import (
    accepted_json,
    envelope,
    genuine_payload,
    hostile_documents,
    hostile_values,
    near,
    one_change,
    pin,
    pinned_documents,
    plain_text,
)

FIRM = Firm()
FIRM_KEYS = {hazmat.key_id(FIRM.key.public_key()): FIRM.key.public_key()}
SERVER = hazmat.Ed25519PrivateKey.generate()  # the server container's key (a real one below as well)
OTHER = hazmat.Ed25519PrivateKey.generate()
CLIENT = hazmat.Ed25519PrivateKey.generate()  # a borrowing client's container key
CLIENT_PUB = b64e(hazmat.raw_public(CLIENT.public_key()))
HOLDER = hazmat.Ed25519PrivateKey.generate()  # a client session's key
HOLDER_PUB = b64e(hazmat.raw_public(HOLDER.public_key()))
SESSION = b64e(hazmat.raw_public(hazmat.X25519PrivateKey.generate().public_key()))
SERVER_SERIAL = codes.new_serial()
CLIENT_SERIAL = codes.new_serial()


def server_request(key: hazmat.Ed25519PrivateKey, serial: str) -> exchange.Request:
    doc = exchange.build_request(
        serial=serial,
        level="medium",
        sign_key=key,
        box_pub=hazmat.raw_public(hazmat.X25519PrivateKey.generate().public_key()),
        slots={},
        action="activate",
        now=T0,
        ticket=codes.new_ticket_id(),
    )
    return exchange.verify_request(doc)


ENTRY_DOC = FIRM.entry(server_request(SERVER, SERVER_SERIAL), options=Options(quantity=5, max_grace=3600), license_id=3)
ENTRY = LicenseEntry.verify(ENTRY_DOC, FIRM_KEYS)


def sign_as_server(doc_type: str, payload: dict[str, Any]) -> dict[str, Any]:
    return sign_document(doc_type, payload, SERVER)


LEASE = grants.build_lease(
    sign_as_server,
    lease_id="L1",
    client_lease_id="c1",
    entry=ENTRY,
    feature_code=1,
    mode="user",
    session=SESSION,
    nonce="n1",
    issued=T0,
    expires=T0 + 120,
    first_use=T0,
    holder=HOLDER_PUB,
    grace_until=T0 + 600,
)
BORROW = grants.build_borrow(
    sign_as_server,
    borrow_id="B1",
    entry=ENTRY,
    client_serial=CLIENT_SERIAL,
    client_key=CLIENT_PUB,
    issued=T0,
    expires=T0 + 86400,
)
RETURN = sign_document(
    grants.BORROW_RETURN, {"serial": CLIENT_SERIAL, "borrow_id": "B1", "firm_code": FIRM.code, "vtime": T0}, CLIENT
)
GRACE_RETURN = sign_document(grants.GRACE_RETURN, graces.receipt_payload(CLIENT_SERIAL, FIRM.code, "L1", T0), CLIENT)


def grants_of(genuine: dict[str, Any], doc_type: str, signer: hazmat.Ed25519PrivateKey) -> st.SearchStrategy[Any]:
    """The grant with one change (signed again by its signer or by a key nobody trusts), its
    envelope with one change, and any JSON value where the grant goes."""
    return st.one_of(hostile_documents(genuine_payload(genuine), signer, doc_type, keys=[OTHER]), hostile_values)


def entries() -> st.SearchStrategy[LicenseEntry | None]:
    """The genuine entry, or one with one change, signed again by the firm (None: refused)."""

    def verified(payload: dict[str, Any]) -> LicenseEntry | None:
        try:
            return LicenseEntry.verify(envelope(payload, FIRM.key, "license"), FIRM_KEYS)
        except DocumentInvalid:
            return None

    return st.one_of(st.just(ENTRY), one_change(genuine_payload(ENTRY_DOC)).map(verified))


def _decodes_to(text: Any, raw: bytes) -> bool:
    try:
        return b64d(text) == raw
    except ValueError:
        return False


# ---------------------------------------------------------------- leases


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> tuple[MachineContainer, LicenseEntry, dict[str, Any]]:
    """A real server container, a firm-signed entry naming it, and the payload of a lease it grants."""
    made = MachineContainer.create(tmp_path_factory.mktemp("server"), "medium", machine_traits(), T0)
    container = MachineContainer.open(made.path, machine_traits)
    entry = LicenseEntry.verify(
        FIRM.entry(server_request(container._sign_key, container.serial), license_id=3), FIRM_KEYS
    )
    lease = grants.build_lease(
        container.sign,
        lease_id="L1",
        client_lease_id="c1",
        entry=entry,
        feature_code=1,
        mode="user",
        session=SESSION,
        nonce="n1",
        issued=T0,
        expires=T0 + 120,
        holder=HOLDER_PUB,
    )
    return container, entry, {k: v for k, v in lease["payload"].items() if k not in ("type", "v")}


def check_lease(doc: Any, entry: LicenseEntry) -> None:
    try:
        lease = grants.verify_lease(doc, entry)
    except DocumentInvalid:
        return
    assert (lease.license, lease.serial, lease.license_id) == (entry.digest, entry.serial, entry.license_id)
    assert all(type(getattr(lease, f)) is int for f in ("issued", "expires", "firm_code", "product_code"))
    assert lease.grace >= 0


@settings(deadline=None)
@given(grants_of(LEASE, grants.LEASE, SERVER), entries())
@pin(
    [(doc, ENTRY) for doc in pinned_documents(genuine_payload(LEASE), SERVER, grants.LEASE, "expires").values()],
    rows=True,
)
def test_a_lease_gives_the_lease_or_the_typed_error(doc, entry):
    if entry is not None:
        check_lease(doc, entry)


@settings(deadline=None)
@given(st.data())
def test_a_lease_the_server_container_signs_gives_the_lease_or_the_typed_error(server, data):
    container, entry, payload = server
    # a server signs what it made: values a strict reader takes
    check_lease(container.sign(grants.LEASE, data.draw(one_change(payload, accepted_json, keys=plain_text))), entry)


# ---------------------------------------------------------------- borrowed licenses and their returns


@settings(deadline=None)
@given(grants_of(BORROW, grants.BORROW, SERVER), entries())
@pin(
    [(doc, ENTRY) for doc in pinned_documents(genuine_payload(BORROW), SERVER, grants.BORROW, "client").values()],
    rows=True,
)
def test_a_borrow_grant_gives_the_grant_or_the_typed_error(doc, entry):
    if entry is None:
        return
    try:
        grant = grants.verify_borrow(doc, entry)
    except DocumentInvalid:
        return
    assert (grant.license, grant.serial, grant.license_id) == (entry.digest, entry.serial, entry.license_id)
    assert isinstance(grant.client_serial, str) and isinstance(grant.client_key, str)


client_keys = st.one_of(
    st.just(CLIENT_PUB), near(CLIENT_PUB), st.text(max_size=50), st.just(b64e(hazmat.raw_public(OTHER.public_key())))
)


@pytest.mark.parametrize("kind", [grants.BORROW_RETURN, grants.GRACE_RETURN])
@settings(deadline=None)
@given(
    st.one_of(grants_of(RETURN, grants.BORROW_RETURN, CLIENT), grants_of(GRACE_RETURN, grants.GRACE_RETURN, CLIENT)),
    client_keys,
)
@pin(
    [
        (doc, CLIENT_PUB)
        for doc in pinned_documents(genuine_payload(RETURN), CLIENT, grants.BORROW_RETURN, "vtime").values()
    ],
    rows=True,
)
def test_a_return_receipt_gives_the_receipt_or_the_typed_error(kind, doc, client_key):
    verify = grants.verify_return if kind == grants.BORROW_RETURN else grants.verify_grace_return
    try:
        back = verify(doc, client_key)
    except DocumentInvalid:
        return
    # only the key the server recorded signs a receipt that verifies (in any of its base64 spellings)
    assert hazmat.key_id(b64d(client_key)) == doc["kid"]
    assert type(back.firm_code) is int and type(back.vtime) is int and isinstance(back.serial, str)


# ---------------------------------------------------------------- proofs of possession

BODY = {
    "client_lease_id": "c1",
    "nonce": "n1",
    "session": SESSION,
    "holder": HOLDER_PUB,
    "firm_code": FIRM.code,
    "product_code": 1,
    "feature_code": 0,
    "units": 0,
    "mode": "user",
    "reconnect": True,
}
KINDS = [grants.LEASE_REQUEST, grants.LEASE_RENEW, grants.LEASE_RELEASE, grants.SEAT_PROOF]
payloads = st.one_of(
    st.just(grants.request_proof_payload(BODY)),
    st.just(grants.lease_proof_payload("L1", 5)),
    one_change(grants.request_proof_payload(BODY), accepted_json, keys=st.text(max_size=5)),
    st.dictionaries(st.text(max_size=5), accepted_json, max_size=4),
)
holders = st.one_of(
    st.just(HOLDER_PUB), near(HOLDER_PUB), st.text(max_size=50), st.just(b64e(hazmat.raw_public(OTHER.public_key())))
)


@settings(deadline=None)
@given(holders, st.sampled_from(KINDS), payloads, st.data())
def test_a_proof_is_true_only_for_the_holders_signature_of_that_payload(holder, kind, payload, data):
    genuine = grants.prove(HOLDER, kind, payload)
    proof = data.draw(
        st.one_of(
            st.just(genuine),
            near(genuine),
            hostile_values,
            st.just(grants.prove(OTHER, kind, payload)),
            st.just(grants.prove(HOLDER, KINDS[(KINDS.index(kind) + 1) % 4], payload)),
        )
    )
    result = grants.check_proof(holder, kind, payload, proof)
    assert type(result) is bool
    # Ed25519 signatures are deterministic: a key's signature of the payload is the only one
    # that verifies (in any of its base64 spellings)
    assert result == any(
        _decodes_to(holder, hazmat.raw_public(k.public_key()))
        and _decodes_to(proof, b64d(grants.prove(k, kind, payload)))
        for k in (HOLDER, OTHER)
    )


@pytest.mark.parametrize(
    "holder",
    [HOLDER_PUB, "\ud800", "", "a" * 10_000, HOLDER_PUB + "\n", "=" * 44],
    ids=["holder", "surrogate", "empty", "long", "holder-newline", "padding"],  # the key is made per process
)
def test_pinned_proofs_are_false(holder):
    for proof in [float("nan"), float("inf"), 2**64, "\ud800", None, [], {"a": 1}, "", "=" * 90]:
        assert grants.check_proof(holder, grants.LEASE_RENEW, grants.lease_proof_payload("L1", 1), proof) is False


def test_the_genuine_grants_verify(server):
    container, entry, payload = server
    assert grants.verify_lease(container.sign(grants.LEASE, payload), entry).holder == HOLDER_PUB
    assert grants.verify_lease(LEASE, ENTRY).grace == 600
    assert grants.verify_borrow(BORROW, ENTRY).client_key == CLIENT_PUB
    assert grants.verify_return(RETURN, CLIENT_PUB).borrow_id == "B1"
    assert grants.verify_grace_return(GRACE_RETURN, CLIENT_PUB).lease_id == "L1"
    assert grants.check_proof(
        HOLDER_PUB, grants.LEASE_RENEW, {"x": 1}, grants.prove(HOLDER, grants.LEASE_RENEW, {"x": 1})
    )
