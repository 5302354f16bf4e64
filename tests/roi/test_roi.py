"""The ROI method: hand-computed cases, the four shipped cases, bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from licentia.roi import RoiInputError, calculate, load_case, parse_case
from tests.conftest import ROOT, child_env

CASES = ROOT / "docs" / "roi"


def case(years=1, risk=0, discount=0, startup=60, operation=30, revenue=100, savings=50, **extra):
    doc = {
        "parameters": {"years": years, "risk_percent": risk, "discount_percent": discount},
        "startup": {"license_fees": startup},
        "operation": {"container_costs": operation},
        "revenue": {"illegal_copies": revenue},
        "savings": {"order_taking": savings},
    }
    doc.update(extra)
    return parse_case(doc)


def test_one_year_without_risk_or_discount():
    r = calculate(case())
    assert (r.startup, r.years[0].net, r.present_value) == (-60, 120, 120)
    assert r.roi == pytest.approx(1.0)  # (120 - 60) / 60


def test_each_factor_alone():
    assert calculate(case(risk=50)).present_value == pytest.approx(60)
    assert calculate(case(risk=50)).roi == pytest.approx(0.0)
    assert calculate(case(discount=10)).present_value == pytest.approx(120 / 1.1)
    three = calculate(case(years=3))  # 3-year totals spread evenly
    assert [y.net for y in three.years] == pytest.approx([40, 40, 40])


def test_all_together_with_yearly_lists_and_factors():
    doc = {
        "parameters": {"years": 3, "risk_percent": 20, "discount_percent": 10},
        "startup": {"license_fees": 1000, "integration_product": 9000},
        "operation": {"container_costs": [100, 200, 300]},
        "revenue": {"illegal_copies": {"price": 50, "quantity": 100}, "pricing_models": [0, 1000, 2000]},
        "savings": {"development": {"fte": 0.5, "cost": 100000}},
    }
    r = calculate(parse_case(doc))
    nets = [5000 + 0 + 50000 - 100, 5000 + 1000 + 50000 - 200, 5000 + 2000 + 50000 - 300]
    expected = sum(n * 0.8 / 1.1**t for t, n in enumerate(nets, 1))
    assert [y.net for y in r.years] == pytest.approx(nets)
    assert r.present_value == pytest.approx(expected)
    assert r.roi == pytest.approx((expected - 10000) / 10000)


#: the computed figures of the shipped cases (docs/roi.md explains the source's printed ones)
SHIPPED = {
    "large": (545200, 2557810, 3.692),
    "medium": (214100, 625360, 1.921),
    "small-software": (12800, 92113, 6.196),
    "small-hardware": (12800, 81768, 5.388),
}


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_the_four_shipped_cases(name):
    startup, pv, roi = SHIPPED[name]
    r = calculate(load_case(CASES / f"{name}.toml"))
    assert (round(-r.startup), round(r.present_value), round(r.roi, 3)) == (startup, pv, roi)


def _cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "licentia", "roi", *args], env=child_env(), capture_output=True, text=True, timeout=60
    )


def test_the_cli_prints_a_table_json_and_csv():
    out = _cli("--input", str(CASES / "medium.toml"), "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["present_value"] == pytest.approx(625360, abs=1) and data["roi"] == pytest.approx(1.921, abs=1e-3)
    csv_out = _cli("--input", str(CASES / "medium.toml"), "--csv")
    assert csv_out.stdout.splitlines()[0].startswith("year,revenue") and len(csv_out.stdout.splitlines()) == 5
    table = _cli("--input", str(CASES / "medium.toml"))
    assert "ROI: 192.1%" in table.stdout


@pytest.mark.parametrize(
    "change, field",
    [
        ({"revenue": {"illegal_copies": -5}}, "revenue.illegal_copies"),
        ({"savings": None}, "[savings]"),
        ({"bonus": 1}, "bonus"),
        ({"parameters": {"risk_percent": 120}}, "parameters.risk_percent"),
        ({"operation": {"container_costs": [1, 2]}}, "operation.container_costs"),
        ({"savings": {"support": {"fte": -1, "cost": 70000}}}, "savings.support.fte"),
    ],
)
def test_bad_input_names_the_field(tmp_path, change, field):
    doc = {
        "startup": {"license_fees": 1},
        "operation": {"container_costs": 1},
        "revenue": {"illegal_copies": 1},
        "savings": {"order_taking": 1},
    }
    for key, value in change.items():
        if value is None:
            doc.pop(key)
        else:
            doc[key] = value
    with pytest.raises(RoiInputError) as caught:
        parse_case(doc)
    assert field in str(caught.value)
    path = tmp_path / "bad.toml"
    path.write_text(_toml(doc))
    out = _cli("--input", str(path))
    assert out.returncode != 0 and "Traceback" not in out.stderr and field.split("[")[0] in out.stderr


def _value(v):
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{k} = {_value(x)}" for k, x in v.items()) + " }"
    return json.dumps(v)


def _toml(doc):
    """A case as TOML text (scalars first, then one table per section)."""
    head = [f"{k} = {_value(v)}" for k, v in doc.items() if not isinstance(v, dict)]
    body = []
    for section, lines in doc.items():
        if isinstance(lines, dict):
            body.append(f"[{section}]")
            body.extend(f"{k} = {_value(v)}" for k, v in lines.items())
    return "\n".join(head + body) + "\n"


def test_the_example_in_the_docs_is_a_valid_case():
    import tomllib

    text = (ROOT / "docs" / "roi.md").read_text()
    block = text.split("```toml\n", 1)[1].split("```", 1)[0]
    r = calculate(parse_case(tomllib.loads(block)))
    assert r.startup == -51100 and len(r.years) == 3 and r.years[0].revenue == 108000 + 60000


def test_the_chart_of_the_discounted_risk_adjusted_cash_flow(tmp_path):
    svg, png = tmp_path / "roi.svg", tmp_path / "roi.png"
    out = _cli("--input", str(CASES / "medium.toml"), "--chart", str(svg))
    assert out.returncode == 0, out.stderr
    text = svg.read_text()
    assert text.lstrip().startswith("<?xml") and "<svg" in text and "ROI 192%" in text  # the title names it
    assert _cli("--input", str(CASES / "medium.toml"), "--chart", str(png)).returncode == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    bad = _cli("--input", str(CASES / "medium.toml"), "--chart", str(tmp_path / "roi.gif"))
    assert bad.returncode != 0 and ".svg or a .png" in bad.stderr and "Traceback" not in bad.stderr
