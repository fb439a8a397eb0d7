"""The daemon on PostgreSQL, and what clients see while the database is unreachable.

The outage is made with a TCP proxy of our own between the daemon and the
shared PostgreSQL server, so the server itself keeps running for everyone else.
"""

import time

import pytest
from proxies import Proxy

from tests.pgdb import throwaway_database

from .persist_helpers import ask, jline, ok

PG_HOST, PG_PORT = "127.0.0.1", 5432
FAST = ["--rate", "100000", "--burst", "100000"]


@pytest.fixture(scope="module")
def pg_db():
    with throwaway_database("chatd_it") as name:
        yield name


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
    p = Proxy(PG_HOST, PG_PORT)
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
