"""The cloud-link reader's rules at their edges (docs/formats.md 9.6): the name's length
and control characters, what counts as only spaces, what is not a document at all."""

from __future__ import annotations

from typing import Any

import pytest

from licentia.core import cloudlink, codes, hazmat
from licentia.core.documents import DocumentInvalid, sign_document
from licentia.core.encoding import b64e

KEY = hazmat.Ed25519PrivateKey.generate()
NOW = 1_800_000_000


def link(name: str = "Ada's laptop", **changes: Any) -> dict[str, Any]:
    payload = cloudlink.link_payload(
        serial=codes.new_serial(), sign_pub=b64e(hazmat.raw_public(KEY.public_key())), firm_code=7, name=name, time=NOW
    )
    return sign_document(cloudlink.CLOUD_LINK, {**payload, **changes}, KEY)


@pytest.mark.parametrize(
    "name",
    ["X", "x" * cloudlink.MAX_NAME, "\u2003", " a ", "Zoë's tablet", "\xa0", "\x7e"],
    ids=["one", "the most", "an em space", "spaces around", "non-ascii", "no-break space", "tilde"],
)
def test_names_a_link_may_have(name):
    assert cloudlink.verify_link(link(name), NOW).name == name


@pytest.mark.parametrize(
    "name",
    ["", " ", "   ", "x" * (cloudlink.MAX_NAME + 1), "a\x00", "a\tb", "a\x1f", "a\x7f", "a\x80", "a\x85", "a\x9f"],
    ids=["empty", "a space", "spaces", "one too many", "nul", "tab", "us", "del", "pad", "nel", "apc"],
)
def test_names_a_link_may_not_have(name):
    with pytest.raises(DocumentInvalid):
        cloudlink.verify_link(link(name), NOW)


@pytest.mark.parametrize("doc", [None, [], "text", 7, {}, {"payload": []}, {"payload": "x"}, [{"payload": {}}]])
def test_what_is_not_a_link_document(doc):
    with pytest.raises(DocumentInvalid):
        cloudlink.verify_link(doc, NOW)


def test_the_clock_skew_either_way():
    doc = link()
    for now in (NOW - cloudlink.LINK_SKEW, NOW, NOW + cloudlink.LINK_SKEW):
        assert cloudlink.verify_link(doc, now).time == NOW
    for now in (NOW - cloudlink.LINK_SKEW - 1, NOW + cloudlink.LINK_SKEW + 1):
        with pytest.raises(DocumentInvalid):
            cloudlink.verify_link(doc, now)
