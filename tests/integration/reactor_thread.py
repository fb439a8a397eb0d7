"""Run Twisted's reactor in a background thread so blocking tests can drive
``chatd.client`` against a real daemon.

``call(f, *args)`` runs ``f`` in the reactor thread and waits (with a
deadline) for its result, Deferred or not.  The reactor starts on first use;
``release()`` (a module-scoped fixture in each module that uses it) tidies it
and hands it back, because trial-style tests elsewhere in the run spin the
same global reactor in the main thread.
"""

import threading
import time

from twisted.internet import defer, reactor
from twisted.internet.error import ConnectionDone
from twisted.internet.threads import blockingCallFromThread
from twisted.python.failure import Failure

_lock = threading.Lock()
_thread = None
DEFAULT_TIMEOUT = 10.0


def _ensure_running():
    global _thread
    with _lock:
        if _thread is None and not reactor.running:
            _thread = threading.Thread(target=reactor.run,
                                       kwargs={"installSignalHandlers": False},
                                       name="twisted-reactor", daemon=True)
            _thread.start()


def release():
    """Stop the reactor thread, leaving nothing behind: no timers, no sockets.

    ``crash`` (not ``stop``) so the reactor can run again, which is what
    trial does between its tests too.
    """
    global _thread
    with _lock:
        if _thread is None:
            return

        def tidy():
            for delayed in reactor.getDelayedCalls():
                delayed.cancel()
            for selectable in reactor.removeAll():
                selectable.connectionLost(Failure(ConnectionDone("test module finished")))
            reactor.crash()
        reactor.callFromThread(tidy)
        _thread.join(DEFAULT_TIMEOUT)
        assert not _thread.is_alive(), "the reactor thread did not stop"
        _thread = None


def call(f, *args, timeout: float = DEFAULT_TIMEOUT, **kw):
    """``f(*args, **kw)`` in the reactor thread; its result, or its exception raised."""
    _ensure_running()

    def run():
        d = defer.maybeDeferred(f, *args, **kw)
        return d.addTimeout(timeout, reactor)
    return blockingCallFromThread(reactor, run)


class Recorder:
    """Collects a client's events (appended in the reactor thread, read in the test's)."""

    def __init__(self, client, *types):
        self.events = []
        self.lock = threading.Lock()
        client.on_event(self._add, *types)

    def _add(self, event):
        with self.lock:
            self.events.append(event)

    def snapshot(self) -> list:
        with self.lock:
            return list(self.events)

    def wait(self, match, what: str, timeout: float = DEFAULT_TIMEOUT) -> list:
        """Poll until ``match(events)`` is true; the events so far."""
        deadline = time.monotonic() + timeout
        while True:
            events = self.snapshot()
            if match(events):
                return events
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}; events: {events!r}")
            time.sleep(0.02)
