"""`licentia roi`: whether licensing pays, by the method of docs/roi.md."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from ._common import console, run_guarded

if TYPE_CHECKING:  # pragma: no cover
    from ..roi import Result


def register(app: typer.Typer) -> None:
    @app.command("roi")
    def roi(
        case: Annotated[Path, typer.Option("--input", "-i", help="The case: a TOML file (see docs/roi.md).")],
        as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
        as_csv: Annotated[bool, typer.Option("--csv", help="Print the yearly flows as CSV.")] = False,
        chart: Annotated[
            Path | None,
            typer.Option(
                "--chart",
                help="Also draw the cash flow over time to this .svg or .png file (needs the 'roi' extra: matplotlib).",
            ),
        ] = None,
    ) -> None:
        """The ROI of licensing for one case.

        Amounts are positive (costs show negative); rates are percentages from 0 to 100.
        Start-up costs fall at t = 0, undiscounted; each year's net margin increase
        (revenue increase + savings - operation costs) is multiplied by (1 - risk) and
        discounted at the end of year t. ROI = (present value - start-up costs) / start-up
        costs. A line is a total over the years (spread evenly), a list with one amount per
        year, or its factors ({price, quantity} or {fte, cost} a year)."""
        from ..roi import calculate, load_case

        def go() -> None:
            result = calculate(load_case(case))
            if chart is not None:
                from ..roi import chart as draw

                draw(result, chart)
            if as_json:
                print(json.dumps(result.to_json(), indent=1))
                return
            if as_csv:
                buf = io.StringIO()
                writer = csv.writer(buf, lineterminator="\n")
                writer.writerow(
                    [
                        "year",
                        "revenue",
                        "savings",
                        "operation",
                        "net",
                        "risk_adjusted",
                        "discount_factor",
                        "present_value",
                    ]
                )
                writer.writerow(
                    [0, "", "", "", round(result.startup, 2), round(result.startup, 2), 1, round(result.startup, 2)]
                )
                for y in result.years:
                    writer.writerow(
                        [
                            y.year,
                            round(y.revenue, 2),
                            round(y.savings, 2),
                            round(y.operation, 2),
                            round(y.net, 2),
                            round(y.risk_adjusted, 2),
                            round(y.discount_factor, 6),
                            round(y.present_value, 2),
                        ]
                    )
                print(buf.getvalue(), end="")
                return
            _table(result)

        run_guarded(go)


def _table(result: Result) -> None:
    from rich.table import Table

    case = result.case
    t = Table(title=f"{case.name}: risk {case.risk:.0%}, discount {case.discount:.0%}")
    for col in ("year", "revenue increase", "savings", "operation", "net margin", "risk-adjusted", "present value"):
        t.add_column(col, justify="right")
    t.add_row("0 (start-up)", "", "", "", f"{result.startup:,.0f}", f"{result.startup:,.0f}", f"{result.startup:,.0f}")
    for y in result.years:
        t.add_row(
            str(y.year),
            f"{y.revenue:,.0f}",
            f"{y.savings:,.0f}",
            f"{y.operation:,.0f}",
            f"{y.net:,.0f}",
            f"{y.risk_adjusted:,.0f}",
            f"{y.present_value:,.0f}",
        )
    console.print(t)
    console.print(f"present value of the risk-adjusted net margin: {result.present_value:,.0f}")
    console.print(f"net of start-up costs: {result.present_value + result.startup:,.0f}")
    console.print(f"ROI: {result.roi:.1%}")


__all__ = ["register"]
