"""Shared CLI plumbing: one-line errors, --debug, Rich console, option groups."""

from __future__ import annotations

import dataclasses
import functools
import inspect
import sys
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn, ParamSpec, TypeVar

import typer
from rich.console import Console, ConsoleDimensions

#: the width a console lays out for when it does not write to a terminal: wide enough that
#: no line is wrapped and no value cut
UNBOUNDED = 1_000_000


class _Console(Console):
    """A Rich console that lays out for the terminal when it writes to one; when it writes
    to a pipe or a file, lines are never wrapped or cut (any width, soft wrap) and carry no
    colours, so scripts read whole values. Decided at each print, not at import."""

    @property
    def size(self) -> ConsoleDimensions:
        size = Console.size.fget(self)  # type: ignore[attr-defined]  # the base class's property object, not its value
        return size if self.is_terminal else ConsoleDimensions(UNBOUNDED, size.height)

    @size.setter
    def size(self, new_size: tuple[int, int]) -> None:
        Console.size.fset(self, new_size)  # type: ignore[attr-defined]  # as above

    @property
    def soft_wrap(self) -> bool:
        return self._soft_wrap or not self.is_terminal

    @soft_wrap.setter
    def soft_wrap(self, value: bool) -> None:
        self._soft_wrap = value

    @property
    def _color_system(self) -> Any:
        return self._detected_colors if self.is_terminal else None

    @_color_system.setter
    def _color_system(self, value: Any) -> None:
        self._detected_colors = value


console = _Console()
err_console = _Console(stderr=True)

_state = {"debug": False}

R = TypeVar("R")
P = ParamSpec("P")


def set_debug(value: bool) -> None:
    _state["debug"] = value


def debug() -> bool:
    return _state["debug"]


def fail(message: str, code: int = 1) -> NoReturn:
    """Print one line saying what went wrong and what to do; exit non-zero. The message is
    plain text: brackets in it ("[central]", an IPv6 address) are printed as they are."""
    from rich.markup import escape

    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def explain(exc: BaseException) -> str:
    """An exception's message for the one error line: a license failure whose message names
    no next step gets its class's ``next_step``."""
    from ..core import errors as E

    message = str(exc) or exc.__class__.__name__
    if isinstance(exc, E.LicenseError):
        return E.with_next_step(type(exc), message)
    return message


def run_guarded(func: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
    """Call func; turn any exception into a one-line error unless --debug."""
    try:
        return func(*args, **kwargs)
    except typer.Exit:
        raise
    except KeyboardInterrupt:
        fail("interrupted", 130)
    except Exception as exc:  # the CLI boundary
        if debug():
            raise
        fail(explain(exc))


def guard_central(func: Callable[[], None]) -> None:
    """Run a command that calls License Central: a failed call is one line on stderr and
    exit code 1 (what Central said, or that it did not answer)."""
    run_guarded(_exit_on_central_error, func)


def _exit_on_central_error(func: Callable[[], None]) -> None:
    from ..client import CentralRefused, CentralUnreachable

    try:
        func()
    except CentralUnreachable as exc:
        fail(f"{exc}; is it running? Set --central or LICENTIA_CENTRAL_URL")
    except CentralRefused as exc:
        fail(f"{exc.message} ({exc.code})" if exc.code else f"{exc}: check --central points at Central")


def serve_central_app(app: Any, factory: str, host: str, port: int, workers: int, data_dir: Path) -> None:
    """Run one of Central's ASGI apps: ``app`` itself with one worker, else ``workers``
    processes each building its own from the environment (``factory``, the dotted name of
    its builder: the keys and the schema exist now, so they find them). proxy_headers off:
    Central decides itself whom X-Forwarded-For may name (LICENTIA_FORWARDED_ALLOW_IPS), a
    local process must not pose as any client."""
    import os

    import uvicorn

    if workers == 1:
        uvicorn.run(app, host=host, port=port, log_level="warning", lifespan="on", proxy_headers=False)
        return
    app.state.central.db.dispose()
    os.environ["LICENTIA_DATA"] = str(data_dir.resolve())
    uvicorn.run(
        factory,
        factory=True,
        workers=workers,
        host=host,
        port=port,
        log_level="warning",
        lifespan="on",
        proxy_headers=False,
    )


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
            p.name: p.annotation
            for p in signature.parameters.values()
            if isinstance(p.annotation, type) and dataclasses.is_dataclass(p.annotation)
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
    command.__signature__ = signature.replace(parameters=params)  # type: ignore[attr-defined]  # read by inspect.signature
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
