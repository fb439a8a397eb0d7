"""``haproxy:`` listeners: the client's address from a PROXY protocol v1 header.

A TCP proxy (nginx's ``stream`` module with ``proxy_protocol on``, HAProxy
with ``send-proxy``) connects to chatd from its own address; the first thing
it sends is one line naming the client it carries::

    PROXY TCP4 203.0.113.7 10.0.0.11 51234 9000\\r\\n

``haproxy:`` in front of any listener description (``haproxy:tcp:9000``,
``haproxy:tls:6697``, ``haproxy:systemd:domain=INET:index=0``) reads that
line first, and only then builds the listener's usual stack (admission, TLS
if any, the front end) with the client's address as the connection's peer,
so per-address limits, the sessions list and the logs see the client.  The
header comes before anything else on the wire, TLS included, hence
``haproxy:tls:``, never ``tls:haproxy:``.

Only a peer listed in ``--trusted-proxy`` may send a header: anyone else
could claim any address.  A connection from another peer, a malformed or
oversized header (v1 allows 107 bytes, CRLF included), or no complete header
within ``HEADER_TIMEOUT`` seconds is closed and logged; nothing the peer sent
is logged (a proxy that sends no header forwards the client's own first line,
which may hold a password).  ``PROXY UNKNOWN`` (a proxy that does not know
the client, e.g. a health check) keeps the proxy's own address, as the
specification says.  Version 2 (binary) headers are refused: nginx sends v1.

A connection waiting for its header is not yet counted by ``--max-connections``
(it has no client address to count): only trusted proxies get that far, and
for at most ``HEADER_TIMEOUT`` seconds.

Twisted has a ``haproxy:`` endpoint of its own, which trusts every peer;
``chatd.tls.listener`` strips our prefix before Twisted sees the description,
and ``split`` refuses descriptions that would still reach Twisted's.
"""

import ipaddress
import re
from dataclasses import dataclass

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from zope.interface import directlyProvides, providedBy

PREFIX = "haproxy:"
# The longest v1 header, CRLF included (the specification's worst case:
# "PROXY UNKNOWN" and two full IPv6 addresses and ports).
MAX_HEADER = 107
# Seconds a trusted proxy has to send its whole header after connecting.
# nginx sends it at once, with the connection; a slow one is not a proxy.
HEADER_TIMEOUT = 5.0
SIGNATURE = b"PROXY "
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
_PORT = re.compile(rb"0|[1-9][0-9]{0,4}")

log = Logger()


class HeaderError(ValueError):
    """Not a usable PROXY v1 header; the message says why (never quoting it)."""


@dataclass(frozen=True)
class Header:
    """One parsed header; ``source`` is None for ``PROXY UNKNOWN``."""

    family: str  # "TCP4", "TCP6" or "UNKNOWN"
    source: str | None = None
    destination: str | None = None
    source_port: int = 0
    destination_port: int = 0

    def peer(self):
        """The client as a Twisted address (None: keep the connection's own)."""
        return self._address(self.source, self.source_port)

    def host(self):
        """The address the client connected to, at the proxy."""
        return self._address(self.destination, self.destination_port)

    def _address(self, ip, port):
        if ip is None:
            return None
        kind = IPv4Address if self.family == "TCP4" else IPv6Address
        return kind("TCP", ip, port)


def _ip(raw: bytes, family: str, what: str) -> str:
    kind = ipaddress.IPv4Address if family == "TCP4" else ipaddress.IPv6Address
    try:
        text = raw.decode("ascii")
        if "%" in text:  # a scope id names an interface of the proxy's, not a client
            raise ValueError
        # Canonical text, so one client is one key however the proxy spells it.
        return str(kind(text))
    except ValueError:
        version = "IPv4" if family == "TCP4" else "IPv6"
        raise HeaderError(f"{what} address is not {version}") from None


def _port(raw: bytes, what: str) -> int:
    if not _PORT.fullmatch(raw) or int(raw) > 65535:
        raise HeaderError(f"{what} port is not 0-65535")
    return int(raw)


def parse(line: bytes) -> Header:
    """One header line without its CRLF."""
    parts = line.split(b" ")
    if parts[0] != b"PROXY" or len(parts) < 2:
        raise HeaderError("not a PROXY header")
    family = parts[1]
    if family == b"UNKNOWN":
        # The rest of the line, whatever it is, is to be ignored.
        return Header("UNKNOWN")
    if family not in (b"TCP4", b"TCP6"):
        raise HeaderError("protocol is not TCP4, TCP6 or UNKNOWN")
    if len(parts) != 6:
        raise HeaderError("not 4 single-space-separated addresses and ports")
    name = family.decode()
    return Header(name, _ip(parts[2], name, "source"), _ip(parts[3], name, "destination"),
                  _port(parts[4], "source"), _port(parts[5], "destination"))


def read_header(buffer: bytes) -> tuple[Header, bytes] | None:
    """The header at the start of ``buffer`` and the bytes after it; None while
    incomplete.  Raises HeaderError as soon as the bytes cannot become one."""
    if buffer.startswith(V2_SIGNATURE[:len(buffer)]):
        if len(buffer) >= len(V2_SIGNATURE):
            raise HeaderError("a PROXY protocol v2 header (only v1 is read)")
        return None
    known = min(len(buffer), len(SIGNATURE))
    if buffer[:known] != SIGNATURE[:known]:
        raise HeaderError("no PROXY header (does the proxy send one?)")
    end = buffer.find(b"\r\n", 0, MAX_HEADER)
    if end < 0:
        if len(buffer) >= MAX_HEADER:
            raise HeaderError(f"no CRLF within {MAX_HEADER} bytes")
        return None
    return parse(buffer[:end]), buffer[end + 2:]


def split(description: str) -> tuple[bool, str]:
    """``(proxied, description without our prefix)``; ValueError for a layering
    that would hand a ``haproxy:`` to Twisted's own, trust-everyone endpoint."""
    proxied = description.startswith(PREFIX)
    inner = description[len(PREFIX):] if proxied else description
    rest = inner[len("tls:"):] if inner.startswith("tls:") else inner
    if rest.startswith(PREFIX):
        raise ValueError(f"{description}: write haproxy: first and once (haproxy:tls:PORT): "
                         "the PROXY header comes before TLS")
    if proxied and rest.startswith("unix:"):
        raise ValueError(f"{description}: a UNIX socket peer has no address to trust; "
                         "haproxy: needs a TCP listener and --trusted-proxy")
    if proxied and inner[:1].isdigit():
        inner = "tcp:" + inner
    return proxied, inner


class ProxiedConnection(ProtocolWrapper):
    """Reads the header, then becomes a plain wrapper whose peer is the client.

    Until the header is read there is no wrapped protocol: the listener's own
    factory is asked for one only once the client's address is known.
    """

    _timer = None
    _client = None  # the header's source, once read (None for UNKNOWN)
    _local = None
    _closed = False  # refused, or lost: ignore whatever still arrives

    def __init__(self, factory):
        super().__init__(factory, None)
        self._buffer = b""

    def logPrefix(self):
        if self.wrappedProtocol is None:
            return type(self).__name__
        return super().logPrefix()

    # -- the wire, before the header ------------------------------------------------
    def makeConnection(self, transport):
        # As ProtocolWrapper does: offer whatever the real transport offers
        # (ITCPTransport: admission's refusal half-closes through us).
        directlyProvides(self, providedBy(transport))
        Protocol.makeConnection(self, transport)

    def connectionMade(self):
        host = getattr(self.transport.getPeer(), "host", None)
        if host not in self.factory.trusted:
            self._refuse("untrusted_proxy", "the peer is not a --trusted-proxy")
            return
        self._timer = self.factory.clock.callLater(self.factory.timeout, self._expired)

    def dataReceived(self, data):
        if self.wrappedProtocol is not None:
            self.wrappedProtocol.dataReceived(data)
            return
        if self._closed:
            return
        self._buffer += data
        try:
            found = read_header(self._buffer)
        except HeaderError as e:
            self._refuse("bad_proxy_header", str(e))
            return
        if found is not None:
            self._buffer = b""
            self._start(*found)

    def _expired(self):
        self._timer = None
        self._refuse("proxy_header_timeout",
                     f"no complete PROXY header within {self.factory.timeout:g} s")

    def _refuse(self, code: str, why: str):
        self._cancel_timer()
        self._closed = True
        self._buffer = b""
        peer = self.transport.getPeer()
        log.warn("closed a connection from {peer} on {listener}: {why}",
                 peer=getattr(peer, "host", str(peer)), listener=self.factory.logPrefix(),
                 why=why, code=code)
        self.transport.loseConnection()

    def _cancel_timer(self):
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    # -- after the header: the listener's own stack -----------------------------
    def _start(self, header: Header, rest: bytes):
        self._cancel_timer()
        self._client, self._local = header.peer(), header.host()
        inner = self.factory.wrappedFactory.buildProtocol(self.getPeer())
        if inner is None:
            self._closed = True
            self.transport.loseConnection()
            return
        self.wrappedProtocol = inner
        self.factory.registerProtocol(self)
        inner.makeConnection(self)
        # What the proxy sent right behind the header (a client's first line in
        # the same segment) belongs to the protocol.
        if rest and self.wrappedProtocol is not None:
            self.wrappedProtocol.dataReceived(rest)

    def getPeer(self):
        return self.transport.getPeer() if self._client is None else self._client

    def getHost(self):
        return self.transport.getHost() if self._local is None else self._local

    def connectionLost(self, reason):
        self._cancel_timer()
        self._closed = True
        inner, self.wrappedProtocol = self.wrappedProtocol, None
        if inner is not None:
            self.factory.unregisterProtocol(self)
            inner.connectionLost(reason)


class ProxyHeaderFactory(WrappingFactory):
    """Wraps a listener's outermost factory (admission's) with the header reader."""

    protocol = ProxiedConnection

    def __init__(self, wrapped, trusted, clock, timeout: float = HEADER_TIMEOUT):
        super().__init__(wrapped)
        self.trusted = frozenset(trusted)
        self.clock = clock
        self.timeout = timeout

    def logPrefix(self):
        # "LineFactory (PROXY) starting on 9000", as TLS says "LineFactory (TLS)":
        # which port wants a header is visible in the log.
        prefix = getattr(self.wrappedFactory, "logPrefix", None)
        name = prefix() if prefix is not None else self.wrappedFactory.__class__.__name__
        return f"{name} (PROXY)"

    def buildProtocol(self, addr):
        return self.protocol(self)
