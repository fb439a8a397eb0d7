"""Connection admission: every listener counts from accept, one count for all.

Driven over StringTransports with the test's Clock; the line listener is the
real LineFactory, so a refused user sees exactly what the daemon sends.
"""

import pytest
from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import StringTransport

from chatd.admission import (
    REFUSAL_LINGER,
    Admission,
    AdmissionFactory,
    address_key,
    http_refusal,
    line_refusal,
)
from chatd.protocols.line import LineFactory


def addr(host):
    return (IPv6Address if ":" in host else IPv4Address)("TCP", host, 40000)


class Setup:
    """A line listener and a (stand-in) HTTP listener sharing one Admission."""

    def __init__(self, chat, exempt=(), ipv6_prefix=64):
        lim = chat.service.limits
        self.chat = chat
        self.admission = Admission(lim.max_connections, lim.max_per_ip, ipv6_prefix, exempt)
        self.line = AdmissionFactory(LineFactory(chat.service, chat.dispatcher),
                                     self.admission, line_refusal, chat.clock)
        self.http = AdmissionFactory(Factory.forProtocol(Protocol), self.admission,
                                     http_refusal, chat.clock)

    def connect(self, factory, host):
        proto = factory.buildProtocol(addr(host))
        transport = StringTransport(peerAddress=addr(host))
        proto.makeConnection(transport)
        return proto, transport


def test_http_connections_count_against_the_limits_a_line_user_meets(make_chat):
    s = Setup(make_chat(max_per_ip=3))
    held = [s.connect(s.http, "10.0.0.1") for _ in range(3)]  # never send a byte
    _, late = s.connect(s.line, "10.0.0.1")
    assert late.value() == b"! error too_many_from_ip: too many connections from your address\r\n"
    assert late.disconnecting
    assert s.admission.connections == 3
    # Closing one held connection frees its slot.
    proto, _ = held[0]
    proto.connectionLost(None)
    _, admitted = s.connect(s.line, "10.0.0.1")
    assert admitted.value().startswith(b"* Welcome")
    assert s.admission.connections == 3


def test_over_the_limit_http_gets_a_503_and_is_closed(make_chat):
    s = Setup(make_chat(max_per_ip=1))
    s.connect(s.line, "10.0.0.1")
    _, late = s.connect(s.http, "10.0.0.1")
    head, _, body = late.value().partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 503 ")
    assert b"Connection: close" in head
    assert body == b"too many connections from your address\n"
    assert late.disconnecting


def test_the_total_counts_every_listener(make_chat):
    s = Setup(make_chat(max_connections=2))
    s.connect(s.http, "10.0.0.1")
    s.connect(s.line, "10.0.0.2")
    _, late = s.connect(s.line, "10.0.0.3")
    assert late.value() == b"! error too_many_connections: the server is full; try again later\r\n"


def test_a_refused_peer_that_never_closes_is_cut_off(make_chat):
    s = Setup(make_chat(max_per_ip=1))
    s.connect(s.http, "10.0.0.1")
    refusal, late = s.connect(s.http, "10.0.0.1")
    late.disconnecting = False  # as if the write were still pending
    s.chat.clock.advance(REFUSAL_LINGER)
    assert late.disconnected  # StringTransport's mark of abortConnection


def test_a_closed_connection_is_no_longer_counted(make_chat):
    s = Setup(make_chat())
    proto, _ = s.connect(s.line, "10.0.0.1")
    assert (s.admission.connections, dict(s.admission.per_address)) == (1, {"10.0.0.1": 1})
    proto.connectionLost(None)
    assert (s.admission.connections, dict(s.admission.per_address)) == (0, {})


def test_ipv6_addresses_in_one_64_count_as_one_address(make_chat):
    s = Setup(make_chat(max_per_ip=2))
    s.connect(s.line, "2001:db8:1:2::1")
    s.connect(s.line, "2001:db8:1:2:ffff::9")
    _, late = s.connect(s.line, "2001:db8:1:2:abcd::77")
    assert late.value().startswith(b"! error too_many_from_ip")
    _, other = s.connect(s.line, "2001:db8:1:3::1")  # the next /64
    assert other.value().startswith(b"* Welcome")


def test_the_ipv6_prefix_is_an_option(make_chat):
    s = Setup(make_chat(max_per_ip=1), ipv6_prefix=128)
    s.connect(s.line, "2001:db8::1")
    _, other = s.connect(s.line, "2001:db8::2")
    assert other.value().startswith(b"* Welcome")


@pytest.mark.parametrize("host,prefix,key", [
    ("192.0.2.7", 64, "192.0.2.7"),
    ("2001:db8:aa:bb:1:2:3:4", 64, "2001:db8:aa:bb::/64"),
    ("2001:db8:aa:bb:1:2:3:4", 48, "2001:db8:aa::/48"),
    ("::ffff:192.0.2.7", 64, "192.0.2.7"),  # an IPv4 client on a dual-stack socket
    ("not-an-address", 64, "not-an-address"),
])
def test_address_groups(host, prefix, key):
    assert address_key(host, prefix) == key


def test_a_trusted_proxy_is_exempt_per_address_but_counts_in_total(make_chat):
    s = Setup(make_chat(max_per_ip=1, max_connections=3), exempt=["127.0.0.1"])
    for _ in range(3):
        _, t = s.connect(s.http, "127.0.0.1")
        assert not t.disconnecting
    _, late = s.connect(s.http, "127.0.0.1")
    assert b"the server is full" in late.value()


def test_a_unix_socket_peer_counts_in_total_only(make_chat):
    s = Setup(make_chat(max_per_ip=1))
    for _ in range(2):
        proto = s.line.buildProtocol(UNIXAddress(None))
        proto.makeConnection(StringTransport())
    assert (s.admission.connections, dict(s.admission.per_address)) == (2, {})


def test_the_listener_keeps_its_name_in_the_log(make_chat):
    # "LineFactory starting on 9000": operators and the integration tests read it.
    assert Setup(make_chat()).line.logPrefix() == "LineFactory"


@pytest.mark.parametrize("argv", [["--ipv6-prefix", "0"], ["--ipv6-prefix", "129"],
                                  ["--allowed-origin", "chat.example.org"],
                                  ["--request-timeout", "0"]])
def test_bad_hardening_options_are_usage_errors(argv):
    from twisted.python import usage

    from chatd.tap import Options
    with pytest.raises(usage.UsageError):
        Options().parseOptions(argv)


def test_hardening_option_defaults():
    from chatd.tap import Options
    options = Options()
    options.parseOptions([])
    assert (options["request-timeout"], options["ipv6-prefix"], options["allowed-origin"]) == (
        10.0, 64, [])


def test_new_connections_per_address_per_minute_survive_reconnects():
    from twisted.internet.task import Clock

    from chatd.admission import Admission
    from chatd.errors import ChatError
    from chatd.limits import Limits

    clock = Clock()
    admission = Admission.from_limits(Limits(connects_per_minute=3), clock=clock)
    for _ in range(3):
        admission.release(admission.admit("10.1.1.1"))  # connect, then leave at once
    with pytest.raises(ChatError) as refused:
        admission.admit("10.1.1.1")
    assert refused.value.code == "too_many_from_ip"
    admission.release(admission.admit("10.1.1.2"))  # others are not affected
    clock.advance(20)  # a third of a minute: one connection's worth back
    admission.release(admission.admit("10.1.1.1"))


def test_clients_behind_a_trusted_proxy_pay_the_connect_rate_too():
    # The proxy is exempt at accept; the client it names is counted when its
    # WebSocket opens (claim_address), connect rate included.
    from twisted.internet.task import Clock

    from chatd.admission import Admission
    from chatd.errors import ChatError
    from chatd.limits import Limits

    admission = Admission.from_limits(Limits(connects_per_minute=2), exempt=["10.0.0.1"],
                                      clock=Clock())
    for _ in range(5):
        admission.release(admission.admit("10.0.0.1"))  # the proxy itself: exempt
    for _ in range(2):
        admission.release_address(admission.claim_address("192.0.2.7"))
    with pytest.raises(ChatError) as refused:
        admission.claim_address("192.0.2.7")
    assert "new connections" in refused.value.message
