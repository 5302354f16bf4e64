"""A device's cloud session, kept sealed to its machine container ($LICENTIA_HOME/cloud/):
it opens on this machine only, a changed file is refused, and the file is the owner's."""

from __future__ import annotations

import json
import os
import stat

import pytest

from licentia.container.machine import MachineContainer
from licentia.container.store import open_or_create
from licentia.core import errors as E
from licentia.core.cloudlink import verify_link
from licentia.runtime import cloud
from tests.conftest import as_nobody, require_nobody
from tests.factory import T0, machine_traits, other_machine

TOKEN = "lcs_" + "t" * 43


def test_the_session_opens_on_this_machine_only(tmp_path):
    home = tmp_path / "home"
    box = open_or_create(home, cloud.LEVEL, machine_traits, T0)
    saved = cloud.save(home, box, central="http://c", firm_code=7, login="ada@example.com", device="d1", token=TOKEN)
    assert TOKEN not in saved.path.read_text()
    (found,) = cloud.links(home)
    assert found == saved and found.token(box) == TOKEN
    # the same files on another machine: the container does not open, so nothing unseals
    with pytest.raises(E.ContainerLocked):
        MachineContainer.open(box.path, other_machine())
    # another container of this machine cannot unseal it either
    other = MachineContainer.create(tmp_path / "other", "medium", machine_traits(), T0)
    with pytest.raises(E.LicenseInvalid):
        found.token(other)


def test_a_changed_session_file_is_refused(tmp_path):
    home = tmp_path / "home"
    box = open_or_create(home, cloud.LEVEL, machine_traits, T0)
    saved = cloud.save(home, box, central="http://c", firm_code=7, login="ada@example.com", device="d1", token=TOKEN)
    record = json.loads(saved.path.read_text())
    for change in ({"login": "mallory@example.com"}, {"central": "http://evil"}, {"firm_code": 8}):
        saved.path.write_text(json.dumps({**record, **change}))
        (link,) = cloud.links(home)
        with pytest.raises(E.LicenseInvalid):
            link.token(box)  # the context the session was sealed under names all three
    saved.path.write_text("not json")
    assert cloud.links(home) == []


def test_the_link_document_verifies(tmp_path):
    box = open_or_create(tmp_path / "home", cloud.LEVEL, machine_traits, T0)
    doc = cloud.link_document(box, firm_code=7, name="Ada's laptop", now=T0)
    link = verify_link(doc, T0 + 10)
    assert (link.serial, link.sign_pub, link.firm_code, link.name) == (box.serial, box.sign_pub, 7, "Ada's laptop")


def test_the_session_file_is_the_owners_alone(shared_dir):
    home = shared_dir / "home"
    box = open_or_create(home, cloud.LEVEL, machine_traits, T0)
    saved = cloud.save(home, box, central="http://c", firm_code=7, login="ada@example.com", device="d1", token=TOKEN)
    assert stat.S_IMODE(os.stat(saved.path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(saved.path.parent).st_mode) == 0o700
    # another user cannot read it, checked as an unprivileged user (root reads anything):
    # with every directory on the way open to it, only the file's own mode stops it
    require_nobody()
    os.chmod(home, 0o755)
    os.chmod(saved.path.parent, 0o755)
    probe = "import sys; print(len(open(sys.argv[1]).read()))"
    assert as_nobody(probe, str(home / "containers")).returncode != 0  # a directory: the probe itself works
    out = as_nobody(probe, str(saved.path))
    assert out.returncode != 0 and "PermissionError" in out.stderr, out.stdout + out.stderr
    os.chmod(saved.path, 0o644)  # had save() left it readable, the same probe would read it
    assert as_nobody(probe, str(saved.path)).returncode == 0
