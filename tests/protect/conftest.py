"""Fixtures of the protector tests (helpers in tests/protect/helpers.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from licentia.core import exchange, keyfile
from tests.factory import Firm
from tests.protect.helpers import FIRM_CODE, PRODUCT, Machine, protect_sample


@pytest.fixture(scope="session")
def firm() -> Firm:
    return Firm(code=FIRM_CODE)


@pytest.fixture(scope="session")
def keys_dir(tmp_path_factory: pytest.TempPathFactory, firm: Firm) -> Path:
    """The vendor's build secrets: firm public key PEM and product-key files (versions 1 and 2)."""
    d = tmp_path_factory.mktemp("vendor")
    (d / "firm.pem").write_text(firm.pem)
    for version in (1, 2):
        key = exchange.derive_product_key(firm.secret, firm.code, PRODUCT, version)
        doc = keyfile.build(firm.code, PRODUCT, version, key, firm.key)
        (d / f"product-{PRODUCT}-v{version}.key").write_bytes(keyfile.dumps(doc))
    return d


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory, firm: Firm):
    """Shared read-only builds of the sample: built(version=1, mode="license", grace=0) -> OUT dir."""
    cache: dict[tuple[Any, ...], Path] = {}

    def get(version: int = 1, mode: str = "license", grace: int = 0) -> Path:
        ident = (version, mode, grace)
        if ident not in cache:
            cache[ident] = protect_sample(
                firm,
                tmp_path_factory.mktemp(f"built-{mode}-v{version}-g{grace}"),
                version=version,
                mode=mode,
                grace=grace,
            )
        return cache[ident]

    return get


@pytest.fixture
def machine(tmp_path: Path) -> Machine:
    return Machine(tmp_path / "machine")
