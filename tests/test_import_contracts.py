"""The layering contract (.importlinter, checked by import-linter) and what `import
licentia` costs an application: nothing from outside the standard library but
cryptography and what cryptography itself loads."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT, child_env, require_system

#: what cryptography loads of its own (its OpenSSL bindings and their cffi backend)
CRYPTOGRAPHY = {"cryptography", "_cffi_backend", "_openssl", "cffi"}


def _lint_imports() -> str | None:
    found = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    return found or shutil.which("lint-imports")


def test_the_layering_contract_holds():
    tool = _lint_imports()
    require_system("import-linter (the test extra)", tool is not None)
    assert tool is not None
    out = subprocess.run(
        [tool, "--config", str(ROOT / ".importlinter")],
        cwd=ROOT,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "4 kept, 0 broken" in out.stdout, out.stdout


def test_the_contract_catches_a_wrong_arrow(tmp_path):
    """A copy of the package where the container imports the runtime breaks the contract."""
    tool = _lint_imports()
    require_system("import-linter (the test extra)", tool is not None)
    assert tool is not None
    copy = tmp_path / "src"
    shutil.copytree(
        ROOT / "src" / "licentia", copy / "licentia", ignore=shutil.ignore_patterns("__pycache__", "migrations")
    )
    planted = copy / "licentia" / "container" / "slot.py"
    planted.write_text(planted.read_text() + "\nfrom ..runtime import DEFAULT_PORT  # planted\n")
    env = child_env()
    env["PYTHONPATH"] = str(copy)
    out = subprocess.run(
        [tool, "--config", str(ROOT / ".importlinter")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode != 0 and "container imports only core" in out.stdout, out.stdout


def test_import_licentia_loads_nothing_but_cryptography():
    code = (
        "import json, sys\n"
        "before = set(sys.modules)\n"
        "import licentia\n"
        "new = {m.split('.')[0] for m in set(sys.modules) - before}\n"
        "print(json.dumps(sorted(n for n in new if n not in sys.stdlib_module_names and n != 'licentia')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], env=child_env(), capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    loaded = set(json.loads(out.stdout))
    assert loaded <= CRYPTOGRAPHY, loaded - CRYPTOGRAPHY
    assert "cryptography" in loaded  # the check sees third-party modules at all
