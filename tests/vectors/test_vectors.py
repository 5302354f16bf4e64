"""Known-answer vectors for every document format (docs/formats.md)."""

import json
from pathlib import Path

import pytest

from licentia.core import errors as E
from licentia.core import exchange, grants, hazmat
from licentia.core.encoding import b64d
from licentia.core.documents import DocumentInvalid, parse
from licentia.core.documents import verify_document
from licentia.core.license import AccessRequest, LicenseEntry, LicenseState, evaluate, units_left

HERE = Path(__file__).parent


def load(name):
    return json.loads((HERE / f"{name}.json").read_text())


def keys(pems):
    out = {}
    for pem in pems:
        k = hazmat.load_public_pem(pem)
        out[hazmat.key_id(k)] = k
    return out


LICENSES = load("licenses")
UPDATES = load("updates")
CONTAINER = load("container")


@pytest.mark.parametrize("case", LICENSES["cases"], ids=lambda c: c["name"])
def test_license_vectors(case):
    try:
        entry = LicenseEntry.verify(parse(case["document"]) if isinstance(case["document"], str)
                                    else case["document"], keys(LICENSES["keys"]))
    except DocumentInvalid:
        assert case["expect"] == "LicenseInvalid"
        return
    ev = evaluate(entry, LicenseState(), AccessRequest(entry.firm_code, entry.product_code), LICENSES["now"], 0)
    assert (ev.error.__name__ if ev.error else "ok") == case["expect"]
    if "units_left" in case:
        assert units_left(entry, LicenseState()) == case["units_left"]


@pytest.mark.parametrize("case", UPDATES["cases"], ids=lambda c: c["name"])
def test_update_vectors(case):
    try:
        update = exchange.verify_update(case["document"], keys(UPDATES["keys"]))
    except DocumentInvalid:
        assert case["expect"] == "LicenseInvalid"
        return
    if update.serial != UPDATES["serial"]:
        outcome = "other-container"
    elif update.seq <= UPDATES["slot_seq"]:
        outcome = "replay"
    else:
        outcome = "ok"
    assert outcome == case["expect"]


@pytest.mark.parametrize("case", CONTAINER["cases"], ids=lambda c: c["name"])
def test_container_document_vectors(case):
    try:
        pub = hazmat.Ed25519PublicKey.from_public_bytes(b64d(CONTAINER["container_key"]))
        if case["type"] == "request":
            exchange.verify_request(case["document"])
        elif case["type"] == "receipt":
            exchange.verify_receipt(case["document"], pub)
        elif case["type"] == "report-ack":
            exchange.verify_ack(case["document"], keys(CONTAINER["keys"]))
        elif case["type"] == "proof":
            p = case["document"]
            if not grants.check_proof(p["holder"], p["kind"], p["payload"], p["proof"]):
                raise DocumentInvalid("proof")
        else:
            verify_document(case["document"], case["type"], pub)
        outcome = "ok"
    except DocumentInvalid:
        outcome = "invalid"
    assert outcome == case["expect"]


def test_vectors_cover_the_bad_inputs():
    names = {c["name"] for c in LICENSES["cases"] + UPDATES["cases"]}
    assert {"valid", "expired", "tampered", "foreign-firm-key", "replayed-old-sequence"} <= names
    assert E.LicenseInvalid.code == 11
