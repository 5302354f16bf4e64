"""Regenerate tests/vectors/*.json. Keys are made fresh and the private keys thrown
away: the vectors hold public keys and signed documents only.

    .venv/bin/python tests/vectors/generate.py
"""

from __future__ import annotations

import copy
import json
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent / "src"))

from licentia.core import hazmat, exchange  # noqa: E402
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

    def entry(key=firm, **opts):
        return LicenseEntry(
            firm_code=10101, product_code=1, feature_map=0x0F, text="Vector product", license_id=7,
            serial=SERIAL, container_key=cpub, options=Options(**opts), issued=NOW - DAY,
            ticket="00000-00000-00000-00000-00000", key_versions=(1,),
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
        ],
    }

    def update(seq, serial=SERIAL, key=firm):
        e = entry(key=key, expires=NOW + 30 * DAY)
        return exchange.build_update(
            firm_code=10101, firm_key=key, serial=serial, seq=seq, now=NOW, entries=[e] if serial == SERIAL else [],
            sealed_keys=[], request_digest=None,
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

    request = exchange.build_request(
        serial=SERIAL, level="medium", sign_key=container_sign,
        box_pub=hazmat.raw_public(container_box.public_key()),
        slots={10101: exchange.SlotPosition(2, NOW)}, action="activate", now=NOW,
        ticket="00000-00000-00000-00000-00000",
    )
    bad_request = copy.deepcopy(request)
    bad_request["payload"]["slots"]["10101"]["seq"] = 1
    receipt = exchange.build_receipt(serial=SERIAL, sign_key=container_sign, firm_code=10101, license_id=7,
                                     ticket="00000-00000-00000-00000-00000", seq=3, vtime=NOW)
    container_docs = {
        "description": "Container-signed documents: a request (self-signed) and a receipt (container key).",
        "container_key": b64e(hazmat.raw_public(container_sign.public_key())),
        "cases": [
            {"name": "request-valid", "type": "request", "document": request, "expect": "ok"},
            {"name": "request-tampered", "type": "request", "document": bad_request, "expect": "invalid"},
            {"name": "receipt-valid", "type": "receipt", "document": receipt, "expect": "ok"},
            {"name": "receipt-foreign", "type": "receipt",
             "document": exchange.build_receipt(serial=SERIAL, sign_key=hazmat.Ed25519PrivateKey.generate(),
                                                firm_code=10101, license_id=7, ticket=None, seq=3, vtime=NOW),
             "expect": "invalid"},
        ],
    }
    for name, data in (("licenses", licenses), ("updates", updates), ("container", container_docs)):
        (HERE / f"{name}.json").write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    del firm, foreign, container_sign, container_box  # never stored
    print("written", os.listdir(HERE))


if __name__ == "__main__":
    main()
