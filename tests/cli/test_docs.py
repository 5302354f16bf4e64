"""Docs that cannot drift: the CLI reference and every environment variable."""

import re
from pathlib import Path

from licentia.cli import docgen

ROOT = Path(__file__).resolve().parents[2]


def test_cli_reference_is_current():
    assert (ROOT / "docs" / "cli.md").read_text() == docgen.render(), "run `make docs-cli`"


def test_every_environment_variable_is_documented():
    used = set()
    for path in (ROOT / "src").rglob("*.py"):
        used |= set(re.findall(r"LICENTIA_[A-Z_]+[A-Z]", path.read_text()))
    used.discard("LICENTIA_TEST_FAKES")  # read only by tests/_fakes/sitecustomize.py
    docs = "".join(p.read_text() for p in (ROOT / "docs").glob("*.md")) + (ROOT / "README.md").read_text()
    missing = sorted(v for v in used if v not in docs)
    assert not missing, f"undocumented: {missing}"
