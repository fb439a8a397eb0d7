"""The cycle collector's settings for a daemon that fills up fast.

CPython runs a full (generation 2) collection once generation 1 has been
collected ``threshold2`` times (10 by default: about every 70,000 allocations)
and the objects promoted to the oldest generation since the last full one
exceed a quarter of it.  A daemon filling up with sessions (10,000 clients
coming back within seconds after a restart) meets that second condition all
the time, so it ran a full collection every second or so, each a pause of the
whole reactor that grows with everything alive: 15 pauses of 30-210 ms during
one reconnect storm, which were the lag p99 of the people already chatting
(docs/performance.rst).

chatd breaks its own reference cycles when a client leaves (``release``), so it
leaves little for the cycle collector; young cycles are still caught by the
cheap generation 0 and 1 collections, which stay as they are.  What changes:

* a full collection is considered every ``FULL_EVERY`` generation-1
  collections instead of every 10 (about every 7 million allocations), still
  only when the old generation has grown by a quarter;
* once every listener is open, ``gc.freeze()`` moves what start-up made
  (modules, classes, settings, the rooms loaded from the store) to the
  permanent generation, which no full collection scans again.

Measured in one reconnect storm each: ping p99 220 -> 24 ms, server CPU 10.4 ->
7.3 s, one full collection instead of fifteen.
"""

import gc

from twisted.application.service import Service
from twisted.logger import Logger

FULL_EVERY = 1000


class CollectorTuning(Service):
    """Applies the settings above when started: the daemon's last start-up step.

    Stopping changes nothing back: a draining daemon (chatd.drain stops the
    listeners) keeps serving its clients with the same settings."""

    log = Logger()

    def startService(self):
        super().startService()
        young, middle, _ = gc.get_threshold()
        gc.set_threshold(young, middle, FULL_EVERY)
        gc.freeze()
        self.log.debug("cycle collector: thresholds {thresholds}, {frozen} start-up objects "
                       "frozen", thresholds=gc.get_threshold(), frozen=gc.get_freeze_count())
