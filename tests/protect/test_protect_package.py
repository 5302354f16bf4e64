"""A protected package runs with a license and only with one; tampering and swaps fail by file."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from licentia.core import exchange
from licentia.core.encoding import b64e
from licentia.core.license import Options
from licentia.protect import fileformat as F
from tests.factory import DAY, T0
from tests.protect.helpers import EXPECTED_RUN, PRODUCT, Machine, protect_sample

REPORT = """
import licentia
try:
    import {module}
    print("IMPORTED")
except ImportError as e:
    print("ERROR", type(e).__name__, isinstance(e, licentia.ProtectedImportError),
          type(getattr(e, "license_error", None)).__name__)
    print(e)
"""


def report(machine: Machine, out: Path, module: str = "sampleapp") -> list[str]:
    r = machine.code(out, REPORT.format(module=module))
    assert r.returncode == 0, r.stderr
    return r.stdout.strip().splitlines()


def copy_build(out: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "copy"
    shutil.copytree(out, dst)
    return dst


def test_runs_with_a_license(firm, built, machine):
    out = built()
    machine.activate(firm)
    r = machine.run(out, "-m", "sampleapp")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == EXPECTED_RUN
    # the console script's entry point, attribute access across subpackages, loader details
    r = machine.code(
        out,
        (
            "import sys, sampleapp, sampleapp.sub.deep as d\n"
            "from sampleapp.cli import main\n"
            "main([])\n"
            "print(sampleapp.fib(10), sampleapp.sub.fib_again(10), sampleapp.__doc__.split(':')[0])\n"
            "import os\n"
            "print(d.__file__.endswith('deep.lpy'), d.__spec__.cached,"
            " sampleapp.sub.__path__ == [os.path.dirname(d.__file__)])\n"
        ),
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [*EXPECTED_RUN, "55 55 sampleapp", "True None True"]


def test_protected_files_hold_no_clear_code(built):
    out = built()
    names = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert names == [
        "sampleapp/__init__.lpy",
        "sampleapp/__init__.py",
        "sampleapp/__main__.lpy",
        "sampleapp/cli.lpy",
        "sampleapp/core.lpy",
        "sampleapp/data/greeting.txt",
        "sampleapp/sub/__init__.lpy",
        "sampleapp/sub/deep.lpy",
        "sampleapp/sub/helper.lpy",
        "sampleapp/sub/settings.json",
    ]
    for p in out.rglob("*.lpy"):
        blob = p.read_bytes()
        assert blob.startswith(F.MODULE_MAGIC)
        assert b"sampleapp-secret-marker" not in blob and b"fib" not in blob.split(b"}", 1)[1]
    boot = (out / "sampleapp" / "__init__.py").read_text()
    assert "BEGIN PUBLIC KEY" in boot and "ip_key" not in boot and len(boot) < 2000


def test_fails_without_a_license(built, machine):
    out = built()
    lines = report(machine, out)
    assert lines[0] == "ERROR ProtectedImportError True LicenseNotFound"
    assert "sampleapp needs a license (firm 10101, product 1)" in lines[1]
    assert "licentia activate" in lines[1]
    # python -m: one clean line, no traceback
    r = machine.run(out, "-m", "sampleapp")
    assert r.returncode != 0 and r.stdout == ""
    assert "Traceback" not in r.stderr and "needs a license" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_license_of_another_product_or_expired_does_not_open(firm, built, machine):
    out = built()
    machine.activate(firm, product=PRODUCT + 1)
    assert report(machine, out)[0] == "ERROR ProtectedImportError True LicenseNotFound"
    machine.activate(firm, options=Options(expires=T0 + DAY))
    assert report(machine, out) == ["IMPORTED"]
    machine.set_time(T0 + 2 * DAY)
    lines = report(machine, out)
    assert lines[0] == "ERROR ProtectedImportError True LicenseExpired"


def test_a_feature_build_needs_the_feature(firm, tmp_path, machine):
    out = protect_sample(firm, tmp_path / "out", feature=0b100)
    machine.activate(firm, feature_map=0b011)
    lines = report(machine, out)
    assert lines[0] == "ERROR ProtectedImportError True FeatureNotLicensed"
    assert "sampleapp needs a license (firm 10101, product 1, feature 4)" in lines[1]
    machine.activate(firm, feature_map=0b110)
    assert report(machine, out) == ["IMPORTED"]


def test_key_version_1_license_does_not_open_a_version_2_build(firm, built, machine):
    v1, v2 = built(version=1), built(version=2)
    machine.activate(firm, versions=(1,))
    assert report(machine, v1) == ["IMPORTED"]
    lines = report(machine, v2)
    assert lines[0] == "ERROR ProtectedImportError True LicenseNotFound"
    assert "does not carry product key version 2, which this release needs" in lines[1]
    # a license that carries both versions opens both builds
    machine.activate(firm, versions=(1, 2))
    assert report(machine, v1) == ["IMPORTED"]
    assert report(machine, v2) == ["IMPORTED"]


def test_ip_mode_runs_without_a_license(built, machine):
    out = built(mode="ip")
    r = machine.run(out, "-m", "sampleapp")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == EXPECTED_RUN
    boot = (out / "sampleapp" / "__init__.py").read_text()
    assert "'ip_key'" in boot and "casual reading" in boot
    assert not machine.home.exists()  # no license looked up, nothing written


@pytest.mark.parametrize("where", ["header", "nonce", "ciphertext", "tag"])
def test_one_changed_byte_fails_that_import_naming_the_file(firm, built, machine, tmp_path, where):
    out = copy_build(built(), tmp_path)
    machine.activate(firm)
    target = out / "sampleapp" / "sub" / "helper.lpy"
    blob = bytearray(target.read_bytes())
    _, _, start = F.split_header(F.MODULE_MAGIC, bytes(blob))
    offset = {"header": 30, "nonce": start + 3, "ciphertext": start + 40, "tag": len(blob) - 1}[where]
    blob[offset] ^= 0x01
    target.write_bytes(bytes(blob))
    assert report(machine, out, "sampleapp.core") == ["IMPORTED"]  # other modules still import
    lines = report(machine, out, "sampleapp.sub")
    assert lines[0] == "ERROR ProtectedImportError True NoneType"
    assert str(target) in lines[1]
    assert "damaged or was altered" in lines[1] and "reinstall sampleapp" in lines[1]


def test_swapped_or_foreign_modules_fail(firm, built, machine, tmp_path):
    out = copy_build(built(), tmp_path)
    machine.activate(firm, versions=(1, 2))
    pkg = out / "sampleapp"
    shutil.copy(pkg / "sub" / "helper.lpy", pkg / "core.lpy")  # same key, same header, other module name
    lines = report(machine, out, "sampleapp")
    assert lines[0] == "ERROR ProtectedImportError True NoneType"
    assert f"{pkg / 'core.lpy'}: this protected module is damaged or was altered" in lines[1]
    assert "does not authenticate as sampleapp.core" in lines[1]
    shutil.copy(built(version=2) / "sampleapp" / "core.lpy", pkg / "core.lpy")  # another build's file
    lines = report(machine, out, "sampleapp")
    assert "does not belong to this build of sampleapp (key_version 2, expected 1)" in lines[1]


def test_an_edited_bootstrap_does_not_open_the_code(firm, built, machine, tmp_path):
    out = copy_build(built(), tmp_path)
    machine.activate(firm)
    boot = out / "sampleapp" / "__init__.py"
    boot.write_text(boot.read_text().replace("'grace': 0", "'grace': 999999999"))
    lines = report(machine, out)
    assert lines[0] == "ERROR ProtectedImportError True NoneType"
    assert "__init__.lpy: this protected module does not belong to this build" in lines[1]
    assert "(grace 0, expected 999999999)" in lines[1]


def test_another_python_version_is_named(firm, tmp_path, machine):
    out = protect_sample(firm, tmp_path / "out", _python=("3.10", "cpython-310"))
    machine.activate(firm)
    lines = report(machine, out)
    assert lines[0] == "ERROR ProtectedImportError True NoneType"
    assert "sampleapp was protected for Python 3.10 (cpython-310); this is Python 3." in lines[1]
    assert "run it with Python 3.10" in lines[1]


def test_tracebacks_show_module_function_and_line(firm, built, machine):
    out = built()
    machine.activate(firm)
    r = machine.run(out, "-m", "sampleapp", "crash")
    assert r.returncode == 1
    err = r.stderr
    assert 'File "sampleapp/cli.py", line 12, in main' in err
    assert 'File "sampleapp/core.py", line 16, in crash' in err
    assert 'File "sampleapp/core.py", line 17, in crash' in err
    assert err.strip().endswith("ValueError: sampleapp crashed on purpose")
    # traceback.format_exc and linecache inside the process do not crash either
    r = machine.code(
        out,
        (
            "import traceback, linecache, sampleapp.core as c\n"
            "try:\n    c.crash()\nexcept ValueError:\n    text = traceback.format_exc()\n"
            "print('sampleapp/core.py' in text, repr(linecache.getline('sampleapp/core.py', 17, c.__dict__)))\n"
        ),
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "True ''"


def test_no_pyc_is_written_and_no_key_in_clear(firm, built, machine, tmp_path):
    out = copy_build(built(grace=3 * DAY), tmp_path)
    machine.activate(firm)
    env = machine.env(out)
    env.pop("PYTHONPYCACHEPREFIX", None)
    # bytecode writing on (this machine sets PYTHONDONTWRITEBYTECODE) once licentia itself is
    # imported, so that the checkout's own modules get no .pyc files from this test
    r = machine.code(
        out,
        (
            "import runpy, sys, datetime, licentia, licentia.protect.runtime, licentia.protect._keys\n"
            "import licentia.protect.grace\n"
            "sys.dont_write_bytecode = False\n"
            "runpy.run_module('sampleapp', run_name='__main__', alter_sys=True)\n"
        ),
        env=env,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == EXPECTED_RUN
    cached = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.pyc"))
    assert cached == [f"sampleapp/__pycache__/__init__.{os.sys.implementation.cache_tag}.pyc"]  # the clear bootstrap
    assert (machine.home / "grace").is_dir()  # the grace record was written (sealed)
    key = exchange.derive_product_key(firm.secret, firm.code, PRODUCT, 1)
    for root in (machine.home, out):
        for p in root.rglob("*"):
            if p.is_file():
                data = p.read_bytes()
                assert key not in data and b64e(key).encode() not in data and key.hex().encode() not in data, p


def test_a_protected_script(firm, tmp_path, machine):
    script = tmp_path / "tool.py"
    script.write_text(
        "#!/usr/bin/env python3\n"
        '"""A single-file tool."""\n'
        "import sys\n\n"
        "def main():\n    print('tool', __name__, sys.argv[1:])\n\n"
        "if __name__ == '__main__':\n    main()\n"
    )
    out = protect_sample(firm, tmp_path / "out", src=script)
    assert sorted(p.name for p in out.iterdir()) == ["tool.lpy", "tool.py"]
    assert (out / "tool.py").read_text().startswith("#!/usr/bin/env python3\n")
    r = machine.run(out, str(out / "tool.py"), "a", "b")
    assert r.returncode != 0 and "tool needs a license" in r.stderr
    machine.activate(firm)
    r = machine.run(out, str(out / "tool.py"), "a", "b")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "tool __main__ ['a', 'b']"
