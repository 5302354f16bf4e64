"""The postgres marker is on every test that needs PostgreSQL, so that `-m "not postgres"`
leaves out exactly those (and `-m postgres` runs them alone)."""

from __future__ import annotations

import re
import subprocess
import sys

from tests.conftest import ROOT, child_env

TESTS = ROOT / "tests"


def _files_that_use_postgres() -> list[str]:
    used = re.compile(r"\bpg_(url|cluster)\b")
    skip = {TESTS / "conftest.py", TESTS / "pgcluster.py", TESTS / "test_markers.py"}
    return sorted(
        str(p.relative_to(ROOT))
        for p in TESTS.rglob("*.py")
        if p not in skip and "fuzz" not in p.parts and used.search(p.read_text())
    )


def test_tests_that_need_postgresql_carry_the_postgres_marker():
    files = _files_that_use_postgres()
    assert "tests/central/test_migrations.py" in files  # the scan finds them
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            "-q",
            "--fixtures-per-test",
            "-m",
            "not postgres",
            *files,
        ],
        cwd=ROOT,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "fixtures used by" in out.stdout
    unmarked = [line for line in out.stdout.splitlines() if re.search(r"\bpg_(url|cluster)\b|postgres", line)]
    assert not unmarked, "needs PostgreSQL but has no postgres marker:\n" + "\n".join(unmarked)
