"""Entry point of the ``licentia`` command."""

from __future__ import annotations

from typing import Annotated

import typer

from . import _common

app = typer.Typer(
    name="licentia",
    help="licentia: software licensing and protection.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        print(f"licentia {version('licentia')}")
        raise typer.Exit()


@app.callback()
def _root(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")] = False,
    version: Annotated[
        bool, typer.Option("--version", help="Print licentia's version and exit.", callback=_version, is_eager=True)
    ] = False,
) -> None:
    _common.set_debug(debug)


def _register() -> None:
    from . import accounts_cmd, central_cmd, cloud_cmd, enduser, vendor

    app.add_typer(central_cmd.app, name="central", help="Run License Central (vendor back office).")
    vendor.app.add_typer(accounts_cmd.account_app, name="account")
    vendor.app.add_typer(accounts_cmd.group_app, name="group")
    app.add_typer(vendor.app, name="vendor", help="Vendor commands against License Central's REST API.")
    app.add_typer(cloud_cmd.app, name="cloud", help="Sign this device in to a vendor's cloud account.")
    enduser.register(app)
    from . import protect_cmd

    protect_cmd.register(app)
    from . import network_cmd, server_cmd

    app.add_typer(server_cmd.app, name="server", help="Run and operate a network license server.")
    network_cmd.register(app)
    from . import roi_cmd

    roi_cmd.register(app)


_register()


def main() -> None:
    app()
