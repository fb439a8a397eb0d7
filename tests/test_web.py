"""The HTTP side over a StringTransport, on the test's Clock."""

import json
import re
from importlib.resources import files

from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport

from chatd.admission import Admission
from chatd.origin import OriginPolicy
from chatd.protocols.websocket import ChatWebSocketFactory
from chatd.web import make_site

PEER = IPv4Address("TCP", "10.0.0.1", 40000)


def site_for(chat, request_timeout=10.0):
    ws = ChatWebSocketFactory(chat.service, chat.dispatcher)
    admission = Admission.from_limits(chat.service.limits)
    return make_site(chat.service, ws, admission, request_timeout, reactor=chat.clock)


def open_channel(site):
    channel = site.buildProtocol(PEER)
    transport = StringTransport(peerAddress=PEER)
    channel.makeConnection(transport)
    return channel, transport


def response(transport) -> tuple[bytes, dict, bytes]:
    head, _, body = transport.value().partition(b"\r\n\r\n")
    status, *lines = head.split(b"\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    return status, headers, body


# -- slowloris -------------------------------------------------------------------------
def test_a_request_head_trickled_past_the_deadline_is_cut_off(chat):
    site = site_for(chat, request_timeout=10.0)
    channel, transport = open_channel(site)
    channel.dataReceived(b"GET / HTTP/1.1\r\n")
    for i in range(3):  # a header line every 3 s: twisted.web's idle timer never fires
        chat.clock.advance(3)
        channel.dataReceived(b"X-Slow-%d: 1\r\n" % i)
    assert not transport.disconnecting
    chat.clock.advance(1)
    assert transport.disconnected  # aborted, 10 s after accept
    assert transport.value() == b""


def test_a_prompt_request_is_served_and_the_next_one_has_its_own_deadline(chat):
    site = site_for(chat, request_timeout=10.0)
    channel, transport = open_channel(site)
    chat.clock.advance(9)
    channel.dataReceived(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    status, _, _ = response(transport)
    assert status == b"HTTP/1.1 200 OK"
    chat.clock.advance(9)
    assert not transport.disconnecting  # kept alive, waiting for another request
    chat.clock.advance(1)
    assert transport.disconnected


def test_healthz_counts_connections_from_accept_not_counting_itself(chat):
    site = site_for(chat)
    admission = site.resource.children[b"healthz"].admission
    admission.admit("10.0.0.2")  # e.g. a connection that has not sent a request yet
    admission.admit("10.0.0.3")
    admission.admit("10.0.0.1")  # the one asking
    channel, transport = open_channel(site)
    channel.dataReceived(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    assert json.loads(response(transport)[2])["connections"] == 2


# -- which pages may open /ws ------------------------------------------------------------
def test_origin_must_be_the_host_it_connected_to_scheme_and_port_included():
    p = OriginPolicy()
    assert p.permits(None, "chat.example.org", "http")  # a program: no Origin
    assert p.permits("http://chat.example.org", "chat.example.org", "http")
    assert p.permits("http://chat.example.org:80", "chat.example.org", "http")
    assert p.permits("https://Chat.Example.org", "chat.example.org:443", "https")
    assert p.permits("http://[::1]:8080", "[::1]:8080", "http")
    assert not p.permits("https://chat.example.org", "chat.example.org", "http")
    assert not p.permits("http://chat.example.org:8081", "chat.example.org:8080", "http")
    assert not p.permits("http://evil.example", "chat.example.org", "http")
    assert not p.permits("null", "chat.example.org", "http")
    assert not p.permits("http://chat.example.org", None, "http")


def test_listed_origins_and_a_proxy_that_drops_the_port():
    p = OriginPolicy(["https://app.example.net"])
    assert p.permits("https://app.example.net:443", "chat.example.org", "http")
    assert not p.permits("http://app.example.net", "chat.example.org", "http")
    # nginx's Host $host carries no port; X-Forwarded-Proto gave the scheme (or not).
    assert p.permits("https://chat.example.org:8443", "chat.example.org", "https",
                     any_port=True)
    assert p.permits("https://chat.example.org", "chat.example.org", None)
    assert not p.permits("https://evil.example", "chat.example.org", None, any_port=True)


# -- what responses say (and do not) -------------------------------------------------------
def get(chat, path, headers=b""):
    channel, transport = open_channel(site_for(chat))
    channel.dataReceived(b"GET " + path + b" HTTP/1.1\r\nHost: chat.example.org:8080\r\n"
                         + headers + b"\r\n")
    return response(transport)


def test_every_response_has_the_browser_hardening_headers_and_no_server_header(chat):
    # (Static files too: their bodies need a real transport, see the integration test.)
    for path in (b"/healthz", b"/no-such-file", b"/ws"):
        status, headers, _ = get(chat, path)
        assert b"server" not in headers, path
        assert headers[b"x-content-type-options"] == b"nosniff"
        assert headers[b"x-frame-options"] == b"DENY"
        assert headers[b"referrer-policy"] == b"no-referrer"
        csp = dict(d.strip().split(" ", 1) for d in
                   headers[b"content-security-policy"].decode().split(";"))
        assert csp["default-src"] == "'none'"
        assert csp["script-src"] == "'self'" and csp["style-src"] == "'self'"
        assert csp["frame-ancestors"] == "'none'"
        assert csp["connect-src"] == ("'self' ws://chat.example.org:8080 "
                                      "wss://chat.example.org:8080")


def test_a_host_header_cannot_inject_policy(chat):
    channel, transport = open_channel(site_for(chat))
    channel.dataReceived(b"GET /healthz HTTP/1.1\r\nHost: x; script-src *\r\n\r\n")
    csp = response(transport)[1][b"content-security-policy"]
    assert b"script-src *" not in csp and b"connect-src 'self';" in csp


def test_the_web_client_needs_nothing_the_policy_forbids():
    # No inline script, style or event handler: CSP without 'unsafe-inline'.
    html = (files("chatd") / "static" / "index.html").read_text()
    assert not re.search(r"<script(?![^>]*\bsrc=)", html)
    assert not re.search(r"<style|\sstyle=|\son[a-z]+\s*=", html)


def test_a_nul_in_a_path_is_a_404_not_a_traceback(chat):
    status, _, body = get(chat, b"/app.js%00.html")
    assert status.startswith(b"HTTP/1.1 404")
    assert b"Traceback" not in body and b"web.Server" not in body


def test_plain_get_on_the_websocket_path_does_not_name_autobahn(chat):
    status, headers, body = get(chat, b"/ws")
    assert status.startswith(b"HTTP/1.1 426")
    assert b"autobahn" not in body.lower() and b"server" not in headers
