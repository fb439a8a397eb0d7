"""The chat service with cluster presence (chatd.presence) against the real Redis:
two services, as two nodes would be, sharing one unique key prefix.  What is
asserted is what their clients receive.

Each node's bus is the local one here (the Redis bus is tested on its own), so
what crosses nodes is only presence: nicks, /who, /rooms, and the quits a
survivor shows for a dead node's users to its own members.
"""

from proxies import Proxy
from redishelp import REDIS_HOST, REDIS_PORT, REDIS_URL, RedisTestCase
from test_service import Member
from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import Clock

from chatd.dispatch import Dispatcher
from chatd.presence import ClusterPresence
from chatd.redislink import RedisLink
from chatd.service import ChatService


class Node:
    def __init__(self, test, name, url=REDIS_URL):
        self.clock = Clock()
        self.link = RedisLink(reactor, url, test.prefix, name, timeout=2.0)
        self.presence = ClusterPresence(self.link, name, self.clock, node_timeout=3.0)
        self.service = ChatService(clock=self.clock, presence=self.presence)
        self.dispatcher = Dispatcher(self.service)
        self.link.startService()
        self.service.startService()
        test.addCleanup(self.link.stopService)

    def synced(self):
        return self.link.up and self.presence._synced  # noqa: SLF001 (test reads state)

    @inlineCallbacks
    def settle(self):
        """Every Redis request this node made so far is answered (in order)."""
        yield self.link.command("PING")
        yield self.link.command("PING")

    def beat(self):
        self.clock.advance(self.presence.interval)


class ClusterServiceTests(RedisTestCase):
    @inlineCallbacks
    def nodes(self, *names):
        nodes = [Node(self, n) for n in names]
        yield self.until(lambda: all(n.synced() for n in nodes), "every node in the cluster")
        return nodes

    @inlineCallbacks
    def ask(self, node, member, kind, **fields):
        """One request, answered once Redis has (the claim, the listing)."""
        member.events()
        node.dispatcher.handle(member.session, {"type": kind, **fields})
        yield node.settle()
        return member.events()

    @inlineCallbacks
    def person(self, node, nick, room=None):
        m = Member(node)
        events = yield self.ask(node, m, "nick", nick=nick)
        assert events[-1]["type"] == "ack", events
        node.clock.advance(node.service.limits.nick_interval)  # free to change it again
        if room:
            yield self.ask(node, m, "join", room=room)
        return m

    @inlineCallbacks
    def test_a_nick_held_on_one_node_is_refused_on_the_other_in_any_case(self):
        a, b = yield self.nodes("a", "b")
        yield self.person(a, "Alice")
        bob = yield self.person(b, "bob")
        for spelling in ("alice", "ALICE", "Alice"):
            events = yield self.ask(b, bob, "nick", nick=spelling)
            assert [(e["type"], e.get("code")) for e in events] == [("error", "nick_taken")]
        assert b.service.nicks.get("bob") is bob.session
        # A new connection's first nick is checked the same way.
        late = Member(b)
        events = yield self.ask(b, late, "nick", nick="aLiCe")
        assert events[-1]["code"] == "nick_taken"

    @inlineCallbacks
    def test_a_nick_let_go_on_one_node_can_be_taken_on_the_other(self):
        a, b = yield self.nodes("a", "b")
        alice = yield self.person(a, "alice")
        yield self.ask(a, alice, "nick", nick="alicia")  # alice is free again
        a.clock.advance(10)
        bob = yield self.person(b, "bob")
        b.clock.advance(10)
        events = yield self.ask(b, bob, "nick", nick="Alice")
        assert events[-1]["type"] == "ack"
        events = yield self.ask(a, alice, "nick", nick="bob")  # bob went with the change
        assert events[-1]["type"] == "ack"
        a.service.disconnected(alice.session)  # a quit frees the nick too
        yield a.settle()
        carol = yield self.person(b, "carol")
        b.clock.advance(10)
        events = yield self.ask(b, carol, "nick", nick="bob")
        assert events[-1]["type"] == "ack"

    @inlineCallbacks
    def test_who_and_rooms_show_everyone_on_every_node(self):
        a, b = yield self.nodes("a", "b")
        yield self.person(a, "alice", "#lobby")
        yield self.person(a, "ann", "#lobby")
        bob = yield self.person(b, "bob", "#lobby")
        yield self.person(a, "al", "#elsewhere")
        yield a.settle()
        # Joining, the member list counts every node.
        carl = yield self.person(b, "carl")
        events = yield self.ask(b, carl, "join", room="#lobby")
        assert events[-1]["type"] == "ack" and events[-1]["nicks"] == [
            "bob", "carl", "alice", "ann"], events
        yield self.ask(b, carl, "part", room="#lobby")
        [ack] = yield self.ask(b, bob, "who")
        assert ack["nicks"] == ["bob", "alice", "ann"]
        [ack] = yield self.ask(b, bob, "who", room="#elsewhere")  # nobody here is in it
        assert ack["nicks"] == ["al"]
        [ack] = yield self.ask(b, bob, "rooms")
        assert ack["rooms"] == [{"room": "#elsewhere", "members": 1},
                                {"room": "#lobby", "members": 3}]
        [err] = yield self.ask(b, bob, "who", room="#nowhere")
        assert err["code"] == "no_such_room"

    @inlineCallbacks
    def test_a_dead_nodes_users_quit_in_front_of_the_survivors_members(self):
        a, b = yield self.nodes("a", "b")
        yield self.person(a, "alice", "#lobby")
        bob = yield self.person(b, "bob", "#lobby")
        # a is killed: its heartbeat stops and its alive key runs out.
        a.presence._beat.stop()  # noqa: SLF001
        yield a.link.command("DEL", a.link.key("node:a"))
        bob.events()
        b.beat()
        yield b.settle()
        yield self.until(lambda: bob.sink.payloads, "bob sees something")
        [quit_] = bob.events()
        assert (quit_["type"], quit_["nick"], quit_["reason"]) == (
            "quit", "alice", "node stopped answering")
        [ack] = yield self.ask(b, bob, "who")
        assert ack["nicks"] == ["bob"]
        b.clock.advance(10)  # past --nick-interval
        events = yield self.ask(b, bob, "nick", nick="alice")  # its nick is free now
        assert events[-1]["type"] == "ack"

    @inlineCallbacks
    def test_redis_away_refuses_nick_changes_keeps_chat_and_resyncs(self):
        proxy = Proxy(REDIS_HOST, REDIS_PORT)
        self.addCleanup(proxy.close)
        a, b = Node(self, "a", url=f"redis://127.0.0.1:{proxy.port}/0"), Node(self, "b")
        yield self.until(lambda: a.synced() and b.synced(), "both nodes in")
        alice = yield self.person(a, "alice", "#lobby")
        ann = yield self.person(a, "ann", "#lobby")
        proxy.cut()
        yield self.until(lambda: not a.link.up, "a sees the cut")
        a.clock.advance(10)
        alice.events()
        a.dispatcher.handle(alice.session, {"type": "nick", "nick": "alicia", "id": 1})
        [err] = alice.events()
        assert (err["type"], err["code"]) == ("error", "cluster_unavailable")
        newcomer = Member(a)
        a.dispatcher.handle(newcomer.session, {"type": "nick", "nick": "newbie"})
        assert newcomer.events()[-1]["code"] == "cluster_unavailable"
        # Chat among the people of this node goes on.
        a.dispatcher.handle(alice.session, {"type": "message", "room": "#lobby", "text": "hi"})
        assert [e["text"] for e in ann.events() if e["type"] == "message"] == ["hi"]
        a.dispatcher.handle(ann.session, {"type": "who"})
        notice, ack = ann.events()
        assert notice["type"] == "notice" and "only the members" in notice["text"]
        assert ack["nicks"] == ["alice", "ann"]
        # A room nobody here is in may exist elsewhere: that cannot be said now.
        a.dispatcher.handle(ann.session, {"type": "who", "room": "#elsewhere"})
        assert ann.events()[-1]["code"] == "cluster_unavailable"
        a.dispatcher.handle(ann.session, {"type": "rooms"})
        assert ann.events()[-1]["rooms"] == [{"room": "#lobby", "members": 2}]
        # Meanwhile a is given up as dead by b, and someone on b takes "ann".
        yield b.link.command("DEL", b.link.key("node:a"))
        b.beat()
        yield b.settle()
        yield self.person(b, "Ann")
        proxy.restore()
        yield self.until(lambda: a.synced(), "a back in the cluster")
        yield a.settle()
        yield a.settle()
        # b kept "Ann"; the ann of node a is renamed, and told why.
        events = ann.events()
        notice = [e for e in events if e["type"] == "notice"]
        assert notice and "held on another node" in notice[0]["text"]
        assert ann.session.nick.startswith("Guest")
        # alice is a's again, everywhere: b refuses it and lists her.
        carol = yield self.person(b, "carol", "#lobby")
        b.clock.advance(10)
        events = yield self.ask(b, carol, "nick", nick="alice")
        assert events[-1]["code"] == "nick_taken"
        [ack] = yield self.ask(b, carol, "who")
        assert sorted(ack["nicks"]) == sorted(["carol", "alice", ann.session.nick])
