"""A protected package stays installable: a wheel tagged for this CPython, pip-installed into a
fresh venv (offline), runs with a license, console script included."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from tests.conftest import SRC, require_system
from tests.protect.helpers import EXPECTED_RUN, FAKES_DIR, Machine, protect_sample

SETUP_PY = """\
from setuptools import setup

setup(
    name="sampleapp",
    version="1.0",
    packages=["sampleapp"],
    # the protected modules (*.lpy) and the package's own data are package data
    package_data={"sampleapp": ["*.lpy", "**/*.lpy", "sub/*.json", "data/*.txt"]},
    entry_points={"console_scripts": ["sampleapp-cli = sampleapp.cli:main"]},
    install_requires=["licentia"],
)
"""

TAG = f"cp{sys.version_info[0]}{sys.version_info[1]}"
SETUP_CFG = f"[bdist_wheel]\npython_tag = {TAG}\n"


def run(*args: str | Path, **kw) -> subprocess.CompletedProcess:
    r = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=300, **kw)
    assert r.returncode == 0, f"{args}:\n{r.stdout}\n{r.stderr}"
    return r


def _can_build_wheels() -> bool:
    import importlib.util

    for name in ("setuptools.command.bdist_wheel", "wheel.bdist_wheel"):
        try:
            if importlib.util.find_spec(name) is not None:
                return True
        except ImportError:
            continue
    return False


@pytest.mark.slow
def test_wheel_installs_into_a_fresh_venv_and_runs(firm, tmp_path, machine: Machine):
    require_system("setuptools with bdist_wheel (setuptools>=70.1, or the wheel package)", _can_build_wheels())
    project = tmp_path / "project"
    protect_sample(firm, project)
    (project / "setup.py").write_text(SETUP_PY)
    (project / "setup.cfg").write_text(SETUP_CFG)
    dist = tmp_path / "dist"
    run(
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "--no-deps",
        "--no-build-isolation",
        "--no-index",
        "-q",
        "-w",
        dist,
        project,
        cwd=tmp_path,
    )
    (wheel,) = dist.glob("*.whl")
    assert wheel.name == f"sampleapp-1.0-{TAG}-none-any.whl"  # one CPython minor version, never py3-none-any
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
    assert {
        "sampleapp/__init__.py",
        "sampleapp/__init__.lpy",
        "sampleapp/cli.lpy",
        "sampleapp/sub/deep.lpy",
        "sampleapp/sub/settings.json",
        "sampleapp/data/greeting.txt",
    } <= names
    assert [n for n in names if n.endswith(".py")] == ["sampleapp/__init__.py"]  # only the clear bootstrap

    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", "--without-pip", venv)
    py = venv / "bin" / "python"
    run(sys.executable, "-m", "pip", "--python", py, "install", "--no-index", "--no-deps", "-q", wheel)
    # licentia itself (and its dependencies) come from this checkout and the test venv
    site = Path(run(py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])").stdout.strip())
    (site / "licentia-dev.pth").write_text(f"{SRC}\n{sysconfig.get_paths()['purelib']}\n")

    machine.activate(firm)
    env = machine.env()
    env["PYTHONPATH"] = str(FAKES_DIR)  # only the injected clock/traits; the package comes from the venv
    script = venv / "bin" / "sampleapp-cli"
    r = subprocess.run([str(script)], env=env, capture_output=True, text=True, cwd=machine.root, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == EXPECTED_RUN
    r = subprocess.run(
        [str(py), "-c", "import sampleapp; print(sampleapp.__file__)"],
        env=env,
        capture_output=True,
        text=True,
        cwd=machine.root,
        timeout=120,
    )
    assert r.stdout.strip().startswith(str(site)), r.stderr
    r = subprocess.run(
        [str(py), "-m", "sampleapp"], env=env, capture_output=True, text=True, cwd=machine.root, timeout=120
    )
    assert r.stdout.splitlines() == EXPECTED_RUN, r.stderr

    # and without a license, the console script fails with the one clean message
    bare = Machine(tmp_path / "bare")
    env = bare.env()
    env["PYTHONPATH"] = str(FAKES_DIR)
    r = subprocess.run([str(script)], env=env, capture_output=True, text=True, cwd=bare.root, timeout=120)
    assert r.returncode != 0
    assert (
        r.stderr.strip()
        .splitlines()[-1]
        .startswith("licentia.core.errors.ProtectedImportError: sampleapp needs a license (firm 10101, product 1)")
    )
    assert os.path.exists(script)
