"""The container image's commands, run as plain commands outside a container against a
real PostgreSQL: `licentia central migrate` once, then two `licentia central serve
--no-migrate` processes on the one database with their keys from files (as the
manifests mount secrets), each answering `/ready`; the image's HEALTHCHECK command (read
from deploy/Dockerfile) passes against each and fails once one stops; what one replica
writes, the other serves."""

from __future__ import annotations

import contextlib
import json
import re
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import child_env, free_port, healthy_process

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]


def healthcheck_command(port: int) -> list[str]:
    """The Dockerfile's HEALTHCHECK command (its JSON form), on ``port`` instead of 8480."""
    text = (ROOT / "deploy" / "Dockerfile").read_text()
    found = re.search(r"HEALTHCHECK[^\n]*\\\n\s*CMD (\[.*\])", text)
    assert found, "deploy/Dockerfile has no HEALTHCHECK ... CMD [...] in JSON form"
    argv = json.loads(found.group(1))
    assert argv[0] == "python" and "8480" in argv[-1], argv
    return [sys.executable, *argv[1:-1], argv[-1].replace("8480", str(port))]


@contextlib.contextmanager
def replica(data: Path, env: dict[str, str]) -> Iterator[str]:
    port = free_port()
    argv = [sys.executable, "-m", "licentia", "central", "serve", "--no-migrate", "--host", "127.0.0.1",
            "--port", str(port), "--data", str(data)]  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    with healthy_process(argv, env=child_env(env), log_path=data.parent / f"central-{port}.log", url=url):
        yield url


def secret_file(path: Path, text: str) -> Path:
    path.write_text(text + "\n")
    path.chmod(0o440)  # as a Secret is mounted (defaultMode 0440, an fsGroup)
    return path


def test_two_replicas_on_one_database_each_ready_and_healthy(tmp_path, pg_url):
    admin = "adm_" + secrets.token_urlsafe(24)
    env = {
        "LICENTIA_DATABASE_URL": pg_url,
        "LICENTIA_MASTER_KEY_FILE": str(secret_file(tmp_path / "master.key", secrets.token_hex(32))),
        "LICENTIA_ADMIN_KEY_FILE": str(secret_file(tmp_path / "admin.key", admin)),
    }
    # before the migration, a replica refuses to start and names the command
    early = subprocess.run(
        [sys.executable, "-m", "licentia", "central", "serve", "--no-migrate", "--port", str(free_port()),
         "--data", str(tmp_path / "a")],
        env=child_env(env), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert early.returncode != 0 and "licentia central migrate" in early.stderr, early.stderr
    done = subprocess.run(
        [sys.executable, "-m", "licentia", "central", "migrate", "--data", str(tmp_path / "m")],
        env=child_env(env), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    with replica(tmp_path / "a", env) as a, replica(tmp_path / "b", env) as b:
        for url in (a, b):
            r = httpx.get(url + "/ready", timeout=10)
            assert r.status_code == 200 and r.json()["status"] == "ready", r.text
            port = int(url.rsplit(":", 1)[1])
            check = subprocess.run(healthcheck_command(port), capture_output=True, timeout=30)
            assert check.returncode == 0, check.stderr
        # one database, one master key: a firm made through one replica is served by the other
        headers = {"Authorization": f"Bearer {admin}"}
        made = httpx.post(a + "/api/v1/firms", json={"code": 64001, "name": "Replicated"}, headers=headers)
        assert made.status_code == 201, made.text
        keys_a = httpx.get(a + "/api/v1/firms/64001/public-key").json()
        keys_b = httpx.get(b + "/api/v1/firms/64001/public-key").json()
        assert keys_a == keys_b and keys_b["keys"]
        key = httpx.post(b + "/api/v1/apikeys", json={"firm_code": 64001}, headers=headers)
        assert key.status_code == 201, key.text  # the firm's key, sealed under the shared master key, opens on b
        b_port = int(b.rsplit(":", 1)[1])
    # the replica stopped: its health check fails
    assert subprocess.run(healthcheck_command(b_port), capture_output=True, timeout=30).returncode != 0
