"""A device's sign-in under any input: the ``cloud-link`` reader gives a verified link or
``DocumentInvalid``, never another exception, and a link it accepts reads as the rules
say; the user-code reader gives a code or None. ``make fuzz`` runs them with many more
examples."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from licentia.central.services.signin import USER_CODE_LETTERS, normalize_user_code, show_user_code
from licentia.core import cloudlink, codes, grants, hazmat
from licentia.core import errors as E
from licentia.core.documents import DocumentInvalid, sign_document, verify_document
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


# ---------------------------------------------------------------- a cloud lease's device proof


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: Any) -> Any:
    """Central's cloud leases on a throwaway SQLite database (the proof reader needs no row)."""
    from licentia.central.cloud_leases import CloudLeases
    from licentia.central.startup import prepare
    from tests.central.central_helpers import make_settings

    ctx = prepare(make_settings(tmp_path_factory.mktemp("central") / "d"), lambda: T0)
    yield CloudLeases(ctx)
    ctx.db.dispose()


HOLDER = b64e(hazmat.raw_public(OTHER.public_key()))


def proofs(challenge: dict[str, Any]) -> st.SearchStrategy[Any]:
    genuine = sign_document(
        grants.SEAT_PROOF,
        {"serial": SERIAL, "sign_pub": DEVICE_PUB, "server": "x", "nonce": challenge["nonce"],
         "time": challenge["time"], "holder": HOLDER},
        DEVICE,
    )  # fmt: skip
    return st.one_of(
        st.just(genuine),
        hostile_documents(genuine_payload(genuine), DEVICE, grants.SEAT_PROOF, keys=[OTHER]),
        hostile_values,
    )


@settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_a_device_proof_is_accepted_or_refused(cloud, data):
    from licentia.central.cloud_leases import _Device
    from licentia.seats import Client, Refusal

    challenge = cloud.challenge()
    doc = data.draw(proofs(challenge))
    device = _Device(person=None, serial=SERIAL, sign_pub=DEVICE_PUB, name="Ada")  # type: ignore[arg-type]
    client = Client(client_lease_id="c", user="u", host="h", ip="127.0.0.1", holder=HOLDER)
    try:
        proven = cloud._machine({"machine": doc}, client, device).client(client)
    except Refusal as refusal:
        assert refusal.error is E.AccessDenied
        return
    # accepted: the device's own key signed a live challenge of Central for this holder
    assert verify_document(doc, grants.SEAT_PROOF, DEVICE.public_key())["holder"] == HOLDER
    assert proven.machine.startswith(SERIAL + ":") and proven.machine.endswith("@127.0.0.1")


@settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(max_size=200), st.integers(min_value=-(2**63), max_value=2**63))
def test_only_centrals_own_challenges_are_live(cloud, nonce, issued):
    assert cloud._challenge_ok(nonce, issued, T0) is False  # no MAC of Central's: never live


def test_a_challenge_is_live_for_two_minutes_at_its_own_time(cloud):
    c = cloud.challenge()
    assert cloud._challenge_ok(c["nonce"], c["time"], T0)
    assert cloud._challenge_ok(c["nonce"], c["time"], T0 + 120)
    assert not cloud._challenge_ok(c["nonce"], c["time"], T0 + 121)  # stale
    assert not cloud._challenge_ok(c["nonce"], c["time"] + 1, T0)  # another time than its own
    assert not cloud._challenge_ok(c["nonce"][:-1] + ("0" if c["nonce"][-1] != "0" else "1"), c["time"], T0)


# ---------------------------------------------------------------- a proxy license server's grant


def test_a_proxy_grant_is_verified_or_refused_as_invalid():
    from tests.core.test_proxy import FIRM, KEYS, SERIAL, grant

    genuine = grant()

    @settings(deadline=None)
    @given(
        st.one_of(
            st.just(genuine),
            hostile_documents(genuine_payload(genuine), FIRM, "proxy-grant", keys=[OTHER]),
            hostile_values,
        )
    )
    def check(doc: Any) -> None:
        from licentia.core import proxy as P

        try:
            g = P.verify_grant(doc, KEYS, serial=SERIAL)
        except DocumentInvalid:
            return
        # accepted: signed by the firm key for this container, every field of the shape the rules say
        assert g.serial == SERIAL and g.until >= g.issued and g.refresh >= 1 and g.poll >= 1
        assert all(isinstance(x, int) for x in g.licenses)
        assert all(isinstance(s, str) and isinstance(k, str) for m in g.members for s, k in m.devices)

    check()
