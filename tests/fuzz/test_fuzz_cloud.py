"""A device's sign-in under any input: the ``cloud-link`` reader gives a verified link or
``DocumentInvalid``, never another exception, and a link it accepts reads as the rules
say; the user-code reader gives a code or None. ``make fuzz`` runs them with many more
examples."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from licentia.central.services.signin import USER_CODE_LETTERS, normalize_user_code, show_user_code
from licentia.core import cloudlink, codes, hazmat
from licentia.core.documents import DocumentInvalid, sign_document
from licentia.core.encoding import b64d, b64e
from tests.factory import T0
from tests.strategies import genuine_payload, hostile_documents, hostile_values

DEVICE = hazmat.Ed25519PrivateKey.generate()  # a device's machine container key
DEVICE_PUB = b64e(hazmat.raw_public(DEVICE.public_key()))
OTHER = hazmat.Ed25519PrivateKey.generate()
SERIAL = codes.new_serial()
GENUINE = sign_document(
    cloudlink.CLOUD_LINK,
    cloudlink.link_payload(serial=SERIAL, sign_pub=DEVICE_PUB, firm_code=61001, name="Ada", time=T0),
    DEVICE,
)


def links() -> st.SearchStrategy[Any]:
    """The genuine link, one with one change anywhere (signed again by the device or by
    another key), or anything at all."""
    return st.one_of(
        st.just(GENUINE),
        hostile_documents(genuine_payload(GENUINE), DEVICE, cloudlink.CLOUD_LINK, keys=[OTHER]),
        hostile_values,
    )


@settings(deadline=None)
@given(links(), st.integers(min_value=T0 - 1000, max_value=T0 + 1000))
def test_a_link_is_verified_or_refused_as_invalid(doc, now):
    try:
        link = cloudlink.verify_link(doc, now)
    except DocumentInvalid:
        return
    # accepted: its key signed it, and every field reads as the rules say
    assert abs(link.time - now) <= cloudlink.LINK_SKEW
    assert len(b64d(link.sign_pub)) == 32 and 1 <= len(link.name) <= cloudlink.MAX_NAME
    assert codes.check_serial(link.serial) == link.serial
    if link.sign_pub == DEVICE_PUB and doc["payload"] == GENUINE["payload"]:
        assert (link.serial, link.firm_code, link.name, link.time) == (SERIAL, 61001, "Ada", T0)


@given(st.one_of(st.text(max_size=40), hostile_values))
def test_a_user_code_reads_as_a_code_or_none(text):
    code = normalize_user_code(text)
    if code is not None:
        assert len(code) == 8 and set(code) <= set(USER_CODE_LETTERS)
        assert normalize_user_code(show_user_code(code)) == code


@given(st.text(alphabet=USER_CODE_LETTERS, min_size=8, max_size=8), st.sampled_from(["", "-", " "]), st.booleans())
def test_a_shown_code_reads_back_however_it_is_typed(code, sep, lower):
    typed = code[:4] + sep + code[4:]
    assert normalize_user_code(typed.lower() if lower else typed) == code
