"""``licentia vendor ...``: the vendor's commands against License Central's REST API.

Central's address comes from ``--central`` or LICENTIA_CENTRAL_URL (default
http://127.0.0.1:8480), the API key from ``--api-key`` or LICENTIA_API_KEY.
Commands that create something print its id alone on stdout, so scripts can
capture it; everything else is said on stderr.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, NoReturn

import typer

from . import _common

DEFAULT_CENTRAL = "http://127.0.0.1:8480"
API = "/api/v1"
TIMEOUT = 30.0

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

CentralOpt = typer.Option(
    None, "--central", envvar="LICENTIA_CENTRAL_URL", help=f"License Central's URL (default {DEFAULT_CENTRAL})."
)
KeyOpt = typer.Option(None, "--api-key", envvar="LICENTIA_API_KEY", help="API key (admin or vendor).")
FirmOpt = typer.Option(None, "--firm-code", help="The firm (needed only with the admin key).")


class CentralClient:
    def __init__(self, central: str | None, api_key: str | None, *, need_key: bool = True):
        self.base = (central or DEFAULT_CENTRAL).rstrip("/")
        if need_key and not api_key:
            _common.fail("no API key: set LICENTIA_API_KEY or pass --api-key")
        self.headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}

    def call(self, method: str, path: str, body: Any = None, params: dict[str, Any] | None = None) -> Any:
        import httpx

        url = self.base + API + path
        try:
            r = httpx.request(method, url, json=body, params=params, headers=self.headers, timeout=TIMEOUT)
        except httpx.HTTPError as exc:
            _common.fail(
                f"cannot reach License Central at {self.base} ({exc.__class__.__name__}): "
                "is it running? Set --central or LICENTIA_CENTRAL_URL"
            )
        if r.status_code >= 400:
            self._error(r)
        if r.headers.get("content-type", "").startswith("application/json"):
            return r.json()
        return r.text

    @staticmethod
    def _error(r: Any) -> NoReturn:
        try:
            err = r.json()["error"]
            _common.fail(f"{err['message']} ({err['code']})")
        except (ValueError, KeyError, TypeError):
            _common.fail(f"License Central answered HTTP {r.status_code}: check --central points at Central")


def _guard(func: Any, *args: Any) -> None:
    _common.run_guarded(func, *args)


def _show(data: Any) -> None:
    _common.console.print_json(json.dumps(data))


def _note(text: str) -> None:
    _common.err_console.print(text, highlight=False)


def _out(text: str) -> None:
    typer.echo(text)


# ---------------------------------------------------------------- firms


@firm_app.command("create")
def firm_create(
    code: int = typer.Option(..., "--code", help="Firm code (1..4294967295)."),
    name: str = typer.Option(..., "--name", help="Firm name."),
    central: str = CentralOpt,
    api_key: str = KeyOpt,
) -> None:
    """Create a firm; Central makes its signing key (admin key)."""

    def run() -> None:
        firm = CentralClient(central, api_key).call("POST", "/firms", {"code": code, "name": name})
        _note(f"firm {firm['code']} ({firm['name']}) created, signing key {firm['keys'][0]['kid']}")
        _out(str(firm["code"]))

    _guard(run)


@firm_app.command("show")
def firm_show(code: int = typer.Argument(..., help="Firm code."), central: str = CentralOpt, api_key: str = KeyOpt) -> None:
    """Show a firm and its keys."""
    _guard(lambda: _show(CentralClient(central, api_key).call("GET", f"/firms/{code}")))


@firm_app.command("public-key")
def firm_public_key(
    code: int = typer.Argument(..., help="Firm code."),
    output: Path = typer.Option(None, "-o", "--output", help="Write the PEM(s) to this file (default: stdout)."),
    central: str = CentralOpt,
) -> None:
    """Fetch the firm's public key(s) as PEM, to pin in the vendor's app (no API key)."""

    def run() -> None:
        pem = CentralClient(central, None, need_key=False).call("GET", f"/firms/{code}/public-key", params={"format": "pem"})
        if output is None:
            typer.echo(pem, nl=False)
            return
        output.write_text(pem)
        _note(f"{pem.count('BEGIN PUBLIC KEY')} public key(s) of firm {code} written to {output}")

    _guard(run)


@product_key_app.command("export")
def product_key_export(
    firm_code: int = typer.Option(..., "--firm-code", help="The firm."),
    product_code: int = typer.Option(..., "--product-code", help="The product."),
    version: int = typer.Option(1, "--key-version", help="Product key version."),
    output: Path = typer.Option(..., "-o", "--output", help="Key file to write (mode 0600)."),
    central: str = CentralOpt,
    api_key: str = KeyOpt,
) -> None:
    """Export a product key as a firm-signed key file for `licentia protect --product-key-file`."""

    def run() -> None:
        from ..container.files import write_atomic
        from ..core import keyfile

        doc = CentralClient(central, api_key).call(
            "GET", f"/firms/{firm_code}/products/{product_code}/keys/{version}"
        )
        write_atomic(output, keyfile.dumps(doc), mode=0o600)
        _note(
            f"product key v{version} of firm {firm_code}, product {product_code} written to {output} (0600): "
            "keep it on the build machine, never ship it"
        )

    _guard(run)


@firm_app.command("rotate-key")
def firm_rotate_key(code: int = typer.Argument(..., help="Firm code."), central: str = CentralOpt, api_key: str = KeyOpt) -> None:
    """Make a new active signing key, endorsed by the current one."""

    def run() -> None:
        firm = CentralClient(central, api_key).call("POST", f"/firms/{code}/keys/rotate")
        active = next(k for k in firm["keys"] if k["active"])
        _note(f"firm {code}: new active signing key {active['kid']}; older keys stay valid through its endorsement")
        _out(active["kid"])

    _guard(run)


# ---------------------------------------------------------------- API keys


@apikey_app.command("create")
def apikey_create(
    firm_code: int = typer.Option(..., "--firm-code", help="The vendor's firm."),
    label: str = typer.Option(None, "--label", help="A note on whose key this is."),
    central: str = CentralOpt,
    api_key: str = KeyOpt,
) -> None:
    """Create a vendor API key for one firm; the key is printed once (admin key)."""

    def run() -> None:
        made = CentralClient(central, api_key).call("POST", "/apikeys", {"firm_code": firm_code, "label": label})
        _note(f"vendor key {made['key_id']} for firm {firm_code} (shown only now: store it safely)")
        _out(made["key"])

    _guard(run)


@apikey_app.command("revoke")
def apikey_revoke(key_id: str = typer.Argument(..., help="The key's id."), central: str = CentralOpt, api_key: str = KeyOpt) -> None:
    """Revoke an API key (admin key)."""

    def run() -> None:
        CentralClient(central, api_key).call("POST", f"/apikeys/{key_id}/revoke")
        _note(f"API key {key_id} revoked")

    _guard(run)


# ---------------------------------------------------------------- items


@item_app.command("create")
def item_create(
    name: str = typer.Option(..., "--name", help="Item name (the license text)."),
    product_code: int = typer.Option(None, "--product-code", help="Product code (not needed with --module-of)."),
    item_id: str = typer.Option(None, "--item-id", help="Item id like F-00002-145 (default: generated)."),
    feature_map: str = typer.Option("0xFFFFFFFF", "--feature-map", help="Feature bits (decimal or 0x hex)."),
    level: str = typer.Option("medium", "--level", help="Binding level: loose, medium or tight."),
    key_version: list[int] = typer.Option(None, "--key-version", help="Product key version (repeatable; default 1)."),
    module_of: str = typer.Option(None, "--module-of", help="Make a module item adding features to this item."),
    expires_days: int = typer.Option(None, "--expires-days", help="Expires this many days after first activation."),
    expires: int = typer.Option(None, "--expires", help="Expires at this Unix time."),
    not_before: int = typer.Option(None, "--not-before", help="Valid from this Unix time."),
    usage_period_days: int = typer.Option(None, "--usage-period-days", help="Usage period from first use, in days."),
    units: int = typer.Option(None, "--units", help="Unit counter."),
    quantity: int = typer.Option(None, "--quantity", help="Quantity (seats) per license (default 1)."),
    maintenance_days: int = typer.Option(None, "--maintenance-days", help="Maintenance period from first activation."),
    maintenance_until: int = typer.Option(None, "--maintenance-until", help="Maintenance until this Unix time."),
    sync_interval_days: int = typer.Option(None, "--sync-interval-days", help="Must sync at least this often."),
    data: str = typer.Option(None, "--data", help="Vendor data (base64)."),
    local_only: bool = typer.Option(
        False, "--local-only", help="Never served by a network license server (local containers only)."
    ),
    firm_code: int = FirmOpt,
    central: str = CentralOpt,
    api_key: str = KeyOpt,
) -> None:
    """Create an item; prints its id."""

    def run() -> None:
        try:
            fmap = int(feature_map, 0)
        except ValueError:
            _common.fail(f"--feature-map {feature_map!r} is not a number: give decimal or 0x hex")
        options = {
            "expires_days": expires_days,
            "expires": expires,
            "not_before": not_before,
            "usage_period_days": usage_period_days,
            "units": units,
            "quantity": quantity,
            "maintenance_days": maintenance_days,
            "maintenance_until": maintenance_until,
            "sync_interval_days": sync_interval_days,
            "data": data,
            "local_only": True if local_only else None,
        }
        body = {
            "firm_code": firm_code,
            "item_id": item_id,
            "name": name,
            "product_code": product_code,
            "feature_map": fmap,
            "level": level,
            "key_versions": list(key_version or [1]),
            "module_of": module_of,
            "options": {k: v for k, v in options.items() if v is not None},
        }
        item = CentralClient(central, api_key).call("POST", "/items", {k: v for k, v in body.items() if v is not None})
        _note(f"item {item['item_id']} ({item['name']}), product {item['product_code']}, level {item['level']}")
        _out(item["item_id"])

    _guard(run)


@item_app.command("show")
def item_show(
    item_id: str = typer.Argument(..., help="Item id."), firm_code: int = FirmOpt, central: str = CentralOpt, api_key: str = KeyOpt
) -> None:
    """Show an item."""
    params = {"firm_code": firm_code} if firm_code is not None else None
    _guard(lambda: _show(CentralClient(central, api_key).call("GET", f"/items/{item_id}", params=params)))


# ---------------------------------------------------------------- customers


@customer_app.command("create")
def customer_create(
    name: str = typer.Option(..., "--name", help="Customer name."),
    number: str = typer.Option(None, "--number", help="Customer number (default: generated)."),
    email: str = typer.Option(None, "--email", help="E-mail address."),
    firm_code: int = FirmOpt,
    central: str = CentralOpt,
    api_key: str = KeyOpt,
) -> None:
    """Create a customer; prints the customer number."""

    def run() -> None:
        body = {"firm_code": firm_code, "number": number, "name": name, "email": email}
        made = CentralClient(central, api_key).call("POST", "/customers", {k: v for k, v in body.items() if v is not None})
        _note(f"customer {made['number']} ({made['name']})")
        _out(made["number"])

    _guard(run)


# ---------------------------------------------------------------- tickets


@ticket_app.command("create")
def ticket_create(
    customer: str = typer.Option(..., "--customer", help="Customer number."),
    item: list[str] = typer.Option(..., "--item", help="Item id (repeat for module items)."),
    count: int = typer.Option(1, "--count", help="Number of licenses: one ticket each."),
    firm_code: int = FirmOpt,
    central: str = CentralOpt,
    api_key: str = KeyOpt,
) -> None:
    """Order licenses; prints one ticket id per line."""

    def run() -> None:
        body: dict[str, Any] = {"customer": customer, "items": list(item), "quantity_of_licenses": count}
        if firm_code is not None:
            body["firm_code"] = firm_code
        order = CentralClient(central, api_key).call("POST", "/tickets", body)
        _note(f"order {order['order']}: {len(order['tickets'])} ticket(s) for customer {order['customer']}")
        for t in order["tickets"]:
            _out(t["ticket"])

    _guard(run)


@ticket_app.command("show")
def ticket_show(ticket: str = typer.Argument(..., help="Ticket id."), central: str = CentralOpt, api_key: str = KeyOpt) -> None:
    """Show a ticket: state, container, options."""
    _guard(lambda: _show(CentralClient(central, api_key).call("GET", f"/tickets/{_ticket(ticket)}")))


@ticket_app.command("revoke")
def ticket_revoke(ticket: str = typer.Argument(..., help="Ticket id."), central: str = CentralOpt, api_key: str = KeyOpt) -> None:
    """Revoke a ticket: its license leaves the container at the next sync."""

    def run() -> None:
        shown = CentralClient(central, api_key).call("POST", f"/tickets/{_ticket(ticket)}/revoke")
        _note(f"ticket {shown['ticket']} revoked; it leaves container {shown['serial'] or '-'} at the next sync")

    _guard(run)


def _ticket(text: str) -> str:
    from ..core import codes

    try:
        return codes.normalize_ticket(text)
    except codes.InvalidCode as exc:
        _common.fail(f"ticket {text!r} is mistyped ({exc}): check it")


# ---------------------------------------------------------------- containers


@container_app.command("show")
def container_show(
    serial: str = typer.Argument(..., help="Container serial."), firm_code: int = FirmOpt, central: str = CentralOpt, api_key: str = KeyOpt
) -> None:
    """Show where a container stands for the firm (sequence numbers, manipulation flag)."""
    params = {"firm_code": firm_code} if firm_code is not None else None
    _guard(lambda: _show(CentralClient(central, api_key).call("GET", f"/containers/{serial}", params=params)))


@container_app.command("clear")
def container_clear(
    serial: str = typer.Argument(..., help="Container serial."), firm_code: int = FirmOpt, central: str = CentralOpt, api_key: str = KeyOpt
) -> None:
    """Clear a container's manipulation flag for the firm, so it can sync again."""

    def run() -> None:
        body = {"firm_code": firm_code} if firm_code is not None else None
        done = CentralClient(central, api_key).call("POST", f"/containers/{serial}/clear", body)
        was = "was flagged" if done["was_flagged"] else "was not flagged"
        _note(f"container {serial} cleared for firm {done['firm_code']} ({was})")

    _guard(run)
