"""License Central's HTTP API fuzzed from its own OpenAPI document, with Schemathesis.

A real `licentia central serve` process on 127.0.0.1 gets generated requests for every
operation its ``/openapi.json`` declares: valid ones (to random and to existing firms,
items, customers and tickets) and invalid ones (wrong types, missing fields, junk bodies),
all with the admin key. Every answer must not be a 5xx, must match the response schema
and the status codes the operation declares, and, when it is an error, must be licentia's
``{"error": {"code", "message"}}``.

A normal run sends a few requests per operation, the same ones every time;
``LICENTIA_FUZZ=1`` (``make fuzz``) sends many more, different on every run.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from central_helpers import ADMIN_KEY, MASTER_KEY, Vendor, wait_health
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance, status_code_conformance

from tests.conftest import PYTHON, child_env, free_port

FUZZ = os.environ.get("LICENTIA_FUZZ") == "1"
#: generated requests per operation and kind (valid, invalid)
EXAMPLES = 150 if FUZZ else 6

pytestmark = [pytest.mark.slow, pytest.mark.timeout(3600 if FUZZ else 300)]

FIRM = 20001
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
CHECKS = [not_a_server_error, response_schema_conformance, status_code_conformance]


@contextlib.contextmanager
def logged_central(tmp: Path, port: int, env: dict[str, str]) -> Iterator[Path]:
    """`licentia central serve` with its output in a file (a pipe nobody reads would fill up)."""
    log = tmp / "central.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [PYTHON, "-m", "licentia", "central", "serve", "--data", str(tmp / "data"), "--port", str(port)],
            env=child_env(env),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        yield log
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def central(tmp_path: Path) -> Iterator[tuple[str, Path, dict[str, Any]]]:
    """Central with one firm (a vendor key, an item, a customer, a ticket); yields its URL,
    its log and the names of what exists, for the generated paths to find."""
    port = free_port()
    env = {
        "LICENTIA_ADMIN_KEY": ADMIN_KEY,
        "LICENTIA_MASTER_KEY": MASTER_KEY,
        # Most generated requests are refused, every one from 127.0.0.1: with the default
        # limits the address would soon get nothing but 429 (a refused-before-read burst of
        # 60, 20 failed attempts per address, 10 per ticket), and the rest of the API would
        # go untested.
        "LICENTIA_REFUSED_BURST": "100000",
        "LICENTIA_ATTEMPTS_PER_ADDRESS": "100000",
        "LICENTIA_ATTEMPTS_PER_TICKET": "100000",
    }
    with logged_central(tmp_path, port, env) as log:
        base = f"http://127.0.0.1:{port}"
        wait_health(base)
        with httpx.Client(base_url=base, timeout=30) as client:
            vendor = Vendor(client, FIRM)
            ticket = vendor.tickets(1)[0]
            kid = client.get(f"/api/v1/firms/{FIRM}", headers=ADMIN).json()["keys"][0]["kid"]
        known = {
            "code": FIRM,
            "firm_code": FIRM,
            "product": 7,
            "version": 1,
            "kid": kid,
            "item_id": vendor.item,
            "number": vendor.customer,
            "ticket": ticket,
        }
        yield base, log, known


def fixed_to_known(operation: schemathesis.APIOperation, known: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The path and query parameters of ``operation`` that name something that exists."""
    path = {p.name: known[p.name] for p in operation.path_parameters if p.name in known}
    query = {p.name: known[p.name] for p in operation.query if p.name in known}
    return {k: v for k, v in (("path_parameters", path), ("query", query)) if v}


def assert_error_body(response: Any) -> None:
    """An error is licentia's: exactly {"error": {"code": str, "message": str}}; the
    reporting routes keep the reporting API's shape beside it (a non-zero errorCode and
    its message, docs/usage.md); the cloud leases answer refusals as the license server
    protocol does ({"error": {"type", "message", ...}})."""
    if response.status_code < 400:
        return
    body = response.json()
    if "/api/v1/reporting/" in str(response.request.url):
        assert isinstance(body, dict) and set(body) == {"errorCode", "message", "error"}, body
        assert type(body["errorCode"]) is int and body["errorCode"] > 0 and body["message"], body
    else:
        assert isinstance(body, dict) and set(body) == {"error"}, body
    error = body["error"]
    if "/api/v1/cloud/leases" in str(response.request.url) and "type" in error:
        # the cloud leases answer refusals as a license server does (docs/formats.md 12.12)
        assert {"type", "message"} <= set(error) <= {"type", "message", "code", "seats", "in_use", "devices"}, body
        assert isinstance(error["type"], str) and isinstance(error["message"], str) and error["message"], body
        return
    assert isinstance(error, dict) and set(error) == {"code", "message"}, body
    assert all(isinstance(v, str) and v for v in error.values()), body


def fuzz(strategy: st.SearchStrategy) -> None:
    """Send ``EXAMPLES`` requests drawn from ``strategy``; each answer meets ``CHECKS``.
    (Drawing some operations' invalid requests discards many drafts: the health checks
    about how fast examples are drawn do not apply to this test.)"""

    @given(case=strategy)
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=not FUZZ,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def run(case: schemathesis.Case) -> None:
        response = case.call_and_validate(headers=ADMIN, checks=CHECKS, timeout=30)
        assert_error_body(response)

    run()


def test_every_operation_answers_as_declared(central, subtests) -> None:
    # The schema exists once Central runs, so the operations are walked here, each one a
    # subtest (Schemathesis' loader of a schema from a fixture fails on the pytest the
    # suite pins: 'Function' object has no attribute '_nodeid').
    base, log, known = central
    config = schemathesis.Config.from_dict({"base-url": base, "headers": ADMIN})
    api = schemathesis.openapi.from_url(base + "/openapi.json", config=config)
    operations = [result.ok() for result in api.get_all_operations()]
    assert len(operations) > 20
    for operation in operations:
        with subtests.test(msg=f"{operation.label}, valid requests"):
            strategy = operation.as_strategy(GenerationMode.POSITIVE)
            if fixed := fixed_to_known(operation, known):
                strategy = st.one_of(strategy, operation.as_strategy(GenerationMode.POSITIVE, **fixed))
            fuzz(strategy)
        # an operation with nothing that can be invalid (no body, strings only) is Unsatisfiable
        with subtests.test(msg=f"{operation.label}, invalid requests"), contextlib.suppress(Unsatisfiable):
            fuzz(operation.as_strategy(GenerationMode.NEGATIVE))
    # what Central logged about its 5xx: the error line and the exception of each traceback
    errors = [
        line
        for line in log.read_text(errors="replace").splitlines()
        if line.startswith("ERROR") or re.match(r"[\w.]+(Error|Exception)\b", line)
    ]
    assert not errors, "\n".join(errors)
