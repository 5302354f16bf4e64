"""`licentia vendor ticket|item|customer|container list` against a real Central: Central's
answer with --json, a table otherwise (whole lines when stdout is not a terminal), the
ticket filters, paging, firm scoping with two firms; and `central serve --demo` telling
how to find the demo ticket again on a later start."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from central_helpers import (
    ADMIN_KEY,
    Clock,
    FakeContainer,
    ServerThread,
    Vendor,
    central_app,
    child_env,
    free_port,
    make_settings,
    read_until,
    serve_process,
    wait_health,
)

from tests.cli.helpers import vendor

A_CODE, B_CODE, P_CODE = 61001, 62002, 63003
SYNC = "/api/v1/sync"
LONG_CUSTOMER = (
    "Aurora Borealis Precision Instruments and Measurement Systems for Scientific Research Laboratories of Northern "
    "Europe AB"
)
LONG_ITEM = (
    "Seismic Interpretation Workbench Professional Edition with Reservoir Modelling, Well Log Analysis and Basin "
    "Simulation X"
)
B_CUSTOMER_NAME = "Bravo Only Customer Oy"
P_TICKETS = 105  # more than one default page


@dataclass
class World:
    url: str
    a: Vendor
    b: Vendor
    p: Vendor
    a_module: str
    a_long_item: str
    a_plain: list[str]  # customer a.customer, item a.item: [activated in the shared box, revoked]
    a_module_ticket: str  # customer LONG-1, items a.item + a_module: activated in a_box
    a_long_ticket: str  # customer LONG-1, item a_long_item: new
    shared: FakeContainer  # holds a ticket of A and one of B; A's slot forked (flagged)
    a_box: FakeContainer  # seen after the shared one
    b_box: FakeContainer  # B's alone
    b_tickets: list[str]


def _ok(r: httpx.Response, status: int = 200) -> Any:
    assert r.status_code == status, r.text
    return r.json()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Any:
    clock = Clock()
    settings = make_settings(tmp_path_factory.mktemp("lists") / "data")
    with central_app(settings, clock) as app, ServerThread(app) as srv, httpx.Client(base_url=srv.url) as http:
        yield _build(srv.url, http, clock)


def _build(url: str, http: httpx.Client, clock: Any) -> World:
    def activate(box: FakeContainer, ticket: str) -> None:
        box.apply(_ok(http.post("/api/v1/activations", json=box.request("activate", ticket=ticket, now=clock.now))))

    def sync(box: FakeContainer, firm_code: int) -> Any:
        return box.apply(_ok(http.post(SYNC, json=box.request("sync", firm_code=firm_code, now=clock.now))))

    a, b, p = Vendor(http, A_CODE), Vendor(http, B_CODE), Vendor(http, P_CODE)
    a_module = _ok(a.post("/items", {"name": "Addon", "module_of": a.item, "feature_map": 0b100}), 201)["item_id"]
    a_long_item = _ok(a.post("/items", {"name": LONG_ITEM, "product_code": 8}), 201)["item_id"]
    _ok(a.post("/customers", {"number": "LONG-1", "name": LONG_CUSTOMER, "email": "long@example.com"}), 201)
    a_plain = a.tickets(2)
    order = {"customer": "LONG-1", "items": [a.item, a_module]}
    (a_module_ticket,) = [t["ticket"] for t in _ok(a.post("/tickets", order), 201)["tickets"]]
    order = {"customer": "LONG-1", "items": [a_long_item]}
    (a_long_ticket,) = [t["ticket"] for t in _ok(a.post("/tickets", order), 201)["tickets"]]
    _ok(b.post("/customers", {"number": "B-ONLY", "name": B_CUSTOMER_NAME}), 201)
    b_tickets = [
        t["ticket"]
        for t in _ok(b.post("/tickets", {"customer": "B-ONLY", "items": [b.item], "quantity_of_licenses": 2}), 201)[
            "tickets"
        ]
    ]
    _ok(p.post("/tickets", {"customer": p.customer, "items": [p.item], "quantity_of_licenses": P_TICKETS}), 201)

    # the shared container: a ticket of A and one of B; then its files are copied, used
    # and put back, so its next sync for A forks the chain and A's slot is flagged
    shared = FakeContainer(chained=True)
    activate(shared, a_plain[0])
    activate(shared, b_tickets[0])
    activate(shared, a_plain[1])
    sync(shared, A_CODE)
    clock.advance(60)
    saved = (dict(shared.gen), {f: list(c) for f, c in shared.chain.items()})
    sync(shared, A_CODE)
    clock.advance(60)
    shared.gen, shared.chain = saved
    assert sync(shared, A_CODE).manipulation == {"rebased": [1, 2], "withdrawn": []}
    _ok(a.post(f"/tickets/{a_plain[1]}/revoke"))
    clock.advance(100)
    a_box = FakeContainer()
    activate(a_box, a_module_ticket)
    clock.advance(100)
    b_box = FakeContainer()
    activate(b_box, b_tickets[1])
    return World(
        url, a, b, p, a_module, a_long_item, a_plain, a_module_ticket, a_long_ticket, shared, a_box, b_box, b_tickets
    )


def run(w: World, args: list[str], key: str | None) -> tuple[int, str, str]:
    return vendor(args, url=w.url, key=key)


def listed(w: World, args: list[str], key: str) -> Any:
    code, out, err = run(w, [*args, "--json"], key)
    assert code == 0, err
    return json.loads(out)


# ---------------------------------------------------------------- --json: Central's answer


@pytest.mark.parametrize(
    ("args", "path"),
    [
        (["ticket", "list"], "/tickets"),
        (["item", "list"], "/items"),
        (["customer", "list"], "/customers"),
        (["container", "list"], "/containers"),
    ],
)
def test_json_is_centrals_answer_as_one_document(world, args, path):
    code, out, err = run(world, [*args, "--json"], world.a.key)
    assert code == 0, err
    assert json.loads(out) == _ok(world.a.get(path)) != []
    assert err == ""  # a short list: nothing more to say


def test_tickets_are_listed_newest_first_with_what_they_license(world):
    rows = listed(world, ["ticket", "list"], world.a.key)
    assert [r["license_id"] for r in rows] == [4, 3, 2, 1]
    assert [r["ticket"] for r in rows] == [world.a_long_ticket, world.a_module_ticket, *reversed(world.a_plain)]
    by_ticket = {r["ticket"]: r for r in rows}
    module = by_ticket[world.a_module_ticket]
    assert module["customer"] == "LONG-1" and module["item"] == world.a.item
    assert module["items"] == sorted([world.a.item, world.a_module])
    assert module["state"] == "activated" and module["serial"] == world.a_box.serial
    assert module["firm_code"] == A_CODE and module["activated"] is not None
    assert by_ticket[world.a_plain[1]]["state"] == "revoked"
    assert by_ticket[world.a_long_ticket] | {"created": 0, "order": ""} == {
        "ticket": world.a_long_ticket, "license_id": 4, "firm_code": A_CODE, "order": "", "customer": "LONG-1",
        "item": world.a_long_item, "items": [world.a_long_item], "state": "new", "serial": None, "created": 0,
        "first_activated": None, "activated": None, "revoked": None,
    }  # fmt: skip
    # the same as each ticket's own view says
    for row in rows:
        shown = _ok(world.a.get(f"/tickets/{row['ticket']}"))
        assert {k: shown[k] for k in row} == row


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        (["--customer", "LONG-1"], lambda w: [w.a_long_ticket, w.a_module_ticket]),
        (["--item", "{module}"], lambda w: [w.a_module_ticket]),
        (["--item", "{base}"], lambda w: [w.a_module_ticket, *reversed(w.a_plain)]),  # as base item too
        (["--state", "revoked"], lambda w: [w.a_plain[1]]),
        (["--state", "activated"], lambda w: [w.a_module_ticket, w.a_plain[0]]),
        (["--customer", "LONG-1", "--state", "new"], lambda w: [w.a_long_ticket]),
        (["--customer", "LONG-1", "--item", "{base}", "--state", "activated"], lambda w: [w.a_module_ticket]),
        (["--state", "blocked"], lambda w: []),
    ],
)
def test_ticket_filters(world, filters, expected):
    args = [f.format(module=world.a_module, base=world.a.item) for f in filters]
    assert [r["ticket"] for r in listed(world, ["ticket", "list", *args], world.a.key)] == expected(world)


def test_a_filter_naming_nothing_of_the_firm_is_an_error_not_an_empty_list(world):
    for args, expected in (
        (["--customer", "NOBODY"], "unknown_customer"),
        (["--customer", "B-ONLY"], "unknown_customer"),  # firm B's customer
        (["--item", "F-09999-1"], "unknown_item"),
    ):
        code, out, err = run(world, ["ticket", "list", *args], world.a.key)
        assert code != 0 and expected in err and out == ""
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    code, out, err = run(world, ["ticket", "list", "--state", "lost"], world.a.key)
    assert code == 2 and out == "" and "lost" in err
    assert world.a.get("/tickets?state=lost").status_code == 422


def test_items_and_customers(world):
    items = listed(world, ["item", "list"], world.a.key)
    assert [i["item_id"] for i in items] == sorted([world.a.item, world.a_module, world.a_long_item])
    assert {i["item_id"]: i["module_of"] for i in items}[world.a_module] == world.a.item
    assert items == [_ok(world.a.get(f"/items/{i['item_id']}")) for i in items]
    customers = listed(world, ["customer", "list"], world.a.key)
    assert customers == [
        {"number": world.a.customer, "firm_code": A_CODE, "name": "Customer A", "email": "a@example.com"},
        {"number": "LONG-1", "firm_code": A_CODE, "name": LONG_CUSTOMER, "email": "long@example.com"},
    ]


def test_containers_newest_first_with_the_firms_licenses_and_flags(world):
    rows = listed(world, ["container", "list"], world.a.key)
    assert [r["serial"] for r in rows] == [world.a_box.serial, world.shared.serial]
    newer, shared = rows
    assert newer["first_seen"] > shared["first_seen"]
    assert newer | {"first_seen": 0, "last_contact": 0} == {
        "serial": world.a_box.serial, "level": "medium", "firm_code": A_CODE, "first_seen": 0, "last_contact": 0,
        "licenses": 1, "flagged": False, "flagged_at": None, "flags": 0, "open_flags": 0,
    }  # fmt: skip
    # A's ticket left active there; the revoked one and B's ticket are not A's licenses in it
    assert shared["licenses"] == 1 and shared["flagged"] is True and shared["flagged_at"] is not None
    shown = _ok(world.a.get(f"/containers/{world.shared.serial}"))
    assert shown["tickets"] == [world.a_plain[0]] and shown["last_contact"] == shared["last_contact"]
    assert shared["flags"] == shared["open_flags"] == len(shown["flags"]) >= 1
    # B sees the shared container with its own ticket in it, not flagged for B
    b_rows = {r["serial"]: r for r in listed(world, ["container", "list"], world.b.key)}
    assert set(b_rows) == {world.b_box.serial, world.shared.serial}
    assert b_rows[world.shared.serial]["licenses"] == 1 and b_rows[world.shared.serial]["flagged"] is False


# ---------------------------------------------------------------- firm scoping


LISTS = (["ticket", "list"], ["item", "list"], ["customer", "list"], ["container", "list"])


def test_a_vendor_key_lists_only_its_firm(world):
    b_secrets = [*world.b_tickets, world.b_box.serial, B_CUSTOMER_NAME, "B-ONLY", f'"firm_code": {B_CODE}']
    a_secrets = [*world.a_plain, world.a_module_ticket, world.a_box.serial, LONG_CUSTOMER, "LONG-1"]
    for args in LISTS:
        for key, theirs, others in ((world.a.key, A_CODE, b_secrets), (world.b.key, B_CODE, a_secrets)):
            for extra in (["--json"], []):
                code, out, err = run(world, [*args, *extra], key)
                assert code == 0, err
                assert not [s for s in others if s in out + err], (args, extra, out)
            assert {r["firm_code"] for r in listed(world, list(args), key)} == {theirs}
        # naming the other firm: refused in one line, nothing listed
        code, out, err = run(world, [*args, "--firm-code", str(B_CODE)], world.a.key)
        assert code != 0 and "forbidden" in err and out == "" and len(err.strip().splitlines()) == 1
        assert world.a.get(f"/{args[0]}s?firm_code={B_CODE}").status_code == 403


def test_the_admin_key_names_the_firm(world):
    for args in LISTS:
        code, out, err = run(world, list(args), ADMIN_KEY)
        assert code != 0 and "--firm-code" in err and out == "" and len(err.strip().splitlines()) == 1
        for firm, vendor_key in ((A_CODE, world.a.key), (B_CODE, world.b.key)):
            as_admin = listed(world, [*args, "--firm-code", str(firm)], ADMIN_KEY)
            assert as_admin == listed(world, list(args), vendor_key)


# ---------------------------------------------------------------- paging


def test_paging(world):
    rows = listed(world, ["ticket", "list"], world.p.key)
    assert len(rows) == 100 and [r["license_id"] for r in rows] == list(range(P_TICKETS, P_TICKETS - 100, -1))
    code, out, err = run(world, ["ticket", "list", "--json"], world.p.key)
    assert "--offset 100" in err and len(err.strip().splitlines()) == 1  # says there may be more
    code, out, err = run(world, ["ticket", "list", "--offset", "100", "--json"], world.p.key)
    assert code == 0 and [r["license_id"] for r in json.loads(out)] == [5, 4, 3, 2, 1] and err == ""
    code, out, err = run(world, ["ticket", "list", "--limit", "3", "--offset", "10", "--json"], world.p.key)
    assert [r["license_id"] for r in json.loads(out)] == [95, 94, 93] and "--offset 13" in err
    assert len(listed(world, ["ticket", "list", "--limit", "1000"], world.p.key)) == P_TICKETS
    code, out, err = run(world, ["ticket", "list", "--offset", "200"], world.p.key)
    assert code == 0 and out == "" and "no tickets" in err
    assert listed(world, ["ticket", "list", "--offset", "200"], world.p.key) == []
    for args in (["--limit", "1001"], ["--limit", "0"], ["--offset", "-1"]):
        code, out, err = run(world, ["ticket", "list", *args], world.p.key)
        assert code == 2 and out == "", args
    for query in ("limit=1001", "limit=0", "offset=-1", "limit=x", f"offset={2**70}"):
        for path in ("/tickets", "/items", "/customers", "/containers"):
            r = world.p.get(f"{path}?{query}")
            assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_input", (path, query, r.text)
    # items and customers page the same way, in their own order
    items = listed(world, ["item", "list"], world.a.key)
    assert listed(world, ["item", "list", "--limit", "2"], world.a.key) == items[:2]
    assert listed(world, ["item", "list", "--limit", "2", "--offset", "2"], world.a.key) == items[2:]
    customers = listed(world, ["customer", "list"], world.a.key)
    assert listed(world, ["customer", "list", "--offset", "1"], world.a.key) == customers[1:]
    boxes = listed(world, ["container", "list"], world.a.key)
    assert listed(world, ["container", "list", "--limit", "1", "--offset", "1"], world.a.key) == boxes[1:]


# ---------------------------------------------------------------- tables


def _line_with(out: str, text: str) -> str:
    lines = [line for line in out.splitlines() if text in line]
    assert len(lines) == 1, (text, out)
    return lines[0]


def test_tables_show_each_row_on_one_line(world):
    code, out, err = run(world, ["ticket", "list"], world.a.key)
    assert code == 0 and err == "" and f"tickets of firm {A_CODE}" in out
    for heading in ("ticket", "license", "customer", "items", "state", "container", "created", "activated"):
        assert heading in out
    line = _line_with(out, world.a_module_ticket)
    for cell in ("LONG-1", f"{world.a.item}, {world.a_module}", "activated", world.a_box.serial):
        assert cell in line, (cell, line)
    assert "revoked" in _line_with(out, world.a_plain[1])
    code, out, err = run(world, ["item", "list"], world.a.key)
    assert code == 0 and f"items of firm {A_CODE}" in out
    assert "0x4" in _line_with(out, "Addon") and world.a.item in _line_with(out, "Addon")
    assert "1,2" in _line_with(out, "Product One") and "0x3" in _line_with(out, "Product One")
    code, out, err = run(world, ["customer", "list"], world.a.key)
    assert "a@example.com" in _line_with(out, "Customer A")
    code, out, err = run(world, ["container", "list"], world.a.key)
    line = _line_with(out, world.shared.serial)
    flags = len(_ok(world.a.get(f"/containers/{world.shared.serial}"))["flags"])
    assert "yes" in line and f"{flags} ({flags} not reviewed)" in line
    assert " no " in _line_with(out, world.a_box.serial)


def _licentia_piped(w: World, key: str, *args: str) -> subprocess.CompletedProcess:
    """`licentia vendor ARGS` as a process whose stdout is a pipe (not a terminal), with
    no COLUMNS set: as a script or `| grep` runs it."""
    env = child_env({"LICENTIA_CENTRAL_URL": w.url, "LICENTIA_API_KEY": key})
    for name in ("COLUMNS", "LINES"):
        env.pop(name, None)
    return subprocess.run(
        [sys.executable, "-m", "licentia", "vendor", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )


def test_a_piped_table_keeps_long_names_whole_on_one_line(world):
    assert len(LONG_CUSTOMER) == 120 and len(LONG_ITEM) == 120
    p = _licentia_piped(world, world.a.key, "customer", "list")
    assert p.returncode == 0, p.stderr
    assert "long@example.com" in _line_with(p.stdout, LONG_CUSTOMER)
    p = _licentia_piped(world, world.a.key, "item", "list")
    assert world.a_long_item in _line_with(p.stdout, LONG_ITEM)
    p = _licentia_piped(world, world.a.key, "ticket", "list")
    line = _line_with(p.stdout, world.a_module_ticket)
    assert all(cell in line for cell in ("LONG-1", world.a_module, "activated", world.a_box.serial)), line
    p = _licentia_piped(world, world.a.key, "container", "list")
    assert "not reviewed" in _line_with(p.stdout, world.shared.serial)


def test_piped_json_is_one_document(world):
    for args in LISTS:
        p = _licentia_piped(world, world.a.key, *args, "--json")
        assert p.returncode == 0 and p.stderr == "", p.stderr
        assert json.loads(p.stdout) == listed(world, list(args), world.a.key)


# ---------------------------------------------------------------- the demo, found again


def test_demo_prints_its_customer_and_later_how_to_find_its_ticket(tmp_path):
    data = tmp_path / "central-data"
    keys = tmp_path / "central-data-keys"
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with serve_process(data, port, "--demo") as proc:
        lines = read_until(proc, "public key:")
        made = [line for line in lines if line.startswith("demo firm 10101 ")]
        assert made == ["demo firm 10101 (Demo Software), item F-00001-1, customer DEMO-1 (Demo Customer)"]
        ticket = next(line.split(":", 1)[1].strip() for line in lines if line.startswith("demo ticket:"))
        assert not [line for line in lines if line.startswith("demo tickets:")]  # the ticket is right there
        wait_health(base)
        box = FakeContainer()
        r = httpx.post(f"{base}/api/v1/activations", json=box.request("activate", ticket=ticket, now=int(time.time())))
        assert r.status_code == 200, r.text
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0
    # a later start: the demo ticket is activated, so no unused one to print; the line
    # that lists the demo customer's tickets finds it
    with serve_process(data, port, "--demo") as proc:
        lines = read_until(proc, "public key:")
        assert (
            "demo data from an earlier start: firm 10101 (Demo Software), item F-00001-1, customer DEMO-1 "
            "(Demo Customer)" in lines
        )
        assert not [line for line in lines if line.startswith("demo ticket:")]
        (hint,) = [line for line in lines if line.startswith("demo tickets:")]
        command = hint.split(":", 1)[1].strip()
        assert f"LICENTIA_API_KEY=$(cat {keys / 'admin.key'})" in command
        assert "licentia vendor ticket list --customer DEMO-1 --firm-code 10101" in command
        wait_health(base)
        # the printed command, run by a shell as printed (licentia from this interpreter's bin)
        env = child_env({"COLUMNS": "200", "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"})
        shell = subprocess.run(
            ["sh", "-c", command + " --json"], env=env, capture_output=True, text=True, timeout=60, cwd=tmp_path
        )
        assert shell.returncode == 0, shell.stderr
        (row,) = json.loads(shell.stdout)
        assert row["ticket"] == ticket and row["state"] == "activated" and row["serial"] == box.serial
        shell = subprocess.run(["sh", "-c", command], env=env, capture_output=True, text=True, timeout=60, cwd=tmp_path)
        assert "activated" in _line_with(shell.stdout, ticket)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0
    # the admin key from the environment: the line says so instead of naming a file
    with serve_process(data, port, "--demo", env={"LICENTIA_ADMIN_KEY": "y" * 24}) as proc:
        lines = read_until(proc, "public key:")
        (hint,) = [line for line in lines if line.startswith("demo tickets:")]
        assert "LICENTIA_API_KEY=$LICENTIA_ADMIN_KEY licentia vendor ticket list" in hint
        wait_health(base)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0
