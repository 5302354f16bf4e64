"""End-user commands: activate, depot submit, apply, deactivate, sync, list, demo."""

from __future__ import annotations

import datetime as _dt
import json
import os
from pathlib import Path
from typing import Optional

import typer
from rich import box
from rich.table import Table

from ._common import console, fail, run_guarded

LEVEL_HELP = "Binding level of the container: loose, medium or tight (online: taken from the ticket)."


def _central(url: Optional[str], required: bool = True) -> Optional[str]:
    """--central, else LICENTIA_CENTRAL_URL, else [central] url in $LICENTIA_HOME/config.toml."""
    if not url and not os.environ.get("LICENTIA_CENTRAL_URL"):
        from ..runtime import config, get_runtime

        url = config.central_url(get_runtime().home)
    url = url or os.environ.get("LICENTIA_CENTRAL_URL")
    if required and not url:
        fail(
            "no License Central given: pass --central URL, set LICENTIA_CENTRAL_URL, or put "
            "[central] url = \"...\" in $LICENTIA_HOME/config.toml"
        )
    return url


def _write(path: Path, data: bytes) -> None:
    from ..container.files import write_atomic

    write_atomic(path, data, mode=0o644)


def _when(ts: Optional[int]) -> str:
    if ts is None:
        return "-"
    return _dt.datetime.fromtimestamp(ts, _dt.timezone.utc).strftime("%Y-%m-%d")


def activate(
    ticket: str = typer.Argument(..., help="The ticket id from the vendor."),
    central: Optional[str] = typer.Option(None, "--central", help="License Central URL (or LICENTIA_CENTRAL_URL)."),
    offline: bool = typer.Option(False, "--offline", help="Write a request file instead of going online."),
    output: Optional[Path] = typer.Option(None, "-o", "--output", help="Request file to write (with --offline)."),
    level: Optional[str] = typer.Option(None, "--level", help=LEVEL_HELP),
) -> None:
    """Activate a ticket into this machine's container (online, or --offline with a request file)."""
    from ..runtime import activation

    def go() -> None:
        if offline:
            if output is None:
                fail("--offline needs -o FILE for the request")
            request = activation.make_request(ticket, level=level or "medium")
            _write(output, activation.dump(request))
            console.print(
                f"Request written to [bold]{output}[/]. Carry it to a machine with network and run "
                f"'licentia depot submit {output.name} --central URL -o update.json', then "
                "'licentia apply update.json' here."
            )
            return
        container, update = activation.activate(ticket, _central(central) or "", level=level)
        console.print(
            f"Activated ticket {ticket} into container [bold]{container.serial}[/] "
            f"({len(update.entries)} license(s) from firm {update.firm_code})."
        )

    run_guarded(go)


def depot_submit(
    file: Path = typer.Argument(..., help="A request or receipt file."),
    central: Optional[str] = typer.Option(None, "--central", help="License Central URL (or LICENTIA_CENTRAL_URL)."),
    output: Optional[Path] = typer.Option(None, "-o", "--output", help="Where to write the update file."),
) -> None:
    """Carry an offline request (or a deactivation receipt) to License Central."""
    from ..runtime import activation

    def go() -> None:
        doc = activation.read_document(file)
        answer = activation.submit(doc, _central(central) or "")
        if answer.get("payload", {}).get("type") == "update":
            target = output or Path("update.json")
            _write(target, activation.dump(answer))
            console.print(f"Update written to [bold]{target}[/]: apply it with 'licentia apply {target.name}'.")
        else:
            console.print(f"License Central confirmed: {answer.get('message') or answer.get('state') or 'ok'}")

    run_guarded(go)


def apply(file: Path = typer.Argument(..., help="An update file from License Central.")) -> None:
    """Apply an update file to the container it was made for."""
    from ..runtime import activation

    def go() -> None:
        update = activation.apply(activation.read_document(file))
        console.print(f"Applied update {update.seq} of firm {update.firm_code} to container {update.serial}.")

    run_guarded(go)


def deactivate(
    ticket: str = typer.Argument(..., help="The ticket whose license leaves this machine."),
    central: Optional[str] = typer.Option(None, "--central", help="License Central URL (default: where it came from)."),
    offline: bool = typer.Option(False, "--offline", help="Write a receipt file instead of going online."),
    output: Optional[Path] = typer.Option(None, "-o", "--output", help="Receipt file to write (with --offline)."),
) -> None:
    """Remove a license from this machine so its ticket can be activated elsewhere."""
    from ..runtime import activation

    def go() -> None:
        if offline and output is None:
            fail("--offline needs -o FILE for the receipt")
        receipt = activation.deactivate(ticket, _central(central, required=False), offline=offline)
        if offline:
            assert output is not None
            _write(output, activation.dump(receipt))
            console.print(
                f"License removed. Receipt written to [bold]{output}[/]: submit it with "
                f"'licentia depot submit {output.name} --central URL' to free the ticket."
            )
        else:
            console.print(f"License of ticket {ticket} removed and the ticket freed at License Central.")

    run_guarded(go)


def sync(
    central: Optional[str] = typer.Option(None, "--central", help="License Central URL (default: where each came from)."),
) -> None:
    """Fetch pending updates (revocations, new licenses, signed time) from License Central."""
    from ..runtime import activation

    def go() -> None:
        done = activation.sync(_central(central, required=False))
        if not done:
            console.print("Nothing to sync: no container knows a License Central.")
        for serial, firm, update in done:
            console.print(f"Container {serial}, firm {firm}: update {update.seq}, {len(update.entries)} license(s).")

    run_guarded(go)


def list_(
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    firm_key: list[str] = typer.Option(
        [], "--firm-key", help="FIRM=PEMFILE: verify that firm's licenses against a pinned key."
    ),
) -> None:
    """List containers and licenses on this machine (--json adds feature maps and more)."""
    import licentia

    def go() -> None:
        for item in firm_key:
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
            table = Table(
                title=f"container {c['serial']} ({c.get('level', '-')})", title_justify="left", box=box.SIMPLE_HEAD
            )
            for col in ("firm:prod", "id", "ticket", "expires", "units"):
                table.add_column(col, no_wrap=True)
            table.add_column("status", min_width=6)
            if not c["licenses"]:
                table.add_row("", "", "", "", "", c["status"])
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
    app.command("activate")(activate)
    depot = typer.Typer(help="Offline exchange: carry request and receipt files to License Central.")
    depot.command("submit")(depot_submit)
    app.add_typer(depot, name="depot")
    app.command("apply")(apply)
    app.command("deactivate")(deactivate)
    app.command("sync")(sync)
    app.command("list")(list_)
    from . import demo

    app.command("demo")(demo.demo)
