"""The production store: PostgreSQL through psycopg2 on adbapi's thread pool.

psycopg2 is blocking, so it runs on adbapi's threads and never on the reactor.
A connection that died (a restarted server, a cut network) is dropped and
the next query opens a new one (see ``SQLStore._transaction``), which is how
the daemon recovers from an outage without a restart.

A server that accepts TCP but never answers is the hard case: the libpq call
waits forever (statement_timeout is enforced by the server, and keepalives
are answered by whatever kernel holds the connection).  So connecting is
bounded by ``connect_timeout``, and an operation past the store's deadline has
its connection's socket shut down from the reactor thread
(``abort_connection``), which fails the blocked call at once.
"""

import math
import os
import socket
import zlib

from twisted.enterprise import adbapi

from chatd.store.sql import DEFAULT_TIMEOUT, SQLStore

# The first key of the per-room advisory locks that order message commits
# (7366147 guards migrations, 7366148 the offline private queues).
ROOM_LOCK = 7366149


def room_lock_keys(room_keys) -> list:
    """The second advisory lock key of each room, sorted and without repeats.

    A stable 32-bit hash (Python's own is salted per process, and every node
    must agree); two rooms sharing one only wait for each other now and then.
    Taken in ascending order, so two nodes' batches never deadlock.
    """
    return sorted({zlib.crc32(key.encode("utf-8")) - 2**31 for key in room_keys})


def _redact(url: str) -> str:
    """The URL for logs, without a password."""
    scheme, sep, rest = url.partition("://")
    creds, at, host = rest.rpartition("@")
    if not at:
        return url
    user = creds.split(":", 1)[0]
    return f"{scheme}{sep}{user}:***@{host}" if ":" in creds else url


class PostgresStore(SQLStore):
    dialect = "postgresql"

    def __init__(self, url: str, reactor=None, pool_size: int = 4,
                 timeout: float = DEFAULT_TIMEOUT):
        super().__init__(f"postgresql:{_redact(url)}", reactor=reactor, timeout=timeout)
        self.url = url
        self.pool_size = pool_size

    def make_pool(self) -> adbapi.ConnectionPool:
        return adbapi.ConnectionPool(
            "psycopg2", self.url, cp_min=1, cp_max=self.pool_size, cp_reactor=self.reactor,
            # libpq bounds the whole connection set-up, startup and authentication
            # included (it counts whole seconds, and treats less than 2 as 2).
            connect_timeout=max(2, math.ceil(self.timeout)),
            # Sent with the startup packet rather than as a query after it, so
            # there is no unbounded round trip between connecting and our first
            # statement.  The server cancels a statement that outlives our deadline.
            options=f"-c statement_timeout={int(self.timeout * 1000)}",
            # Notice a dead peer on an idle connection instead of at the next query.
            keepalives=1, keepalives_idle=10, keepalives_interval=5, keepalives_count=3)

    def lock_rooms(self, txn, room_keys) -> None:
        # A BIGSERIAL id is handed out when the INSERT runs, not when it
        # commits: without this, node A could take id 10, node B take 11 and
        # commit first, and a reader asking for "since 9" in between would get
        # 11, then ask "since 11" and never see 10.  Each room's lock is held
        # from before its ids are taken until the commit, so in one room ids
        # are committed in the order they were taken.  Other rooms do not wait.
        # unnest is read in array order, so the locks are taken in that order.
        txn.execute("SELECT pg_advisory_xact_lock(%s, k) FROM unnest(%s::int[]) AS k",
                    (ROOM_LOCK, room_lock_keys(room_keys)))

    def abort_connection(self, conn) -> None:
        # A libpq call blocked in poll()/recv() on this socket returns at once
        # with "server closed the connection unexpectedly"; the connection is
        # then discarded.  shutdown() acts on the socket, so a dup of the fd will
        # do, and it never blocks.  conn.cancel() would not help: it opens a
        # new connection to the same silent server.
        try:
            fd = conn.fileno()
        except self.pool.dbapi.InterfaceError:
            return  # closed already: nothing is blocked on it
        if fd < 0:
            return  # libpq already dropped the socket: the call is failing anyway
        with socket.socket(fileno=os.dup(fd)) as sock:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # not connected any more: same outcome
