"""What `make test` does to the machine: only the system packages the suite uses, without
their recommended extras (a browser's recommends pull in printing and file-sharing services)."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from tests.conftest import ROOT


def test_system_packages_are_installed_without_recommends():
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    plan = subprocess.run(["make", "-n", "system-deps"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert "apt-get install" in plan and "--no-install-recommends" in plan
    packages = {"postgresql-15", "python3", "chromium", "nodejs"}
    assert all(name in plan for name in packages)
    assert "upgrade" not in plan.replace("--no-upgrade", "")  # never an upgrade of the machine
