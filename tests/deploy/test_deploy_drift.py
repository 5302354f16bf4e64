"""No drift between the deployment files and licentia itself: every `licentia` command and
option that the image, the compose file, the Kubernetes manifests and docs/deploy.md run is
one that `licentia ... --help` shows; every LICENTIA_* variable they set is in the settings'
variable tables (the code's and the docs'); every health and readiness path they probe is a
route of the app behind that port."""

from __future__ import annotations

import functools
import re
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from typer.testing import CliRunner

from licentia.central.settings import ENV_VARS as CENTRAL_VARS
from licentia.cli.main import app
from licentia.server.settings import ENV_VARS as SERVER_VARS
from tests.conftest import ROOT
from tests.deploy.deploy_helpers import (
    CENTRAL_PORT,
    COMPOSE,
    DOCKERFILE,
    SERVER_PORT,
    instructions,
    invocations,
    load_yaml,
    pod_specs,
    settings_used,
)


@functools.cache
def help_of(path: tuple[str, ...]) -> tuple[int, str]:
    """`licentia PATH --help`: its exit code and text (wide, so no option name is wrapped)."""
    result = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "240", "NO_COLOR": "1", "TERM": "dumb"})
    return result.exit_code, result.output


def command_path(argv: list[str]) -> tuple[tuple[str, ...], list[str]]:
    """The words of argv that name a command (as `--help` shows each), and the rest."""
    path: tuple[str, ...] = ()
    for i, word in enumerate(argv):
        if word.startswith("-"):
            return path, argv[i:]
        code, text = help_of((*path, word))
        if code != 0 or not re.search(rf"Usage: licentia {re.escape(' '.join((*path, word)))}( |$)", text, re.M):
            return path, argv[i:]  # not a command: an argument
        path = (*path, word)
    return path, []


def options_in_help(text: str) -> set[str]:
    """The option names of the Options table of a `--help` text."""
    names: set[str] = set()
    for line in text.splitlines():
        body = line.strip().strip("│").strip().lstrip("*").strip()
        if not body.startswith("-"):
            continue
        for word in body.split():
            if not word.startswith("-"):
                break
            names.update(w for w in word.split("/") if w.startswith("-"))
    return names


def problems_with(argv: list[str]) -> list[str]:
    """What of this `licentia` argv its `--help` does not show."""
    path, rest = command_path(argv)
    if not path:
        return [f"{' '.join(argv[:1])!r} is no licentia command"]
    code, text = help_of(path)
    if "─ Commands ─" in text:  # the box of subcommands a group's help shows
        return [f"'licentia {' '.join(path)}' is a group of commands, not a command ({' '.join(argv)})"]
    known = options_in_help(text)
    return [
        f"'licentia {' '.join(path)}' has no option {word.split('=')[0]}"
        for word in rest
        if word.startswith("-") and word.split("=")[0] not in known
    ]


def test_the_checker_finds_what_help_does_not_show():
    """The checks below can fail: an unknown command, option or group is named."""
    assert problems_with(["central", "serve", "--host", "0.0.0.0"]) == []
    assert problems_with(["server", "proxy", "link", "https://central.example.com", "lcp_1.x"]) == []
    assert problems_with(["central", "serve", "--no-such-option"]) == [
        "'licentia central serve' has no option --no-such-option"
    ]
    assert problems_with(["central", "no-such-command"]) == [
        "'licentia central' is a group of commands, not a command (central no-such-command)"
    ]
    assert problems_with(["no-such-part", "serve"]) == ["'no-such-part' is no licentia command"]


def test_every_licentia_command_and_option_they_run_is_in_its_help():
    found = invocations()
    commands = {" ".join(command_path(argv)[0]) for _, argv in found}
    # the parts the deployment runs, from each kind of file (or the scan is blind)
    assert {"central serve", "central migrate", "server start", "server proxy link"} <= commands
    assert {where.split(":")[0] for where, _ in found} >= {
        "Dockerfile",
        "compose.yaml",
        "Deployment/licentia-central",
        "Job/licentia-migrate",
        "Deployment/licentia-server",
        "docs/deploy.md",
    }
    wrong = [f"{where}: {problem}" for where, argv in found for problem in problems_with(argv)]
    assert wrong == []


def _settings_table(doc: Path, heading: str) -> set[str]:
    """The variables in the first column of the table under ``heading``."""
    text = doc.read_text()
    section = text.split(heading, 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^\| `(LICENTIA_[A-Z0-9_]+)`", section, re.M))


def test_every_setting_they_set_is_in_the_variable_tables():
    used = settings_used()
    names = {name for _, name in used}
    # the scan sees each kind of file (or it would pass on nothing)
    assert {"LICENTIA_DATA", "LICENTIA_SERVER_DATA", "LICENTIA_FORWARDED_ALLOW_IPS"} <= names
    assert {where.split(":")[0] for where, _ in used} >= {"Dockerfile", "compose.yaml", "central-config.yaml"}

    central_docs = _settings_table(ROOT / "docs" / "central.md", "## Settings")
    operations = (ROOT / "docs" / "operations.md").read_text()
    wrong = []
    for where, name in used:
        if name in CENTRAL_VARS:
            if name not in central_docs:
                wrong.append(f"{where}: {name} is not in docs/central.md's settings table")
        elif name not in SERVER_VARS:
            wrong.append(f"{where}: {name} is in neither central/settings.py's nor server/settings.py's ENV_VARS")
        if not re.search(rf"`{name}`", operations):
            wrong.append(f"{where}: {name} is not in docs/operations.md")
    assert sorted(set(wrong)) == []


def _probes() -> list[tuple[str, int, str]]:
    """(where, port, path) of every health check and probe of licentia's processes."""
    out = []
    for step in instructions(DOCKERFILE.read_text()):
        if step.keyword == "HEALTHCHECK":
            out += [(f"Dockerfile:{step.line}", *_url(step.rest))]
    for name, service in load_yaml(COMPOSE)["services"].items():
        test = service.get("healthcheck", {}).get("test")
        if test and "python" in test:  # licentia's image (PostgreSQL and nginx have theirs)
            out.append((f"compose.yaml:{name}", *_url(" ".join(test))))
    for where, spec in pod_specs():
        for container in spec["containers"]:
            ports = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
            for kind in ("startupProbe", "livenessProbe", "readinessProbe"):
                probe = container.get(kind, {}).get("httpGet")
                if probe:
                    out.append((f"{where}:{kind}", ports.get(probe["port"], probe["port"]), probe["path"]))
    return out


def _url(text: str) -> tuple[int, str]:
    match = re.search(r"http://127\.0\.0\.1:\d+/[\w/-]*", text)
    assert match, f"no local URL in {text!r}"
    url = urlsplit(match.group(0))
    return int(url.port or 80), url.path


def _get_routes(routes: list) -> set[str]:
    return {r.path for r in routes if "GET" in (getattr(r, "methods", None) or ())}


@pytest.fixture(scope="module")
def routes(tmp_path_factory) -> dict[int, set[str]]:
    """The GET routes of License Central and of the license server, from the apps themselves."""
    from licentia.server import Settings as ServerSettings
    from licentia.server import create_app as server_app
    from tests.central.central_helpers import central_app, make_settings

    base = tmp_path_factory.mktemp("apps")
    with central_app(make_settings(base / "central")) as central:
        central_routes = _get_routes(central.routes)
    server = server_app(ServerSettings(data_dir=base / "server"))
    try:
        server_routes = _get_routes(server.app.routes)
    finally:
        server.app.state.license_server.close()
    assert "/health" in central_routes and "/health" in server_routes  # the listing works
    return {CENTRAL_PORT: central_routes, SERVER_PORT: server_routes}


def test_every_probed_path_is_a_route_of_the_app_on_that_port(routes):
    probes = _probes()
    assert {(port, path) for _, port, path in probes} >= {(CENTRAL_PORT, "/health"), (SERVER_PORT, "/health")}
    assert any(path == "/ready" for _, _, path in probes)  # Central's readiness is probed
    wrong = [f"{where}: GET {path} on {port}" for where, port, path in probes if path not in routes.get(port, set())]
    assert wrong == []
