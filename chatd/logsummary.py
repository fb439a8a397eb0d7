"""Per-session log lines that turn into a count when they come by the thousand.

A connect or a login is worth a log line, but in a reconnect storm ten
thousand of them cost the reactor a tenth of its time.  ``Summarised`` logs
the first ``burst`` lines of each kind in an ``interval`` one by one, then
only counts, and logs the count when the interval ends::

    1,234 more "session connected" in the last 10 s, not logged one by one

so an operator still sees the storm and its size (the metrics count it too).
"""

from twisted.logger import Logger

INTERVAL = 10.0
BURST = 100


class Summarised:
    def __init__(self, log: Logger, clock, interval: float = INTERVAL, burst: int = BURST):
        self.log = log
        self.clock = clock
        self.interval = interval
        self.burst = burst
        self._logged = {}  # what -> lines logged one by one in this interval
        self._counted = {}  # what -> lines only counted in this interval
        self._end = None  # the DelayedCall that logs the counts, once there are any
        self._start = clock.seconds()

    def info(self, what: str, fmt: str, /, **fields) -> None:
        """Log ``fmt`` at info level, or count it under ``what`` in a storm."""
        now = self.clock.seconds()
        if self._end is None and now - self._start >= self.interval:
            self._start = now  # a new interval; nothing was counted in the last one
            self._logged.clear()
        logged = self._logged.get(what, 0)
        if logged < self.burst:
            self._logged[what] = logged + 1
            self.log.info(fmt, **fields)
            return
        self._counted[what] = self._counted.get(what, 0) + 1
        if self._end is None:  # only a storm leaves a timer behind
            self._end = self.clock.callLater(max(0.0, self._start + self.interval - now),
                                             self._summary)

    def _summary(self) -> None:
        self._end = None
        for what, count in self._counted.items():
            self.log.info('{count:,} more "{what}" in the last {interval:g} s, '
                          "not logged one by one", count=count, what=what,
                          interval=self.interval)
        self._logged.clear()
        self._counted.clear()
        self._start = self.clock.seconds()

    def stop(self) -> None:
        """Log what is counted so far (the service is stopping)."""
        if self._end is not None and self._end.active():
            self._end.cancel()
            self._summary()
