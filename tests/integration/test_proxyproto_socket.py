"""A haproxy: listener's connection on a real socket keeps the end-of-turn direct send.

The header reader (chatd.proxyproto) and admission both only pass writes
through, so chatd.fastsend looks through both to the ``tcp.Server`` beneath;
were it not to, every delivery behind nginx would take the slow path.  A
socketpair stands in for the proxy; the reactor is a MemoryReactorClock.
"""

from twisted.internet import protocol
from twisted.internet.address import IPv4Address
from twisted.internet.testing import MemoryReactorClock

from chatd import fastsend
from chatd.admission import Admission, AdmissionFactory, line_refusal
from chatd.fastsend import TurnFlusher
from chatd.outbuf import OutputQueue
from chatd.proxyproto import ProxyHeaderFactory

from .socketpairs import server_end


def test_the_direct_send_sees_through_the_header_reader_and_admission():
    reactor = MemoryReactorClock()
    app = protocol.Factory.forProtocol(protocol.Protocol)
    factory = ProxyHeaderFactory(
        AdmissionFactory(app, Admission(10, 10, exempt=["127.0.0.1"]), line_refusal,
                         reactor), ["127.0.0.1"], reactor)
    proxied = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 1))
    transport, peer, close = server_end(reactor, proto=proxied)
    try:
        proxied.makeConnection(transport)
        proxied.dataReceived(b"PROXY TCP4 203.0.113.7 127.0.0.1 4000 9000\r\n")
        admitted = proxied.wrappedProtocol
        front_end = admitted.wrappedProtocol
        assert front_end.transport.getPeer().host == "203.0.113.7"
        assert fastsend.direct(front_end.transport) is transport
        queue = OutputQueue(front_end.transport, 1 << 20, lambda: None, reactor,
                            TurnFlusher(reactor))
        queue.write(b"straight to the socket\n")
        reactor.advance(0)
        assert peer.recv(1024) == b"straight to the socket\n"
        assert transport not in reactor.getWriters()  # sent, not buffered
    finally:
        close()
