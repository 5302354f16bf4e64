"""A firm slot of a container as its state file holds it: written and read back, and a
slot written before counters were kept by entry digest read with its counts carried over."""

from __future__ import annotations

from licentia.container.slot import Slot
from licentia.core import codes, hazmat
from licentia.core.documents import document_digest
from licentia.core.encoding import b64e
from licentia.core.license import LicenseEntry, Options
from tests.factory import T0

FIRM = 10101


def _entry(key, license_id):
    return LicenseEntry(
        firm_code=FIRM,
        product_code=1,
        feature_map=1,
        text="x",
        license_id=license_id,
        serial=codes.new_serial(),
        container_key=b64e(b"k" * 32),
        options=Options(units=10),
        issued=T0,
    ).sign(key)


def test_a_slot_reads_back_what_it_wrote():
    key = hazmat.Ed25519PrivateKey.generate()
    doc = _entry(key, 1)
    slot = Slot(
        firm_code=FIRM,
        seq=4,
        vclock=T0,
        entries=[doc],
        counters={document_digest(doc): {"units": 3, "first_use": T0}},
        endorsements=[{"e": 1}],
        gen=7,
        chain=["ab" * 32],
    )
    again = Slot.from_json(FIRM, slot.to_json())
    assert again.to_json() == slot.to_json()
    assert again.endorsements == [{"e": 1}] and again.counters == slot.counters


def test_a_slot_written_before_digests_carries_its_counts_over():
    """Counters once kept by license id (``licenses``: units_used, first_use) are read as
    the counters of the entries with those ids; ids no entry holds any more are dropped."""
    key = hazmat.Ed25519PrivateKey.generate()
    one, two = _entry(key, 1), _entry(key, 2)
    old = Slot(firm_code=FIRM, seq=2, vclock=T0, entries=[one, two]).to_json()
    del old["counters"]
    old["licenses"] = {
        "1": {"units_used": 4, "first_use": T0 - 60},
        "2": {"first_use": None},
        "9": {"units_used": 5, "first_use": T0},
    }
    slot = Slot.from_json(FIRM, old)
    assert slot.counters == {
        document_digest(one): {"units": 4, "first_use": T0 - 60},
        document_digest(two): {"units": 0, "first_use": None},
    }
    assert slot.unsettled(LicenseEntry.of_document(one)) == 4


def test_counters_by_digest_win_over_old_ones():
    key = hazmat.Ed25519PrivateKey.generate()
    one = _entry(key, 1)
    both = Slot(firm_code=FIRM, entries=[one], counters={document_digest(one): {"units": 1}}).to_json()
    both["licenses"] = {"1": {"units_used": 8}}
    assert Slot.from_json(FIRM, both).counters == {document_digest(one): {"units": 1}}
    neither = Slot(firm_code=FIRM, entries=[one]).to_json()
    del neither["counters"]
    neither["licenses"] = {}
    assert Slot.from_json(FIRM, neither).counters is None
