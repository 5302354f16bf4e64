"""The wheel and the sdist are reproducible: built twice from one source tree with one
SOURCE_DATE_EPOCH, in two places, they are the same bytes. And the wheel ships what an
install needs beyond the modules: py.typed, the migrations' files, the `licentia` command.

Each build runs `python -m build --no-isolation` (the sdist, then the wheel from that sdist)
with the backend from the project's environment, so it needs no network."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from pathlib import Path

import pytest

from tests.conftest import ROOT, require_system

pytestmark = pytest.mark.slow

#: the commit time does not matter, only that both builds use the same one
EPOCH = "1700000000"

#: what the sdist takes from the project (pyproject.toml's [tool.hatch.build.targets.sdist]),
#: with .gitignore, which the backend reads
TAKEN = (
    "src",
    "tests",
    "docs",
    "bench",
    "sdk",
    "deploy",
    ".ci",
    "Makefile",
    "setup.cfg",
    ".importlinter",
    ".pre-commit-config.yaml",
    ".dockerignore",
    "README.md",
    "CHANGELOG.md",
    "SECURITY.md",
    "LICENSE",
    "requirements.lock",
    "pyproject.toml",
    ".gitignore",
)
CACHES = shutil.ignore_patterns("__pycache__", ".*_cache", ".hypothesis", "*.egg-info", "*.pyc")


def _snapshot(dest: Path) -> Path:
    """A copy of the source tree, so that both builds read the same files."""
    dest.mkdir()
    for name in TAKEN:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, dest / name, ignore=CACHES)
        elif source.exists():
            shutil.copy2(source, dest / name)
    return dest


def _build(source: Path, out: Path) -> dict[str, bytes]:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(out.parent), "SOURCE_DATE_EPOCH": EPOCH, "PYTHONDONTWRITEBYTECODE": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(source)],
        cwd=source,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return {path.name: path.read_bytes() for path in sorted(out.iterdir())}


def test_wheel_and_sdist_are_byte_identical(tmp_path: Path) -> None:
    require_system(
        "build and hatchling (the test extra)", all(importlib.util.find_spec(name) for name in ("build", "hatchling"))
    )
    source = _snapshot(tmp_path / "source")
    moved = shutil.copytree(source, tmp_path / "elsewhere" / "source")  # another path: none may leak in
    first = _build(source, tmp_path / "first")
    second = _build(moved, tmp_path / "second")

    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    wheel, sdist = f"licentia-{version}-py3-none-any.whl", f"licentia-{version}.tar.gz"
    assert sorted(first) == sorted(second) == sorted([sdist, wheel])
    for name in first:
        assert first[name] == second[name], f"{name} differs between two builds of one tree"

    with zipfile.ZipFile(tmp_path / "first" / wheel) as archive:
        names = set(archive.namelist())
        entry_points = archive.read(f"licentia-{version}.dist-info/entry_points.txt").decode()
        metadata = archive.read(f"licentia-{version}.dist-info/METADATA").decode()
    assert "licentia/py.typed" in names
    assert {
        "licentia/central/migrations/alembic.ini",
        "licentia/central/migrations/script.py.mako",
        "licentia/central/migrations/env.py",
    } <= names
    assert not any("__pycache__" in name or name.endswith(".pyc") for name in names)
    assert "[console_scripts]\nlicentia = licentia.cli.main:main" in entry_points
    assert f"\nVersion: {version}\n" in metadata and "\nLicense-Expression: MIT\n" in metadata

    # the sdist carries what `make test` reads: a user can run the suite from it
    with tarfile.open(tmp_path / "first" / sdist) as archive:
        members = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    assert {
        "Makefile",
        "setup.cfg",
        ".importlinter",
        ".ci/run",
        "deploy/Dockerfile",
        "sdk/js/package.json",
        "bench/run.py",
        "tests/conftest.py",
        "requirements.lock",
    } <= members
    assert not any("__pycache__" in name or "node_modules" in name for name in members)
