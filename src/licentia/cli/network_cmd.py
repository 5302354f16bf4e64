"""End-user network commands: ``licentia borrow``, ``licentia return``, ``licentia config ...``.

The runtime's network settings live in ``$LICENTIA_HOME/config.toml``::

    [network]
    servers = ["lic1.example.com", "10.0.0.5:22371"]   # asked after LICENTIA_HOST
    discovery = false                                   # UDP broadcast (off by default)
    broadcast = "255.255.255.255"
    discovery_port = 22370
"""

from __future__ import annotations

import datetime as _dt
from pathlib import Path
from typing import Annotated, Any

import typer

from ..runtime import DEFAULT_PORT
from ._common import console, fail, run_guarded

config_app = typer.Typer(no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)
server_app = typer.Typer(no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)
config_app.add_typer(server_app, name="server", help="The license servers this machine asks (after LICENTIA_HOST).")


def _firm_product(text: str) -> tuple[int, int]:
    firm, sep, product = text.partition(":")
    if not sep or not firm.isdigit() or not product.isdigit():
        fail(f"{text!r}: name the license as FIRM:PRODUCT, e.g. 10101:1")
    return int(firm), int(product)


def _when(ts: int | None) -> str:
    if ts is None:
        return "-"
    return _dt.datetime.fromtimestamp(ts, _dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def borrow(
    license: Annotated[  # noqa: A002 - the argument's name is the one its help shows
        str, typer.Argument(metavar="FIRM:PRODUCT", help="The license to borrow, e.g. 10101:1.")
    ],
    days: Annotated[
        int,
        typer.Option(
            "--days",
            min=1,
            help="Borrow for up to this many days (capped by the license and the server's administrator).",
        ),
    ],
    feature: Annotated[int, typer.Option("--feature", help="Feature bits the borrowed license must hold.")] = 0,
) -> None:
    """Take a seat from a license server into this machine's container, for use while offline."""
    from .. import runtime

    def go() -> None:
        firm, product = _firm_product(license)
        done = runtime.borrow(runtime.get_runtime(), firm, product, days, feature_code=feature)
        console.print(
            f"Borrowed {firm}:{product} (license {done['license_id']}) from {done['server']} into "
            f"container {done['container']} until {_when(done['expires'])}. Give it back early with "
            f"'licentia return {firm}:{product}'.",
            highlight=False,
        )

    run_guarded(go)


def give_back(
    license: Annotated[  # noqa: A002 - the argument's name is the one its help shows
        str, typer.Argument(metavar="FIRM:PRODUCT", help="The borrowed license to return.")
    ],
) -> None:
    """Return a borrowed license: it leaves this machine and its seat frees on the server."""
    from .. import runtime

    def go() -> None:
        firm, product = _firm_product(license)
        done = runtime.give_back(runtime.get_runtime(), firm, product)
        kept = [d for d in done if not d["returned"]]
        for d in done:
            if d["returned"]:
                console.print(f"Returned {d['borrow_id']} to {d['server']}.", highlight=False)
        if kept:
            fail(
                f"the license left this machine, but {kept[0]['server']} did not confirm; the receipt is kept in "
                f"{kept[0]['kept']} and sent at the next 'licentia return' (until then the seat stays taken "
                "until the borrowing period ends)"
            )

    run_guarded(go)


# ------------------------------------------------------------ config.toml


def _config_path() -> Path:
    from ..runtime import get_runtime

    return get_runtime().home / "config.toml"


def _load() -> dict[str, Any]:
    from ..runtime import config, get_runtime

    return config.load(get_runtime().home)


def _save(doc: dict[str, Any]) -> None:
    import tomli_w

    from ..container.files import write_atomic

    path = _config_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    write_atomic(path, tomli_w.dumps(doc).encode(), mode=0o644)


def _network_table(doc: dict[str, Any]) -> dict[str, Any]:
    net = doc.setdefault("network", {})
    if not isinstance(net, dict):
        fail("[network] in config.toml is not a table: fix it by hand")
    return net


def _normalize(address: str) -> str:
    from ..runtime import parse_server

    try:
        srv = parse_server(address)
    except ValueError:
        fail(f"{address!r} is not a server address: give host, host:port or https://host:port")
    return ("https://" if srv.tls else "") + srv.label


@server_app.command("add")
def server_add(
    address: Annotated[
        str, typer.Argument(help=f"host, host:port (default port {DEFAULT_PORT}) or https://host:port.")
    ],
) -> None:
    """Add a license server to the search list."""

    def go() -> None:
        doc = _load()
        net = _network_table(doc)
        servers = [str(s) for s in net.get("servers", [])]
        value = _normalize(address)
        if value in servers:
            console.print(f"{value} is already in the list.", highlight=False)
            return
        net["servers"] = servers + [value]
        _save(doc)
        console.print(f"Added {value}.", highlight=False)

    run_guarded(go)


@server_app.command("remove")
def server_remove(address: Annotated[str, typer.Argument(help="A server in the list.")]) -> None:
    """Remove a license server from the search list."""

    def go() -> None:
        doc = _load()
        net = _network_table(doc)
        servers = [str(s) for s in net.get("servers", [])]
        value = _normalize(address)
        if value not in servers and address not in servers:
            fail(f"{address} is not in the list ('licentia config server list')")
        net["servers"] = [s for s in servers if s not in (value, address)]
        _save(doc)
        console.print(f"Removed {value}.", highlight=False)

    run_guarded(go)


@server_app.command("list")
def server_list() -> None:
    """The license servers this machine asks, in order (LICENTIA_HOST first)."""
    import os

    def go() -> None:
        doc = _load()
        env = os.environ.get("LICENTIA_HOST", "").strip()
        if env:
            for part in env.split(","):
                if part.strip():
                    console.print(f"{part.strip()}  (LICENTIA_HOST)", highlight=False)
        for s in _network_table(doc).get("servers", []):
            console.print(str(s), highlight=False)
        net = doc.get("network", {})
        state = "on" if net.get("discovery") is True else "off"
        console.print(f"discovery: {state}", highlight=False)
        console.print(f"cloud: {net.get('cloud', 'last')}", highlight=False)

    run_guarded(go)


@config_app.command("discovery")
def discovery(
    state: Annotated[str, typer.Argument(metavar="on|off", help="Look for license servers by UDP broadcast.")],
    broadcast: Annotated[
        str | None, typer.Option("--broadcast", help="Broadcast address (default 255.255.255.255).")
    ] = None,
    port: Annotated[
        int | None, typer.Option("--port", help=f"UDP port servers answer on (default {DEFAULT_PORT}).")
    ] = None,
) -> None:
    """Switch server discovery by broadcast on or off (off by default)."""

    def go() -> None:
        if state not in ("on", "off"):
            fail("say 'on' or 'off'")
        doc = _load()
        net = _network_table(doc)
        net["discovery"] = state == "on"
        if broadcast:
            import ipaddress

            try:
                ipaddress.IPv4Address(broadcast)
            except ValueError:
                fail(f"{broadcast!r} is not an IPv4 address")
            net["broadcast"] = broadcast
        if port:
            net["discovery_port"] = port
        _save(doc)
        console.print(
            f"discovery {state}"
            + (
                f" ({net.get('broadcast', '255.255.255.255')}:{net.get('discovery_port', DEFAULT_PORT)})"
                if state == "on"
                else ""
            ),
            highlight=False,
        )

    run_guarded(go)


@config_app.command("cloud")
def cloud(
    order: Annotated[
        str,
        typer.Argument(
            metavar="first|last|off",
            help="Ask the vendor clouds this device is linked to before the license servers, after them "
            "(the default), or never.",
        ),
    ],
) -> None:
    """Where the clouds this device is linked to ('licentia cloud login') come in the search."""

    def go() -> None:
        from ..runtime import CLOUD_ORDERS

        if order not in CLOUD_ORDERS:
            fail(f"say one of {', '.join(CLOUD_ORDERS)}")
        doc = _load()
        _network_table(doc)["cloud"] = order
        _save(doc)
        console.print(f"cloud: {order}", highlight=False)

    run_guarded(go)


def register(app: typer.Typer) -> None:
    app.command("borrow")(borrow)
    app.command("return")(give_back)
    app.add_typer(
        config_app,
        name="config",
        help="This machine's runtime settings: license servers, discovery, the cloud's place.",
    )
