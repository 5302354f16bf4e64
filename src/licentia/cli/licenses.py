"""One command set for a container's licenses: activate, apply, deactivate, sync.

``licentia`` registers it for this machine's container and ``licentia server`` for the
license server's own (``--data DIR``). An ``Owner`` says whose container the commands
change: the options that name it, the function that makes its runtime from them
(``licentia.runtime.get_runtime()`` or ``make_runtime(home)``, the one factory) and the
words the commands use for it.
"""

# No postponed annotations here: each command's options are read from annotations made when
# the command is defined for an owner, and their help comes from that owner's wording.

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Generic, TypeVar

import typer

from ._common import console, fail, run_guarded, spread

if TYPE_CHECKING:  # pragma: no cover
    from ..runtime import Runtime

W = TypeVar("W")

CentralOpt = Annotated[str | None, typer.Option("--central", help="License Central URL (or LICENTIA_CENTRAL_URL).")]
OfflineOpt = Annotated[bool, typer.Option("--offline", help="Write a request file instead of going online.")]


@dataclass(frozen=True)
class Wording:
    """Help and messages of the commands, in terms of whose container they change.

    Messages are ``str.format`` templates: ``{ticket}``, ``{serial}``, ``{count}`` (the licenses
    the activation added), ``{total}`` (the firm's licenses in the container now), ``{firm}``,
    ``{output}`` (the file written) and ``{name}`` (its name)."""

    activate: str
    level: str
    activated: str
    request_written: str
    apply: str
    deactivate: str
    leaving_ticket: str
    receipt_written: str
    deactivated: str
    sync: str


@dataclass(frozen=True)
class Owner(Generic[W]):
    """Whose container the commands change: ``options`` (a dataclass of options, placed
    after ``--central``), ``runtime`` (its runtime, made from those options), ``wording``;
    ``sync_first`` (a license server's: it uploads the usage log) runs before an online
    sync with the options and ``--central``, and returns the line to print (None: nothing
    was done)."""

    options: type[W]
    runtime: Callable[[W], "Runtime"]
    wording: Wording
    sync_first: Callable[[W, str | None], str | None] | None = None


def register(app: typer.Typer, owner: Owner[W]) -> None:
    """Add activate, apply, deactivate and sync for ``owner`` to ``app``."""
    for name, build in (("activate", _activate), ("apply", _apply), ("deactivate", _deactivate), ("sync", _sync)):
        app.command(name)(spread(build(owner), where=owner.options))


def central_url(url: str | None, required: bool = True) -> str | None:
    """--central, else LICENTIA_CENTRAL_URL, else [central] url in $LICENTIA_HOME/config.toml."""
    from ..runtime import config, get_runtime

    if not url and not os.environ.get("LICENTIA_CENTRAL_URL"):
        url = config.central_url(get_runtime().home)
    url = url or os.environ.get("LICENTIA_CENTRAL_URL")
    if required and not url:
        path = get_runtime().home / "config.toml"
        fail(
            "no License Central given: pass --central URL, set LICENTIA_CENTRAL_URL, or give its URL in the "
            f'[central] table of {path} (url = "https://...")'
        )
    return url


def command_prefix(ctx: typer.Context | None) -> str:
    """The command ``ctx`` runs, without its last word: ``licentia`` or ``licentia server``
    (what messages name when they tell the user what to run next)."""
    names: list[str] = []
    parent = ctx.parent if ctx is not None else None
    while parent is not None and parent.parent is not None:
        names.append(parent.info_name or "")
        parent = parent.parent
    return " ".join(["licentia", *reversed(names)])


def write_file(path: Path, data: bytes) -> None:
    from ..container.files import write_atomic

    write_atomic(path, data, mode=0o644)


def _written(template: str, output: Path) -> str:
    from rich.markup import escape

    return template.format(output=escape(str(output)), name=escape(output.name))


def _activate(owner: Owner[W]) -> Callable[..., None]:
    words = owner.wording

    def activate(
        *,
        ctx: typer.Context,
        ticket: Annotated[str, typer.Argument(help="The ticket id from the vendor.")],
        central: CentralOpt = None,
        where: W,
        offline: OfflineOpt = False,
        output: Annotated[
            Path | None, typer.Option("-o", "--output", help="Request file to write (with --offline).")
        ] = None,
        level: Annotated[str | None, typer.Option("--level", help=words.level)] = None,
    ) -> None:
        from ..core import codes
        from ..runtime import activation

        def go() -> None:
            rt = owner.runtime(where)
            if offline:
                if output is None:
                    fail("--offline needs -o FILE for the request")
                request = activation.make_request(ticket, level=level or "medium", runtime=rt)
                write_file(output, activation.dump(request))
                console.print(_written(words.request_written, output))
                return
            container, update = activation.activate(
                ticket, central_url(central) or "", level=level, runtime=rt, cli=command_prefix(ctx)
            )
            normalized = codes.normalize_ticket(ticket)
            added = sum(1 for e in update.entries if e.ticket == normalized)
            console.print(
                words.activated.format(
                    ticket=normalized,
                    serial=container.serial,
                    count=added,
                    total=len(update.entries),
                    firm=update.firm_code,
                )
            )
            if update.message:
                console.print(update.message, highlight=False, markup=False)

        run_guarded(go)

    activate.__doc__ = words.activate
    return activate


def _apply(owner: Owner[W]) -> Callable[..., None]:
    def apply(
        *,
        file: Annotated[Path, typer.Argument(help="An update file from License Central.")],
        where: W,
    ) -> None:
        from ..runtime import activation

        def go() -> None:
            update = activation.apply(activation.read_document(file), runtime=owner.runtime(where))
            console.print(f"Applied update {update.seq} of firm {update.firm_code} to container {update.serial}.")
            if update.message:
                console.print(update.message, highlight=False, markup=False)

        run_guarded(go)

    apply.__doc__ = owner.wording.apply
    return apply


def _deactivate(owner: Owner[W]) -> Callable[..., None]:
    words = owner.wording

    def deactivate(
        *,
        ticket: Annotated[str, typer.Argument(help=words.leaving_ticket)],
        central: Annotated[
            str | None, typer.Option("--central", help="License Central URL (default: where it came from).")
        ] = None,
        where: W,
        offline: Annotated[
            bool, typer.Option("--offline", help="Write a receipt file instead of going online.")
        ] = False,
        output: Annotated[
            Path | None, typer.Option("-o", "--output", help="Receipt file to write (with --offline).")
        ] = None,
    ) -> None:
        from ..runtime import activation

        def go() -> None:
            if offline and output is None:
                fail("--offline needs -o FILE for the receipt")
            rt = owner.runtime(where)
            receipt = activation.deactivate(ticket, central_url(central, required=False), offline=offline, runtime=rt)
            if offline and output is not None:  # (offline without output failed above)
                write_file(output, activation.dump(receipt))
                console.print(_written(words.receipt_written, output))
            else:
                console.print(words.deactivated.format(ticket=ticket))

        run_guarded(go)

    deactivate.__doc__ = words.deactivate
    return deactivate


def _sync(owner: Owner[W]) -> Callable[..., None]:
    words = owner.wording

    def sync(
        *,
        ctx: typer.Context,
        central: Annotated[
            str | None, typer.Option("--central", help="License Central URL (default: where each came from).")
        ] = None,
        where: W,
        offline: Annotated[
            bool,
            typer.Option(
                "--offline", help="Write a sync request file for 'licentia depot submit' instead of going online."
            ),
        ] = False,
        output: Annotated[
            Path | None,
            typer.Option(
                "-o",
                "--output",
                help="Request file to write (with --offline; for several containers or firms, "
                "one FILE-SERIAL-FIRM each).",
            ),
        ] = None,
    ) -> None:
        from ..runtime import activation

        def go() -> None:
            if offline:
                if output is None:
                    fail("--offline needs -o FILE for the request")
                _sync_offline(owner.runtime(where), output, words, command_prefix(ctx))
                return
            first_error: Exception | None = None
            if owner.sync_first is not None:
                try:
                    line = owner.sync_first(where, central_url(central, required=False))
                    if line:
                        console.print(line, highlight=False, markup=False)
                except Exception as exc:  # noqa: BLE001 - raised after the license sync (a withdrawal takes effect)
                    first_error = exc
            done = activation.sync(
                central_url(central, required=False), runtime=owner.runtime(where), cli=command_prefix(ctx)
            )
            if not done:
                cli = command_prefix(ctx)
                console.print(
                    "Nothing to sync: no container knows a License Central. Pass --central URL, or write a "
                    f"request file to carry to one ('{cli} sync --offline -o sync.json').",
                    highlight=False,
                )
            for serial, firm, update in done:
                console.print(
                    f"Container {serial}, firm {firm}: update {update.seq}, {len(update.entries)} license(s)."
                )
            if first_error is not None:
                raise first_error

        run_guarded(go)

    sync.__doc__ = owner.wording.sync
    return sync


def _sync_offline(rt: "Runtime", output: Path, words: Wording, cli: str) -> None:
    """Write a sync request per container and firm: ``output`` itself when there is one,
    else ``output`` with ``-SERIAL-FIRM`` before its suffix."""
    from ..runtime import activation

    requests = activation.sync_requests(runtime=rt)
    if not requests:
        fail(
            "nothing to sync: no container here holds licenses from License Central; activate a ticket first "
            f"('{cli} activate TICKET')"
        )
    for serial, firm, request in requests:
        target = output if len(requests) == 1 else output.with_name(f"{output.stem}-{serial}-{firm}{output.suffix}")
        write_file(target, activation.dump(request))
        console.print(_written(words.request_written, target))
