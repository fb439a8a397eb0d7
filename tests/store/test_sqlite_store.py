"""The store contract on SQLite, plus what only SQLite has (the file, WAL, fsync)."""

import os
import shutil
import sqlite3
import stat
import tempfile

from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import TestCase

from chatd.store import StoreUnavailable, open_store
from chatd.store.sqlite import FILENAME, SQLiteStore

from .contract import SQLStoreContract


def scratch(case: TestCase) -> str:
    """A fresh temp directory removed after the test (trial's mktemp writes under the cwd)."""
    path = tempfile.mkdtemp(prefix="chatd-store-")
    case.addCleanup(shutil.rmtree, path, True)
    return path


class SQLiteContract(SQLStoreContract, TestCase):
    dialect = "sqlite"

    def setUp(self):
        self.data_dir = os.path.join(scratch(self), "data")

    def make_store(self):
        return open_store(None, self.data_dir)

    def raw_connection(self):
        os.makedirs(self.data_dir, exist_ok=True)
        return sqlite3.connect(os.path.join(self.data_dir, FILENAME))


class SQLiteSpecifics(TestCase):
    @inlineCallbacks
    def test_creates_data_dir_and_runs_in_wal_with_full_sync(self):
        data_dir = os.path.join(scratch(self), "nested", "data")
        store = open_store(None, data_dir)
        self.addCleanup(store.close)
        yield store.open()
        self.assertTrue(os.path.exists(os.path.join(data_dir, FILENAME)))

        def pragmas(txn):
            txn.execute("PRAGMA journal_mode")
            mode = txn.fetchone()[0]
            txn.execute("PRAGMA synchronous")
            return mode, txn.fetchone()[0]
        mode, sync = yield store.pool.runInteraction(pragmas)
        self.assertEqual((mode, sync), ("wal", 2))  # 2 is FULL

    @inlineCallbacks
    def test_sqlite_sync_normal_skips_the_fsync_per_commit(self):
        store = open_store(None, scratch(self), sqlite_sync="normal")
        self.addCleanup(store.close)
        yield store.open()

        def sync(txn):
            txn.execute("PRAGMA synchronous")
            return txn.fetchone()[0]
        self.assertEqual((yield store.pool.runInteraction(sync)), 1)  # 1 is NORMAL
        mid = yield store.append_message("#r", "#r", "ann", "hi", "message", 1.0)
        self.assertEqual([m.mid for m in (yield store.history("#r"))], [mid])

    def test_unknown_sqlite_sync_is_refused(self):
        with self.assertRaises(ValueError):
            SQLiteStore(os.path.join(scratch(self), FILENAME), synchronous="off")

    @inlineCallbacks
    def test_unopenable_file_is_store_unavailable(self):
        blocker = os.path.join(scratch(self), "file")
        open(blocker, "w").close()
        # A path under a regular file can never be opened.
        store = SQLiteStore(os.path.join(blocker, "db.sqlite3"))
        self.addCleanup(store.close)
        with self.assertRaises(StoreUnavailable):
            yield store.open()
        self.assertFalse(store.healthy)
        self.flushLoggedErrors()

    def test_rejects_unknown_database_url(self):
        with self.assertRaises(ValueError):
            open_store("mysql://x/y", scratch(self))


class SQLitePermissions(TestCase):
    """The database holds password hashes: nobody but us may read it."""

    def loose_umask(self):
        old = os.umask(0)  # the worst case: nothing taken off what we ask for
        self.addCleanup(os.umask, old)

    def mode(self, path):
        return stat.S_IMODE(os.stat(path).st_mode)

    @inlineCallbacks
    def test_created_directory_and_files_are_private(self):
        self.loose_umask()
        data_dir = os.path.join(scratch(self), "data")
        store = open_store(None, data_dir)
        self.addCleanup(store.close)
        yield store.open()
        yield store.create_account("ann", "Ann", "hash", 1.0)  # so the WAL exists
        self.assertEqual(self.mode(data_dir), 0o700)
        for name in (FILENAME, FILENAME + "-wal", FILENAME + "-shm"):
            self.assertEqual(self.mode(os.path.join(data_dir, name)), 0o600, name)

    @inlineCallbacks
    def test_an_operators_directory_keeps_its_mode(self):
        self.loose_umask()
        data_dir = os.path.join(scratch(self), "data")
        os.mkdir(data_dir)
        os.chmod(data_dir, 0o750)
        store = open_store(None, data_dir)
        self.addCleanup(store.close)
        yield store.open()
        self.assertEqual(self.mode(data_dir), 0o750)
        self.assertEqual(self.mode(os.path.join(data_dir, FILENAME)), 0o600)
