"""``licentia cloud ...``: sign this device in to a vendor's cloud account, and what a
signed-in person does from the command line.

``login`` links this device by its machine container and keeps the session sealed to it
(``licentia.runtime.cloud``): it shows a short code and a link of License Central where
the person signs in and confirms, or, for scripts, reads the password from stdin
(``--password-stdin``). A secret is never an argument: it would show in the process list
and the shell history.
"""

from __future__ import annotations

import json
import socket
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import quote

import typer

from . import _common

if TYPE_CHECKING:  # pragma: no cover
    from ..client import CentralClient
    from ..runtime.cloud import CloudLink

app = typer.Typer(no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)
group_app = typer.Typer(no_args_is_help=True, help="Groups you administer: add and remove people.")
app.add_typer(group_app, name="group")
proxy_app = typer.Typer(
    no_args_is_help=True, help="Proxy license servers of groups you administer: a LAN's seats of the group's licenses."
)
app.add_typer(proxy_app, name="proxy")

FirmOpt = Annotated[
    int | None, typer.Option("--firm-code", help="The vendor's firm (needed when this device is linked to several).")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print Central's answer as JSON.")]


def _note(text: str) -> None:
    _common.err_console.print(text, highlight=False)


def _runtime() -> Any:
    from ..runtime import get_runtime

    return get_runtime()


def _link(firm_code: int | None) -> CloudLink:
    from ..runtime import cloud

    found = cloud.links(_runtime().home)
    if firm_code is not None:
        found = [link for link in found if link.firm_code == firm_code]
    if not found:
        _common.fail(
            "this device is not signed in" + (f" to firm {firm_code}" if firm_code else "") + ": run "
            "'licentia cloud login --central URL --firm-code FIRM'"
        )
    if len(found) > 1:
        _common.fail(
            "this device is signed in to firms "
            + ", ".join(str(x.firm_code) for x in found)
            + ": name one with --firm-code"
        )
    return found[0]


def _session_client(link: CloudLink) -> CentralClient:
    from ..client import CentralClient
    from ..runtime.cloud import LEVEL

    container = _runtime().machine_container(LEVEL)
    return CentralClient(link.central, api_key=link.token(container))


def _call(firm_code: int | None, method: str, path: str, body: Any = None) -> Any:
    link = _link(firm_code)
    with _session_client(link) as client:
        return client.request(method, path, json=body)


def _show(data: Any) -> None:
    _common.console.print_json(json.dumps(data))


def _passwords(count: int) -> list[str]:
    """``count`` lines from stdin (a password each), without their line ends."""
    lines = sys.stdin.read().splitlines()
    if len(lines) < count or any(not line for line in lines[:count]):
        _common.fail(
            f"give {count} non-empty line(s) on stdin"
            + (": the current password, then the new one" if count == 2 else ": the password")
        )
    return lines[:count]


@app.command("login")
def login(
    firm_code: Annotated[int, typer.Option("--firm-code", help="The vendor's firm code.")],
    central: Annotated[
        str | None,
        typer.Option("--central", envvar="LICENTIA_CENTRAL_URL", help="License Central's URL."),
    ] = None,
    user: Annotated[
        str | None, typer.Option("--login", help="Your login (with --password-stdin: sign in without a browser).")
    ] = None,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from stdin (scripts); needs --login.")
    ] = False,
    name: Annotated[
        str | None, typer.Option("--name", help="This device's name as Central shows it (default: the host name).")
    ] = None,
) -> None:
    """Sign this device in to your account of the vendor's cloud: shows a code and a link
    to confirm it in a browser (or reads the password from stdin with --password-stdin)."""
    from ..runtime import cloud
    from .licenses import central_url

    url = central_url(central)
    assert url is not None  # noqa: S101 - central_url(required=True) exits without one
    if password_stdin and not user:
        _common.fail("--password-stdin needs --login")
    if user and not password_stdin:
        _common.fail("give the password on stdin with --password-stdin, or leave --login out to sign in in a browser")

    def run() -> None:
        from ..client import CentralClient

        rt = _runtime()
        container = rt.machine_container(cloud.LEVEL)
        device_name = (name or socket.gethostname() or "device").strip()[:200]
        link = cloud.link_document(container, firm_code=firm_code, name=device_name, now=int(rt.clock()))
        with CentralClient(url) as client:
            if password_stdin:
                (password,) = _passwords(1)
                body = {"firm_code": firm_code, "login": user, "password": password, "link": link}
                answer = client.request("POST", "/cloud/sessions", json=body, authorized=False)
            else:
                answer = _by_code(client, link)
        saved = cloud.save(
            rt.home,
            container,
            central=url,
            firm_code=firm_code,
            login=answer["login"],
            device=answer["device"],
            token=answer["session"],
        )
        _note(f"signed in as {answer['login']} (firm {firm_code}); this device is {answer['device']}")
        _note(f"the session is kept sealed to container {saved.serial} in {saved.path}")

    _common.guard_central(run)


def _by_code(client: CentralClient, link: dict[str, Any]) -> dict[str, Any]:
    """The device authorization grant: show the code, poll until the person confirmed."""
    from ..client import CentralRefused

    start = client.request("POST", "/cloud/device-codes", json={"link": link}, authorized=False)
    _note(f"To sign in, open {start['verification_uri']} and enter the code {start['user_code']}")
    _note(f"  (or open {start['verification_uri_complete']})")
    _note(f"The code works for {start['expires_in'] // 60} minutes. Waiting for you to confirm ...")
    interval = max(1, int(start.get("interval", 5)))
    deadline = time.monotonic() + int(start["expires_in"])
    while time.monotonic() < deadline:
        time.sleep(interval)
        try:
            answer: dict[str, Any] = client.request(
                "POST", "/cloud/token", json={"device_code": start["device_code"]}, authorized=False
            )
            return answer
        except CentralRefused as exc:
            if exc.code == "authorization_pending":
                continue
            if exc.code == "slow_down":
                interval += 5
                continue
            raise
    _common.fail("the code expired before it was confirmed: run 'licentia cloud login' again")


@app.command("logout")
def logout(
    firm_code: FirmOpt = None,
    device: Annotated[
        str | None, typer.Option("--device", help="Unlink another of your devices instead ('licentia cloud devices').")
    ] = None,
) -> None:
    """Sign this device out (it is unlinked), or unlink another of your devices."""
    from ..client import CentralRefused
    from ..runtime import cloud

    def run() -> None:
        link = _link(firm_code)
        if device:
            _call(link.firm_code, "DELETE", f"/cloud/devices/{quote(device, safe='')}")
            _note(f"device {device} unlinked")
            return
        try:
            _call(link.firm_code, "POST", "/cloud/sign-out")
        except CentralRefused as exc:
            if exc.status != 401:
                raise
        cloud.forget(link)
        _note(f"signed out of firm {link.firm_code}; this device is unlinked")

    _common.guard_central(run)


@app.command("status")
def status(firm_code: FirmOpt = None, as_json: JsonOpt = False) -> None:
    """Who this device is signed in as: login, role, customer, groups."""

    def run() -> None:
        me = _call(firm_code, "GET", "/cloud/me")
        if as_json:
            typer.echo(json.dumps(me, indent=1))
            return
        groups = ", ".join(g["name"] + (" (admin)" if g["admin"] else "") for g in me["groups"]) or "none"
        typer.echo(
            f"{me['login']} ({me['name']}), {me['role']}" + (f" of customer {me['customer']}" if me["customer"] else "")
        )
        typer.echo(f"firm {me['firm_code']}; groups: {groups}; this device: {me['device']}")

    _common.guard_central(run)


@app.command("devices")
def devices(firm_code: FirmOpt = None, as_json: JsonOpt = False) -> None:
    """Your linked devices, and how many cloud leases each holds now (a device holding
    none frees no seat when unlinked)."""
    from rich import box
    from rich.table import Table

    def run() -> None:
        rows = _call(firm_code, "GET", "/cloud/devices")
        leases = _call(firm_code, "GET", "/cloud/leases")
        this = _link(firm_code).device
        for r in rows:
            r["leases"] = sum(1 for lease in leases if lease["device"] == r["device"])
            r["this"] = r["device"] == this
        if as_json:
            typer.echo(json.dumps(rows, indent=1))
            return
        table = Table(box=box.SIMPLE_HEAD, highlight=False)
        for heading in ("device", "name", "container", "linked", "last seen", "from", "cloud leases"):
            table.add_column(heading)
        for r in rows:
            name = r["name"] + (" (this device)" if r["this"] else "")
            seen = _when(r["seen"])
            table.add_row(r["device"], name, r["serial"], _when(r["linked"]), seen, r["address"], str(r["leases"]))
        _common.console.print(table)

    _common.guard_central(run)


@app.command("password")
def password(firm_code: FirmOpt = None) -> None:
    """Change your password: two lines on stdin, the current one and the new one. Your
    other devices are unlinked and must sign in again."""

    def run() -> None:
        old, new = _passwords(2)
        done = _call(firm_code, "POST", "/cloud/password", {"old": old, "new": new})
        _note(f"password changed; {done['devices_unlinked']} other device(s) unlinked")

    _common.guard_central(run)


@app.command("groups")
def groups(firm_code: FirmOpt = None, as_json: JsonOpt = False) -> None:
    """The groups you are in (and their members, where you administer them)."""

    def run() -> None:
        rows = _call(firm_code, "GET", "/cloud/groups")
        if as_json:
            typer.echo(json.dumps(rows, indent=1))
            return
        for g in rows:
            members = g.get("members")
            line = f"{g['name']} (customer {g['customer']})"
            if members is not None:
                line += ": " + (", ".join(m["login"] + (" (admin)" if m["admin"] else "") for m in members) or "empty")
            typer.echo(line)

    _common.guard_central(run)


@app.command("licenses")
def licenses(firm_code: FirmOpt = None, as_json: JsonOpt = False) -> None:
    """The licenses you may use from the cloud: your personal container's and your groups'."""

    def run() -> None:
        boxes = _call(firm_code, "GET", "/cloud/licenses")
        if as_json:
            typer.echo(json.dumps(boxes, indent=1))
            return
        if not boxes:
            _note("no cloud licenses yet")
        for box in boxes:
            where = "personal" if box["kind"] == "personal" else f"group {box['group']}"
            typer.echo(f"{where} (container {box['serial']}):")
            for lic in box["licenses"]:
                typer.echo(
                    f"  {lic['ticket']}  {lic['item']}  {lic['name']}  product {lic['product_code']}"
                    f"  seats {lic['quantity']}  expires {_when(lic['expires'])}"
                )
            if not box["licenses"]:
                typer.echo("  (none)")

    _common.guard_central(run)


@group_app.command("activate")
def group_activate(
    name: Annotated[str, typer.Argument(help="The group.")],
    ticket: Annotated[str, typer.Argument(help="A ticket of your organisation.")],
    firm_code: FirmOpt = None,
) -> None:
    """Activate a ticket into the cloud container of a group you administer."""

    def run() -> None:
        box = _call(firm_code, "POST", f"/cloud/groups/{quote(name, safe='')}/licenses", {"ticket": ticket})
        _note(f"ticket {ticket} is in group {name}'s cloud container {box['serial']}")

    _common.guard_central(run)


@group_app.command("deactivate")
def group_deactivate(
    name: Annotated[str, typer.Argument(help="The group.")],
    ticket: Annotated[str, typer.Argument(help="The ticket.")],
    firm_code: FirmOpt = None,
) -> None:
    """Take a ticket out of the cloud container of a group you administer."""

    def run() -> None:
        _call(firm_code, "DELETE", f"/cloud/groups/{quote(name, safe='')}/licenses/{quote(ticket, safe='')}")
        _note(f"ticket {ticket} left group {name}'s cloud container")

    _common.guard_central(run)


@group_app.command("reset")
def group_reset(
    name: Annotated[str, typer.Argument(help="A group you administer.")],
    firm_code: FirmOpt = None,
) -> None:
    """Reset a group's access credentials: every other member signs in again on each device."""

    def run() -> None:
        done = _call(firm_code, "POST", f"/cloud/groups/{quote(name, safe='')}/reset")
        _note(f"group {name}: {done['devices_unlinked']} device(s) of {done['members']} member(s) unlinked")

    _common.guard_central(run)


@group_app.command("add")
def group_add(
    name: Annotated[str, typer.Argument(help="The group.")],
    person: Annotated[str, typer.Argument(help="The login of a person of your organisation.")],
    admin: Annotated[bool, typer.Option("--admin", help="The person administers the group too.")] = False,
    firm_code: FirmOpt = None,
) -> None:
    """Add a person to a group you administer (or make them its admin)."""

    def run() -> None:
        _call(
            firm_code, "PUT", f"/cloud/groups/{quote(name, safe='')}/members/{quote(person, safe='')}", {"admin": admin}
        )
        _note(f"{person} is in group {name}" + (" as an admin" if admin else ""))

    _common.guard_central(run)


@group_app.command("remove")
def group_remove(
    name: Annotated[str, typer.Argument(help="The group.")],
    person: Annotated[str, typer.Argument(help="The login to remove.")],
    firm_code: FirmOpt = None,
) -> None:
    """Remove a person from a group you administer."""

    def run() -> None:
        _call(firm_code, "DELETE", f"/cloud/groups/{quote(name, safe='')}/members/{quote(person, safe='')}")
        _note(f"{person} left group {name}")

    _common.guard_central(run)


@proxy_app.command("create")
def proxy_create(
    group: Annotated[str, typer.Argument(help="A group you administer.")],
    name: Annotated[str, typer.Argument(help="The proxy's name in the group (letters, digits, '.', '_', '-').")],
    seats: Annotated[int, typer.Option("--seats", min=1, help="Seats of each of the group's licenses it holds.")],
    firm_code: FirmOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Make a proxy license server credential: prints its one-time link code (valid seven days)."""

    def run() -> None:
        made = _call(
            firm_code, "POST", f"/cloud/groups/{quote(group, safe='')}/proxies", {"name": name, "seats": seats}
        )
        if as_json:
            typer.echo(json.dumps(made, indent=1))
            return
        typer.echo(made["code"])
        _note(
            f"proxy {name} of group {group}: {seats} seat(s) of each license. On the license server, within seven "
            f"days: licentia server proxy link {_link(firm_code).central} CODE (the code is shown once)"
        )

    _common.guard_central(run)


@proxy_app.command("list")
def proxy_list(
    group: Annotated[str, typer.Argument(help="A group you administer.")],
    firm_code: FirmOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """The group's proxy license servers: their state, server, seats held and until when."""

    def run() -> None:
        rows = _call(firm_code, "GET", f"/cloud/groups/{quote(group, safe='')}/proxies")
        if as_json:
            typer.echo(json.dumps(rows, indent=1))
            return
        if not rows:
            _note(f"group {group} has no proxy")
        for p in rows:
            typer.echo(
                f"{p['name']}  {p['state']}{' (' + p['ended_by'] + ')' if p['ended_by'] else ''}  server "
                f"{p['server'] or '-'}  seats {p['seats_held']}/{p['seats']}  until {_when(p['until'])}  "
                f"refreshed {_when(p['refreshed'])}"
            )

    _common.guard_central(run)


@proxy_app.command("remove")
def proxy_remove(
    group: Annotated[str, typer.Argument(help="A group you administer.")],
    name: Annotated[str, typer.Argument(help="The proxy.")],
    firm_code: FirmOpt = None,
) -> None:
    """Remove a proxy: its seats return to the group now; the server drops its licenses at its next refresh."""

    def run() -> None:
        _call(firm_code, "DELETE", f"/cloud/groups/{quote(group, safe='')}/proxies/{quote(name, safe='')}")
        _note(f"proxy {name} of group {group} removed: its seats are back in the cloud")

    _common.guard_central(run)


def _when(ts: int | None) -> str:
    import datetime as dt

    return "-" if ts is None else dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d %H:%M")


@app.command("serve")
def serve(
    data: Annotated[
        Path | None, typer.Option("--data", help="Central's data directory (default: $LICENTIA_DATA or ./.licentia).")
    ] = None,
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port to listen on.")] = 8481,
    workers: Annotated[int, typer.Option("--workers", min=1, help="Worker processes.")] = 1,
) -> None:
    """Serve the cloud leases only, on Central's database (the vendor's side): any number of
    these processes, beside License Central, behind a load balancer. Ctrl-C stops it."""
    _common.run_guarded(_serve, data, host, port, workers)


def _serve(data: Path | None, host: str, port: int, workers: int) -> None:
    import logging

    from ..central.app import create_cloud_app
    from ..central.settings import Settings

    settings = Settings.from_env(data_dir=data)  # the edge: env is read here only
    if not _common.port_free(host, port):
        _common.fail(f"port {port} on {host} is in use: stop what runs there or pick another with --port")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    app = create_cloud_app(settings)
    shown = f"[{host}]" if ":" in host else host
    _common.console.print(f"cloud leases: http://{shown}:{port}/api/v1/cloud", highlight=False)
    _common.serve_central_app(app, "licentia.central.asgi:cloud_app_from_env", host, port, workers, settings.data_dir)
