"""Shared CLI plumbing: one-line errors, --debug, Rich console, option groups."""

from __future__ import annotations

import dataclasses
import functools
import inspect
import sys
import typing
from typing import Any, Callable, NoReturn, TypeVar

import typer
from rich.console import Console

console = Console()
err_console = Console(stderr=True)

_state = {"debug": False}

R = TypeVar("R")


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


def spread(func: Callable[..., R], **groups: type) -> Callable[..., R]:
    """``func`` as a Typer command whose option groups are dataclasses.

    Each parameter of ``func`` named in ``groups`` (by default: each one annotated with
    a dataclass) stands for that dataclass's fields, which Typer sees as options in the
    parameter's place (each field ``Annotated[T, typer.Option(...)]``, with its default);
    ``func`` gets one instance of the dataclass built from them.
    """
    signature = inspect.signature(func, eval_str=True)
    if not groups:
        groups = {
            p.name: p.annotation for p in signature.parameters.values() if dataclasses.is_dataclass(p.annotation)
        }
    params: list[inspect.Parameter] = []
    for param in signature.parameters.values():
        group = groups.get(param.name)
        params += _fields_as_params(group) if group else [param.replace(kind=inspect.Parameter.KEYWORD_ONLY)]

    @functools.wraps(func)
    def command(**kwargs: Any) -> R:
        for name, group in groups.items():
            kwargs[name] = group(**{f.name: kwargs.pop(f.name) for f in dataclasses.fields(group)})
        return func(**kwargs)

    command.__annotations__ = {p.name: p.annotation for p in params}
    setattr(command, "__signature__", signature.replace(parameters=params))
    return command


def _fields_as_params(group: type) -> list[inspect.Parameter]:
    hints = typing.get_type_hints(group, include_extras=True)
    return [
        inspect.Parameter(
            f.name,
            inspect.Parameter.KEYWORD_ONLY,
            annotation=hints[f.name],
            default=inspect.Parameter.empty if f.default is dataclasses.MISSING else f.default,
        )
        for f in dataclasses.fields(group)
    ]
