"""The ``cloud-link`` document: a device proves its machine container when it signs in.

A device that signs in to a vendor's cloud account is linked by its machine container:
the container's serial and Ed25519 public key are the device's credential. The device
signs a ``cloud-link`` document with that key (``MachineContainer.sign``); Central
checks the signature against the public key the document names, and that it is fresh.
Copying the device's files to another machine copies a container that does not open
there, so it cannot sign: the copy is not a second device.

docs/formats.md section "cloud-link" is the reference.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from . import codes, hazmat
from .documents import DocumentInvalid, require, verify_document
from .encoding import b64d

CLOUD_LINK = "cloud-link"
#: how far a link's time may be from Central's clock (seconds, either way)
LINK_SKEW = 300
MAX_NAME = 200


@dataclass(frozen=True)
class Link:
    """A verified link: the device's container, its name, the firm it signs in to."""

    serial: str
    sign_pub: str  # base64url of the raw Ed25519 public key
    firm_code: int
    name: str
    time: int


def link_payload(*, serial: str, sign_pub: str, firm_code: int, name: str, time: int) -> dict[str, Any]:
    """What a device signs to link itself (``MachineContainer.sign(CLOUD_LINK, ...)``)."""
    return {"serial": serial, "sign_pub": sign_pub, "firm_code": firm_code, "name": name, "time": time}


def verify_link(doc: Any, now: int) -> Link:
    """A ``cloud-link`` document checked: signed by the key it names, for a valid serial
    and firm, within ``LINK_SKEW`` of ``now``. DocumentInvalid (or DocumentMalformed)
    says what is wrong."""
    if not isinstance(doc, dict) or not isinstance(doc.get("payload"), dict):
        raise DocumentInvalid("a cloud-link document is an object with a payload")
    payload = doc["payload"]
    sign_pub = require(payload, "sign_pub", str)
    try:
        raw = b64d(sign_pub)
        if len(raw) != 32:
            raise ValueError
        key = hazmat.Ed25519PublicKey.from_public_bytes(raw)
    except ValueError:
        raise DocumentInvalid("field 'sign_pub' is not an Ed25519 public key") from None
    payload = verify_document(doc, CLOUD_LINK, key)
    try:
        serial = codes.check_serial(require(payload, "serial", str))
        firm_code = codes.check_firm_code(require(payload, "firm_code", int))
    except codes.InvalidCode as exc:
        raise DocumentInvalid(f"cloud-link: {exc}") from None
    name = require(payload, "name", str)
    if not name.strip(" ") or len(name) > MAX_NAME or any(c < " " or "\x7f" <= c <= "\x9f" for c in name):
        raise DocumentInvalid(f"field 'name' is 1 to {MAX_NAME} characters, no control characters, not only spaces")
    time = require(payload, "time", int)
    if abs(time - now) > LINK_SKEW:
        raise DocumentInvalid(f"cloud-link made at {time}, {time - now:+d} s from Central's clock")
    return Link(serial=serial, sign_pub=sign_pub, firm_code=firm_code, name=name, time=time)
