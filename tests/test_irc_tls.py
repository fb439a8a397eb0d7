"""--irc tls:PORT goes through the shared TLS support, like the other listeners."""

import pytest
from twisted.application.internet import StreamServerEndpointService
from twisted.internet.address import IPv4Address
from twisted.internet.interfaces import ISSLTransport
from twisted.internet.testing import MemoryReactorClock, StringTransportWithDisconnection
from twisted.python import usage
from zope.interface import directlyProvides

from chatd.protocols.irc import IrcFactory
from chatd.tap import AfterStore, Options, makeService
from tests.integration.certs import CA


def parse(*argv):
    options = Options()
    options.parseOptions(list(argv))
    return options


def test_irc_tls_needs_a_certificate():
    with pytest.raises(usage.UsageError, match="needs --tls-cert and --tls-key"):
        parse("--irc", "tls:6697")


def test_irc_tls_listener_speaks_tls_with_the_shared_certificate(tmp_path):
    cert, key, _ = CA(tmp_path).issue("server")
    reactor = MemoryReactorClock()
    top = makeService(parse("--line", "none", "--ws", "none", "--irc", "tls:6697",
                            "--irc", "tcp:6667", "--tls-cert", str(cert),
                            "--tls-key", str(key)), reactor=reactor)
    [gate] = [s for s in top if isinstance(s, AfterStore)]
    listeners = [s for s in gate if isinstance(s, StreamServerEndpointService)]
    kinds = []
    for s in listeners:
        outer = s.factory.wrappedFactory  # inside the shared admission
        kinds.append((endpoint_port(s), type(outer).__name__,
                      type(getattr(outer, "wrappedFactory", outer)).__name__))
    assert kinds == [(6697, "TLSMemoryBIOFactory", "IrcFactory"),
                     (6667, "IrcFactory", "IrcFactory")]


def endpoint_port(svc):
    return getattr(svc.endpoint, "_port", None) or svc.endpoint._wrappedEndpoint._port


def tls_irc_client(chat):
    """An IRC connection on a transport that says it is TLS (its handshake pending)."""
    proto = IrcFactory(chat.service, chat.dispatcher).buildProtocol(None)
    transport = StringTransportWithDisconnection(peerAddress=IPv4Address("TCP", "10.0.0.9", 6697))
    directlyProvides(transport, ISSLTransport)
    transport.protocol = proto
    proto.makeConnection(transport)
    return proto, transport


def test_irc_tls_peer_that_never_completes_its_handshake_is_cut_off(chat):
    proto, transport = tls_irc_client(chat)
    assert len(chat.service.sessions) == 1
    chat.clock.advance(chat.service.limits.request_timeout - 0.5)
    assert transport.connected
    chat.clock.advance(1)
    assert transport.disconnected  # aborted: the slot is not held for ever
    assert len(chat.service.sessions) == 0


def test_irc_tls_peer_that_completes_its_handshake_stays(chat):
    proto, transport = tls_irc_client(chat)
    proto.handshakeCompleted()
    chat.clock.advance(chat.service.limits.request_timeout + 1)
    assert transport.connected and not transport.disconnected
