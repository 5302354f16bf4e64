"""``licentia vendor usage``: the reporting views of License Central's usage store.

One page as a table (or Central's JSON answer with ``--json``), or the whole report as
CSV (``--csv``, streamed by Central). Central's address and the API key come as for
every ``vendor`` command (``--central`` / LICENTIA_CENTRAL_URL, ``--api-key`` /
LICENTIA_API_KEY).
"""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Annotated, Any

import typer

from . import _common

DEFAULT_CENTRAL = "http://127.0.0.1:8480"
PAGE_SIZE = 100
MAX_PAGE = 10000


class View(StrEnum):
    license = "license"
    product = "product"
    billing = "billing"


PATHS = {
    View.license: ("/reporting/license-usage", "licenseUsageList"),
    View.product: ("/reporting/product-usage", "productUsageList"),
    View.billing: ("/reporting/billing", "billingList"),
}
#: the table's columns of each view (the CSV and JSON have every field)
COLUMNS = {
    View.license: [
        ("access (UTC)", "accessTime"),
        ("release (UTC)", "releaseTime"),
        ("seconds", "seconds"),
        ("ok", "success"),
        ("fail", "fail"),
        ("invalid", "invalid"),
        ("firm", "firmCode"),
        ("product", "productCode"),
        ("feature", "featureCode"),
        ("license", "ticketLicenseId"),
        ("user", "userIdentification"),
    ],
    View.product: [
        ("customer", "customer"),
        ("item", "item"),
        ("name", "name"),
        ("user", "user"),
        ("seconds", "seconds"),
        ("accesses", "success"),
    ],
    View.billing: [
        ("customer", "customer"),
        ("item", "item"),
        ("day (UTC)", "day"),
        ("peak seats", "peakSeats"),
        ("seat hours", "seatHours"),
        ("sessions", "sessions"),
        ("units", "units"),
        ("refusals", "refusals"),
    ],
}


def usage(
    view: Annotated[
        View,
        typer.Option(
            "--view",
            help="license: each use; product: per customer, item, license and "
            "user; billing: per customer, item and UTC day.",
        ),
    ] = View.license,  # fmt: skip
    start: Annotated[
        str | None, typer.Option("--from", help="From this date and time (ISO 8601; UTC unless it names an offset).")
    ] = None,
    end: Annotated[
        str | None, typer.Option("--to", help="Up to this date and time, its whole second included.")
    ] = None,
    customer: Annotated[str | None, typer.Option("--customer", help="Only this customer (number).")] = None,
    item: Annotated[str | None, typer.Option("--item", help="Only this item (base or module item id).")] = None,
    product_code: Annotated[int | None, typer.Option("--product-code", help="Only this product code.")] = None,
    feature_code: Annotated[int | None, typer.Option("--feature-code", help="Only this feature code.")] = None,
    ticket: Annotated[str | None, typer.Option("--ticket", help="Only this ticket's license.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print Central's answer (one page) as JSON.")] = False,
    as_csv: Annotated[
        bool, typer.Option("--csv", help="Print the whole report as CSV (every page; cells safe for spreadsheets).")
    ] = False,
    limit: Annotated[int, typer.Option("--limit", min=1, max=MAX_PAGE, help="Rows in the page.")] = PAGE_SIZE,
    cursor: Annotated[
        str | None, typer.Option("--cursor", help="Start after this cursor (printed with a page that has more).")
    ] = None,
    firm_code: Annotated[int | None, typer.Option("--firm-code", help="Only this firm (the admin key).")] = None,
    central: Annotated[
        str | None,
        typer.Option(
            "--central", envvar="LICENTIA_CENTRAL_URL", help=f"License Central's URL (default {DEFAULT_CENTRAL})."
        ),
    ] = None,
    api_key: Annotated[
        str | None, typer.Option("--api-key", envvar="LICENTIA_API_KEY", help="API key (admin or vendor).")
    ] = None,
) -> None:
    """Report license usage from Central's usage store: each use, per product, or per day for billing."""
    if as_json and as_csv:
        _common.fail("give --json or --csv, not both")
    given = {
        "from": start,
        "to": end,
        "customerIdentification": customer,
        "itemIdentification": item,
        "firmCode": firm_code,
        "productCode": product_code,
        "featureCode": feature_code,
        "ticketId": ticket,
    }
    body: dict[str, Any] = {"session": {}, "filter": {k: v for k, v in given.items() if v is not None}}
    if cursor is not None:
        body["cursor"] = cursor
    path, list_name = PATHS[view]

    def run() -> None:
        from ..client import CentralClient

        if not api_key:
            _common.fail("no API key: set LICENTIA_API_KEY or pass --api-key")
        with CentralClient(central or DEFAULT_CENTRAL, api_key=api_key) as client:
            if as_csv:
                # written as it arrives: a year of events never sits in memory here either
                for text in client.stream_text("POST", path, json=body, params={"format": "csv"}):
                    typer.echo(text, nl=False)
                return
            answer = client.request("POST", path, json={**body, "limit": limit})
        if not isinstance(answer, dict) or not isinstance(answer.get(list_name), list):
            _common.fail("License Central sent an answer that is not a usage report: check --central")
        if as_json:
            _common.console.print_json(json.dumps(answer))
        else:
            _table(view, answer[list_name])
        if answer.get("cursor"):
            _common.err_console.print(f"more rows: add --cursor {answer['cursor']}", highlight=False, soft_wrap=True)

    _common.guard_central(run)


def _table(view: View, rows: list[dict[str, Any]]) -> None:
    from rich.markup import escape
    from rich.table import Table

    if not rows:
        _common.err_console.print("no usage in this report", highlight=False)
        return
    table = Table(box=None, pad_edge=False)
    for heading, _ in COLUMNS[view]:
        table.add_column(heading, no_wrap=heading not in ("name", "user"))
    for row in rows:
        table.add_row(*(escape(str(row.get(name, "-"))) for _, name in COLUMNS[view]))
    _common.console.print(table, highlight=False)
