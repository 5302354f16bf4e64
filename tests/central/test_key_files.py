"""Keys from files the environment names (``LICENTIA_MASTER_KEY_FILE``,
``LICENTIA_ADMIN_KEY_FILE``: a mounted secret, readable by its group, never by every
user), and no key ever made with a database server: replicas sharing one database must
not each make their own."""

from __future__ import annotations

import base64
import os
import pwd
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from central_helpers import ADMIN_KEY, MASTER_KEY, Clock, central_app, child_env, free_port

from licentia.central import keys as central_keys
from licentia.central.app import create_app, create_cloud_app
from licentia.central.settings import ENV_VARS, Settings, SettingsError
from tests.conftest import as_nobody

MASTER = bytes(range(32))


def write_key(path: Path, text: str, mode: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)
    return path


def file_settings(tmp_path: Path, master: Path | None, admin: Path | None, url: str | None = None) -> Settings:
    env = {"LICENTIA_DATA": str(tmp_path / "d")}
    if master is not None:
        env["LICENTIA_MASTER_KEY_FILE"] = str(master)
    if admin is not None:
        env["LICENTIA_ADMIN_KEY_FILE"] = str(admin)
    if url is not None:
        env["LICENTIA_DATABASE_URL"] = url
    return Settings.from_env(env)


def serve(tmp_path: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`licentia central serve` that is expected to stop before it serves."""
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "licentia",
            "central",
            "serve",
            "--data",
            str(tmp_path / "d"),
            "--port",
            str(free_port()),
        ],
        env=child_env({"COLUMNS": "300", **env}),
        capture_output=True,
        text=True,
        timeout=60,
    )


def one_error_line(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    return lines[0]


def test_the_variables_are_known():
    assert {"LICENTIA_MASTER_KEY_FILE", "LICENTIA_ADMIN_KEY_FILE"} <= set(ENV_VARS)
    assert Settings.from_env({}).master_key_path is None
    assert Settings.from_env({"LICENTIA_MASTER_KEY_FILE": ""}).master_key_path is None


@pytest.mark.parametrize("form", ["hex", "base64"])
def test_keys_come_from_the_files_the_variables_name_whitespace_stripped(tmp_path, form):
    text = MASTER.hex() if form == "hex" else base64.b64encode(MASTER).decode()
    master = write_key(tmp_path / "secret" / "master.key", f"\n  {text} \n", 0o440)
    admin = write_key(tmp_path / "secret" / "admin.key", f"  {ADMIN_KEY}\n\n", 0o640)
    settings = file_settings(tmp_path, master, admin)
    keys = central_keys.load_or_create(settings)
    assert keys.master_key == MASTER and keys.master_source == str(master)
    assert keys.admin_hash == central_keys.hash_api_key(ADMIN_KEY) and keys.admin_source == str(admin)
    assert keys.admin_key_created is None
    assert not settings.key_dir.exists()  # nothing made in the keys directory
    assert central_keys.master_key_location(settings) == str(master)


def test_a_kubernetes_secret_mount_is_read(tmp_path):
    """A secret volume: each key a symlink into ``..data``, itself a symlink to the
    timestamped directory whose files carry the defaultMode (0440) and the fsGroup."""
    volume = tmp_path / "secret"
    stamped = volume / "..2026_01_01_00_00_00.000000001"
    write_key(stamped / "master.key", MASTER.hex(), 0o440)
    write_key(stamped / "admin.key", ADMIN_KEY, 0o440)
    (volume / "..data").symlink_to(stamped.name)
    for name in ("master.key", "admin.key"):
        (volume / name).symlink_to(f"..data/{name}")
    settings = file_settings(tmp_path, volume / "master.key", volume / "admin.key")
    with central_app(settings, Clock()) as app:
        keys = app.state.central.keys
    assert keys.master_key == MASTER and keys.admin_hash == central_keys.hash_api_key(ADMIN_KEY)


@pytest.mark.parametrize("bits", [0o644, 0o604, 0o444, 0o602, 0o666])
@pytest.mark.parametrize("which", ["MASTER", "ADMIN"])
def test_a_key_file_every_user_may_read_or_write_is_refused_also_for_root(tmp_path, which, bits):
    master = write_key(tmp_path / "secret" / "master.key", MASTER.hex(), 0o440)
    admin = write_key(tmp_path / "secret" / "admin.key", ADMIN_KEY, 0o440)
    open_one = master if which == "MASTER" else admin
    open_one.chmod(bits)
    if os.geteuid() == 0:
        assert os.access(open_one, os.R_OK)  # root may read it: the mode bits decide, not access()
    settings = file_settings(tmp_path, master, admin)
    with pytest.raises(SettingsError) as refused:
        create_app(settings, clock=Clock())
    message = str(refused.value)
    assert f"LICENTIA_{which}_KEY_FILE" in message and f"{bits:04o}" in message and "\n" not in message
    assert f"chmod 600 {open_one}" in message
    assert not (tmp_path / "d" / "central.db").exists()  # refused before the database is opened
    open_one.chmod(0o640)  # the group may read it
    with central_app(settings, Clock()):
        pass


def test_serve_refuses_a_world_readable_key_file_in_one_line(tmp_path):
    master = write_key(tmp_path / "secret" / "master.key", MASTER.hex(), 0o644)
    line = one_error_line(serve(tmp_path, {"LICENTIA_MASTER_KEY_FILE": str(master), "LICENTIA_ADMIN_KEY": ADMIN_KEY}))
    assert line == (
        f"error: the key file {master} (LICENTIA_MASTER_KEY_FILE) is open to every user (mode 0644): "
        f"run chmod 600 {master} (or chmod 440 {master} for a group that reads it)"
    )


def test_a_missing_unreadable_or_empty_key_file_is_refused(tmp_path):
    missing = tmp_path / "secret" / "master.key"
    with pytest.raises(SettingsError, match=f"LICENTIA_MASTER_KEY_FILE names {missing}, which does not exist"):
        central_keys.load_or_create(file_settings(tmp_path, missing, None))
    directory = tmp_path / "secret" / "admin.key"
    directory.mkdir(parents=True, mode=0o700)
    with pytest.raises(SettingsError, match="LICENTIA_ADMIN_KEY_FILE names .*, which cannot be read"):
        central_keys.load_or_create(file_settings(tmp_path, None, directory).with_changes(master_key=MASTER_KEY))
    empty = write_key(tmp_path / "secret" / "empty.key", "\n", 0o600)
    with pytest.raises(SettingsError, match="not 32 bytes"):
        central_keys.load_or_create(file_settings(tmp_path, empty, None))
    with pytest.raises(SettingsError, match="too short"):
        central_keys.load_or_create(file_settings(tmp_path, None, empty).with_changes(master_key=MASTER_KEY))
    binary = write_key(tmp_path / "secret" / "binary.key", "", 0o600)
    binary.write_bytes(b"\xff\xfe" * 16)
    with pytest.raises(SettingsError, match="holds no key text"):
        central_keys.load_or_create(file_settings(tmp_path, binary, None))


@pytest.mark.parametrize("which", ["MASTER", "ADMIN"])
def test_a_key_and_its_file_variable_together_are_refused(tmp_path, which):
    path = write_key(tmp_path / "k", "x", 0o600)
    env = {
        f"LICENTIA_{which}_KEY": MASTER_KEY if which == "MASTER" else ADMIN_KEY,
        f"LICENTIA_{which}_KEY_FILE": str(path),
    }
    expected = f"LICENTIA_{which}_KEY and LICENTIA_{which}_KEY_FILE are both set: set one of them"
    with pytest.raises(SettingsError) as refused:
        Settings.from_env(env)
    assert str(refused.value) == expected
    with pytest.raises(SettingsError, match=expected):
        Settings(data_dir=tmp_path / "d", **{f"{which.lower()}_key": "k" * 20, f"{which.lower()}_key_path": path})
    assert one_error_line(serve(tmp_path, env)) == f"error: {expected}"


def test_as_an_unprivileged_user_the_group_may_read_and_others_may_not(shared_dir):
    """As the user nobody (as a pod's user with an fsGroup): a key file of root's group
    nogroup, mode 0440, is read; one only root may read is refused as unreadable, one
    that nobody owns and every user may read is refused as open."""
    nobody = pwd.getpwnam("nobody")
    probe = (
        "import sys\n"
        "from licentia.central.keys import load_or_create\n"
        "from licentia.central.settings import Settings, SettingsError\n"
        "env = {'LICENTIA_DATA': sys.argv[1] + '/d', 'LICENTIA_MASTER_KEY_FILE': sys.argv[2],\n"
        "       'LICENTIA_ADMIN_KEY': 'a' * 20}\n"
        "try:\n"
        "    keys = load_or_create(Settings.from_env(env))\n"
        "except SettingsError as exc:\n"
        "    print('refused:', exc)\n"
        "else:\n"
        "    print('master:', keys.master_key.hex())\n"
    )
    group = write_key(shared_dir / "group.key", MASTER.hex(), 0o440)
    os.chown(group, 0, nobody.pw_gid)
    only_root = write_key(shared_dir / "root.key", MASTER.hex(), 0o600)
    world = write_key(shared_dir / "world.key", MASTER.hex(), 0o644)
    os.chown(world, nobody.pw_uid, nobody.pw_gid)

    def run(path: Path) -> str:
        out = as_nobody(probe, str(shared_dir), str(path))
        assert out.returncode == 0, out.stderr
        return out.stdout.strip()

    assert run(group) == f"master: {MASTER.hex()}"
    assert run(only_root) == (
        f"refused: LICENTIA_MASTER_KEY_FILE names {only_root}, which this user cannot read: make this user its "
        f"owner or give it a group of this user's (chmod 440 {only_root})"
    )
    assert run(world).startswith(f"refused: the key file {world} (LICENTIA_MASTER_KEY_FILE) is open to every user")
    assert not (shared_dir / "d-keys").exists()


# ---------------------------------------------------------------- no key made with a database server


def test_only_sqlite_counts_as_a_database_of_this_machine(tmp_path):
    assert Settings(data_dir=tmp_path).sqlite
    assert Settings(database_url="sqlite+pysqlite:////srv/central.db").sqlite
    for url in ("postgresql://u@h/db", "postgresql+psycopg://u@h/db", "postgres://u@h/db"):
        assert not Settings(database_url=url).sqlite


def test_sqlite_still_makes_both_keys_on_the_first_start(tmp_path):
    settings = Settings(data_dir=tmp_path / "d")
    with central_app(settings, Clock()) as app:
        keys = app.state.central.keys
    assert keys.admin_key_created and keys.admin_source == str(settings.admin_key_file)
    assert keys.master_source == str(settings.master_key_file) and settings.master_key_file.exists()


@pytest.mark.postgres
def test_postgresql_never_makes_a_key(tmp_path, pg_url):
    settings = Settings(data_dir=tmp_path / "d", database_url=pg_url)
    for build in (create_app, create_cloud_app):
        with pytest.raises(SettingsError) as refused:
            build(settings, clock=Clock())
        message = str(refused.value)
        assert message.startswith("no master key: with a database server (not SQLite) Central never makes one")
        assert "LICENTIA_MASTER_KEY_FILE" in message and "or in LICENTIA_MASTER_KEY," in message
        assert str(settings.master_key_file) in message and "\n" not in message
    with pytest.raises(SettingsError) as refused:
        create_app(settings.with_changes(master_key=MASTER_KEY), clock=Clock())
    message = str(refused.value)
    assert message.startswith("no admin key:") and "LICENTIA_ADMIN_KEY_FILE" in message
    assert str(settings.admin_key_file) in message
    assert not settings.key_dir.exists()  # nothing was made

    line = one_error_line(serve(tmp_path, {"LICENTIA_DATABASE_URL": pg_url}))
    assert line.startswith("error: no master key:") and "LICENTIA_MASTER_KEY_FILE" in line
    assert not settings.key_dir.exists()

    # given as files the variables name, or as key files in the keys directory, they are used
    secret = tmp_path / "secret"
    write_key(secret / "master.key", MASTER_KEY + "\n", 0o440)
    write_key(secret / "admin.key", ADMIN_KEY + "\n", 0o440)
    with central_app(file_settings(tmp_path, secret / "master.key", secret / "admin.key", pg_url), Clock()) as app:
        assert app.state.central.keys.master_source == str(secret / "master.key")
    settings.key_dir.mkdir(mode=0o700)
    shutil.copy(secret / "master.key", settings.master_key_file)
    shutil.copy(secret / "admin.key", settings.admin_key_file)
    for path in (settings.master_key_file, settings.admin_key_file):
        path.chmod(0o600)
    with central_app(settings, Clock()) as app:
        keys = app.state.central.keys
    assert keys.master_source == str(settings.master_key_file) and keys.admin_key_created is None
    assert keys.admin_hash == central_keys.hash_api_key(ADMIN_KEY)


def test_backup_names_the_key_file_a_variable_names(tmp_path):
    master = write_key(tmp_path / "secret" / "master.key", MASTER.hex(), 0o440)
    proc = subprocess.run(
        [sys.executable, "-m", "licentia", "central", "backup", "-o", str(tmp_path / "b.dump")],
        env=child_env(
            {
                "COLUMNS": "300",
                "LICENTIA_DATABASE_URL": "postgresql://central@db.example/central",
                "LICENTIA_MASTER_KEY_FILE": str(master),
            }
        ),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert f"(it is in {master})" in proc.stdout
