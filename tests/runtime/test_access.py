"""Local access: trust, verification, the handle, the closest failure."""

import os

import pytest

from licentia.container import MachineContainer
from licentia.core import errors as E
from licentia.core.license import Options
from tests.factory import DAY, T0, Firm, machine_traits
from tests.runtime.helpers import TICKET, install, runtime


def test_trust_is_required(tmp_path, clock, firm):
    install(tmp_path, firm, clock)
    rt = runtime(tmp_path, clock)
    with pytest.raises(E.TrustNotConfigured, match="licentia.trust"):
        rt.access(firm.code, 1)


def test_access_grants_a_handle(tmp_path, clock, firm):
    c = install(tmp_path, firm, clock, options=Options(expires=T0 + 10 * DAY), feature_map=0b110, license_id=9)
    rt = runtime(tmp_path, clock)
    with rt.access(firm.code, 1, 0b100, firm_key=firm.pem) as h:
        assert (h.firm_code, h.product_code, h.feature_map, h.license_id) == (firm.code, 1, 0b110, 9)
        assert h.container_serial == c.serial and h.expires == T0 + 10 * DAY and h.units_left is None
        assert len(h.product_key(1)) == 32
    assert h.released
    with pytest.raises(E.FeatureNotLicensed):
        rt.access(firm.code, 1, 0b001)
    with pytest.raises(E.LicenseNotFound):
        rt.access(firm.code, 2)


def test_product_key_matches_the_firms(tmp_path, clock, firm):
    from licentia.core import exchange

    install(tmp_path, firm, clock)
    h = runtime(tmp_path, clock).access(firm.code, 1, firm_key=firm.pem)
    assert h.product_key(1) == exchange.derive_product_key(firm.secret, firm.code, 1, 1)
    with pytest.raises(E.LicenseNotFound):
        h.product_key(2)


def test_license_signed_by_another_key_is_invalid(tmp_path, clock, firm):
    install(tmp_path, firm, clock)
    impostor = Firm(code=firm.code)
    rt = runtime(tmp_path, clock)
    with pytest.raises(E.LicenseInvalid) as info:
        rt.access(firm.code, 1, firm_key=impostor.pem)
    assert "signature" not in str(info.value)  # the reason goes to the log only


def test_key_file_and_several_pinned_keys(tmp_path, clock, firm):
    install(tmp_path, firm, clock)
    pem = tmp_path / "firm.pem"
    pem.write_text(Firm(code=firm.code).pem + firm.pem)
    rt = runtime(tmp_path, clock)
    rt.trust(firm.code, pem)
    assert rt.access(firm.code, 1).license_id >= 1


def test_closest_to_success_wins_and_names_what_was_tried(tmp_path, clock, firm):
    c = MachineContainer.create(tmp_path, "medium", machine_traits(), T0)
    req = c.make_request("activate", T0, ticket=TICKET)
    from licentia.core import exchange

    r = exchange.verify_request(req)
    entries = [
        firm.entry(r, feature_map=0, license_id=1),
        firm.entry(r, options=Options(expires=T0 - 1), license_id=2),
    ]
    c.apply_update(firm.update(req, entries), T0)
    rt = runtime(tmp_path, clock)
    with pytest.raises(E.LicenseExpired) as info:
        rt.access(firm.code, 1, 1, firm_key=firm.pem)
    text = str(info.value)
    assert "license 2" in text and "license 1" in text and len(info.value.tried) == 2


def test_entries_are_verified_once_per_process(tmp_path, clock, firm, monkeypatch):
    from licentia.core.license import LicenseEntry

    install(tmp_path, firm, clock, options=Options(units=100))
    calls = []
    real = LicenseEntry.verify.__func__

    def counting(cls, doc, keys):
        calls.append(1)
        return real(cls, doc, keys)

    monkeypatch.setattr(LicenseEntry, "verify", classmethod(counting))
    rt = runtime(tmp_path, clock)
    rt.trust(firm.code, firm.pem)
    for _ in range(20):
        rt.access(firm.code, 1, units=1).release()  # each writes the state file anew
    assert len(calls) == 1


def test_cached_access_does_not_write(tmp_path, clock, firm):
    c = install(tmp_path, firm, clock, options=Options(expires=T0 + DAY))
    rt = runtime(tmp_path, clock)
    rt.trust(firm.code, firm.pem)
    rt.access(firm.code, 1).release()
    state = c.path / "state.json"
    before = (state.stat().st_ino, state.stat().st_mtime_ns, state.read_bytes())
    for _ in range(50):
        clock.advance(10)
        rt.access(firm.code, 1).release()
    assert (state.stat().st_ino, state.stat().st_mtime_ns, state.read_bytes()) == before


def test_access_sees_a_revocation_applied_by_another_process(tmp_path, clock, firm):
    c = install(tmp_path, firm, clock)
    rt = runtime(tmp_path, clock)
    rt.trust(firm.code, firm.pem)
    rt.access(firm.code, 1)
    other = MachineContainer.open(c.path, machine_traits())
    other.apply_update(firm.update(other.make_request("sync", T0, firm_code=firm.code), []), T0)
    with pytest.raises(E.LicenseNotFound):
        rt.access(firm.code, 1)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_forked_child_does_not_reuse_parent_handle(tmp_path, clock, firm):
    install(tmp_path, firm, clock)
    rt = runtime(tmp_path, clock)
    handle = rt.access(firm.code, 1, firm_key=firm.pem)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        os.close(r)
        ok = handle.released
        try:
            handle.product_key(1)
            ok = False
        except E.LicenseError:
            pass
        os.write(w, b"1" if ok else b"0")
        os._exit(0)
    os.close(w)
    assert os.read(r, 1) == b"1"
    os.waitpid(pid, 0)
    assert not handle.released
