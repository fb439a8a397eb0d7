"""Bounded output for one connection, shared by every front end.

The queue registers itself as a streaming producer on the transport.  While
the transport's own buffer is under its high-water mark, writes go straight
through; once the transport pauses us, writes queue here, and past ``cap``
bytes the connection is dropped.  So a client that stops reading costs at most
the transport buffer plus ``cap`` bytes, and the fan-out loop never waits.
"""

from collections import deque

from twisted.internet.interfaces import IPushProducer
from zope.interface import implementer


@implementer(IPushProducer)
class OutputQueue:
    __slots__ = ("transport", "cap", "on_overflow", "paused", "pending", "pending_bytes",
                 "closed", "__weakref__")

    def __init__(self, transport, cap: int, on_overflow):
        self.transport = transport
        self.cap = cap
        self.on_overflow = on_overflow
        self.paused = False
        self.pending = deque()
        self.pending_bytes = 0
        self.closed = False
        transport.registerProducer(self, True)

    def write(self, data: bytes) -> None:
        if self.paused or self.closed:
            if self.closed:
                return
            self.pending.append(data)
            self.pending_bytes += len(data)
            if self.pending_bytes > self.cap:
                self.closed = True
                self.pending.clear()
                self.pending_bytes = 0
                self.on_overflow()
        elif data:
            self.transport.write(data)

    def flush(self) -> None:
        """Hand everything queued to the transport now, paused or not (before a close)."""
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
        if self.pending and not self.closed:
            self.flush()

    def stopProducing(self) -> None:
        self.closed = True
        self.pending.clear()
        self.pending_bytes = 0
