"""Newcomers wait their turn in a storm; people already chatting do not.

After a restart thousands of clients come back within seconds, each with a
login or resume and a join that sends scrollback.  Run as they arrive, that
work fills every reactor turn and the people already chatting wait seconds for
an answer.  The Pacer gives the newcomers a budget instead:

* A *newcomer* is a session in no room yet, in its first ``warmup`` seconds.
  Everyone else (in a room, or connected long ago) is never paced.
* While newcomer work in the current reactor turn stays under ``slice``
  seconds of CPU and nothing is queued, a newcomer's request runs at once:
  without a storm nobody waits.
* Past that budget, newcomers' costly requests (nick, login, resume,
  register, join, history: the dispatcher's ``PACED``) queue, and whatever
  the same session sends behind them, one line per session, taken
  round-robin (a session's own requests stay in order), and a time-sliced
  ``Cooperator`` runs them, at most ``slice`` seconds per reactor turn, so the
  reactor reads and answers established sessions between slices.
* At most ``max_inflight`` newcomer requests wait for the store at once:
  their answers (a join's scrollback above all) come back in the turn the
  store replies, so this bounds the work those replies bring into one turn.
* At most ``max_queued`` requests wait; past that a request is refused at once
  with ``busy`` (the client tries again shortly), never silently dropped.

The Pacer only schedules: what a request does, and its one answer, is the
dispatcher's business (it hands in a callable per request).
"""

import time
from collections import OrderedDict, deque

from twisted.internet.defer import Deferred
from twisted.internet.task import Cooperator
from twisted.logger import Logger
from twisted.python.failure import Failure

from chatd.metrics import NO_METRICS

WARMUP = 60.0  # seconds a session in no room counts as a newcomer
SLICE = 0.005  # seconds of newcomer work per reactor turn
MAX_QUEUED = 50_000  # requests waiting, all sessions together
MAX_INFLIGHT = 32  # newcomer requests waiting for the store


class Pacer:
    log = Logger()

    def __init__(self, clock, slice_s: float = SLICE, warmup: float = WARMUP,
                 max_queued: int = MAX_QUEUED, max_inflight: int = MAX_INFLIGHT,
                 timer=time.perf_counter, tick: float = 0.0, metrics=NO_METRICS):
        """``timer`` measures CPU work; ``tick`` is the wait between two slices
        (0: the next reactor turn; a test on a task.Clock gives each turn a time)."""
        self.clock = clock
        self.slice = slice_s
        self.warmup = warmup
        self.max_queued = max_queued
        self.max_inflight = max_inflight
        self.inflight = 0  # newcomer requests run and waiting for the store
        self._slot = None  # Deferred: the queue waits for a request to settle
        self.timer = timer
        self.tick = tick
        self.metrics = metrics
        metrics.watch_pacer(self)
        self.spent = 0.0  # newcomer work run at once in this reactor turn
        self.queued = 0
        self.high_water = 0
        self._lines = OrderedDict()  # session -> deque of callables, round-robin order
        self._reset = None
        self._task = None
        self._cooperator = Cooperator(terminationPredicateFactory=self._slice_timer,
                                      scheduler=lambda f: clock.callLater(tick, f),
                                      started=True)

    # -- deciding --------------------------------------------------------------
    def newcomer(self, session) -> bool:
        return (not session.rooms
                and self.clock.seconds() - session.connected_at < self.warmup)

    def holds(self, session) -> bool:
        """Has ``session`` requests waiting here (its next ones must queue too)?"""
        return session in self._lines

    def now_ok(self, session) -> bool:
        """May ``session``'s next request run at once?"""
        if session in self._lines:
            return False
        if not self.newcomer(session):
            return True
        return (not self._lines and self.spent < self.slice
                and self.inflight < self.max_inflight)

    def run(self, work) -> None:
        """Run a newcomer's ``work()`` at once, counting its time in this turn."""
        start = self.timer()
        try:
            self._track(work())
        finally:
            self.spent += self.timer() - start
            if self._reset is None:
                self._reset = self.clock.callLater(self.tick, self._new_turn)

    def _track(self, d) -> None:
        """``d``: None, or the Deferred of an answer waiting for the store."""
        if d is not None:
            self.inflight += 1
            d.addBoth(self._settled)

    def _settled(self, result):
        self.inflight -= 1
        if self._slot is not None and self.inflight < self.max_inflight:
            slot, self._slot = self._slot, None
            slot.callback(None)
        return result

    def _new_turn(self) -> None:
        self._reset = None
        self.spent = 0.0

    # -- queueing --------------------------------------------------------------
    def full(self) -> bool:
        return self.queued >= self.max_queued

    def add(self, session, work, front: bool = False) -> None:
        """Queue ``work`` (a callable) behind ``session``'s waiting requests.

        ``front``: ahead of them instead (requests that were already held back
        for this session elsewhere, and are older than what waits here).
        """
        line = self._lines.get(session)
        if line is None:
            line = self._lines[session] = deque()
        if front:
            line.appendleft(work)
        else:
            line.append(work)
        self.queued += 1
        if not front:
            self.metrics.paced()
        self.high_water = max(self.high_water, self.queued)
        if self._task is None:
            self._task = self._cooperator.cooperate(self._drain())
            self._task.whenDone().addBoth(self._drained)

    def _drain(self):
        lines = self._lines
        while lines:
            if self.inflight >= self.max_inflight:
                self._slot = Deferred()
                yield self._slot  # the task pauses until a request settles
                continue
            session, line = next(iter(lines.items()))
            work = line.popleft()
            self.queued -= 1
            if line:
                lines.move_to_end(session)  # round-robin: one request per session per go
            else:
                del lines[session]
            if session.attached:
                self._track(work())
            yield None

    def _drained(self, result):
        self._task = None
        if isinstance(result, Failure):  # a bug: the dispatcher answers its own errors
            self.log.failure("pacing newcomers' requests failed", result)
        if self._lines:  # added while the task was finishing
            self._task = self._cooperator.cooperate(self._drain())
            self._task.whenDone().addBoth(self._drained)
        return None

    def _slice_timer(self):
        deadline = self.timer() + self.slice
        return lambda: self.timer() >= deadline
