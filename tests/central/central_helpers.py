"""Helpers for Central's tests: a settable clock, apps that close their database,
a container stand-in that makes real signed requests and receipts, table dumps, a
real uvicorn server in a thread, and `licentia central serve` as a process."""

from __future__ import annotations

import contextlib
import functools
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy import inspect, select
from sqlalchemy.engine import Engine

from licentia._testing import FakeClock
from licentia.central.app import create_app
from licentia.central.models import LOG_TABLES, Base
from licentia.central.settings import Settings
from licentia.core import codes, exchange, hazmat
from licentia.core.documents import document_digest, sign_document
from licentia.core.exchange import SlotPosition
from tests.conftest import PYTHON, SRC, child_env, free_port, require_system  # noqa: F401
from tests.factory import T0

ADMIN_KEY = "test-admin-key-0123456789abcdef"
MASTER_KEY = "11" * 32
DAY_S = 86400


def make_settings(data: Path, url: str | None = None, **changes: Any) -> Settings:
    return Settings(data_dir=data, database_url=url, admin_key=ADMIN_KEY, master_key=MASTER_KEY, **changes)


def Clock(now: int = T0) -> FakeClock:
    """Central's only source of time, injected into create_app: the suite's FakeClock."""
    return FakeClock(now)


@contextlib.contextmanager
def central_app(settings: Settings, clock: FakeClock | None = None) -> Iterator[FastAPI]:
    """Central on ``settings`` with an injected clock; its database is closed on exit."""
    app = create_app(settings, clock=clock or Clock())
    try:
        yield app
    finally:
        app.state.central.db.dispose()


@dataclass
class FakeContainer:
    """What a container does on the wire: its keys, serial, per-firm slot positions."""

    level: str = "medium"
    serial: str = field(default_factory=codes.new_serial)
    sign_key: hazmat.Ed25519PrivateKey = field(default_factory=hazmat.Ed25519PrivateKey.generate)
    box_key: hazmat.X25519PrivateKey = field(default_factory=hazmat.X25519PrivateKey.generate)
    slots: dict[int, SlotPosition] = field(default_factory=dict)
    #: with ``chained``, requests report a generation, the chain and ``counters`` as a
    #: container does (``gen`` and ``chain`` per firm); without, as containers before them
    chained: bool = False
    gen: dict[int, int] = field(default_factory=dict)
    chain: dict[int, list[str]] = field(default_factory=dict)

    def request(
        self,
        action: str = "activate",
        *,
        ticket: str | None = None,
        firm_code: int | None = None,
        now: int = T0,
        level: str | None = None,
        slots: dict[int, SlotPosition] | None = None,
        counters: dict[int, dict[str, exchange.Counter]] | None = None,
    ) -> dict[str, Any]:
        positions = dict(self.slots if slots is None else slots)
        if self.chained:
            for firm, p in positions.items():
                self.gen[firm] = self.gen.get(firm, 0) + 1
                positions[firm] = SlotPosition(
                    p.seq, p.vtime, self.gen[firm], tuple(self.chain.get(firm, [])), (counters or {}).get(firm, {})
                )
        build = functools.partial(
            exchange.build_request,
            serial=self.serial,
            level=level or self.level,
            sign_key=self.sign_key,
            box_pub=hazmat.raw_public(self.box_key.public_key()),
            slots=positions,
            action=action,
            now=now,
            firm_code=firm_code,
        )
        try:
            doc = build(ticket=ticket)
        except codes.InvalidCode:  # a mistyped ticket: sent as typed, as a client of its own could
            payload = {k: v for k, v in build()["payload"].items() if k not in ("type", "v")}
            doc = sign_document("request", {**payload, "ticket": ticket}, self.sign_key)
        if self.chained:
            digest = document_digest(doc)
            for firm in positions:
                self.chain[firm] = [digest, *self.chain.get(firm, [])][: exchange.CHAIN_DEPTH]
        return doc

    def apply(self, update_doc: dict[str, Any], pinned: dict[str, Any] | None = None) -> exchange.Update:
        update = exchange.verify_update(update_doc, pinned)
        assert update.serial == self.serial
        old = self.slots.get(update.firm_code, SlotPosition(0, 0))
        assert update.seq > old.seq, "a container accepts each sequence number once, in order"
        self.slots[update.firm_code] = SlotPosition(update.seq, max(old.vtime, update.time))
        return update

    def product_keys(self, update: exchange.Update) -> list[bytes]:
        return [exchange.unseal_product_key(self.box_key, self.serial, s) for s in update.sealed_keys]

    def receipt(self, firm_code: int, license_id: int, ticket: str | None) -> dict[str, Any]:
        pos = self.slots.get(firm_code, SlotPosition(0, 0))
        return exchange.build_receipt(
            serial=self.serial,
            sign_key=self.sign_key,
            firm_code=firm_code,
            license_id=license_id,
            ticket=ticket,
            seq=pos.seq,
            vtime=pos.vtime,
        )


def dump_state(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table except the log tables (audit, attempts)."""
    out: dict[str, list[tuple[Any, ...]]] = {}
    names = set(inspect(engine).get_table_names())
    with engine.connect() as conn:
        for table in Base.metadata.sorted_tables:
            if table.name in LOG_TABLES or table.name not in names:
                continue
            rows = conn.execute(select(table)).all()
            out[table.name] = sorted((tuple(r) for r in rows), key=repr)
    return out


def count_rows(engine: Engine, table: str) -> int:
    with engine.connect() as conn:
        return int(conn.exec_driver_sql(f"SELECT count(*) FROM {table}").scalar_one())


def error_code(resp: httpx.Response) -> str:
    body = resp.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    return str(body["error"]["code"])


class Vendor:
    """Sets up a firm with a vendor key, an item, a customer; orders tickets."""

    def __init__(self, client: Any, firm_code: int, *, level: str = "medium", options: dict[str, Any] | None = None):
        admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
        self.client = client
        self.firm_code = firm_code
        r = client.post("/api/v1/firms", json={"code": firm_code, "name": f"Firm {firm_code}"}, headers=admin)
        assert r.status_code == 201, r.text
        r = client.post("/api/v1/apikeys", json={"firm_code": firm_code}, headers=admin)
        assert r.status_code == 201, r.text
        self.key = r.json()["key"]
        self.headers = {"Authorization": f"Bearer {self.key}"}
        r = self.post(
            "/items",
            {
                "name": "Product One",
                "product_code": 7,
                "feature_map": 0b0011,
                "level": level,
                "key_versions": [1, 2],
                "options": options or {"expires_days": 30, "units": 100},
            },
        )
        assert r.status_code == 201, r.text
        self.item = r.json()["item_id"]
        r = self.post("/customers", {"name": "Customer A", "email": "a@example.com"})
        assert r.status_code == 201, r.text
        self.customer = r.json()["number"]

    def post(self, path: str, body: Any = None) -> httpx.Response:
        return self.client.post("/api/v1" + path, json=body, headers=self.headers)

    def get(self, path: str) -> httpx.Response:
        return self.client.get("/api/v1" + path, headers=self.headers)

    def tickets(self, count: int = 1, items: list[str] | None = None) -> list[str]:
        order = {"customer": self.customer, "items": items or [self.item], "quantity_of_licenses": count}
        r = self.post("/tickets", order)
        assert r.status_code == 201, r.text
        return [t["ticket"] for t in r.json()["tickets"]]

    def pinned(self) -> dict[str, Any]:
        r = self.client.get(f"/api/v1/firms/{self.firm_code}/public-key")
        keys = {k["kid"]: hazmat.load_public_pem(k["pem"]) for k in r.json()["keys"]}
        return keys


class ServerThread:
    """A real uvicorn server on 127.0.0.1:<free port>, in a thread of this process."""

    def __init__(self, app: Any):
        import uvicorn

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(30)


@contextlib.contextmanager
def serve_process(data: Path, port: int, *args: str, env: dict[str, str] | None = None) -> Iterator[subprocess.Popen]:
    """`licentia central serve --data DATA --port PORT ARGS` as a process with unbuffered
    text pipes; killed on exit if it still runs."""
    proc = subprocess.Popen(
        [PYTHON, "-m", "licentia", "central", "serve", "--data", str(data), "--port", str(port), *args],
        env=child_env({"PYTHONUNBUFFERED": "1", "COLUMNS": "200", **(env or {})}),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def read_until(proc: subprocess.Popen, marker: str, timeout: float = 60) -> list[str]:
    """The lines a process prints up to the one holding ``marker``."""
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            if proc.poll() is not None:
                break
            continue
        lines.append(line.rstrip("\n"))
        if marker in line:
            return lines
    stderr = proc.stderr.read() if proc.poll() is not None else ""
    raise AssertionError(f"{marker!r} not printed; got {lines!r}; stderr: {stderr}")


def wait_health(base: str) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(base + "/health").status_code == 200:
                return
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                raise
        time.sleep(0.05)
