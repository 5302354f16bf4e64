"""evaluate() is a pure function of (license, state, request, time)."""

import dataclasses

import pytest

from licentia.core import codes, hazmat
from licentia.core import errors as E
from licentia.core.documents import DocumentInvalid, document_digest
from licentia.core.encoding import b64e
from licentia.core.license import (
    CLOCK_TOLERANCE,
    AccessRequest,
    LicenseEntry,
    LicenseState,
    Options,
    evaluate,
)

DAY = 86400
NOW = 1_800_000_000


def entry(**opts):
    return LicenseEntry(
        firm_code=7,
        product_code=3,
        feature_map=0b1011,
        text="x",
        license_id=1,
        serial=codes.new_serial(),
        container_key=b64e(b"k" * 32),
        options=Options(**opts),
        issued=NOW - DAY,
    )


def ev(e, state=None, now=NOW, vclock=0, **req):
    r = AccessRequest(firm_code=req.pop("firm", 7), product_code=req.pop("product", 3), **req)
    return evaluate(e, state or LicenseState(), r, now, vclock)


def test_feature_bits():
    e = entry()
    assert ev(e, feature_code=0).ok
    assert ev(e, feature_code=0b1010).ok
    res = ev(e, feature_code=0b0100)
    assert res.error is E.FeatureNotLicensed


def test_expiry_and_activation_time():
    e = entry(expires=NOW + 10, not_before=NOW - 10)
    assert ev(e).ok and ev(e).expires == NOW + 10
    assert ev(e, now=NOW + 10).error is E.LicenseExpired
    assert ev(e, now=NOW - 11).error is E.LicenseNotYetValid


def test_usage_period_starts_at_first_access():
    e = entry(usage_period=5 * DAY)
    first = ev(e)
    assert first.ok and first.start_usage and first.expires == NOW + 5 * DAY
    later = ev(e, LicenseState(first_use=NOW), now=NOW + 5 * DAY - 1)
    assert later.ok and not later.start_usage
    assert ev(e, LicenseState(first_use=NOW), now=NOW + 5 * DAY).error is E.LicenseExpired


def test_units():
    e = entry(units=10)
    assert ev(e, LicenseState(units_used=7), units=3).ok
    assert ev(e, LicenseState(units_used=8), units=3).error is E.UnitsExhausted
    assert entry().options.units is None
    assert ev(entry(), units=1).error is E.UnitsExhausted
    assert ev(e, units=-1).error is E.UnitsExhausted


def test_maintenance_period():
    e = entry(maintenance_until=NOW)
    assert ev(e, release_date=NOW).ok
    assert ev(e, release_date=NOW + 1).error is E.MaintenanceExpired
    assert ev(e).ok  # no release date given


def test_sync_interval():
    e = entry(sync_interval=30 * DAY)
    assert ev(e, LicenseState(last_sync=NOW - 29 * DAY)).ok
    assert ev(e, LicenseState(last_sync=NOW - 31 * DAY)).error is E.SyncRequired


def test_clock_set_back_stops_time_bound_licenses_only():
    vclock = NOW + CLOCK_TOLERANCE + 60
    assert ev(entry(expires=NOW + 100 * DAY), vclock=vclock).error is E.ClockTampered
    assert ev(entry(), vclock=vclock).ok
    assert ev(entry(expires=NOW + 100 * DAY), vclock=NOW + CLOCK_TOLERANCE - 60).ok


def test_virtual_clock_ahead_within_tolerance_evaluates_at_virtual_time():
    e = entry(expires=NOW + 60)
    assert ev(e, now=NOW, vclock=NOW + 120).error is E.LicenseExpired


def test_roundtrip_sign_verify_and_tamper():
    key = hazmat.Ed25519PrivateKey.generate()
    e = entry(expires=NOW, units=5, data=b"\x00data")
    doc = e.sign(key)
    keys = {hazmat.key_id(key.public_key()): key.public_key()}
    back = LicenseEntry.verify(doc, keys)
    assert back.options == e.options and back.digest == document_digest(doc)
    doc["payload"]["feature_map"] = 0xFFFFFFFF
    with pytest.raises(DocumentInvalid):
        LicenseEntry.verify(doc, keys)
    other = hazmat.Ed25519PrivateKey.generate()
    with pytest.raises(DocumentInvalid):
        LicenseEntry.verify(e.sign(other), keys)


def test_max_grace_is_written_only_when_set_and_never_negative():
    from licentia.central.services.catalog import absolute_options, clean_template
    from licentia.core.license import Options

    assert "max_grace" not in Options().to_json()  # documents without it read as before
    assert Options.from_json(Options().to_json()).max_grace is None
    assert Options.from_json(Options(max_grace=3600).to_json()).max_grace == 3600
    with pytest.raises(DocumentInvalid):
        Options.from_json({**Options().to_json(), "max_grace": -1})
    assert absolute_options(clean_template({"max_grace": 7200}), 0).max_grace == 7200
    assert absolute_options(clean_template({}), 0).max_grace is None


@pytest.mark.parametrize("firm,product", [(7, 4), (8, 3), (8, 4)], ids=["other-product", "other-firm", "both"])
def test_a_license_for_another_product_or_firm_is_not_found(firm, product):
    result = ev(entry(), firm=firm, product=product)
    assert (result.error, result.message) == (E.LicenseNotFound, "license is for another product")


def test_the_refusal_names_exactly_the_feature_bits_missing():
    result = ev(entry(), feature_code=0b0110)  # the entry has 0b1011: bit 0b0100 is missing
    assert (result.error, result.message) == (E.FeatureNotLicensed, "feature bits 0x4 are not licensed")


def test_not_before_is_the_first_valid_second():
    assert ev(entry(not_before=NOW)).ok
    early = ev(entry(not_before=NOW), now=NOW - 1)
    assert (early.error, early.message) == (E.LicenseNotYetValid, "valid from 2027-01-15 08:00 UTC")


def test_an_access_of_a_license_without_usage_period_starts_nothing():
    result = ev(entry())
    assert result.ok and result.start_usage is False and result.units == 0 and result.expires is None


@pytest.mark.parametrize(
    "opts,state,req,error,message",
    [
        ({"expires": NOW}, None, {}, E.LicenseExpired, "expired 2027-01-15 08:00 UTC"),
        (
            {"sync_interval": DAY},
            LicenseState(last_sync=NOW - 2 * DAY),
            {},
            E.SyncRequired,
            "last synced 2027-01-13 08:00 UTC; run 'licentia sync' while online",
        ),
        (
            {"maintenance_until": NOW},
            None,
            {"release_date": NOW + 1},
            E.MaintenanceExpired,
            "this release is newer than the maintenance period ending 2027-01-15 08:00 UTC",
        ),
        ({"units": 5}, None, {"units": -1}, E.UnitsExhausted, "a negative number of units cannot be consumed"),
        ({}, None, {"units": 1}, E.UnitsExhausted, "this license has no unit counter"),
    ],
    ids=["expired", "sync", "maintenance", "negative-units", "no-counter"],
)
def test_each_refusal_says_why_in_words_a_user_can_act_on(opts, state, req, error, message):
    result = ev(entry(**opts), state, **req)
    assert (result.error, result.message) == (error, message)


def test_an_entry_read_without_its_signature_is_the_entry_verified():
    """``LicenseEntry.of_document`` (Central reads the entries it signed itself): the same
    entry, kid, digest and document as verifying it gives."""
    key = hazmat.Ed25519PrivateKey.generate()
    doc = entry(units=5, expires=NOW + DAY).sign(key)
    read = LicenseEntry.of_document(doc)
    verified = LicenseEntry.verify(doc, {hazmat.key_id(key.public_key()): key.public_key()})
    assert read == verified
    assert (read.kid, read.digest, read.document) == (verified.kid, document_digest(doc), doc)
    assert read.kid == hazmat.key_id(key.public_key())


def test_an_entrys_ticket_counters_and_activation_survive_signing():
    """What Central recorded for the ticket (units consumed before, the first use, the
    activation number) and the ticket itself are signed into the entry and read back: a
    container counts the units left from them."""
    key = hazmat.Ed25519PrivateKey.generate()
    ticket = codes.new_ticket_id()
    made = dataclasses.replace(
        entry(units=10, usage_period=DAY), ticket=ticket, consumed_base=4, first_use=NOW - 3600, activation=2
    )
    doc = made.sign(key)
    read = LicenseEntry.verify(doc, {hazmat.key_id(key.public_key()): key.public_key()})
    assert (read.ticket, read.consumed_base, read.first_use, read.activation) == (ticket, 4, NOW - 3600, 2)
    assert ev(read, units=6).ok and ev(read, units=7).error is E.UnitsExhausted  # 10 - 4 left
    assert ev(read, now=NOW - 3600 + DAY).error is E.LicenseExpired  # the period runs from Central's first use


def test_times_in_messages_are_utc_whatever_the_machines_zone(monkeypatch):
    import time

    monkeypatch.setenv("TZ", "Asia/Tokyo")
    time.tzset()
    try:
        result = ev(entry(expires=NOW), now=NOW + 10)
    finally:
        monkeypatch.undo()
        time.tzset()
    assert result.message == "expired 2027-01-15 08:00 UTC"  # NOW is 08:00 UTC, 17:00 in Tokyo
