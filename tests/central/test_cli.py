"""`licentia central serve` as a real process, and the vendor CLI against a real
uvicorn server on 127.0.0.1."""

from __future__ import annotations

import signal
import stat
import subprocess
import sys

import httpx
import pytest
from central_helpers import (
    ADMIN_KEY,
    Clock,
    FakeContainer,
    ServerThread,
    central_app,
    child_env,
    free_port,
    make_settings,
    read_until,
    serve_process,
    wait_health,
)

from licentia.core import codes, hazmat
from tests.cli.helpers import vendor


def test_serve_demo_prints_what_it_made_and_stops_on_ctrl_c(tmp_path):
    data = tmp_path / "central-data"
    port = free_port()
    with serve_process(data, port, "--demo") as proc:
        lines = read_until(proc, "public key:")
        text = "\n".join(lines)
        assert f"http://127.0.0.1:{port}" in lines[0]
        keys = tmp_path / "central-data-keys"  # beside the data directory, not in it
        admin_key = (keys / "admin.key").read_text().strip()
        assert admin_key in text and str(keys / "admin.key") in text  # printed once, with where it is
        assert str(keys / "master.key") in text and "apart from the database" in text
        for name in ("admin.key", "master.key"):
            assert stat.S_IMODE((keys / name).stat().st_mode) == 0o600
            assert not (data / name).exists()
        ticket = next(line.split(":", 1)[1].strip() for line in lines if line.startswith("demo ticket:"))
        assert codes.normalize_ticket(ticket) == ticket
        pem_path = data / "firm-10101.pem"
        assert str(pem_path) in text
        base = f"http://127.0.0.1:{port}"
        wait_health(base)
        assert httpx.get(base + "/health").json() == {"status": "ok"}
        info = httpx.get(f"{base}/api/v1/tickets/{ticket}/info").json()
        assert info == {"ticket": ticket, "firm_code": 10101, "product_code": 1, "level": "medium", "state": "new"}
        assert httpx.get(f"{base}/api/v1/firms/10101/public-key?format=pem").text == pem_path.read_text()
        hazmat.load_public_pem(pem_path.read_text())
        item = httpx.get(
            f"{base}/api/v1/items/F-00001-1",
            headers={"Authorization": f"Bearer {admin_key}"},
            params={"firm_code": 10101},
        ).json()
        assert item["feature_map"] == 0xFFFFFFFF and item["options"]["expires_days"] == 30
        assert item["options"]["units"] == 1000 and item["level"] == "medium"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0
        assert "stopped" in proc.stdout.read()
        assert "Traceback" not in proc.stderr.read()
    # a second start finds the key file, prints where it is but not the key
    with serve_process(data, port, env={"LICENTIA_ADMIN_KEY": "x" * 20}) as proc:
        lines = read_until(proc, "master key:")
        assert any("LICENTIA_ADMIN_KEY" in line for line in lines)
        assert admin_key not in "\n".join(lines)
        wait_health(f"http://127.0.0.1:{port}")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0


def test_serve_refuses_a_busy_port_in_one_line(tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        proc = subprocess.run(
            [sys.executable, "-m", "licentia", "central", "serve", "--data", str(tmp_path / "d"), "--port", str(port)],
            env=child_env({"COLUMNS": "200"}),
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert proc.returncode != 0
    assert "in use" in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


@pytest.fixture
def server(tmp_path):
    with central_app(make_settings(tmp_path / "data")) as app, ServerThread(app) as srv:
        yield srv


def test_vendor_cli_flow(server, tmp_path):
    url = server.url
    code, out, err = vendor(["firm", "create", "--code", "30303", "--name", "CLI Firm"], url=url, key=ADMIN_KEY)
    assert code == 0, err
    assert out.strip() == "30303"
    code, out, err = vendor(["apikey", "create", "--firm-code", "30303"], url=url, key=ADMIN_KEY)
    assert code == 0, err
    key = out.strip()
    assert key.startswith("lc_") and len(key) > 40
    code, out, err = vendor(
        [
            "item",
            "create",
            "--name",
            "Pro",
            "--product-code",
            "5",
            "--expires-days",
            "10",
            "--units",
            "3",
            "--key-version",
            "1",
            "--key-version",
            "2",
            "--feature-map",
            "0x0F",
        ],
        url=url,
        key=key,
    )
    assert code == 0, err
    item = out.strip()
    assert codes.check_item_id(item) == item
    code, out, err = vendor(["customer", "create", "--name", "Cust", "--email", "c@example.com"], url=url, key=key)
    assert code == 0, err
    customer = out.strip()
    code, out, err = vendor(
        ["ticket", "create", "--customer", customer, "--item", item, "--count", "3"], url=url, key=key
    )
    assert code == 0, err
    tickets = out.split()
    assert len(tickets) == 3 and all(codes.normalize_ticket(t) == t for t in tickets)
    code, out, err = vendor(["ticket", "show", tickets[0]], url=url, key=key)
    assert code == 0 and '"state": "new"' in out and '"feature_map": 15' in out
    pem_file = tmp_path / "pinned.pem"
    code, out, err = vendor(["firm", "public-key", "30303", "-o", str(pem_file)], url=url, key=None)
    assert code == 0, err
    assert pem_file.read_text() == httpx.get(f"{url}/api/v1/firms/30303/public-key?format=pem").text
    code, out, err = vendor(["firm", "rotate-key", "30303"], url=url, key=key)
    assert code == 0, err
    code, out, _ = vendor(["firm", "public-key", "30303"], url=url, key=None)
    assert out.count("BEGIN PUBLIC KEY") == 2
    box = FakeContainer()
    r = httpx.post(f"{url}/api/v1/activations", json=box.request("activate", ticket=tickets[0], now=Clock().now))
    assert r.status_code == 200, r.text
    code, out, err = vendor(["container", "clear", box.serial], url=url, key=key)
    assert code == 0, err
    code, out, err = vendor(["ticket", "revoke", tickets[0]], url=url, key=key)
    assert code == 0 and box.serial in err
    assert httpx.get(f"{url}/api/v1/tickets/{tickets[0]}/info").json()["state"] == "revoked"

    # failures: one line, non-zero
    other = vendor(["apikey", "create", "--firm-code", "30303"], url=url, key=ADMIN_KEY)[1].strip()
    vendor(["firm", "create", "--code", "40404", "--name", "B"], url=url, key=ADMIN_KEY)
    b_key = vendor(["apikey", "create", "--firm-code", "40404"], url=url, key=ADMIN_KEY)[1].strip()
    assert other and b_key
    typo = tickets[1][:-1] + ("0" if tickets[1][-1] != "0" else "1")
    failures = [
        (["ticket", "show", typo], key, "mistyped"),
        (["ticket", "show", tickets[1]], "lc_not-a-real-key-000000000000", "not valid"),
        (["ticket", "show", tickets[1]], b_key, "unknown_ticket"),
        (["container", "clear", box.serial], b_key, "unknown_container"),
        (["firm", "rotate-key", "30303"], b_key, "forbidden"),
        (["ticket", "show", tickets[1]], None, "LICENTIA_API_KEY"),
        (["firm", "create", "--code", "30303", "--name", "x"], ADMIN_KEY, "firm_exists"),
    ]
    for args, k, expected in failures:
        code, out, err = vendor(args, url=url, key=k)
        assert code != 0, args
        assert expected in err, (args, err)
        assert len(err.strip().splitlines()) == 1, err
        assert "Traceback" not in err and out == ""


def test_vendor_cli_unreachable_central(tmp_path):
    code, out, err = vendor(["firm", "public-key", "1"], url=f"http://127.0.0.1:{free_port()}", key=None)
    assert code != 0 and "cannot reach License Central" in err and len(err.strip().splitlines()) == 1


def test_ticket_create_prints_ids_alone_on_stdout_for_scripts(server):
    """As a real process: stdout carries only the ticket ids."""
    env = child_env({"LICENTIA_CENTRAL_URL": server.url, "LICENTIA_API_KEY": ADMIN_KEY, "COLUMNS": "200"})

    def licentia(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "licentia", *args], env=env, capture_output=True, text=True, timeout=60
        )

    admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
    httpx.post(f"{server.url}/api/v1/firms", json={"code": 505, "name": "S"}, headers=admin)
    made = licentia("vendor", "item", "create", "--firm-code", "505", "--name", "I", "--product-code", "1")
    item = made.stdout.strip()
    cust = licentia("vendor", "customer", "create", "--firm-code", "505", "--name", "C").stdout.strip()
    p = licentia("vendor", "ticket", "create", "--firm-code", "505", "--customer", cust, "--item", item, "--count", "2")
    assert p.returncode == 0, p.stderr
    assert [codes.normalize_ticket(t) for t in p.stdout.splitlines()] == p.stdout.splitlines()
    assert len(p.stdout.splitlines()) == 2
    p = licentia("vendor", "ticket", "revoke", "XXXXX")
    assert p.returncode != 0 and "Traceback" not in p.stderr and len(p.stderr.strip().splitlines()) == 1


def test_serve_with_two_workers(tmp_path):
    data = tmp_path / "d"
    port = free_port()
    with serve_process(data, port, "--workers", "2") as proc:
        read_until(proc, "master key:")
        base = f"http://127.0.0.1:{port}"
        wait_health(base)
        admin = {"Authorization": f"Bearer {(tmp_path / 'd-keys' / 'admin.key').read_text().strip()}"}
        for code in (1, 2, 3, 4):  # whichever worker answers, it shares keys and database
            r = httpx.post(f"{base}/api/v1/firms", json={"code": code, "name": "w"}, headers=admin)
            assert r.status_code == 201
        kids = {httpx.get(f"{base}/api/v1/firms/{c}/public-key").json()["keys"][0]["kid"] for c in (1, 2, 3, 4)}
        assert len(kids) == 4
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0
        assert "Traceback" not in proc.stderr.read()


def test_item_create_local_only_and_product_key_export(server, tmp_path):
    from licentia.core import keyfile

    url = server.url
    assert vendor(["firm", "create", "--code", "40404", "--name", "F"], url=url, key=ADMIN_KEY)[0] == 0
    key = vendor(["apikey", "create", "--firm-code", "40404"], url=url, key=ADMIN_KEY)[1].strip()
    code, out, err = vendor(
        ["item", "create", "--name", "Local", "--product-code", "9", "--local-only"], url=url, key=key
    )
    assert code == 0, err
    code, shown, err = vendor(["item", "show", out.strip()], url=url, key=key)
    assert code == 0 and '"local_only": true' in shown
    code, out, err = vendor(["item", "create", "--name", "Net", "--product-code", "8"], url=url, key=key)
    assert '"local_only"' not in vendor(["item", "show", out.strip()], url=url, key=key)[1]
    code, out, err = vendor(
        ["item", "create", "--name", "Grace", "--product-code", "7", "--max-grace", "3d"], url=url, key=key
    )
    assert code == 0, err
    assert '"max_grace": 259200' in vendor(["item", "show", out.strip()], url=url, key=key)[1]
    code, out, err = vendor(
        ["item", "create", "--name", "Bad", "--product-code", "6", "--max-grace", "soon"], url=url, key=key
    )
    assert code != 0 and "--max-grace" in err and "not a duration" in err
    target = tmp_path / "key.json"
    code, out, err = vendor(
        [
            "product-key",
            "export",
            "--firm-code",
            "40404",
            "--product-code",
            "9",
            "--key-version",
            "3",
            "-o",
            str(target),
        ],
        url=url,
        key=key,
    )
    assert code == 0, err
    assert target.stat().st_mode & 0o777 == 0o600
    pem = httpx.get(f"{url}/api/v1/firms/40404/public-key?format=pem").text
    assert keyfile.verify(target.read_bytes(), keyfile.keys_from_pem(pem), product_code=9, version=3).version == 3
