"""Test-side issuing: a firm whose key the test generates, making real signed updates.

This is not a stand-in for Central: it uses the same document library Central uses,
so container and runtime tests can run without a server. Central's own tests cover
Central.
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass, field
from typing import Any

from licentia.core import exchange, hazmat
from licentia.core.documents import document_digest
from licentia.core.encoding import b64d
from licentia.core.license import LicenseEntry, Options

DAY = 86400
T0 = 1_800_000_000  # 2027-01-15, a fixed "now" for tests


@dataclass
class Firm:
    code: int = 10101
    key: hazmat.Ed25519PrivateKey = field(default_factory=hazmat.Ed25519PrivateKey.generate)
    secret: bytes = field(default_factory=lambda: os.urandom(32))
    seqs: dict[str, int] = field(default_factory=dict)
    ids: Any = field(default_factory=lambda: itertools.count(1))

    @property
    def pem(self) -> str:
        return hazmat.public_pem(self.key.public_key())

    def entry(
        self,
        request: exchange.Request,
        *,
        product: int = 1,
        feature_map: int = 0xFFFFFFFF,
        options: Options | None = None,
        license_id: int | None = None,
        ticket: str | None = None,
        issued: int = T0,
        text: str = "Test product",
    ) -> dict[str, Any]:
        return LicenseEntry(
            firm_code=self.code,
            product_code=product,
            feature_map=feature_map,
            text=text,
            license_id=license_id if license_id is not None else next(self.ids),
            serial=request.serial,
            container_key=request.sign_pub,
            options=options or Options(),
            issued=issued,
            ticket=ticket,
            key_versions=(1,),
        ).sign(self.key)

    def update(
        self, request_doc: dict[str, Any], entries: list[dict[str, Any]], *, now: int = T0, seq: int | None = None
    ) -> dict[str, Any]:
        request = exchange.verify_request(request_doc)
        if seq is None:
            seq = max(self.seqs.get(request.serial, 0), request.position(self.code).seq) + 1
        self.seqs[request.serial] = seq
        sealed = []
        for doc in entries:
            digest = document_digest(doc)
            pkey = exchange.derive_product_key(self.secret, self.code, doc["payload"]["product_code"], 1)
            sealed.append(exchange.seal_product_key(b64d(request.box_pub), request.serial, digest, 1, pkey))
        return exchange.build_update(
            firm_code=self.code,
            firm_key=self.key,
            serial=request.serial,
            seq=seq,
            now=now,
            entries=entries,
            sealed_keys=sealed,
            request_digest=request.digest,
        )

    def grant(self, request_doc: dict[str, Any], now: int = T0, **entry_kw: Any) -> dict[str, Any]:
        request = exchange.verify_request(request_doc)
        return self.update(request_doc, [self.entry(request, **entry_kw)], now=now)


def machine_traits(**changes: str) -> dict[str, str]:
    base = {
        "machine_id": "6f1c0a4e9b2d4c7e8a1f3b5d7c9e0a2b",
        "root_fs_uuid": "0b6e3f1a-5c2d-4e8f-9a7b-1c3d5e7f9a0b",
        "macs": "52:54:00:12:34:56",
        "hostname": "build-07",
        "dmi": "acme|x100|acme|board-1",
        "cpu_model": "Example CPU 3000",
        "memory_gib": "32",
    }
    base.update(changes)
    return {k: v for k, v in base.items() if v}


def other_machine() -> dict[str, str]:
    return machine_traits(
        machine_id="a" * 32,
        root_fs_uuid="11111111-2222-3333-4444-555555555555",
        macs="52:54:00:ab:cd:ef",
        hostname="other",
    )
