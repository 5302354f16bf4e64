"""``licentia vendor ...``: the vendor's commands against License Central's REST API.

Central's address comes from ``--central`` or LICENTIA_CENTRAL_URL (default
http://127.0.0.1:8480), the API key from ``--api-key`` or LICENTIA_API_KEY.
Commands that create something print its id alone on stdout, so scripts can
capture it; ``list`` commands print a table, or with ``--json`` Central's answer;
everything else is said on stderr. Calls go through ``licentia.client``; a failed one
is a single line on stderr and exit code 1.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, fields
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from typer.models import OptionInfo

from ..core.encoding import parse_duration
from . import _common, usage_cmd

if TYPE_CHECKING:  # pragma: no cover
    from ..client import CentralClient

DEFAULT_CENTRAL = "http://127.0.0.1:8480"

app = typer.Typer(no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)
firm_app = typer.Typer(no_args_is_help=True, help="Firms and their signing keys.")
apikey_app = typer.Typer(no_args_is_help=True, help="API keys (admin key needed).")
item_app = typer.Typer(no_args_is_help=True, help="Items: what a ticket licenses.")
customer_app = typer.Typer(no_args_is_help=True, help="Customers.")
ticket_app = typer.Typer(no_args_is_help=True, help="Tickets: one per license.")
container_app = typer.Typer(no_args_is_help=True, help="Containers seen by Central.")
product_key_app = typer.Typer(no_args_is_help=True, help="Product keys for protecting code and data.")
app.add_typer(firm_app, name="firm")
app.add_typer(apikey_app, name="apikey")
app.add_typer(item_app, name="item")
app.add_typer(customer_app, name="customer")
app.add_typer(ticket_app, name="ticket")
app.add_typer(container_app, name="container")
app.add_typer(product_key_app, name="product-key")
app.command("usage")(usage_cmd.usage)

CentralOpt = Annotated[
    str | None,
    typer.Option(
        "--central", envvar="LICENTIA_CENTRAL_URL", help=f"License Central's URL (default {DEFAULT_CENTRAL})."
    ),
]
KeyOpt = Annotated[str | None, typer.Option("--api-key", envvar="LICENTIA_API_KEY", help="API key (admin or vendor).")]
FirmOpt = Annotated[int | None, typer.Option("--firm-code", help="The firm (needed only with the admin key).")]
JsonOpt = Annotated[
    bool, typer.Option("--json", help="Print Central's answer as one JSON document instead of a table.")
]
#: what a list shows unless --limit says otherwise, and the most Central sends at once
PAGE_SIZE = 100
MAX_PAGE = 1000
LimitOpt = Annotated[int, typer.Option("--limit", min=1, max=MAX_PAGE, help=f"Rows to list (at most {MAX_PAGE}).")]
OffsetOpt = Annotated[
    int, typer.Option("--offset", min=0, help="Rows to skip: with --limit, pages through a long list.")
]


def _client(central: str | None, api_key: str | None, *, need_key: bool = True) -> CentralClient:
    from ..client import CentralClient

    if need_key and not api_key:
        _common.fail("no API key: set LICENTIA_API_KEY or pass --api-key")
    return CentralClient(central or DEFAULT_CENTRAL, api_key=api_key)


def _call(
    central: str | None,
    api_key: str | None,
    method: str,
    path: str,
    body: Any = None,
    params: dict[str, str | int] | None = None,
) -> Any:
    """One call with the vendor's API key: Central's JSON answer."""
    with _client(central, api_key) as client:
        return client.request(method, path, json=body, params=params)


def firm_query(firm_code: int | None) -> dict[str, str | int] | None:
    """The query that names the firm: with the admin key only (a vendor key names its own)."""
    return {"firm_code": firm_code} if firm_code is not None else None


def _guard(func: Callable[[], None]) -> None:
    """Run a command: a failed call to Central is one line on stderr and exit code 1."""
    _common.guard_central(func)


def _show(data: Any) -> None:
    _common.console.print_json(json.dumps(data))


def _note(text: str) -> None:
    _common.err_console.print(text, highlight=False)


def _out(text: str) -> None:
    typer.echo(text)


def _when(ts: int | None) -> str:
    if ts is None:
        return "-"
    return _dt.datetime.fromtimestamp(ts, _dt.UTC).strftime("%Y-%m-%d %H:%M")


@dataclass(frozen=True)
class Column:
    """A column of a list's table: its heading, its cell from one row of Central's
    answer, and whether a long cell may wrap (names, on a narrow terminal)."""

    heading: str
    cell: Callable[[dict[str, Any]], Any]
    wrap: bool = False


def _list(
    central: str | None,
    api_key: str | None,
    what: str,
    path: str,
    columns: list[Column],
    *,
    as_json: bool,
    limit: int,
    offset: int,
    params: dict[str, Any] | None = None,
) -> None:
    """One page of a list from Central: as a table on stdout, or with ``as_json``
    Central's answer (one JSON array); what else to know goes to stderr."""
    from rich import box
    from rich.table import Table
    from rich.text import Text

    query: dict[str, str | int] = {k: v for k, v in (params or {}).items() if v is not None}
    rows = _call(central, api_key, "GET", path, params={**query, "limit": limit, "offset": offset})
    if as_json:
        _out(json.dumps(rows, indent=1))
    elif not rows:
        _note(f"no {what}" + (f" after the first {offset}" if offset else ""))
    else:
        table = Table(
            title=f"{what} of firm {rows[0]['firm_code']}", title_justify="left", box=box.SIMPLE_HEAD, highlight=False
        )
        for col in columns:
            table.add_column(col.heading, no_wrap=not col.wrap)
        for row in rows:
            table.add_row(*(Text("-" if (v := col.cell(row)) is None else str(v)) for col in columns))
        _common.console.print(table)
    if len(rows) == limit:
        _note(f"{len(rows)} {what} listed; there may be more: --offset {offset + limit} lists the next ones")


# ---------------------------------------------------------------- firms


@firm_app.command("create")
def firm_create(
    code: Annotated[int, typer.Option("--code", help="Firm code (1..4294967295).")],
    name: Annotated[str, typer.Option("--name", help="Firm name.")],
    central: CentralOpt = None,
    api_key: KeyOpt = None,
) -> None:
    """Create a firm; Central makes its signing key (admin key)."""

    def run() -> None:
        firm = _call(central, api_key, "POST", "/firms", {"code": code, "name": name})
        _note(f"firm {firm['code']} ({firm['name']}) created, signing key {firm['keys'][0]['kid']}")
        _out(str(firm["code"]))

    _guard(run)


@firm_app.command("show")
def firm_show(
    code: Annotated[int, typer.Argument(help="Firm code.")],
    central: CentralOpt = None,
    api_key: KeyOpt = None,
) -> None:
    """Show a firm and its keys."""
    _guard(lambda: _show(_call(central, api_key, "GET", f"/firms/{code}")))


@firm_app.command("set-retention")
def firm_set_retention(
    days: Annotated[int, typer.Argument(min=1, max=3650, help="Days to keep usage events (default 400).")],
    code: Annotated[int, typer.Option("--code", help="Firm code.")],
    central: CentralOpt = None,
    api_key: KeyOpt = None,
) -> None:
    """Set how long License Central keeps the firm's usage events (by access time)."""

    def run() -> None:
        firm = _call(central, api_key, "PATCH", f"/firms/{code}", {"usage_retention_days": days})
        _note(f"firm {firm['code']} keeps its usage events {firm['usage_retention_days']} days")
        _out(str(firm["usage_retention_days"]))

    _guard(run)


class KeyFormat(StrEnum):
    pem = "pem"
    python = "python"


@firm_app.command("public-key")
def firm_public_key(
    code: Annotated[int, typer.Argument(help="Firm code.")],
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="Write the key(s) to this file (default: stdout).")
    ] = None,
    fmt: Annotated[
        KeyFormat,
        typer.Option(
            "--format",
            help="pem: the PEM blocks; python: a constant FIRM_<CODE>_KEYS to paste into the app's code "
            "and pass to licentia.trust().",
        ),
    ] = KeyFormat.pem,
    central: CentralOpt = None,
) -> None:
    """Fetch the firm's published public keys (active, staged and previous; not retired), to pin
    in the vendor's app (no API key). Pin them in code (--format python): a key file shipped
    next to the app can be replaced by the end user, together with a self-signed license."""

    def run() -> None:
        with _client(central, None, need_key=False) as client:
            if fmt is KeyFormat.python:
                text, keys = _python_keys(code, client.request("GET", f"/firms/{code}/public-key", authorized=False))
            else:
                text, keys = client.firm_public_pem(code), []
        if fmt is KeyFormat.python and not any(k.get("staged") for k in keys):
            _note(
                f"firm {code} has no staged key: apps pinned with this constant refuse licenses signed after "
                f"the next rotation. Stage the next key first ('licentia vendor firm rotate-key {code} --stage')"
            )
        if output is None:
            typer.echo(text, nl=False)
            return
        output.write_text(text)
        what = f" as {_constant(code)}" if fmt is KeyFormat.python else ""
        _note(f"{text.count('BEGIN PUBLIC KEY')} public key(s) of firm {code} written to {output}{what}")

    _guard(run)


def _work_tree(path: Path) -> Path | None:
    """The git work tree a file written at ``path`` would be in: the nearest directory,
    from the file's own directory up, that holds a ``.git`` entry (the directory of a
    repository, or the file of a linked work tree or submodule); None outside any."""
    where = path.absolute().parent.resolve()
    for directory in (where, *where.parents):
        if os.path.lexists(directory / ".git"):
            return directory
    return None


def _constant(code: int) -> str:
    return f"FIRM_{code}_KEYS"


def _python_keys(code: int, view: Any) -> tuple[str, list[dict[str, Any]]]:
    """The firm's published keys (every key not retired) as Python source: one string
    constant of PEM blocks, oldest first, for ``licentia.trust(code, FIRM_<CODE>_KEYS)``.
    Each key is checked against its key id and written out again from the parsed key, so
    the constant holds nothing but the keys."""
    from ..core import hazmat

    if not isinstance(view, dict) or not isinstance(view.get("keys"), list):
        raise ValueError("License Central sent no key list: check --central points at Central")
    keys = [k for k in view["keys"] if not k.get("retired")]
    if not keys:
        raise ValueError(f"firm {code} publishes no key")
    blocks, kids = [], []
    for k in keys:
        key = hazmat.load_public_pem(str(k["pem"]))
        if hazmat.key_id(key) != k["kid"]:
            raise ValueError(f"License Central sent key {k['kid']} of firm {code} with another key's PEM")
        blocks.append(hazmat.public_pem(key))
        state = " active" if k.get("active") else " staged" if k.get("staged") else ""
        kids.append(f"{k['kid']}{state}")
    name = _constant(code)
    text = (
        f"# licentia: firm {code}'s public keys (kid {', '.join(kids)}), pinned in code.\n"
        f"# licentia.trust({code}, {name})\n"
        f'{name} = """\\\n' + "".join(blocks) + '"""\n'
    )
    return text, keys


@product_key_app.command("export")
def product_key_export(
    *,
    firm_code: Annotated[int, typer.Option("--firm-code", help="The firm.")],
    product_code: Annotated[int, typer.Option("--product-code", help="The product.")],
    version: Annotated[int, typer.Option("--key-version", help="Product key version.")] = 1,
    output: Annotated[Path, typer.Option("-o", "--output", help="Key file to write (mode 0600).")],
    force: Annotated[
        bool,
        typer.Option("--force", help="Write the key file even inside a git work tree (where it could be committed)."),
    ] = False,
    central: CentralOpt = None,
    api_key: KeyOpt = None,
) -> None:
    """Export a product key as a firm-signed key file for `licentia protect --product-key-file`.
    The file is not written inside a git work tree unless --force is given."""

    def run() -> None:
        from ..container.files import write_atomic
        from ..core import keyfile

        tree = None if force else _work_tree(output)
        if tree is not None:
            _common.fail(
                f"{output} is inside the git work tree {tree}: the product key would sit there in clear, one "
                "commit away from the repository; write it outside the work tree, or pass --force"
            )
        with _client(central, api_key) as client:
            doc = client.product_key(firm_code, product_code, version)
        write_atomic(output, keyfile.dumps(doc), mode=0o600)
        _note(
            f"product key v{version} of firm {firm_code}, product {product_code} written to {output} (0600): "
            "keep it on the build machine, never ship it"
        )

    _guard(run)


@firm_app.command("rotate-key")
def firm_rotate_key(
    code: Annotated[int, typer.Argument(help="Firm code.")],
    stage: Annotated[
        bool,
        typer.Option(
            "--stage",
            help="Publish the next key, endorsed by the current one, without signing with it yet; a staged key "
            "already there is kept and printed. The next rotate-key without --stage activates it.",
        ),
    ] = False,
    central: CentralOpt = None,
    api_key: KeyOpt = None,
) -> None:
    """Rotate the firm's signing key: activate the staged key, or a new one, endorsed by the
    current one. With --stage, publish the next key first, so apps pin it before it signs."""

    def run() -> None:
        params: dict[str, str | int] | None = {"stage": "true"} if stage else None
        firm = _call(central, api_key, "POST", f"/firms/{code}/keys/rotate", params=params)
        if stage:
            staged = next((k for k in firm["keys"] if k.get("staged")), None)
            if staged is None:
                _common.fail(
                    "License Central staged no key (it may be older than this command and have rotated the key): "
                    f"check 'licentia vendor firm show {code}'"
                )
            _note(
                f"firm {code}: staged key {staged['kid']} published, not signing yet; pin it in the apps "
                f"('licentia vendor firm public-key {code} --format python'), then 'rotate-key {code}' activates it"
            )
            _out(staged["kid"])
            return
        active = next(k for k in firm["keys"] if k["active"])
        _note(f"firm {code}: new active signing key {active['kid']}; older keys stay valid through its endorsement")
        _out(active["kid"])

    _guard(run)


# ---------------------------------------------------------------- API keys


@apikey_app.command("create")
def apikey_create(
    firm_code: Annotated[int, typer.Option("--firm-code", help="The vendor's firm.")],
    label: Annotated[str | None, typer.Option("--label", help="A note on whose key this is.")] = None,
    central: CentralOpt = None,
    api_key: KeyOpt = None,
) -> None:
    """Create a vendor API key for one firm; the key is printed once (admin key)."""

    def run() -> None:
        made = _call(central, api_key, "POST", "/apikeys", {"firm_code": firm_code, "label": label})
        _note(f"vendor key {made['key_id']} for firm {firm_code} (shown only now: store it safely)")
        _out(made["key"])

    _guard(run)


@apikey_app.command("revoke")
def apikey_revoke(
    key_id: Annotated[str, typer.Argument(help="The key's id.")],
    central: CentralOpt = None,
    api_key: KeyOpt = None,
) -> None:
    """Revoke an API key (admin key)."""

    def run() -> None:
        _call(central, api_key, "POST", f"/apikeys/{key_id}/revoke")
        _note(f"API key {key_id} revoked")

    _guard(run)


# ---------------------------------------------------------------- items

TERMS = "License options"
Days = int | None
UnixTime = int | None


@dataclass(frozen=True)
class NewItem:
    """What an item is: its name, product, features, binding level and key versions."""

    name: Annotated[str, typer.Option("--name", help="Item name (the license text).")]
    product_code: Annotated[
        int | None, typer.Option("--product-code", help="Product code (not needed with --module-of).")
    ] = None
    item_id: Annotated[str | None, typer.Option("--item-id", help="Item id like F-00002-145 (default: generated).")] = (
        None
    )
    feature_map: Annotated[str, typer.Option("--feature-map", help="Feature bits (decimal or 0x hex).")] = "0xFFFFFFFF"
    level: Annotated[str, typer.Option("--level", help="Binding level: loose, medium or tight.")] = "medium"
    key_version: Annotated[
        list[int] | None, typer.Option("--key-version", help="Product key version (repeatable; default 1).")
    ] = None
    module_of: Annotated[
        str | None, typer.Option("--module-of", help="Make a module item adding features to this item.")
    ] = None
    on_manipulation: Annotated[
        str | None,
        typer.Option(
            "--on-manipulation",
            help="When Central sees a container's files restored: rebase (re-issue with Central's counts; the "
            "default) or withdraw (take the license back until you clear the container).",
        ),
    ] = None
    flag_window_days: Annotated[
        int | None,
        typer.Option(
            "--flag-window-days", help="A second flag of a ticket within this many days withdraws it (default 90)."
        ),
    ] = None
    cloud: Annotated[
        bool,
        typer.Option("--cloud", help="Its tickets may be activated into cloud containers (Central holds them)."),
    ] = False

    def feature_bits(self) -> int:
        try:
            return int(self.feature_map, 0)
        except ValueError:
            _common.fail(f"--feature-map {self.feature_map!r} is not a number: give decimal or 0x hex")


def _term(flag: str, text: str) -> OptionInfo:
    """An option of the license terms (its own panel in --help)."""
    option: OptionInfo = typer.Option(flag, help=text, rich_help_panel=TERMS)
    return option


@dataclass(frozen=True)
class LicenseTerms:
    """The options every license of an item carries (unset ones are left out)."""

    expires_days: Annotated[Days, _term("--expires-days", "Expires this many days after first activation.")] = None
    expires: Annotated[UnixTime, _term("--expires", "Expires at this Unix time.")] = None
    not_before: Annotated[UnixTime, _term("--not-before", "Valid from this Unix time.")] = None
    usage_period_days: Annotated[Days, _term("--usage-period-days", "Usage period from first use, in days.")] = None
    units: Annotated[int | None, _term("--units", "Unit counter.")] = None
    quantity: Annotated[int | None, _term("--quantity", "Quantity (seats) per license (default 1).")] = None
    maintenance_days: Annotated[Days, _term("--maintenance-days", "Maintenance period from first activation.")] = None
    maintenance_until: Annotated[UnixTime, _term("--maintenance-until", "Maintenance until this Unix time.")] = None
    sync_interval_days: Annotated[
        Days,
        _term(
            "--sync-interval-days",
            "Must sync at least this often (default 30 with units, a time limit or a quantity above 1; 0: never).",
        ),
    ] = None
    report_interval_hours: Annotated[
        int | None,
        _term(
            "--report-interval-hours",
            "Report usage this often while Central is reachable (default 24 with units or a time limit; 0: never).",
        ),
    ] = None
    metering: Annotated[
        str | None, _term("--metering", "local (the container counts units) or online (Central counts each).")
    ] = None
    offline_allowance: Annotated[
        int | None, _term("--offline-allowance", "Online metering: units allowed while Central is unreachable.")
    ] = None
    max_grace: Annotated[
        str | None,
        _term(
            "--max-grace",
            "Grace a license server may grant with a seat, e.g. 3d or 12h (a protected package's "
            "--grace, held offline while the seat stays counted; default: none on network seats).",
        ),
    ] = None
    user_seats: Annotated[
        str | None,
        _term(
            "--user-seats",
            "Cloud items used over REST (user licensing): a seat per person (person, the default) or per "
            "device the caller names (device).",
        ),
    ] = None
    data: Annotated[str | None, _term("--data", "Vendor data (base64).")] = None
    local_only: Annotated[
        bool, _term("--local-only", "Never served by a network license server (local containers only).")
    ] = False

    def options(self) -> dict[str, Any]:
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values["local_only"] = True if self.local_only else None
        if self.max_grace is not None:
            try:
                values["max_grace"] = parse_duration(self.max_grace)
            except ValueError as exc:
                _common.fail(f"--max-grace: {exc}")
        return {k: v for k, v in values.items() if v is not None}


def _item_body(item: NewItem, terms: LicenseTerms, firm_code: int | None) -> dict[str, Any]:
    body = {
        "firm_code": firm_code,
        "item_id": item.item_id,
        "name": item.name,
        "product_code": item.product_code,
        "feature_map": item.feature_bits(),
        "level": item.level,
        "key_versions": list(item.key_version or [1]),
        "module_of": item.module_of,
        "options": terms.options(),
        "on_manipulation": item.on_manipulation,
        "flag_window_days": item.flag_window_days,
        "cloud": item.cloud or None,
    }
    return {k: v for k, v in body.items() if v is not None}


@item_app.command("create")
@_common.spread
def item_create(
    item: NewItem,
    terms: LicenseTerms,
    firm_code: FirmOpt = None,
    central: CentralOpt = None,
    api_key: KeyOpt = None,
) -> None:
    """Create an item; prints its id."""

    def run() -> None:
        made = _call(central, api_key, "POST", "/items", _item_body(item, terms, firm_code))
        _note(f"item {made['item_id']} ({made['name']}), product {made['product_code']}, level {made['level']}")
        _out(made["item_id"])

    _guard(run)


@item_app.command("show")
def item_show(
    item_id: Annotated[str, typer.Argument(help="Item id.")],
    firm_code: FirmOpt = None,
    central: CentralOpt = None,
    api_key: KeyOpt = None,
) -> None:
    """Show an item."""
    params = firm_query(firm_code)

    def run() -> None:
        shown = _call(central, api_key, "GET", f"/items/{item_id}", params=params)
        _show(shown)
        if shown.get("expired"):
            _note(f"item {shown['item_id']} has expired: it is no longer sold or activated")
        elif shown.get("expires_in_days") is not None and shown["expires_in_days"] <= NEAR_DAYS:
            _note(f"item {shown['item_id']} expires in {shown['expires_in_days']} day(s)")

    _guard(run)


#: ``item show`` warns when an item's absolute expiry is this near
NEAR_DAYS = 30


def _expiry(item: dict[str, Any]) -> str:
    if item.get("expired"):
        return "expired"
    days = item.get("expires_in_days")
    return "-" if days is None else f"in {days} d"


ITEM_COLUMNS = [
    Column("item", lambda r: r["item_id"]),
    Column("name", lambda r: r["name"], wrap=True),
    Column("product", lambda r: r["product_code"]),
    Column("features", lambda r: f"0x{r['feature_map']:X}"),
    Column("level", lambda r: r["level"]),
    Column("keys", lambda r: ",".join(str(v) for v in r["key_versions"])),
    Column("module of", lambda r: r["module_of"]),
    Column("expires", _expiry),
]


@item_app.command("list")
def item_list(
    as_json: JsonOpt = False,
    limit: LimitOpt = PAGE_SIZE,
    offset: OffsetOpt = 0,
    firm_code: FirmOpt = None,
    central: CentralOpt = None,
    api_key: KeyOpt = None,
) -> None:
    """List the firm's items, by item id."""
    params = {"firm_code": firm_code}
    _guard(
        lambda: _list(
            central,
            api_key,
            "items",
            "/items",
            ITEM_COLUMNS,
            as_json=as_json,
            limit=limit,
            offset=offset,
            params=params,
        )
    )


# ---------------------------------------------------------------- customers


@customer_app.command("create")
def customer_create(
    name: Annotated[str, typer.Option("--name", help="Customer name.")],
    number: Annotated[str | None, typer.Option("--number", help="Customer number (default: generated).")] = None,
    email: Annotated[str | None, typer.Option("--email", help="E-mail address.")] = None,
    firm_code: FirmOpt = None,
    central: CentralOpt = None,
    api_key: KeyOpt = None,
) -> None:
    """Create a customer; prints the customer number."""

    def run() -> None:
        body = {"firm_code": firm_code, "number": number, "name": name, "email": email}
        made = _call(central, api_key, "POST", "/customers", {k: v for k, v in body.items() if v is not None})
        _note(f"customer {made['number']} ({made['name']})")
        _out(made["number"])

    _guard(run)


CUSTOMER_COLUMNS = [
    Column("number", lambda r: r["number"]),
    Column("name", lambda r: r["name"], wrap=True),
    Column("e-mail", lambda r: r["email"]),
]


@customer_app.command("list")
def customer_list(
    as_json: JsonOpt = False,
    limit: LimitOpt = PAGE_SIZE,
    offset: OffsetOpt = 0,
    firm_code: FirmOpt = None,
    central: CentralOpt = None,
    api_key: KeyOpt = None,
) -> None:
    """List the firm's customers, by customer number."""
    params = {"firm_code": firm_code}
    _guard(
        lambda: _list(
            central,
            api_key,
            "customers",
            "/customers",
            CUSTOMER_COLUMNS,
            as_json=as_json,
            limit=limit,
            offset=offset,
            params=params,
        )
    )


# ---------------------------------------------------------------- tickets


@ticket_app.command("create")
def ticket_create(
    customer: Annotated[str, typer.Option("--customer", help="Customer number.")],
    item: Annotated[list[str], typer.Option("--item", help="Item id (repeat for module items).")],
    count: Annotated[int, typer.Option("--count", help="Number of licenses: one ticket each.")] = 1,
    cloud_login: Annotated[
        str | None,
        typer.Option("--cloud-login", help="Activate the tickets into this account's personal cloud container."),
    ] = None,
    cloud_group: Annotated[
        str | None,
        typer.Option("--cloud-group", help="Activate the tickets into this group's (of the customer) cloud container."),
    ] = None,
    firm_code: FirmOpt = None,
    central: CentralOpt = None,
    api_key: KeyOpt = None,
) -> None:
    """Order licenses; prints one ticket id per line (with --cloud-login or --cloud-group,
    activated into that cloud container: the item must be made with --cloud)."""
    if cloud_login and cloud_group:
        _common.fail("give --cloud-login or --cloud-group, not both")

    def run() -> None:
        body: dict[str, Any] = {"customer": customer, "items": list(item), "quantity_of_licenses": count}
        if firm_code is not None:
            body["firm_code"] = firm_code
        order = _call(central, api_key, "POST", "/tickets", body)
        _note(f"order {order['order']}: {len(order['tickets'])} ticket(s) for customer {order['customer']}")
        for t in order["tickets"]:
            _out(t["ticket"])
        if cloud_login or cloud_group:
            target = {"login": cloud_login} if cloud_login else {"customer": customer, "group": cloud_group}
            for t in order["tickets"]:
                box = _call(
                    central,
                    api_key,
                    "POST",
                    f"/tickets/{t['ticket']}/cloud-activation",
                    {**target, **({"firm_code": firm_code} if firm_code is not None else {})},
                )
            _note(f"in cloud container {box['serial']} ({box['kind']}: {box.get('login') or box.get('group')})")

    _guard(run)


@ticket_app.command("show")
def ticket_show(
    ticket: Annotated[str, typer.Argument(help="Ticket id.")],
    central: CentralOpt = None,
    api_key: KeyOpt = None,
) -> None:
    """Show a ticket: state, container, options."""
    _guard(lambda: _show(_call(central, api_key, "GET", f"/tickets/{_ticket(ticket)}")))


@ticket_app.command("cloud-activate")
def ticket_cloud_activate(
    ticket: Annotated[str, typer.Argument(help="Ticket id.")],
    login: Annotated[str | None, typer.Option("--login", help="An account: its personal cloud container.")] = None,
    customer: Annotated[str | None, typer.Option("--customer", help="With --group: the customer.")] = None,
    group: Annotated[str | None, typer.Option("--group", help="A customer's group: its cloud container.")] = None,
    firm_code: FirmOpt = None,
    central: CentralOpt = None,
    api_key: KeyOpt = None,
) -> None:
    """Activate a ticket into an account's or a group's cloud container (made on first use)."""

    def run() -> None:
        body = {"login": login, "customer": customer, "group": group, "firm_code": firm_code}
        box = _call(
            central,
            api_key,
            "POST",
            f"/tickets/{_ticket(ticket)}/cloud-activation",
            {k: v for k, v in body.items() if v is not None},
        )
        _note(
            f"ticket {_ticket(ticket)} is in cloud container {box['serial']} "
            f"({box['kind']}: {box.get('login') or box.get('group')})"
        )
        _out(box["serial"])

    _guard(run)


@ticket_app.command("cloud-deactivate")
def ticket_cloud_deactivate(
    ticket: Annotated[str, typer.Argument(help="Ticket id.")],
    firm_code: FirmOpt = None,
    central: CentralOpt = None,
    api_key: KeyOpt = None,
) -> None:
    """Take a ticket out of the cloud container that holds it: it may be activated anew."""

    def run() -> None:
        params = firm_query(firm_code)
        box = _call(central, api_key, "POST", f"/tickets/{_ticket(ticket)}/cloud-deactivation", params=params)
        _note(f"ticket {_ticket(ticket)} left cloud container {box['serial']}")

    _guard(run)


@ticket_app.command("revoke")
def ticket_revoke(
    ticket: Annotated[str, typer.Argument(help="Ticket id.")],
    central: CentralOpt = None,
    api_key: KeyOpt = None,
) -> None:
    """Revoke a ticket: its license leaves the container at the next sync."""

    def run() -> None:
        shown = _call(central, api_key, "POST", f"/tickets/{_ticket(ticket)}/revoke")
        _note(f"ticket {shown['ticket']} revoked; it leaves container {shown['serial'] or '-'} at the next sync")

    _guard(run)


class TicketState(StrEnum):
    new = "new"
    activated = "activated"
    deactivated = "deactivated"
    revoked = "revoked"
    blocked = "blocked"


TICKET_COLUMNS = [
    Column("ticket", lambda r: r["ticket"]),
    Column("license", lambda r: r["license_id"]),
    Column("customer", lambda r: r["customer"]),
    Column("items", lambda r: ", ".join(r["items"]), wrap=True),
    Column("state", lambda r: r["state"]),
    Column("container", lambda r: r["serial"]),
    Column("created (UTC)", lambda r: _when(r["created"])),
    Column("activated (UTC)", lambda r: _when(r["activated"])),
]


@ticket_app.command("list")
def ticket_list(
    customer: Annotated[str | None, typer.Option("--customer", help="Only this customer's tickets (number).")] = None,
    item: Annotated[
        str | None, typer.Option("--item", help="Only tickets licensing this item (base or module).")
    ] = None,
    state: Annotated[TicketState | None, typer.Option("--state", help="Only tickets in this state.")] = None,
    as_json: JsonOpt = False,
    limit: LimitOpt = PAGE_SIZE,
    offset: OffsetOpt = 0,
    firm_code: FirmOpt = None,
    central: CentralOpt = None,
    api_key: KeyOpt = None,
) -> None:
    """List the firm's tickets, newest first: state, customer, items, container."""
    params = {"firm_code": firm_code, "customer": customer, "item": item, "state": state.value if state else None}
    _guard(
        lambda: _list(
            central,
            api_key,
            "tickets",
            "/tickets",
            TICKET_COLUMNS,
            as_json=as_json,
            limit=limit,
            offset=offset,
            params=params,
        )
    )


def _ticket(text: str) -> str:
    from ..core import codes

    try:
        return codes.normalize_ticket(text)
    except codes.InvalidCode as exc:
        _common.fail(f"ticket {text!r} is mistyped ({exc}): check it")


# ---------------------------------------------------------------- containers


def _flags(row: dict[str, Any]) -> str:
    if not row["flags"]:
        return "-"
    return f"{row['flags']} ({row['open_flags']} not reviewed)" if row["open_flags"] else str(row["flags"])


CONTAINER_COLUMNS = [
    Column("serial", lambda r: r["serial"]),
    Column("level", lambda r: r["level"]),
    Column("first seen (UTC)", lambda r: _when(r["first_seen"])),
    Column("last contact (UTC)", lambda r: _when(r["last_contact"])),
    Column("licenses", lambda r: r["licenses"]),
    Column("flagged", lambda r: "yes" if r["flagged"] else "no"),
    Column("flags", _flags),
]


@container_app.command("list")
def container_list(
    as_json: JsonOpt = False,
    limit: LimitOpt = PAGE_SIZE,
    offset: OffsetOpt = 0,
    firm_code: FirmOpt = None,
    central: CentralOpt = None,
    api_key: KeyOpt = None,
) -> None:
    """List the containers that have held the firm's licenses, newest first: level, first
    seen, last contact, the firm's licenses in each, manipulation flags."""
    params = {"firm_code": firm_code}
    _guard(
        lambda: _list(
            central,
            api_key,
            "containers",
            "/containers",
            CONTAINER_COLUMNS,
            as_json=as_json,
            limit=limit,
            offset=offset,
            params=params,
        )
    )


@container_app.command("show")
def container_show(
    serial: Annotated[str, typer.Argument(help="Container serial.")],
    firm_code: FirmOpt = None,
    central: CentralOpt = None,
    api_key: KeyOpt = None,
) -> None:
    """Show where a container stands for the firm: sequence numbers, generation, last contact,
    every manipulation Central saw (what it did, why, whether reviewed), and how far a license
    server's usage log in it is anchored at Central."""
    params = firm_query(firm_code)

    def run() -> None:
        shown = _call(central, api_key, "GET", f"/containers/{serial}", params=params)
        _show(shown)
        usage = shown.get("usage") or {}
        if usage.get("anchored_seq") is not None:
            _note(
                f"usage log anchored at License Central through event {usage['anchored_seq']} "
                f"({_when(usage['anchored_at'])} UTC); {usage['events']} usage rows of the firm stored"
            )
        if shown.get("flagged"):
            _note(f"container {serial} is flagged: review its flags, then 'licentia vendor container clear {serial}'")

    _guard(run)


@container_app.command("clear")
def container_clear(
    serial: Annotated[str, typer.Argument(help="Container serial.")],
    firm_code: FirmOpt = None,
    central: CentralOpt = None,
    api_key: KeyOpt = None,
) -> None:
    """Mark a container's manipulation flags reviewed; tickets withdrawn from it can be activated again,
    and a license server's usage log there starts a new chain at its next upload."""

    def run() -> None:
        body = {"firm_code": firm_code} if firm_code is not None else None
        done = _call(central, api_key, "POST", f"/containers/{serial}/clear", body)
        was = "was flagged" if done["was_flagged"] else "was not flagged"
        _note(f"container {serial} cleared for firm {done['firm_code']} ({was})")
        for ticket in done.get("unblocked", []):
            _note(f"ticket {ticket} unblocked: it can be activated again")
        if done.get("anchors_superseded"):
            _note("its usage log's anchors were set aside: the license server's next upload starts a new chain")

    _guard(run)
