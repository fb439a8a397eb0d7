"""Raise the open-files limit at start-up, as mature daemons do.

Every connection is a file descriptor, and the usual soft limit (1024) would
cap chatd far below ``--max-connections``.  The soft limit may be raised up to
the hard limit without privileges; past that the operator must raise the hard
limit (systemd ``LimitNOFILE=``, ``ulimit -Hn``; docs/performance.rst).
"""

import resource

from twisted.logger import Logger

log = Logger()
HEADROOM = 256  # listening sockets, log files, the store, the Redis link


def raise_nofile(max_connections: int) -> int:
    """Lift the soft RLIMIT_NOFILE towards the hard one; return the soft limit now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = max_connections + HEADROOM
    if soft >= want or soft == resource.RLIM_INFINITY:
        return soft
    new = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if new > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
        except (ValueError, OSError) as e:
            log.warn("could not raise the open-files limit from {soft}: {error}",
                     soft=soft, error=e)
            return soft
    if new < want:
        log.warn("open-files limit {limit} is below --max-connections {wanted} plus "
                 "{headroom}: raise the hard limit (LimitNOFILE=)",
                 limit=new, wanted=max_connections, headroom=HEADROOM)
    return new
