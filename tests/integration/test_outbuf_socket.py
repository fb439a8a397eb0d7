"""The output queue on a real socket: a turn's writes go out at its end, whole and in order.

A socketpair stands in for the client; the reactor is a MemoryReactorClock, so
the transport's own buffered writes (``doWrite``) happen only when the test says.
"""

import pytest
from twisted.internet import protocol
from twisted.internet.testing import MemoryReactorClock

from chatd import fastsend
from chatd.fastsend import TurnFlusher
from chatd.outbuf import OutputQueue

from .socketpairs import received, server_end


@pytest.fixture
def pair():
    reactor = MemoryReactorClock()
    transport, peer, close = server_end(reactor)
    dropped = []
    queue = OutputQueue(transport, 1 << 20, lambda: dropped.append(True), reactor,
                        TurnFlusher(reactor))
    yield queue, transport, peer, reactor, dropped
    close()


def test_turn_arrives_whole_and_in_order_at_its_end(pair):
    queue, transport, peer, reactor, _ = pair
    for line in (b"one\n", b"two\n", b"three\n"):
        queue.write(line)
    assert received(peer) == b""  # still this turn
    reactor.advance(0)
    assert received(peer) == b"one\ntwo\nthree\n"
    assert transport not in reactor.getWriters()  # nothing left for the transport


def test_what_the_socket_cannot_take_follows_in_order(pair):
    queue, transport, peer, reactor, dropped = pair
    big = bytes(range(256)) * 4096  # 1 MiB: more than the socket buffers hold
    queue.write(big)
    reactor.advance(0)
    assert transport in reactor.getWriters()  # the rest waits in the transport
    queue.write(b"after\n")  # the transport paused us: this one is queued
    reactor.advance(0)
    got = received(peer)
    while transport in reactor.getWriters() or queue.pending:
        transport.doWrite()  # what the reactor does when the socket is writable
        got += received(peer)
    assert got == big + b"after\n"
    assert dropped == []


def test_flush_before_close_sends_the_turn(pair):
    queue, transport, peer, reactor, _ = pair
    queue.write(b"bye\n")
    queue.flush()
    assert received(peer) == b"bye\n"
    reactor.advance(0)  # the end of the turn finds nothing more to send
    assert received(peer) == b""


def test_a_closed_peer_is_left_to_the_transport(pair):
    queue, transport, peer, reactor, _ = pair
    peer.close()
    queue.write(b"into the void\n")
    reactor.advance(0)  # the send fails; the transport is handed the bytes and its error
    assert transport in reactor.getWriters()
    assert transport.doWrite() is not None  # the reactor would close the connection now


def test_this_twisted_still_has_the_internals_the_direct_send_reads(pair):
    # If a Twisted release renames them, the queue silently falls back to
    # transport.write: correct but twice the CPU per delivery.  Fail loudly here.
    queue, transport, *_ = pair
    missing = [name for name in fastsend.INTERNALS if not hasattr(transport, name)]
    assert missing == [], f"Twisted no longer has {missing}: the direct send is off"
    assert fastsend.supports(transport)
    assert queue.flusher is not None


def test_the_direct_send_sees_through_the_admission_wrapper_but_not_tls(pair):
    # Every listener is wrapped by chatd.admission; the fast path must survive it.
    from twisted.internet.address import IPv4Address
    from twisted.protocols import policies

    from chatd.admission import Admission, AdmissionFactory, line_refusal

    queue, transport, peer, reactor, dropped = pair
    factory = AdmissionFactory(protocol.Factory.forProtocol(protocol.Protocol),
                               Admission(10, 10), line_refusal, reactor)
    wrapper = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 1))
    wrapper.makeConnection(transport)
    transport.unregisterProducer()  # the fixture's own queue steps aside
    through = OutputQueue(wrapper, 1 << 20, lambda: None, reactor, TurnFlusher(reactor))
    assert through.flusher is not None
    through.write(b"via the wrapper\n")
    reactor.advance(0)
    assert received(peer) == b"via the wrapper\n"
    # Any other wrapper (TLS is one) may change the bytes: never looked through.
    other = policies.ProtocolWrapper(policies.WrappingFactory(protocol.Factory()),
                                     protocol.Protocol())
    other.makeConnection(transport)
    assert fastsend.direct(other) is None
