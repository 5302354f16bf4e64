"""How a runtime finds servers: the configured list, discovery (127.255.255.255 only), TLS."""

from __future__ import annotations

import contextlib
import datetime as dt
import gzip
import ipaddress
import socket

import pytest

from licentia import runtime as _network
from tests.server.netsite import Client, Site

pytestmark = pytest.mark.slow


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def site(tmp_path):
    s = Site(tmp_path)
    s.add_license(quantity=2)
    yield s
    s.stop()


def test_config_server_list(site):
    site.start()
    c = Client(site, "a", servers="")
    try:
        assert c.access().startswith("ERR LicenseNotFound")  # nowhere to look: the local result stands
        c.cli("config", "server", "add", site.host)
        c.cli("config", "server", "add", "lic.example.invalid:1")
        listed = c.cli("config", "server", "list").stdout
        assert site.host in listed and "lic.example.invalid:1" in listed and "discovery: off" in listed
        assert c.access().startswith(f"OK {site.host}")
        c.cli("config", "server", "remove", "lic.example.invalid:1")
        assert "example" not in c.cli("config", "server", "list").stdout
        c.cli("config", "server", "remove", "nothere:5", ok=False)
    finally:
        c.close()


def test_discovery_by_broadcast_on_loopback(tmp_path, site):
    port = free_udp_port()
    site.write_config(discovery=True, discovery_port=port, discovery_bind="0.0.0.0")
    site.start()
    second = Site(tmp_path / "second")
    second.add_license(quantity=1)
    second.write_config(discovery=True, discovery_port=port, discovery_bind="0.0.0.0")
    second.start()
    try:
        found = _network.discover("127.255.255.255", port, 1.0)
        assert {s.port for s in found} == {site.port, second.port}  # both hear it (SO_REUSEADDR)
        c = Client(site, "a", servers="")
        try:
            assert c.access().startswith("ERR LicenseNotFound")  # discovery is off by default
            c.cli("config", "discovery", "on", "--broadcast", "127.255.255.255", "--port", str(port))
            c.close()
            c = Client(site, "a", servers="")
            answer = c.access()
            assert answer.startswith("OK 127.0.0.1:"), answer
        finally:
            c.close()
    finally:
        second.stop()


def test_a_taken_discovery_port_only_warns(site):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as blocker:
        blocker.bind(("0.0.0.0", 0))  # no SO_REUSEADDR: the server cannot share it
        port = blocker.getsockname()[1]
        site.write_config(discovery=True, discovery_port=port)
        site.start()
        assert "discovery: cannot listen" in site.log()
        c = Client(site, "a")
        try:
            assert c.access().startswith("OK")
        finally:
            c.close()


def _certificates(folder, names=()):
    """A test CA and a server certificate for 127.0.0.1 (or, given ``names``, for those DNS
    names only)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "licentia test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName(n) for n in names] or [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    (folder / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (folder / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / "key.pem").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return folder / "ca.pem"


def test_tls_with_the_ca_in_licentia_ca_file(tmp_path, site):
    ca = _certificates(tmp_path)
    site.write_config(tls_cert=str(tmp_path / "cert.pem"), tls_key=str(tmp_path / "key.pem"))
    site.start(wait=False)
    import ssl
    import time

    import httpx

    deadline = time.monotonic() + 60
    ctx = ssl.create_default_context(cafile=str(ca))
    while True:
        try:
            if httpx.get(f"https://127.0.0.1:{site.port}/health", verify=ctx, timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, site.log()
        time.sleep(0.1)
    trusting = Client(site, "a", LICENTIA_CA_FILE=str(ca))
    plain = Client(site, "b")  # speaks HTTP to a TLS port
    other_ca = Client(site, "c", servers=f"https://{site.host}")  # the system CAs do not know the test CA
    try:
        assert trusting.access().startswith(f"OK {site.host}")
        assert plain.access().startswith("ERR ServerUnreachable")
        assert other_ca.access().startswith("ERR ServerUnreachable")
    finally:
        for c in (trusting, plain, other_ca):
            c.close()


def test_parse_server_addresses():
    p = _network.parse_server
    assert p("lic") == _network.ServerAddr("lic", 22370, False)
    assert p("lic:1234") == _network.ServerAddr("lic", 1234, False)
    assert p("https://lic:99/") == _network.ServerAddr("lic", 99, True)
    assert p("[::1]:7") == _network.ServerAddr("::1", 7, False)
    assert p("::1") == _network.ServerAddr("::1", 22370, False)
    assert [s.label for s in _network.parse_servers("a, b:2 ,,")] == ["a:22370", "b:2"]
    with pytest.raises(ValueError):
        p("a:0")


def test_a_named_server_is_reached_at_one_resolved_address(site, tmp_path):
    """The runtime resolves a server's name once and sends every request of the process to
    that address (the server sees one source address for the machine's station seat)."""
    site.start()
    net = _network.make_runtime(tmp_path / "home").network().net
    server = _network.parse_server(f"localhost:{site.port}")
    client = net.client(server)
    assert client.base_url.host == "127.0.0.1"
    assert client.headers["host"] == f"localhost:{site.port}"
    assert net.get(server, "/api/v1/challenge")[0] == 200
    assert net.client(server) is client
    a = Client(site, "a", servers=f"localhost:{site.port}")
    try:
        assert a.access(mode="station").startswith("OK")
        (session,) = site.status()["sessions"]
        assert session["ip"] == "127.0.0.1" and session["machine"].endswith("@127.0.0.1")
    finally:
        a.close()


def test_tls_to_a_named_server_checks_the_name_not_the_address(tmp_path, site):
    ca = _certificates(tmp_path, names=("localhost",))
    site.write_config(tls_cert=str(tmp_path / "cert.pem"), tls_key=str(tmp_path / "key.pem"))
    site.start(wait=False)
    import ssl
    import time

    import httpx

    deadline = time.monotonic() + 60
    ctx = ssl.create_default_context(cafile=str(ca))
    while True:
        try:
            if httpx.get(f"https://localhost:{site.port}/health", verify=ctx, timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, site.log()
        time.sleep(0.1)
    by_name = Client(site, "a", servers=f"https://localhost:{site.port}", LICENTIA_CA_FILE=str(ca))
    by_address = Client(site, "b", servers=f"https://127.0.0.1:{site.port}", LICENTIA_CA_FILE=str(ca))
    try:
        assert by_name.access().startswith("OK")
        assert by_address.access().startswith("ERR ServerUnreachable")  # the certificate names localhost only
    finally:
        by_name.close()
        by_address.close()


def test_discovery_takes_only_well_formed_answers_and_a_bounded_number():
    """Anyone on the network can answer a discovery broadcast: an answer whose port is not
    a port (a float, infinity, a huge or negative number, text, a boolean) is skipped, never
    an error out of the client, ``tls`` counts only as a real boolean, and at most
    MAX_DISCOVERED servers are taken from one broadcast."""
    import json
    import threading

    from licentia.runtime import _servers

    port = free_udp_port()
    bad = ["1e300", "Infinity", "-Infinity", str(10**30), "-1", "0", "70000", "true", '"8080"', "8080.5"]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as rogue:
        rogue.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        rogue.bind(("0.0.0.0", port))
        rogue.settimeout(5)

        def answer() -> None:
            data, addr = rogue.recvfrom(2048)
            nonce = json.loads(data)["nonce"]
            head = f'{{"licentia":"server","nonce":"{nonce}"'
            for text in bad:
                rogue.sendto(f'{head},"port":{text}}}'.encode(), addr)
            rogue.sendto(f'{head},"port":9001,"tls":"no"}}'.encode(), addr)
            for n in range(1, 30):
                rogue.sendto(f'{head},"port":{9001 + n}}}'.encode(), addr)

        t = threading.Thread(target=answer)
        t.start()
        found = _network.discover("127.255.255.255", port, 1.0)
        t.join()
    assert [s.port for s in found] == list(range(9001, 9001 + _servers.MAX_DISCOVERED))
    assert found[0].tls is False


class _Rogue:
    """A 'license server' on 127.0.0.1 that answers every request with headers at once, then
    a body too long (``huge``: 64 MiB as fast as the client reads), too slow (``trickle``: a
    byte every 0.2 s, each read well inside the client's read timeout) or compressed
    (``gzip``: 64 KiB that unpack to 64 MiB). ``sent`` counts the body's bytes the client
    took, ``asked`` the Accept-Encoding of each request."""

    def __init__(self, mode: str):
        import http.server
        import threading
        import time

        rogue = self
        self.sent = 0
        self.asked: list[str | None] = []
        packed = gzip.compress(b" " * (64 * 1024 * 1024)) if mode == "gzip" else b""

        class Handler(http.server.BaseHTTPRequestHandler):
            def _answer(self) -> None:
                self.rfile.read(int(self.headers.get("content-length") or 0))
                rogue.asked.append(self.headers.get("accept-encoding"))
                size = 64 * 1024 * 1024 if mode == "huge" else 1000
                self.send_response(200)
                self.send_header("content-type", "application/json")
                if mode == "late":  # a whole answer whose last part comes after the deadline
                    body = b'{"answer": "whole"}'
                    self.send_header("content-length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body[:5])
                    self.wfile.flush()
                    time.sleep(1.0)
                    self.wfile.write(body[5:])
                    return
                if mode == "gzip":
                    self.send_header("content-encoding", "gzip")
                    self.send_header("content-length", str(len(packed)))
                    self.end_headers()
                    with contextlib.suppress(OSError):
                        self.wfile.write(packed)
                    return
                self.send_header("content-length", str(size))
                self.end_headers()
                stop = time.monotonic() + 15  # bounds the test's run if the client never stops
                try:
                    while rogue.sent < size and time.monotonic() < stop:
                        piece = b" " * (65536 if mode == "huge" else 1)
                        self.wfile.write(piece)
                        self.wfile.flush()
                        rogue.sent += len(piece)
                        if mode == "trickle":
                            time.sleep(0.2)
                except OSError:  # the client hung up
                    pass

            do_GET = do_POST = do_DELETE = _answer

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.parametrize("mode", ["huge", "trickle", "gzip"])
def test_a_rogue_server_can_neither_fill_the_memory_nor_hold_the_access(tmp_path, monkeypatch, mode):
    """Anyone who answers discovery, or sits at a configured address, is a server to the
    client. Its answers are read as they come and no further than 4 MiB, not compressed,
    and no longer than the answer deadline (shortened here from 20 s): before, the client
    read a 64 MiB answer whole, unpacked 64 KiB of gzip into 64 MiB, and a byte every 0.2 s
    held its access as long as the server liked."""
    import time
    import tracemalloc

    from licentia import LicenseError
    from licentia.runtime import Runtime, _netclient
    from tests.factory import Firm, machine_traits

    monkeypatch.setattr(_netclient, "ANSWER_DEADLINE", 2.0)
    rogue = _Rogue(mode)
    try:
        monkeypatch.setenv("LICENTIA_HOST", f"127.0.0.1:{rogue.port}")
        rt = Runtime(tmp_path, clock=lambda: int(time.time()), traits=lambda: machine_traits())
        firm = Firm()
        start = time.monotonic()
        tracemalloc.start()
        try:
            with pytest.raises(LicenseError):
                rt.access(firm.code, 1, firm_key=firm.pem)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        took = time.monotonic() - start
    finally:
        rogue.close()
    assert peak < 24 * 1024 * 1024, peak  # what a 4 MiB answer costs, not 64 MiB
    assert rogue.asked and set(rogue.asked) == {"identity"}, rogue.asked
    if mode == "huge":
        assert rogue.sent < 32 * 1024 * 1024, rogue.sent  # 4 MiB read, and what the sockets buffer
    if mode == "trickle":
        assert took < 8, took  # two requests (challenge, lease) at 2 s each at most


def test_a_whole_answer_is_kept_though_its_last_part_came_after_the_deadline(tmp_path, monkeypatch):
    """The deadline stops a body that keeps coming, not one that has come: a lease granted
    just past it would hold a seat the client never learned of."""
    from licentia.runtime import Runtime, _netclient
    from licentia.runtime._servers import ServerAddr
    from tests.factory import machine_traits

    monkeypatch.setattr(_netclient, "ANSWER_DEADLINE", 0.5)
    rogue = _Rogue("late")
    try:
        net = _netclient.NetClient(Runtime(tmp_path, clock=lambda: 0, traits=lambda: machine_traits()))
        assert net.get(ServerAddr("127.0.0.1", rogue.port), "/api/v1/x") == (200, {"answer": "whole"})
        net.close()
    finally:
        rogue.close()
