import json
import shutil

import pytest

from licentia.container import MachineContainer
from licentia.container.binding import BindingMismatch, unwrap
from licentia.core import codes, exchange, hazmat
from licentia.core import errors as E
from licentia.core.documents import DocumentInvalid, document_digest
from licentia.core.encoding import b64d
from licentia.core.license import LicenseEntry, LicenseState, Options
from tests.factory import DAY, T0, Firm, machine_traits, other_machine


@pytest.fixture
def home(tmp_path):
    return tmp_path / "home"


def make(home, level="medium", traits=None):
    return MachineContainer.create(home, level, traits or machine_traits(), T0)


def snapshot(container):
    return (container.path / "state.json").read_bytes()


@pytest.mark.parametrize(
    "level,changed,opens",
    [
        ("loose", {"macs": "52:54:00:99:99:99"}, True),
        ("medium", {"macs": "52:54:00:99:99:99"}, True),
        ("medium", {"machine_id": "f" * 32}, True),
        ("loose", {"machine_id": "f" * 32}, True),
        ("tight", {"macs": "52:54:00:99:99:99"}, False),
        ("tight", {}, True),
        ("medium", {"macs": "52:54:00:99:99:99", "machine_id": "f" * 32}, False),
    ],
)
def test_tolerant_binding(home, level, changed, opens):
    c = make(home, level)
    if opens:
        again = MachineContainer.open(c.path, machine_traits(**changed))
        assert again.serial == c.serial
    else:
        with pytest.raises(E.ContainerLocked):
            MachineContainer.open(c.path, machine_traits(**changed))


@pytest.mark.parametrize("level", ["loose", "medium", "tight"])
def test_another_machine_opens_under_no_level(home, level):
    c = make(home, level)
    with pytest.raises(E.ContainerLocked):
        MachineContainer.open(c.path, other_machine())


def test_no_wrap_opens_with_low_entropy_traits_alone(home):
    c = make(home, "loose")
    low_only = {k: v for k, v in machine_traits().items() if k in ("hostname", "dmi", "cpu_model", "memory_gib")}
    with pytest.raises(BindingMismatch):
        unwrap(c.meta["wraps"], serial=c.serial, level="loose", traits=low_only, salt=b64d(c.meta["salt"]))
    for w in c.meta["wraps"]:
        assert set(w["traits"]) & {"machine_id", "root_fs_uuid", "macs"}
    stored = (c.path / "container.json").read_text()
    for value in machine_traits().values():
        if len(value) >= 8:  # no trait value (nor anything derived per trait) is stored
            assert value not in stored


def test_files_are_private(home):
    c = make(home)
    assert (c.path / "state.json").stat().st_mode & 0o777 == 0o600
    assert (c.path / "container.json").stat().st_mode & 0o777 == 0o600
    assert c.path.stat().st_mode & 0o777 == 0o700


def test_apply_update_and_replay(home):
    firm = Firm()
    c = make(home)
    req = c.make_request("activate", T0, ticket="00000-00000-00000-00000-00000")
    upd = firm.grant(req)
    applied = c.apply_update(upd, T0)
    assert applied.seq == 1 and len(c.slots()[firm.code].entries) == 1
    before = snapshot(c)
    with pytest.raises(E.ActivationError, match="older than"):
        c.apply_update(upd, T0)
    assert snapshot(c) == before


def bad_updates(firm, c, req):
    upd = firm.grant(req)
    flipped = json.dumps(upd).replace('"feature_map": 4294967295', '"feature_map": 4294967294')
    truncated = json.dumps(upd)[:-20]
    forged = firm.grant(req)
    forged["sig"] = forged["sig"][:-4] + ("AAAA" if forged["sig"][-4:] != "AAAA" else "BBBB")
    foreign = Firm(code=firm.code).grant(req)  # same firm code, another key
    return {"flipped": flipped, "truncated": truncated, "forged": forged, "foreign": foreign}


@pytest.mark.parametrize("kind", ["flipped", "truncated", "forged", "foreign"])
def test_bad_updates_change_nothing(home, kind):
    firm = Firm()
    c = make(home)
    req = c.make_request("activate", T0, ticket="00000-00000-00000-00000-00000")
    c.apply_update(firm.grant(req), T0)  # the slot now pins firm's key
    req2 = c.make_request("sync", T0, firm_code=firm.code)
    before = snapshot(c)
    with pytest.raises(E.LicenseInvalid):
        c.apply_update(bad_updates(firm, c, req2)[kind], T0)
    assert snapshot(c) == before


def test_update_for_another_container(home, tmp_path):
    firm = Firm()
    c = make(home)
    other = make(tmp_path / "elsewhere")
    upd = firm.grant(other.make_request("activate", T0, ticket="00000-00000-00000-00000-00000"))
    before = snapshot(c)
    with pytest.raises(E.ActivationError) as refused:
        c.apply_update(upd, T0)
    assert str(refused.value).startswith(
        f"this update is for container {other.serial}, not {c.serial}: apply it on the machine that made the request"
    )
    assert snapshot(c) == before


def _endorsed_update(c, firm, new_key, request_doc):
    """An update (seq 5) signed by the firm's new key, which its old key endorses."""
    rotated = Firm(code=firm.code, key=new_key, secret=firm.secret)
    return exchange.build_update(
        firm_code=firm.code,
        firm_key=new_key,
        serial=c.serial,
        seq=5,
        now=T0,
        entries=[rotated.entry(exchange.verify_request(request_doc))],
        sealed_keys=[],
        request_digest=None,
        endorsements=[exchange.endorse_key(firm.key, firm.code, new_key.public_key())],
    )


def test_rotated_firm_key_needs_endorsement(home):
    firm = Firm()
    c = make(home)
    c.apply_update(firm.grant(c.make_request("activate", T0, ticket="00000-00000-00000-00000-00000")), T0)
    new_key = hazmat.Ed25519PrivateKey.generate()
    req = c.make_request("sync", T0, firm_code=firm.code)
    rotated = Firm(code=firm.code, key=new_key, secret=firm.secret)
    rotated.seqs = dict(firm.seqs)
    with pytest.raises(E.LicenseInvalid):
        c.apply_update(rotated.grant(req), T0)
    assert c.apply_update(_endorsed_update(c, firm, new_key, req), T0).seq == 5
    assert len(c.slots()[firm.code].pinned) == 2


def test_remove_license_gives_receipt_and_blocks_old_update(home):
    firm = Firm()
    c = make(home)
    req = c.make_request("activate", T0, ticket="00000-00000-00000-00000-00000")
    upd = firm.grant(req, license_id=42)
    c.apply_update(upd, T0)
    receipt = c.remove_license(firm.code, 42, T0 + 10)
    r = exchange.verify_receipt(receipt, hazmat.Ed25519PublicKey.from_public_bytes(b64d(c.sign_pub)))
    assert (r.license_id, r.seq, r.serial) == (42, 2, c.serial)
    assert c.slots()[firm.code].entries == []
    with pytest.raises(E.ActivationError):
        c.apply_update(upd, T0)  # the old update cannot bring the license back
    with pytest.raises(E.LicenseNotFound):
        c.remove_license(firm.code, 42, T0)


def test_removed_entry_does_not_come_back_in_a_later_full_state_update(home):
    firm = Firm()
    c = make(home)
    req = c.make_request("activate", T0, ticket="00000-00000-00000-00000-00000")
    request = exchange.verify_request(req)
    entry = firm.entry(request, license_id=7)
    c.apply_update(firm.update(req, [entry]), T0)
    c.remove_license(firm.code, 7, T0)
    later = firm.update(c.make_request("sync", T0, firm_code=firm.code), [entry])  # Central had no receipt yet
    c.apply_update(later, T0)
    assert c.slots()[firm.code].entries == []


def test_hand_edited_state_is_refused(home):
    firm = Firm()
    c = make(home)
    c.apply_update(
        firm.grant(c.make_request("activate", T0, ticket="00000-00000-00000-00000-00000"), options=Options(units=10)),
        T0,
    )
    path = c.path / "state.json"
    doc = json.loads(path.read_text())
    doc["body"]["slots"][str(firm.code)]["licenses"] = {}
    path.write_text(json.dumps(doc))
    fresh = MachineContainer.open(c.path, machine_traits())
    with pytest.raises(E.LicenseInvalid):
        fresh.slots()


def test_copied_files_do_not_open_on_another_machine(home, tmp_path):
    c = make(home)
    copy = tmp_path / "copy"
    shutil.copytree(c.path, copy)
    assert MachineContainer.open(copy, machine_traits()).serial == c.serial
    with pytest.raises(E.ContainerLocked):
        MachineContainer.open(copy, other_machine())


def test_signed_time_corrects_a_clock_that_ran_ahead(home):
    firm = Firm()
    c = make(home)
    future = T0 + 400 * DAY
    req = c.make_request("activate", future, ticket="00000-00000-00000-00000-00000")
    assert exchange.verify_request(req).slots == {}
    c.apply_update(firm.grant(req, now=future), future)
    assert c.slots()[firm.code].vclock == future
    c.apply_update(firm.grant(c.make_request("sync", T0, firm_code=firm.code), now=T0), T0)
    assert c.slots()[firm.code].vclock == T0


def test_withdrawn_licenses_are_remembered(home):
    firm = Firm()
    c = make(home)
    req = c.make_request("activate", T0, ticket="00000-00000-00000-00000-00000")
    r = exchange.verify_request(req)
    c.apply_update(firm.update(req, [firm.entry(r, license_id=1), firm.entry(r, license_id=2)]), T0)
    c.apply_update(
        firm.update(c.make_request("sync", T0, firm_code=firm.code), [firm.entry(r, license_id=2)]), T0
    )  # license 1 revoked
    assert c.slots()[firm.code].withdrawn == [1]
    c.remove_license(firm.code, 2, T0)
    assert c.slots()[firm.code].withdrawn == [1, 2]


def test_seal_local_roundtrip(home, tmp_path):
    c = make(home)
    blob = c.seal_local(b"secret", b"ctx")
    assert c.unseal_local(blob, b"ctx") == b"secret"
    with pytest.raises(E.LicenseInvalid):
        c.unseal_local(blob, b"other")
    with pytest.raises(E.LicenseInvalid):
        make(tmp_path / "other").unseal_local(blob, b"ctx")


def test_remove_license_takes_exactly_that_license_and_reports_where_the_slot_stood(home):
    """The receipt is the container's signed word that one license left it: it carries the
    slot's position (sequence, time, generation, chain, the removed license's last counts),
    and the slot keeps every other license with its keys and counters."""
    firm = Firm()
    c = make(home)
    req = c.make_request("activate", T0, ticket="00000-00000-00000-00000-00000")
    request = exchange.verify_request(req)
    kept_doc = firm.entry(request, license_id=41, options=Options(units=10), ticket=codes.new_ticket_id())
    gone_doc = firm.entry(request, license_id=42, options=Options(units=10), ticket=codes.new_ticket_id())
    c.apply_update(firm.update(req, [kept_doc, gone_doc]), T0)
    pins = {hazmat.key_id(firm.key.public_key()): firm.key.public_key()}
    kept, gone = LicenseEntry.verify(kept_doc, pins), LicenseEntry.verify(gone_doc, pins)
    c.record_access(kept, units=2, start_usage=True, now=T0, check=lambda slot: None)
    c.record_access(gone, units=3, start_usage=True, now=T0, check=lambda slot: None)
    c.make_request("sync", T0, firm_code=firm.code)  # a signed document the chain names
    before = c.slots()[firm.code]
    assert {k["license"] for k in before.keys or []} == {kept.digest, gone.digest}
    assert before.chain

    receipt = c.remove_license(firm.code, 42, T0 + 500)

    r = exchange.verify_receipt(receipt, hazmat.Ed25519PublicKey.from_public_bytes(b64d(c.sign_pub)))
    assert (r.serial, r.firm_code, r.license_id, r.ticket) == (c.serial, firm.code, 42, gone.ticket)
    assert (r.seq, r.vtime) == (before.seq + 1, T0 + 500)
    assert r.position.gen == before.gen + 1
    assert r.position.prev == tuple(before.chain or ())
    assert r.position.counters[gone.digest].units == 3  # the removed license's last count travels
    assert r.position.counters[kept.digest].units == 2
    after = c.slots()[firm.code]
    assert [d["payload"]["license_id"] for d in after.entries or []] == [41]
    assert [k["license"] for k in after.keys or []] == [kept.digest]
    assert set(after.counters or {}) == {kept.digest}
    assert after.license_state(kept).units_used == 2
    assert after.removed == {"42": gone.digest}
    assert after.chain == [r.digest, *(before.chain or [])][: len(after.chain or [])]
    assert after.gen == r.position.gen  # the receipt names the generation it stored
    assert (after.seq, after.vclock) == (r.seq, r.vtime)


def test_remove_license_from_a_firm_the_container_does_not_hold_changes_nothing(home):
    firm, other = Firm(), Firm(code=10102)
    c = make(home)
    c.apply_update(firm.grant(c.make_request("activate", T0, ticket="00000-00000-00000-00000-00000")), T0)
    state = snapshot(c)
    with pytest.raises(E.LicenseNotFound, match=rf"license 7 of firm {other.code} is not in container {c.serial}"):
        c.remove_license(other.code, 7, T0)
    with pytest.raises(E.LicenseNotFound, match=rf"license 7 of firm {firm.code} is not in container {c.serial}"):
        c.remove_license(firm.code, 7, T0)
    assert snapshot(c) == state


def _one_license(home, firm, **options):
    c = make(home)
    req = c.make_request("activate", T0, ticket="00000-00000-00000-00000-00000")
    doc = firm.entry(exchange.verify_request(req), options=Options(**options))
    c.apply_update(firm.update(req, [doc]), T0)
    return c, LicenseEntry.verify(doc, {hazmat.key_id(firm.key.public_key()): firm.key.public_key()})


def test_record_access_counts_units_and_starts_usage_once(home):
    firm = Firm()
    c, entry = _one_license(home, firm, units=10, usage_period=DAY)
    slot = c.record_access(entry, units=0, start_usage=False, now=T0 + 5, check=lambda s: None)
    assert slot.counters[entry.digest] == {"units": 0, "first_use": None}  # a plain access starts nothing
    c.record_access(entry, units=2, start_usage=True, now=T0 + 10, check=lambda s: None)
    slot = c.record_access(entry, units=3, start_usage=True, now=T0 + 20, check=lambda s: None)
    assert slot.counters[entry.digest] == {"units": 5, "first_use": T0 + 10}  # the first use stays the first
    assert c.slots()[firm.code].license_state(entry) == LicenseState(5, T0 + 10, T0)


def test_a_refused_recheck_records_nothing(home):
    firm = Firm()
    c, entry = _one_license(home, firm, units=10)
    state = snapshot(c)

    def refuse(slot):
        raise E.UnitsExhausted("no")

    with pytest.raises(E.UnitsExhausted):
        c.record_access(entry, units=1, start_usage=True, now=T0, check=refuse)
    assert snapshot(c) == state


def test_license_state_adds_the_units_counted_here_and_at_central(home):
    firm = Firm()
    c, entry = _one_license(home, firm, units=10)
    c.record_online(entry, 3, start_usage=False, now=T0)
    assert c.slots()[firm.code].license_state(entry).units_used == 3  # counted at Central only
    c.record_access(entry, units=2, start_usage=False, now=T0, check=lambda s: None)
    state = c.slots()[firm.code].license_state(entry)
    assert (state.units_used, state.first_use, state.last_sync) == (5, None, T0)


def test_product_keys_come_from_the_slot_and_from_borrowed_licenses(home):
    firm = Firm()
    c, own = _one_license(home, firm)
    pins = {hazmat.key_id(firm.key.public_key()): firm.key.public_key()}
    own_key = exchange.derive_product_key(firm.secret, firm.code, own.product_code, 1)
    assert c.product_key(own, 1) == own_key  # from the copy under the local key
    assert c.product_key(own, 2) is None

    lender = exchange.verify_request(c.make_request("sync", T0, firm_code=firm.code))
    borrowed = LicenseEntry.verify(firm.entry(lender, product=2, license_id=77), pins)
    borrowed_key = b"\x07" * 32
    sealed = exchange.seal_product_key(b64d(c.box_pub), c.serial, borrowed.digest, 1, borrowed_key)
    record = {"entry": borrowed.document, "grant": {}, "keys": [sealed]}
    c.add_borrowed(firm.code, record, borrow_id="b-1", vtime=T0 + 60)
    c.add_borrowed(firm.code, record, borrow_id="b-1", vtime=T0 + 60)  # the same borrow again: kept once
    slot = c.slots()[firm.code]
    assert [b["id"] for b in slot.borrowed or []] == ["b-1"]
    assert slot.vclock == T0 + 60
    assert c.product_key(borrowed, 1) == borrowed_key  # sealed to this container's box key
    assert c.product_key(own, 1) == own_key

    other = make(home.parent / "other")
    foreign = exchange.seal_product_key(b64d(other.box_pub), other.serial, borrowed.digest, 1, borrowed_key)
    c.add_borrowed(firm.code, {**record, "keys": [foreign]}, borrow_id="b-1", vtime=T0)
    with pytest.raises(E.LicenseInvalid):
        c.product_key(borrowed, 1)


def test_a_borrowed_license_makes_the_firm_slot_it_needs(home):
    firm = Firm()
    c = make(home)
    c.add_borrowed(firm.code, {"entry": {}, "grant": {}, "keys": []}, borrow_id="b-2", vtime=T0 + 5)
    slot = c.slots()[firm.code]
    assert (slot.firm_code, slot.vclock, [b["id"] for b in slot.borrowed or []]) == (firm.code, T0 + 5, ["b-2"])
    c.add_borrowed(firm.code, {"entry": {}, "grant": {}, "keys": []}, borrow_id="b-3", vtime=T0)
    assert [b["id"] for b in c.slots()[firm.code].borrowed or []] == ["b-2", "b-3"]


def _raw_update(firm, c, seq, entries, *, now=T0, **kw):
    return exchange.build_update(
        firm_code=firm.code,
        firm_key=firm.key,
        serial=c.serial,
        seq=seq,
        now=now,
        entries=entries,
        sealed_keys=[],
        request_digest=None,
        **kw,
    )


def test_an_update_sets_the_slots_time_central_and_endorsements(home):
    firm = Firm()
    c = make(home)
    req = c.make_request("activate", T0, ticket="00000-00000-00000-00000-00000")
    doc = firm.entry(exchange.verify_request(req), license_id=1)
    c.apply_update(_raw_update(firm, c, 1, [doc], now=T0 + 100), T0, central="https://central.example")
    slot = c.slots()[firm.code]
    assert (slot.vclock, slot.last_sync, slot.central) == (T0 + 100, T0 + 100, "https://central.example")
    new_key = hazmat.Ed25519PrivateKey.generate()
    endorsement = exchange.endorse_key(firm.key, firm.code, new_key.public_key())
    c.apply_update(_raw_update(firm, c, 2, [doc], now=T0 + 200, endorsements=[endorsement]), T0)
    slot = c.slots()[firm.code]
    assert (slot.last_sync, slot.central) == (T0 + 200, "https://central.example")  # the URL stays
    assert slot.endorsements == [endorsement]
    assert hazmat.key_id(new_key.public_key()) in (slot.pinned or {})


def test_an_update_drops_the_counters_of_licenses_it_no_longer_holds(home):
    firm = Firm()
    c = make(home)
    req = c.make_request("activate", T0, ticket="00000-00000-00000-00000-00000")
    request = exchange.verify_request(req)
    pins = {hazmat.key_id(firm.key.public_key()): firm.key.public_key()}
    docs = [firm.entry(request, license_id=i, options=Options(units=9)) for i in (1, 2)]
    c.apply_update(_raw_update(firm, c, 1, docs), T0)
    one, two = (LicenseEntry.verify(d, pins) for d in docs)
    for e in (one, two):
        c.record_access(e, units=1, start_usage=False, now=T0, check=lambda s: None)
    c.apply_update(_raw_update(firm, c, 2, [docs[0]]), T0)  # license 2 revoked
    slot = c.slots()[firm.code]
    assert set(slot.counters or {}) == {one.digest}
    assert slot.withdrawn == [2]


def test_a_license_issued_again_after_its_removal_comes_back(home):
    firm = Firm()
    c = make(home)
    req = c.make_request("activate", T0, ticket="00000-00000-00000-00000-00000")
    request = exchange.verify_request(req)
    old = firm.entry(request, license_id=7)
    c.apply_update(_raw_update(firm, c, 1, [old]), T0)
    c.remove_license(firm.code, 7, T0)
    c.apply_update(_raw_update(firm, c, 3, [old]), T0)  # Central had not seen the receipt yet
    assert c.slots()[firm.code].removed == {"7": document_digest(old)}
    again = firm.entry(request, license_id=7, issued=T0 + 5)  # the ticket activated again
    c.apply_update(_raw_update(firm, c, 4, [again]), T0)
    slot = c.slots()[firm.code]
    assert [d["payload"]["license_id"] for d in slot.entries or []] == [7]
    assert slot.removed == {}


def test_a_license_withdrawn_for_manipulation_leaves_a_notice_until_it_comes_back(home):
    firm = Firm()
    c = make(home)
    req = c.make_request("activate", T0, ticket="00000-00000-00000-00000-00000")
    request = exchange.verify_request(req)
    docs = {i: firm.entry(request, license_id=i, product=10 + i) for i in (1, 2)}
    c.apply_update(_raw_update(firm, c, 1, list(docs.values())), T0)
    message = "License Central saw this container's files restored from an older copy."
    c.apply_update(_raw_update(firm, c, 2, [docs[2]], message=message, manipulation={"withdrawn": [1, 2, 3]}), T0)
    slot = c.slots()[firm.code]
    # only a license this update took away gets a notice (2 is still held, 3 never was)
    assert slot.notices == {"1": {"product_code": 11, "message": message}}
    c.apply_update(_raw_update(firm, c, 3, [docs[2]]), T0)  # a later update keeps the notice
    assert c.slots()[firm.code].notices == {"1": {"product_code": 11, "message": message}}
    c.apply_update(_raw_update(firm, c, 4, [docs[2], firm.entry(request, license_id=1, product=11)]), T0)
    assert c.slots()[firm.code].notices is None  # issued again: the notice goes


def test_removals_are_remembered_one_after_another(home):
    firm = Firm()
    c = make(home)
    req = c.make_request("activate", T0, ticket="00000-00000-00000-00000-00000")
    request = exchange.verify_request(req)
    docs = [firm.entry(request, license_id=i) for i in (1, 2)]
    c.apply_update(_raw_update(firm, c, 1, docs), T0)
    c.remove_license(firm.code, 1, T0)
    c.remove_license(firm.code, 2, T0)
    assert c.slots()[firm.code].removed == {"1": document_digest(docs[0]), "2": document_digest(docs[1])}


def test_no_product_key_for_a_firm_the_container_does_not_hold(home):
    firm, other = Firm(), Firm(code=10102)
    c, _ = _one_license(home, firm)
    foreign = LicenseEntry.verify(
        other.entry(exchange.verify_request(c.make_request("sync", T0, firm_code=firm.code))),
        {hazmat.key_id(other.key.public_key()): other.key.public_key()},
    )
    assert c.product_key(foreign, 1) is None


# ---------------------------------------------------------------- grace, borrow returns, acknowledgements, online units


def _grace(server="http://srv:22350", lease="L-1", product=7, feature=0, deadline=T0 + DAY):
    return {
        "server": server,
        "lease_id": lease,
        "product_code": product,
        "feature_code": feature,
        "license_id": 3,
        "stored": T0,
        "deadline": deadline,
    }


def test_a_grace_is_kept_sealed_replaced_per_product_and_expired_ones_dropped(home):
    from licentia.container import graces

    firm = Firm()
    c = make(home)
    c.hold_grace(firm.code, _grace(lease="L-old", deadline=T0 + 10), {1: b"\x01" * 32}, T0)
    c.hold_grace(firm.code, _grace(server="http://other:22350", deadline=T0 + 5), {}, T0)
    c.hold_grace(firm.code, _grace(product=8), {}, T0)
    # the same server and product again: the newer record replaces the older; a record
    # whose deadline has passed (the other server's) goes
    c.hold_grace(firm.code, _grace(lease="L-new"), {1: b"\x02" * 32, 2: b"\x03" * 32}, T0 + 6)
    slot = c.slots()[firm.code]
    kept = {(g["server"], g["product_code"], g["lease_id"]) for g in slot.graces or []}
    assert kept == {("http://srv:22350", 8, "L-1"), ("http://srv:22350", 7, "L-new")}
    assert slot.vclock == T0 + 6
    rec = next(g for g in slot.graces or [] if g["lease_id"] == "L-new")
    assert set(rec) == {*_grace(), "keys"}
    assert [k["version"] for k in rec["keys"]] == [1, 2]
    opened = c.unseal_local(b64d(rec["keys"][1]["sealed"]), graces.context(firm.code, rec, 2))
    assert opened == b"\x03" * 32  # sealed to this container, bound to the record and version
    with pytest.raises(E.LicenseInvalid):
        c.unseal_local(b64d(rec["keys"][1]["sealed"]), graces.context(firm.code, rec, 1))


def test_giving_a_grace_back_removes_it_and_signs_the_receipt(home):
    from licentia.core import grants

    firm = Firm()
    c = make(home)
    c.hold_grace(firm.code, _grace(lease="L-7"), {}, T0)
    c.hold_grace(firm.code, _grace(product=8, lease="L-8"), {}, T0)
    receipt = c.drop_grace(firm.code, _grace(lease="L-7"), T0 + 30)
    back = grants.verify_grace_return(receipt, c.sign_pub)
    assert (back.serial, back.lease_id, back.firm_code, back.vtime) == (c.serial, "L-7", firm.code, T0 + 30)
    assert [g["lease_id"] for g in c.slots()[firm.code].graces or []] == ["L-8"]  # only that product's
    c.drop_grace(firm.code, _grace(product=8, lease="L-8"), T0 + 20)
    slot = c.slots()[firm.code]
    assert slot.graces is None and slot.vclock == T0 + 30  # the clock never goes back
    other = make(home.parent / "other")
    with pytest.raises(DocumentInvalid):
        grants.verify_grace_return(receipt, other.sign_pub)


def test_returning_a_borrowed_license_removes_exactly_it_and_signs_the_receipt(home):
    from licentia.core import grants

    firm = Firm()
    c = make(home)
    record = {"entry": {}, "grant": {}, "keys": []}
    c.add_borrowed(firm.code, record, borrow_id="b-1", vtime=T0 + 5)
    c.add_borrowed(firm.code, record, borrow_id="b-2", vtime=T0 + 5)
    receipt = c.remove_borrowed(firm.code, "b-1", T0 + 60)
    back = grants.verify_return(receipt, c.sign_pub)
    assert (back.serial, back.borrow_id, back.firm_code, back.vtime) == (c.serial, "b-1", firm.code, T0 + 60)
    assert [b["id"] for b in c.slots()[firm.code].borrowed or []] == ["b-2"]
    c.remove_borrowed(firm.code, "b-2", T0)
    slot = c.slots()[firm.code]
    assert slot.borrowed is None and slot.vclock == T0 + 60
    state = snapshot(c)
    for firm_code, borrow_id in ((firm.code, "b-2"), (firm.code, "nope"), (firm.code + 1, "b-1")):
        with pytest.raises(E.LicenseNotFound):
            c.remove_borrowed(firm_code, borrow_id, T0 + 90)
        assert snapshot(c) == state  # nothing changed


def test_units_counted_online_keep_their_highest_total_and_start_usage_once(home):
    firm = Firm()
    c, entry = _one_license(home, firm, units=10, usage_period=DAY)
    slot = c.record_online(entry, 4, start_usage=False, now=T0 + 5)
    assert slot.counters[entry.digest] == {"units": 0, "first_use": None, "online": 4}
    c.record_online(entry, 6, start_usage=True, now=T0 + 10)
    slot = c.record_online(entry, 5, start_usage=True, now=T0 + 20)  # an older answer, arriving late
    assert slot.counters[entry.digest] == {"units": 0, "first_use": T0 + 10, "online": 6}
    assert c.slots()[firm.code].vclock == T0 + 20
    c.record_online(entry, 7, start_usage=False, now=T0 + 1)
    assert c.slots()[firm.code].vclock == T0 + 20  # the clock never goes back


def _report_ack(firm, c, *, time, recorded, request=None, serial=None, key=None):
    slot = c.slots()[firm.code]
    return exchange.build_ack(
        firm_code=firm.code,
        firm_key=key or firm.key,
        serial=serial or c.serial,
        now=time,
        request_digest=request or slot.chain[0],
        recorded=recorded,
    )


def test_an_acknowledgement_of_the_last_report_counts_as_a_sync_and_settles_units(home):
    firm = Firm()
    c, entry = _one_license(home, firm, units=10)
    c.record_access(entry, units=3, start_usage=True, now=T0 + 5, check=lambda s: None)
    c.make_request("report", T0 + 100, firm_code=firm.code)  # the report, now the slot's newest document
    ack = _report_ack(firm, c, time=T0 + 200, recorded={entry.digest: 3, "f" * 64: 9})
    assert c.apply_ack(ack, T0 + 120) is True
    slot = c.slots()[firm.code]
    assert (slot.last_sync, slot.vclock) == (T0 + 200, T0 + 200)
    assert slot.counters[entry.digest]["settled"] == 3
    assert "f" * 64 not in slot.counters  # a digest this container does not count is left alone
    # a smaller recorded count never lowers what is settled
    c.make_request("report", T0 + 300, firm_code=firm.code)
    assert c.apply_ack(_report_ack(firm, c, time=T0 + 400, recorded={entry.digest: 1}), T0 + 300) is True
    assert c.slots()[firm.code].counters[entry.digest]["settled"] == 3


def test_an_acknowledgement_of_an_older_report_changes_nothing(home):
    firm = Firm()
    c, entry = _one_license(home, firm, units=10)
    c.make_request("report", T0 + 100, firm_code=firm.code)
    old = _report_ack(firm, c, time=T0 + 200, recorded={entry.digest: 2})
    c.make_request("report", T0 + 150, firm_code=firm.code)  # a newer report went out since
    state = snapshot(c)
    assert c.apply_ack(old, T0 + 160) is False
    assert snapshot(c) == state


def test_a_foreign_or_misaddressed_acknowledgement_is_refused_and_changes_nothing(home):
    firm = Firm()
    c, entry = _one_license(home, firm, units=10)
    c.make_request("report", T0 + 100, firm_code=firm.code)
    state = snapshot(c)
    other_firm = Firm()
    bad = [
        _report_ack(firm, c, time=T0 + 200, recorded={}, key=hazmat.Ed25519PrivateKey.generate()),
        _report_ack(firm, c, time=T0 + 200, recorded={}, serial=codes.new_serial()),
        exchange.build_ack(
            firm_code=other_firm.code,
            firm_key=other_firm.key,
            serial=c.serial,
            now=T0 + 200,
            request_digest=c.slots()[firm.code].chain[0],
            recorded={},
        ),
    ]
    for ack in bad:
        with pytest.raises(E.LicenseInvalid):
            c.apply_ack(ack, T0 + 120)
        assert snapshot(c) == state


def test_an_acknowledgement_signed_by_a_rotated_firm_key_the_slot_accepted_is_applied(home):
    firm = Firm()
    c = make(home)
    c.apply_update(firm.grant(c.make_request("activate", T0, ticket="00000-00000-00000-00000-00000")), T0)
    new_key = hazmat.Ed25519PrivateKey.generate()
    c.apply_update(_endorsed_update(c, firm, new_key, c.make_request("sync", T0, firm_code=firm.code)), T0)
    c.make_request("report", T0 + 100, firm_code=firm.code)
    ack = _report_ack(firm, c, time=T0 + 200, recorded={}, key=new_key)
    assert c.apply_ack(ack, T0 + 120) is True
    assert c.slots()[firm.code].last_sync == T0 + 200


def test_an_acknowledgement_of_zero_units_settles_zero(home):
    firm = Firm()
    c, entry = _one_license(home, firm, units=10)
    c.record_access(entry, units=0, start_usage=True, now=T0 + 5, check=lambda s: None)
    c.make_request("report", T0 + 100, firm_code=firm.code)
    assert c.apply_ack(_report_ack(firm, c, time=T0 + 200, recorded={entry.digest: 0}), T0 + 120) is True
    assert c.slots()[firm.code].counters[entry.digest]["settled"] == 0


def test_online_units_of_one_license_leave_the_others_counters_alone(home):
    firm = Firm()
    c = make(home)
    req = c.make_request("activate", T0, ticket="00000-00000-00000-00000-00000")
    request = exchange.verify_request(req)
    docs = [firm.entry(request, license_id=i, options=Options(units=10)) for i in (1, 2)]
    c.apply_update(firm.update(req, docs), T0)
    pins = {hazmat.key_id(firm.key.public_key()): firm.key.public_key()}
    first, second = (LicenseEntry.verify(d, pins) for d in docs)
    c.record_access(first, units=2, start_usage=False, now=T0, check=lambda s: None)
    slot = c.record_online(second, 0, start_usage=False, now=T0)
    assert slot.counters[first.digest] == {"units": 2, "first_use": None}
    assert slot.counters[second.digest] == {"units": 0, "first_use": None, "online": 0}


def test_a_grace_whose_deadline_is_now_is_dropped(home):
    firm = Firm()
    c = make(home)
    c.hold_grace(firm.code, _grace(server="http://a:1", deadline=T0 + 10), {}, T0)
    c.hold_grace(firm.code, _grace(server="http://b:1", deadline=T0 + 11), {}, T0)
    c.hold_grace(firm.code, _grace(server="http://c:1"), {}, T0 + 10)
    assert sorted(g["server"] for g in c.slots()[firm.code].graces or []) == ["http://b:1", "http://c:1"]
    assert c.slots()[firm.code].firm_code == firm.code


# ---------------------------------------------------------------- opening, requests (mutation testing's finds)


@pytest.mark.parametrize(
    "change", [{"kind": "card"}, {"format": "licentia-container/2"}, {"kind": None}, {"format": None}]
)
def test_a_folder_that_is_no_machine_container_is_refused(home, change):
    c = make(home)
    meta_path = c.path / "container.json"
    meta = json.loads(meta_path.read_text())
    meta.update(change)
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(E.LicenseInvalid) as info:
        MachineContainer.open(c.path, machine_traits())
    assert info.value.reason == f"container {c.path.name} unreadable: not a machine container"
    with pytest.raises(E.LicenseInvalid):
        MachineContainer.open(c.path, machine_traits(), meta=meta)


def test_a_container_on_another_machine_says_what_to_do(home):
    c = make(home)
    with pytest.raises(E.ContainerLocked) as info:
        MachineContainer.open(c.path, other_machine())
    assert str(info.value) == (
        f"container {c.serial} is bound to another machine, or too many of this machine's components changed; "
        "activate the license again or contact the vendor"
    )


def test_each_request_moves_every_slot_one_generation_on_and_names_its_firm(home):
    c = make(home)
    firm = Firm()
    c.apply_update(firm.grant(c.make_request("activate", T0, ticket="00000-00000-00000-00000-00000")), T0)
    first = exchange.verify_request(c.make_request("sync", T0 + 5, firm_code=firm.code))
    second = exchange.verify_request(c.make_request("sync", T0 + 9, firm_code=firm.code))
    assert first.firm_code == second.firm_code == firm.code
    assert second.position(firm.code).gen == first.position(firm.code).gen + 1
    assert second.position(firm.code).vtime == T0 + 9


def test_returning_a_borrow_the_container_does_not_hold(home):
    c = make(home)
    with pytest.raises(E.LicenseNotFound) as info:
        c.remove_borrowed(10101, "no-such-borrow", T0)
    assert str(info.value) == f"borrowed license no-such-borrow is not in container {c.serial}"


def test_a_request_reports_each_entrys_count_and_first_use(home):
    firm = Firm()
    c, entry = _one_license(home, firm, units=10, usage_period=DAY)
    c.record_access(entry, units=4, start_usage=True, now=T0 + 10, check=lambda s: None)
    req = exchange.verify_request(c.make_request("report", T0 + 20, firm_code=firm.code))
    position = req.position(firm.code)
    assert position.counters[entry.digest] == exchange.Counter(4, T0 + 10)
    assert position.gen is not None and position.gen >= 1
    first = c.make_request("report", T0 + 30, firm_code=firm.code)
    second = c.make_request("report", T0 + 40, firm_code=firm.code)
    after = exchange.verify_request(second).position(firm.code)
    assert after.prev[0] == document_digest(first)  # a request names the slot's last signed documents,
    third = c.make_request("report", T0 + 45, firm_code=firm.code)
    latest = exchange.verify_request(c.make_request("report", T0 + 50, firm_code=firm.code)).position(firm.code)
    assert latest.prev[:3] == (document_digest(third), document_digest(second), document_digest(first))


def test_units_not_yet_settled_are_those_central_has_not_acknowledged(home):
    firm = Firm()
    c, entry = _one_license(home, firm, units=10)
    slot = c.slots()[firm.code]
    assert slot.unsettled(entry) == 0
    c.record_access(entry, units=3, start_usage=True, now=T0 + 5, check=lambda s: None)
    assert c.slots()[firm.code].unsettled(entry) == 3
    c.make_request("report", T0 + 100, firm_code=firm.code)
    assert c.apply_ack(_report_ack(firm, c, time=T0 + 200, recorded={entry.digest: 2}), T0 + 120) is True
    assert c.slots()[firm.code].unsettled(entry) == 1


def test_every_write_that_changes_a_slot_raises_its_generation_by_one(home):
    firm = Firm()
    c, entry = _one_license(home, firm, units=10)
    assert c.slots()[firm.code].gen == 1  # a new slot starts at one
    c.record_access(entry, units=1, start_usage=True, now=T0 + 5, check=lambda s: None)
    assert c.slots()[firm.code].gen == 2
    c.mutate(lambda slots: None)  # a write that changes no slot
    assert c.slots()[firm.code].gen == 2
    c.record_access(entry, units=1, start_usage=True, now=T0 + 6, check=lambda s: None)
    assert c.slots()[firm.code].gen == 3


def test_the_state_mac_and_the_local_copies_follow_the_documented_derivations(home):
    """docs/formats.md 10: the state MAC key and the local key are HKDF-SHA256 of the
    container secret (salt: the serial), info ``licentia state mac v1`` and ``licentia
    local key v1``; the state file's MAC is HMAC-SHA256 of the canonical body; a product
    key's local copy is AES-256-GCM under the local key with the associated data
    ``licentia local|product key|<entry digest>|<version>``. Computed here from the
    documentation alone, with the container secret unwrapped as its binding does."""
    import base64
    import hmac

    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    from licentia.core.encoding import canonical

    firm = Firm()
    c, entry = _one_license(home, firm, units=10)
    meta = json.loads((c.path / "container.json").read_text())
    secret = unwrap(
        meta["wraps"], serial=meta["serial"], level=meta["level"], traits=machine_traits(), salt=b64d(meta["salt"])
    )

    def derive(info: bytes) -> bytes:
        return HKDF(algorithm=hashes.SHA256(), length=32, salt=c.serial.encode(), info=info).derive(secret)

    state = json.loads((c.path / "state.json").read_text())
    mac = hmac.new(derive(b"licentia state mac v1"), canonical(state["body"]), "sha256").digest()
    assert base64.urlsafe_b64decode(state["mac"] + "=" * (-len(state["mac"]) % 4)) == mac

    (sealed,) = state["body"]["slots"][str(firm.code)]["keys"]
    assert sealed["license"] == entry.digest
    blob = b64d(sealed["local"])
    aad = f"licentia local|product key|{entry.digest}|{sealed['version']}".encode()
    key = AESGCM(derive(b"licentia local key v1")).decrypt(blob[:12], blob[12:], aad)
    assert key == exchange.derive_product_key(firm.secret, firm.code, entry.product_code, sealed["version"])
    assert key == c.product_key(entry, sealed["version"])


def test_a_new_container_says_which_levels_exist_and_keeps_its_folders_private(home):
    with pytest.raises(ValueError, match="^binding level is one of loose, medium, tight$"):
        MachineContainer.create(home, "strict", machine_traits(), T0)
    c = make(home)
    assert json.loads((c.path / "container.json").read_text())["created"] == T0
    assert (home / "containers").stat().st_mode & 0o777 == 0o700
    assert c.path.stat().st_mode & 0o777 == 0o700


def test_a_local_key_copy_opens_only_for_its_own_license_and_version(home):
    """A product key's local copy is sealed with its license's digest and key version as
    associated data: a copy moved into another license's record (or renamed to another
    version) inside a state the container itself wrote, MAC and all, opens for nothing:
    LicenseInvalid, never the other product's key."""
    firm = Firm()
    c = make(home)
    req = c.make_request("activate", T0, ticket="00000-00000-00000-00000-00000")
    request = exchange.verify_request(req)
    docs = [firm.entry(request, product=p, license_id=40 + p, ticket=codes.new_ticket_id()) for p in (1, 2)]
    c.apply_update(firm.update(req, docs), T0)
    pins = {hazmat.key_id(firm.key.public_key()): firm.key.public_key()}
    one, two = (LicenseEntry.verify(d, pins) for d in docs)
    key_one, key_two = c.product_key(one, 1), c.product_key(two, 1)
    assert key_one != key_two  # two products: two keys

    def swap(slots):
        first, second = slots[firm.code].keys
        first["local"], second["local"] = second["local"], first["local"]

    c.mutate(swap)
    for entry in (one, two):
        with pytest.raises(E.LicenseInvalid):
            c.product_key(entry, 1)

    def as_version_2(slots):
        swap(slots)  # each copy back in its own record, then named version 2
        for sealed in slots[firm.code].keys:
            sealed["version"] = 2

    c.mutate(as_version_2)
    with pytest.raises(E.LicenseInvalid):
        c.product_key(one, 2)
    assert c.product_key(one, 1) is None  # no record of version 1 is left
