"""Tell systemd how the daemon is doing (sd_notify(3)): ready, reloading, stopping, alive.

With ``Type=notify`` systemd counts the service as started only when it
receives ``READY=1``, so units ordered after chatd (and ``systemctl start``
itself) wait until the store is open and every listener is up, not merely
until the process exists.  The protocol is one datagram of ``KEY=VALUE``
lines to the unix socket named by ``NOTIFY_SOCKET`` (a leading ``@`` means
the abstract namespace); when it is unset (not under systemd, or another
``Type=``), every call here does nothing.

A few lines over the socket instead of a dependency: the protocol is stable,
and this way a full socket buffer can never block the reactor (the send is
non-blocking and a lost notification is logged, not waited for).
"""

import os
import socket
import time

from twisted.application import service
from twisted.internet import defer
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

log = Logger()


def notify(*states: str, environ=None) -> bool:
    """Send ``states`` (e.g. ``"READY=1"``) to systemd; False if not under systemd."""
    environ = os.environ if environ is None else environ
    address = environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    message = "\n".join(states).encode()
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.setblocking(False)
            sock.sendto(message, address)
    except OSError as e:
        log.warn("cannot notify systemd ({states}): {error}", states=" ".join(states),
                 error=str(e))
        return False
    return True


def ready(environ=None) -> bool:
    return notify("READY=1", "STATUS=serving", environ=environ)


def reloading(work, environ=None):
    """Run ``work()`` (which may return a Deferred) between RELOADING=1 and READY=1.

    systemd shows the unit as "reloading" meanwhile.  MONOTONIC_USEC is what
    systemd 253 and later want with RELOADING=1 to match it to the reload
    request.  READY=1 follows even if the reload fails: the daemon still
    serves with its previous settings.
    """
    usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    notify("RELOADING=1", f"MONOTONIC_USEC={usec}", "STATUS=reloading", environ=environ)
    d = defer.maybeDeferred(work)
    d.addErrback(lambda f: log.failure("reload failed", f))
    d.addBoth(lambda _: ready(environ))
    return d


def watchdog_interval(environ=None) -> float | None:
    """Seconds between WATCHDOG=1 pings (half of WatchdogSec), or None when not asked."""
    environ = os.environ if environ is None else environ
    usec = environ.get("WATCHDOG_USEC")
    pid = environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        return int(usec) / 2e6
    except ValueError:
        return None


class SystemdNotifier(service.Service):
    """STOPPING=1 when the daemon begins to stop; WATCHDOG=1 while the reactor turns.

    Added to the service tree last so that it is the first to stop: systemd
    learns of the shutdown before the listeners close.  The watchdog pings
    from the reactor itself, so a reactor stuck for WatchdogSec gets the
    daemon restarted.
    """

    def __init__(self, clock, environ=None):
        self.clock = clock
        self.environ = environ
        self._watchdog = None

    def startService(self):
        super().startService()
        interval = watchdog_interval(self.environ)
        if interval:
            self._watchdog = LoopingCall(notify, "WATCHDOG=1", environ=self.environ)
            self._watchdog.clock = self.clock
            self._watchdog.start(interval)

    def stopService(self):
        super().stopService()
        notify("STOPPING=1", "STATUS=stopping", environ=self.environ)
        # systemd enforces the watchdog only while the unit is active;
        # TimeoutStopSec bounds the stop.
        if self._watchdog is not None and self._watchdog.running:
            self._watchdog.stop()
