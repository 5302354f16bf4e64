"""Protector test helpers: real licenses in real containers, protected builds, child processes.

Each test gets a "machine": its own LICENTIA_HOME, a time file and fake traits loaded
into child processes by tests/_fakes/sitecustomize.py. Licenses are real firm-signed
updates carrying product keys derived with the test firm's secret; the builds use key
files signed by the same firm (``keyfile.build``). Protected code runs in child
processes only (the import hook and the audit hook stay for the life of a process).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from licentia.container import MachineContainer
from licentia.core import exchange
from licentia.core.documents import document_digest
from licentia.core.encoding import b64d
from licentia.core.license import LicenseEntry, Options
from licentia.protect import build
from tests.conftest import ROOT, child_env
from tests.factory import T0, Firm, machine_traits

FAKES_DIR = ROOT / "tests" / "_fakes"
SAMPLE = Path(__file__).resolve().parent / "sample" / "sampleapp"
TICKET = "00000-00000-00000-00000-00000"
FIRM_CODE = 10101
PRODUCT = 1


class Machine:
    """One end-user machine: LICENTIA_HOME, an injected clock and traits for child processes."""

    def __init__(self, root: Path, now: int = T0):
        root.mkdir(parents=True, exist_ok=True)
        self.root = root
        self.home = root / "home"
        self.time_file = root / "time"
        self.time_file.write_text(str(now))
        self.fakes = root / "fakes.json"
        self.fakes.write_text(json.dumps({"time_file": str(self.time_file), "traits": machine_traits()}))
        self.container: MachineContainer | None = None

    @property
    def now(self) -> int:
        return int(self.time_file.read_text())

    def set_time(self, t: int) -> None:
        self.time_file.write_text(str(t))

    def env(self, *paths: Path, **extra: str) -> dict[str, str]:
        env = child_env({"LICENTIA_HOME": str(self.home), "LICENTIA_TEST_FAKES": str(self.fakes), **extra})
        env["PYTHONPATH"] = os.pathsep.join([*(str(p) for p in paths), str(FAKES_DIR), env["PYTHONPATH"]])
        return env

    def run(self, out: Path, *args: str, env: dict[str, str] | None = None, **kw: Any) -> subprocess.CompletedProcess:
        """Run ``python ARGS`` with ``out`` (the directory holding the protected package) on the path."""
        return subprocess.run(
            [sys.executable, *args],
            env=env or self.env(out),
            capture_output=True,
            text=True,
            timeout=120,
            cwd=self.root,
            **kw,
        )

    def code(self, out: Path, source: str, **kw: Any) -> subprocess.CompletedProcess:
        return self.run(out, "-c", source, **kw)

    # ------------------------------------------------------------ licenses

    def activate(
        self,
        firm: Firm,
        *,
        versions: tuple[int, ...] = (1,),
        product: int = PRODUCT,
        options: Options | None = None,
        license_id: int | None = None,
        feature_map: int = 0xFFFFFFFF,
    ) -> int:
        """Put a real license (with product keys of ``versions``) into this machine's container."""
        now = self.now
        if self.container is None:
            self.container = MachineContainer.create(self.home, "medium", machine_traits(), now)
        c = self.container
        request_doc = c.make_request("activate", now, ticket=TICKET)
        request = exchange.verify_request(request_doc)
        lid = license_id if license_id is not None else next(firm.ids)
        entry = LicenseEntry(
            firm_code=firm.code,
            product_code=product,
            feature_map=feature_map,
            text="sampleapp",
            license_id=lid,
            serial=request.serial,
            container_key=request.sign_pub,
            options=options or Options(),
            issued=now,
            ticket=TICKET,
            key_versions=tuple(versions),
        ).sign(firm.key)
        digest = document_digest(entry)
        sealed = [
            exchange.seal_product_key(
                b64d(request.box_pub),
                request.serial,
                digest,
                v,
                exchange.derive_product_key(firm.secret, firm.code, product, v),
            )
            for v in versions
        ]
        update = exchange.build_update(
            firm_code=firm.code,
            firm_key=firm.key,
            serial=request.serial,
            seq=request.position(firm.code).seq + 1,
            now=now,
            entries=[entry],
            sealed_keys=sealed,
            request_digest=request.digest,
        )
        c.apply_update(update, now)
        return lid

    def revoke_all(self, firm: Firm) -> None:
        """A firm update that holds none of this container's licenses (a revocation)."""
        assert self.container is not None
        now = self.now
        request_doc = self.container.make_request("sync", now, firm_code=firm.code)
        self.container.apply_update(firm.update(request_doc, [], now=now), now)


def protect_sample(
    firm: Firm, out: Path, *, src: Path = SAMPLE, version: int = 1, mode: str = "license", grace: int = 0, **kw: Any
) -> Path:
    """Protect ``src`` into ``out`` (in-process build API) and return ``out``."""
    key = exchange.derive_product_key(firm.secret, firm.code, PRODUCT, version) if mode == "license" else None
    build.protect(
        src,
        out,
        firm=firm.code,
        product=PRODUCT,
        key_version=version,
        mode=mode,
        grace=grace,
        key=key,
        firm_pem=firm.pem if mode == "license" else None,
        **kw,
    )
    return out


EXPECTED_RUN = ["hello world 1.0", "fib 6765", "data hi from package data 42", "sum 6"]
