"""`licentia vendor product-key export -o FILE` keeps the product key out of git work
trees: refused in one line inside one (a `.git` entry in FILE's directory or any
directory above), written with --force or outside; always mode 0600."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import httpx
import pytest
from central_helpers import ADMIN_KEY, ServerThread, central_app, free_port, make_settings

from licentia.core import keyfile
from tests.cli.helpers import vendor
from tests.conftest import ROOT

FIRM = 47001
PRODUCT = 9


@pytest.fixture(scope="module")
def central(tmp_path_factory: pytest.TempPathFactory):
    with central_app(make_settings(tmp_path_factory.mktemp("guard") / "data")) as app, ServerThread(app) as srv:
        admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
        assert httpx.post(f"{srv.url}/api/v1/firms", json={"code": FIRM, "name": "Guard"}, headers=admin).is_success
        key = httpx.post(f"{srv.url}/api/v1/apikeys", json={"firm_code": FIRM}, headers=admin).json()["key"]
        yield srv.url, key


def export(central: tuple[str, str], output: Path | str, *extra: str, url: str | None = None) -> tuple[int, str, str]:
    base, key = central
    args = ["product-key", "export", "--firm-code", str(FIRM), "--product-code", str(PRODUCT), "-o", str(output)]
    return vendor([*args, *extra], url=url or base, key=key)


def assert_key_file(central: tuple[str, str], path: Path) -> None:
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    pem = httpx.get(f"{central[0]}/api/v1/firms/{FIRM}/public-key?format=pem").text
    assert keyfile.verify(path.read_bytes(), keyfile.keys_from_pem(pem), product_code=PRODUCT, version=1).version == 1


def assert_refused(result: tuple[int, str, str], target: Path, tree: Path) -> None:
    code, out, err = result
    assert code != 0 and out == ""
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert f"inside the git work tree {tree}" in err and "in clear" in err
    assert "outside the work tree" in err and "--force" in err
    assert not target.exists()
    assert not [p for p in target.parent.iterdir() if p.name.startswith(f".{target.name}.")]  # no temporary file


def make_repo(path: Path, *, linked: bool = False) -> Path:
    path.mkdir(parents=True)
    if linked:  # a linked work tree or a submodule: .git is a file naming the git directory
        (path / ".git").write_text("gitdir: /somewhere/else/.git/worktrees/x\n")
    else:
        (path / ".git").mkdir()
    return path


def test_refused_in_a_work_tree_and_below_it(central, tmp_path):
    repo = make_repo(tmp_path / "repo")
    assert_refused(export(central, repo / "key.json"), repo / "key.json", repo)
    deep = repo / "build" / "keys"
    deep.mkdir(parents=True)
    assert_refused(export(central, deep / "acme-1-v1.key"), deep / "acme-1-v1.key", repo)


def test_refused_in_a_linked_work_tree(central, tmp_path):
    repo = make_repo(tmp_path / "worktree", linked=True)
    (repo / "sub").mkdir()
    assert_refused(export(central, repo / "sub" / "key.json"), repo / "sub" / "key.json", repo)


def test_refused_for_a_relative_path_and_through_a_symlinked_directory(central, tmp_path, monkeypatch):
    repo = make_repo(tmp_path / "repo")
    (repo / "keys").mkdir()
    monkeypatch.chdir(repo / "keys")
    assert_refused(export(central, "key.json"), repo / "keys" / "key.json", repo)
    link = tmp_path / "elsewhere"
    link.symlink_to(repo / "keys")  # the file would land in the work tree all the same
    assert_refused(export(central, link / "key.json"), repo / "keys" / "key.json", repo)


def test_refused_before_asking_central(central, tmp_path):
    """The guard needs no network: nothing is fetched for a file that would not be written."""
    repo = make_repo(tmp_path / "repo")
    result = export(central, repo / "key.json", url=f"http://127.0.0.1:{free_port()}")
    assert_refused(result, repo / "key.json", repo)
    assert "reach" not in result.err


def test_force_writes_inside_a_work_tree(central, tmp_path):
    repo = make_repo(tmp_path / "repo")
    target = repo / "key.json"
    code, out, err = export(central, target, "--force")
    assert code == 0, err
    assert_key_file(central, target)
    assert "0600" in err and "never ship it" in err


def test_written_outside_a_work_tree(central, tmp_path, monkeypatch):
    outside = tmp_path / "build-machine" / "keys"
    outside.mkdir(parents=True)
    assert not [d for d in (outside, *outside.parents) if os.path.lexists(d / ".git")]
    target = outside / "key.json"
    code, out, err = export(central, target)
    assert code == 0, err
    assert_key_file(central, target)
    # written again over an existing file: still 0600
    target.chmod(0o644)
    assert export(central, target)[0] == 0
    assert_key_file(central, target)
    # a directory beside a repository, not inside it
    make_repo(tmp_path / "repo")
    monkeypatch.chdir(outside)
    assert export(central, "relative.json")[0] == 0
    assert_key_file(central, outside / "relative.json")


def test_the_project_ignores_the_key_file_names_of_its_examples():
    ignored = (ROOT / ".gitignore").read_text().splitlines()
    assert "key.json" in ignored  # README: product-key export -o key.json
    assert "*.key" in ignored  # docs/protect.md: --product-key-file acme-1-v1.key
    assert not [line for line in ignored if "keys.py" in line]  # pinned public keys belong in the code
