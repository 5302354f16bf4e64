"""Where Central's key files live: outside the data directory, in KEYS
(``LICENTIA_KEYS_DIR``, else ``<data dir>-keys``); legacy files inside the data
directory still read, with a warning, and never replaced by new keys; key files
open to other users refused at start."""

from __future__ import annotations

import base64
import logging
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from central_helpers import Clock, central_app, child_env, free_port

from licentia.central import keys as central_keys
from licentia.central.app import create_app
from licentia.central.settings import ENV_VARS, Settings, SettingsError

LEGACY_MASTER = base64.b64encode(bytes(range(32))).decode()
LEGACY_ADMIN = "legacy-admin-key-0123456789"


def write_key(path: Path, text: str, mode: int = 0o600) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n")
    path.chmod(mode)
    return path


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "licentia.central" and r.levelno == logging.WARNING]


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_default_keys_dir_sits_beside_the_data_dir(tmp_path):
    assert Settings(data_dir=Path(".licentia")).master_key_file == Path(".licentia-keys/master.key")
    assert Settings(data_dir=Path("/srv/central")).master_key_file == Path("/srv/central-keys/master.key")
    assert Settings(data_dir=Path("/srv/central/")).admin_key_file == Path("/srv/central-keys/admin.key")
    assert Settings.from_env({}).key_dir == Path(".licentia-keys")
    assert Settings.from_env({"LICENTIA_DATA": str(tmp_path / "d")}).key_dir == tmp_path / "d-keys"
    assert Settings.from_env({}, data_dir=tmp_path / "cli").key_dir == tmp_path / "cli-keys"
    chosen = Settings.from_env({"LICENTIA_KEYS_DIR": str(tmp_path / "vault")}, data_dir=tmp_path / "d")
    assert chosen.master_key_file == tmp_path / "vault" / "master.key"
    assert chosen.legacy_master_key_file == tmp_path / "d" / "master.key"
    assert "LICENTIA_KEYS_DIR" in ENV_VARS


def test_new_keys_are_made_outside_the_data_dir_0600_in_a_0700_dir(tmp_path, caplog):
    settings = Settings(data_dir=tmp_path / ".licentia")
    with caplog.at_level(logging.WARNING), central_app(settings, Clock()):
        pass
    keys_dir = tmp_path / ".licentia-keys"
    assert sorted(p.name for p in keys_dir.iterdir()) == ["admin.key", "master.key"]
    assert mode(keys_dir) == 0o700
    assert mode(keys_dir / "admin.key") == mode(keys_dir / "master.key") == 0o600
    assert sorted(p.name for p in settings.data_dir.iterdir()) == ["central.db"]
    assert warnings(caplog) == []


def test_environment_beats_the_keys_dir_which_beats_the_legacy_file(tmp_path, caplog):
    settings = Settings(data_dir=tmp_path / "d")
    write_key(settings.legacy_master_key_file, LEGACY_MASTER)
    write_key(settings.legacy_admin_key_file, LEGACY_ADMIN)
    new_master = os.urandom(32)
    write_key(settings.master_key_file, new_master.hex())
    write_key(settings.admin_key_file, "new-admin-key-0123456789")
    env_master = os.urandom(32)

    env = central_keys.load_or_create(settings.with_changes(master_key=env_master.hex(), admin_key="e" * 20))
    assert (env.master_key, env.master_source, env.admin_source) == (env_master, "environment", "environment")
    assert env.admin_hash == central_keys.hash_api_key("e" * 20)

    with caplog.at_level(logging.WARNING):
        new = central_keys.load_or_create(settings)
    assert (new.master_key, new.master_source) == (new_master, str(settings.master_key_file))
    assert new.admin_hash == central_keys.hash_api_key("new-admin-key-0123456789")
    assert any(str(settings.legacy_master_key_file) in w and "not used" in w for w in warnings(caplog))

    settings.master_key_file.unlink()
    settings.admin_key_file.unlink()
    legacy = central_keys.load_or_create(settings)
    assert legacy.master_key == bytes(range(32)) and legacy.master_source == str(settings.legacy_master_key_file)
    assert legacy.admin_hash == central_keys.hash_api_key(LEGACY_ADMIN) and legacy.admin_key_created is None


def test_legacy_keys_are_used_with_a_warning_naming_the_move_and_none_is_made(tmp_path, caplog):
    settings = Settings(data_dir=tmp_path / "data")
    write_key(settings.legacy_master_key_file, LEGACY_MASTER)
    write_key(settings.legacy_admin_key_file, LEGACY_ADMIN)
    with caplog.at_level(logging.WARNING):
        keys = central_keys.load_or_create(settings)
    assert keys.master_key == bytes(range(32)) and keys.admin_key_created is None
    assert not settings.key_dir.exists()  # nothing generated beside the legacy keys
    keys_dir = tmp_path / "data-keys"
    moves = [
        f"mkdir -p -m 700 {keys_dir} && mv {tmp_path / 'data' / name} {keys_dir}/"
        for name in ("master.key", "admin.key")
    ]
    said = warnings(caplog)
    assert len(said) == 2 and all(move in said[i] for i, move in enumerate(moves)), said

    for move in moves:  # the commands in the warnings do the move
        subprocess.run(move, shell=True, check=True)
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        moved = central_keys.load_or_create(settings)
    assert warnings(caplog) == []
    assert moved.master_key == keys.master_key and moved.admin_hash == keys.admin_hash
    assert moved.master_source == str(keys_dir / "master.key") and mode(keys_dir) == 0o700


def test_a_legacy_master_key_alone_is_kept_and_only_the_admin_key_is_made(tmp_path):
    settings = Settings(data_dir=tmp_path / "d")
    write_key(settings.legacy_master_key_file, LEGACY_MASTER)
    keys = central_keys.load_or_create(settings)
    assert keys.master_key == bytes(range(32)) and keys.master_source == str(settings.legacy_master_key_file)
    assert keys.admin_key_created and keys.admin_source == str(settings.admin_key_file)
    assert not settings.master_key_file.exists()


def test_a_legacy_key_open_to_others_is_refused_and_not_replaced(tmp_path):
    settings = Settings(data_dir=tmp_path / "d")
    legacy = write_key(settings.legacy_master_key_file, LEGACY_MASTER, 0o644)
    with pytest.raises(SettingsError, match=f"chmod 600 {legacy}"):
        central_keys.load_or_create(settings)
    assert not settings.master_key_file.exists() and not settings.key_dir.exists()


@pytest.mark.parametrize("bits", [0o644, 0o640, 0o604, 0o620])
@pytest.mark.parametrize("name", ["master.key", "admin.key"])
def test_a_key_file_others_may_read_or_write_is_refused(tmp_path, name, bits):
    settings = Settings(data_dir=tmp_path / "d")
    central_keys.load_or_create(settings)
    path = settings.key_dir / name
    path.chmod(bits)
    with pytest.raises(SettingsError) as refused:
        create_app(settings, clock=Clock())
    message = str(refused.value)
    assert f"chmod 600 {path}" in message and f"{bits:04o}" in message and "\n" not in message
    path.chmod(0o600)
    central_keys.load_or_create(settings)


def test_serve_and_the_asgi_factory_refuse_an_open_key_file(tmp_path, monkeypatch):
    data = tmp_path / "d"
    central_keys.load_or_create(Settings(data_dir=data))
    master = tmp_path / "d-keys" / "master.key"
    master.chmod(0o640)
    proc = subprocess.run(
        [sys.executable, "-m", "licentia", "central", "serve", "--data", str(data), "--port", str(free_port())],
        env=child_env({"COLUMNS": "200"}),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"error: the key file {master} is open to other users (mode 0640): run chmod 600 {master}"
    ]
    from licentia.central.asgi import app_from_env

    monkeypatch.setenv("LICENTIA_DATA", str(data))
    with pytest.raises(SettingsError, match="chmod 600"):
        app_from_env()


@pytest.mark.parametrize("inside", ["keys", "."])
def test_a_keys_dir_inside_the_data_dir_is_warned_about(tmp_path, caplog, inside):
    data = tmp_path / "d"
    settings = Settings(data_dir=data, keys_dir=data / inside)
    with caplog.at_level(logging.WARNING), central_app(settings, Clock()):
        pass
    said = warnings(caplog)
    assert len(said) == 2 and all("inside the data directory" in w and "LICENTIA_KEYS_DIR" in w for w in said)
    assert str(settings.master_key_file) in said[0] and str(settings.admin_key_file) in said[1]


def test_a_keys_dir_outside_the_data_dir_is_quiet(tmp_path, caplog):
    settings = Settings(data_dir=tmp_path / "d", keys_dir=tmp_path / "elsewhere" / "keys")
    with caplog.at_level(logging.WARNING), central_app(settings, Clock()):
        pass
    assert warnings(caplog) == []
    assert mode(tmp_path / "elsewhere" / "keys" / "master.key") == 0o600
