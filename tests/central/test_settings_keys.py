"""Settings come from the environment only at the edge; keys are made once, 0600."""

from __future__ import annotations

import base64
import stat

import pytest
from central_helpers import Clock, central_app

from licentia.central import keys as central_keys
from licentia.central.app import create_app
from licentia.central.settings import ENV_VARS, Settings, SettingsError


def test_from_env(tmp_path):
    env = {
        "LICENTIA_DATA": str(tmp_path / "d"),
        "LICENTIA_DATABASE_URL": "postgresql://u@h/db",
        "LICENTIA_ADMIN_KEY": "a" * 20,
        "LICENTIA_MASTER_KEY": "00" * 32,
        "LICENTIA_ATTEMPTS_PER_TICKET": "4",
    }
    s = Settings.from_env(env)
    assert s.data_dir == tmp_path / "d" and s.database_url == "postgresql://u@h/db"
    assert s.attempts_per_ticket == 4 and s.attempts_per_address == 20 and s.attempt_window == 600
    assert Settings.from_env(env, data_dir=tmp_path / "cli").data_dir == tmp_path / "cli"
    assert Settings.from_env({}).data_dir.name == ".licentia"
    assert Settings.from_env({}, data_dir=tmp_path).db_url == f"sqlite:///{(tmp_path / 'central.db').resolve()}"
    with pytest.raises(SettingsError, match="LICENTIA_ATTEMPT_WINDOW"):
        Settings.from_env({"LICENTIA_ATTEMPT_WINDOW": "soon"})
    assert set(ENV_VARS) >= {"LICENTIA_DATA", "LICENTIA_DATABASE_URL", "LICENTIA_ADMIN_KEY", "LICENTIA_MASTER_KEY"}


def test_every_setting_is_documented():
    from pathlib import Path

    doc = (Path(__file__).parents[2] / "docs" / "central.md").read_text()
    for name in ENV_VARS:
        assert name in doc, name


def test_master_key_forms():
    raw = bytes(range(32))
    assert central_keys.parse_master_key(raw.hex(), "x") == raw
    assert central_keys.parse_master_key(base64.b64encode(raw).decode(), "x") == raw
    assert central_keys.parse_master_key(base64.urlsafe_b64encode(raw).decode().rstrip("="), "x") == raw
    for bad in ("", "00" * 31, "not a key", base64.b64encode(b"x" * 31).decode()):
        with pytest.raises(SettingsError):
            central_keys.parse_master_key(bad, "x")


def test_keys_made_on_first_start_and_reused(tmp_path):
    settings = Settings(data_dir=tmp_path / "d")
    first = central_keys.load_or_create(settings)
    assert first.admin_key_created and first.admin_source == str(tmp_path / "d-keys" / "admin.key")
    assert first.master_source == str(tmp_path / "d-keys" / "master.key")  # outside the data directory
    for path in (settings.admin_key_file, settings.master_key_file):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = central_keys.load_or_create(settings)
    assert again.admin_key_created is None
    assert again.admin_hash == first.admin_hash == central_keys.hash_api_key(first.admin_key_created)
    assert again.master_key == first.master_key and len(first.master_key) == 32
    env = central_keys.load_or_create(Settings(data_dir=tmp_path / "e", admin_key="k" * 20, master_key="22" * 32))
    assert env.admin_source == env.master_source == "environment"
    assert not (tmp_path / "e-keys").exists() and not (tmp_path / "e" / "master.key").exists()


def test_the_database_holds_only_hashes_of_api_keys(tmp_path):
    from fastapi.testclient import TestClient
    from sqlalchemy import select

    from licentia.central.models import ApiKey

    settings = Settings(data_dir=tmp_path / "d", admin_key="admin-" + "k" * 20, master_key="33" * 32)
    with central_app(settings) as app:
        with TestClient(app) as c:
            h = {"Authorization": f"Bearer {settings.admin_key}"}
            c.post("/api/v1/firms", json={"code": 9, "name": "n"}, headers=h)
            key = c.post("/api/v1/apikeys", json={"firm_code": 9}, headers=h).json()["key"]
        with app.state.central.db.engine.connect() as conn:
            rows = conn.execute(select(ApiKey.key_hash)).scalars().all()
    assert rows == [central_keys.hash_api_key(key)]
    assert key.encode() not in (tmp_path / "d" / "central.db").read_bytes()


def test_a_wrong_master_key_is_refused_at_start(tmp_path):
    from fastapi.testclient import TestClient

    good = Settings(data_dir=tmp_path / "d", admin_key="a" * 20, master_key="44" * 32)
    with central_app(good) as app, TestClient(app) as c:
        c.post("/api/v1/firms", json={"code": 9, "name": "n"}, headers={"Authorization": f"Bearer {'a' * 20}"})
    with pytest.raises(SettingsError, match="master key"):
        create_app(good.with_changes(master_key="55" * 32), clock=Clock())


def test_protocol_threads_setting(tmp_path):
    from licentia.central.settings import Settings, SettingsError

    assert Settings.from_env({}, data_dir=tmp_path).protocol_threads == 2
    assert Settings.from_env({"LICENTIA_PROTOCOL_THREADS": "0"}, data_dir=tmp_path).protocol_threads == 0
    with pytest.raises(SettingsError, match="at least 0"):
        Settings.from_env({"LICENTIA_PROTOCOL_THREADS": "-1"}, data_dir=tmp_path)


@pytest.mark.parametrize("part", ["central", "server"])
def test_every_variable_a_settings_module_reads_is_in_its_table(part):
    """The settings module is the one reader of its part's environment, and its ENV_VARS
    table (what docs and deploy/ are checked against) names every variable it reads."""
    import importlib
    import re
    from pathlib import Path

    module = importlib.import_module(f"licentia.{part}.settings")
    read = set(re.findall(r'"(LICENTIA_[A-Z0-9_]+)"', Path(module.__file__).read_text()))
    assert read, "the scan finds the variables"
    assert read == set(module.ENV_VARS), (sorted(read - set(module.ENV_VARS)), sorted(set(module.ENV_VARS) - read))
