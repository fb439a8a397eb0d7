"""The store's per-operation timeout: a hung SQLite interaction, a silent PostgreSQL.

The PostgreSQL case goes through a TCP proxy of our own that can turn into a
black hole (it keeps accepting connections and holding them open but moves
no bytes), which is the failure statement_timeout and TCP keepalives cannot
catch.  The shared server itself is never stopped.
"""

import os
import threading
import time
from urllib.parse import urlsplit

import pytest
from proxies import Proxy
from twisted.internet import reactor, task
from twisted.internet.defer import inlineCallbacks
from twisted.logger import LogLevel, globalLogPublisher
from twisted.trial.unittest import TestCase

from chatd.store import StoreUnavailable, open_store
from chatd.store.postgres import PostgresStore
from chatd.store.sqlite import SQLiteStore

from .test_sqlite_store import scratch

TIMEOUT = 1.0
# The deadline plus the reactor's and the thread pool's scheduling slack.
WITHIN = TIMEOUT + 1.5


@inlineCallbacks
def settled(store, deadline=10.0):
    """Wait until no pool thread is still busy with abandoned work."""
    end = time.monotonic() + deadline
    while store._stuck and time.monotonic() < end:
        yield task.deferLater(reactor, 0.05, lambda: None)


def errors_logged(case: TestCase) -> list:
    """Error-level log events from now until the test ends."""
    events = []

    def observer(event):
        if event.get("log_level") in (LogLevel.error, LogLevel.critical):
            events.append(event)
    globalLogPublisher.addObserver(observer)
    case.addCleanup(globalLogPublisher.removeObserver, observer)
    return events


class SQLiteTimeout(TestCase):
    @inlineCallbacks
    def test_a_hung_batch_fails_and_the_pipeline_moves_on(self):
        store = SQLiteStore(os.path.join(scratch(self), "db.sqlite3"), timeout=TIMEOUT)
        self.addCleanup(store.close)
        yield store.open()
        release = threading.Event()
        self.addCleanup(release.set)  # (cleanups run last-added first: before close)
        insert = store._insert_messages

        def hanging(txn, rows):
            if any(row[3] == "hang" for row in rows):
                release.wait(30)  # a disk or lock that never answers
            return insert(txn, rows)
        store._insert_messages = hanging
        first = yield store.append_message("#a", "#a", "n", "before", "message", 1.0)
        # (Let that batch's write finish, so "hang" starts a transaction of its own.)
        yield task.deferLater(reactor, 0, lambda: None)

        start = time.monotonic()
        hung = store.append_message("#a", "#a", "n", "hang", "message", 2.0)
        # Queued behind the hung batch, for the next transaction.
        later = store.append_message("#a", "#a", "n", "later", "message", 3.0)
        with self.assertRaises(StoreUnavailable):
            yield hung
        self.assertLess(time.monotonic() - start, WITHIN)
        self.assertFalse(store.healthy)
        # The next batch ran on a spare thread instead of waiting for the hung one.
        mid = yield later
        self.assertGreater(mid, first)
        self.assertTrue(store.healthy)
        self.assertLess(time.monotonic() - start, WITHIN + 1)

        # When the hung interaction finally returns, its transaction rolls back:
        # its caller was told it failed.
        release.set()
        yield settled(store)
        self.assertEqual(store._stuck, 0)
        self.assertEqual(store.pool.threadpool.max, store.pool_size)
        rows = yield store.history("#a")
        self.assertEqual([m.text for m in rows], ["before", "later"])

    @inlineCallbacks
    def test_work_that_times_out_while_queued_never_runs(self):
        store = SQLiteStore(os.path.join(scratch(self), "db.sqlite3"), timeout=TIMEOUT)
        self.addCleanup(store.close)
        yield store.open()
        release = threading.Event()
        self.addCleanup(release.set)
        ran = []

        def hang(txn):
            release.wait(30)

        def record(txn, what):
            ran.append(what)
        # Occupy the only thread and every spare one the pool may add.
        blockers = [store._run(hang) for _ in range(1 + 4)]
        queued = store._run(record, "queued")
        for d in blockers + [queued]:
            with self.assertRaises(StoreUnavailable):
                yield d
        release.set()
        yield settled(store)
        yield store._run(record, "after")
        self.assertEqual(ran, ["after"])

    def test_timeout_must_be_positive(self):
        with self.assertRaises(ValueError):
            SQLiteStore("unused.sqlite3", timeout=0)

    def test_open_store_passes_the_timeout_through(self):
        self.assertEqual(open_store(None, scratch(self), timeout=2.5).timeout, 2.5)
        self.assertEqual(open_store("postgresql://u@h/d", "unused", timeout=3.5).timeout, 3.5)
        self.assertEqual(open_store(None, scratch(self)).timeout, 10.0)


@pytest.mark.usefixtures("pg_url")
class PostgresBlackHole(TestCase):
    pg_url = None  # set by the fixture

    def through_proxy(self):
        url = urlsplit(self.pg_url)
        proxy = Proxy(url.hostname, url.port or 5432)
        self.addCleanup(proxy.close)
        return proxy, url._replace(netloc=f"{url.username}@127.0.0.1:{proxy.port}").geturl()

    @inlineCallbacks
    def test_silent_server_times_out_and_the_store_recovers(self):
        proxy, url = self.through_proxy()
        store = PostgresStore(url, timeout=TIMEOUT)
        self.addCleanup(store.close)
        # Closing the proxy first frees any thread still blocked on it, so a
        # broken abort fails this test instead of hanging close()'s thread join.
        self.addCleanup(proxy.close)
        yield store.open()
        yield store.create_account("ann", "Ann", "hash", 1.0)
        first = yield store.append_message("#pg", "#pg", "ann", "before", "message", 1.0)
        errors = errors_logged(self)

        proxy.black_hole()
        start = time.monotonic()
        with self.assertRaises(StoreUnavailable):
            yield store.append_message("#pg", "#pg", "ann", "into the hole", "message", 2.0)
        self.assertLess(time.monotonic() - start, WITHIN)
        self.assertFalse(store.healthy)
        # A read, likely on a connection still being opened: bounded as well.
        start = time.monotonic()
        with self.assertRaises(StoreUnavailable):
            yield store.get_account("ann")
        self.assertLess(time.monotonic() - start, WITHIN)
        self.assertFalse(store.healthy)
        # While the server is still silent, no pool thread stays blocked: the
        # aborted connection failed at once, a connect gives up by itself.
        yield settled(store)
        self.assertEqual(store._stuck, 0)

        proxy.forward()
        # Recovered without a restart: the aborted connections were discarded.
        mid = yield store.append_message("#pg", "#pg", "ann", "after", "message", 3.0)
        self.assertGreater(mid, first)
        self.assertTrue(store.healthy)
        self.assertEqual((yield store.get_account("ann")).nick, "Ann")
        # One outage, one error in the log (not one per refused operation).
        self.assertEqual(len(errors), 1, errors)
        self.assertIn("refusing what needs it", errors[0]["log_format"])
        self.assertIn("within 1 s", errors[0]["error"])
        rows = yield store.history("#pg")
        self.assertEqual([m.text for m in rows], ["before", "after"])
        yield settled(store)
        self.assertEqual(store._stuck, 0)
        self.flushLoggedErrors()

    @inlineCallbacks
    def test_every_pool_thread_blocked_at_once_still_recovers(self):
        proxy, url = self.through_proxy()
        store = PostgresStore(url, timeout=TIMEOUT, pool_size=2)
        self.addCleanup(store.close)
        self.addCleanup(proxy.close)
        yield store.open()
        proxy.black_hole()
        # More concurrent reads than the pool (and its spares) has threads.
        ds = [store.get_account(f"user{i}") for i in range(10)]
        start = time.monotonic()
        for d in ds:
            with self.assertRaises(StoreUnavailable):
                yield d
        self.assertLess(time.monotonic() - start, WITHIN)
        yield settled(store)
        self.assertEqual(store._stuck, 0)
        proxy.forward()
        results = []
        for i in range(10):
            results.append((yield store.get_account(f"user{i}")))
        self.assertEqual(results, [None] * 10)
        self.assertTrue(store.healthy)
        self.flushLoggedErrors()
