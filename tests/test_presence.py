"""chatd.presence against the real Redis server: nick claims, membership, dead
nodes and a cut link, with two or three nodes sharing one unique key prefix.

The heartbeat runs on a Clock; a node's death is its alive key going, which is
what its expiry does (deleted here rather than waited for).
"""

import pytest
from proxies import Proxy
from redishelp import REDIS_HOST, REDIS_PORT, REDIS_URL, RedisTestCase
from twisted.internet import reactor
from twisted.internet.defer import DeferredList, inlineCallbacks
from twisted.internet.task import Clock, deferLater

from chatd.errors import ChatError
from chatd.presence import ClusterPresence, LocalPresence
from chatd.redislink import RedisLink


class Node:
    """One node's presence, with the local state a service would report."""

    def __init__(self, test, name, url=REDIS_URL, node_timeout=3.0):
        self.name = name
        self.link = RedisLink(reactor, url, test.prefix, name, timeout=2.0)
        self.clock = Clock()
        self.presence = ClusterPresence(self.link, name, self.clock, node_timeout)
        self.nicks = {}  # key -> nick
        self.rooms = {}  # room key -> (name, {nick key: nick})
        self.lost = []  # (nick, sorted room keys) shown as quit
        self.conflicts = []
        self.presence.bind(lambda: (dict(self.nicks), {k: (n, dict(m)) for k, (n, m)
                                                       in self.rooms.items()}),
                           lambda nick, keys: self.lost.append((nick, sorted(keys))),
                           self.conflict)
        self.link.startService()
        self.presence.start()
        test.addCleanup(self.link.stopService)

    def conflict(self, key):
        self.conflicts.append(key)
        self.nicks.pop(key, None)

    @inlineCallbacks
    def take(self, nick):
        ok = yield self.presence.claim(nick.lower(), nick)
        if ok:
            self.nicks[nick.lower()] = nick
        return ok

    def join(self, room, nick):
        name, members = self.rooms.setdefault(room.lower(), (room, {}))
        members[nick.lower()] = nick
        self.presence.members_changed(room.lower(), name, len(members), [(nick.lower(), nick)])

    def part(self, room, nick):
        name, members = self.rooms[room.lower()]
        members.pop(nick.lower())
        self.presence.members_changed(room.lower(), name, len(members), (), [nick.lower()])
        if not members:
            del self.rooms[room.lower()]

    def synced(self):
        return self.link.up and self.presence._synced  # noqa: SLF001 (test reads state)


class PresenceTests(RedisTestCase):
    @inlineCallbacks
    def nodes(self, *names, **kw):
        nodes = [Node(self, n, **kw) for n in names]
        yield self.until(lambda: all(n.synced() for n in nodes), "every node in the cluster")
        return nodes

    @inlineCallbacks
    def settle(self, node):
        """Everything this node sent has been answered (replies come in order)."""
        yield node.link.command("PING")

    @inlineCallbacks
    def test_a_nick_taken_on_one_node_is_refused_on_another_in_any_case(self):
        a, b = yield self.nodes("a", "b")
        assert (yield a.take("Alice")) is True
        assert (yield b.take("ALICE")) is False
        assert (yield b.take("alice")) is False
        assert (yield a.take("Alice")) is True  # its own claim again: still its own
        a.presence.release("alice")
        yield self.settle(a)
        assert (yield b.take("aLiCe")) is True
        assert (yield a.take("alice")) is False

    @inlineCallbacks
    def test_an_accounts_owner_logging_in_takes_its_nick_whoever_holds_it(self):
        a, b = yield self.nodes("a", "b")
        assert (yield a.take("alice")) is True
        b.presence.assert_claim("alice", "Alice", force=True)
        yield self.settle(b)
        assert (yield a.presence.claim("alice", "alice")) is False
        assert (yield b.presence.claim("alice", "Alice")) is True
        assert b.conflicts == []

    @inlineCallbacks
    def test_racing_nodes_exactly_one_wins_every_time(self):
        a, b, c = yield self.nodes("a", "b", "c")
        for i in range(100):
            nick = f"racer{i}"
            results = yield DeferredList([n.presence.claim(nick, nick) for n in (a, b, c)],
                                         consumeErrors=True)
            wins = [ok for success, ok in results if success and ok]
            assert all(success for success, _ in results)
            assert len(wins) == 1, (nick, results)

    @inlineCallbacks
    def test_who_and_rooms_list_the_other_nodes_members(self):
        a, b = yield self.nodes("a", "b")
        yield a.take("alice")
        yield b.take("bob")
        a.join("#Lobby", "alice")
        a.join("#Lobby", "ann")
        b.join("#Lobby", "bob")
        b.join("#other", "bob")
        yield self.settle(a)
        yield self.settle(b)
        # Each node asks for the others' members (its own come from its rooms).
        assert sorted((yield b.presence.who("#lobby"))) == ["alice", "ann"]
        assert (yield a.presence.who("#lobby")) == ["bob"]
        assert (yield a.presence.who("#other")) == ["bob"]
        assert (yield a.presence.who("#nowhere")) == []
        assert (yield b.presence.rooms()) == {"#lobby": ("#Lobby", 2)}
        assert (yield a.presence.rooms()) == {"#lobby": ("#Lobby", 1), "#other": ("#other", 1)}
        a.part("#Lobby", "ann")
        yield self.settle(a)
        assert (yield b.presence.who("#lobby")) == ["alice"]
        assert (yield b.presence.rooms()) == {"#lobby": ("#Lobby", 1)}

    @inlineCallbacks
    def test_a_heartbeat_keeps_the_node_alive_for_two_beats(self):
        a, = yield self.nodes("a", node_timeout=3.0)
        assert a.presence.interval == 1.0
        ttl = yield a.link.command("PTTL", a.link.key("node:a"))
        assert 1000 < ttl <= 2000
        yield a.link.command("PEXPIRE", a.link.key("node:a"), 10)
        yield deferLater(reactor, 0.05, lambda: None)
        assert (yield a.link.command("EXISTS", a.link.key("node:a"))) == 0
        a.clock.advance(1.0)  # the next heartbeat brings it back
        yield self.settle(a)
        ttl = yield a.link.command("PTTL", a.link.key("node:a"))
        assert 1000 < ttl <= 2000

    @inlineCallbacks
    def test_a_heartbeat_is_one_redis_call_whatever_the_number_of_users(self):
        a, = yield self.nodes("a")
        for i in range(200):
            yield a.take(f"user{i}")
            a.join(f"#room{i % 20}", f"user{i}")
        yield self.settle(a)
        calls = []
        command = a.link.command
        a.link.command = lambda *args: calls.append(args[0]) or command(*args)
        for _ in range(3):
            a.clock.advance(a.presence.interval)
            yield self.settle(a)
        assert calls == ["EVAL", "PING"] * 3  # each beat one script (then our PING)

    @inlineCallbacks
    def test_a_dead_nodes_users_are_shown_quitting_once_and_their_nicks_freed(self):
        a, b, c = yield self.nodes("a", "b", "c")
        yield a.take("alice")
        yield a.take("ann")
        a.join("#lobby", "alice")
        a.join("#dev", "alice")
        a.join("#lobby", "ann")
        b.join("#lobby", "bob")
        yield self.settle(a)
        for n in (a, b, c):
            n.clock.advance(1.0)
            yield self.settle(n)
        assert (yield b.presence.who("#lobby")) == ["alice", "ann"]
        # a is killed: no more heartbeats, and its alive key expires.
        a.presence._beat.stop()  # noqa: SLF001
        yield a.link.command("DEL", a.link.key("node:a"))
        # The others are still "live" to b until its next heartbeat looks.
        b.clock.advance(1.0)
        yield self.settle(b)
        yield self.until(lambda: b.lost, "b reaps a")
        c.clock.advance(1.0)
        yield self.settle(c)
        yield self.settle(c)
        assert sorted(b.lost) == [("alice", ["#dev", "#lobby"]), ("ann", ["#lobby"])]
        assert c.lost == []  # b got there first: the quits are shown once, by b's bus
        assert (yield c.presence.who("#lobby")) == ["bob"]
        assert (yield c.presence.rooms()) == {"#lobby": ("#lobby", 1)}
        assert (yield c.take("Alice")) is True

    @inlineCallbacks
    def test_listings_skip_a_dead_node_before_it_is_reaped(self):
        a, b = yield self.nodes("a", "b")
        a.join("#lobby", "alice")
        yield self.settle(a)
        assert (yield b.presence.who("#lobby")) == ["alice"]
        assert (yield b.presence.rooms()) == {"#lobby": ("#lobby", 1)}
        a.presence._beat.stop()  # noqa: SLF001
        yield a.link.command("DEL", a.link.key("node:a"))  # a has died, not yet reaped
        assert (yield b.presence.who("#lobby")) == []
        assert (yield b.presence.rooms()) == {}

    @inlineCallbacks
    def test_a_clean_stop_frees_everything_at_once(self):
        a, b = yield self.nodes("a", "b")
        yield a.take("alice")
        a.join("#lobby", "alice")
        yield self.settle(a)
        yield a.presence.stop()
        assert (yield b.take("alice")) is True
        assert (yield b.presence.who("#lobby")) == []
        b.clock.advance(1.0)
        yield self.settle(b)
        assert b.lost == []  # a said goodbye itself: nothing to reap

    @inlineCallbacks
    def test_redis_away_refuses_claims_and_listings_then_resyncs(self):
        proxy = Proxy(REDIS_HOST, REDIS_PORT)
        self.addCleanup(proxy.close)
        a = Node(self, "a", url=f"redis://127.0.0.1:{proxy.port}/0")
        b = Node(self, "b")
        yield self.until(lambda: a.synced() and b.synced(), "both nodes in")
        yield a.take("alice")
        yield a.take("ann")
        a.join("#lobby", "alice")
        yield self.settle(a)
        proxy.cut()
        yield self.until(lambda: not a.link.up, "a sees the cut")
        for call in (lambda: a.presence.claim("carol", "carol"),
                     lambda: a.presence.who("#lobby"), a.presence.rooms):
            with pytest.raises(ChatError) as e:
                yield call()
            assert e.value.code == "cluster_unavailable"
        # Meanwhile a's claims lapse and b reaps it, then takes "ann".
        yield b.link.command("DEL", b.link.key("node:a"))
        b.clock.advance(1.0)
        yield self.until(lambda: b.lost, "b reaps a")
        assert (yield b.take("ann")) is True
        # On a, alice joins another room and a new local user appears meanwhile.
        a.join("#dev", "alice")
        a.nicks["dave"] = "dave"
        proxy.restore()
        yield self.until(lambda: a.synced(), "a back in the cluster")
        yield self.settle(a)
        # ann went to b while a was away: b keeps it, a is told to rename its holder.
        assert a.conflicts == ["ann"]
        assert (yield b.take("alice")) is False
        assert (yield b.take("dave")) is False
        assert sorted((yield b.presence.who("#lobby"))) == ["alice"]
        assert (yield b.presence.who("#dev")) == ["alice"]


def test_one_node_grants_every_claim_and_lists_nobody_else():
    p = LocalPresence()
    assert p.claim("alice", "alice").result is True
    assert p.who("#x").result == []
    assert p.rooms().result == {}
    assert not p.clustered
