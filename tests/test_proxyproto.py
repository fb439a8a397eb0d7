"""chatd.proxyproto: ``haproxy:`` listeners read a PROXY v1 header, then serve the client.

The header reader alone, then the whole listener stack (header, admission, the
real line front end) over StringTransports on the chat's Clock; the listener
wiring and option checks through a MemoryReactor.  No sockets.
"""

import pytest
from OpenSSL import SSL
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import MemoryReactorClock, StringTransportWithDisconnection
from twisted.logger import capturedLogs
from twisted.python import usage

from chatd.admission import Admission, AdmissionFactory, line_refusal
from chatd.protocols.line import LineFactory
from chatd.proxyproto import (
    HEADER_TIMEOUT,
    MAX_HEADER,
    Header,
    HeaderError,
    ProxyHeaderFactory,
    read_header,
    split,
)
from chatd.tap import Options
from chatd.tls import ReloadableTLS, listener
from tests.integration.certs import CA

PROXY = "10.0.0.100"
V4 = b"PROXY TCP4 203.0.113.7 10.0.0.11 51234 9000\r\n"
# The specification's longest header: 107 bytes, CRLF included.
LONGEST = (b"PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
           b"ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n")


# -- the header alone -----------------------------------------------------------------
def test_a_tcp4_header_names_the_client_and_where_it_connected():
    header, rest = read_header(V4)
    assert header == Header("TCP4", "203.0.113.7", "10.0.0.11", 51234, 9000)
    assert rest == b""
    assert header.peer() == IPv4Address("TCP", "203.0.113.7", 51234)
    assert header.host() == IPv4Address("TCP", "10.0.0.11", 9000)


def test_a_tcp6_header_is_read_in_canonical_form():
    header, _ = read_header(b"PROXY TCP6 2001:DB8:0:0::7 2001:db8::11 65535 0\r\n")
    # One client, one key for the per-address limits, however the proxy spells it.
    assert header == Header("TCP6", "2001:db8::7", "2001:db8::11", 65535, 0)
    assert header.peer() == IPv6Address("TCP", "2001:db8::7", 65535)


@pytest.mark.parametrize("line", [b"PROXY UNKNOWN\r\n", LONGEST])
def test_unknown_keeps_the_connection_s_own_address(line):
    assert len(LONGEST) == MAX_HEADER
    header, rest = read_header(line + b"hello\n")
    assert header == Header("UNKNOWN") and header.peer() is None
    assert rest == b"hello\n"


def test_bytes_after_the_header_are_returned_untouched():
    _, rest = read_header(V4 + b"/nick alice\r\n/join #a")
    assert rest == b"/nick alice\r\n/join #a"


def test_an_incomplete_header_waits_for_more():
    for n in range(len(V4)):
        assert read_header(V4[:n]) is None, V4[:n]


@pytest.mark.parametrize("data, why", [
    (b"NICK alice\r\n", "no PROXY header"),
    (b"G", "no PROXY header"),  # refused at its first byte, not after a timeout
    (b"proxy TCP4 203.0.113.7 10.0.0.11 1 2\r\n", "no PROXY header"),
    (b"PROXY\r\n", "no PROXY header"),
    (b"PROXY \r\n", "not TCP4, TCP6 or UNKNOWN"),
    (b"PROXY UDP4 203.0.113.7 10.0.0.11 1 2\r\n", "not TCP4, TCP6 or UNKNOWN"),
    (b"PROXY TCP4 203.0.113.7 10.0.0.11 1\r\n", "not 4 single-space"),
    (b"PROXY TCP4 203.0.113.7 10.0.0.11 1 2 3\r\n", "not 4 single-space"),
    (b"PROXY TCP4  203.0.113.7 10.0.0.11 1 2\r\n", "not 4 single-space"),
    (b"PROXY TCP4 203.0.113.256 10.0.0.11 1 2\r\n", "source address is not IPv4"),
    (b"PROXY TCP4 203.0.113.07 10.0.0.11 1 2\r\n", "source address is not IPv4"),
    (b"PROXY TCP4 2001:db8::7 10.0.0.11 1 2\r\n", "source address is not IPv4"),
    (b"PROXY TCP6 203.0.113.7 2001:db8::11 1 2\r\n", "source address is not IPv6"),
    (b"PROXY TCP6 fe80::1%eth0 2001:db8::11 1 2\r\n", "source address is not IPv6"),
    (b"PROXY TCP4 203.0.113.7 10.0.0.\xff 1 2\r\n", "destination address is not IPv4"),
    (b"PROXY TCP4 203.0.113.7 10.0.0.11 65536 2\r\n", "source port is not 0-65535"),
    (b"PROXY TCP4 203.0.113.7 10.0.0.11 01 2\r\n", "source port is not 0-65535"),
    (b"PROXY TCP4 203.0.113.7 10.0.0.11 1 -2\r\n", "destination port is not 0-65535"),
    (b"PROXY " + b"x" * (MAX_HEADER - 6), "no CRLF within 107 bytes"),
    (LONGEST[:-2] + b"0\r\n", "no CRLF within 107 bytes"),
    (b"\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x0c", "v2 header"),
])
def test_malformed_or_oversized_headers_are_refused(data, why):
    with pytest.raises(HeaderError, match=why):
        read_header(data)


# -- the listener stack: header, admission, the line front end ------------------------
class Stack:
    """A haproxy: line listener as tap.py builds it, trusting PROXY."""

    def __init__(self, chat, max_per_ip=100):
        self.chat = chat
        self.admission = Admission(1000, max_per_ip, exempt=[PROXY])
        inner = AdmissionFactory(LineFactory(chat.service, chat.dispatcher), self.admission,
                                 line_refusal, chat.clock, "line")
        self.factory = ProxyHeaderFactory(inner, [PROXY], chat.clock)

    def connect(self, peer=PROXY):
        proto = self.factory.buildProtocol(IPv4Address("TCP", peer, 40000))
        transport = StringTransportWithDisconnection(
            peerAddress=IPv4Address("TCP", peer, 40000),
            hostAddress=IPv4Address("TCP", "10.0.0.11", 9000))
        transport.protocol = proto
        proto.makeConnection(transport)
        return proto, transport

    def hosts(self):
        return sorted(s.host for s in self.chat.service.sessions)


def only_code(events):
    return [e.get("code") for e in events if "code" in e]


def test_the_client_named_by_the_header_is_the_peer_everywhere(chat):
    s = Stack(chat)
    proto, transport = s.connect()
    assert transport.value() == b""  # nothing is built before the header
    proto.dataReceived(V4)
    assert transport.value().startswith(b"* Welcome")
    assert s.hosts() == ["203.0.113.7"]  # the sessions list, /api/sessions, the logs
    assert dict(s.admission.per_address) == {"203.0.113.7": 1}  # counted: the client
    assert proto.getPeer() == IPv4Address("TCP", "203.0.113.7", 51234)
    assert proto.getHost() == IPv4Address("TCP", "10.0.0.11", 9000)
    chat.clock.advance(HEADER_TIMEOUT + 1)  # the header's deadline went with the header
    assert transport.connected
    proto.connectionLost(None)
    assert s.hosts() == [] and s.admission.connections == 0


def test_a_header_split_over_many_reads_is_put_together(chat):
    s = Stack(chat)
    proto, transport = s.connect()
    for i in range(len(V4)):
        proto.dataReceived(V4[i:i + 1])
        assert (transport.value() == b"") == (i < len(V4) - 1)
    assert s.hosts() == ["203.0.113.7"]


def test_what_follows_the_header_in_the_same_read_reaches_the_protocol(chat):
    s = Stack(chat)
    proto, transport = s.connect()
    proto.dataReceived(V4 + b"/nick alice\n/join #a\n")
    assert [x.nick for x in chat.service.sessions] == ["alice"]
    assert b"alice" in transport.value()


def test_an_ipv6_client_and_an_unknown_one(chat):
    s = Stack(chat)
    proto, _ = s.connect()
    proto.dataReceived(b"PROXY TCP6 2001:db8::7 2001:db8::11 4000 9000\r\n")
    other, _ = s.connect()
    other.dataReceived(b"PROXY UNKNOWN\r\n")  # e.g. a health check: the proxy's own address
    assert s.hosts() == [PROXY, "2001:db8::7"]


def test_max_per_ip_counts_each_client_behind_the_proxy(chat):
    s = Stack(chat, max_per_ip=1)
    first, _ = s.connect()
    first.dataReceived(V4)
    second, refused = s.connect()
    second.dataReceived(V4)
    assert refused.value() == (b"! error too_many_from_ip: too many connections from "
                               b"your address\r\n")
    other, welcomed = s.connect()
    other.dataReceived(V4.replace(b"203.0.113.7", b"203.0.113.8"))
    assert welcomed.value().startswith(b"* Welcome")
    assert s.hosts() == ["203.0.113.7", "203.0.113.8"]


def test_a_peer_that_is_not_a_trusted_proxy_is_closed_unread(chat):
    s = Stack(chat)
    with capturedLogs() as events:
        proto, transport = s.connect(peer="198.51.100.9")
    assert not transport.connected
    proto.dataReceived(V4)  # too late: never read
    assert transport.value() == b"" and s.hosts() == []
    assert s.admission.connections == 0
    assert only_code(events) == ["untrusted_proxy"]
    assert events[-1]["peer"] == "198.51.100.9"


def test_a_bad_header_closes_the_connection_and_logs_no_client_text(chat):
    s = Stack(chat)
    proto, transport = s.connect()
    with capturedLogs() as events:
        # A proxy that sends no header forwards the client's first line as is.
        proto.dataReceived(b"/login alice s3cret-password\n")
    assert not transport.connected and transport.value() == b""
    assert s.hosts() == [] and s.admission.connections == 0
    assert only_code(events) == ["bad_proxy_header"]
    assert "s3cret" not in repr(events)
    assert events[-1]["peer"] == PROXY and events[-1]["listener"] == "LineFactory (PROXY)"


def test_an_oversized_header_is_refused_at_107_bytes(chat):
    s = Stack(chat)
    proto, transport = s.connect()
    proto.dataReceived(b"PROXY " + b"1" * 100)
    assert transport.connected  # 106 bytes: a CRLF may still come
    with capturedLogs() as events:
        proto.dataReceived(b"1")
    assert not transport.connected
    assert only_code(events) == ["bad_proxy_header"]


def test_no_header_within_the_timeout_closes_the_connection(chat):
    s = Stack(chat)
    proto, transport = s.connect()
    proto.dataReceived(V4[:20])
    chat.clock.advance(HEADER_TIMEOUT - 0.1)
    assert transport.connected
    with capturedLogs() as events:
        chat.clock.advance(0.1)
    assert not transport.connected
    assert only_code(events) == ["proxy_header_timeout"]
    proto.dataReceived(V4[20:])  # late: ignored
    assert s.hosts() == []


def test_a_connection_lost_before_its_header_leaves_no_timer(chat):
    s = Stack(chat)
    pending = len(chat.clock.getDelayedCalls())
    proto, transport = s.connect()
    assert len(chat.clock.getDelayedCalls()) == pending + 1
    transport.loseConnection()
    assert len(chat.clock.getDelayedCalls()) == pending
    assert s.admission.connections == 0


# -- listener descriptions and options --------------------------------------------------
def test_descriptions_put_haproxy_first_and_once():
    assert split("haproxy:tcp:9000") == (True, "tcp:9000")
    assert split("haproxy:9000") == (True, "tcp:9000")
    assert split("haproxy:tls:6697") == (True, "tls:6697")
    assert split("tls:6697") == (False, "tls:6697")
    # Twisted's own haproxy: endpoint trusts every peer: never let it see one.
    for bad in ("tls:haproxy:tcp:9000", "haproxy:haproxy:tcp:9000",
                "haproxy:tls:haproxy:tcp:9000"):
        with pytest.raises(ValueError, match="haproxy: first and once"):
            split(bad)
    with pytest.raises(ValueError, match="UNIX socket"):
        split("haproxy:unix:/run/chatd.sock")


def parse(*argv):
    config = Options()
    config.parseOptions(list(argv))
    return config


def test_haproxy_without_a_trusted_proxy_is_refused_at_start():
    with pytest.raises(usage.UsageError, match="--line haproxy:tcp:9000: .*--trusted-proxy"):
        parse("--line", "haproxy:tcp:9000")
    with pytest.raises(usage.UsageError, match="--irc: tls:haproxy:tcp:6697: write haproxy"):
        parse("--irc", "tls:haproxy:tcp:6697", "--trusted-proxy", "127.0.0.1")
    # TLS behind the header still needs its certificate.
    with pytest.raises(usage.UsageError, match="needs --tls-cert"):
        parse("--irc", "haproxy:tls:6697", "--trusted-proxy", "127.0.0.1")
    config = parse("--line", "haproxy:tcp:9000", "--irc", "haproxy:tcp:6667",
                   "--trusted-proxy", "127.0.0.1")
    assert config["line"] == ["haproxy:tcp:9000"] and config["irc"] == ["haproxy:tcp:6667"]


class Recorder(Protocol):
    def connectionMade(self):
        self.factory.seen.append(self)
        self.data = b""

    def dataReceived(self, data):
        self.data += data


def test_haproxy_tls_reads_the_header_then_the_handshake(tmp_path):
    cert, key, _ = CA(tmp_path).issue("server", hosts=("127.0.0.1",))
    tls = ReloadableTLS(str(cert), str(key))
    reactor = MemoryReactorClock()
    app = Factory.forProtocol(Recorder)
    app.seen = []
    admission = Admission(10, 10, exempt=["127.0.0.1"])
    svc = listener("haproxy:tls:9443:interface=127.0.0.1", app, reactor, tls,
                   lambda f: AdmissionFactory(f, admission, line_refusal, reactor),
                   ["127.0.0.1"])
    svc.privilegedStartService()
    try:
        (port, factory, _, iface), = reactor.tcpServers
        assert (port, iface) == (9443, "127.0.0.1")
        assert factory.logPrefix() == "Factory (TLS) (PROXY)"
        proto = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 5555))
        transport = StringTransportWithDisconnection(
            peerAddress=IPv4Address("TCP", "127.0.0.1", 5555))
        transport.protocol = proto
        proto.makeConnection(transport)
        client = SSL.Connection(SSL.Context(SSL.TLS_CLIENT_METHOD), None)
        client.set_connect_state()
        client.set_tlsext_host_name(b"127.0.0.1")
        to_server = V4 + _pump(client, b"")  # the header and the ClientHello in one read
        while to_server:
            proto.dataReceived(to_server)
            to_server = _pump(client, transport.value())
            transport.clear()
        client.send(b"over TLS\n")
        proto.dataReceived(client.bio_read(65536))
        (inner,) = app.seen
        assert inner.data == b"over TLS\n"
        assert inner.transport.getPeer() == IPv4Address("TCP", "203.0.113.7", 51234)
        assert dict(admission.per_address) == {"203.0.113.7": 1}
    finally:
        svc.stopService()
    with pytest.raises(ValueError, match="needs --trusted-proxy"):
        listener("haproxy:tcp:9000", app, reactor, tls)


def _pump(client, from_server: bytes) -> bytes:
    """Feed the server's bytes to the TLS client; what it has to send back."""
    if from_server:
        client.bio_write(from_server)
    try:
        client.do_handshake()
    except SSL.WantReadError:
        pass
    try:
        return client.bio_read(65536)
    except SSL.WantReadError:
        return b""
