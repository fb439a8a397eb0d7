"""Every way a session ends closes its connection on a TLS listener too.

An outside attacker found that on a ``tls:`` line listener /quit, the
registration and ping timeouts and a too_many_from_ip refusal sent their
message but left the socket open (the output queue stayed the TLS
transport's producer, and TLS waits for that), and that raw TCP connections
which never start a handshake were never closed, keeping their slots.
"""

import re
import socket
import ssl
import time

import pytest

from .certs import CA
from .conftest import DaemonStarter

_TLS_PORT_RE = re.compile(r"\bLineFactory \(TLS\) starting on (\d+)")
TIMEOUT = 5.0


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = tmp_path_factory.mktemp("pki")
    ca = CA(d / "ca")
    cert, key, _ = ca.issue("server", hosts=("127.0.0.1",))
    return {"ca": ca, "cert": cert, "key": key}


@pytest.fixture(scope="module")
def tls_daemon(pki, tmp_path_factory):
    starter = DaemonStarter(tmp_path_factory)
    d = starter("--line", "tls:0:interface=127.0.0.1",
                "--tls-cert", str(pki["cert"]), "--tls-key", str(pki["key"]),
                "--register-timeout", "2", "--ping-interval", "1", "--ping-timeout", "3",
                "--max-per-ip", "3", "--request-timeout", "3")
    d.tls_port = int(_TLS_PORT_RE.search(d.log()).group(1))
    yield d
    starter.stop_all()


def connect(d, pki):
    ctx = ssl.create_default_context(cafile=str(pki["ca"].path))
    raw = socket.create_connection(("127.0.0.1", d.tls_port), timeout=TIMEOUT)
    return ctx.wrap_socket(raw, server_hostname="127.0.0.1")


def read_to_close(sock, within: float) -> bytes:
    """Everything until the server closes the connection, which must be within ``within``."""
    buf = b""
    deadline = time.monotonic() + within
    sock.settimeout(0.5)
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            continue
        except (ssl.SSLError, ConnectionResetError):
            return buf
        if not chunk:
            return buf
        buf += chunk
    raise AssertionError(f"still open after {within} s; got {buf!r}")


def test_quit_closes_the_tls_connection(tls_daemon, pki):
    with connect(tls_daemon, pki) as s:
        s.sendall(b"/nick quitter\r\n/quit see you\r\n")
        assert b"closing connection: see you" in read_to_close(s, TIMEOUT)


def test_registration_timeout_closes_the_tls_connection(tls_daemon, pki):
    with connect(tls_daemon, pki) as s:
        assert b"registration timeout" in read_to_close(s, 2 + TIMEOUT)


def test_ping_timeout_closes_the_tls_connection(tls_daemon, pki):
    with connect(tls_daemon, pki) as s:
        s.sendall(b"/nick sleeper\r\n")  # then never answers a ping
        assert b"ping timeout" in read_to_close(s, 3 + TIMEOUT)


def test_a_refused_tls_connection_is_closed_and_frees_nothing_it_never_had(tls_daemon, pki):
    held = [connect(tls_daemon, pki) for _ in range(3)]
    for i, s in enumerate(held):
        s.sendall(f"/nick holder{i}\r\n".encode())
    try:
        with connect(tls_daemon, pki) as extra:
            assert b"too_many_from_ip" in read_to_close(extra, TIMEOUT)
    finally:
        for s in held:
            s.close()


def test_a_raw_tcp_connection_that_never_handshakes_is_closed_and_its_slot_freed(
        tls_daemon, pki):
    silent = [socket.create_connection(("127.0.0.1", tls_daemon.tls_port), timeout=TIMEOUT)
              for _ in range(3)]
    try:
        for s in silent:  # cut off once --request-timeout passes without a handshake
            read_to_close(s, 3 + TIMEOUT)
        with connect(tls_daemon, pki) as s:  # the address has its slots back
            s.sendall(b"/nick real\r\n")
            s.settimeout(TIMEOUT)
            assert b"Welcome" in s.recv(65536)
    finally:
        for s in silent:
            s.close()
