"""The end-of-turn direct send: the one place chatd reads Twisted's private state.

On a plain TCP transport (not TLS), a turn's writes to one connection are kept
and sent at the end of the turn with one ``send()``, straight to the socket
when the transport has nothing buffered.  ``transport.write`` would buffer them
and register the socket for writing (``epoll_ctl``), send on the next poll and
unregister it (``epoll_ctl`` again): at one message per turn that bookkeeping
was half of the server's CPU per delivery (docs/performance.rst).  Whatever the
socket does not take goes through ``transport.write``, so order, backpressure
and the bounds are unchanged.

It reads these ``twisted.internet.tcp.Connection``/``FileDescriptor``
internals, listed in ``INTERNALS``: ``_tempDataLen``, ``dataBuffer`` (nothing
buffered), ``_writeDisconnected``, ``TLS``, ``connected``, ``disconnecting``
(still open for writing) and ``socket``.  If a Twisted release renames them,
``supports`` says no and every write goes through ``transport.write`` again
(slower, never wrong); tests/integration/test_outbuf_socket.py fails loudly.
"""

from twisted.internet import tcp

from chatd.admission import Admitted
from chatd.proxyproto import ProxiedConnection

_PASS_THROUGH = (Admitted, ProxiedConnection)
INTERNALS = ("_tempDataLen", "dataBuffer", "_writeDisconnected", "TLS", "connected",
             "disconnecting", "socket")


# Accepted connections, and the ones chatd makes itself (to Redis, chatd.redislink).
_CONNECTIONS = (tcp.Server, tcp.Client)


def direct(transport):
    """The TCP connection that writes to ``transport`` may go straight to, or None.

    chatd's admission wrapper (``chatd.admission.Admitted``) only counts the
    connection, and a ``haproxy:`` listener's (``chatd.proxyproto``) only reads
    the header before it: both pass writes through, so they are looked
    through; any other wrapper (TLS above all) is not.
    """
    while type(transport) in _PASS_THROUGH:
        transport = transport.transport
    if (type(transport) in _CONNECTIONS
            and all(hasattr(transport, name) for name in INTERNALS)
            and not transport.TLS):
        return transport
    return None


def supports(transport) -> bool:
    """Whether writes to ``transport`` may take the direct path."""
    return direct(transport) is not None


def send(transport, data: bytes) -> None:
    """Send ``data`` now if the transport is idle, else hand it to the transport."""
    t = transport
    if (t._tempDataLen or t.dataBuffer or t.TLS or not t.connected or t.disconnecting
            or t._writeDisconnected):
        t.write(data)
        return
    try:
        sent = t.socket.send(data)
    except (BlockingIOError, InterruptedError):
        sent = 0
    except OSError:
        t.write(data)  # the transport meets the error on its next write and closes
        return
    if sent < len(data):
        t.write(data[sent:])


class TurnFlusher:
    """The output queues written to since the last send, sent together.

    One per reactor, made by whoever builds the front ends (chatd.tap) and
    shared by them; without one, queues write through their transports.

    With ``window`` 0 (the default) the writes of a turn go out when the turn
    ends.  With a window of W seconds (``--send-window``) a send that comes
    more than W after the previous one still goes out at the end of its turn
    (a quiet room pays no delay), but one that comes sooner waits until W has
    passed since the previous send, and everything written meanwhile goes out
    with it.  At 1,000 messages/s into one room, each member then gets one
    ``send()`` for every W x 1,000 messages instead of one per message; the
    kernel's share of a delivery is most of its cost (docs/performance.rst),
    and every message waits at most W longer.  Memory stays bounded: replies
    held for the send count against the queue's cap (chatd.outbuf), and the
    broadcasts are what the server reads within W, which ``--send-window``'s
    ceiling (20 ms, chatd.tap) keeps of the order of one long turn.
    """

    __slots__ = ("clock", "queues", "call", "window", "last")

    def __init__(self, clock, window: float = 0.0):
        if window < 0:
            raise ValueError(f"window must be 0 or more, not {window!r}")
        self.clock = clock
        self.queues = []
        self.call = None
        self.window = window
        self.last = None  # clock time of the last send, with a window

    def add(self, queue) -> None:
        self.queues.append(queue)
        if self.call is None:
            delay = 0
            if self.window:
                last = self.last
                if last is not None:
                    delay = last + self.window - self.clock.seconds()
                    if delay < 0:
                        delay = 0
            # callLater(0) runs before the reactor next polls: the end of this turn.
            self.call = self.clock.callLater(delay, self.run)

    def run(self) -> None:
        self.call = None
        if self.window:
            self.last = self.clock.seconds()
        queues, self.queues = self.queues, []
        for queue in queues:
            queue.send_turn()
