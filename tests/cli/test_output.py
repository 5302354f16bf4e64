"""What the CLI writes: to a pipe or a file, whole lines that scripts can read (no wrapping,
no cut values, no colours); to a terminal, laid out for its width. And ``handle.expires_at``,
the expiry an application prints."""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
import pty
import select
import struct
import subprocess
import sys
import termios
from pathlib import Path

import pytest

from licentia.core.license import Options
from tests.conftest import ROOT, child_env
from tests.factory import DAY, T0, machine_traits
from tests.runtime.helpers import install, runtime

FAKES_DIR = ROOT / "tests" / "_fakes"
LONG = 150
ESC = "\x1b["

#: a table of 150-character values and a long line of words, through the CLI's console
TABLE = f"""
from rich import box
from rich.table import Table
from licentia.cli._common import console, err_console
table = Table(title="container 130-AAAA-BBBB-CCCC (medium)", title_justify="left", box=box.SIMPLE_HEAD)
for col in ("firm:prod", "ticket", "expires"):
    table.add_column(col, no_wrap=True)
table.add_column("status")
table.add_row("20001:7", "T" * {LONG}, "2026-11-30", "expired " + "x" * {LONG})
console.print(table)
console.print("[bold]Request written[/] to " + "p" * {LONG} + " so carry it to a machine with network and submit it")
err_console.print("[bold red]error:[/] " + "e" * {LONG} + " and more words after it")
"""


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """A child's environment on a fake machine (tests/_fakes), with no width or colour set from outside."""
    fakes = tmp_path / "fakes.json"
    (tmp_path / "time").write_text(str(T0))
    fakes.write_text(json.dumps({"time_file": str(tmp_path / "time"), "traits": machine_traits()}))
    env = child_env({"LICENTIA_HOME": str(tmp_path / "home"), "LICENTIA_TEST_FAKES": str(fakes), **extra})
    env["PYTHONPATH"] = f"{FAKES_DIR}{os.pathsep}{env['PYTHONPATH']}"
    for name in ("COLUMNS", "LINES", "NO_COLOR", "FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE"):
        env.pop(name, None)
    env["TERM"] = "xterm-256color"
    return env


def _piped(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL
    )


def _in_terminal(args: list[str], env: dict[str, str], cwd: Path, columns: int) -> str:
    """Run with stdin, stdout and stderr on a pseudo-terminal ``columns`` wide; what it printed."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    proc = subprocess.Popen([sys.executable, *args], env=env, cwd=cwd, stdin=slave, stdout=slave, stderr=slave)
    os.close(slave)
    out = b""
    try:
        while True:
            ready, _, _ = select.select([master], [], [], 60)
            if not ready:
                break
            try:
                chunk = os.read(master, 65536)
            except OSError:  # the child closed the terminal (EIO on Linux)
                break
            if not chunk:
                break
            out += chunk
    finally:
        os.close(master)
        proc.wait(timeout=60)
    return out.decode().replace("\r\n", "\n")


def _visible(line: str) -> str:
    import re

    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", line)


# ---------------------------------------------------------------- a pipe


def test_piped_output_is_never_wrapped_cut_or_coloured(tmp_path):
    out = _piped(["-c", TABLE], _env(tmp_path), tmp_path)
    assert out.returncode == 0, out.stderr
    assert ESC not in out.stdout and ESC not in out.stderr
    assert "…" not in out.stdout
    lines = out.stdout.splitlines()
    row = next(line for line in lines if "20001:7" in line)
    assert "T" * LONG in row and "expired " + "x" * LONG in row  # whole values, on the row's one line
    assert any(line.startswith("Request written to " + "p" * LONG + " so carry it") for line in lines)
    assert out.stderr == "error: " + "e" * LONG + " and more words after it\n"


def test_piped_cli_messages_stay_on_one_line(tmp_path):
    env = _env(tmp_path)
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    request = deep / "request.json"
    out = _piped(
        ["-m", "licentia", "activate", "00000-00000-00000-00000-00000", "--offline", "-o", str(request)], env, tmp_path
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("\n") == 1 and out.stdout.startswith(f"Request written to {request}. Carry it")
    assert ESC not in out.stdout
    listed = _piped(["-m", "licentia", "list"], env, tmp_path)
    assert listed.returncode == 0 and ESC not in listed.stdout
    assert listed.stdout.strip().endswith(": no licenses")
    missing = _piped(["-m", "licentia", "apply", str(deep / "nope.json")], env, tmp_path)
    assert missing.returncode == 1
    assert missing.stderr.count("\n") == 1 and str(deep / "nope.json") in missing.stderr


# ---------------------------------------------------------------- a terminal


def test_terminal_output_is_laid_out_for_the_terminal(tmp_path):
    out = _in_terminal(["-c", TABLE], _env(tmp_path), tmp_path, columns=60)
    assert ESC in out  # styles and colours on a terminal
    lines = [_visible(line) for line in out.splitlines()]
    assert lines and max(len(line) for line in lines) <= 60
    assert "T" * LONG not in "".join(lines)  # the table fits the width: the long value is cut
    assert "e" * LONG in "".join(lines)  # an error line wraps (soft), it is not cut


def test_terminal_cli_wraps_at_its_width(tmp_path):
    env = _env(tmp_path)
    text = _visible(_in_terminal(["-m", "licentia", "list"], env, tmp_path, columns=40))
    assert max(len(line) for line in text.splitlines()) <= 40
    assert "No containers yet" in text and len(text.strip().splitlines()) > 1
    piped = _piped(["-m", "licentia", "list"], env, tmp_path)
    assert piped.stdout.count("\n") == 1 and "No containers yet" in piped.stdout


# ---------------------------------------------------------------- handle.expires_at


@pytest.fixture
def firm():
    from tests.factory import Firm

    return Firm()


def test_expires_at_is_an_aware_utc_datetime(tmp_path, clock, firm):
    install(tmp_path, firm, clock, options=Options(expires=T0 + 30 * DAY))
    handle = runtime(tmp_path, clock).access(firm.code, 1, firm_key=firm.pem)
    assert handle.expires == T0 + 30 * DAY  # Unix seconds, as before
    assert handle.expires_at == dt.datetime.fromtimestamp(T0 + 30 * DAY, dt.UTC)
    assert handle.expires_at.tzinfo is dt.UTC
    assert handle.expires_at.isoformat() == "2027-02-14T08:00:00+00:00"


def test_expires_at_is_none_for_a_license_that_does_not_end(tmp_path, clock, firm):
    install(tmp_path, firm, clock)
    handle = runtime(tmp_path, clock).access(firm.code, 1, firm_key=firm.pem)
    assert handle.expires is None and handle.expires_at is None
    with pytest.raises(AttributeError):
        handle.anything_else = 1  # still slotted
