"""Regenerate tests/vectors/*.json. Keys are made fresh and the private keys thrown
away: the vectors hold public keys and signed documents only.

    .venv/bin/python tests/vectors/generate.py
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent / "src"))

from licentia.core import exchange, grants, hazmat  # noqa: E402
from licentia.core.documents import document_digest, sign_document  # noqa: E402
from licentia.core.encoding import b64e  # noqa: E402
from licentia.core.license import LicenseEntry, Options  # noqa: E402

NOW = 1_800_000_000
DAY = 86400
SERIAL = "130-7K2M-QX4V-9TBA"
OTHER_SERIAL = "130-AAAA-BBBB-CCCC"


def pem(key):
    return hazmat.public_pem(key.public_key())


def main() -> None:
    firm = hazmat.Ed25519PrivateKey.generate()
    foreign = hazmat.Ed25519PrivateKey.generate()
    container_sign = hazmat.Ed25519PrivateKey.generate()
    container_box = hazmat.X25519PrivateKey.generate()
    cpub = b64e(hazmat.raw_public(container_sign.public_key()))

    def entry(key=firm, counters=None, **opts):
        return LicenseEntry(
            firm_code=10101,
            product_code=1,
            feature_map=0x0F,
            text="Vector product",
            license_id=7,
            serial=SERIAL,
            container_key=cpub,
            options=Options(**opts),
            issued=NOW - DAY,
            ticket="00000-00000-00000-00000-00000",
            key_versions=(1,),
            **(counters or {}),
        ).sign(key)

    valid = entry(expires=NOW + 30 * DAY, units=100)
    tampered = copy.deepcopy(valid)
    tampered["payload"]["feature_map"] = 0xFF
    licenses = {
        "description": "Firm-signed license entries. Verify with `keys`; evaluate at `now` (feature 0, no units).",
        "keys": [pem(firm)],
        "now": NOW,
        "cases": [
            {"name": "valid", "document": valid, "expect": "ok"},
            {"name": "expired", "document": entry(expires=NOW - 1), "expect": "LicenseExpired"},
            {"name": "not-yet-valid", "document": entry(not_before=NOW + DAY), "expect": "LicenseNotYetValid"},
            {"name": "tampered", "document": tampered, "expect": "LicenseInvalid"},
            {"name": "foreign-firm-key", "document": entry(key=foreign), "expect": "LicenseInvalid"},
            {"name": "truncated", "document": json.dumps(valid)[:-30], "expect": "LicenseInvalid"},
            {
                "name": "reactivated-trial-runs-from-first-use",
                "expect": "LicenseExpired",
                "document": entry(usage_period=DAY, counters={"first_use": NOW - 2 * DAY, "activation": 2}),
            },
            {
                "name": "reactivated-units-carry-consumed-base",
                "expect": "ok",
                "units_left": 40,
                "document": entry(
                    units=100,
                    report_interval=DAY,
                    counters={"consumed_base": 60, "first_use": NOW - DAY, "activation": 2},
                ),
            },
        ],
    }

    def update(seq, serial=SERIAL, key=firm):
        e = entry(key=key, expires=NOW + 30 * DAY)
        return exchange.build_update(
            firm_code=10101,
            firm_key=key,
            serial=serial,
            seq=seq,
            now=NOW,
            entries=[e] if serial == SERIAL else [],
            sealed_keys=[],
            request_digest=None,
        )

    good = update(3)
    flipped = copy.deepcopy(good)
    flipped["payload"]["time"] += 1
    updates = {
        "description": "Updates for container `serial` whose firm slot is at sequence `slot_seq` and pins `keys`.",
        "keys": [pem(firm)],
        "serial": SERIAL,
        "slot_seq": 2,
        "cases": [
            {"name": "valid", "document": good, "expect": "ok"},
            {"name": "replayed-old-sequence", "document": update(2), "expect": "replay"},
            {"name": "tampered", "document": flipped, "expect": "LicenseInvalid"},
            {"name": "foreign-firm-key", "document": update(3, key=foreign), "expect": "LicenseInvalid"},
            {"name": "other-container", "document": update(3, serial=OTHER_SERIAL), "expect": "other-container"},
        ],
    }

    digest = document_digest(valid)
    prev = [hashlib.sha256(bytes([i])).hexdigest() for i in range(2)]
    position = exchange.SlotPosition(2, NOW, 9, tuple(prev), {digest: exchange.Counter(12, NOW - DAY)})
    request = exchange.build_request(
        serial=SERIAL,
        level="medium",
        sign_key=container_sign,
        box_pub=hazmat.raw_public(container_box.public_key()),
        slots={10101: position},
        action="activate",
        now=NOW,
        ticket="00000-00000-00000-00000-00000",
    )
    report = exchange.build_request(
        serial=SERIAL,
        level="medium",
        sign_key=container_sign,
        box_pub=hazmat.raw_public(container_box.public_key()),
        slots={10101: exchange.SlotPosition(2, NOW, 10, (document_digest(request), *prev), position.counters)},
        action="report",
        now=NOW,
        firm_code=10101,
    )
    lowered = copy.deepcopy(report)
    lowered["payload"]["slots"]["10101"]["counters"][digest]["units"] = 0  # counters rolled back by hand
    ack = exchange.build_ack(
        firm_code=10101,
        firm_key=firm,
        serial=SERIAL,
        now=NOW,
        request_digest=document_digest(report),
        recorded={digest: 12},
    )
    forged_ack = exchange.build_ack(
        firm_code=10101,
        firm_key=foreign,
        serial=SERIAL,
        now=NOW,
        request_digest=document_digest(report),
        recorded={digest: 0},
    )
    holder = hazmat.Ed25519PrivateKey.generate()
    renew_payload = grants.lease_proof_payload("06b49d2000000a1c3f9e", 7)
    renew_proof = {
        "holder": b64e(hazmat.raw_public(holder.public_key())),
        "kind": grants.LEASE_RENEW,
        "payload": renew_payload,
        "proof": grants.prove(holder, grants.LEASE_RENEW, renew_payload),
    }
    replayed_as_release = {**renew_proof, "kind": grants.LEASE_RELEASE}
    consume = sign_document(
        "consume",
        {
            "serial": SERIAL,
            "firm_code": 10101,
            "license_id": 7,
            "entry": digest,
            "units": 3,
            "key": "2f1c9d0e6b7a4c58",
            "created": NOW,
        },
        container_sign,
    )
    bad_request = copy.deepcopy(request)
    bad_request["payload"]["slots"]["10101"]["seq"] = 1
    receipt = exchange.build_receipt(
        serial=SERIAL,
        sign_key=container_sign,
        firm_code=10101,
        license_id=7,
        ticket="00000-00000-00000-00000-00000",
        seq=3,
        vtime=NOW,
        position=exchange.SlotPosition(3, NOW, 11, (document_digest(report), *prev), position.counters),
    )
    container_docs = {
        "description": "Container-signed documents: requests and usage reports (self-signed), receipts and "
        "consumptions (container key); and report acknowledgements (signed by the firm: `keys`).",
        "container_key": b64e(hazmat.raw_public(container_sign.public_key())),
        "keys": [pem(firm)],
        "cases": [
            {"name": "request-valid", "type": "request", "document": request, "expect": "ok"},
            {"name": "request-tampered", "type": "request", "document": bad_request, "expect": "invalid"},
            {"name": "receipt-valid", "type": "receipt", "document": receipt, "expect": "ok"},
            {
                "name": "receipt-foreign",
                "type": "receipt",
                "document": exchange.build_receipt(
                    serial=SERIAL,
                    sign_key=hazmat.Ed25519PrivateKey.generate(),
                    firm_code=10101,
                    license_id=7,
                    ticket=None,
                    seq=3,
                    vtime=NOW,
                ),
                "expect": "invalid",
            },
            {"name": "report-valid", "type": "request", "document": report, "expect": "ok"},
            {"name": "report-counters-lowered-by-hand", "type": "request", "document": lowered, "expect": "invalid"},
            {"name": "report-ack-valid", "type": "report-ack", "document": ack, "expect": "ok"},
            {"name": "report-ack-foreign-key", "type": "report-ack", "document": forged_ack, "expect": "invalid"},
            {"name": "consume-valid", "type": "consume", "document": consume, "expect": "ok"},
            {"name": "lease-renew-proof", "type": "proof", "document": renew_proof, "expect": "ok"},
            {
                "name": "lease-renew-proof-as-release",
                "type": "proof",
                "document": replayed_as_release,
                "expect": "invalid",
            },
        ],
    }
    for name, data in (("licenses", licenses), ("updates", updates), ("container", container_docs)):
        (HERE / f"{name}.json").write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    del firm, foreign, container_sign, container_box  # never stored
    print("written", os.listdir(HERE))


if __name__ == "__main__":
    main()
