"""Suite-wide fixtures: every LICENTIA_* variable is isolated per test."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hypothesis
import hypothesis.database
import pytest

# `make fuzz` (--hypothesis-profile=fuzz): property tests with many more examples, no deadline, and the
# examples that failed once kept in .hypothesis/fuzz (tried first on the next run)
hypothesis.settings.register_profile(
    "fuzz",
    max_examples=2000,
    deadline=None,
    database=hypothesis.database.DirectoryBasedExampleDatabase(
        str(Path(__file__).resolve().parent.parent / ".hypothesis" / "fuzz")
    ),
)

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src"
NOT_CI = ("", "0", "false", "no", "off")


def in_ci() -> bool:
    """CI=true, CI=1, CI=yes...: any value of CI but empty, 0, false, no or off."""
    return os.environ.get("CI", "").strip().lower() not in NOT_CI


IN_CI = in_ci()


def require_system(what: str, available: bool) -> None:
    """Skip when a system part is missing; in CI a missing part fails the test."""
    if available:
        return
    if in_ci():
        pytest.fail(f"{what} is required in CI but missing")
    pytest.skip(f"needs {what}")


#: the venv's site-packages and Debian's python: the user nobody cannot enter root's home,
#: where the venv's own python lives, so checks as nobody run the system python on them
SITE = next((Path(sys.prefix) / "lib").glob("python3*/site-packages"), None)
SYSTEM_PYTHON = "/usr/bin/python3"


def require_nobody() -> None:
    """Skip (in CI: fail) unless this runs as root with runuser and Debian's python3."""
    require_system("root (to run checks as the user nobody)", hasattr(os, "geteuid") and os.geteuid() == 0)
    require_system("runuser (util-linux)", shutil.which("runuser") is not None)
    require_system("Debian's python3 at /usr/bin/python3", os.path.exists(SYSTEM_PYTHON) and SITE is not None)


def as_nobody(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``python3 -c code args`` as the unprivileged user nobody, licentia from ``src``."""
    require_nobody()
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": f"{SRC}:{SITE}", "HOME": "/nonexistent"}
    return subprocess.run(
        [shutil.which("runuser") or "runuser", "-u", "nobody", "--", SYSTEM_PYTHON, "-c", code, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory the user nobody can enter (pytest's temporary directories are 0700)."""
    d = Path(tempfile.mkdtemp(prefix="licentia-shared-"))
    d.chmod(0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(autouse=True)
def _isolate_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.startswith("LICENTIA_"):
            monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LICENTIA_HOME", str(tmp_path / "home"))


@pytest.fixture
def clock():
    """A clock the test moves by hand, at ``tests.factory.T0`` (Central's tests define their own)."""
    from licentia._testing import FakeClock
    from tests.factory import T0

    return FakeClock(T0)


@pytest.fixture(autouse=True)
def _isolate_runtime() -> Iterator[None]:
    """Every test starts on the system clock and traits with no shared runtime, and leaves it so."""
    from licentia import _testing

    _testing.uninstall()
    yield
    _testing.uninstall()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for a child Python: src on the path, no LICENTIA_* leaking in."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LICENTIA_")}
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.update(extra or {})
    return env


PYTHON = sys.executable


@contextlib.contextmanager
def central_process(data: Path, admin_key: str, env: dict[str, str] | None = None) -> Iterator[str]:
    """`licentia central serve` in its own process on a free port; yields its URL once /health
    answers. ``env``: more LICENTIA_* settings."""
    with serving_process("central", data, admin_key, env) as url:
        yield url


@contextlib.contextmanager
def serving_process(part: str, data: Path, admin_key: str, env: dict[str, str] | None = None) -> Iterator[str]:
    """`licentia <part> serve` (``central`` or ``cloud``) in its own process on a free port,
    its data in ``data/d`` and its log beside; yields its URL once /health answers."""
    port = free_port()
    argv = [PYTHON, "-m", "licentia", part, "serve", "--data", str(data / "d"), "--port", str(port)]
    url = f"http://127.0.0.1:{port}"
    run_env = child_env({"LICENTIA_ADMIN_KEY": admin_key, **(env or {})})
    with healthy_process(argv, env=run_env, log_path=data / f"{part}-{port}.log", url=url):
        yield url


@contextlib.contextmanager
def healthy_process(
    argv: list[str], *, env: dict[str, str], log_path: Path, url: str, cwd: Path | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """``argv`` in its own process, its output in ``log_path``; yielded once ``url``/health
    answers 200 (within 60 s, or the test fails with the log); always stopped: terminated,
    killed after 20 s."""
    import time

    import httpx

    with open(log_path, "wb") as log:
        proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, log_path.read_text(errors="replace")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url + "/health", timeout=1).status_code == 200:
                    break
            started = time.monotonic() < deadline
            assert started, f"{' '.join(argv[2:5])} did not start:\n" + log_path.read_text(errors="replace")
            time.sleep(0.1)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[Any]:
    """One throwaway PostgreSQL cluster for the session (None when the binaries are missing)."""
    import pgcluster

    if not pgcluster.available():
        yield None
        return
    cluster = pgcluster.start()
    yield cluster
    cluster.stop()


@pytest.fixture
def pg_url(pg_cluster: Any) -> str:
    """A fresh database in the session's cluster; skips (fails in CI) without PostgreSQL."""
    import uuid

    import pgcluster

    require_system(pgcluster.WHAT, pg_cluster is not None)
    return str(pg_cluster.create_database("t_" + uuid.uuid4().hex[:12]))
