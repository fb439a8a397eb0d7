"""The store contract on the real PostgreSQL server, plus an unreachable server."""

import socket

import psycopg2
import pytest
from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import TestCase

from chatd.store import StoreUnavailable, open_store
from chatd.store.postgres import PostgresStore, _redact

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
