"""`licentia central backup` as a real process: a consistent copy of the SQLite
database taken while Central runs, mode 0600, without the master key; restored
alone on a new data directory it works once the master key is given apart. With
PostgreSQL it prints the pg_dump command, never the password."""

from __future__ import annotations

import base64
import shutil
import stat
import subprocess
import sys

import pytest
from central_helpers import ADMIN_KEY, Clock, FakeContainer, Vendor, central_app, child_env
from fastapi.testclient import TestClient

from licentia.central.app import create_app
from licentia.central.settings import Settings, SettingsError
from licentia.core import keyfile


def backup(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "licentia", "central", "backup", *args],
        env=child_env({"COLUMNS": "200", **(env or {})}),
        capture_output=True,
        text=True,
        timeout=60,
    )


def product_key(client: TestClient, headers: dict[str, str], pinned: dict, version: int) -> bytes:
    """Product 7's key of firm 4242, exported (it needs the firm's product-key secret and signing key)."""
    r = client.get(f"/api/v1/firms/4242/products/7/keys/{version}", headers=headers)
    assert r.status_code == 200, r.text
    return keyfile.verify(r.json(), pinned, firm_code=4242, product_code=7, version=version).key


def public_keys(client: TestClient) -> dict:
    r = client.get("/api/v1/firms/4242/public-key")
    assert r.status_code == 200, r.text
    return {k["kid"]: k["pem"] for k in r.json()["keys"]}


def test_a_backup_restored_alone_works_with_the_master_key_given_apart(tmp_path):
    settings = Settings(data_dir=tmp_path / "a", admin_key=ADMIN_KEY)  # master key from its file
    out = tmp_path / "backups" / "central-backup.db"
    out.parent.mkdir()
    with central_app(settings, Clock()) as app, TestClient(app) as client:
        vendor = Vendor(client, 4242)
        tickets = vendor.tickets(2)
        pinned, published = vendor.pinned(), public_keys(client)
        exported = product_key(client, vendor.headers, pinned, 1)
        # Central still runs and its last writes are in the WAL: the copy must hold them
        assert (settings.data_dir / "central.db-wal").stat().st_size > 0
        proc = backup("-o", str(out), "--data", str(settings.data_dir))
    assert proc.returncode == 0, proc.stderr
    (line,) = proc.stdout.splitlines()
    assert str(out) in line and "master key is NOT in it" in line and str(settings.master_key_file) in line

    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert [p.name for p in out.parent.iterdir()] == [out.name]  # no temporary file left behind
    master_text = settings.master_key_file.read_text().strip()
    master = base64.b64decode(master_text)
    copy = out.read_bytes()
    for secret in (master, master_text.encode(), master.hex().encode(), ADMIN_KEY.encode()):
        assert secret not in copy

    restored = tmp_path / "b"
    restored.mkdir(mode=0o700)
    shutil.copyfile(out, restored / "central.db")
    # without the master key Central makes a new one, which cannot open the firm secrets
    with pytest.raises(SettingsError, match="does not open the firm secrets"):
        create_app(Settings(data_dir=restored, admin_key=ADMIN_KEY), clock=Clock())
    given = Settings(data_dir=restored, admin_key=ADMIN_KEY, master_key=master_text)
    with central_app(given, Clock()) as app, TestClient(app) as client:
        assert public_keys(client) == published
        # the vendor's API key (its hash is in the database) and the firm's secrets work
        assert product_key(client, vendor.headers, pinned, 1) == exported
        box = FakeContainer()
        r = client.post("/api/v1/activations", json=box.request("activate", ticket=tickets[1], now=Clock().now))
        assert r.status_code == 200, r.text
        update = box.apply(r.json(), pinned)  # signed by the firm key made before the backup
        assert exported in box.product_keys(update)


def test_the_backup_of_postgresql_is_the_pg_dump_command_without_the_password(tmp_path):
    url = "postgresql://alice:pw-s3cret@db.example.com:5433/licentia"
    out = tmp_path / "central.dump"
    proc = backup("-o", str(out), env={"LICENTIA_DATABASE_URL": url, "LICENTIA_MASTER_KEY": "22" * 32})
    assert proc.returncode == 0, proc.stderr
    assert "pw-s3cret" not in proc.stdout + proc.stderr
    command = proc.stdout.splitlines()[-1]
    assert command == (
        f"pg_dump --format=custom --file {out} --host db.example.com --port 5433 --username alice --dbname licentia"
    )
    assert "master key is NOT in the dump" in proc.stdout and "LICENTIA_MASTER_KEY" in proc.stdout
    assert not out.exists()


def one_line_error(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 1 and proc.stdout == "" and "Traceback" not in proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    return line


def test_a_missing_or_broken_database_is_one_line_and_exit_1(tmp_path):
    out = tmp_path / "out.db"
    assert "no database at" in one_line_error(backup("-o", str(out), "--data", str(tmp_path / "none")))
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "central.db").write_bytes(b"not a database at all, " * 100)
    assert "cannot back up the database" in one_line_error(backup("-o", str(out), "--data", str(broken)))
    assert "is the database itself" in one_line_error(backup("-o", str(broken / "central.db"), "--data", str(broken)))
    assert "no directory" in one_line_error(backup("-o", str(tmp_path / "no" / "out.db"), "--data", str(broken)))
    assert not out.exists() and not list(tmp_path.glob(".out.db.*"))


def test_an_existing_backup_file_is_replaced_whole(tmp_path):
    settings = Settings(data_dir=tmp_path / "d", admin_key=ADMIN_KEY, master_key="33" * 32)
    with central_app(settings, Clock()):
        pass
    out = tmp_path / "nightly.db"
    out.write_bytes(b"yesterday")
    out.chmod(0o644)
    proc = backup("-o", str(out), "--data", str(settings.data_dir))
    assert proc.returncode == 0, proc.stderr
    assert out.read_bytes().startswith(b"SQLite format 3\x00") and stat.S_IMODE(out.stat().st_mode) == 0o600
    assert "keep it separately" in proc.stdout and "it is in" not in proc.stdout  # no master key file here
