"""A machine container applying updates and usage-report acknowledgements under any input:
the update applied, or a ``LicenseError`` with every file of the container unchanged.

The container is a real one in a temporary directory, opened with the test machine's
traits; each example starts from one of its saved states (fresh after its activation
request, or holding a license and a pinned firm key) and gets the firm's genuine update or
acknowledgement with one change anywhere inside (the update, its entry, its endorsement, a
sealed key), signed again by the firm key (or by a key nobody pinned). ``make fuzz`` runs
them with many more examples; otherwise the properties that write keep to fewer."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, event, example, given, settings
from hypothesis import strategies as st

from licentia.container import MachineContainer
from licentia.core import codes, exchange, hazmat
from licentia.core import errors as E
from licentia.core.documents import DocumentInvalid, document_digest
from tests.factory import T0, Firm, machine_traits
from tests.strategies import as_text, envelope, genuine_payload, hostile_documents, one_change, pin, pinned_texts

#: examples of the properties that may write the container's files (``make fuzz``: the profile's)
WRITES = {} if os.environ.get("LICENTIA_FUZZ") else {"max_examples": 40}
OTHER = hazmat.Ed25519PrivateKey.generate()
NEXT = hazmat.Ed25519PrivateKey.generate()


def files_of(path: Path) -> dict[str, bytes]:
    """Every file of a container directory, by name."""
    return {p.name: p.read_bytes() for p in sorted(path.iterdir())}


class Machine:
    """One container and the states the examples start from."""

    def __init__(self, home: Path):
        made = MachineContainer.create(home, "medium", machine_traits(), T0)
        self.container = MachineContainer.open(made.path, machine_traits)  # the test machine's trait reader
        self.state = made.path / "state.json"
        self.firm = Firm()
        request = self.container.make_request("activate", T0, ticket=codes.new_ticket_id())
        self.fresh = self.state.read_bytes()
        first = self.firm.grant(request)
        self.first = self._with_endorsement(first)  # what a fresh container is offered
        self.container.apply_update(first, T0)
        self.pinned = self.state.read_bytes()
        req = exchange.verify_request(request)
        second = self.firm.update(
            request, [self.firm.entry(req, license_id=90), self.firm.entry(req, product=2)], now=T0 + 60, seq=2
        )
        self.second = self._with_endorsement(
            second, manipulation={"rebased": [90], "withdrawn": [1]}, message="restored files"
        )
        report = self.container.make_request("report", T0 + 120, firm_code=self.firm.code)
        self.reported = self.state.read_bytes()
        entry_digest = document_digest(first["payload"]["entries"][0])
        self.ack = genuine_payload(
            exchange.build_ack(
                firm_code=self.firm.code,
                firm_key=self.firm.key,
                serial=self.container.serial,
                now=T0 + 180,
                request_digest=document_digest(report),
                recorded={entry_digest: 0},
            )
        )

    def _with_endorsement(self, update: dict[str, Any], **fields: Any) -> dict[str, Any]:
        payload = {
            **genuine_payload(update),
            **fields,
            "endorsements": [exchange.endorse_key(self.firm.key, self.firm.code, NEXT.public_key())],
        }
        return payload

    def restore(self, state: bytes) -> None:
        tmp = self.state.with_name(".state.json.test")
        tmp.write_bytes(state)
        os.replace(tmp, self.state)

    def attempt(self, state: bytes, action: Any) -> Any:
        """Run ``action`` from ``state``: its result, or None after a LicenseError that left
        every file as it was (another exception is raised, after the same check)."""
        self.restore(state)
        before = files_of(self.container.path)
        try:
            return action()
        except E.LicenseError:
            assert files_of(self.container.path) == before, "a refusal changed the container's files"
            return None
        except Exception:
            assert files_of(self.container.path) == before, "a refusal changed the container's files"
            raise


@pytest.fixture(scope="module")
def machine(tmp_path_factory: pytest.TempPathFactory) -> Machine:
    return Machine(tmp_path_factory.mktemp("machine"))


def hostile_updates(m: Machine, payload: dict[str, Any]) -> st.SearchStrategy[Any]:
    """The update with one change (signed again by the firm, or by a key nobody pinned), with
    one change in its first entry or its endorsement (signed again by the firm), as text or
    as a parsed envelope."""
    firm = m.firm.key

    def nested(field: str, doc_type: str) -> st.SearchStrategy[dict[str, Any]]:
        base = genuine_payload(payload[field][0])
        return one_change(base).map(
            lambda p: envelope({**payload, field: [envelope(p, firm, doc_type), *payload[field][1:]]}, firm, "update")
        )

    docs = st.one_of(
        hostile_documents(payload, firm, "update", keys=[OTHER, NEXT], skip=("entries", "endorsements")),
        nested("entries", "license"),
        nested("endorsements", "firm-key"),
    )
    return st.one_of(docs.map(as_text), docs)


def known_failure(exc: BaseException) -> str | None:
    """The failures of apply_update pinned below (a name), None for any other."""
    if isinstance(exc, TypeError) and "unhashable" in str(exc):
        return "unhashable-sealed-key-license"
    if type(exc) is DocumentInvalid and "pub" in exc.reason:
        return "endorsement-outside-the-refusal"
    return None


def applied(m: Machine, state: bytes, data: Any) -> None:
    try:
        update = m.attempt(state, lambda: m.container.apply_update(data, T0 + 60))
    except Exception:
        raise
    event("applied" if update is not None else "refused")
    if update is not None:
        slot = m.container.slots()[update.firm_code]
        assert slot.seq == update.seq and update.serial == m.container.serial
        assert {e.license_id for e in update.entries} >= {int(d["payload"]["license_id"]) for d in slot.entries or []}


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow], **WRITES)
@given(st.data())
def test_a_fresh_container_applies_an_update_or_refuses_it_unchanged(machine, data):
    applied(machine, machine.fresh, data.draw(hostile_updates(machine, machine.first)))


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow], **WRITES)
@given(st.data())
def test_a_container_with_a_pinned_firm_key_applies_an_update_or_refuses_it_unchanged(machine, data):
    applied(machine, machine.pinned, data.draw(hostile_updates(machine, machine.second)))


#: the values that broke parsers before (tests/strategies.py ``pinned_texts``), by field: the
#: texts depend on the container's keys, so each example names one and the test makes it
PINNED = list(pinned_texts({"x": 0}, OTHER, "update", "x"))
UPDATE_PINS = [(field, name) for field in ("seq", "entries", "keys", "endorsements") for name in PINNED]


@settings(deadline=None, phases=[Phase.explicit])
@given(st.sampled_from(UPDATE_PINS))
@pin(UPDATE_PINS)
def test_the_pinned_texts_are_refused_unchanged(machine, case):
    field, name = case
    text = pinned_texts(machine.second, machine.firm.key, "update", field)[name]
    assert machine.attempt(machine.pinned, lambda: machine.container.apply_update(text, T0)) is None


def _sealed_license_list(m: Machine) -> dict[str, Any]:
    payload = dict(m.first)
    payload["keys"] = [{**payload["keys"][0], "license": ["not", "a", "digest"]}]
    return envelope(payload, m.firm.key, "update")


def _endorsement_with_a_bad_key(m: Machine) -> dict[str, Any]:
    bad = envelope({"type": "firm-key", "v": 1, "firm_code": m.firm.code, "pub": "not a key"}, m.firm.key, "firm-key")
    return envelope({**m.first, "endorsements": [bad]}, m.firm.key, "update")


@settings(deadline=None, phases=[Phase.explicit])
@given(st.just("sealed-license-list"))
@example("sealed-license-list")
def test_a_sealed_key_naming_no_digest_is_refused_with_a_license_error(machine, case):
    data = _sealed_license_list(machine)
    assert machine.attempt(machine.fresh, lambda: machine.container.apply_update(data, T0)) is None


@settings(deadline=None, phases=[Phase.explicit])
@given(st.just("endorsement-with-a-bad-key"))
@example("endorsement-with-a-bad-key")
def test_an_endorsement_with_a_bad_key_is_refused_with_a_license_error(machine, case):
    data = _endorsement_with_a_bad_key(machine)
    assert machine.attempt(machine.fresh, lambda: machine.container.apply_update(data, T0)) is None


# ---------------------------------------------------------------- usage-report acknowledgements


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow], **WRITES)
@given(st.data())
def test_a_container_applies_an_acknowledgement_or_refuses_it_unchanged(machine, data):
    ack = data.draw(hostile_documents(machine.ack, machine.firm.key, "report-ack", keys=[OTHER, NEXT]))
    done = machine.attempt(machine.reported, lambda: machine.container.apply_ack(ack, T0 + 200))
    event({None: "refused", True: "applied", False: "not for the last report"}[done])


ACK_PINS = [
    (field, name)
    for field in ("recorded", "time", "request")
    for name in PINNED
    if name not in ("depth-100000", "duplicate-key", "surrogate-utf8")
]  # apply_ack takes a parsed answer


@settings(deadline=None, phases=[Phase.explicit])
@given(st.sampled_from(ACK_PINS))
@pin(ACK_PINS)
def test_pinned_acknowledgements_are_refused_unchanged(machine, case):
    field, name = case
    doc = json.loads(pinned_texts(machine.ack, machine.firm.key, "report-ack", field)[name])
    assert machine.attempt(machine.reported, lambda: machine.container.apply_ack(doc, T0)) is None


def test_the_genuine_documents_apply(machine):
    assert (
        machine.attempt(
            machine.fresh,
            lambda: machine.container.apply_update(envelope(machine.first, machine.firm.key, "update"), T0),
        ).seq
        == 1
    )
    update = machine.attempt(
        machine.pinned,
        lambda: machine.container.apply_update(envelope(machine.second, machine.firm.key, "update"), T0 + 60),
    )
    assert update.seq == 2 and machine.container.slots()[machine.firm.code].notices["1"]["message"] == "restored files"
    assert (
        machine.attempt(
            machine.reported,
            lambda: machine.container.apply_ack(envelope(machine.ack, machine.firm.key, "report-ack"), T0 + 200),
        )
        is True
    )
