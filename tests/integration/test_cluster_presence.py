"""Cluster presence through real daemons: two nodes joined by the shared Redis
(a key prefix of their own, removed afterwards), each with its own SQLite
store (presence needs nothing else), real WebSocket and line clients.

A nick taken on one node is refused on the other in any case; two nodes
racing for one nick: exactly one wins, every time; ``/who`` and ``/rooms`` on
one node list the other's users; ``kill -9`` of a node and the survivor's users
see its users quit, and ``/who`` drops them, within ``--node-timeout``.
"""

import json
import urllib.error
import urllib.request

import pytest
from proxies import Proxy

from tests.redishelp import REDIS_HOST, REDIS_PORT, REDIS_URL, delete_prefix, unique_prefix

NODE_TIMEOUT = 3.0
# The bound the test holds a dead node's quits to: --node-timeout, plus the
# time for a survivor's reap to reach its clients (a Redis round trip and a
# write), generously.
QUIT_BOUND = NODE_TIMEOUT + 2.0


def redis_state(daemon) -> str:
    """The node's view of its Redis link, from /healthz (503 while it is down)."""
    url = f"http://127.0.0.1:{daemon.ws_port}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            status, body = r.status, r.read()
    except urllib.error.HTTPError as e:
        status, body = e.code, e.read()
    try:
        return json.loads(body)["redis"]
    except ValueError:
        # Not the health JSON (a refusal's plain text?): say what it was.
        raise AssertionError(f"/healthz answered {status}: {body[:200]!r}") from None


@pytest.fixture
def prefix():
    p = unique_prefix()
    yield p
    delete_prefix(p)


@pytest.fixture
def node(start_daemon, prefix):
    def start(name, *options):
        # Nick changes as fast as a test asks (the default is one per 5 s).
        return start_daemon("--redis", REDIS_URL, "--redis-prefix", prefix, "--node-id", name,
                            "--node-timeout", str(NODE_TIMEOUT), "--nick-interval", "0.0001",
                            # The tests poll /healthz from 127.0.0.1 as often as they need:
                            # not a connect flood (which would get an empty answer).
                            "--connects-per-minute", "100000", *options)
    return start


def test_a_nick_taken_on_one_node_is_refused_on_the_other_in_any_case(node):
    a, b = node("a"), node("b")
    a.ws().login("Alice", "#lobby")
    bob = b.ws().login("bob")
    for spelling in ("alice", "ALICE", "aLiCe"):
        err = bob.request({"type": "nick", "nick": spelling})
        assert (err["type"], err["code"]) == ("error", "nick_taken"), err
    # A first nick on a fresh text-mode connection is refused the same way.
    carol = b.line()
    carol.expect("Welcome")
    carol.send("/nick ALICE")
    carol.expect("nick_taken")


def test_two_nodes_racing_for_one_nick_exactly_one_wins_each_time(node):
    quick = ("--rate", "200", "--burst", "200")
    a, b = node("a", *quick), node("b", *quick)
    left, right = a.ws().login("left0"), b.ws().login("right0")
    wins = {"left": 0, "right": 0}
    for i in range(60):
        nick = f"Racer{i}"
        # Both requests are on the wire before either node answers.
        left.send_json({"type": "nick", "nick": nick, "id": f"l{i}"})
        right.send_json({"type": "nick", "nick": nick.lower(), "id": f"r{i}"})
        l_ans = left.expect(lambda e, i=i: isinstance(e, dict) and e.get("id") == f"l{i}")
        r_ans = right.expect(lambda e, i=i: isinstance(e, dict) and e.get("id") == f"r{i}")
        kinds = sorted([l_ans["type"], r_ans["type"]])
        assert kinds == ["ack", "error"], (nick, l_ans, r_ans)
        loser = r_ans if l_ans["type"] == "ack" else l_ans
        assert loser["code"] == "nick_taken", loser
        wins["left" if l_ans["type"] == "ack" else "right"] += 1
    # Both nodes won some (a race, not one node always first) is likely but not
    # promised; that the total is right is.
    assert wins["left"] + wins["right"] == 60


def test_who_and_rooms_on_one_node_list_the_other_nodes_users(node):
    a, b = node("a"), node("b")
    a.ws().login("alice", "#lobby")
    a.ws().login("ann", "#lobby")
    a.ws().login("al", "#elsewhere")
    bob = b.ws().login("bob", "#lobby")
    ack = bob.request({"type": "who", "room": "#lobby"})
    assert sorted(ack["nicks"]) == ["alice", "ann", "bob"], ack
    ack = bob.request({"type": "who", "room": "#elsewhere"})
    assert ack["nicks"] == ["al"], ack
    ack = bob.request({"type": "rooms"})
    assert ack["rooms"] == [{"room": "#elsewhere", "members": 1},
                            {"room": "#lobby", "members": 3}], ack
    # Text mode shows the same.
    text = b.line().login("tex")
    text.send("/who #lobby")
    line = text.expect("#lobby")
    for nick in ("alice", "ann", "bob"):
        assert nick in line


def test_kill_9_of_a_node_and_its_users_quit_within_the_bound(node, start_daemon):
    a, b = node("a"), node("b")
    a.ws().login("alice", "#lobby")
    a.ws().login("ann", "#dev")
    bob = b.ws().login("bob", "#lobby")
    dev = b.ws().login("dave", "#dev")
    ack = bob.request({"type": "who", "room": "#lobby"})
    assert sorted(ack["nicks"]) == ["alice", "bob"]
    a.kill()  # SIGKILL: no goodbye, its claims and memberships stay until they lapse
    start_daemon.started.remove(a)
    quit_ = bob.expect({"type": "quit", "nick": "alice"}, timeout=QUIT_BOUND)
    assert quit_["reason"] == "node stopped answering"
    dev.expect({"type": "quit", "nick": "ann"}, timeout=QUIT_BOUND)
    # Gone from every listing, and the nicks are free.
    assert bob.request({"type": "who", "room": "#lobby"})["nicks"] == ["bob"]
    assert bob.request({"type": "rooms"})["rooms"] == [{"room": "#dev", "members": 1},
                                                       {"room": "#lobby", "members": 1}]
    assert b.ws().login("alice")  # taken on b now
    # Shown once: no second quit for alice arrives on the next heartbeats.
    bob.poll(NODE_TIMEOUT / 3 * 2)
    assert not [e for e in bob.drain() if e.get("type") == "quit"]


def test_redis_cut_from_a_node_refuses_nick_changes_there_then_presence_comes_back(
        node, start_daemon, prefix):
    redis = Proxy(REDIS_HOST, REDIS_PORT)
    try:
        a = start_daemon("--redis", f"redis://127.0.0.1:{redis.port}/0", "--redis-prefix",
                         prefix, "--node-id", "a", "--node-timeout", str(NODE_TIMEOUT),
                         "--nick-interval", "0.0001",
                         # As node(): /healthz is polled every 20 ms (the rare flake
                         # was this node refusing the poll as a connect flood).
                         "--connects-per-minute", "100000")
        b = node("b")
        alice = a.ws().login("alice", "#lobby")
        ann = a.ws().login("ann", "#lobby")
        bob = b.ws().login("bob", "#lobby")
        redis.cut()
        a.wait_for(lambda: redis_state(a) == "unavailable", "a sees Redis go")
        # What needs the cluster is refused with a clear code; a new user too.
        err = alice.request({"type": "nick", "nick": "alicia"})
        assert (err["type"], err["code"]) == ("error", "cluster_unavailable"), err
        newcomer = a.ws()
        newcomer.expect({"type": "hello"})
        err = newcomer.request({"type": "nick", "nick": "newbie"})
        assert err["code"] == "cluster_unavailable", err
        # The people of this node keep chatting.
        assert alice.request({"type": "message", "room": "#lobby", "text": "still here"})[
            "type"] == "ack"
        ann.expect({"type": "message", "from": "alice", "text": "still here"})
        ack = ann.request({"type": "who", "room": "#lobby"})
        assert ack["nicks"] == ["alice", "ann"]
        # b gives a up within the bound: its users quit there, their nicks are free.
        bob.expect({"type": "quit", "nick": "alice"}, timeout=QUIT_BOUND)
        bob.expect({"type": "quit", "nick": "ann"}, timeout=QUIT_BOUND)
        b.ws().login("Ann")  # taken on b while a is away
        redis.restore()
        a.wait_for(lambda: redis_state(a) == "ok", "a reconnects", timeout=15)
        # b's users saw alice quit; now they see her join again.
        bob.expect({"type": "join", "room": "#lobby", "nick": "alice"}, timeout=5)
        # a put its state back: alice is a's again, ann (taken on b meanwhile) is renamed.
        notice = ann.expect(lambda e: e.get("type") == "notice"
                            and "held on another node" in e.get("text", ""), timeout=5)
        renamed = ann.expect({"type": "nick", "old": "ann"}, timeout=5)
        assert renamed["new"].startswith("Guest"), (notice, renamed)
        carol = b.ws().login("carol")
        err = carol.request({"type": "nick", "nick": "ALICE"})
        assert err["code"] == "nick_taken", err
        b.wait_for(lambda: "alice" in bob.request({"type": "who", "room": "#lobby"})["nicks"],
                   "b lists alice again", timeout=5)
        # And the nick changes a refused are possible again.
        assert alice.request({"type": "nick", "nick": "alicia"})["type"] == "ack"
    finally:
        redis.close()


def test_three_nodes_one_dies_each_survivors_user_sees_its_quit_once(node, start_daemon):
    a, b, c = node("a"), node("b"), node("c")
    a.ws().login("alice", "#lobby")
    bob = b.ws().login("bob", "#lobby")
    carol = c.ws().login("carol", "#lobby")
    assert sorted(carol.request({"type": "who", "room": "#lobby"})["nicks"]) == [
        "alice", "bob", "carol"]
    a.kill()
    start_daemon.started.remove(a)
    # One survivor removes a's users and publishes their quits; both show them.
    for user in (bob, carol):
        user.expect({"type": "quit", "nick": "alice"}, timeout=QUIT_BOUND)
    for user in (bob, carol):
        user.poll(NODE_TIMEOUT / 3 * 2)  # two more heartbeats of every survivor
        assert not [e for e in user.drain() if e.get("type") == "quit"]
    assert sorted(bob.request({"type": "who", "room": "#lobby"})["nicks"]) == ["bob", "carol"]
