"""Known-answer vectors for every document format (docs/formats.md)."""

import json
from pathlib import Path

import pytest

from licentia.core import codes, exchange, grants, hazmat
from licentia.core import errors as E
from licentia.core.documents import DocumentInvalid, parse, verify_document
from licentia.core.encoding import b64d
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
UPDATES_NOW = 1_800_000_000  # the time the vectors were signed at


@pytest.mark.parametrize("case", LICENSES["cases"], ids=lambda c: c["name"])
def test_license_vectors(case):
    try:
        entry = LicenseEntry.verify(
            parse(case["document"]) if isinstance(case["document"], str) else case["document"], keys(LICENSES["keys"])
        )
    except DocumentInvalid:
        assert case["expect"] == "LicenseInvalid"
        return
    ev = evaluate(entry, LicenseState(), AccessRequest(entry.firm_code, entry.product_code), LICENSES["now"], 0)
    assert (ev.error.__name__ if ev.error else "ok") == case["expect"]
    if "units_left" in case:
        assert units_left(entry, LicenseState()) == case["units_left"]


def _case(name):
    return next(c for c in UPDATES["cases"] if c["name"] == name)


@pytest.fixture
def vector_container(tmp_path, monkeypatch):
    """A machine container that is the vectors' container: their serial and signing key,
    its firm slot at ``slot_seq`` (the sequence-2 update of the vectors applied), pinning
    ``keys``. The vectors' private container key was thrown away; applying an update uses
    only the public one."""
    from licentia.container import MachineContainer
    from tests.factory import machine_traits

    monkeypatch.setattr(codes, "new_serial", lambda *a, **k: UPDATES["serial"])
    made = MachineContainer.create(tmp_path, "medium", machine_traits(), UPDATES_NOW)
    meta_path = made.path / "container.json"
    meta = json.loads(meta_path.read_text())
    meta["sign_pub"] = CONTAINER["container_key"]
    meta_path.write_text(json.dumps(meta))
    box = MachineContainer.open(made.path, machine_traits())
    first = box.apply_update(_case("replayed-old-sequence")["document"], UPDATES_NOW)
    slot = box.slots()[first.firm_code]
    assert slot.seq == UPDATES["slot_seq"]
    assert set(slot.pinned_keys()) == set(keys(UPDATES["keys"]))
    return box


def test_the_vectors_container_key_is_the_one_the_updates_name():
    for case in UPDATES["cases"]:
        for entry in case["document"]["payload"]["entries"]:
            assert entry["payload"]["container"]["sign_pub"] == CONTAINER["container_key"]


@pytest.mark.parametrize("case", UPDATES["cases"], ids=lambda c: c["name"])
def test_update_vectors(case, vector_container):
    """Each update applied by a real container at ``slot_seq``: what it accepts, and the typed
    refusal of what it does not."""
    box = vector_container
    before = box.slots()[10101].to_json()
    expect = case["expect"]
    if expect == "ok":
        update = box.apply_update(case["document"], UPDATES_NOW)
        slot = box.slots()[10101]
        assert update.seq == slot.seq == 3 and [e.license_id for e in update.entries] == [7]
        assert [d["payload"]["license_id"] for d in slot.entries] == [7]
        return
    refusal = {
        "LicenseInvalid": (E.LicenseInvalid, "do not edit"),
        "replay": (E.ActivationError, "older than the container's state (sequence 2)"),
        "other-container": (E.ActivationError, "for container 130-AAAA-BBBB-CCCC"),
    }
    error, words = refusal[expect]
    with pytest.raises(error) as info:
        box.apply_update(case["document"], UPDATES_NOW)
    assert type(info.value) is error
    assert words in str(info.value)
    assert box.slots()[10101].to_json() == before  # nothing changed


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
