"""`licentia protect --central` (and a key file from `licentia vendor product-key export`): the
product key from a real License Central, opened by a license that the same Central issued."""

from __future__ import annotations

import secrets
import subprocess
import sys
import time

import pytest

from tests.conftest import central_process, child_env
from tests.protect.helpers import EXPECTED_RUN, SAMPLE, Machine
from tests.protect.test_protect_cli import app

FIRM = 4343


@pytest.fixture(scope="module")
def central(tmp_path_factory):
    data = tmp_path_factory.mktemp("central")
    admin = secrets.token_urlsafe(24)
    with central_process(data, admin) as url:

        def vendor(*args: str, key: str = admin) -> str:
            env = child_env({"LICENTIA_CENTRAL_URL": url, "LICENTIA_API_KEY": key})
            out = subprocess.run([sys.executable, "-m", "licentia", "vendor", *args], env=env, capture_output=True,
                                 text=True, timeout=60)
            assert out.returncode == 0, f"{args}: {out.stdout}{out.stderr}"
            return out.stdout

        vendor("firm", "create", "--code", str(FIRM), "--name", "Protect Software")
        vkey = vendor("apikey", "create", "--firm-code", str(FIRM)).strip().split()[-1]
        vendor("item", "create", "--item-id", "E-00001-1", "--name", "Protected", "--product-code", "1", key=vkey)
        vendor("customer", "create", "--number", "C-1", "--name", "Ada", key=vkey)
        ticket = vendor("ticket", "create", "--customer", "C-1", "--item", "E-00001-1", key=vkey).strip()
        yield {"url": url, "vkey": vkey, "ticket": ticket, "vendor": vendor}


@pytest.mark.slow
def test_protect_with_central_then_run_with_a_central_license(central, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    out = tmp_path / "dist"
    monkeypatch.setenv("LICENTIA_API_KEY", central["vkey"])
    result = CliRunner().invoke(app, ["protect", str(SAMPLE), "-o", str(out), "--firm-code", str(FIRM),
                                      "--product-code", "1", "--central", central["url"]])
    assert result.exit_code == 0, result.output
    boot = (out / "sampleapp" / "__init__.py").read_text()
    assert "BEGIN PUBLIC KEY" in boot

    m = Machine(tmp_path / "m", now=int(time.time()))
    r = m.run(out, "-m", "sampleapp")
    assert r.returncode != 0 and "needs a license" in r.stderr
    act = subprocess.run([sys.executable, "-m", "licentia", "activate", central["ticket"], "--central",
                          central["url"]], env=m.env(), capture_output=True, text=True, timeout=60)
    assert act.returncode == 0, act.stderr
    r = m.run(out, "-m", "sampleapp")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == EXPECTED_RUN

    # the same key as a key file exported from Central, with the firm key it publishes
    keyfile_path, pem = tmp_path / "product.key", tmp_path / "firm.pem"
    central["vendor"]("product-key", "export", "--firm-code", str(FIRM), "--product-code", "1", "-o",
                      str(keyfile_path), key=central["vkey"])
    central["vendor"]("firm", "public-key", str(FIRM), "-o", str(pem), key=central["vkey"])
    result = CliRunner().invoke(app, ["protect", str(SAMPLE), "-o", str(tmp_path / "from-file"), "--firm-code",
                                      str(FIRM), "--product-code", "1", "--product-key-file", str(keyfile_path),
                                      "--firm-key", str(pem)])
    assert result.exit_code == 0, result.output
    r = m.run(tmp_path / "from-file", "-m", "sampleapp")
    assert r.returncode == 0 and r.stdout.splitlines() == EXPECTED_RUN, r.stderr

    # without a valid vendor key there is no product key
    monkeypatch.setenv("LICENTIA_API_KEY", "not-a-key")
    result = CliRunner().invoke(app, ["protect", str(SAMPLE), "-o", str(tmp_path / "x"), "--firm-code", str(FIRM),
                                      "--product-code", "1", "--central", central["url"]])
    assert result.exit_code != 0 and "License Central refused" in " ".join(result.output.split())
