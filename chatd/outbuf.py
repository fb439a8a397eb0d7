"""Bounded output for one connection, shared by every front end.

The queue registers itself as a streaming producer on the transport.  While
the transport's own buffer is under its high-water mark, writes go straight
through; once the transport pauses us, writes queue here, and past ``cap``
bytes the connection is dropped.  So a client that stops reading costs at most
the transport buffer plus ``cap`` bytes, and the fan-out loop never waits.

Given a clock (the reactor), going past ``cap`` is judged ``GRACE`` seconds
later rather than on the spot.  Twisted pauses a producer from inside
``transport.write`` as soon as 64 KiB are buffered in the current turn, before
it has tried the socket, and resumes it only once its buffer is empty; so a
burst (many senders' reads fanned out in one turn) can hold a client that reads
perfectly well past its cap for a few turns.  A client the transport has not
resumed by the end of the grace is not reading, and is dropped; past
``HARD_FACTOR`` times the cap it is dropped at once, so memory stays bounded.

On a plain TCP transport (not TLS) with a clock, a turn's writes are kept and
sent at the end of the turn with one ``send()``, straight to the socket when
the transport has nothing buffered.  ``transport.write`` would buffer them and
register the socket for writing (``epoll_ctl``), send on the next poll and
unregister it (``epoll_ctl`` again): at one message per turn that bookkeeping
was half of the server's CPU per delivery (docs/performance.rst).  Whatever
the socket does not take goes through ``transport.write`` as before, so order,
backpressure and the bounds are unchanged.
"""

from twisted.internet import tcp
from twisted.internet.interfaces import IPushProducer
from zope.interface import implementer

# Twisted pauses its producer once this many bytes wait in the transport (its
# default is 64 KiB).  Past it, a fan-out turn appends to our list, which costs a
# fraction of ``transport.write`` per call, and the transport gets one joined write
# when it has drained: 3x the deliveries/s into a 1,000-member room, a third of
# the latency (docs/performance.rst).  Twisted also reads this much per turn.
HIGH_WATER = 4096
GRACE = 2.0  # seconds a client may stay over its cap without reading
HARD_FACTOR = 16  # ... unless its queue grows past this many caps


class _TurnFlusher:
    """The queues of one clock written to in this reactor turn, sent when it ends."""

    __slots__ = ("clock", "queues", "call")

    def __init__(self, clock):
        self.clock = clock
        self.queues = []
        self.call = None

    def add(self, queue) -> None:
        self.queues.append(queue)
        if self.call is None:
            # callLater(0) runs before the reactor next polls: the end of this turn.
            self.call = self.clock.callLater(0, self.run)

    def run(self) -> None:
        self.call = None
        queues, self.queues = self.queues, []
        for queue in queues:
            queue.send_turn()


_flushers = {}  # clock -> _TurnFlusher


# send_turn reads these FileDescriptor/tcp.Connection internals to know the
# transport has nothing buffered.  If a Twisted release renames them, every
# write simply goes through transport.write again (slower, never wrong).
_TRANSPORT_INTERNALS = ("_tempDataLen", "dataBuffer", "_writeDisconnected", "TLS",
                        "connected", "disconnecting", "socket")


def _turn_flusher(clock, transport) -> _TurnFlusher | None:
    """The flusher for a plain TCP transport; None where writes must go through it."""
    if (clock is None or type(transport) is not tcp.Server
            or not all(hasattr(transport, name) for name in _TRANSPORT_INTERNALS)
            or transport.TLS):
        return None
    flusher = _flushers.get(clock)
    if flusher is None:
        flusher = _flushers[clock] = _TurnFlusher(clock)
    return flusher


@implementer(IPushProducer)
class OutputQueue:
    __slots__ = ("transport", "cap", "on_overflow", "clock", "paused", "pending",
                 "pending_bytes", "closed", "resumes", "verdict", "turn", "flusher",
                 "__weakref__")

    def __init__(self, transport, cap: int, on_overflow, clock=None):
        self.transport = transport
        self.cap = cap
        self.on_overflow = on_overflow
        self.clock = clock
        self.paused = False
        # A list, not a deque: an empty deque costs 760 bytes on every idle connection.
        self.pending = []
        self.pending_bytes = 0
        self.closed = False
        self.resumes = 0
        self.verdict = None  # the pending over-cap check, if any
        self.turn = None  # this turn's writes, or None (a list per idle connection costs)
        self.flusher = _turn_flusher(clock, transport)
        if hasattr(transport, "bufferSize"):
            transport.bufferSize = HIGH_WATER
        transport.registerProducer(self, True)

    def write(self, data: bytes) -> None:
        if self.paused or self.closed:
            if self.closed:
                return
            self.pending.append(data)
            self.pending_bytes += len(data)
            if self.pending_bytes > self.cap:
                if self.clock is None or self.pending_bytes > self.cap * HARD_FACTOR:
                    self._overflow()
                elif self.verdict is None:
                    self.verdict = self.clock.callLater(GRACE, self._judge, self.resumes)
        elif data:
            if self.flusher is None:
                self.transport.write(data)
            elif self.turn is None:
                self.turn = [data]
                self.flusher.add(self)
            else:
                self.turn.append(data)

    def send_turn(self) -> None:
        """Send this turn's writes: to the socket if the transport is idle, else through it."""
        turn = self.turn
        if turn is None:
            return
        self.turn = None
        if self.closed:
            return
        data = turn[0] if len(turn) == 1 else b"".join(turn)
        t = self.transport
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

    def _judge(self, resumes: int) -> None:
        self.verdict = None
        if self.closed or self.pending_bytes <= self.cap:
            return
        if self.resumes != resumes:
            # It has read since, but is over the cap again: give it another grace.
            self.verdict = self.clock.callLater(GRACE, self._judge, self.resumes)
        else:
            self._overflow()

    def _overflow(self) -> None:
        self.closed = True  # from now on writes are dropped
        self.turn = None
        self.pending.clear()
        self.pending_bytes = 0
        if self.clock is None:
            self.on_overflow()
        else:
            # This can happen inside a broadcast loop over the room this client is
            # in: drop it once the loop is done, so the loop needs no snapshot.
            self.clock.callLater(0, self.on_overflow)

    def flush(self) -> None:
        """Hand everything queued to the transport now, paused or not (before a close)."""
        if self.turn is not None:
            self.send_turn()  # older than anything pending: it was written while not paused
        if self.pending:
            data = b"".join(self.pending)
            self.pending.clear()
            self.pending_bytes = 0
            self.transport.write(data)

    # IPushProducer, called by the transport
    def pauseProducing(self) -> None:
        self.paused = True

    def resumeProducing(self) -> None:
        self.paused = False
        self.resumes += 1
        if self.pending and not self.closed:
            self.flush()

    def stopProducing(self) -> None:
        self.closed = True
        self.turn = None
        if self.verdict is not None:
            self.verdict.cancel()
            self.verdict = None
        self.pending.clear()
        self.pending_bytes = 0
