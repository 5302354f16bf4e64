"""docs/errors.md lists every exception licentia raises, and nothing that is gone: the
classes are found in the source (every module, by its syntax tree) and by walking
``LicentiaError``; codes, next steps and HTTP statuses are checked against the code."""

from __future__ import annotations

import ast
import builtins
import re
from pathlib import Path

import pytest

from licentia.core import errors as E

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src" / "licentia"
DOC = (ROOT / "docs" / "errors.md").read_text()


def _builtin_exception(name: str) -> bool:
    value = getattr(builtins, name, None)
    return isinstance(value, type) and issubclass(value, BaseException)


def exceptions_in_source() -> dict[str, str]:
    """Every public exception (or warning) class defined under src/licentia: name -> module path."""
    defined: dict[str, tuple[list[str], str]] = {}
    for path in SRC.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ClassDef):
                bases = [b.attr if isinstance(b, ast.Attribute) else getattr(b, "id", "") for b in node.bases]
                defined[node.name] = (bases, str(path.relative_to(SRC)))
    found: dict[str, str] = {}
    changed = True
    while changed:
        changed = False
        for name, (bases, where) in defined.items():
            if name not in found and any(_builtin_exception(b) or b in found for b in bases):
                found[name] = where
                changed = True
    return {name: where for name, where in found.items() if not name.startswith("_")}


def subclasses(root: type) -> set[type]:
    found, todo = set(), [root]
    while todo:
        cls = todo.pop()
        found.add(cls)
        todo += cls.__subclasses__()
    return found


def test_the_source_scan_sees_the_tree():
    scanned = exceptions_in_source()
    walked = {cls.__name__ for cls in subclasses(E.LicentiaError) if cls.__module__.startswith("licentia.")}
    assert walked <= set(scanned), walked - set(scanned)
    assert {"JsonRejected", "GraceWarning"} <= set(scanned)  # the two outside licentia.core.errors


@pytest.mark.parametrize("name", sorted(exceptions_in_source()))
def test_every_exception_is_in_docs_errors_md(name):
    assert f"`{name}`" in DOC, f"{name} ({exceptions_in_source()[name]}) is not in docs/errors.md"


def test_nothing_listed_is_gone():
    known = set(exceptions_in_source())
    listed = set(re.findall(r"`([A-Z][A-Za-z]+)`", DOC))
    gone = sorted(n for n in listed if n not in known and not _builtin_exception(n))
    assert not gone, f"docs/errors.md lists classes that no longer exist: {gone}"


def test_all_errors_holds_every_license_error():
    assert set(E.ALL_ERRORS) == subclasses(E.LicenseError)


def _rows(heading: str) -> dict[str, list[str]]:
    """The table under ``## heading``: class name -> its cells."""
    section = DOC.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        names = [re.fullmatch(r"`([A-Z][A-Za-z]+)`", c) for c in cells]
        found = next((m.group(1) for m in names if m), None)
        if line.startswith("|") and found:
            rows[found] = cells
    return rows


@pytest.mark.parametrize("cls", E.ALL_ERRORS, ids=lambda c: c.__name__)
def test_license_failures_table_matches_the_code(cls):
    row = _rows("License failures")[cls.__name__]
    assert row[0] == str(cls.code)
    assert row[-1] == cls.next_step, "the last column is the class's next_step"


def test_central_statuses_match_the_api():
    pytest.importorskip("fastapi")
    from licentia.central.api import errors as api

    rows = _rows("Central's service errors")
    for cls in subclasses(E.ServiceError):
        status = next((api.STATUS[c] for c in cls.__mro__ if c in api.STATUS), 500)
        assert rows[cls.__name__][1] == str(status), cls.__name__


def test_license_server_statuses_match_the_server():
    pytest.importorskip("starlette")
    from licentia.seats import protocol as server

    rows = _rows("License server refusals")
    for cls in subclasses(E.SeatError) - {E.Refusal}:
        status = next((server.STATUS[c] for c in cls.__mro__ if c in server.STATUS), 500)
        assert rows[cls.__name__][1].split()[0] == str(status), cls.__name__
    refusal = rows["Refusal"][1]
    for cls in E.ALL_ERRORS:
        status = server.status_of(E.Refusal(cls, "refused"))
        assert f"{status} for `{cls.__name__}`" in refusal or (status == 403 and "403 for the others" in refusal)
