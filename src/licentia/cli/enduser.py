"""End-user commands: activate, depot submit, apply, deactivate, sync, list, demo.

activate, apply, deactivate and sync are the shared license commands (``licenses``) for
this machine's container."""

from __future__ import annotations

import datetime as _dt
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich import box
from rich.table import Table

from . import licenses
from ._common import console, fail, run_guarded
from .licenses import central_url, write_file

if TYPE_CHECKING:  # pragma: no cover
    from ..runtime import Runtime


@dataclass(frozen=True)
class ThisMachine:
    """This machine's container: no option names it."""


def _this_machine(_: ThisMachine) -> Runtime:
    from ..runtime import get_runtime

    return get_runtime()


END_USER = licenses.Owner(
    ThisMachine,
    _this_machine,
    licenses.Wording(
        activate="Activate a ticket into this machine's container (online, or --offline with a request file).",
        level="Binding level of the container: loose, medium or tight (online: taken from the ticket).",
        activated="Activated ticket {ticket} into container [bold]{serial}[/]: {count} license(s) added "
        "({total} of firm {firm} in the container now).",
        request_written="Request written to [bold]{output}[/]. Carry it to a machine with network and run "
        "'licentia depot submit {name} --central URL -o update.json', then 'licentia apply update.json' here.",
        apply="Apply an update file to the container it was made for.",
        deactivate="Remove a license from this machine so its ticket can be activated elsewhere.",
        leaving_ticket="The ticket whose license leaves this machine.",
        receipt_written="License removed. Receipt written to [bold]{output}[/]: submit it with "
        "'licentia depot submit {name} --central URL' to free the ticket.",
        deactivated="License of ticket {ticket} removed and the ticket freed at License Central.",
        sync="Fetch pending updates (revocations, new licenses, signed time) from License Central "
        "(online, or --offline with a request file).",
    ),
)


def _when(ts: int | None) -> str:
    if ts is None:
        return "-"
    return _dt.datetime.fromtimestamp(ts, _dt.UTC).strftime("%Y-%m-%d")


def depot_submit(
    file: Annotated[Path, typer.Argument(help="A request or receipt file.")],
    central: licenses.CentralOpt = None,
    output: Annotated[Path | None, typer.Option("-o", "--output", help="Where to write the update file.")] = None,
) -> None:
    """Carry an offline request (or a deactivation receipt) to License Central."""
    from ..runtime import activation

    def go() -> None:
        doc = activation.read_document(file)
        answer = activation.submit(doc, central_url(central) or "")
        if answer.get("payload", {}).get("type") == "update":
            target = output or Path("update.json")
            write_file(target, activation.dump(answer))
            console.print(f"Update written to [bold]{target}[/]: apply it with 'licentia apply {target.name}'.")
        elif answer.get("payload", {}).get("type") == "usage-anchor":  # a license server's usage upload
            target = output or Path("anchor.json")
            write_file(target, activation.dump(answer))
            console.print(
                f"Anchor written to [bold]{target}[/]: record it with 'licentia server usage anchor {target.name}'."
            )
        else:
            console.print(
                f"License Central confirmed: {answer.get('message') or answer.get('state') or 'ok'}", markup=False
            )

    run_guarded(go)


def list_(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    firm_key: Annotated[
        list[str] | None,
        typer.Option("--firm-key", help="FIRM=PEMFILE: verify that firm's licenses against a pinned key."),
    ] = None,
) -> None:
    """List containers and licenses on this machine (--json adds feature maps and more)."""
    import licentia

    def go() -> None:
        for item in firm_key or []:
            firm, _, path = item.partition("=")
            if not firm.isdigit() or not path:
                fail("--firm-key takes FIRM=PEMFILE")
            licentia.trust(int(firm), Path(path))
        data = licentia.info()
        if as_json:
            print(json.dumps(data, indent=1))
            return
        if not data:
            console.print("No containers yet: activate a ticket with 'licentia activate TICKET --central URL'.")
            return
        unverified = False
        for c in data:
            title = f"container {c['serial']}" + (f" ({c['level']})" if c.get("level") else "")
            table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD)
            for col in ("firm:prod", "id", "ticket", "expires", "units"):
                table.add_column(col, no_wrap=True)
            table.add_column("status", min_width=6)
            if not c["licenses"]:
                # a container without licenses: say so, and why when it cannot be read
                empty = "no licenses" if c["status"] == "ok" else c["status"]
                console.print(f"{title}: {empty}", highlight=False, markup=False)
                continue
            for lic in c["licenses"]:
                unverified = unverified or not lic["verified"]
                table.add_row(
                    f"{lic['firm_code']}:{lic['product_code']}",
                    str(lic["license_id"]),
                    lic["ticket"] or "-",
                    _when(lic["expires"]),
                    "-" if lic["units_left"] is None else str(lic["units_left"]),
                    lic["status"],
                )
            console.print(table)
        if unverified:
            console.print("Signatures not checked: pass --firm-key FIRM=PEMFILE to verify a firm's licenses.")

    run_guarded(go)


def register(app: typer.Typer) -> None:
    licenses.register(app, END_USER)
    depot = typer.Typer(help="Offline exchange: carry request and receipt files to License Central.")
    depot.command("submit")(depot_submit)
    app.add_typer(depot, name="depot")
    app.command("list")(list_)
    from . import demo

    app.command("demo")(demo.demo)
