"""The Redis bus through real daemons: two and three nodes on one PostgreSQL
database and one Redis prefix of their own; a Redis link cut and restored
through a TCP proxy the test controls (the shared Redis is never stopped)."""

import json
import time
import urllib.error
import urllib.request

from prometheus_client.parser import text_string_to_metric_families
from proxies import Proxy

from tests.redishelp import REDIS_HOST, REDIS_PORT

from .cluster import messages

ADMIN = ("--admin", "tcp:0:interface=127.0.0.1")


def get(port: int, path: str) -> tuple[int, dict | bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            status, body = r.status, r.read()
    except urllib.error.HTTPError as e:
        status, body = e.code, e.read()
    try:
        return status, json.loads(body)
    except ValueError:
        return status, body


def publishes(port: int) -> float:
    _, body = get(port, "/metrics")
    for family in text_string_to_metric_families(body.decode()):
        for s in family.samples:
            if s.name == "chatd_redis_publishes_total":
                return s.value
    raise AssertionError("no chatd_redis_publishes_total in /metrics")


def wait_until(condition, what: str, timeout: float = 15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"never: {what}")


def collect(client, room, want: list, timeout: float = 15.0) -> list:
    """The texts of the room's messages that arrive until every one of ``want``
    has, then for half a second more (to catch a duplicate)."""
    got = [m["text"] for m in messages(client.drain(), room)]
    deadline = time.monotonic() + timeout
    settle = None
    while True:
        now = time.monotonic()
        if settle is None and set(want) <= set(got):
            settle = now + 0.5
        end = settle if settle is not None else deadline
        if now >= end:
            break
        try:
            item = client.read(end - now)
        except TimeoutError:
            continue
        got += [m["text"] for m in messages([item], room)]
    return got


def say(client, room, text) -> dict:
    ack = client.request({"type": "message", "room": room, "text": text})
    assert ack["type"] == "ack", ack
    return ack


def test_two_nodes_are_one_chat(cluster):
    a, b = (cluster.start(name, "--nick-interval", "0.1") for name in ("node-a", "node-b"))
    alice = a.ws().login("alice", "#lobby")
    bob = b.ws().login("bob", "#lobby")
    alice.expect({"type": "join", "nick": "bob", "room": "#lobby"})

    say(alice, "#lobby", "hello from a")
    got = bob.expect({"type": "message", "text": "hello from a"})
    assert got["from"] == "alice" and got["room"] == "#lobby"
    say(bob, "#lobby", "hello from b")
    alice.expect({"type": "message", "text": "hello from b", "from": "bob"})

    ack = bob.request({"type": "private", "to": "alice", "text": "psst"})
    assert ack["type"] == "ack" and not ack.get("offline"), ack
    assert alice.expect({"type": "private", "text": "psst"})["from"] == "bob"

    ack = alice.request({"type": "topic", "room": "#lobby", "topic": "cluster talk"})
    assert ack["type"] == "ack", ack
    assert bob.expect({"type": "topic", "room": "#lobby"})["topic"] == "cluster talk"

    time.sleep(0.15)  # --nick-interval
    ack = alice.request({"type": "nick", "nick": "alicia"})
    assert ack["type"] == "ack", ack
    assert bob.expect({"type": "nick", "old": "alice"})["new"] == "alicia"

    ack = bob.request({"type": "part", "room": "#lobby"})
    assert ack["type"] == "ack", ack
    alice.expect({"type": "part", "nick": "bob", "room": "#lobby"})
    carol = b.line().login("carol", "#lobby")  # the line protocol on node b
    alice.expect({"type": "join", "nick": "carol"})
    carol.close()
    assert alice.expect({"type": "quit", "nick": "carol"})["nick"] == "carol"
    # Each event once: nothing above arrived twice.
    alice.poll(0.3)
    seen = [(e["type"], e.get("text") or e.get("nick")) for e in alice.seen
            if e.get("type") in ("message", "private", "topic", "part", "quit")]
    assert sorted(seen) == sorted(set(seen)), seen


def test_one_redis_publish_per_room_message_and_order_on_three_nodes(cluster):
    nodes = [cluster.start(name, *ADMIN, "--burst", "100")
             for name in ("node-a", "node-b", "node-c")]
    clients = [nodes[i % 3].ws().login(f"user{i}", "#big") for i in range(6)]
    sender = clients[0]
    for c in clients:  # everyone is in, on every node
        c.request({"type": "who", "room": "#big"})
    time.sleep(0.3)  # late joins' events settle before counting
    before = [publishes(n.admin_port) for n in nodes]
    texts = [f"m{i}" for i in range(40)]
    for text in texts:
        sender.send_json({"type": "message", "room": "#big", "text": text})
    for c in clients[1:]:
        c.expect({"type": "message", "text": "m39"})
        got = [m["text"] for m in messages(c.drain(), "#big")] + ["m39"]
        assert got == texts, "every receiver, on every node, in the order sent"
    after = [publishes(n.admin_port) for n in nodes]
    # Forty messages to six members on three nodes: forty publishes, all by
    # the sender's node.
    assert after[0] - before[0] == 40
    assert after[1] == before[1] and after[2] == before[2]


def test_redis_cut_and_restored(cluster, start_daemon):
    link = Proxy(REDIS_HOST, REDIS_PORT)
    try:
        a = cluster.start("node-a", "--redis", f"redis://127.0.0.1:{link.port}/0", *ADMIN)
        b = cluster.start("node-b")
        alice, amy = a.ws().login("alice", "#r"), a.ws().login("amy", "#r")
        bob = b.ws().login("bob", "#r")
        say(alice, "#r", "before")
        bob.expect({"type": "message", "text": "before"})
        for c in (alice, amy, bob):
            c.drain()
        assert get(a.ws_port, "/healthz")[1]["redis"] == "ok"

        link.cut()
        marks = {c: len(c.seen) for c in (alice, amy, bob)}
        wait_until(lambda: get(a.ws_port, "/healthz")[1]["redis"] == "unavailable",
                   "node a reports the cut")
        health = get(a.ws_port, "/healthz")[1]
        assert health["status"] == "degraded"
        status, ready = get(a.admin_port, "/readyz")
        assert status == 503 and ready["redis"] == "unavailable"
        assert "Redis link down" in a.log()

        # Local chat goes on, and is acknowledged.
        sent_a = [say(alice, "#r", f"a{i}")["mid"] for i in range(3)]
        for i in range(3):
            amy.expect({"type": "message", "text": f"a{i}"})
        # What needs the other nodes is refused with a clear code.
        err = alice.request({"type": "private", "to": "bob", "text": "psst"})
        assert err["type"] == "error" and err["code"] == "cluster_unavailable", err
        # The other node goes on too.
        sent_b = [say(bob, "#r", f"b{i}")["mid"] for i in range(3)]
        assert len(set(sent_a + sent_b)) == 6

        for c in (alice, amy, bob):
            c.poll(0.2)
            c.drain()  # their own echoes, seen during the outage
        link.restore()
        wait_until(lambda: get(a.ws_port, "/healthz")[1]["redis"] == "ok",
                   "node a back without a restart")
        assert get(a.admin_port, "/readyz")[0] == 200
        # Nothing acknowledged is lost, nothing comes twice, and each node shows
        # the room's messages in id order (a client resuming "since" the last id
        # it saw misses none): node b, still on Redis, finds a's messages missing
        # before its own and reads them back from the store.
        assert max(sent_a) < min(sent_b)
        everything = [f"a{i}" for i in range(3)] + [f"b{i}" for i in range(3)]

        def shown(c):
            return [m["text"] for m in messages(c.seen[marks[c]:], "#r")
                    if m["text"] != "before"]  # (an echo of it may come late)
        for c in (alice, amy, bob):
            wait_until(lambda c=c: c.poll(0.1) or set(everything) <= set(shown(c)),
                       "every message, on every node")
            c.poll(0.5)  # (a duplicate would have come by now)
            assert shown(c) == everything, shown(c)
            c.drain()
        # And the chat is live across the nodes again.
        say(bob, "#r", "after")
        alice.expect({"type": "message", "text": "after"})
        ack = alice.request({"type": "private", "to": "bob", "text": "back"})
        assert ack["type"] == "ack", ack
        bob.expect({"type": "private", "text": "back"})
    finally:
        link.close()


FAST_HASH = ("--argon2-memory-cost", "8192", "--argon2-time-cost", "1")


def test_a_login_on_another_node_closes_the_older_one(cluster):
    a, b = (cluster.start(name, *FAST_HASH) for name in ("node-a", "node-b"))
    first = a.ws().login("dave")
    ack = first.request({"type": "register", "password": "dave-password-1"})
    assert ack["type"] == "ack", ack
    second = b.ws()
    second.expect({"type": "hello"})
    ack = second.request({"type": "login", "nick": "dave", "password": "dave-password-1"})
    assert ack["type"] == "ack" and ack["nick"] == "dave", ack
    closing = first.expect_closed()
    assert {"type": "bye", "reason": "logged in from another connection"} in [
        {k: e.get(k) for k in ("type", "reason")} for e in closing], closing
