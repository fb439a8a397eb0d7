"""What an attacker on the HTTP/WebSocket port meets, through the real daemon.

Slow request heads (slowloris), connections held without a request, hostile
web pages opening /ws, and what the HTTP answers give away.
"""

import json
import socket
import time

import pytest
import websocket

TIMEOUT = 5.0


def raw(port, source=None) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(TIMEOUT)
    if source is not None:
        s.bind((source, 0))
    s.connect(("127.0.0.1", port))
    return s


def read_all(s: socket.socket) -> bytes:
    """Everything until the server closes (a reset counts as a close)."""
    data = b""
    try:
        while chunk := s.recv(65536):
            data += chunk
    except ConnectionResetError:
        pass
    return data


def closed_by_server(s: socket.socket) -> bool:
    try:
        return s.recv(65536) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def http_get(port, path, headers=b"", source=None) -> tuple[bytes, bytes]:
    """(head, body) of one GET on a connection of its own."""
    with raw(port, source) as s:
        s.sendall(b"GET " + path + b" HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n" % port + headers
                  + b"Connection: close\r\n\r\n")
        head, _, body = read_all(s).partition(b"\r\n\r\n")
    return head, body


def ws_handshake(port) -> bytes:
    return (b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            b"Sec-WebSocket-Version: 13\r\n\r\n" % port)


# -- A: slowloris ----------------------------------------------------------------------
@pytest.mark.parametrize("head", ["http", "websocket"])
def test_a_trickled_request_head_is_cut_off(start_daemon, head):
    d = start_daemon("--request-timeout", "1.5")
    request = (b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-a: 1\r\nX-b: 2\r\nX-c: 3\r\n\r\n"
               if head == "http" else ws_handshake(d.ws_port))
    lines = request.split(b"\r\n")
    start = time.monotonic()
    with raw(d.ws_port) as s:
        s.settimeout(0.4)
        for line in lines[:-2]:  # never the blank line that ends the head
            try:
                s.sendall(line + b"\r\n")  # a header line every 0.4 s resets an idle timer
            except (BrokenPipeError, ConnectionResetError):
                break  # cut off mid-trickle
            if closed_by_server(s):
                break
        s.settimeout(TIMEOUT)
        assert closed_by_server(s), "still open after the request timeout"
    assert time.monotonic() - start < 1.5 + 2.0
    assert d.health()["connections"] == 0  # and no longer counted


def test_held_http_connections_count_against_the_limits_a_telnet_user_meets(start_daemon):
    d = start_daemon("--max-per-ip", "3", "--max-connections", "5")
    d.wait_connections(0)  # the readiness probes have gone
    # From an address of their own: the last /healthz probe may still be closing.
    held = [raw(d.ws_port, "127.0.0.4") for _ in range(3)]
    held[2].sendall(ws_handshake(d.ws_port)[:40])  # half a WebSocket handshake
    try:
        # Accepted in order on one port: this answer says all three are counted.
        head, body = http_get(d.ws_port, b"/", source="127.0.0.4")
        assert head.startswith(b"HTTP/1.1 503 ")
        assert body == b"too many connections from your address\n"
        late = d.line(source="127.0.0.4")
        assert late.expect_closed() == [
            "! error too_many_from_ip: too many connections from your address"]
        # ... and in total: two more from another address fill the server.
        others = [d.line(source="127.0.0.2") for _ in range(2)]
        for c in others:
            c.expect("Welcome")
        full = d.line(source="127.0.0.3")
        assert full.expect_closed() == [
            "! error too_many_connections: the server is full; try again later"]
    finally:
        for s in held:
            s.close()
    d.close_clients()
    d.wait_connections(0)
    d.line().login("welcome", "#back")


def test_a_refused_websocket_gets_a_503(start_daemon):
    d = start_daemon("--max-per-ip", "2")
    d.wait_connections(0)
    first, _ = d.ws().login("first"), d.line().login("second")
    with pytest.raises(websocket.WebSocketBadStatusException) as e:
        websocket.create_connection(f"ws://127.0.0.1:{d.ws_port}/ws", timeout=TIMEOUT)
    assert e.value.status_code == 503
    first.request({"type": "ping"})


# -- B: a trusted proxy --------------------------------------------------------------
def proxied_ws(port, client: str, **options):
    return websocket.create_connection(f"ws://127.0.0.1:{port}/ws", timeout=TIMEOUT,
                                       header=[f"X-Forwarded-For: {client}"], **options)


def test_behind_a_trusted_proxy_people_are_counted_not_the_proxy(start_daemon):
    d = start_daemon("--trusted-proxy", "127.0.0.1", "--max-per-ip", "1")
    d.wait_connections(0)
    # The proxy's own connections: many, none refused per address.
    held = [raw(d.ws_port) for _ in range(3)]
    try:
        a = proxied_ws(d.ws_port, "203.0.113.7")
        b = proxied_ws(d.ws_port, "2001:db8:5:6::1")
        for ws in (a, b):
            assert json.loads(ws.recv())["type"] == "hello"
        # The same person again, and a neighbour in the same IPv6 /64: refused.
        for client in ("203.0.113.7", "2001:db8:5:6::2"):
            again = proxied_ws(d.ws_port, client)
            assert json.loads(again.recv())["code"] == "too_many_from_ip"
            again.close()
        a.close()
        b.close()
    finally:
        for s in held:
            s.close()
    # Released when they leave.
    d.wait_connections(0)
    c = proxied_ws(d.ws_port, "203.0.113.7")
    assert json.loads(c.recv())["type"] == "hello"
    c.close()


# -- C: cross-site WebSocket hijacking ----------------------------------------------------
def ws_from(port, origin=None, **options):
    """A handshake as a browser page at ``origin`` makes it (None: a program, no Origin)."""
    if origin is None:
        options["suppress_origin"] = True
    else:
        options["origin"] = origin
    return websocket.create_connection(f"ws://127.0.0.1:{port}/ws", timeout=TIMEOUT, **options)


ORIGIN_DAEMON = ("--allowed-origin", "https://chat.example.org")


@pytest.mark.parametrize("origin", ["https://evil.example", "http://127.0.0.1:1",
                                    "https://127.0.0.1:{port}", "null"])
def test_a_page_from_another_origin_cannot_open_a_websocket(start_daemon, origin):
    d = start_daemon(*ORIGIN_DAEMON)
    with pytest.raises(websocket.WebSocketBadStatusException) as e:
        ws_from(d.ws_port, origin.format(port=d.ws_port))
    # Autobahn itself answers "null" (sandboxed frames, file: pages) with a 400.
    assert e.value.status_code == (400 if origin == "null" else 403)


@pytest.mark.parametrize("origin", [None, "http://127.0.0.1:{port}",
                                    "https://chat.example.org"])
def test_our_own_pages_listed_origins_and_programs_connect(start_daemon, origin):
    d = start_daemon(*ORIGIN_DAEMON)
    ws = ws_from(d.ws_port, origin and origin.format(port=d.ws_port))
    try:
        assert json.loads(ws.recv())["type"] == "hello"
    finally:
        ws.close()


# -- D: what HTTP answers say -----------------------------------------------------------
@pytest.mark.parametrize("path", [b"/", b"/app.js", b"/style.css", b"/healthz", b"/nope"])
def test_responses_carry_the_hardening_headers_and_name_no_versions(daemon, path):
    head, _ = http_get(daemon.ws_port, path)
    lines = head.lower().split(b"\r\n")
    assert not [h for h in lines if h.startswith(b"server:")]
    for want in (b"x-content-type-options: nosniff", b"x-frame-options: deny",
                 b"referrer-policy: no-referrer"):
        assert want in lines, path
    [csp] = [h for h in lines if h.startswith(b"content-security-policy:")]
    assert b"frame-ancestors 'none'" in csp and b"script-src 'self'" in csp


def test_a_nul_byte_in_a_path_is_a_plain_404(daemon):
    head, body = http_get(daemon.ws_port, b"/app.js%00.html")
    assert head.startswith(b"HTTP/1.1 404 ")
    assert b"Traceback" not in body
    # (the daemon fixture fails the module if anything logged a traceback)


def test_the_websocket_port_names_no_versions(daemon):
    head, body = http_get(daemon.ws_port, b"/ws")
    assert head.startswith(b"HTTP/1.1 426 ")
    assert b"autobahn" not in (head + body).lower()
    with raw(daemon.ws_port) as s:
        s.sendall(ws_handshake(daemon.ws_port))
        answer = s.recv(4096)
    assert answer.startswith(b"HTTP/1.1 101 ")
    assert b"server:" not in answer.lower() and b"autobahn" not in answer.lower()


def test_a_trickled_request_body_is_cut_off_too(start_daemon):
    d = start_daemon("--request-timeout", "1.5")
    start = time.monotonic()
    with raw(d.ws_port) as s:
        s.sendall(b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100\r\n\r\n")
        s.settimeout(0.4)
        for _ in range(20):  # a byte every 0.4 s would reset twisted.web's idle timer
            try:
                s.sendall(b"x")
            except (BrokenPipeError, ConnectionResetError):
                break
            if closed_by_server(s):
                break
        s.settimeout(TIMEOUT)
        assert closed_by_server(s), "still open after the request timeout"
    assert time.monotonic() - start < 1.5 + 2.0


@pytest.mark.parametrize("port", ["ws", "admin"])
def test_a_request_body_past_what_the_site_takes_is_cut_off(start_daemon, port):
    d = start_daemon("--admin", "tcp:0:interface=127.0.0.1")
    target = d.ws_port if port == "ws" else d.admin_port
    size = 10 * 1024 * 1024  # the chat site takes no body, the admin API 64 KiB
    with raw(target) as s:
        s.sendall(b"POST /api/wall HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                  b"Content-Length: %d\r\n\r\n" % size)
        sent = 0
        try:
            while sent < size:
                s.sendall(b"x" * 65536)
                sent += 65536
        except (BrokenPipeError, ConnectionResetError):
            pass
        assert sent < size, "the whole 10 MB body was taken"
        s.settimeout(TIMEOUT)
        assert closed_by_server(s)


def test_the_admin_endpoint_holds_a_bounded_number_of_connections(start_daemon):
    from chatd.tap import ADMIN_PER_IP
    d = start_daemon("--admin", "tcp:0:interface=127.0.0.1")
    held = [socket.create_connection(("127.0.0.1", d.admin_port), timeout=TIMEOUT)
            for _ in range(ADMIN_PER_IP)]
    try:
        head, _ = http_get(d.admin_port, b"/healthz")
        assert head.startswith(b"HTTP/1.1 503")  # one more from the same address
        assert d.health()["status"] == "ok"  # chat users are not affected
    finally:
        for s in held:
            s.close()
