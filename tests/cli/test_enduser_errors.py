"""End-user CLI on bad input: one line, non-zero exit, no traceback, nothing changed."""

import json

import pytest
from typer.testing import CliRunner

from licentia import _testing
from licentia.cli.main import app
from licentia.container import MachineContainer
from tests.factory import T0, Firm, machine_traits


@pytest.fixture
def cli(tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("LICENTIA_HOME", str(home))
    _testing.install(clock=_testing.FakeClock(T0), traits=machine_traits)
    runner = CliRunner()

    def run(*args, ok=True):
        result = runner.invoke(app, list(args), catch_exceptions=False)
        if ok:
            assert result.exit_code == 0, result.output
        else:
            assert result.exit_code != 0, result.output
            assert "Traceback" not in result.output
        return result

    return run, home


@pytest.fixture
def installed(cli, tmp_path):
    run, home = cli
    firm = Firm()
    c = MachineContainer.create(home, "medium", machine_traits(), T0)
    req = c.make_request("activate", T0, ticket="00000-00000-00000-00000-00000")
    upd = firm.grant(req)
    path = tmp_path / "update.json"
    path.write_text(json.dumps(upd))
    return run, c, firm, path


def test_apply_then_replay(installed):
    run, c, firm, path = installed
    run("apply", str(path))
    before = (c.path / "state.json").read_bytes()
    out = run("apply", str(path), ok=False)
    assert "applied to container" in out.output and "already: nothing to do" in out.output
    assert (c.path / "state.json").read_bytes() == before


@pytest.mark.parametrize("damage", ["truncate", "flip", "garbage"])
def test_damaged_update_file(installed, damage):
    run, c, firm, path = installed
    text = path.read_text()
    if damage == "truncate":
        text = text[: len(text) // 2]
    elif damage == "flip":
        doc = json.loads(text)
        doc["payload"]["time"] += 1
        text = json.dumps(doc)
    else:
        text = "not json at all"
    path.write_text(text)
    before = (c.path / "state.json").read_bytes()
    out = run("apply", str(path), ok=False)
    assert "failed verification" in out.output
    assert (c.path / "state.json").read_bytes() == before


def test_missing_file_and_missing_central(cli, tmp_path):
    run, home = cli
    assert "cannot read" in run("apply", str(tmp_path / "nope.json"), ok=False).output
    out = run("activate", "00000-00000-00000-00000-00000", ok=False)
    assert "--central" in out.output


def test_central_url_from_config(cli, tmp_path):
    run, home = cli
    home.mkdir(parents=True)
    (home / "config.toml").write_text('[central]\nurl = "http://127.0.0.1:9"\n')
    out = run("activate", "00000-00000-00000-00000-00000", ok=False)
    assert "cannot reach License Central at http://127.0.0.1:9" in out.output


def test_list_empty(cli):
    run, home = cli
    assert "No containers" in run("list").output
    assert run("list", "--json").output.strip() == "[]"
