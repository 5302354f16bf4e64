"""A throwaway PostgreSQL 15 cluster for tests and benchmarks.

    cluster = pgcluster.start()          # initdb + pg_ctl start, 127.0.0.1:<free port>, trust auth
    url = cluster.create_database("x")   # postgresql+psycopg://postgres@127.0.0.1:<port>/x
    cluster.stop()                       # pg_ctl stop, directory removed

The cluster lives in a fresh directory under /tmp (mode 0755, owned by the
``postgres`` user when running as root, because initdb refuses to run as root);
the server listens on 127.0.0.1 only, with its unix socket in that directory.
``available()`` says whether the binaries (and, as root, the postgres user) exist.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

BIN = Path("/usr/lib/postgresql/15/bin")
WHAT = "PostgreSQL 15 (initdb/pg_ctl)"


def _postgres_user() -> pwd.struct_passwd | None:
    try:
        return pwd.getpwnam("postgres")
    except KeyError:
        return None


def available() -> bool:
    if not (BIN / "initdb").exists() or not (BIN / "pg_ctl").exists():
        return False
    return os.geteuid() != 0 or (_postgres_user() is not None and shutil.which("runuser") is not None)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _as_owner(args: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else args


@dataclass
class Cluster:
    root: Path
    port: int
    user: str

    @property
    def datadir(self) -> Path:
        return self.root / "data"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://{self.user}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        import psycopg

        with psycopg.connect(host="127.0.0.1", port=self.port, user=self.user, dbname="postgres", autocommit=True) as c:
            c.execute(f'DROP DATABASE IF EXISTS "{name}"')
            c.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        subprocess.run(
            _as_owner([str(BIN / "pg_ctl"), "-D", str(self.datadir), "-m", "immediate", "-w", "stop"]),
            capture_output=True,
            check=False,
            timeout=60,
        )
        shutil.rmtree(self.root, ignore_errors=True)


def start(*, fsync: bool = False, max_connections: int = 100) -> Cluster:
    """Start a cluster; raises RuntimeError with initdb/pg_ctl output on failure."""
    if not available():
        raise RuntimeError(f"{WHAT} is not available")
    root = Path(tempfile.mkdtemp(prefix="licentia-pg-", dir="/tmp"))
    os.chmod(root, 0o755)
    user = "postgres"
    if os.geteuid() == 0:
        pg = _postgres_user()
        assert pg is not None
        os.chown(root, pg.pw_uid, pg.pw_gid)
    else:
        user = pwd.getpwuid(os.geteuid()).pw_name
    data = root / "data"
    port = _free_port()
    try:
        _run(_as_owner([str(BIN / "initdb"), "-D", str(data), "-A", "trust", "-U", user, "-E", "UTF8", "--no-sync"]))
        options = (
            f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={root} "
            f"-c max_connections={max_connections} -c fsync={'on' if fsync else 'off'} "
            f"-c synchronous_commit={'on' if fsync else 'off'} -c full_page_writes={'on' if fsync else 'off'}"
        )
        _run(
            _as_owner(
                [
                    str(BIN / "pg_ctl"),
                    "-D",
                    str(data),
                    "-l",
                    str(root / "server.log"),
                    "-w",
                    "-t",
                    "60",
                    "-o",
                    options,
                    "start",
                ]
            )
        )
    except BaseException:
        subprocess.run(
            _as_owner([str(BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"]), capture_output=True
        )
        log = (root / "server.log").read_text() if (root / "server.log").exists() else ""
        shutil.rmtree(root, ignore_errors=True)
        if log:
            raise RuntimeError(f"PostgreSQL did not start:\n{log[-2000:]}") from None
        raise
    cluster = Cluster(root=root, port=port, user=user)
    _wait_ready(cluster)
    return cluster


def _run(args: list[str]) -> None:
    proc = subprocess.run(args, capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")


def _wait_ready(cluster: Cluster, timeout: float = 30.0) -> None:
    import psycopg

    deadline = time.monotonic() + timeout
    while True:
        try:
            with psycopg.connect(host="127.0.0.1", port=cluster.port, user=cluster.user, dbname="postgres"):
                return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
