"""`licentia protect --central` (and a key file from `licentia vendor product-key export`): the
product key from a real License Central, opened by a license that the same Central issued."""

from __future__ import annotations

import secrets
import subprocess
import sys
import time

import pytest

from tests.cli.helpers import vendor as vendor_cli
from tests.conftest import central_process
from tests.protect.helpers import EXPECTED_RUN, SAMPLE, Machine
from tests.protect.test_protect_cli import cli

FIRM = 4343


@pytest.fixture(scope="module")
def central(tmp_path_factory):
    data = tmp_path_factory.mktemp("central")
    admin = secrets.token_urlsafe(24)
    with central_process(data, admin) as url:

        def vendor(*args: str, key: str = admin) -> str:
            code, out, err = vendor_cli(list(args), url=url, key=key)
            assert code == 0, f"{args}: {out}{err}"
            return out

        vendor("firm", "create", "--code", str(FIRM), "--name", "Protect Software")
        vkey = vendor("apikey", "create", "--firm-code", str(FIRM)).strip().split()[-1]
        vendor("item", "create", "--item-id", "E-00001-1", "--name", "Protected", "--product-code", "1", key=vkey)
        vendor("customer", "create", "--number", "C-1", "--name", "Ada", key=vkey)
        ticket = vendor("ticket", "create", "--customer", "C-1", "--item", "E-00001-1", key=vkey).strip()
        yield {"url": url, "vkey": vkey, "ticket": ticket, "vendor": vendor}


@pytest.mark.slow
def test_protect_with_central_then_run_with_a_central_license(central, tmp_path, monkeypatch):
    out = tmp_path / "dist"
    monkeypatch.setenv("LICENTIA_API_KEY", central["vkey"])
    cli("protect", SAMPLE, "-o", out, "--firm-code", FIRM, "--product-code", "1", "--central", central["url"])
    boot = (out / "sampleapp" / "__init__.py").read_text()
    assert "BEGIN PUBLIC KEY" in boot

    m = Machine(tmp_path / "m", now=int(time.time()))
    r = m.run(out, "-m", "sampleapp")
    assert r.returncode != 0 and "needs a license" in r.stderr
    act = subprocess.run(
        [sys.executable, "-m", "licentia", "activate", central["ticket"], "--central", central["url"]],
        env=m.env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert act.returncode == 0, act.stderr
    r = m.run(out, "-m", "sampleapp")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == EXPECTED_RUN

    # the same key as a key file exported from Central, with the firm key it publishes
    keyfile_path, pem = tmp_path / "product.key", tmp_path / "firm.pem"
    central["vendor"](
        "product-key",
        "export",
        "--firm-code",
        str(FIRM),
        "--product-code",
        "1",
        "-o",
        str(keyfile_path),
        key=central["vkey"],
    )
    central["vendor"]("firm", "public-key", str(FIRM), "-o", str(pem), key=central["vkey"])
    cli(
        "protect",
        SAMPLE,
        "-o",
        tmp_path / "from-file",
        "--firm-code",
        FIRM,
        "--product-code",
        "1",
        "--product-key-file",
        keyfile_path,
        "--firm-key",
        pem,
    )
    r = m.run(tmp_path / "from-file", "-m", "sampleapp")
    assert r.returncode == 0 and r.stdout.splitlines() == EXPECTED_RUN, r.stderr

    # without a valid vendor key there is no product key
    monkeypatch.setenv("LICENTIA_API_KEY", "not-a-key")
    r = cli(
        "protect",
        SAMPLE,
        "-o",
        tmp_path / "x",
        "--firm-code",
        FIRM,
        "--product-code",
        "1",
        "--central",
        central["url"],
        ok=False,
    )
    assert "License Central refused" in r
