"""TLS on both front ends of a real daemon: ``tls:`` listeners with a certificate
from a CA made for the test, checked by real clients (the ssl module,
websocket-client, chatd.client), and a certificate reload on SIGHUP."""

import ipaddress
import json
import re
import signal
import socket
import ssl
import time
import warnings

import pytest
import websocket
from cryptography import x509

from chatd.client import ChatClient, TLSError

from .certs import CA
from .clients import PBClient
from .conftest import DaemonStarter
from .reactor_thread import Recorder, call, release
from .test_e2e_protobuf import refuses_bad_binary_input

_TLS_PORT_RE = re.compile(r"\b(LineFactory|Site) \(TLS\) starting on (\d+)")
TIMEOUT = 5.0



@pytest.fixture(scope="module", autouse=True)
def reactor_thread():
    yield
    release()


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = tmp_path_factory.mktemp("pki")
    ca = CA(d / "ca")
    cert, key, serial = ca.issue("server", hosts=("127.0.0.1",))
    return {"ca": ca, "cert": cert, "key": key, "serial": serial,
            "stranger": CA(d / "stranger", "some other CA")}


@pytest.fixture(scope="module")
def tls_daemon(pki, tmp_path_factory):
    starter = DaemonStarter(tmp_path_factory)
    d = starter("--line", "tls:0:interface=127.0.0.1", "--ws", "tls:0:interface=127.0.0.1",
                "--tls-cert", str(pki["cert"]), "--tls-key", str(pki["key"]))
    ports = dict((kind, int(port)) for kind, port in _TLS_PORT_RE.findall(d.log()))
    d.tls_line_port, d.tls_ws_port = ports["LineFactory"], ports["Site"]
    yield d
    starter.stop_all()


def tls_line(port, cafile):
    ctx = ssl.create_default_context(cafile=str(cafile))
    raw = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    return ctx.wrap_socket(raw, server_hostname="127.0.0.1")


def read_until(sock, want: bytes) -> bytes:
    buf = b""
    deadline = time.monotonic() + TIMEOUT
    while want not in buf:
        assert time.monotonic() < deadline, f"never got {want!r}; got {buf!r}"
        chunk = sock.recv(65536)
        assert chunk, f"closed before {want!r}; got {buf!r}"
        buf += chunk
    return buf


def served_serial(port, cafile) -> int:
    with tls_line(port, cafile) as s:
        return x509.load_der_x509_certificate(s.getpeercert(binary_form=True)).serial_number


def test_tls_line_session(tls_daemon, pki):
    with tls_line(tls_daemon.tls_line_port, pki["ca"].path) as s:
        assert s.version() in ("TLSv1.2", "TLSv1.3")
        read_until(s, b"Welcome")
        s.sendall(b"/nick tlsline\r\n/join #tls\r\n")
        read_until(s, b"now talking in #tls")
        s.sendall(b"over tls\r\n")
        assert b"[#tls] <tlsline> over tls" in read_until(s, b"over tls\r\n")


def test_wss_session(tls_daemon, pki):
    ws = websocket.create_connection(f"wss://127.0.0.1:{tls_daemon.tls_ws_port}/ws",
                                     timeout=TIMEOUT, sslopt={"ca_certs": str(pki["ca"].path)})
    try:
        assert json.loads(ws.recv())["type"] == "hello"
        for req in ({"type": "nick", "nick": "tlsws", "id": 1},
                    {"type": "join", "room": "#tls", "id": 2},
                    {"type": "message", "room": "#tls", "text": "over wss", "id": 3}):
            ws.send(json.dumps(req))
        events = []
        def live(es):
            return [e["text"] for e in es if e["type"] == "message" and not e.get("history")]
        while not live(events):
            events.append(json.loads(ws.recv()))
        assert live(events) == ["over wss"]
    finally:
        ws.close()


def test_bad_protobuf_input_over_wss_gets_its_error_and_close_codes(tls_daemon, pki):
    pat = PBClient(tls_daemon.tls_ws_port, scheme="wss", timeout=TIMEOUT,
                   sslopt={"ca_certs": str(pki["ca"].path)})
    try:
        refuses_bad_binary_input(pat.login("badwss"))
    finally:
        pat.close()


def test_weak_protocol_versions_are_refused(tls_daemon, pki):
    # A client willing to speak only TLS 1.0/1.1 (SECLEVEL=0 lets OpenSSL
    # offer them): the server must answer with a protocol_version alert.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.load_verify_locations(str(pki["ca"].path))
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
        ctx.minimum_version = ssl.TLSVersion.TLSv1
        ctx.maximum_version = ssl.TLSVersion.TLSv1_1
    with socket.create_connection(("127.0.0.1", tls_daemon.tls_line_port),
                                  timeout=TIMEOUT) as s:
        with pytest.raises(ssl.SSLError, match="(?i)alert protocol version"):
            ctx.wrap_socket(s, server_hostname="127.0.0.1")


def test_plain_tcp_to_the_tls_port_fails_cleanly(tls_daemon, pki):
    with socket.create_connection(("127.0.0.1", tls_daemon.tls_line_port),
                                  timeout=TIMEOUT) as s:
        s.sendall(b"/nick plain\r\n")
        data = b""
        while chunk := s.recv(4096):  # a TLS alert at most, then the close
            data += chunk
        assert b"Welcome" not in data
    with tls_line(tls_daemon.tls_line_port, pki["ca"].path) as s:
        read_until(s, b"Welcome")
    tls_daemon.wait_connections(0)
    assert "Traceback" not in tls_daemon.log()


def test_client_library_over_tls_line_and_wss(tls_daemon, pki):
    ca = str(pki["ca"].path)
    line = call(lambda: ChatClient(f"tls://127.0.0.1:{tls_daemon.tls_line_port}", "libline",
                                   ca_file=ca).start())
    ws = call(lambda: ChatClient(f"wss://127.0.0.1:{tls_daemon.tls_ws_port}/ws", "libws",
                                 ca_file=ca).start())
    try:
        heard = Recorder(ws, "message")
        call(line.join, "#libtls")
        call(ws.join, "#libtls")
        ack = call(line.say, "#libtls", "from the line port, over TLS")
        events = heard.wait(lambda es: any(e["mid"] == ack["mid"] for e in es), "the message")
        assert [e["text"] for e in events] == ["from the line port, over TLS"]
    finally:
        call(line.stop)
        call(ws.stop)


@pytest.mark.parametrize("url", ["tls://localhost:{line}", "wss://localhost:{ws}/ws"])
def test_client_library_refuses_a_host_name_mismatch(tls_daemon, pki, url):
    # The certificate names 127.0.0.1 only; "localhost" reaches the same daemon.
    url = url.format(line=tls_daemon.tls_line_port, ws=tls_daemon.tls_ws_port)
    client = call(lambda: ChatClient(url, "mismatch", ca_file=str(pki["ca"].path)).start())
    with pytest.raises(TLSError, match="not valid for 'localhost'"):
        call(client.ready)
    assert client.fatal is not None  # stopped: no retrying against a wrong certificate


@pytest.mark.parametrize("trust", ["stranger", "system"])
def test_client_library_refuses_an_untrusted_certificate(tls_daemon, pki, trust):
    ca_file = str(pki["stranger"].path) if trust == "stranger" else None
    client = call(lambda: ChatClient(f"tls://127.0.0.1:{tls_daemon.tls_line_port}",
                                     "untrusting", ca_file=ca_file).start())
    with pytest.raises(TLSError, match="not trusted"):
        call(client.ready)


def test_sighup_reloads_the_certificate(tls_daemon, pki):
    ca, port = pki["ca"], tls_daemon.tls_line_port
    before = served_serial(port, ca.path)
    # Renewal writes the new files where the old ones were, then signals.
    _, _, renewed = ca.issue("server", hosts=("127.0.0.1",))
    assert renewed != before
    tls_daemon.proc.send_signal(signal.SIGHUP)
    tls_daemon.wait_for(lambda: served_serial(port, ca.path) == renewed,
                        "the renewed certificate to be served")
    assert "TLS certificate reloaded" in tls_daemon.log()
    # A broken renewal: the old certificate keeps serving, and the log says why.
    pki["cert"].write_text("not a certificate\n")
    tls_daemon.proc.send_signal(signal.SIGHUP)
    tls_daemon.wait_for(lambda: "TLS certificate reload failed" in tls_daemon.log(),
                        "the failed reload to be logged")
    assert served_serial(port, ca.path) == renewed
    assert served_serial(tls_daemon.tls_ws_port, ca.path) == renewed


def test_cli_verifies_the_certificate(tls_daemon, pki):
    from .test_client_cli import cli
    ca = str(pki["ca"].path)
    good = cli("-u", f"tls://127.0.0.1:{tls_daemon.tls_line_port}", "--ca-file", ca,
               "send", "#tls-cli", "hello")
    assert (good.returncode, good.stderr) == (0, "")
    wss = cli("-u", f"wss://127.0.0.1:{tls_daemon.tls_ws_port}/ws", "--ca-file", ca, "rooms")
    assert wss.returncode == 0, wss.stderr
    mismatch = cli("-u", f"wss://localhost:{tls_daemon.tls_ws_port}/ws", "--ca-file", ca, "rooms")
    assert mismatch.returncode == 4 and "not valid for 'localhost'" in mismatch.stderr
    untrusted = cli("-u", f"tls://127.0.0.1:{tls_daemon.tls_line_port}", "rooms")
    assert untrusted.returncode == 4 and "not trusted" in untrusted.stderr


# -- what is offered, and who may hold a connection -----------------------------------
def tls12_client(pki, ciphers: str) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(str(pki["ca"].path))
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(ciphers)
    return ctx


def issue_rsa(ca, name="rsa-server"):
    """An RSA leaf from the test CA (certs.py issues ECDSA): static-RSA key
    exchange is only possible at all with an RSA certificate."""
    import datetime

    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca.cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .sign(ca.key, hashes.SHA256()))
    cert_path, key_path = ca.directory / f"{name}.pem", ca.directory / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM)
                          + ca.cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


@pytest.fixture(scope="module")
def rsa_tls_port(pki, tmp_path_factory):
    """The TLS line port of a daemon serving an RSA certificate."""
    cert, key = issue_rsa(pki["ca"])
    starter = DaemonStarter(tmp_path_factory)
    d = starter("--line", "tls:0:interface=127.0.0.1", "--tls-cert", str(cert),
                "--tls-key", str(key))
    yield dict(_TLS_PORT_RE.findall(d.log()))["LineFactory"]
    starter.stop_all()


@pytest.mark.parametrize("suite", [
    "AES128-GCM-SHA256",  # static RSA key exchange: no forward secrecy
    "AES256-SHA",  # static RSA, CBC, SHA-1
    "ECDHE-RSA-AES128-SHA",  # forward secret, but CBC with SHA-1
    "ECDHE-ECDSA-AES128-SHA",
    "ECDHE-RSA-AES256-SHA384",  # CBC
])
def test_suites_without_forward_secrecy_or_aead_are_refused(tls_daemon, rsa_tls_port, pki,
                                                           suite):
    ctx = tls12_client(pki, suite + ":@SECLEVEL=0")
    for port in (tls_daemon.tls_line_port, tls_daemon.tls_ws_port, int(rsa_tls_port)):
        with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as s:
            with pytest.raises(ssl.SSLError, match="(?i)handshake failure|no shared cipher"):
                ctx.wrap_socket(s, server_hostname="127.0.0.1")


@pytest.mark.parametrize("suite", ["ECDHE-RSA-AES128-GCM-SHA256",
                                   "ECDHE-RSA-CHACHA20-POLY1305",
                                   "ECDHE-ECDSA-AES256-GCM-SHA384",
                                   "ECDHE-ECDSA-CHACHA20-POLY1305"])
def test_a_modern_tls12_client_works(tls_daemon, rsa_tls_port, pki, suite):
    port = int(rsa_tls_port) if "-RSA-" in suite else tls_daemon.tls_line_port
    ctx = tls12_client(pki, suite)
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as raw:
        with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s:
            assert (s.version(), s.cipher()[0]) == ("TLSv1.2", suite)
            read_until(s, b"Welcome")


def test_tls_connections_count_from_accept_and_are_refused_inside_tls(start_daemon, pki):
    cert, key, _ = pki["ca"].issue("server", hosts=("127.0.0.1",))  # whatever SIGHUP left
    d = start_daemon("--line", "tls:0:interface=127.0.0.1", "--ws", "tls:0:interface=127.0.0.1",
                     "--tls-cert", str(cert), "--tls-key", str(key),
                     "--max-per-ip", "2", "--request-timeout", "1")
    ports = dict((kind, int(port)) for kind, port in _TLS_PORT_RE.findall(d.log()))
    ctx = ssl.create_default_context(cafile=str(pki["ca"].path))
    # Two connections that never even start a TLS handshake.
    held = []
    for _ in range(2):
        s = socket.socket()
        s.bind(("127.0.0.6", 0))
        s.settimeout(TIMEOUT)
        s.connect(("127.0.0.1", ports["LineFactory"]))
        held.append(s)
    try:
        raw = socket.socket()
        raw.bind(("127.0.0.6", 0))
        raw.settimeout(TIMEOUT)
        raw.connect(("127.0.0.1", ports["LineFactory"]))
        with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s:
            assert read_until(s, b"\r\n") == (
                b"! error too_many_from_ip: too many connections from your address\r\n")
    finally:
        for s in held:
            s.close()
    # On the HTTP port the request deadline covers the TLS handshake too.
    with socket.create_connection(("127.0.0.1", ports["Site"]), timeout=TIMEOUT) as s:
        start = time.monotonic()
        try:
            assert s.recv(1024) == b""
        except ConnectionResetError:
            pass
        assert time.monotonic() - start < 1 + 2.0
