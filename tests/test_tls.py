"""chatd.tls: the reloadable server certificate and the TLS options (no sockets)."""

import pytest
from OpenSSL import SSL
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import LogLevel, capturedLogs
from twisted.python import usage

from chatd.tap import Options, makeService
from chatd.tls import CertificateError, ReloadableTLS, load_options
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


def test_tls_listeners_wrap_the_front_ends(ca):
    cert, key, _ = ca.issue("server")
    config = parse("--line", "tls:9443:interface=127.0.0.1", "--ws", "tls:8443",
                   "--line", "tcp:9000", "--tls-cert", str(cert), "--tls-key", str(key))
    reactor = MemoryReactorClock()
    top = makeService(config, reactor=reactor)
    top.privilegedStartService()
    top.startService()
    try:
        listening = {(port, iface, factory.logPrefix())
                     for port, factory, _, iface in reactor.tcpServers}
        assert listening == {(9443, "127.0.0.1", "LineFactory (TLS)"),
                             (8443, "", "Site (TLS)"), (9000, "", "LineFactory")}
    finally:
        top.stopService()
