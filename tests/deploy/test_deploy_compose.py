"""deploy/compose.yaml, checked without a container engine: against the compose
specification's schema (check-jsonschema ships it), and for what one host needs: PostgreSQL
on a named volume, a one-shot migration, two Central replicas behind the reverse proxy that
is their one trusted proxy, a license server, health checks, restarts, secrets as files."""

from __future__ import annotations

import ipaddress
import re
import subprocess

from tests.conftest import ROOT
from tests.deploy.deploy_helpers import COMPOSE, DEPLOY, load_yaml, tool, uses_image

SPEC = load_yaml(COMPOSE)
SERVICES = SPEC["services"]


def _check(path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tool("check-jsonschema", "the check-jsonschema wheel"), "--builtin-schema", "vendor.compose-spec", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_compose_file_matches_the_compose_specification(tmp_path):
    wrong = tmp_path / "compose.yaml"
    wrong.write_text("services:\n  central:\n    image: licentia\n    restart: sometimes\n    replicas: 2\n")
    assert _check(wrong).returncode != 0  # the schema is there and strict
    done = _check(COMPOSE)
    assert done.returncode == 0, done.stdout + done.stderr


def _depends(service: str) -> dict[str, str]:
    return {name: spec["condition"] for name, spec in SERVICES[service].get("depends_on", {}).items()}


def _licentia_services() -> dict[str, dict]:
    return {name: s for name, s in SERVICES.items() if uses_image(s.get("image", ""))}


def test_postgresql_15_on_a_named_volume():
    db = SERVICES["db"]
    assert db["image"].split(":")[1].split("-")[0] == "15"
    volume = db["volumes"][0].split(":")[0]
    assert volume in SPEC["volumes"], "a named volume"
    assert "POSTGRES_PASSWORD" not in db["environment"] and db["environment"]["POSTGRES_PASSWORD_FILE"]


def test_the_migration_runs_once_before_central():
    migrate = SERVICES["migrate"]
    assert migrate["command"] == ["central", "migrate"]
    assert migrate["restart"] == "no"
    assert _depends("migrate") == {"db": "service_healthy"}
    central = SERVICES["central"]
    assert _depends("central")["migrate"] == "service_completed_successfully"
    assert "--no-migrate" in central["command"], "a replica never migrates on its own"


def test_two_central_replicas_publish_nothing_behind_their_trusted_proxy():
    central = SERVICES["central"]
    assert central["deploy"]["replicas"] == 2
    assert "ports" not in central and "container_name" not in central
    assert central["command"][:2] == ["central", "serve"] and "0.0.0.0" in central["command"]

    proxy = SERVICES["proxy"]
    assert proxy["ports"] == ["8480:8480"], "the proxy alone publishes Central's port"
    assert [name for name, s in SERVICES.items() if any(str(p).startswith("8480") for p in s.get("ports", []))] == [
        "proxy"
    ]
    assert _depends("proxy") == {"central": "service_healthy"}
    shared = set(central["networks"]) & set(proxy["networks"])
    assert len(shared) == 1
    address = ipaddress.ip_address(proxy["networks"][shared.pop()]["ipv4_address"])
    trusted = [
        ipaddress.ip_network(n.strip()) for n in central["environment"]["LICENTIA_FORWARDED_ALLOW_IPS"].split(",")
    ]
    assert any(address in network for network in trusted), "the proxy is Central's trusted proxy"
    subnet = ipaddress.ip_network(SPEC["networks"]["edge"]["ipam"]["config"][0]["subnet"])
    assert address in subnet

    mounted = next(v for v in proxy["volumes"] if v.endswith(":ro"))
    conf = (DEPLOY / mounted.split(":")[0]).read_text()
    assert re.search(r"server\s+central:8480\b", conf), "nginx proxies to the central service"
    assert "proxy_pass http://central;" in conf
    assert "X-Forwarded-For $proxy_add_x_forwarded_for" in conf
    assert re.search(r"listen\s+8480;", conf)
    health_port = re.search(r"127\.0\.0\.1:(\d+)", " ".join(proxy["healthcheck"]["test"])).group(1)
    assert f"listen 127.0.0.1:{health_port};" in conf


def test_a_license_server_with_its_own_check():
    server = SERVICES["license-server"]
    assert server["command"][:2] == ["server", "start"]
    assert "22370:22370" in server["ports"]
    assert "127.0.0.1:22370/health" in " ".join(server["healthcheck"]["test"])
    named = [v for v in server["volumes"] if isinstance(v, str) and v.split(":")[0] in SPEC["volumes"]]
    assert named, "its data on a named volume"


def test_every_long_running_service_has_a_health_check_and_a_restart_policy():
    for name, service in SERVICES.items():
        if name == "migrate":
            continue
        assert service.get("restart") in ("always", "unless-stopped"), name
        assert service.get("healthcheck", {}).get("test"), name
    for name, service in _licentia_services().items():
        assert service.get("read_only") is True, f"{name}: a read-only root file system"


def test_secrets_are_files_outside_git():
    secrets = SPEC["secrets"]
    assert set(secrets) >= {"master_key", "admin_key", "pgpass", "db_password"}
    for name, secret in secrets.items():
        assert secret["file"].startswith("./secrets/"), name
    assert "secrets/" in (DEPLOY / ".gitignore").read_text().split()
    tracked = subprocess.run(
        ["git", "ls-files", "deploy/secrets"], cwd=ROOT, capture_output=True, text=True, check=False
    ).stdout
    assert tracked == ""

    # every *_FILE setting names a secret the service mounts; no key, token or password is a value
    for name, service in SERVICES.items():
        env = service.get("environment", {})
        mounted = set(service.get("secrets", []))
        for variable, value in env.items():
            if variable.endswith("FILE") and str(value).startswith("/run/secrets/"):
                assert value.removeprefix("/run/secrets/") in mounted, f"{name}: {variable}"
            elif re.search(r"KEY|TOKEN|PASSWORD|SECRET", variable):
                raise AssertionError(f"{name}: {variable} carries a secret in the environment")
        url = env.get("LICENTIA_DATABASE_URL", "")
        assert "@" not in url or ":" not in url.split("://", 1)[-1].split("@", 1)[0], f"{name}: a password in the URL"
