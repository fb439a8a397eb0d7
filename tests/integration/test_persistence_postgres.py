"""The daemon on PostgreSQL, and what clients see while the database is unreachable.

The outage is made with a TCP proxy of our own between the daemon and the
shared PostgreSQL server, so the server itself keeps running for everyone else.
"""

import socket
import threading
import time

import pytest
from proxies import BlackHoleProxy

from tests.pgdb import throwaway_database

from .persist_helpers import ask, jline, ok

PG_HOST, PG_PORT = "127.0.0.1", 5432
FAST = ["--rate", "100000", "--burst", "100000"]


class CuttableProxy:
    """127.0.0.1:port -> PostgreSQL; ``cut()`` drops every connection and refuses new ones."""

    def __init__(self):
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.up = True
        self.lock = threading.Lock()
        self.sockets = set()
        self.closing = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.closing:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if not self.up:
                client.close()  # the "network" is down
                continue
            try:
                server = socket.create_connection((PG_HOST, PG_PORT), timeout=5)
            except OSError:
                client.close()
                continue
            server.settimeout(None)
            with self.lock:
                self.sockets.update((client, server))
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src, dst):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            self._close(s)

    def _close(self, s):
        with self.lock:
            self.sockets.discard(s)
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        s.close()

    def cut(self):
        self.up = False
        with self.lock:
            live = list(self.sockets)
        for s in live:
            self._close(s)

    def restore(self):
        self.up = True

    def close(self):
        self.closing = True
        self.cut()
        self.listener.close()


@pytest.fixture(scope="module")
def pg_db():
    with throwaway_database("chatd_it") as name:
        yield name


@pytest.fixture
def proxy():
    p = CuttableProxy()
    yield p
    p.close()


def test_chat_on_postgresql_survives_an_outage(pg_db, proxy, start_daemon):
    d = start_daemon("--db", f"postgresql://postgres@127.0.0.1:{proxy.port}/{pg_db}", *FAST)
    alice = jline(d, "alice", "#pg")
    bob = jline(d, "bob", "#pg")
    first = ok(alice, type="message", room="#pg", text="stored in postgres")
    bob.expect({"type": "message", "mid": first["mid"], "text": "stored in postgres"})

    proxy.cut()
    # A room message cannot be stored: refused, never acknowledged, never delivered.
    err = ask(alice, type="message", room="#pg", text="during the outage")
    assert err["code"] == "store_unavailable"
    assert d.health()["status"] == "degraded" and d.health()["store"] == "unavailable"
    # What needs no store keeps working: private messages between people online,
    # and joining a room (without its history, which the client is told).
    ok(alice, type="private", to="bob", text="still here?")
    bob.expect({"type": "private", "text": "still here?"})
    carol = jline(d, "carol")
    carol.send_json({"type": "join", "room": "#pg", "id": "j"})
    notice = carol.expect({"type": "notice"})
    assert "history is unavailable" in notice["text"]
    assert carol.expect({"type": "ack", "request": "join"})["nicks"] == ["alice", "bob", "carol"]
    assert ask(carol, type="register", password="long enough pw")["code"] == "store_unavailable"

    proxy.restore()
    # Recovers by itself, without a restart.
    ack = ask(alice, type="message", room="#pg", text="back again")
    assert ack["type"] == "ack", ack  # the first query after the outage already works
    assert ack["mid"] > first["mid"]
    assert d.health()["status"] == "ok" and d.health()["store"] == "ok"
    for c in (bob, carol):
        c.expect({"type": "message", "text": "back again"})
    assert not [e for e in bob.drain() if e.get("text") == "during the outage"]
    log = d.log()
    # The fault is logged once (not per refused request), without a traceback.
    assert log.count("; refusing what needs it until it recovers") == 1
    assert "is available again" in log

    # And the history written before the outage is all there.
    late = jline(d, "dave")
    late.send_json({"type": "join", "room": "#pg", "since": 0, "id": "j2"})
    texts = []
    while True:
        e = late.read()
        if e.get("history"):
            texts.append(e["text"])
        if e.get("type") == "ack" and e.get("request") == "join":
            break
    assert texts == ["stored in postgres", "back again"]
    for c in (alice, bob, carol, late):
        c.close()


@pytest.fixture
def black_hole():
    p = BlackHoleProxy(PG_HOST, PG_PORT)
    yield p
    p.close()


def test_a_postgresql_that_never_answers_costs_seconds_not_forever(pg_db, black_hole,
                                                                    start_daemon):
    d = start_daemon("--db", f"postgresql://postgres@127.0.0.1:{black_hole.port}/{pg_db}",
                     "--store-timeout", "1", *FAST)
    alice = jline(d, "alice", "#hole")
    bob = jline(d, "bob", "#hole")
    ok(alice, type="message", room="#hole", text="before")

    black_hole.black_hole()  # accepts, holds connections open, answers nothing
    started = time.monotonic()
    err = ask(alice, type="message", room="#hole", text="into the hole")
    assert err["code"] == "store_unavailable"
    assert time.monotonic() - started < 5
    assert d.health()["status"] == "degraded"
    # The pipeline moved on: the next message is answered too, not stuck behind.
    assert ask(bob, type="message", room="#hole", text="me too")["code"] == "store_unavailable"

    black_hole.forward()
    deadline = time.monotonic() + 15
    while True:  # the next operation on a fresh connection works, without a restart
        answer = ask(alice, type="message", room="#hole", text="back")
        if answer["type"] == "ack" or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert answer["type"] == "ack", answer
    bob.expect({"type": "message", "text": "back"})
    assert d.health()["status"] == "ok"
