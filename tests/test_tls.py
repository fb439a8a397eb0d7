"""chatd.tls: the reloadable server certificate and the TLS options (no sockets)."""

import pytest
from OpenSSL import SSL
from twisted.internet.address import IPv4Address
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import MemoryReactor, StringTransport
from twisted.logger import LogLevel, capturedLogs
from twisted.python import usage

from chatd.tap import Options
from chatd.tls import DEFAULT_BACKLOG, CertificateError, ReloadableTLS, listener, load_options
from tests.integration.certs import CA


@pytest.fixture
def ca(tmp_path):
    return CA(tmp_path)


def test_refuses_protocols_older_than_tls_1_2(ca):
    cert, key, _ = ca.issue("server")
    options, _ = load_options(str(cert), str(key))
    # set_options ORs in nothing and returns the context's option mask.
    mask = options.getContext().set_options(0)
    assert mask & SSL.OP_NO_SSLv3 and mask & SSL.OP_NO_TLSv1 and mask & SSL.OP_NO_TLSv1_1
    assert not mask & SSL.OP_NO_TLSv1_2


def test_fullchain_serves_the_leaf_and_its_chain(ca):
    cert, key, serial = ca.issue("server")
    _, leaf = load_options(str(cert), str(key))
    assert leaf.serial_number == serial


def test_a_key_that_does_not_match_is_refused(ca):
    cert, _, _ = ca.issue("one")
    _, other_key, _ = ca.issue("two")
    with pytest.raises(CertificateError, match="does not match"):
        load_options(str(cert), str(other_key))


def test_reload_swaps_in_a_renewed_certificate(ca):
    cert, key, first = ca.issue("server")
    tls = ReloadableTLS(str(cert), str(key))
    _, _, renewed = ca.issue("server")
    with capturedLogs() as events:
        assert tls.reload()
    assert tls.certificate.serial_number == renewed != first
    assert events[-1]["serial"] == format(renewed, "x")


def test_a_bad_renewal_keeps_the_old_certificate_and_logs_why(ca):
    cert, key, first = ca.issue("server")
    tls = ReloadableTLS(str(cert), str(key))
    context = tls.serverConnectionForTLS(None).get_context()
    cert.write_text("-----BEGIN CERTIFICATE-----\ngarbage\n")
    with capturedLogs() as events:
        assert not tls.reload()
    assert tls.certificate.serial_number == first
    assert tls.serverConnectionForTLS(None).get_context() is context
    assert [e["log_level"] for e in events] == [LogLevel.error]
    assert "still serving" in events[0]["log_format"]


def parse(*argv):
    config = Options()
    config.parseOptions(list(argv))
    return config


def test_tls_endpoints_need_a_certificate_and_key(ca):
    cert, key, _ = ca.issue("server")
    with pytest.raises(usage.UsageError, match="needs --tls-cert and --tls-key"):
        parse("--line", "tls:9443")
    with pytest.raises(usage.UsageError, match="go together"):
        parse("--tls-cert", str(cert))
    with pytest.raises(usage.UsageError, match="cannot read"):
        parse("--line", "tls:9443", "--tls-cert", str(cert), "--tls-key", str(cert) + ".nope")


def tls_context(factory):
    """The TLS context a new connection to this factory would use, if any."""
    proto = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 5555))
    proto.makeConnection(StringTransport())
    get_handle = getattr(proto, "getHandle", None)
    return get_handle().get_context() if get_handle else None


def test_tls_listeners_wrap_the_front_ends(ca):
    cert, key, _ = ca.issue("server")
    tls = ReloadableTLS(str(cert), str(key))
    reactor = MemoryReactor()
    factory = Factory.forProtocol(Protocol)
    services = [listener("tls:9443:interface=127.0.0.1", factory, reactor, tls),
                listener("tls:tcp:8443", factory, reactor, tls),
                listener("tcp:9000", factory, reactor, tls)]
    for s in services:
        s.privilegedStartService()
    try:
        served = [(port, iface, tls_context(f)) for port, f, _, iface in reactor.tcpServers]
        ours = tls.serverConnectionForTLS(None).get_context()
        assert served == [(9443, "127.0.0.1", ours), (8443, "", ours), (9000, "", None)]
    finally:
        for s in services:
            s.stopService()
    with pytest.raises(ValueError, match="needs --tls-cert"):
        listener("tls:9443", factory, reactor, None)


def test_listeners_hold_a_storm_of_connections_unless_told_otherwise(ca):
    # Twisted's default listen backlog (50) drops connections in a reconnect storm.
    cert, key, _ = ca.issue("server")
    tls = ReloadableTLS(str(cert), str(key))
    reactor = MemoryReactor()
    factory = Factory.forProtocol(Protocol)
    services = [listener("tcp:9000", factory, reactor, tls),
                listener("tls:9443:interface=127.0.0.1", factory, reactor, tls),
                listener("tcp:9001:backlog=100", factory, reactor, tls)]
    for s in services:
        s.privilegedStartService()
    try:
        assert [(port, backlog) for port, _, backlog, _ in reactor.tcpServers] == [
            (9000, DEFAULT_BACKLOG), (9443, DEFAULT_BACKLOG), (9001, 100)]
    finally:
        for s in services:
            s.stopService()
