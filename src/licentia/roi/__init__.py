"""Whether licensing pays: the ROI method of docs/roi.md as a library.

A **case** names the start-up costs (paid at t = 0, not discounted), the yearly operation
costs, the revenue increase (fewer illegal copies, IP protection, new pricing models) and
the cost savings (order taking, development, support) over the horizon (3 years by
default). ``calculate(case)`` gives, per year, revenue increase + savings − operation
costs (the net margin increase), that times (1 − risk), discounted at the end of year t
by (1 + rate)^t; the present value is their sum, and

    ROI = (present value − start-up costs) / start-up costs.

Conventions: amounts are positive (results show costs negative); rates are percentages
from 0 to 100; a line is a total over the horizon (spread evenly), a list with one amount
per year, or its factors (revenue: ``price`` × ``quantity`` a year; savings: ``fte`` ×
``cost`` a year).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core import tomlfile
from ..core.errors import RoiInputError

__all__ = ["Case", "Result", "RoiInputError", "Year", "calculate", "chart", "load_case", "parse_case"]

#: the source's defaults: a 20 % risk adjustment, a 10 % discount rate, three years
DEFAULTS = {"risk_percent": 20.0, "discount_percent": 10.0, "years": 3}
STARTUP = ("license_fees", "professional_services", "training", "integration_product", "integration_backoffice")
OPERATION = ("container_costs", "backoffice_subscriptions", "support")
REVENUE = ("illegal_copies", "ip_protection", "pricing_models")
SAVINGS = ("order_taking", "development", "support")
SECTIONS = {"startup": STARTUP, "operation": OPERATION, "revenue": REVENUE, "savings": SAVINGS}
FACTORS = {"revenue": ("price", "quantity"), "savings": ("fte", "cost")}


@dataclass(frozen=True)
class Case:
    name: str
    years: int
    risk: float  # 0..1
    discount: float  # 0..1
    startup: dict[str, float]
    operation: dict[str, list[float]]  # per line, one amount per year
    revenue: dict[str, list[float]]
    savings: dict[str, list[float]]


@dataclass(frozen=True)
class Year:
    year: int
    revenue: float
    savings: float
    operation: float  # negative: a cost
    net: float  # the net margin increase
    risk_adjusted: float
    discount_factor: float
    present_value: float


@dataclass(frozen=True)
class Result:
    case: Case
    startup: float  # negative: a cost
    years: list[Year] = field(default_factory=list)
    present_value: float = 0.0  # of the risk-adjusted yearly net margin
    roi: float = 0.0  # (present value - start-up costs) / start-up costs

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.case.name,
            "risk_percent": round(self.case.risk * 100, 6),
            "discount_percent": round(self.case.discount * 100, 6),
            "startup": round(self.startup, 2),
            "years": [
                {k: round(v, 6) if isinstance(v, float) else v for k, v in y.__dict__.items()} for y in self.years
            ],
            "present_value": round(self.present_value, 2),
            "net_present_value": round(self.present_value + self.startup, 2),
            "roi": round(self.roi, 6),
        }


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise RoiInputError(f"{where} is a number")
    if value < 0:
        raise RoiInputError(f"{where} is not negative: amounts are positive (costs too)")
    return float(value)


def _percent(raw: dict[str, Any], name: str) -> float:
    value = _number(raw.get(name, DEFAULTS[name]), f"parameters.{name}")
    if value > 100:
        raise RoiInputError(f"parameters.{name} is a percentage from 0 to 100")
    return value / 100


def _line(section: str, name: str, value: Any, years: int) -> list[float]:
    """One line as one amount per year."""
    where = f"{section}.{name}"
    if isinstance(value, list):
        if len(value) != years:
            raise RoiInputError(f"{where} lists {len(value)} amounts: give exactly one per year ({years})")
        return [_number(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, dict):
        factors = FACTORS.get(section)
        if factors is None or set(value) != set(factors):
            raise RoiInputError(
                f"{where} is an amount, a list of yearly amounts"
                + (f", or {{{', '.join(factors)}}} a year" if factors else "")
            )
        a, b = (_number(value[f], f"{where}.{f}") for f in factors)
        return [a * b] * years
    total = _number(value, where)
    return [total / years] * years


def parse_case(doc: dict[str, Any], name: str = "case") -> Case:
    """A case from its TOML (as a dict); RoiInputError names the first field it cannot use."""
    unknown = set(doc) - {"name", "parameters", *SECTIONS}
    if unknown:
        raise RoiInputError(f"unknown key(s): {', '.join(sorted(unknown))}")
    params = doc.get("parameters", {})
    if not isinstance(params, dict) or set(params) - set(DEFAULTS):
        raise RoiInputError(f"parameters takes {', '.join(DEFAULTS)}")
    years = params.get("years", DEFAULTS["years"])
    if isinstance(years, bool) or not isinstance(years, int) or not 1 <= years <= 50:
        raise RoiInputError("parameters.years is a whole number from 1 to 50")
    lines: dict[str, dict[str, Any]] = {}
    for section, allowed in SECTIONS.items():
        raw = doc.get(section)
        if not isinstance(raw, dict):
            raise RoiInputError(f"[{section}] is missing: give its lines ({', '.join(allowed)})")
        extra = set(raw) - set(allowed)
        if extra:
            raise RoiInputError(f"unknown key(s) in [{section}]: {', '.join(sorted(extra))}")
        lines[section] = raw
    startup = {k: _number(v, f"startup.{k}") for k, v in lines["startup"].items()}
    per_year = {s: {k: _line(s, k, v, years) for k, v in lines[s].items()} for s in ("operation", "revenue", "savings")}
    title = doc.get("name", name)
    if not isinstance(title, str):
        raise RoiInputError("name is text")
    return Case(
        title,
        years,
        _percent(params, "risk_percent"),
        _percent(params, "discount_percent"),
        startup,
        per_year["operation"],
        per_year["revenue"],
        per_year["savings"],
    )


def load_case(path: str | Path) -> Case:
    p = Path(path)
    try:
        doc = tomlfile.load(p)
    except OSError as exc:
        raise RoiInputError(f"cannot read {p}: {exc.strerror}") from None
    except tomlfile.TomlRejected as exc:
        raise RoiInputError(f"{p} is not TOML: {exc}") from None
    return parse_case(doc, p.stem)


def calculate(case: Case) -> Result:
    """The yearly flows, their present value and the ROI of ``case``."""
    startup = -sum(case.startup.values())
    years = []
    pv = 0.0
    for t in range(1, case.years + 1):
        revenue = sum(v[t - 1] for v in case.revenue.values())
        savings = sum(v[t - 1] for v in case.savings.values())
        operation = -sum(v[t - 1] for v in case.operation.values())
        net = revenue + savings + operation
        adjusted = net * (1 - case.risk)
        factor = 1 / (1 + case.discount) ** t
        years.append(Year(t, revenue, savings, operation, net, adjusted, factor, adjusted * factor))
        pv += adjusted * factor
    roi = (pv + startup) / -startup if startup else math.inf
    return Result(case, startup, years, pv, roi)


def chart(result: Result, path: str | Path) -> Path:
    """Draw the discounted, risk-adjusted cash flow over time (bars per year, start-up at
    t = 0, and the cumulative line) to ``path`` (.svg or .png). Needs the ``roi`` extra
    (matplotlib); RoiInputError when it is missing or the suffix is neither."""
    out = Path(path)
    if out.suffix.lower() not in (".svg", ".png"):
        raise RoiInputError(f"--chart {out.name}: the chart is an .svg or a .png file")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise RoiInputError("the chart needs matplotlib: pip install 'licentia[roi]'") from None
    flows = [result.startup, *(y.present_value for y in result.years)]
    cumulative = [sum(flows[: i + 1]) for i in range(len(flows))]
    labels = ["start-up", *(f"year {y.year}" for y in result.years)]
    fig, ax = plt.subplots(figsize=(7, 4))
    try:
        ax.bar(
            labels,
            [f / 1000 for f in flows],
            color=["#b03a2e" if f < 0 else "#2e86c1" for f in flows],
            label="discounted, risk-adjusted cash flow",
        )
        ax.plot(labels, [c / 1000 for c in cumulative], color="#1e8449", marker="o", label="cumulative")
        ax.axhline(0, color="#555", linewidth=0.8)
        ax.set_ylabel("thousand (currency of the case)")
        ax.set_title(f"{result.case.name}: ROI {result.roi:.0%}")
        ax.legend(loc="upper left")
        fig.tight_layout()
        fig.savefig(out, format=out.suffix.lower()[1:], metadata={"Date": None} if out.suffix == ".svg" else None)
    finally:
        plt.close(fig)
    return out
