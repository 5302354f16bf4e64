"""`licentia protect` / `licentia protect-data` with product-key files, and the key-file format."""

from __future__ import annotations

import json
import sys

import httpx
import pytest
import typer

from licentia.cli import protect_cmd
from licentia.client import CentralError
from licentia.core import exchange, keyfile
from licentia.core.documents import DocumentInvalid
from licentia.protect import central
from tests.cli.helpers import invoke
from tests.factory import Firm
from tests.protect.helpers import EXPECTED_RUN, FIRM_CODE, PRODUCT, SAMPLE, Machine

app = typer.Typer()
protect_cmd.register(app)


@app.callback()
def _root() -> None:
    """The two commands under test (the real `licentia` app registers them the same way)."""


def cli(*args: str, ok: bool = True) -> str:
    """Run a command; its output with Rich's line wrapping undone."""
    code, out, err = invoke([str(a) for a in args], app=app)
    if ok:
        assert code == 0, out + err
    else:
        assert code != 0, out + err
        assert "Traceback" not in out + err
    return " ".join((out + err).split())


def keyargs(keys_dir, version: int = 1) -> list[str]:
    return [
        "--firm-code",
        str(FIRM_CODE),
        "--product-code",
        str(PRODUCT),
        "--product-key-file",
        str(keys_dir / f"product-{PRODUCT}-v{version}.key"),
        "--firm-key",
        str(keys_dir / "firm.pem"),
    ]


def test_protect_with_a_key_file_then_run(firm, keys_dir, tmp_path, machine: Machine):
    out = tmp_path / "dist"
    r = cli("protect", SAMPLE, "-o", out, *keyargs(keys_dir), "--grace", "3d")
    assert "Protected package written to" in r and "7 module(s) encrypted" in r
    assert f"[bdist_wheel] python_tag = cp{sys.version_info[0]}{sys.version_info[1]}" in r
    boot = (out / "sampleapp" / "__init__.py").read_text()
    assert firm.pem.strip().splitlines()[1] in boot.replace("\\n", "\n") and "'grace': 259200" in boot
    machine.activate(firm)
    res = machine.run(out, "-m", "sampleapp")
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines() == EXPECTED_RUN
    # an existing output is kept unless --force
    r = cli("protect", SAMPLE, "-o", out, *keyargs(keys_dir), ok=False)
    assert "exists" in r
    cli("protect", SAMPLE, "-o", out, *keyargs(keys_dir), "--force")


def test_protect_ip_mode_needs_no_key_and_exclude_keeps_files_clear(tmp_path, machine: Machine):
    out = tmp_path / "dist"
    r = cli(
        "protect",
        SAMPLE,
        "-o",
        out,
        "--firm-code",
        FIRM_CODE,
        "--product-code",
        PRODUCT,
        "--mode",
        "ip",
        "--exclude",
        "sub/helper.py",
    )
    assert "6 module(s) encrypted, 3 data file(s) copied" in r
    assert (out / "sampleapp" / "sub" / "helper.py").read_text() == (SAMPLE / "sub" / "helper.py").read_text()
    res = machine.run(out, "-m", "sampleapp")
    assert res.returncode == 0 and res.stdout.splitlines() == EXPECTED_RUN, res.stderr


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--product-key-file", "K1"], "needs --firm-key PEM"),
        (["--product-key-file", "K1", "--firm-key", "PEM", "--central", "http://x"], "not both"),
        (["--firm-key", "PEM"], "--central URL or --product-key-file"),
        (["--product-key-file", "K1", "--firm-key", "PEM", "--key-version", "2"], "for key version 1, not 2"),
        (["--product-key-file", "K1", "--firm-key", "OTHER"], "signed by unknown key"),
        (["--product-key-file", "K1", "--firm-key", "PEM", "--grace", "soon"], "--grace: not a duration"),
        (["--product-key-file", "K1", "--firm-key", "PEM", "--mode", "x"], "--mode is one of license, ip"),
        (["--mode", "ip", "--grace", "3d"], "--grace applies to license mode only"),
        (["--product-key-file", "K1", "--firm-key", "K1"], "no PEM public key found"),
    ],
)
def test_protect_refuses_bad_input_in_one_line(keys_dir, tmp_path, extra, message):
    other = tmp_path / "other.pem"
    other.write_text(Firm(code=FIRM_CODE).pem)
    subst = {"K1": str(keys_dir / f"product-{PRODUCT}-v1.key"), "PEM": str(keys_dir / "firm.pem"), "OTHER": str(other)}
    args = [subst.get(a, a) for a in extra]
    r = cli(
        "protect", SAMPLE, "-o", tmp_path / "dist", "--firm-code", FIRM_CODE, "--product-code", PRODUCT, *args, ok=False
    )
    assert message in r
    assert r.count("error:") == 1
    assert not (tmp_path / "dist" / "sampleapp").exists()


def test_protect_refuses_a_key_file_for_another_product(firm, tmp_path):
    doc = keyfile.build(FIRM_CODE, 7, 1, exchange.derive_product_key(firm.secret, FIRM_CODE, 7, 1), firm.key)
    (tmp_path / "k").write_bytes(keyfile.dumps(doc))
    (tmp_path / "pem").write_text(firm.pem)
    r = cli(
        "protect",
        SAMPLE,
        "-o",
        tmp_path / "dist",
        "--firm-code",
        FIRM_CODE,
        "--product-code",
        PRODUCT,
        "--product-key-file",
        tmp_path / "k",
        "--firm-key",
        tmp_path / "pem",
        ok=False,
    )
    assert "this product key is for product 7, not 1" in r


def test_protect_data_then_read_in_the_app(firm, keys_dir, tmp_path, machine: Machine):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "model.bin").write_bytes(b"\x00weights" * 1000)
    (tmp_path / "in" / "print").mkdir()
    (tmp_path / "in" / "print" / "page.txt").write_text("print data")
    out = tmp_path / "protected"
    r = cli(
        "protect-data",
        tmp_path / "in" / "model.bin",
        tmp_path / "in" / "print",
        "-o",
        out,
        *keyargs(keys_dir),
        "--chunk-size",
        "1000",
    )
    assert "2 file(s) protected" in r
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == [
        "model.bin",
        "print/page.txt",
    ]
    machine.activate(firm)
    code = (
        "import sys, licentia\n"
        "licentia.trust(10101, sys.argv[1])\n"
        "print(licentia.open_protected(sys.argv[2]).read() == b'\\x00weights' * 1000)\n"
        "print(licentia.open_protected(sys.argv[3]).read().decode())\n"
    )
    res = machine.run(
        tmp_path, "-c", code, str(keys_dir / "firm.pem"), str(out / "model.bin"), str(out / "print" / "page.txt")
    )
    assert res.stdout.splitlines() == ["True", "print data"], res.stderr
    r = cli("protect-data", tmp_path / "missing", "-o", out, *keyargs(keys_dir), ok=False)
    assert "no such file" in r


# ---------------------------------------------------------------- key files


def test_key_file_build_and_verify(firm):
    key = exchange.derive_product_key(firm.secret, FIRM_CODE, PRODUCT, 3)
    doc = keyfile.build(FIRM_CODE, PRODUCT, 3, key, firm.key)
    assert doc["payload"]["type"] == "product-key" and set(doc["payload"]) == {
        "type",
        "v",
        "firm_code",
        "product_code",
        "version",
        "key",
    }
    found = keyfile.verify(
        keyfile.load(keyfile.dumps(doc)),
        keyfile.keys_from_pem(firm.pem),
        firm_code=FIRM_CODE,
        product_code=PRODUCT,
        version=3,
    )
    assert (found.firm_code, found.product_code, found.version, found.key) == (FIRM_CODE, PRODUCT, 3, key)
    assert "key=" not in repr(found)
    with pytest.raises(DocumentInvalid, match="unknown key"):
        keyfile.verify(doc, Firm(code=FIRM_CODE).key.public_key())
    tampered = json.loads(json.dumps(doc))
    tampered["payload"]["version"] = 4
    with pytest.raises(DocumentInvalid, match="bad signature"):
        keyfile.verify(tampered, firm.key.public_key())
    with pytest.raises(DocumentInvalid, match="firm 10101, not 10102"):
        keyfile.verify(doc, firm.key.public_key(), firm_code=10102)
    with pytest.raises(ValueError):
        keyfile.build(FIRM_CODE, PRODUCT, 0, key, firm.key)
    with pytest.raises(ValueError):
        keyfile.build(FIRM_CODE, PRODUCT, 1, key[:16], firm.key)


# ---------------------------------------------------------------- --central (client side)


def central_transport(firm, *, api_key: str = "vendor-key", pem: str | None = None):
    """Central's two endpoints as the protector expects them (the server side is tested with Central)."""
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        path = request.url.path
        if path == f"/api/v1/firms/{FIRM_CODE}/public-key":
            assert request.url.params["format"] == "pem" and "authorization" not in request.headers
            return httpx.Response(200, text=pem or firm.pem, headers={"content-type": "application/x-pem-file"})
        if path.startswith(f"/api/v1/firms/{FIRM_CODE}/products/"):
            if request.headers.get("authorization") != f"Bearer {api_key}":
                return httpx.Response(403, json={"error": {"code": "forbidden", "message": "not your firm"}})
            product, version = int(path.split("/")[-3]), int(path.split("/")[-1])
            key = exchange.derive_product_key(firm.secret, FIRM_CODE, product, version)
            return httpx.Response(200, json=keyfile.build(FIRM_CODE, product, version, key, firm.key))
        return httpx.Response(404, json={"error": {"code": "not_found", "message": "no such route"}})

    return httpx.MockTransport(handler), calls


def test_central_client_fetches_and_verifies(firm):
    transport, calls = central_transport(firm)
    found, pem, doc = central.fetch_product_key(
        "http://central", "vendor-key", FIRM_CODE, PRODUCT, 2, transport=transport
    )
    assert found.key == exchange.derive_product_key(firm.secret, FIRM_CODE, PRODUCT, 2) and pem == firm.pem
    assert calls == [f"/api/v1/firms/{FIRM_CODE}/public-key", f"/api/v1/firms/{FIRM_CODE}/products/1/keys/2"]
    with pytest.raises(CentralError, match=r"refused .* \(HTTP 403\): not your firm"):
        central.fetch_product_key("http://central", "wrong", FIRM_CODE, PRODUCT, 2, transport=transport)
    with pytest.raises(CentralError, match="LICENTIA_API_KEY"):
        central.fetch_product_key("http://central", None, FIRM_CODE, PRODUCT, 2, transport=transport)
    # a pinned --firm-key wins over what Central says, and must have signed the key
    other = Firm(code=FIRM_CODE)
    with pytest.raises(CentralError, match="does not verify"):
        central.fetch_product_key(
            "http://central", "vendor-key", FIRM_CODE, PRODUCT, 2, firm_pem=other.pem, transport=transport
        )
    bad, _ = central_transport(firm, pem=other.pem)
    with pytest.raises(CentralError, match="does not verify"):
        central.fetch_product_key("http://central", "vendor-key", FIRM_CODE, PRODUCT, 2, transport=bad)
