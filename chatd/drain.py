"""Draining a node: take it out of a cluster without cutting everyone off at once.

``POST /api/drain {"over": SECONDS}`` on the admin API (chatd.adminapi) starts it:

1. the chat listeners close (line, WebSocket and HTTP), so the load balancer
   sends new connections to the other nodes and ``/readyz`` on the admin
   endpoint answers 503;
2. every connected client is told to reconnect (a ``bye`` whose reason says
   so), spread evenly over ``over`` seconds so the other nodes are not hit by
   every reconnect and login in the same instant;
3. once nobody is left (at the latest when ``over`` has passed) the daemon
   stops as on SIGTERM: the store finishes its writes and it exits 0.

Asking again while draining changes nothing and answers the same.
"""

from dataclasses import dataclass

from twisted.internet.defer import maybeDeferred
from twisted.internet.error import ReactorNotRunning
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from chatd.acks import AckData
from chatd.errors import ChatError

# What a drained client reads: its client reconnects, the balancer picks another node.
REASON = "this node is being taken out of service; reconnect to reach another"
# The longest spread accepted: an hour.
MAX_OVER = 3600.0
# How often "is everyone gone?" is asked.
CHECK_INTERVAL = 0.5


@dataclass(frozen=True, slots=True)
class DrainAck(AckData):
    draining: bool
    sessions: int  # clients still connected when asked
    over: float  # seconds the disconnections are spread over


class Drain:
    log = Logger()

    def __init__(self, chat, listeners, reactor):
        self.chat = chat
        self.listeners = listeners  # the chat listeners' MultiService (tap.AfterStore)
        self.reactor = reactor
        self.over = None  # set once draining
        self._calls = []
        self._check = LoopingCall(self._stop_when_empty)
        self._check.clock = reactor

    @property
    def draining(self) -> bool:
        return self.over is not None

    def start(self, over=0.0) -> DrainAck:
        if self.draining:
            return DrainAck(True, len(self.chat.sessions), self.over)
        if isinstance(over, bool) or not isinstance(over, (int, float)) or not (
                0 <= over <= MAX_OVER):
            raise ChatError("bad_request", f"over is a number of seconds from 0 to {MAX_OVER:g}")
        self.over = float(over)
        sessions = list(self.chat.sessions)
        self.log.info("draining: listeners closing, {count} clients told to reconnect "
                      "over {over} s", count=len(sessions), over=self.over)
        d = maybeDeferred(self.listeners.stopService)
        d.addErrback(lambda f: self.log.failure("draining: closing the listeners failed", f))
        n = len(sessions)
        for i, session in enumerate(sessions):
            self._calls.append(self.reactor.callLater(self.over * i / n, self._bye, session))
        self._calls.append(self.reactor.callLater(self.over, self._stop))
        self._check.start(CHECK_INTERVAL, now=False).addErrback(
            lambda f: self.log.failure("draining: the check loop stopped", f))
        return DrainAck(True, n, self.over)

    def _bye(self, session) -> None:
        self.chat.drop(session, REASON)  # nothing happens to one already gone

    def _stop_when_empty(self) -> None:
        if not self.chat.sessions:
            self._stop()

    def _stop(self) -> None:
        if self._check.running:
            self._check.stop()
        for call in self._calls:
            if call.active():
                call.cancel()
        self._calls = []
        self.log.info("drained: {count} clients left; stopping",
                      count=len(self.chat.sessions))
        try:
            self.reactor.stop()  # the rest as on SIGTERM (chatd.signals)
        except ReactorNotRunning:
            pass
