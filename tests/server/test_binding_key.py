"""A license server in a pod: its container bound to a key file (a Secret) instead of the
machine's traits (LICENTIA_SERVER_BINDING_KEY_FILE). The same key opens it on any
machine; another key, or the machine's traits, do not; a key file anyone may read, or
one too short to be a key, is refused with a clear error."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from licentia import _testing
from licentia.core import errors as E
from licentia.core import hazmat
from licentia.core.documents import verify_document
from licentia.core.encoding import b64d
from licentia.server import Settings
from licentia.server.core import LicenseServer
from licentia.server.settings import binding_key_file
from tests.factory import machine_traits, other_machine


def key_file(path: Path, mode: int = 0o440, size: int = 32) -> Path:
    """A key file as an operator makes one, ``size`` characters of random base64 text and
    a newline (raw random bytes may begin or end with a byte the reader strips as
    whitespace, and the key would be shorter than asked)."""
    path.write_text(secrets.token_urlsafe(size)[:size] + "\n")
    path.chmod(mode)
    return path


def server(data: Path, key: Path | None, clock) -> LicenseServer:
    return LicenseServer(Settings(data_dir=data, discovery=False, clock=clock, admin_token="a", binding_key_file=key))


def serials(s: LicenseServer) -> list[str]:
    return [c.serial for c in s.containers()]


def test_the_container_goes_with_its_key_not_with_the_machine(tmp_path, clock):
    _testing.install(traits=machine_traits)
    key = key_file(tmp_path / "binding.key")
    first = server(tmp_path / "data", key, clock)
    serial = first.primary().serial
    pub = hazmat.Ed25519PublicKey.from_public_bytes(b64d(first.primary().sign_pub))
    first.close()
    _testing.install(traits=other_machine)  # the pod moved to another node
    moved = server(tmp_path / "data", key, clock)
    assert serials(moved) == [serial] and verify_document(
        moved.primary().sign("usage-head", {"a": 1}), "usage-head", pub
    )
    moved.close()
    other = server(tmp_path / "data", key_file(tmp_path / "other.key"), clock)  # another Secret
    assert serial not in serials(other)
    other.close()
    unkeyed = server(tmp_path / "data", None, clock)  # the node's own traits
    assert serial not in serials(unkeyed)
    unkeyed.close()


@pytest.mark.parametrize(("mode", "size", "said"), [(0o444, 32, "readable by everyone"), (0o400, 16, "16 bytes")])
def test_a_key_file_anyone_may_read_or_too_short_is_refused(tmp_path, clock, mode, size, said):
    key = key_file(tmp_path / "binding.key", mode, size)
    with pytest.raises(E.NoUsableTraits, match=said):
        server(tmp_path / "data", key, clock).primary()
    missing = tmp_path / "missing.key"
    with pytest.raises(E.NoUsableTraits, match="cannot be read"):
        server(tmp_path / "data2", missing, clock).primary()


def test_the_variable_names_the_file(tmp_path):
    assert binding_key_file({"LICENTIA_SERVER_BINDING_KEY_FILE": str(tmp_path / "k")}) == tmp_path / "k"
    assert binding_key_file({}) is None
    assert Settings.from_env({"LICENTIA_SERVER_BINDING_KEY_FILE": "/run/secrets/k"}).binding_key_file == Path(
        "/run/secrets/k"
    )


def test_the_servers_commands_use_the_key(tmp_path):
    """`licentia server proxy status` and friends open the container the same way: with the
    variable set, a server's data directory made with the key is its own on this machine."""
    key = key_file(tmp_path / "binding.key")
    env = {k: v for k, v in os.environ.items() if not k.startswith("LICENTIA_")}
    env.update(LICENTIA_SERVER_BINDING_KEY_FILE=str(key), PYTHONPATH=str(Path(__file__).parents[2] / "src"))
    data = tmp_path / "data"
    made = subprocess.run(
        [sys.executable, "-m", "licentia", "server", "activate", "--offline", "-o", str(tmp_path / "req.json"),
         "--data", str(data), "00000-00000-00000-00000-00000"],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    _testing.install(traits=other_machine)
    from licentia.runtime import make_runtime
    from licentia.server.core import server_runtime

    keyed = server_runtime(data, key).containers(rescan=True)
    assert [type(c).__name__ for c in keyed.values()] == ["MachineContainer"]
    bare = make_runtime(data).containers(rescan=True)
    assert all(isinstance(c, E.LicenseError) for c in bare.values())
