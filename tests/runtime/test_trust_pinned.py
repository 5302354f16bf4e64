"""licentia.trust() with the firm's keys pinned in code.

First what ``trust`` reads: PEM text (never a path) or, for existing apps, a file. Then
the attack this closes, end to end with a real License Central and real containers: an
end user who replaces a key file shipped with the app gets a self-signed license accepted;
an app that pinned the constant printed by ``licentia vendor firm public-key --format
python`` refuses it, and, because that constant held the staged key, still accepts the
licenses Central signs after the next rotation.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from licentia.core import errors as E
from licentia.core import hazmat
from licentia.core.license import Options
from licentia.runtime import Runtime, activation
from tests.central.central_helpers import ServerThread, Vendor, central_app, make_settings
from tests.cli.helpers import vendor
from tests.factory import Firm, machine_traits
from tests.runtime.helpers import install, runtime

FIRM = 10101


def pem_of(*keys: hazmat.Ed25519PrivateKey) -> str:
    return "".join(hazmat.public_pem(k.public_key()) for k in keys)


def kid(key: hazmat.Ed25519PrivateKey) -> str:
    return hazmat.key_id(key.public_key())


# ---------------------------------------------------------------- what trust() reads


def test_pem_text_with_several_keys_pins_them_all(tmp_path, clock):
    a, b = hazmat.Ed25519PrivateKey.generate(), hazmat.Ed25519PrivateKey.generate()
    for given in (pem_of(a, b), pem_of(a, b).encode()):
        rt = runtime(tmp_path / "home", clock)
        rt.trust(FIRM, given)
        assert set(rt.trusted(FIRM)) == {kid(a), kid(b)}


def test_text_with_a_pem_header_is_never_read_as_a_path(tmp_path, clock, monkeypatch):
    key = hazmat.Ed25519PrivateKey.generate()
    monkeypatch.chdir(tmp_path)
    name = "-----BEGIN PUBLIC KEY----- of firm 10101"
    (tmp_path / name).write_text(pem_of(key))  # a file by that very name holds a valid key ...
    rt = runtime(tmp_path / "home", clock)
    with pytest.raises(ValueError, match="PEM public key"):
        rt.trust(FIRM, name)  # ... but the text is read as PEM text, and is no key
    with pytest.raises(ValueError, match="no PEM public key"):
        rt.trust(FIRM, str(tmp_path / "firm.pem").encode())  # bytes are PEM text too, never a path
    assert rt.trusted(FIRM) == {}


def test_a_path_still_works_for_existing_apps(tmp_path, clock):
    key = hazmat.Ed25519PrivateKey.generate()
    path = tmp_path / "firm-10101.pem"
    path.write_text(pem_of(key))
    for given in (path, str(path)):
        rt = runtime(tmp_path / "home", clock)
        rt.trust(FIRM, given)
        assert set(rt.trusted(FIRM)) == {kid(key)}


def test_pinning_adds_to_the_keys_pinned_before(tmp_path, clock):
    a, b = hazmat.Ed25519PrivateKey.generate(), hazmat.Ed25519PrivateKey.generate()
    rt = runtime(tmp_path / "home", clock)
    rt.trust(FIRM, pem_of(a))
    rt.trust(FIRM, pem_of(b))
    assert set(rt.trusted(FIRM)) == {kid(a), kid(b)}


# ---------------------------------------------------------------- the attack, end to end


class Site:
    """License Central on 127.0.0.1 with firm FIRM, its vendor key, and two items."""

    def __init__(self, url: str, http: httpx.Client, clock: Any):
        self.url, self.clock = url, clock
        self.vendor = Vendor(http, FIRM)  # product 7
        r = self.vendor.post("/items", {"name": "Product Eight", "product_code": 8, "options": {"units": 100}})
        assert r.status_code == 201, r.text
        self.item8 = r.json()["item_id"]

    def cli(self, *args: str) -> str:
        code, out, err = vendor(list(args), url=self.url, key=self.vendor.key)
        assert code == 0, err
        return out

    def pem(self) -> str:
        return self.cli("firm", "public-key", str(FIRM))


@pytest.fixture
def site(tmp_path: Path, clock: Any) -> Iterator[Site]:
    with (
        central_app(make_settings(tmp_path / "central"), clock) as app,
        ServerThread(app) as srv,
        httpx.Client(base_url=srv.url, timeout=30) as http,
    ):
        yield Site(srv.url, http, clock)


def app(home: Path, clock: Any, pinned: str | Path) -> Runtime:
    """The vendor's application starting on a machine: a fresh runtime that pins ``pinned``."""
    rt = Runtime(home, clock=clock, traits=lambda: machine_traits())
    rt.trust(FIRM, pinned)
    return rt


def signer(rt: Runtime, product: int) -> str:
    """The kid that signed the machine's license for ``product``."""
    (doc,) = [d for _, slot in rt.iter_slots() for d in slot.entries or [] if d["payload"]["product_code"] == product]
    return str(doc["kid"])


def test_keys_pinned_in_code_survive_the_rotation_and_refuse_a_self_signed_license(site, tmp_path, clock):
    first_pem = site.pem()  # what an app shipped before the vendor staged a key pins

    # the vendor stages the next key and ships apps with the constant printed now
    staged = site.cli("firm", "rotate-key", str(FIRM), "--stage").strip()
    source = site.cli("firm", "public-key", str(FIRM), "--format", "python")
    scope: dict[str, Any] = {}
    exec(compile(source, "firm_keys.py", "exec"), scope)  # noqa: S102 - the command's own output
    keys_in_code = scope[f"FIRM_{FIRM}_KEYS"]
    assert isinstance(keys_in_code, str) and keys_in_code.count("BEGIN PUBLIC KEY") == 2

    machine = tmp_path / "machine"
    (before,) = site.vendor.tickets()
    activation.activate(before, site.url, runtime=app(machine, clock, keys_in_code))
    old = signer(app(machine, clock, keys_in_code), 7)
    assert old != staged  # licenses issued meanwhile: still the old key's

    # the next rotation activates the staged key; Central now signs with it
    assert site.cli("firm", "rotate-key", str(FIRM)).strip() == staged
    (after,) = site.vendor.tickets(items=[site.item8])
    activation.activate(after, site.url, runtime=app(machine, clock, keys_in_code))
    assert signer(app(machine, clock, keys_in_code), 8) == staged

    # the app pinned before the rotation accepts licenses signed before and after it
    rt = app(machine, clock, keys_in_code)
    with rt.access(FIRM, 7, units=1) as handle:
        assert handle.units_left == 99
    with rt.access(FIRM, 8, units=1) as handle:
        assert handle.units_left == 99
    # an app that pinned only the key of its day does not: why the next key is staged first
    with pytest.raises(E.LicenseInvalid):
        app(machine, clock, first_pem).access(FIRM, 8, units=1)

    # the end user forges a license with a key of their own, on a machine of their own ...
    own = hazmat.Ed25519PrivateKey.generate()
    forged = tmp_path / "forged"
    install(forged, Firm(code=FIRM, key=own), clock, product=7, options=Options(units=10**9))
    # ... and replaces the key file the vendor used to ship next to the app
    shipped = tmp_path / "app" / ".licentia" / f"firm-{FIRM}.pem"
    shipped.parent.mkdir(parents=True)
    shipped.write_text(site.pem())
    shipped.write_text(pem_of(own))

    # pinned from that file, as apps used to be: the self-signed license is accepted
    with app(forged, clock, shipped).access(FIRM, 7, units=1000) as handle:
        assert handle.units_left == 10**9 - 1000
    # pinned in code: refused, and the swapped file changes nothing, because nothing reads it
    rt = app(forged, clock, keys_in_code)
    with pytest.raises(E.LicenseInvalid):
        rt.access(FIRM, 7, units=1000)
    shipped.unlink()
    with pytest.raises(E.LicenseInvalid):
        app(forged, clock, keys_in_code).access(FIRM, 7, units=1)
    assert set(rt.trusted(FIRM)) == {old, staged}  # only the firm's keys, as printed by Central
    assert kid(own) not in rt.trusted(FIRM)
