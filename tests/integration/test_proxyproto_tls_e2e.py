"""``haproxy:tls:`` through the real daemon: the proxy's PROXY header first, in
the clear, then the client's own TLS handshake; the session is the client's
address, and the per-address limit counts it.  A header from a peer that is not
a --trusted-proxy is never read, and one that never ends is cut off."""

import json
import re
import socket
import ssl
import urllib.request

import pytest

from .certs import CA
from .clients import LineClient

TOKEN = "proxy-tls-token-0123456789"
_PROXIED_TLS = re.compile(r"\bLineFactory \(TLS\) \(PROXY\) starting on (\d+)"
                          r"|\bLineFactory \(PROXY\) \(TLS\) starting on (\d+)")


@pytest.fixture
def node(start_daemon, tmp_path):
    ca = CA(tmp_path / "ca")
    cert, key, _serial = ca.issue("server", hosts=("127.0.0.1",))
    (tmp_path / "token").write_text(TOKEN + "\n")
    d = start_daemon("--line", "haproxy:tls:0:interface=127.0.0.1",
                     "--trusted-proxy", "127.0.0.1", "--max-per-ip", "1",
                     "--tls-cert", str(cert), "--tls-key", str(key),
                     "--admin", "tcp:0:interface=127.0.0.1",
                     "--admin-token-file", str(tmp_path / "token"))
    port = d.wait_for(lambda: _port(d), "the haproxy:tls listener's port")
    return d, port, ssl.create_default_context(cafile=str(ca.path))


def _port(daemon):
    found = _PROXIED_TLS.search(daemon.log())
    return int(found.group(1) or found.group(2)) if found else None


def sessions(d) -> list:
    request = urllib.request.Request(f"http://127.0.0.1:{d.admin_port}/api/sessions",
                                     headers={"Authorization": f"Bearer {TOKEN}"})
    with urllib.request.urlopen(request, timeout=5) as r:
        return json.loads(r.read())["sessions"]


def through_proxy(d, port, context, client_ip) -> LineClient:
    """What nginx does: connect, send the header in the clear, then carry the
    client's bytes (here: our own TLS handshake) unchanged."""
    client = LineClient(port)
    d.clients.append(client)
    client.send_raw(f"PROXY TCP4 {client_ip} 127.0.0.1 40000 {port}\r\n".encode())
    client.sock = context.wrap_socket(client.sock, server_hostname="127.0.0.1")
    return client


def test_the_client_behind_the_header_speaks_tls_and_is_known_by_its_address(node):
    d, port, context = node
    alice = through_proxy(d, port, context, "203.0.113.9")
    alice.expect("Welcome")
    alice.send("/nick alice")
    alice.expect("you are now alice")
    assert [(s["nick"], s["address"]) for s in sessions(d)] == [("alice", "203.0.113.9")]
    # --max-per-ip 1 counts the client, not the proxy: a second from the same
    # client address is refused, one from another address is not.
    again = through_proxy(d, port, context, "203.0.113.9")
    again.expect("too_many_from_ip")
    again.expect_closed()
    through_proxy(d, port, context, "198.51.100.2").expect("Welcome")


def test_a_header_from_an_untrusted_peer_or_one_that_never_ends_is_not_served(node):
    d, port, context = node
    with socket.create_connection(("127.0.0.1", port), timeout=5,
                                  source_address=("127.0.0.7", 0)) as s:
        s.sendall(b"PROXY TCP4 192.0.2.1 127.0.0.1 1 2\r\n")
        with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
            context.wrap_socket(s, server_hostname="127.0.0.1").recv(1024)
    d.wait_for(lambda: "closed a connection from 127.0.0.7" in d.log(), "the refusal logged")
    # A trusted peer that starts a header and stops: cut off at the header timeout.
    with socket.create_connection(("127.0.0.1", port), timeout=15) as s:
        s.sendall(b"PROXY TCP4 192.0.2.1")
        try:
            assert s.recv(1024) == b""
        except ConnectionResetError:
            pass
    d.wait_for(lambda: "no complete PROXY header" in d.log(), "the timeout logged")
    assert sessions(d) == []
