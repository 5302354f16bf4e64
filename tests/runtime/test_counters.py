"""Counters a local access keeps: units and the first use that starts a usage period."""

import pytest

from licentia.core import errors as E
from licentia.core.license import Options
from tests.factory import DAY, T0
from tests.runtime.helpers import install, runtime


def test_units_are_consumed_and_persist(tmp_path, clock, firm):
    install(tmp_path, firm, clock, options=Options(units=10))
    rt = runtime(tmp_path, clock)
    rt.trust(firm.code, firm.pem)
    assert rt.access(firm.code, 1, units=4).units_left == 6
    rt2 = runtime(tmp_path, clock)
    rt2.trust(firm.code, firm.pem)
    assert rt2.access(firm.code, 1, units=6).units_left == 0
    with pytest.raises(E.UnitsExhausted, match="0 units left"):
        rt.access(firm.code, 1, units=1)
    assert rt.access(firm.code, 1).units_left == 0


def test_usage_period_starts_at_first_access(tmp_path, clock, firm):
    install(tmp_path, firm, clock, options=Options(usage_period=3 * DAY))
    clock.advance(10 * DAY)
    rt = runtime(tmp_path, clock)
    rt.trust(firm.code, firm.pem)
    assert rt.access(firm.code, 1).expires == T0 + 13 * DAY
    clock.advance(2 * DAY)
    assert runtime(tmp_path, clock).access(firm.code, 1, firm_key=firm.pem).expires == T0 + 13 * DAY
    clock.advance(DAY)
    with pytest.raises(E.LicenseExpired):
        rt.access(firm.code, 1)


def test_the_entry_cache_is_keyed_by_content_not_by_a_reusable_object_id(tmp_path, clock, firm):
    """Slot objects come and go; one made later may get the id of one freed before it."""
    from licentia.container import Slot
    from licentia.core import exchange

    c = install(tmp_path, firm, clock, license_id=1)
    rt = runtime(tmp_path, clock)
    rt.trust(firm.code, firm.pem)
    template = c.slots()[firm.code].to_json()
    request = exchange.verify_request(c.make_request("sync", clock()))
    docs = [firm.entry(request, license_id=n) for n in (2, 3)]
    # slots of two states, made and freed in turn: CPython soon gives a new one a freed one's id
    for n in range(400):
        doc = docs[n % 2]
        slot = Slot.from_json(firm.code, {**template, "entries": [doc]})
        entries, _ = rt.verified_entries(c, slot, rt.trusted(firm.code))
        assert [e.license_id for e in entries] == [doc["payload"]["license_id"]], f"round {n}"
        del slot, entries
