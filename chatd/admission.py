"""Connection admission: every connection counts from accept until it closes.

One :class:`Admission` is shared by every listener (line, HTTP/WebSocket, plain
or TLS), so ``--max-connections`` and ``--max-per-ip`` bound what a peer can
hold whatever it speaks, including connections that never finish an HTTP
request or never pick a nick.  :class:`AdmissionFactory` wraps a listener's
factory: a connection over a limit is told why in its listener's own terms
(a ``! error`` line, an HTTP 503) and closed without reaching the protocol.

Addresses are grouped before counting: IPv4 exactly, IPv6 by its network
prefix (``--ipv6-prefix``, /64 by default), because one subscriber usually
holds a whole /64 and could otherwise open ``max_per_ip`` connections from
each of 2**64 addresses.

Trusted proxies (``--trusted-proxy``) are exempt from the per-address limit at
accept: every user behind them shares their address.  The person a proxy names
in ``X-Forwarded-For`` is counted instead when the WebSocket opens
(``ChatWebSocketProtocol``).  The total limit still counts every connection.
"""

from collections import Counter

from twisted.internet.interfaces import ISSLTransport, ITCPTransport
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory

from chatd import wire
from chatd.errors import ChatError
from chatd.events import Error
from chatd.metrics import NO_METRICS
from chatd.throttle import LeakyCounts, address_key

# How long a refused connection may take to read its refusal before it is cut.
REFUSAL_LINGER = 2.0

log = Logger()


def too_many_connections() -> ChatError:
    return ChatError("too_many_connections", "the server is full; try again later")


def too_many_connects() -> ChatError:
    return ChatError("too_many_from_ip", "too many new connections from your address; "
                     "wait a minute")


def too_many_from_ip() -> ChatError:
    return ChatError("too_many_from_ip", "too many connections from your address")


class Admission:
    """Counts open connections in total and per address group."""

    metrics = NO_METRICS  # tap.py sets the daemon's chatd.metrics.Metrics

    def __init__(self, max_connections: int, max_per_ip: int, ipv6_prefix: int = 64,
                 exempt=(), rate: LeakyCounts | None = None):
        self.max_connections = max_connections
        self.max_per_ip = max_per_ip
        self.ipv6_prefix = ipv6_prefix
        self.exempt = frozenset(exempt)  # peers not counted per address (trusted proxies)
        self.connections = 0
        self.per_address = Counter()
        # New connections per address per minute: reconnecting in a loop (to reset
        # a session's flood bucket, say) costs the address, not a fresh start.
        self.rate = rate

    @classmethod
    def from_limits(cls, limits, exempt=(), clock=None) -> "Admission":
        rate = None
        if clock is not None:
            rate = LeakyCounts(clock, limits.connects_per_minute, 60.0, limits.throttle_entries)
        return cls(limits.max_connections, limits.max_per_ip, limits.ipv6_prefix, exempt, rate)

    def reconfigure(self, limits) -> None:
        """New limits from a reload: connections already open stay, even over them.

        (``--ipv6-prefix`` is not changed live: the open connections are
        counted by their old groups.)
        """
        self.max_connections = limits.max_connections
        self.max_per_ip = limits.max_per_ip
        if self.rate is not None:
            self.rate.retune(limits.connects_per_minute, 60.0, limits.throttle_entries)

    def key(self, host: str) -> str:
        return address_key(host, self.ipv6_prefix)

    def admit(self, host: str | None) -> str | None:
        """Count a new connection or raise ChatError; the key to release it with.

        ``host`` is None for a peer without an IP address (a UNIX socket): it
        counts in the total only.
        """
        if self.connections >= self.max_connections:
            log.warn("refused {host}: connection limit {limit}", host=host,
                     limit=self.max_connections, peer=host, code="too_many_connections")
            raise too_many_connections()
        key = None
        if host is not None and host not in self.exempt:
            key = self.claim_address(host)
        self.connections += 1
        return key

    def release(self, key: str | None) -> None:
        self.connections -= 1
        if key is not None:
            self.release_address(key)

    def claim_address(self, host: str) -> str:
        """Count one more connection from ``host``'s group, against the connect rate and
        the per-address limit, or raise ChatError.  Both paths come here: accept, and
        a client a trusted proxy names when its WebSocket opens."""
        key = self.key(host)
        if self.rate is not None:
            if self.rate.full(key):
                log.warn("refused {host}: more than {limit} new connections a minute "
                         "from {group}", host=host, limit=self.rate.limit, group=key,
                         peer=host, code="too_many_from_ip")
                raise too_many_connects()
            self.rate.charge(key)
        if self.per_address[key] >= self.max_per_ip:
            log.warn("refused {host}: per-address limit {limit} for {group}", host=host,
                     limit=self.max_per_ip, group=key, peer=host, code="too_many_from_ip")
            raise too_many_from_ip()
        self.per_address[key] += 1
        return key

    def release_address(self, key: str) -> None:
        self.per_address[key] -= 1
        if self.per_address[key] <= 0:
            del self.per_address[key]


# -- refusals, in each listener's terms ----------------------------------------------
def line_refusal(error: ChatError) -> bytes:
    """The same ``! error code: message`` line the line protocol uses everywhere."""
    return wire.TEXT(Error(error.code, error.message))


def http_refusal(error: ChatError) -> bytes:
    body = f"{error.message}\n".encode()
    return (b"HTTP/1.1 503 Service Unavailable\r\n"
            b"Content-Type: text/plain; charset=utf-8\r\n"
            b"Content-Length: " + str(len(body)).encode() + b"\r\n"
            b"Retry-After: 10\r\n"
            b"Connection: close\r\n\r\n" + body)


class Refusal(Protocol):
    """Say why, then go: whatever the peer sends is discarded.

    Over plain TCP the write side is shut first and the socket closed once the
    peer closes too, so a request already on its way does not turn the close
    into a reset that could destroy the refusal before the peer reads it (the
    peer's own close then ends the connection).  A peer that does not close
    within REFUSAL_LINGER is cut off.
    """

    def __init__(self, message: bytes, clock):
        self.message = message
        self.clock = clock
        self._linger = None

    def connectionMade(self):
        self.transport.write(self.message)
        self._linger = self.clock.callLater(REFUSAL_LINGER, self.transport.abortConnection)
        if ITCPTransport.providedBy(self.transport) and not ISSLTransport.providedBy(
                self.transport):
            self.transport.loseWriteConnection()
        else:
            self.transport.loseConnection()

    def dataReceived(self, data):
        pass

    def connectionLost(self, reason):
        if self._linger is not None and self._linger.active():
            self._linger.cancel()


class Admitted(ProtocolWrapper):
    """A counted connection; released exactly once, when it closes."""

    key = None
    counted = False

    def connectionLost(self, reason):
        try:
            super().connectionLost(reason)
        finally:
            if self.counted:
                self.counted = False
                self.factory.admission.release(self.key)
                self.factory.admission.metrics.connection_closed(self.factory.front_end)


class AdmissionFactory(WrappingFactory):
    """Wraps a listener's factory so each accepted connection is counted or refused."""

    protocol = Admitted

    def __init__(self, wrapped, admission: Admission, refusal, clock,
                 front_end: str | None = None):
        super().__init__(wrapped)
        self.front_end = front_end  # the metrics label: "line" or "websocket"
        self.admission = admission
        self.refusal = refusal
        self.clock = clock

    def logPrefix(self):
        # "LineFactory starting on 9000", as without the wrapper: operators and
        # tests read the listener's name from that line.
        prefix = getattr(self.wrappedFactory, "logPrefix", None)
        return prefix() if prefix is not None else self.wrappedFactory.__class__.__name__

    def buildProtocol(self, addr):
        host = getattr(addr, "host", None)
        try:
            key = self.admission.admit(host)
        except ChatError as e:
            refusal = Refusal(self.refusal(e), self.clock)
            inner = self.wrappedFactory
            if isinstance(inner, WrappingFactory):
                # TLS: refuse inside it, where the client can read why.
                return inner.protocol(inner, refusal)
            return refusal
        try:
            wrapper = super().buildProtocol(addr)
        except BaseException:
            self.admission.release(key)
            raise
        if wrapper is None:
            self.admission.release(key)
            return None
        wrapper.key = key
        wrapper.counted = True
        self.admission.metrics.connection_opened(self.front_end)
        return wrapper
