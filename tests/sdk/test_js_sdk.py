"""The JavaScript package in sdk/js, written from docs/formats.md, passes every vector: its
own tests (node:test) run here, with Node.js 18 or later."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

from tests.conftest import ROOT, require_system

SDK = ROOT / "sdk" / "js"


def _node() -> str | None:
    node = shutil.which("node")
    if node is None:
        return None
    version = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=30).stdout
    match = re.match(r"v(\d+)\.", version)
    return node if match and int(match.group(1)) >= 18 else None


def test_the_javascript_package_passes_every_vector():
    node = _node()
    require_system("Node.js 18 or later (Debian package nodejs)", node is not None)
    assert node is not None
    package = json.loads((SDK / "package.json").read_text())
    assert package.get("dependencies", {}) == {}  # built on node's own modules only
    out = subprocess.run(
        [node, "--test", "test/"], cwd=SDK, capture_output=True, text=True, timeout=300, env={"PATH": "/usr/bin:/bin"}
    )
    report = out.stdout + out.stderr
    assert out.returncode == 0, report[-4000:]
    assert re.search(r"^# fail 0$", report, re.M), report[-4000:]
    passed = int(re.search(r"^# pass (\d+)$", report, re.M).group(1))
    assert passed > 0
