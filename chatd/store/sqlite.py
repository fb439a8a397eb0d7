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
"""

import os

from twisted.enterprise import adbapi

from chatd.store.sql import SQLStore

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

    def __init__(self, path: str, reactor=None, synchronous: str = "full"):
        if synchronous not in SYNC_MODES:
            raise ValueError(f"synchronous must be one of {SYNC_MODES}, not {synchronous!r}")
        super().__init__(f"sqlite:{path}")
        self.path = path
        self.reactor = reactor
        self.synchronous = synchronous

    @classmethod
    def in_dir(cls, data_dir: str, reactor=None, synchronous: str = "full") -> "SQLiteStore":
        return cls(os.path.join(data_dir, FILENAME), reactor=reactor, synchronous=synchronous)

    def make_pool(self) -> adbapi.ConnectionPool:
        directory = os.path.dirname(self.path)
        if directory:
            try:
                os.makedirs(directory, exist_ok=True)
            except OSError:
                pass  # opening the file fails next, with the store's own error
        kw = {"cp_reactor": self.reactor} if self.reactor is not None else {}
        # One connection: SQLite serialises writers anyway, and one thread
        # keeps the group commit's batches strictly ordered.
        return adbapi.ConnectionPool("sqlite3", self.path, check_same_thread=False,
                                     cp_min=1, cp_max=1,
                                     cp_openfun=lambda conn: _setup(conn, self.synchronous), **kw)
