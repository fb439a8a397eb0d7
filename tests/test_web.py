"""The HTTP side over a StringTransport, on the test's Clock."""

import json

from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport

from chatd.admission import Admission
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
