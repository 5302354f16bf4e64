"""Every message names the user's next step: each LicenseError class, and the messages an
end user meets most (expired, out of units, an update applied twice, Central out of reach,
a URL without http://, a request file given to apply, a ticket held elsewhere, no Central
configured); what activate and list report; ``licentia --version``."""

from __future__ import annotations

import json
import re
from importlib.metadata import version

import httpx
import pytest
from typer.testing import CliRunner

from licentia import _testing
from licentia.cli import _common
from licentia.cli.main import app
from licentia.client import CentralClient, CentralError, CentralUnreachable
from licentia.container import MachineContainer
from licentia.core import codes, exchange
from licentia.core import errors as E
from licentia.core.license import Options
from licentia.runtime import activation
from tests.factory import DAY, T0, Firm, machine_traits
from tests.runtime.helpers import TICKET, install, runtime

HOUR = 3600


def license_errors() -> list[type[E.LicenseError]]:
    found, todo = set(), [E.LicenseError]
    while todo:
        cls = todo.pop()
        found.add(cls)
        todo += cls.__subclasses__()
    return sorted(found, key=lambda c: (c.code, c.__name__))


# ---------------------------------------------------------------- every class


@pytest.mark.parametrize("cls", license_errors(), ids=lambda c: c.__name__)
def test_every_license_error_names_a_next_step(cls):
    """A new subclass fails here until it says, in its own words, what the user does next."""
    assert "next_step" in vars(cls), f"{cls.__name__} has no next_step of its own"
    assert isinstance(cls.next_step, str) and cls.next_step.strip()
    assert E.names_next_step(cls.next_step), cls.next_step
    # raised without a message: the class's summary, then the step
    default = str(cls())
    assert default.endswith(cls.next_step) and E.names_next_step(default)
    # raised with a bare fact: the CLI (and the runtime) add the step
    bare = cls("container 130-AAAA-BBBB-CCCC license 3 (firm 20001, product 7): 1000 units left")
    assert not E.names_next_step(str(bare))
    assert _common.explain(bare) == f"{bare}. {cls.next_step}"


def test_a_message_with_a_step_of_its_own_gets_no_second_one():
    exc = E.ActivationError("ticket 'x' is not valid (too short); check it for typos")
    assert _common.explain(exc) == str(exc)
    assert E.with_next_step(E.SyncRequired, "last synced 2027-01-01 00:00 UTC; run 'licentia sync' while online") == (
        "last synced 2027-01-01 00:00 UTC; run 'licentia sync' while online"
    )


# ---------------------------------------------------------------- raised by the runtime


@pytest.fixture
def firm():
    return Firm()


def _access(tmp_path, clock, firm, options, **access):
    install(tmp_path, firm, clock, options=options, feature_map=0b1)
    rt = runtime(tmp_path, clock)
    rt.trust(firm.code, firm.pem)
    return rt


def test_expired_says_renew_and_sync(tmp_path, clock, firm):
    rt = _access(tmp_path, clock, firm, Options(expires=T0 + DAY))
    clock.advance(2 * DAY)
    with pytest.raises(E.LicenseExpired) as raised:
        rt.access(firm.code, 1)
    text = str(raised.value)
    assert "expired 2027-01-16 08:00 UTC. " in text
    assert text.endswith("Renew the license or contact the vendor; if it was renewed, run 'licentia sync'.")


def test_units_exhausted_says_how_to_get_more(tmp_path, clock, firm):
    rt = _access(tmp_path, clock, firm, Options(units=1000))
    with pytest.raises(E.UnitsExhausted) as raised:
        rt.access(firm.code, 1, units=5000)
    text = str(raised.value)
    assert "1000 units left, 5000 asked for. Ask the vendor for more units, then run 'licentia sync'" in text
    assert "new ticket" in text


@pytest.mark.parametrize(
    "cls, options, access, later",
    [
        (E.LicenseNotYetValid, Options(not_before=T0 + DAY), {}, 0),
        (E.FeatureNotLicensed, Options(), {"feature_code": 0b10}, 0),
        (E.MaintenanceExpired, Options(maintenance_until=T0), {"release_date": T0 + DAY}, 0),
        (E.SyncRequired, Options(sync_interval=DAY), {}, 2 * DAY),
        (E.UnitsExhausted, Options(), {"units": 1}, 0),
    ],
    ids=lambda v: v.__name__ if isinstance(v, type) else None,
)
def test_access_failures_name_a_next_step(tmp_path, clock, firm, cls, options, access, later):
    rt = _access(tmp_path, clock, firm, options)
    clock.advance(later)
    with pytest.raises(cls) as raised:
        rt.access(firm.code, 1, **access)
    assert E.names_next_step(str(raised.value)), str(raised.value)


def test_clock_set_back_names_a_next_step(tmp_path, clock, firm):
    rt = _access(tmp_path, clock, firm, Options(expires=T0 + 30 * DAY))
    clock.advance(5 * DAY)
    rt.access(firm.code, 1)  # the container sees the time
    clock.set(T0 + 4 * DAY)
    with pytest.raises(E.ClockTampered) as raised:
        runtime(tmp_path, clock).access(firm.code, 1, firm_key=firm.pem)
    assert E.names_next_step(str(raised.value))


def test_no_license_and_no_trust_name_a_next_step(tmp_path, clock, firm):
    rt = runtime(tmp_path, clock)
    with pytest.raises(E.TrustNotConfigured) as untrusted:
        rt.access(firm.code, 1)
    assert "licentia.trust(" in str(untrusted.value)
    with pytest.raises(E.LicenseNotFound) as missing:
        rt.access(firm.code, 1, firm_key=firm.pem)
    assert "'licentia activate TICKET'" in str(missing.value)


# ---------------------------------------------------------------- the CLI


@pytest.fixture
def cli(tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("LICENTIA_HOME", str(home))
    _testing.install(clock=_testing.FakeClock(T0), traits=machine_traits)
    runner = CliRunner()

    def run(*args, ok=True):
        result = runner.invoke(app, [str(a) for a in args], catch_exceptions=False)
        if ok:
            assert result.exit_code == 0, result.output
        else:
            assert result.exit_code != 0, result.output
            assert "Traceback" not in result.output
        return result

    return run, home


@pytest.fixture
def installed(cli, tmp_path):
    """A container with one license of TICKET applied from update.json (sequence 1)."""
    run, home = cli
    firm = Firm()
    c = MachineContainer.create(home, "medium", machine_traits(), T0)
    request = c.make_request("activate", T0, ticket=TICKET)
    path = tmp_path / "update.json"
    path.write_text(json.dumps(firm.grant(request, ticket=TICKET)))
    run("apply", path)
    return run, c, firm, path


def test_an_update_applied_twice_is_already_applied(installed):
    run, c, firm, path = installed
    before = (c.path / "state.json").read_bytes()
    out = run("apply", path, ok=False).output
    assert f"this update (sequence 1) was applied to container {c.serial} already: nothing to do" in out
    assert "older" not in out
    assert (c.path / "state.json").read_bytes() == before


def test_an_older_update_is_older(installed, tmp_path):
    run, c, firm, path = installed
    request = c.make_request("sync", T0, firm_code=firm.code)
    newer = tmp_path / "newer.json"
    newer.write_text(json.dumps(firm.update(request, c.slots()[firm.code].entries or [], seq=2)))
    run("apply", newer)
    out = run("apply", path, ok=False).output
    assert "this update (sequence 1) is older than the container's state (sequence 2)" in out
    assert "already" not in out


def test_a_request_file_given_to_apply_says_where_it_goes(cli, tmp_path):
    run, home = cli
    request = tmp_path / "request.json"
    run("activate", TICKET, "--offline", "-o", request)
    out = run("apply", request, ok=False).output
    assert "this is a request file, not an update" in out
    assert "'licentia depot submit FILE --central URL -o update.json'" in out
    assert "failed verification" not in out


def test_a_receipt_given_to_apply_says_where_it_goes(installed, tmp_path):
    run, c, firm, path = installed
    receipt = tmp_path / "receipt.json"
    run("deactivate", TICKET, "--offline", "-o", receipt)
    out = run("apply", receipt, ok=False).output
    assert "this is a deactivation receipt, not an update" in out and "licentia depot submit" in out


def test_sync_unreachable_names_sync_offline(installed):
    run, c, firm, path = installed
    out = run("sync", "--central", "http://127.0.0.1:9", ok=False).output
    assert "cannot reach License Central at http://127.0.0.1:9" in out
    assert "'licentia sync --offline -o sync.json'" in out


def test_sync_offline_writes_a_request_the_depot_turns_into_an_update(installed, tmp_path):
    run, c, firm, path = installed
    out = run("sync", "--offline", "-o", tmp_path / "sync.json").output
    assert "sync.json" in out and "licentia depot submit sync.json" in out
    document = json.loads((tmp_path / "sync.json").read_text())
    request = exchange.verify_request(document)
    assert (request.serial, document["payload"]["action"], document["payload"]["firm_code"]) == (
        c.serial,
        "sync",
        firm.code,
    )
    # what the depot brings back from Central: the firm's state for this container
    update = tmp_path / "update-2.json"
    update.write_text(json.dumps(firm.update(document, c.slots()[firm.code].entries or [])))
    assert "Applied update 2" in run("apply", update).output


def test_sync_offline_needs_a_file_and_a_license(cli, tmp_path):
    run, home = cli
    assert "--offline needs -o FILE" in run("sync", "--offline", ok=False).output
    out = run("sync", "--offline", "-o", tmp_path / "sync.json", ok=False).output
    assert "nothing to sync" in out and "'licentia activate TICKET'" in out
    assert not (tmp_path / "sync.json").exists()


def test_a_central_url_without_scheme_says_http_is_missing(cli):
    run, home = cli
    out = run("activate", TICKET, "--central", "127.0.0.1:8480", ok=False).output
    assert "must start with http:// or https://" in out and "http://127.0.0.1:8480" in out
    assert "UnsupportedProtocol" not in out and "is it running" not in out
    with pytest.raises(CentralError) as raised, CentralClient("localhost:8480") as client:
        client.ticket_info(TICKET)
    assert not isinstance(raised.value, CentralUnreachable)
    assert "http://localhost:8480" in str(raised.value)


def test_a_missing_central_names_the_config_file(cli):
    run, home = cli
    out = run("activate", TICKET, ok=False).output
    assert f"[central] table of {home / 'config.toml'}" in " ".join(out.split())


# ---------------------------------------------------------------- against a Central stand-in


class FakeCentral:
    """The three calls activation makes, answered by a test firm (tests.factory.Firm):
    enough to see what the CLI reports, not a stand-in for Central's rules."""

    def __init__(self, firm: Firm):
        self.firm = firm
        self.held: dict[str, list[dict]] = {}  # serial -> entries
        self.refuse: tuple[int, dict] | None = None

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if self.refuse is not None:
            return httpx.Response(self.refuse[0], json=self.refuse[1])
        if request.url.path.endswith("/info"):
            return httpx.Response(200, json={"level": "medium"})
        doc = json.loads(request.content)
        req = exchange.verify_request(doc)
        entries = self.held.setdefault(req.serial, [])
        if req.ticket:
            entries.append(self.firm.entry(req, ticket=req.ticket))
        return httpx.Response(200, json=self.firm.update(doc, entries))


@pytest.fixture
def central(monkeypatch):
    fake = FakeCentral(Firm())

    def client(url, **kw):
        return CentralClient(url, transport=httpx.MockTransport(fake), **kw)

    monkeypatch.setattr(activation, "CentralClient", client)
    return fake


def test_activate_reports_what_this_ticket_added(cli, central):
    run, home = cli
    first, second = TICKET, codes.new_ticket_id()
    out = run("activate", first, "--central", "http://central.test").output
    assert "1 license(s) added (1 of firm 10101 in the container now)" in out
    out = run("activate", second, "--central", "http://central.test").output
    assert f"Activated ticket {second} into container" in out
    assert "1 license(s) added (2 of firm 10101 in the container now)" in " ".join(out.split())


CENTRAL_ELSEWHERE = (
    "This ticket is active in container 130-AAAA-BBBB-CCCC. Deactivate it there first "
    "('licentia deactivate'), then activate it here."
)


@pytest.mark.parametrize("command", [["activate"], ["server", "activate"]])
def test_a_ticket_held_elsewhere_names_server_deactivate(cli, central, tmp_path, command):
    run, home = cli
    central.refuse = (409, {"error": {"code": "ticket_bound_elsewhere", "message": CENTRAL_ELSEWHERE}})
    where = ["--data", tmp_path / "server"] if command[0] == "server" else []
    out = " ".join(run(*command, TICKET, "--central", "http://central.test", *where, ok=False).output.split())
    assert "active in container 130-AAAA-BBBB-CCCC" in out
    assert f"'licentia deactivate {TICKET}' on that machine" in out
    assert f"'licentia server deactivate {TICKET}' if a license server holds it" in out
    assert f"then run '{' '.join(['licentia', *command])} {TICKET}' here again" in out


def test_other_refusals_pass_through(cli, central):
    run, home = cli
    revoked = "This ticket has been revoked. Contact the vendor."
    central.refuse = (409, {"error": {"code": "ticket_revoked", "message": revoked}})
    out = run("activate", TICKET, "--central", "http://central.test", ok=False).output
    assert revoked in out


# ---------------------------------------------------------------- list and --version


def test_list_of_an_empty_container_has_no_stray_row(cli):
    run, home = cli
    c = MachineContainer.create(home, "medium", machine_traits(), T0)
    out = run("list").output
    assert out.strip() == f"container {c.serial} (medium): no licenses"
    assert not re.search(r"\bok\b", out)


def test_list_shows_licenses(installed):
    run, c, firm, path = installed
    out = run("list").output
    assert f"container {c.serial} (medium)" in out and f"{firm.code}:1" in out and TICKET in out


def test_version(cli):
    run, home = cli
    out = run("--version").output
    assert out == f"licentia {version('licentia')}\n"


# ---------------------------------------------------------------- against a real License Central


@pytest.fixture
def real_central(tmp_path, clock):
    """License Central on 127.0.0.1 (its own clock: the suite's), with a firm, an item, a customer."""
    pytest.importorskip("uvicorn")
    from tests.central.central_helpers import ServerThread, Vendor, central_app, make_settings

    with (
        central_app(make_settings(tmp_path / "central"), clock) as central_app_,
        ServerThread(central_app_) as srv,
        httpx.Client(base_url=srv.url, timeout=30) as http,
    ):
        yield srv.url, Vendor(http, 20001)


def test_sync_offline_through_the_depot_with_a_real_central(cli, real_central, tmp_path, monkeypatch):
    run, home = cli
    url, vendor = real_central
    (ticket,) = vendor.tickets()
    run("activate", ticket, "--central", url)
    monkeypatch.chdir(tmp_path)
    out = " ".join(run("sync", "--offline", "-o", "sync.json").output.split())
    assert "'licentia depot submit sync.json --central URL -o update.json'" in out
    out = run("depot", "submit", "sync.json", "--central", url, "-o", "update.json").output
    assert "Update written to update.json" in out
    assert "Applied update 2 of firm 20001" in run("apply", "update.json").output
    # the same update again: already there, nothing to do
    assert "was applied to container" in run("apply", "update.json", ok=False).output


def test_activation_counts_and_a_ticket_a_license_server_holds(cli, real_central, tmp_path):
    run, home = cli
    url, vendor = real_central
    first, second = vendor.tickets(2)
    out = " ".join(run("activate", first, "--central", url).output.split())
    assert "1 license(s) added (1 of firm 20001 in the container now)" in out
    out = " ".join(run("activate", second, "--central", url).output.split())
    assert "1 license(s) added (2 of firm 20001 in the container now)" in out
    # a third ticket, activated into a license server's container, then asked for on this machine
    (third,) = vendor.tickets()
    server = tmp_path / "server-data"
    run("server", "activate", third, "--central", url, "--data", server)
    out = " ".join(run("activate", third, "--central", url, ok=False).output.split())
    assert f"'licentia server deactivate {third}' if a license server holds it" in out
    assert f"'licentia deactivate {third}' on that machine" in out
    serials = {c["serial"] for c in json.loads(run("list", "--json").output)}
    assert not any(s in out for s in serials)  # it names the server's container, not this machine's
    assert re.search(r"active in container 130-[0-9A-Z-]+\.", out)
