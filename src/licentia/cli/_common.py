"""Shared CLI plumbing: one-line errors, --debug, Rich console."""

from __future__ import annotations

import sys
from typing import NoReturn

import typer
from rich.console import Console

console = Console()
err_console = Console(stderr=True)

_state = {"debug": False}


def set_debug(value: bool) -> None:
    _state["debug"] = value


def debug() -> bool:
    return _state["debug"]


def fail(message: str, code: int = 1) -> NoReturn:
    """Print one line saying what went wrong and what to do; exit non-zero."""
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def run_guarded(func, *args, **kwargs):  # type: ignore[no-untyped-def]
    """Call func; turn any exception into a one-line error unless --debug."""
    try:
        return func(*args, **kwargs)
    except typer.Exit:
        raise
    except KeyboardInterrupt:
        fail("interrupted", 130)
    except Exception as exc:  # noqa: BLE001 - the CLI boundary
        if debug():
            raise
        fail(str(exc) or exc.__class__.__name__)


def port_free(host: str, port: int) -> bool:
    """Whether a server could bind (host, port) now: checked before starting, so that a
    busy port gets one clear line instead of a traceback from the server."""
    import socket

    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def stdin_is_tty() -> bool:
    return sys.stdin.isatty()
