"""Fixtures of the seat engine's tests: an engine factory on one SQLite file, the usage log's key."""

from __future__ import annotations

import pytest

from licentia.core import hazmat
from licentia.core.documents import sign_document
from licentia.seats import Acl, SeatEngine
from licentia.seats.store import SqliteSeatStore


@pytest.fixture
def key():
    return hazmat.Ed25519PrivateKey.generate()


@pytest.fixture
def make(tmp_path, clock, key):
    """``make(acl_text="", **engine_options)``: a SeatEngine on tmp_path/seats.db (every one on the same file)."""
    stores = []

    def make(acl_text="", **kw):
        store = SqliteSeatStore(tmp_path / "seats.db")
        stores.append(store)
        acl = Acl.from_toml(acl_text) if acl_text else Acl()
        return SeatEngine(store, clock=clock, acl=acl, signer=lambda t, p: sign_document(t, p, key), **kw)

    yield make
    for s in stores:
        s.close()
