"""The store contract on the real PostgreSQL server, plus an unreachable server."""

import socket

import psycopg2
import pytest
from twisted.internet import reactor
from twisted.internet.defer import gatherResults, inlineCallbacks
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from chatd.store import StoreUnavailable, open_store
from chatd.store.postgres import PostgresStore, _redact, room_lock_keys

from .contract import SQLStoreContract


@pytest.mark.usefixtures("pg_url")
class PostgresContract(SQLStoreContract, TestCase):
    dialect = "postgresql"
    pg_url = None  # set by the fixture

    def make_store(self):
        return open_store(self.pg_url, "unused-data-dir")

    def raw_connection(self):
        return psycopg2.connect(self.pg_url)


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class PostgresSpecifics(TestCase):
    @inlineCallbacks
    def test_unreachable_server_is_store_unavailable(self):
        store = PostgresStore(f"postgresql://postgres@127.0.0.1:{_closed_port()}/x")
        self.addCleanup(store.close)
        with self.assertRaises(StoreUnavailable):
            yield store.open()
        self.assertFalse(store.healthy)
        self.flushLoggedErrors()

    def test_password_never_in_description(self):
        store = PostgresStore("postgresql://chat:hunter2@db.example:5432/chat")
        self.assertNotIn("hunter2", store.description)
        self.assertEqual(_redact("postgresql://u@h/d"), "postgresql://u@h/d")


@pytest.mark.usefixtures("pg_url")
class PostgresSettings(TestCase):
    pg_url = None  # set by the fixture

    @inlineCallbacks
    def test_statement_timeout_follows_the_store_timeout(self):
        # Sent with the startup packet: no extra round trip after connecting.
        store = PostgresStore(self.pg_url, timeout=2.5)
        self.addCleanup(store.close)
        yield store.open()

        def show(txn):
            txn.execute("SHOW statement_timeout")
            return txn.fetchone()[0]
        self.assertEqual((yield store.pool.runInteraction(show)), "2500ms")


@pytest.mark.usefixtures("pg_url")
class PostgresClusterOrder(TestCase):
    """Two stores on one database stand for two nodes writing to one room."""

    pg_url = None  # set by the fixture

    @inlineCallbacks
    def opened(self):
        store = PostgresStore(self.pg_url)
        self.addCleanup(store.close)
        yield store.open()
        return store

    def node_mid_commit(self, store, room, text):
        """A node that has inserted a message and not yet committed it: the
        store's own transaction body, run on a connection the test holds open
        (as a cluster's node writes: asking for ``prev``)."""
        conn = psycopg2.connect(self.pg_url, connect_timeout=5)
        self.addCleanup(conn.close)
        mids = store._insert_messages(conn.cursor(), [(room, room, "alice", text, "message", 1.0)],
                                      with_prev=True)
        return conn, mids[0][0]

    @inlineCallbacks
    def settled(self, d):
        """Wait (bounded) until ``d`` has fired or its commit waits on a lock."""
        watcher = psycopg2.connect(self.pg_url, connect_timeout=5)
        watcher.autocommit = True
        self.addCleanup(watcher.close)
        for _ in range(500):
            if d.called:
                return
            with watcher.cursor() as cur:
                cur.execute("SELECT count(*) FROM pg_locks WHERE NOT granted")
                if cur.fetchone()[0]:
                    return
            yield deferLater(reactor, 0.01, lambda: None)
        self.fail("the second commit neither finished nor waited")

    @inlineCallbacks
    def test_a_since_reader_misses_nothing_when_commits_race(self):
        a, b, reader = (yield self.opened()), (yield self.opened()), (yield self.opened())
        # Node A has taken its id and is slow to commit; node B sends next.
        conn, first = self.node_mid_commit(a, "#r", "first")
        second = b.append_message("#r", "#r", "bob", "second", "message", 2.0, with_prev=True)
        yield self.settled(second)
        # A client polls "since" the way a reconnecting client resumes.
        seen = list((yield reader.history("#r", since=0)))
        conn.commit()
        second, _ = yield second
        last = max((m.mid for m in seen), default=0)
        seen += (yield reader.history("#r", since=last))
        self.assertEqual([m.text for m in seen], ["first", "second"])
        self.assertEqual([m.mid for m in seen], [first, second])
        self.assertLess(first, second)

    @inlineCallbacks
    def test_other_rooms_do_not_wait_for_a_slow_commit(self):
        a, b = (yield self.opened()), (yield self.opened())
        conn, _ = self.node_mid_commit(a, "#slow", "held open")
        self.addCleanup(conn.rollback)
        mid, _ = yield b.append_message("#other", "#other", "bob", "not held up", "message",
                                        2.0, with_prev=True)
        rows = yield b.history("#other", since=0)
        self.assertEqual([(m.mid, m.text) for m in rows], [(mid, "not held up")])

    @inlineCallbacks
    def test_prev_is_the_message_committed_before_when_commits_race(self):
        a, b = (yield self.opened()), (yield self.opened())
        # Node A has taken its id and is slow to commit; node B sends next: B's
        # prev is read under the room's lock, so after A's commit, and is A's id.
        conn = psycopg2.connect(self.pg_url, connect_timeout=5)
        self.addCleanup(conn.close)
        [(first, zero)] = a._insert_messages(  # noqa: SLF001 (the store's own body)
            conn.cursor(), [("#p", "#p", "alice", "first", "message", 1.0)], True)
        second = b.append_message("#p", "#p", "bob", "second", "message", 2.0, with_prev=True)
        yield self.settled(second)
        conn.commit()
        second, prev = yield second
        self.assertEqual((zero, prev), (0, first))
        self.assertLess(first, second)

    @inlineCallbacks
    def test_prev_chains_a_rooms_messages_from_two_nodes_writing_at_once(self):
        a, b = (yield self.opened()), (yield self.opened())
        ds = []
        for i in range(60):
            node = a if i % 2 else b
            ds.append(node.append_message("#chain", "#chain", "n", f"t{i}", "message", i,
                                          with_prev=True))
        got = sorted((yield gatherResults(ds)))
        # Sorted by id, each one's prev is the id before it: one chain, no gaps.
        self.assertEqual([prev for _, prev in got], [0] + [mid for mid, _ in got[:-1]])
        rows = yield a.history("#chain", since=0, limit=100)
        self.assertEqual([r.mid for r in rows], [mid for mid, _ in got])

    def test_room_lock_keys_are_stable_sorted_int4_without_repeats(self):
        keys = room_lock_keys(["#b", "#a", "#b", "#é"])
        self.assertEqual(keys, sorted(keys))
        self.assertEqual(len(keys), 3)
        self.assertTrue(all(-2**31 <= k < 2**31 for k in keys))
        self.assertEqual(keys, room_lock_keys(["#é", "#a", "#b"]))  # no per-process salt
