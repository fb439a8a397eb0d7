"""The default store: one SQLite file in the data directory, in WAL mode.

``synchronous=FULL``: a commit returns only after the WAL is fsynced, so an
acknowledged message survives not just ``kill -9`` (NORMAL would, since the
WAL is already in the OS cache) but also a power cut or kernel panic.  Group
commit means one fsync per batch, not per message, which keeps it cheap.
"""

import os

from twisted.enterprise import adbapi

from chatd.store.sql import SQLStore

FILENAME = "chatd.sqlite3"


def _setup(conn):
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    # Another process (a backup, sqlite3 shell) holding a lock briefly should
    # delay us, not fail the write.
    conn.execute("PRAGMA busy_timeout=5000")


class SQLiteStore(SQLStore):
    dialect = "sqlite"

    def __init__(self, path: str, reactor=None):
        super().__init__(f"sqlite:{path}")
        self.path = path
        self.reactor = reactor

    @classmethod
    def in_dir(cls, data_dir: str, reactor=None) -> "SQLiteStore":
        return cls(os.path.join(data_dir, FILENAME), reactor=reactor)

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
                                     cp_min=1, cp_max=1, cp_openfun=_setup, **kw)
