"""The default store: one SQLite file in the data directory, in WAL mode.

``synchronous`` (``--sqlite-sync``): with FULL, the default, a commit returns
only after the WAL is fsynced, so an acknowledged message survives not just
``kill -9`` but also a power cut or kernel panic.  NORMAL skips that fsync
(the WAL is synced at checkpoints only): an acknowledged message still
survives ``kill -9``, since the WAL is already in the OS cache, but the last
commits before a power cut may be lost.  Group commit means one fsync per
batch, not per message; at low rates, where each message is its own batch,
the fsync costs about 60 µs of CPU and 0.3-0.6 ms of latency per message
(docs/performance.rst).

The file holds password hashes: a data directory we create is 0700 and a
database file we create is 0600, whatever the umask (SQLite gives the -wal
and -shm files the database file's mode).  A directory or file the operator
made keeps the mode they chose.
"""

import os

from twisted.enterprise import adbapi

from chatd.store.sql import DEFAULT_TIMEOUT, SQLStore

FILENAME = "chatd.sqlite3"
SYNC_MODES = ("full", "normal")


def _setup(conn, synchronous):
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={synchronous.upper()}")
    # Another process (a backup, sqlite3 shell) holding a lock briefly should
    # delay us, not fail the write.
    conn.execute("PRAGMA busy_timeout=5000")


class SQLiteStore(SQLStore):
    dialect = "sqlite"
    # One connection: SQLite serialises writers anyway, and one thread keeps
    # the group commit's batches strictly ordered.
    pool_size = 1

    def __init__(self, path: str, reactor=None, synchronous: str = "full",
                 timeout: float = DEFAULT_TIMEOUT):
        if synchronous not in SYNC_MODES:
            raise ValueError(f"synchronous must be one of {SYNC_MODES}, not {synchronous!r}")
        super().__init__(f"sqlite:{path}", reactor=reactor, timeout=timeout)
        self.path = path
        self.synchronous = synchronous

    @classmethod
    def in_dir(cls, data_dir: str, reactor=None, synchronous: str = "full",
               timeout: float = DEFAULT_TIMEOUT) -> "SQLiteStore":
        return cls(os.path.join(data_dir, FILENAME), reactor=reactor, synchronous=synchronous,
                   timeout=timeout)

    def prepare(self) -> None:
        directory = os.path.dirname(self.path)
        if directory and not os.path.isdir(directory):
            os.makedirs(directory, exist_ok=True)
            # makedirs' mode is filtered by the umask; chmod is not.
            os.chmod(directory, 0o700)
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return  # the operator's or an earlier run's file: leave its mode alone
        try:
            os.fchmod(fd, 0o600)  # the umask may have taken bits off 0o600; never added
        finally:
            os.close(fd)

    def make_pool(self) -> adbapi.ConnectionPool:
        return adbapi.ConnectionPool("sqlite3", self.path, check_same_thread=False,
                                     cp_min=1, cp_max=self.pool_size, cp_reactor=self.reactor,
                                     cp_openfun=lambda conn: _setup(conn, self.synchronous))

    def abort_connection(self, conn) -> None:
        # Makes a running SQLite statement fail with "interrupted"; safe to call
        # from another thread, and it never blocks.
        conn.interrupt()
