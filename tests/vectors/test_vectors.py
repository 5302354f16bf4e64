"""Known-answer vectors (tests/vectors/*.json, laid out in tests/vectors/README.md): every case
of every file is run through the implementation, so an expectation it does not meet fails."""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from licentia.core import anchoring, cloudlink, codes, exchange, grants, hazmat, keyfile, proxy
from licentia.core import errors as E
from licentia.core.documents import (
    DocumentInvalid,
    DocumentMalformed,
    document_digest,
    parse,
    require,
    signing_message,
    verify_document,
)
from licentia.core.encoding import JsonRejected, b64d, b64e, canonical, strict_loads
from licentia.core.license import AccessRequest, LicenseEntry, LicenseState, effective_time, evaluate, units_left
from licentia.protect import data as protected_data

HERE = Path(__file__).parent
FILES = (
    "codes",
    "canonical",
    "licenses",
    "evaluation",
    "updates",
    "sealing",
    "container",
    "grants",
    "protect",
    "anchoring",
)


def load(name: str) -> dict[str, Any]:
    """A vector file, read by the strict reader documents are read with (docs/formats.md 1.1)."""
    data: dict[str, Any] = strict_loads((HERE / f"{name}.json").read_bytes())
    return data


VECTORS = {name: load(name) for name in FILES}
CODES, CANONICAL, LICENSES, EVALUATION = (VECTORS[n] for n in FILES[:4])
UPDATES, SEALING, CONTAINER, GRANTS, PROTECT, ANCHORING = (VECTORS[n] for n in FILES[4:])


def keys(pems: list[str]) -> dict[str, hazmat.Ed25519PublicKey]:
    out = {}
    for pem in pems:
        k = hazmat.load_public_pem(pem)
        out[hazmat.key_id(k)] = k
    return out


def ids(case: dict[str, Any]) -> str:
    return str(case["name"])


def document_text(case: dict[str, Any]) -> str:
    """The JSON text of a case given in parts (prefix, fill repeated count times, suffix)."""
    parts = case["document_text"]
    text = str(parts["prefix"] + parts["fill"] * parts["count"] + parts["suffix"])
    assert len(text.encode("utf-8")) == case["document_bytes"]
    return text


def as_envelope(document: Any) -> Any:
    """A case's document: an envelope object, or its JSON text read strictly."""
    return parse(document) if isinstance(document, str) else copy.deepcopy(document)


def upload_from_parts(parts: dict[str, Any]) -> dict[str, Any]:
    """A usage upload given in parts: the envelope without its events, one event text in which
    ``@SEQ@`` stands for the sequence number, and the number of events (from base_seq + 1)."""
    doc = copy.deepcopy(parts["document"])
    assert "events" not in doc["payload"] and parts["event"].count("@SEQ@") == 1
    first = doc["payload"]["base_seq"] + 1
    doc["payload"]["events"] = [parts["event"].replace("@SEQ@", str(first + i)) for i in range(parts["count"])]
    return doc


def case_document(case: dict[str, Any]) -> Any:
    """The document of a case as the case gives it: an object, a text, a text in parts, or an
    upload in parts."""
    if "document_parts" in case:
        return upload_from_parts(case["document_parts"])
    return document_text(case) if "document_text" in case else case.get("document", case.get("license"))


# ---------------------------------------------------------------- every file


@pytest.mark.parametrize("name", FILES)
def test_every_file_describes_itself(name):
    data = VECTORS[name]
    assert isinstance(data["description"], str) and len(data["description"]) > 200
    assert "merged" not in data["description"].lower()
    names = [c["name"] for c in data["cases"]]
    assert len(names) == len(set(names)), "case names are unique"
    used = {c["expect"] for c in data["cases"]}
    assert used == set(data["outcomes"]), "every outcome is defined and used"
    for outcome in data["outcomes"].values():
        assert outcome["meaning"]
        error = outcome.get("error")
        assert error is None or isinstance(getattr(E, error), type)


def test_every_valid_document_carries_its_digest():
    for name in ("licenses", "evaluation", "updates", "container", "grants", "anchoring"):
        for case in VECTORS[name]["cases"]:
            document = case_document(case)
            if case["expect"] == "ok" and document is not None:
                assert case["digest"] == document_digest(as_envelope(document)), case["name"]


def test_the_vector_files_read_strictly_and_as_plain_json():
    """Every file reads with the strict reader (no integer beyond 64 bits, no duplicate key, at
    most 32 levels), and a plain JSON reader gives the same value."""
    for name in FILES:
        raw = (HERE / f"{name}.json").read_bytes()
        assert strict_loads(raw) == json.loads(raw), name


# ---------------------------------------------------------------- codes.json

CHECKS = {
    "serial": codes.check_serial,
    "item_id": codes.check_item_id,
    "item_id_given": codes.normalize_item_id,
    "firm_code": codes.check_firm_code,
    "product_code": codes.check_product_code,
    "feature": codes.check_feature,
}


@pytest.mark.parametrize("case", CODES["cases"], ids=ids)
def test_code_vectors(case):
    value = case["input"]
    try:
        check = codes.normalize_ticket if case["kind"] == "ticket" else CHECKS[case["kind"]]
        got = check(value)
        verdict = "valid"
    except codes.InvalidCode:
        verdict = "invalid"
    assert verdict == case["expect"]
    if case["kind"] == "ticket":
        assert codes.is_ticket_id(value) is (verdict == "valid")
        if verdict == "valid":
            assert got == case["normalized"]
            if "intended" in case and "typo" in case and case["typo"] in ("case", "look-alike"):
                assert got == case["intended"]
    elif verdict == "valid":
        assert got == case.get("normalized", value)


def test_code_vectors_cover_every_kind_of_typo():
    typos = {c.get("typo") for c in CODES["cases"]}
    assert {"case", "look-alike", "single substitution", "adjacent transposition", "two substitutions"} <= typos
    assert CODES["alphabet"] == codes.ALPHABET


# ---------------------------------------------------------------- canonical.json


@pytest.mark.parametrize("case", CANONICAL["cases"], ids=ids)
def test_canonical_vectors(case):
    kind = case["kind"]
    if kind == "canonical":
        out = canonical(strict_loads(case["input"]))
        assert out.decode("utf-8") == case["canonical"]
        assert out.hex() == case["canonical_hex"]
        assert hazmat.sha256(out).hex() == case["sha256"]
        assert canonical(strict_loads(out)) == out  # the canonical form reads back to itself
    elif kind == "strict":
        raw = bytes.fromhex(case["input_hex"])
        if "input" in case:
            assert raw == case["input"].encode("utf-8")
        try:
            strict_loads(raw)
            verdict = "accepted"
        except JsonRejected:
            verdict = "refused"
        assert verdict == case["expect"]
        if verdict == "refused":
            with pytest.raises(DocumentMalformed):
                parse(raw)
    elif kind == "base64url":
        try:
            raw = b64d(case["input"])
            verdict = "accepted"
        except ValueError:
            verdict = "refused"
        assert verdict == case["expect"]
        if verdict == "accepted":
            assert raw.hex() == case["bytes_hex"]
            assert b64e(raw) == case["input"]
    elif kind == "key-id":
        raw = b64d(case["public_key"])
        assert raw.hex() == case["public_key_hex"]
        assert hazmat.key_id(raw) == case["kid"]
        assert hazmat.key_id(hazmat.load_public_pem(case["public_key_pem"])) == case["kid"]
    elif kind == "signing-input":
        message = signing_message(case["type"], case["payload"])
        assert message == case["message"].encode("utf-8") == bytes.fromhex(case["message_hex"])
    else:
        raise AssertionError(f"unknown kind {kind}")


# ---------------------------------------------------------------- licenses.json


@pytest.mark.parametrize("case", LICENSES["cases"], ids=ids)
def test_license_vectors(case):
    firm_keys = keys(LICENSES["keys"])
    result: Any = None
    try:
        document = as_envelope(case_document(case))
        if case["type"] == "license":
            result = LicenseEntry.verify(document, firm_keys)
        elif case["type"] == "product-key":
            result = keyfile.verify(document, firm_keys, **case["want"])
        elif case["type"] == "firm-key":
            accepted = exchange.accept_keys(case["firm_code"], firm_keys, [document])
            if case["endorsed_kid"] not in accepted:
                raise DocumentInvalid("endorsement not accepted")
        else:
            raise AssertionError(case["type"])
        outcome = "ok"
    except DocumentInvalid:
        outcome = "invalid"
    assert outcome == case["expect"]
    if outcome != "ok":
        return
    if case["type"] == "license":
        assert result.digest == case["digest"]
        for name, value in case.get("fields", {}).items():
            assert getattr(result, name) == value
        if "signing_input" in case:
            assert signing_message("license", document["payload"]) == case["signing_input"].encode("utf-8")
    if case["type"] == "product-key":
        assert result.key.hex() == case["key_hex"]


# ---------------------------------------------------------------- evaluation.json


@pytest.mark.parametrize("case", EVALUATION["cases"], ids=ids)
def test_evaluation_vectors(case):
    entry = LicenseEntry.verify(copy.deepcopy(case["license"]), keys(EVALUATION["keys"]))
    assert entry.digest == case["digest"]
    st, rq = case["state"], case["request"]
    state = LicenseState(units_used=st["units_used"], first_use=st["first_use"], last_sync=st["last_sync"])
    request = AccessRequest(rq["firm_code"], rq["product_code"], rq["feature_code"], rq["units"], rq["release_date"])
    if case["kind"] == "license":
        ev = evaluate(entry, state, request, case["now"], st["vclock"])
    elif case["kind"] == "lease":
        lease = grants.verify_lease(copy.deepcopy(case["lease"]), entry)
        # the state docs/formats.md 5.1 derives from the lease
        derived = (0, lease.first_use, lease.issued, 0)
        assert (st["units_used"], st["first_use"], st["last_sync"], st["vclock"]) == derived
        ev = grants.evaluate_lease(entry, lease, request, case["now"])
    elif case["kind"] == "borrowed":
        grant = grants.verify_borrow(copy.deepcopy(case["grant"]), entry)
        assert (st["units_used"], st["first_use"], st["last_sync"]) == (0, grant.issued, grant.issued)
        where = case["container"]
        ev = grants.evaluate_borrowed(
            entry, grant, request, case["now"], st["vclock"], serial=where["serial"], sign_pub=where["sign_pub"]
        )
    else:
        raise AssertionError(case["kind"])
    assert (ev.error.__name__ if ev.error else "ok") == case["expect"]
    assert effective_time(case["now"], st["vclock"]) == (case["effective_time"], case["clock_behind"])
    if ev.error is None:
        assert (ev.expires, ev.start_usage, ev.units) == (case["expires"], case["start_usage"], case["units"])
    else:
        assert ev.error.code == EVALUATION["outcomes"][case["expect"]]["code"]
    if "units_left" in case:
        assert units_left(entry, state) == case["units_left"]


# ---------------------------------------------------------------- updates.json


@pytest.fixture
def update_container(tmp_path, monkeypatch):
    """A real machine container that is the vectors' container: its serial and both its
    private keys are the published ones, and ``setup`` is applied (its firm slot at ``slot_seq``)."""
    from licentia.container import MachineContainer
    from tests.factory import machine_traits

    c = UPDATES["container"]
    sign = hazmat.Ed25519PrivateKey.from_private_bytes(b64d(c["sign_private"]))
    box = hazmat.X25519PrivateKey.from_private_bytes(b64d(c["box_private"]))
    with monkeypatch.context() as m:
        m.setattr(codes, "new_serial", lambda *a, **k: c["serial"])
        m.setattr(hazmat.Ed25519PrivateKey, "generate", lambda: sign)
        m.setattr(hazmat.X25519PrivateKey, "generate", lambda: box)
        made = MachineContainer.create(tmp_path, "medium", machine_traits(), 0)
    assert (made.serial, made.sign_pub, made.box_pub) == (c["serial"], c["sign_pub"], c["box_pub"])
    container = MachineContainer.open(made.path, machine_traits())
    container.apply_update(copy.deepcopy(UPDATES["setup"]), 0)
    slot = container.slots()[UPDATES["firm_code"]]
    assert slot.seq == UPDATES["slot_seq"]
    assert set(slot.pinned_keys()) == set(keys(UPDATES["keys"]))
    return container


#: the typed refusal of each outcome, and words of its message (the reason of LicenseInvalid is only logged)
REFUSALS = {
    "invalid": (E.LicenseInvalid, "do not edit"),
    "replay": (E.ActivationError, "older than the container's state (sequence {seq})"),
    "other-container": (E.ActivationError, "for container 130-AAAA-BBBB-CCCC"),
}


def _held_keys(container: Any, slot: Any) -> list[dict[str, Any]]:
    out = []
    for document in slot.entries or []:
        entry = LicenseEntry.verify(document, slot.pinned_keys())
        for version in entry.key_versions:
            key = container.product_key(entry, version)
            if key is not None:
                out.append({"license": entry.digest, "version": version, "key_hex": key.hex()})
    return out


def _slot_after(box: Any, after: dict[str, Any]) -> None:
    slot = box.slots()[after["firm_code"]]
    assert (slot.seq, slot.vclock, slot.last_sync) == (after["seq"], after["vclock"], after["last_sync"])
    assert [d["payload"]["license_id"] for d in slot.entries or []] == after["licenses"]
    assert sorted(slot.pinned or {}) == after["pinned"]
    assert _held_keys(box, slot) == after["product_keys"]
    assert (slot.withdrawn or []) == after["withdrawn"]
    assert (slot.notices or {}) == after["notices"]
    assert (slot.removed or {}) == after["removed"]


@pytest.mark.parametrize("case", UPDATES["cases"], ids=ids)
def test_update_vectors(case, update_container):
    """Each update or acknowledgement applied by the real container: what it accepts and the
    slot it leaves, and the typed refusal of what it does not (with nothing changed)."""
    box = update_container
    firm = UPDATES["firm_code"]
    for license_id in case.get("removed", []):
        box.remove_license(firm, license_id, 0)
    if case["kind"] == "report-ack":
        box.mutate(lambda slots: slots[firm].signed(UPDATES["newest"]))
    seq = box.slots()[firm].seq
    before = {f: s.to_json() for f, s in box.slots().items()}
    expect = case["expect"]
    if case["kind"] == "report-ack" and expect in ("ok", "stale"):
        applied = box.apply_ack(copy.deepcopy(case["document"]), 0)
        assert applied is (expect == "ok")
        if expect == "ok":
            _slot_after(box, case["after"])
        else:
            assert {f: s.to_json() for f, s in box.slots().items()} == before  # nothing changed
        return
    apply = box.apply_ack if case["kind"] == "report-ack" else box.apply_update
    if expect == "ok":
        update = box.apply_update(copy.deepcopy(case["document"]), 0)
        assert update.digest == case["digest"]
        _slot_after(box, case["after"])
        return
    error, words = REFUSALS[expect]
    assert UPDATES["outcomes"][expect]["error"] == error.__name__
    with pytest.raises(error) as info:
        apply(copy.deepcopy(case["document"]), 0)
    assert type(info.value) is error
    assert words.format(seq=seq) in str(info.value)
    assert {f: s.to_json() for f, s in box.slots().items()} == before  # nothing changed


def test_the_update_entries_name_the_vectors_container():
    for case in [*UPDATES["cases"], {"document": UPDATES["setup"]}]:
        document = case["document"]
        if isinstance(document, str):  # a text the strict reader refuses (sequence-beyond-64-bits)
            document = json.loads(document)
        for entry in document["payload"].get("entries", []):
            if case.get("name") != "entry-names-another-container-key":
                assert entry["payload"]["container"]["sign_pub"] == UPDATES["container"]["sign_pub"]


# ---------------------------------------------------------------- sealing.json


def _check_steps(steps: dict[str, Any], recipient: hazmat.X25519PrivateKey, blob: bytes, key_hex: str) -> None:
    eph = bytes.fromhex(steps["ephemeral_public_hex"])
    assert blob[:32] == eph and blob[32:44].hex() == steps["nonce_hex"]
    shared = recipient.exchange(hazmat.X25519PublicKey.from_public_bytes(eph))
    assert shared.hex() == steps["shared_secret_hex"]
    salt = bytes.fromhex(steps["hkdf_salt_hex"])
    assert salt == eph + hazmat.raw_public(recipient.public_key())
    aes_key = hazmat.hkdf(shared, salt=salt, info=steps["hkdf_info"].encode("utf-8"))
    assert aes_key.hex() == steps["aes_key_hex"]
    assert hazmat.aead_decrypt(aes_key, blob[32:], steps["aad"].encode("utf-8")).hex() == key_hex
    assert hazmat.unseal(recipient, blob, steps["aad"].encode("utf-8")).hex() == key_hex


def test_the_sealing_container_secret_is_its_two_private_keys():
    c = SEALING["container"]
    secret = bytes.fromhex(c["secret_hex"])
    sign = hazmat.Ed25519PrivateKey.from_private_bytes(secret[:32])
    box = hazmat.X25519PrivateKey.from_private_bytes(secret[32:])
    assert b64e(hazmat.raw_public(sign.public_key())) == c["sign_pub"]
    assert b64e(hazmat.raw_public(box.public_key())) == c["box_pub"]
    assert (b64e(secret[:32]), b64e(secret[32:])) == (c["sign_private"], c["box_private"])


@pytest.mark.parametrize("case", SEALING["cases"], ids=ids)
def test_sealing_vectors(case):
    kind = case["kind"]
    if kind == "derive":
        secret = bytes.fromhex(case["firm_secret_hex"])
        key = exchange.derive_product_key(secret, case["firm_code"], case["product_code"], case["version"])
        assert key.hex() == case["product_key_hex"]
        assert hazmat.hkdf(secret, salt=None, info=case["hkdf_info"].encode("utf-8")) == key
        return
    if kind == "product-key":
        recipient = hazmat.X25519PrivateKey.from_private_bytes(b64d(SEALING["container"]["box_private"]))
        opener = lambda: exchange.unseal_product_key(recipient, case["serial"], case["sealed_key"])  # noqa: E731
    else:
        recipient = hazmat.X25519PrivateKey.from_private_bytes(b64d(case["session_private"]))
        opener = lambda: grants.unseal_lease_key(  # noqa: E731
            recipient, case["session"], case["serial"], case["license"], case["sealed_key"]
        )
    try:
        key = opener()
        outcome = "ok"
    except DocumentInvalid:
        outcome = "invalid"
    assert outcome == case["expect"]
    if outcome == "ok":
        assert key.hex() == case["product_key_hex"]
        if "product_key" in case:
            assert b64e(key) == case["product_key"]
    if "steps" in case:
        _check_steps(case["steps"], recipient, b64d(case["sealed_key"]["sealed"]), case["product_key_hex"])
        assert case["steps"]["aad"] == case["context"]
    if "license_document" in case:
        entry = LicenseEntry.verify(copy.deepcopy(case["license_document"]), keys(SEALING["keys"]))
        assert entry.digest == case["sealed_key"]["license"]
        assert entry.serial == case["serial"]


# ---------------------------------------------------------------- container.json


@pytest.mark.parametrize("case", CONTAINER["cases"], ids=ids)
def test_container_document_vectors(case):
    pub = hazmat.Ed25519PublicKey.from_public_bytes(b64d(CONTAINER["container_key"]))
    firm_keys = keys(CONTAINER["keys"])
    document = copy.deepcopy(case["document"])
    kind = case["type"]
    got: Any = None
    try:
        if kind == "request":
            got = exchange.verify_request(document)
        elif kind == "receipt":
            got = exchange.verify_receipt(document, pub)
        elif kind == "report-ack":
            got = exchange.verify_ack(document, firm_keys)
        elif kind == "consume":
            got = verify_document(document, "consume", pub)
        elif kind == "consumption":
            got = verify_document(document, "consumption", firm_keys)
        else:
            raise AssertionError(kind)
        outcome = "ok"
    except DocumentInvalid:
        outcome = "invalid"
    assert outcome == case["expect"]
    if outcome != "ok":
        return
    for name, value in case.get("fields", {}).items():
        assert (sorted(got.slots) if name == "slots" else getattr(got, name)) == value
    if kind in ("request", "receipt"):
        assert got.digest == case["digest"]
    if kind == "request":
        assert got.sign_pub == case.get("fields", {}).get("sign_pub", CONTAINER["container_key"])
    if "slot_order" in case:
        assert list(json.loads(canonical(document["payload"]))["slots"]) == case["slot_order"]


def test_the_ack_answers_the_report():
    report = next(c for c in CONTAINER["cases"] if c["name"] == "report-valid")
    ack = next(c for c in CONTAINER["cases"] if c["name"] == "report-ack-valid")
    assert ack["fields"]["request"] == report["digest"] == document_digest(report["document"])


# ---------------------------------------------------------------- grants.json

GRANT_ENTRIES = {
    name: LicenseEntry.verify(copy.deepcopy(e["document"]), keys(GRANTS["keys"]))
    for name, e in GRANTS["entries"].items()
}


def _seat_proof(document: dict[str, Any]) -> dict[str, Any]:
    """A machine proof's checks as the license server makes them (before its challenge and holder checks)."""
    sign_pub = require(document["payload"], "sign_pub", str)
    try:
        key = hazmat.Ed25519PublicKey.from_public_bytes(b64d(sign_pub))
    except ValueError:
        raise DocumentInvalid("bad key") from None
    payload = verify_document(document, grants.SEAT_PROOF, key)
    try:
        codes.check_serial(require(payload, "serial", str))
    except codes.InvalidCode as exc:
        raise DocumentInvalid(str(exc)) from None
    require(payload, "nonce", str)
    require(payload, "time", int)
    return payload


def _proof(case: dict[str, Any]) -> dict[str, Any]:
    if case["kind"] == grants.LEASE_REQUEST:
        body = case["body"]
        payload = grants.request_proof_payload(body)
        holder, proof = body["holder"], body.get("proof")
    else:
        payload = grants.lease_proof_payload(case["lease_id"], case["counter"])
        holder, proof = case["holder"], case["proof"]
    if "signed_payload" in case:
        assert payload == case["signed_payload"]
    if not grants.check_proof(holder, case["kind"], payload, proof):
        raise DocumentInvalid("proof")
    return payload


def test_grant_entries_carry_their_digests():
    for name, e in GRANTS["entries"].items():
        assert GRANT_ENTRIES[name].digest == e["digest"]
        assert GRANT_ENTRIES[name].container_key == GRANTS["server"]["sign_pub"]


@pytest.mark.parametrize("case", GRANTS["cases"], ids=ids)
def test_grant_vectors(case):
    kind = case["type"]
    document = copy.deepcopy(case.get("document"))
    got: Any = None
    try:
        if kind == "lease":
            got = grants.verify_lease(document, GRANT_ENTRIES[case["entry"]])
        elif kind == "borrow":
            got = grants.verify_borrow(document, GRANT_ENTRIES[case["entry"]])
        elif kind == "borrow-return":
            got = grants.verify_return(document, case["client_key"])
        elif kind == "grace-return":
            got = grants.verify_grace_return(document, case["client_key"])
        elif kind == "seat-proof":
            got = _seat_proof(document)
        elif kind == "cloud-link":
            link = cloudlink.verify_link(document, case["now"])
            got = {**dataclasses.asdict(link), "digest": document_digest(document)}
        elif kind == "proxy-grant":
            got = proxy.verify_grant(document, keys(GRANTS["keys"]), serial=case["serial"])
        elif kind == "proof":
            got = _proof(case)
        else:
            raise AssertionError(kind)
        outcome = "ok"
    except DocumentInvalid:
        outcome = "invalid"
    assert outcome == case["expect"]
    if outcome == "ok":
        for name, value in case.get("fields", {}).items():
            assert (got[name] if isinstance(got, dict) else getattr(got, name)) == value
        if kind == "borrow":
            assert got.digest == case["digest"]


# ---------------------------------------------------------------- protect.json


@pytest.mark.parametrize("case", PROTECT["cases"], ids=ids)
def test_protected_data_vectors(case, tmp_path):
    path = tmp_path / "file.dat"
    path.write_bytes(bytes.fromhex(case["file_hex"]))
    key = bytes.fromhex(PROTECT["product_key_hex"])
    try:
        with protected_data.ProtectedFile(path, key) as f:
            plain = f.read()
            header = f.header
        outcome = "ok"
    except E.ProtectedDataError:
        outcome = "refused"
    assert outcome == case["expect"]
    if outcome == "ok":
        assert plain.hex() == case["plaintext_hex"]
        assert header.raw[10:].decode("ascii") == case.get("header_json", header.raw[10:].decode("ascii"))
        if "file_key_hex" in case:
            assert protected_data.file_key(key, header.salt).hex() == case["file_key_hex"]


# ---------------------------------------------------------------- anchoring.json


def _verify_usage(case: dict[str, Any]) -> Any:
    document = case_document(case)
    if case["type"] == "usage-upload":
        pub = hazmat.Ed25519PublicKey.from_public_bytes(b64d(ANCHORING["container_key"]))
        return anchoring.verify_upload(document, pub)
    if case["type"] == "usage-anchor":
        return anchoring.verify_anchor(document, keys(ANCHORING["keys"]))
    raise AssertionError(case["type"])


@pytest.mark.parametrize("case", ANCHORING["cases"], ids=ids)
def test_anchoring_vectors(case: dict[str, Any]) -> None:
    """Each usage upload verified with the server container's key, each anchor with the firm's
    keys (core/anchoring); a valid one gives the digest, the fields, each event's chain hash and
    the events the case states."""
    try:
        got = _verify_usage(case)
        outcome = "ok"
    except DocumentInvalid:
        outcome = "invalid"
    assert outcome == case["expect"]
    if outcome != "ok":
        assert case["note"].startswith("Refused: ")
        return
    assert document_digest(case_document(case)) == case["digest"]
    if case["type"] == "usage-upload":
        assert got.digest == case["digest"]
    for name, value in case["fields"].items():
        assert getattr(got, name) == value, name
    if "chain" in case:
        hashes, prev = [], got.base_hash
        for body in got.bodies:
            prev = anchoring.chain(prev, body)
            hashes.append(prev)
        assert hashes == case["chain"]
        assert case["chain"][-1] == got.head_hash == case["fields"]["head_hash"]
    if "events" in case:
        assert [dataclasses.asdict(e) for e in got.events] == case["events"]


def test_the_anchoring_vectors_cover_the_rules() -> None:
    """Every event kind appears in a valid upload, both limits of an upload are met and passed,
    and the anchor answers the upload it names."""
    by_name = {c["name"]: c for c in ANCHORING["cases"]}
    kinds = {e["kind"] for c in ANCHORING["cases"] if c["expect"] == "ok" for e in c.get("events", [])}
    assert kinds == anchoring.KINDS
    assert ANCHORING["genesis"] == anchoring.GENESIS
    first = by_name["upload-first-from-genesis"]["fields"]
    assert (first["base_seq"], first["base_hash"]) == (0, anchoring.GENESIS)
    nxt = by_name["upload-next-every-kind"]
    assert (nxt["fields"]["base_seq"], nxt["fields"]["base_hash"]) == (first["head_seq"], first["head_hash"])
    anchor = by_name["anchor-valid"]["fields"]
    assert (anchor["seq"], anchor["hash"], anchor["upload"]) == (
        nxt["fields"]["head_seq"],
        nxt["fields"]["head_hash"],
        nxt["digest"],
    )
    assert anchor["serial"] == ANCHORING["serial"]
    for name, count in (("upload-1000-events", 1000), ("upload-1001-events", 1001)):
        assert len(case_document(by_name[name])["payload"]["events"]) == count
        assert count == anchoring.MAX_EVENTS + (name == "upload-1001-events")
    for name, over in (("upload-events-at-byte-limit", False), ("upload-events-over-byte-limit", True)):
        texts = case_document(by_name[name])["payload"]["events"]
        assert {len(t.encode("utf-8")) for t in texts} == {anchoring.MAX_BODY_BYTES}
        assert (sum(len(t.encode("utf-8")) for t in texts) > anchoring.MAX_EVENT_BYTES) is over
