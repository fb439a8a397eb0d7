"""Bounded output for one connection, shared by every front end.

Every byte to a client goes through its queue: broadcasts, replies, pings,
and on WebSocket the control frames too.  The queue registers itself as a
streaming producer on the transport.  While the transport's own buffer is
under its high-water mark, writes go straight through; once the transport
pauses us, writes queue here, and past ``cap`` bytes the connection is
dropped.  So a client that stops reading costs at most the transport buffer
plus ``cap`` bytes, and the fan-out loop never waits.

Given a clock (the reactor), going past ``cap`` is judged ``GRACE`` seconds
later rather than on the spot.  Twisted pauses a producer from inside
``transport.write`` as soon as its buffer is over the high-water mark in the
current turn, before it has tried the socket, and resumes it only once its
buffer is empty; so a burst (many senders' reads fanned out in one turn) can
hold a client that reads perfectly well past its cap for a few turns.  A
client the transport has not resumed by the end of the grace is not reading,
and is dropped; past ``HARD_FACTOR`` times the cap it is dropped at once, so
memory stays bounded.  A turn's writes held for the end-of-turn send
(chatd.fastsend) count towards that bound too: many answers asked for in one
turn cannot grow past it either.

When the connection is gone, ``release`` frees what is queued at once and
lets go of the transport and the owner, so no buffer waits for the garbage
collector.
"""

from twisted.internet.interfaces import IPushProducer
from zope.interface import implementer

from chatd import fastsend

# Twisted pauses its producer once this many bytes wait in the transport (its
# default is 64 KiB).  Past it, a fan-out turn appends to our list, which costs a
# fraction of ``transport.write`` per call, and the transport gets one joined write
# when it has drained: 3x the deliveries/s into a 1,000-member room, a third of
# the latency (docs/performance.rst).  Twisted also reads this much per turn.
HIGH_WATER = 4096
GRACE = 2.0  # seconds a client may stay over its cap without reading
HARD_FACTOR = 16  # ... unless its queue grows past this many caps


@implementer(IPushProducer)
class OutputQueue:
    __slots__ = ("transport", "cap", "on_overflow", "clock", "paused", "pending",
                 "pending_bytes", "closed", "resumes", "verdict", "turn", "turn_bytes",
                 "flusher", "socket_transport", "__weakref__")

    def __init__(self, transport, cap: int, on_overflow, clock=None, flusher=None):
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
        # This turn's writes: None, one payload (bytes: most turns carry one
        # message, and a list per write would cost an allocation), or a list.
        self.turn = None
        self.turn_bytes = 0  # of them, what write_counted added (replies)
        # The plain TCP transport beneath (through chatd.admission's wrapper), for
        # the end-of-turn direct send and the high-water mark: set on a wrapper,
        # bufferSize would change nothing.
        self.socket_transport = fastsend.direct(transport)
        self.flusher = flusher if self.socket_transport is not None else None
        if self.socket_transport is not None:
            self.socket_transport.bufferSize = HIGH_WATER
        elif hasattr(transport, "bufferSize"):
            transport.bufferSize = HIGH_WATER
        transport.registerProducer(self, True)

    def write(self, data: bytes) -> None:
        if self.paused or self.closed:
            if self.closed:
                return
            self.pending.append(data)
            self.pending_bytes += len(data)
            if self.pending_bytes > self.cap:
                if (self.clock is None
                        or self.pending_bytes + self.turn_bytes > self.cap * HARD_FACTOR):
                    self._overflow()
                elif self.verdict is None:
                    self.verdict = self.clock.callLater(GRACE, self._judge, self.resumes)
        elif data:
            if self.flusher is None:
                self.transport.write(data)
            else:
                turn = self.turn
                if turn is None:
                    self.turn = data
                    self.flusher.add(self)
                elif type(turn) is list:
                    turn.append(data)
                else:
                    self.turn = [turn, data]

    def write_counted(self, data: bytes) -> None:
        """``write`` for a reply: also counted while it waits for the end of the turn.

        Broadcasts use ``write``, which keeps the fan-out loop to an append; a
        turn's broadcasts are bounded by what the server reads in a turn.  Replies
        are not (one read can hold thousands of requests), so they count towards
        the hard cap even before the transport has seen them.
        """
        self.write(data)
        if self.turn is not None:
            self.turn_bytes += len(data)
            if self.turn_bytes > self.cap * HARD_FACTOR:
                self._overflow()

    def send_turn(self) -> None:
        """Send this turn's writes (the flusher calls this at the end of the turn)."""
        turn = self.turn
        if turn is None:
            return
        self.turn = None
        self.turn_bytes = 0
        if self.closed:
            return
        fastsend.send(self.socket_transport, b"".join(turn) if type(turn) is list else turn)

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
        on_overflow = self.on_overflow
        self._discard()
        if on_overflow is None:
            return
        if self.clock is None:
            on_overflow()
        else:
            # This can happen inside a broadcast loop over the room this client is
            # in: the owner aborts the connection once the loop is done, so the
            # loop needs no snapshot.
            self.clock.callLater(0, on_overflow)

    def _discard(self) -> None:
        self.closed = True  # from now on writes are dropped
        self.on_overflow = None
        self.turn = None
        self.turn_bytes = 0
        if self.verdict is not None:
            self.verdict.cancel()
            self.verdict = None
        self.pending = []
        self.pending_bytes = 0

    def flush(self) -> None:
        """Hand everything queued to the transport now, paused or not (before a close)."""
        if self.turn is not None:
            self.send_turn()  # older than anything pending: it was written while not paused
        if self.pending and not self.closed:
            data = b"".join(self.pending)
            self.pending = []
            self.pending_bytes = 0
            self.transport.write(data)

    def seal(self) -> None:
        """Hand everything to the transport; later writes are dropped (before a close)."""
        self.flush()
        self.closed = True

    def release(self) -> None:
        """The connection is gone: free what is queued and let go of everything."""
        self._discard()
        self.transport = self.socket_transport = None

    # IPushProducer, called by the transport
    def pauseProducing(self) -> None:
        self.paused = True

    def resumeProducing(self) -> None:
        self.paused = False
        self.resumes += 1
        if self.pending and not self.closed:
            self.flush()

    def stopProducing(self) -> None:
        self._discard()
