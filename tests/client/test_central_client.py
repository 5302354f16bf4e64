"""The one Central client against a real License Central (``licentia central serve`` on 127.0.0.1)."""

from __future__ import annotations

import secrets
import subprocess
import sys
import time

import httpx
import pytest

from licentia.client import API, CentralClient, CentralError, CentralRefused, CentralUnreachable
from licentia.container import MachineContainer
from licentia.core import keyfile
from tests.conftest import central_process, child_env, free_port
from tests.factory import machine_traits

FIRM = 5151
UNKNOWN_TICKET = "00000-00000-00000-00000-00000"


@pytest.fixture(scope="module")
def central(tmp_path_factory):
    """A running Central with a firm, a vendor key and a ticket of level loose."""
    admin = secrets.token_urlsafe(24)
    with central_process(tmp_path_factory.mktemp("central"), admin) as url:
        with CentralClient(url, api_key=admin) as client:
            client.request("POST", "/firms", json={"code": FIRM, "name": "Client Software"})
            vkey = client.request("POST", "/apikeys", json={"firm_code": FIRM, "label": "tests"})["key"]
        with CentralClient(url, api_key=vkey) as client:
            item = client.request("POST", "/items", json={"name": "Pro", "product_code": 1, "level": "loose"})
            customer = client.request("POST", "/customers", json={"name": "Ada"})
            order = client.request(
                "POST", "/tickets", json={"customer": customer["number"], "items": [item["item_id"]]}
            )
        yield {"url": url, "admin": admin, "vkey": vkey, "ticket": order["tickets"][0]["ticket"]}


class Recording(httpx.HTTPTransport):
    """httpx's own network transport, sending every request to ``target`` and noting its path."""

    def __init__(self, target: str):
        super().__init__()
        self.target = httpx.URL(target)
        self.paths: list[str] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.paths.append(request.url.path)
        request.url = request.url.copy_with(scheme=self.target.scheme, host=self.target.host, port=self.target.port)
        return super().handle_request(request)


def test_the_container_protocol_through_the_client(central, tmp_path):
    now = int(time.time())
    container = MachineContainer.create(tmp_path / "home", "loose", machine_traits(), now)
    with CentralClient(central["url"]) as client:
        assert client.ticket_info(central["ticket"])["level"] == "loose"
        assert client.ticket_info(central["ticket"])["state"] == "new"
        update = client.activate(container.make_request("activate", now, ticket=central["ticket"]))
        applied = container.apply_update(update, now, central=central["url"])
        assert applied.firm_code == FIRM and len(applied.entries) == 1
        synced = client.sync(container.make_request("sync", now, firm_code=FIRM))
        assert container.apply_update(synced, now).seq > applied.seq
        license_id = applied.entries[0].license_id
        client.deactivate(container.remove_license(FIRM, license_id, now))
        assert client.ticket_info(central["ticket"])["state"] == "deactivated"


def test_keys_text_answers_and_the_vendor_key(central):
    with CentralClient(central["url"], api_key=central["vkey"]) as client:
        pem = client.firm_public_pem(FIRM)
        assert pem.startswith("-----BEGIN PUBLIC KEY-----")
        assert client.request("GET", f"/firms/{FIRM}/public-key", params={"format": "pem"}) == pem
        doc = client.product_key(FIRM, 1, 2)
    key = keyfile.verify(doc, keyfile.keys_from_pem(pem), firm_code=FIRM, product_code=1, version=2)
    assert key.version == 2 and len(key.key) == 32


def test_a_refusal_carries_status_code_and_message(central):
    with CentralClient(central["url"]) as client, pytest.raises(CentralRefused) as refused:
        client.ticket_info(UNKNOWN_TICKET)
    assert isinstance(refused.value, CentralError)
    assert (refused.value.status, refused.value.code) == (404, "unknown_ticket")
    assert str(refused.value) == refused.value.message and "ticket" in refused.value.message.lower()
    with (
        CentralClient(central["url"], api_key="lc_not-a-real-key-000000000000") as client,
        pytest.raises(CentralRefused) as refused,
    ):
        client.product_key(FIRM, 1, 1)
    assert (refused.value.status, refused.value.code) == (401, "unauthorized")


def test_an_unreachable_central(tmp_path):
    url = f"http://127.0.0.1:{free_port()}"
    with CentralClient(url, timeout=5) as client, pytest.raises(CentralUnreachable) as unreachable:
        client.ticket_info(UNKNOWN_TICKET)
    assert isinstance(unreachable.value, CentralError)
    assert str(unreachable.value).startswith(f"cannot reach License Central at {url} (")
    assert "check the address" in str(unreachable.value)
    assert (unreachable.value.status, unreachable.value.code) == (None, None)


def test_the_injected_transport_carries_every_call(central):
    transport = Recording(central["url"])
    with CentralClient("http://central.invalid", api_key=central["vkey"], transport=transport) as client:
        assert client.ticket_info(central["ticket"])["ticket"] == central["ticket"]
        client.firm_public_pem(FIRM)
    assert transport.paths == [f"{API}/tickets/{central['ticket']}/info", f"{API}/firms/{FIRM}/public-key"]


def test_importing_the_client_does_not_import_httpx():
    code = "import sys, licentia, licentia.client; assert 'httpx' not in sys.modules, 'httpx imported'"
    done = subprocess.run([sys.executable, "-c", code], env=child_env(), capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


@pytest.fixture
def hostile_central():
    """An HTTP server on 127.0.0.1 that answers every request with the body a test sets."""
    import http.server
    import threading

    answer = {"body": b"{}", "type": "application/json", "length": None}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("content-type", answer["type"])
            self.send_header("content-length", str(answer["length"] or len(answer["body"])))
            self.end_headers()
            self.wfile.write(answer["body"])

        def do_POST(self):
            self.rfile.read(int(self.headers.get("content-length", 0)))
            self.do_GET()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", answer
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(
    "body",
    [b'{"level": "loose", "level": "tight"}', b'{"n": NaN}', b'{"n": 1e400}', b"[" * 100 + b"]" * 100],
    ids=["duplicate-key", "nan", "infinite", "deep"],
)
def test_an_answer_central_could_not_have_sent_is_refused(hostile_central, body):
    url, answer = hostile_central
    answer["body"] = body
    with CentralClient(url) as client, pytest.raises(CentralError, match="not JSON"):
        client.request("GET", "/tickets/x/info", authorized=False)
    answer["body"] = b'{"level": "loose"}'
    with CentralClient(url) as client:
        assert client.request("GET", "/tickets/x/info", authorized=False) == {"level": "loose"}


def test_a_streamed_answer_that_breaks_off_raises_instead_of_ending_early(hostile_central):
    """A report streamed to the vendor's CLI: an answer cut short is an error, never a
    shorter report that looks whole."""
    url, answer = hostile_central
    answer.update(body=b"accessTime,seconds\n" + b"2023-08-12T13:56:06,7\n" * 4000, type="text/csv")
    with CentralClient(url) as client:
        assert "".join(client.stream_text("GET", "/reporting/x")) == answer["body"].decode()
    answer["length"] = len(answer["body"]) + 100  # the server closes short of what it announced
    with CentralClient(url) as client, pytest.raises(CentralUnreachable, match="broke off"):
        "".join(client.stream_text("GET", "/reporting/x"))
    # the vendor's command: the rows that came, then an error and exit status 1
    from tests.cli.helpers import vendor as vendor_cli

    answer["length"] = None
    code, out, err = vendor_cli(["usage", "--csv"], url=url, key="k")
    assert code == 0 and out == answer["body"].decode(), err
    answer["length"] = len(answer["body"]) + 100
    code, out, err = vendor_cli(["usage", "--csv"], url=url, key="k")
    assert code == 1 and "broke off" in err and out == answer["body"].decode(), err
