"""`licentia demo`: the whole flow in a temporary directory, one printed step at a time."""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer

from ._common import console, fail, run_guarded

FIRM = 10101
PRODUCT = 1


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def _central(data: Path, admin_key: str) -> Iterator[str]:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LICENTIA_")}
    env["LICENTIA_ADMIN_KEY"] = admin_key
    with open(data.parent / "central.log", "wb") as log:
        proc = subprocess.Popen(  # noqa: S603 - this Python, with fixed arguments
            [sys.executable, "-m", "licentia", "central", "serve", "--data", str(data), "--port", str(port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            import httpx

            deadline = time.monotonic() + 30
            while True:
                if proc.poll() is not None:
                    fail(f"License Central did not start; see {data.parent / 'central.log'}")
                try:
                    if httpx.get(url + "/health", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    fail("License Central did not answer within 30 s")
                time.sleep(0.1)
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()


def _step(n: int, text: str) -> None:
    console.print(f"\n[bold cyan]{n}.[/] {text}")


def demo(
    keep: Annotated[bool, typer.Option("--keep", help="Keep the temporary directory and print its path.")] = False,
) -> None:
    """Walk the whole flow (vendor, activation, access, deactivation) in a temporary directory."""

    def go() -> None:
        from ..client import CentralClient, CentralError
        from ..runtime import activation, make_runtime

        tmp = Path(tempfile.mkdtemp(prefix="licentia-demo-"))
        admin = secrets.token_urlsafe(32)
        console.print(f"[bold]licentia demo[/] in {tmp}")
        _step(1, "Start License Central (SQLite, local files, localhost)")
        with _central(tmp / "central", admin) as url:
            console.print(f"   Central at {url}")
            vendor = CentralClient(url, api_key=admin)

            def call(method: str, path: str, body: Any = None) -> Any:
                try:
                    return vendor.request(method, path, json=body)
                except CentralError as exc:
                    fail(f"{method} {path}: {exc}")

            _step(2, "Vendor: create a firm (Central makes its signing key), an item, a customer, an order")
            call("POST", "/firms", {"code": FIRM, "name": "Demo Software"})
            item = call(
                "POST",
                "/items",
                {
                    "firm_code": FIRM,
                    "name": "Demo Pro",
                    "product_code": PRODUCT,
                    "feature_map": 0b111,
                    "options": {"expires_days": 30, "units": 100},
                },
            )
            customer = call(
                "POST", "/customers", {"firm_code": FIRM, "name": "Ada Example", "email": "ada@example.org"}
            )
            order = call(
                "POST", "/tickets", {"firm_code": FIRM, "customer": customer["number"], "items": [item["item_id"]]}
            )
            ticket = order["tickets"][0]["ticket"]
            console.print(f"   item {item['item_id']}, customer {customer['number']}, ticket [bold]{ticket}[/]")
            pem = tmp / f"firm-{FIRM}.pem"
            pem.write_text(vendor.firm_public_pem(FIRM))
            console.print(f"   firm public key for the app to pin: {pem}")

            _step(3, "End user: activate the ticket (a machine container is made and bound to this machine)")
            rt = make_runtime(tmp / "home")
            container, update = activation.activate(ticket, url, runtime=rt)
            console.print(f"   container {container.serial}, update {update.seq}, {len(update.entries)} license")

            _step(4, "App: licentia.access(10101, 1, feature_code=0b101, units=5)")
            rt.trust(FIRM, pem)
            with rt.access(FIRM, PRODUCT, 0b101, units=5) as handle:
                console.print(
                    f"   granted: license {handle.license_id}, features {handle.feature_map:#05b}, "
                    f"units left {handle.units_left}"
                )
            try:
                rt.access(FIRM, PRODUCT, 0b1000)
            except Exception as exc:  # noqa: BLE001 - shown to the user
                console.print(f"   feature 0b1000 refused as it should be: {type(exc).__name__}")

            _step(5, "End user: deactivate (the container signs a receipt; Central frees the ticket)")
            activation.deactivate(ticket, url, runtime=rt)
            state = call("GET", f"/tickets/{ticket}")["state"]
            console.print(f"   ticket state at Central: {state}")
            vendor.close()
        _step(6, "Central stopped.")
        if keep:
            console.print(f"Files kept in {tmp}")
        else:
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)
        console.print("[bold green]Demo finished.[/]")

    run_guarded(go)
