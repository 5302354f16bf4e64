"""Running the ``licentia`` command in-process, for every test area that drives it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import typer
from typer.testing import CliRunner

from licentia.cli.main import app as licentia_app


class Outcome(NamedTuple):
    """Exit code, stdout and stderr of one command (``code, out, err = ...``)."""

    code: int
    out: str
    err: str


def invoke(args: list[str], *, env: Mapping[str, str | None] | None = None, app: typer.Typer = licentia_app) -> Outcome:
    """Run ``licentia ARGS`` (or ``app``) with ``env`` set (a None value unsets the variable)."""
    result = CliRunner().invoke(app, [str(a) for a in args], env=dict(env or {}))
    return Outcome(result.exit_code, result.stdout, result.stderr)


def vendor(args: list[str], *, url: str, key: str | None) -> Outcome:
    """``licentia vendor ARGS`` against the Central at ``url`` with API key ``key`` (None: no key at all)."""
    return invoke(["vendor", *args], env={"LICENTIA_CENTRAL_URL": url, "LICENTIA_API_KEY": key, "COLUMNS": "200"})
