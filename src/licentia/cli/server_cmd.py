"""``licentia server ...``: run and operate a network license server.

activate, apply, deactivate and sync are the shared license commands (``licenses``) for
the server's own container, in its data directory (``--data``).
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ..runtime import DEFAULT_PORT
from . import _common, licenses
from ._common import console, fail, run_guarded

if TYPE_CHECKING:  # pragma: no cover
    from ..runtime import Runtime

app = typer.Typer(no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)
usage_app = typer.Typer(pretty_exceptions_enable=False, add_completion=False, invoke_without_command=True)
proxy_app = typer.Typer(
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    help="Serve a group's enterprise cloud licenses to this LAN: 'link' once with the code the group's admin made; "
    "the running server refreshes by itself.",
)
app.add_typer(proxy_app, name="proxy")
app.add_typer(
    usage_app,
    name="usage",
    help="Usage events: report (--from/--to, --json/--csv), 'verify', and 'export' / 'anchor' (offline upload to "
    "License Central).",
)

DEFAULT_URL = f"http://127.0.0.1:{DEFAULT_PORT}"
DATA_HELP = "Data directory (default: $LICENTIA_SERVER_DATA or ./.licentia-server)."
DataOpt = Annotated[Path | None, typer.Option("--data", help=DATA_HELP)]
UrlOpt = Annotated[str | None, typer.Option("--url", help=f"The server's URL (default: {DEFAULT_URL}).")]
TokenOpt = Annotated[
    str | None, typer.Option("--token", help="Admin token (default: $LICENTIA_SERVER_ADMIN_TOKEN or DATA/admin.token).")
]


def _data(data: Path | None) -> Path:
    from ..server.settings import DEFAULT_DATA

    return Path(data) if data else Path(os.environ.get("LICENTIA_SERVER_DATA") or DEFAULT_DATA)


@dataclass(frozen=True)
class ServerData:
    """The server's container lives in its data directory."""

    data: Annotated[Path | None, typer.Option("--data", help=DATA_HELP)] = None


def _runtime(data: Path | None) -> Runtime:
    """The server's runtime: its container bound to this machine, or to
    ``LICENTIA_SERVER_BINDING_KEY_FILE`` (a server in a pod)."""
    from ..server.core import server_runtime
    from ..server.settings import binding_key_file

    return server_runtime(_data(data), binding_key_file())


def _server_runtime(options: ServerData) -> Runtime:
    return _runtime(options.data)


def _sync_usage(options: ServerData, central: str | None) -> str | None:
    """Before the license sync: upload the usage log to License Central."""
    from ..server.core import sync_usage

    done = sync_usage(_data(options.data), _server_runtime(options), central)
    if done is None:
        return None
    line = done.summary()
    if done.flagged:
        line += " License Central flagged: " + "; ".join(done.flagged)
    return line


SERVER = licenses.Owner(
    ServerData,
    _server_runtime,
    licenses.Wording(
        activate="Activate a ticket into the server's own container (its licenses become seats).",
        level="Binding level of the server's container.",
        activated="Activated ticket {ticket} into server container [bold]{serial}[/] ({count} license(s) from firm "
        "{firm}). A running server picks it up by itself.",
        request_written="Request written to [bold]{output}[/]. Submit it with 'licentia depot submit {name} "
        "--central URL -o update.json', then 'licentia server apply update.json'.",
        apply="Apply an update file to the server's container (offline activation).",
        deactivate="Remove a license from the server's container so its ticket can be activated elsewhere.",
        leaving_ticket="The ticket whose license leaves the server.",
        receipt_written="License removed. Receipt written to [bold]{output}[/].",
        deactivated="License of ticket {ticket} removed from the server and freed at License Central.",
        sync="Upload the usage log to License Central (every event after its last anchor), then fetch pending "
        "updates for the server's container. Offline: 'licentia server usage export -o FILE' writes the usage "
        "upload, and --offline -o FILE the sync request.",
    ),
    sync_first=_sync_usage,
)


def _when(ts: int | None) -> str:
    if ts is None:
        return "-"
    return _dt.datetime.fromtimestamp(ts, _dt.UTC).strftime("%Y-%m-%d %H:%M")


@app.command()
def start(
    data: DataOpt = None,
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "0.0.0.0",  # noqa: S104 - serves the network
    port: Annotated[int, typer.Option("--port", help="TCP port of the HTTP API.")] = DEFAULT_PORT,
    config: Annotated[
        Path | None, typer.Option("--config", help="TOML config: [server] settings and access rules.")
    ] = None,
) -> None:
    """Run the license server. Ctrl-C stops it; SIGHUP (or editing --config) reloads the access rules."""
    run_guarded(_start, data, host, port, config)


def _start(data: Path | None, host: str, port: int, config: Path | None) -> None:
    import uvicorn

    from ..server.app import create_app
    from ..server.settings import Settings

    settings = Settings.from_env(data_dir=data, config_path=config, host=host, port=port)  # env is read here only
    if not _common.port_free(host, port):
        fail(f"port {port} on {host} is in use: stop what runs there or pick another with --port")
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("licentia").setLevel(logging.INFO)
    app = create_app(settings)
    server = app.state.license_server
    shown = f"[{host}]" if ":" in host else host
    scheme = "https" if settings.tls else "http"
    console.print(f"License server: {scheme}://{shown}:{port}  (admin page: /admin)", highlight=False)
    containers = ", ".join(server.status()["server"]["containers"]) or "none yet"
    console.print(f"data: {settings.data_dir}  containers: {containers}", highlight=False)
    console.print(f"admin token: {app.state.admin_source}", highlight=False)
    served, local = server.served()
    console.print(
        f"{len(served)} license(s) served, {len(local)} local-only kept back; config version {server.config_version}",
        highlight=False,
    )
    if not served:
        console.print("No licenses yet: 'licentia server activate TICKET --central URL'.", highlight=False)
    kwargs: dict[str, Any] = {}
    if settings.tls:
        kwargs.update(ssl_certfile=str(settings.tls_cert), ssl_keyfile=str(settings.tls_key))
    # proxy_headers off: the address a client is seen at is its TCP peer's, whatever an
    # X-Forwarded-For or Forwarded header says (uvicorn's default trusts them from
    # 127.0.0.1 or from FORWARDED_ALLOW_IPS): the access rules' ips, the source address of
    # station seats and the sign-in limit go by it
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level="warning",
        lifespan="on",
        timeout_keep_alive=75,
        access_log=False,
        proxy_headers=False,
        **kwargs,
    )
    console.print("License server stopped.", highlight=False)


licenses.register(app, SERVER)


# ------------------------------------------------------------ talking to a running server


def _admin(url: str | None, token: str | None, data: Path | None) -> tuple[str, dict[str, str]]:
    url = (url or DEFAULT_URL).rstrip("/")
    token = token or os.environ.get("LICENTIA_SERVER_ADMIN_TOKEN")
    if not token:
        path = _data(data) / "admin.token"
        try:
            token = path.read_text().strip()
        except OSError:
            fail(f"no admin token: pass --token, set LICENTIA_SERVER_ADMIN_TOKEN, or run this where {path} is")
    return url, {"Authorization": f"Bearer {token}"}


def _call(method: str, url: str, path: str, headers: dict[str, str]) -> Any:
    import httpx

    ca = os.environ.get("LICENTIA_CA_FILE")
    verify: Any = True
    if ca:
        import ssl

        verify = ssl.create_default_context(cafile=ca)
    if not url.startswith(("http://", "https://")):
        fail(f"the license server's URL {url!r} must start with http:// or https://: give http://{url} (--url)")
    try:
        r = httpx.request(method, url + path, headers=headers, timeout=15, verify=verify, trust_env=False)
    except httpx.HTTPError as exc:
        fail(f"cannot reach the license server at {url} ({exc.__class__.__name__}): is it running? (--url)")
    if r.status_code == 401:
        fail("the server refused the admin token")
    if r.status_code >= 400:
        fail(f"the server answered HTTP {r.status_code}: {r.text[:200]}")
    return r.json()


@app.command()
def status(
    url: UrlOpt = None,
    token: TokenOpt = None,
    data: DataOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
) -> None:
    """Licenses, seats in use, sessions and borrowed seats of a running server."""
    from rich.table import Table

    def go() -> None:
        base, headers = _admin(url, token, data)
        s = _call("GET", base, "/api/v1/admin/status", headers)
        if as_json:
            print(json.dumps(s, indent=1))
            return
        srv = s["server"]
        console.print(
            f"containers {', '.join(srv['containers']) or '-'} · config version {srv['config_version']}"
            + (f" · [red]config error: {srv['config_error']}[/]" if srv.get("config_error") else "")
            + f" · lease TTL {srv['lease_ttl']} s · linger {srv['linger']} s",
            highlight=False,
        )
        t = Table(title="licenses")
        for col in ("firm", "product", "license", "text", "seats", "in use", "expires", "status"):
            t.add_column(col)
        for lic in s["licenses"]:
            t.add_row(
                str(lic["firm_code"]),
                str(lic["product_code"]),
                str(lic["license_id"]),
                lic["text"],
                str(lic["seats"] or "no limit"),
                str(lic["in_use"]),
                _when(lic["expires"]),
                lic["status"],
            )
        console.print(t)
        t = Table(title="sessions")
        for col in ("lease", "user", "host", "address", "product", "mode", "since", "state"):
            t.add_column(col)
        for x in s["sessions"]:
            t.add_row(
                x["lease_id"],
                x["user"],
                x["host"],
                x["ip"],
                f"{x['firm_code']}:{x['product_code']}",
                x["mode"],
                _when(x["since"]),
                x["state"],
            )
        console.print(t)
        t = Table(title="borrowed")
        for col in ("borrow", "user", "host", "container", "product", "since", "until"):
            t.add_column(col)
        for x in s["borrowed"]:
            t.add_row(
                x["lease_id"],
                x["user"],
                x["host"],
                x["borrower"] or "-",
                f"{x['firm_code']}:{x['product_code']}",
                _when(x["since"]),
                _when(x["expires"]),
            )
        console.print(t)

    run_guarded(go)


@app.command("release")
def release_session(
    lease_id: Annotated[str, typer.Argument(help="The session's lease id (see 'licentia server status').")],
    url: UrlOpt = None,
    token: TokenOpt = None,
    data: DataOpt = None,
) -> None:
    """Release a session (or a borrowed seat) on a running server; its client cannot renew it."""

    def go() -> None:
        base, headers = _admin(url, token, data)
        done = _call("DELETE", base, f"/api/v1/admin/sessions/{lease_id}", headers)
        console.print("released" if done.get("released") else f"no live session {lease_id}")

    run_guarded(go)


@app.command()
def reload(url: UrlOpt = None, token: TokenOpt = None, data: DataOpt = None) -> None:
    """Reload a running server's config (as SIGHUP does) and look for new licenses."""

    def go() -> None:
        base, headers = _admin(url, token, data)
        done = _call("POST", base, "/api/v1/admin/reload", headers)
        if done.get("config_error"):
            fail(f"config not reloaded: {done['config_error']}")
        console.print(f"config version {done['config_version']}")

    run_guarded(go)


# ------------------------------------------------------------ usage


def _time(text: str | None, default: int) -> int:
    if not text:
        return default
    if text.isdigit():
        return int(text)
    try:
        value = _dt.datetime.fromisoformat(text)
    except ValueError:
        fail(f"{text!r} is not a date: give YYYY-MM-DD, an ISO date-time, or Unix seconds")
    if value.tzinfo is None:
        value = value.replace(tzinfo=_dt.UTC)
    return int(value.timestamp())


@usage_app.callback()
def usage(
    ctx: typer.Context,
    start: Annotated[
        str | None, typer.Option("--from", help="From (inclusive): YYYY-MM-DD, ISO date-time or Unix seconds.")
    ] = None,
    end: Annotated[str | None, typer.Option("--to", help="To (exclusive); default: now.")] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help='Print JSON ({"errorCode": 0, "licenseUsageList": [...]}).')
    ] = False,
    as_csv: Annotated[bool, typer.Option("--csv", help="Print CSV.")] = False,
    events: Annotated[
        bool, typer.Option("--events", help="Every raw event (access, renew, release, deny, ...).")
    ] = False,
    data: DataOpt = None,
) -> None:
    """Usage: one row per access (access and release time, seconds) and per denial."""
    if ctx.invoked_subcommand is not None:
        return

    def go() -> None:
        from ..runtime import get_runtime
        from ..seats import SeatEngine
        from ..seats.store import SqliteSeatStore
        from ..seats.usage import to_csv

        db = _data(data) / "seats.db"
        if not db.exists():
            fail(f"no usage log in {_data(data)} (seats.db is missing): pass --data DIR")
        now = get_runtime().clock()
        store = SqliteSeatStore(db, readonly=True)
        try:
            engine = SeatEngine(store, clock=lambda: now)
            rows = engine.usage(_time(start, 0), _time(end, now + 1), events=events)
        finally:
            store.close()
        if as_csv and not events:
            print(to_csv(rows), end="")
        elif as_json or as_csv:
            key = "events" if events else "licenseUsageList"
            print(json.dumps({"errorCode": 0, key: rows}, indent=1))
        else:
            from rich.table import Table

            t = Table(title="license usage")
            cols = (
                ("event", "time", "leaseId")
                if events
                else (
                    "accessTime",
                    "releaseTime",
                    "seconds",
                    "success",
                    "fail",
                    "invalid",
                    "firmCode",
                    "productCode",
                    "featureCode",
                    "ticketLicenseId",
                    "userIdentification",
                )
            )
            for col in cols:
                t.add_column(col)
            for r in rows:
                t.add_row(*("" if r.get(c) is None else str(r.get(c)) for c in cols))
            console.print(t)

    run_guarded(go)


def _anchor_keys(data: Path | None) -> Any:
    """The firm keys of the server's container slots (None when its containers do not open here)."""
    from ..core.errors import LicentiaError
    from ..server.core import firm_keys

    try:
        keys: dict[int, Any] = {}
        for container in _server_runtime(ServerData(data)).containers(rescan=True).values():
            if not isinstance(container, LicentiaError):
                keys.update(firm_keys(container))
        return keys
    except (LicentiaError, OSError):
        return None


@usage_app.command("verify")
def usage_verify(data: DataOpt = None) -> None:
    """Check the usage log's hash chain, its signature by the server's container key, and
    the log against the last anchor License Central signed for it."""
    from ..server.core import verify_usage_offline

    def go() -> None:
        result = verify_usage_offline(_data(data), _anchor_keys(data))
        anchor = result.get("anchor")
        if anchor is not None:
            console.print(
                f"anchored at License Central through event {anchor['seq']} ({_when(anchor['time'])} UTC)",
                highlight=False,
            )
        if result["ok"]:
            console.print(
                f"usage log intact: {result['events']} event(s)"
                + (f", {result['first']}..{result['last']}" if result["events"] else ""),
                highlight=False,
            )
            return
        for problem in result["problems"]:
            _common.err_console.print(f"  {problem}", highlight=False)
        fail("the usage log was altered: " + "; ".join(result["problems"][:3]))

    run_guarded(go)


@usage_app.command("export")
def usage_export(
    output: Annotated[
        Path,
        typer.Option(
            "-o",
            "--output",
            help="Upload file to write; several (at most 1000 events each) are FILE-1, FILE-2, ... in order.",
        ),
    ],
    data: DataOpt = None,
) -> None:
    """Offline: write the usage log's upload to License Central (every event after its last
    anchor). Submit each file in order with 'licentia depot submit FILE --central URL -o
    anchor.json', then record the answer here with 'licentia server usage anchor anchor.json'."""
    from ..server.core import export_usage

    def go() -> None:
        docs = export_usage(_data(data), _server_runtime(ServerData(data)))
        if not docs:
            console.print("Nothing to upload: License Central holds an anchor of every event.", highlight=False)
            return
        for i, doc in enumerate(docs, 1):
            target = output if len(docs) == 1 else output.with_name(f"{output.stem}-{i}{output.suffix}")
            licenses.write_file(target, json.dumps(doc, indent=1, sort_keys=True).encode() + b"\n")
            p = doc["payload"]
            console.print(
                f"Usage upload written to {target}: events {p['base_seq'] + 1}..{p['head_seq']}. Submit it with "
                f"'licentia depot submit {target.name} --central URL -o anchor.json'"
                + (", in order," if len(docs) > 1 else "")
                + " and record the anchor with 'licentia server usage anchor anchor.json'.",
                highlight=False,
                markup=False,
            )

    run_guarded(go)


@usage_app.command("anchor")
def usage_anchor(
    files: Annotated[list[Path], typer.Argument(help="Anchor file(s) License Central answered, in order.")],
    data: DataOpt = None,
) -> None:
    """Offline: record the anchor(s) License Central answered to usage uploads (checked
    against the firm keys of the server's container and the local log)."""
    from ..runtime import activation
    from ..server.core import record_anchor_file

    def go() -> None:
        rt = _server_runtime(ServerData(data))
        for file in files:
            anchor = record_anchor_file(_data(data), rt, activation.read_document(file))
        console.print(
            f"Usage log anchored at License Central through event {anchor.seq} ({_when(anchor.time)} UTC).",
            highlight=False,
        )

    run_guarded(go)


# ------------------------------------------------------------ proxy of an enterprise cloud container


def _proxy_links(data: Path | None, firm_code: int | None) -> list[Any]:
    from ..server import proxy

    found = [x for x in proxy.links(_data(data)) if (firm_code is None or x.firm_code == firm_code) and not x.ended]
    if not found:
        fail("this license server is no proxy" + (f" of firm {firm_code}" if firm_code else "") + ": run "
             "'licentia server proxy link URL CODE' with the code your group admin made")  # fmt: skip
    return found


def _proxy_line(found: Any) -> str:
    p = (found.grant or {}).get("payload") or {}
    seats = ", ".join(f"product {x['product_code']}: {x['seats']} seat(s)" for x in p.get("licenses") or []) or "none"
    return (
        f"firm {found.firm_code} at {found.central}: group {p.get('group')}, proxy {p.get('proxy')}, "
        f"{len(p.get('members') or [])} member(s); {seats}; serves until {_when(p.get('until'))}"
    ) + (" (ended: link again with a new code)" if found.ended else "")


ProxyFirmOpt = Annotated[int | None, typer.Option("--firm-code", help="The firm (when linked to several).")]


@proxy_app.command("link")
def proxy_link(
    central: Annotated[str, typer.Argument(help="License Central's URL.")],
    code: Annotated[str, typer.Argument(help="The link code your group's admin made ('licentia cloud proxy create').")],
    data: DataOpt = None,
) -> None:
    """Link this license server, once, as a proxy of a group's cloud container (the code binds it to this machine)."""

    def go() -> None:
        from ..server import proxy

        found = proxy.link(_data(data), _runtime(data), central, code)
        console.print(f"Linked: {_proxy_line(found)}", highlight=False)
        console.print("A running server serves it now and refreshes by itself.", highlight=False)

    _common.guard_central(go)


@proxy_app.command("refresh")
def proxy_refresh(data: DataOpt = None, firm_code: ProxyFirmOpt = None) -> None:
    """Refresh now: seats, licenses and members from License Central (the running server does it by itself)."""

    def go() -> None:
        from ..server import proxy

        rt = _runtime(data)
        for found in _proxy_links(data, firm_code):
            console.print(f"Refreshed: {_proxy_line(proxy.refresh(_data(data), rt, found))}", highlight=False)

    _common.guard_central(go)


@proxy_app.command("status")
def proxy_status(
    data: DataOpt = None, as_json: Annotated[bool, typer.Option("--json", help="JSON output.")] = False
) -> None:
    """What this server proxies: group, members, seats and until when it serves them without License Central."""

    def go() -> None:
        from ..server import proxy

        found = proxy.links(_data(data))
        if as_json:
            typer.echo(json.dumps([{"firm_code": x.firm_code, "central": x.central, "grant": x.grant} for x in found]))
            return
        if not found:
            console.print("This license server is no proxy.", highlight=False)
        for x in found:
            console.print(_proxy_line(x), highlight=False)

    run_guarded(go)


@proxy_app.command("unlink")
def proxy_unlink(data: DataOpt = None, firm_code: ProxyFirmOpt = None) -> None:
    """End the proxy: its seats go back to the group's cloud container, its licenses leave this server."""

    def go() -> None:
        from ..server import proxy

        rt = _runtime(data)
        for found in _proxy_links(data, firm_code):
            proxy.unlink(_data(data), rt, found)
            console.print(f"Unlinked from firm {found.firm_code}: its seats are back in the cloud.", highlight=False)

    _common.guard_central(go)
