"""chatd.redisbus: two chat services in one process, each with its own link to
the real Redis (one unique prefix per test), sharing one store as a cluster
shares PostgreSQL.  Clients are in-memory line clients; only Redis is real."""

import json

import pytest
from conftest import START, LineClient
from fakes import InlinePasswords
from proxies import Proxy
from redishelp import REDIS_HOST, REDIS_PORT, REDIS_URL, RedisTestCase
from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.task import Clock, deferLater

from chatd.dispatch import Dispatcher
from chatd.events import Message, Notice
from chatd.limits import Limits
from chatd.redisbus import RedisBus, decode_event, encode_event
from chatd.redislink import RedisLink
from chatd.service import ChatService
from chatd.store.memory import MemoryStore


def test_every_event_survives_the_envelope():
    for event in (Message("#a", "bob", "hi ☃", 7, 1.5, "action"), Notice("x")):
        name, values = encode_event(event)
        assert decode_event(name, json.loads(json.dumps(values))) == event


class Node:
    """One chat node: its service (on a fake clock), its dispatcher, its Redis link."""

    def __init__(self, test, name, store, url=REDIS_URL):
        self.clock = Clock()
        self.clock.advance(START)
        self.link = RedisLink(reactor, url, test.prefix, name, timeout=1.0)
        self.publishes = []  # every channel this node published on
        publish = self.link.publish

        def counted(channel, data):
            self.publishes.append(channel)
            return publish(channel, data)
        self.link.publish = counted

        def make_bus(service, local):
            return RedisBus(self.link, local, service.rooms, service.nicks, service.sessions,
                            recover=lambda key, since: service.store.history(
                                key, since=since, limit=500),
                            last_mid=lambda: service.last_mid, note_mid=service.saw_mid,
                            clock=self.clock)
        self.service = ChatService(Limits(rate=1000, burst=1000), clock=self.clock, store=store,
                                   passwords=InlinePasswords(), make_bus=make_bus,
                                   server_name=name)
        self.dispatcher = Dispatcher(self.service)
        self.link.startService()
        test.addCleanup(self.link.stopService)
        self._port = 40000

    def client(self, nick, room=None) -> "Client":
        self._port += 1
        c = Client(LineClient(self, "10.0.0.1", self._port))
        c.send("/json")
        c.line.raw()  # the greeting, as text
        c.send_json({"type": "nick", "nick": nick})
        if room is not None:
            c.send_json({"type": "join", "room": room})
        c.take()
        return c


class Client:
    def __init__(self, line):
        self.line = line
        self.seen = []

    def send(self, text):
        self.line.send(text)

    def send_json(self, obj):
        self.line.send_json(obj)

    def take(self) -> list:
        """Every event since the last take."""
        self.seen += [json.loads(x) for x in self.line.lines()]
        out, self.seen = self.seen, []
        return out

    def poll(self) -> list:
        self.seen += [json.loads(x) for x in self.line.lines()]
        return self.seen

    def of(self, kind) -> list:
        return [e for e in self.poll() if e["type"] == kind]


class NodesTestCase(RedisTestCase):
    """Nodes on one fresh prefix and one shared store, and bounded waits."""

    timeout = 40

    def setUp(self):
        super().setUp()
        store = MemoryStore()
        store.open()
        self.store = store

    @inlineCallbacks
    def nodes(self, *names, urls=None):
        nodes = [Node(self, name, self.store, (urls or {}).get(name, REDIS_URL))
                 for name in names]
        yield self.until(lambda: all(n.link.up for n in nodes), "every link up")
        return nodes

    @inlineCallbacks
    def settled(self, *nodes):
        """Every message published so far has been handled by every node: a
        PING on each subscriber connection comes back after them."""
        for n in nodes:
            yield n.link.command("PING")
        yield deferLater(reactor, 0.05, lambda: None)



class BusTests(NodesTestCase):
    @inlineCallbacks
    def test_room_message_reaches_other_nodes_with_one_publish(self):
        a, b = yield self.nodes("a", "b")
        alice, carol = a.client("alice", "#x"), a.client("carol", "#x")
        bob = b.client("bob", "#x")
        yield self.settled(a, b)
        alice.take(), bob.take(), carol.take()
        a.publishes.clear()
        alice.send_json({"type": "message", "room": "#x", "text": "hello all"})
        yield self.until(lambda: bob.of("message"), "bob gets the message")
        got = bob.of("message")[0]
        assert (got["from"], got["text"], got["room"]) == ("alice", "hello all", "#x")
        # One publish for the room, whatever the number of members on either node.
        assert a.publishes == ["room:#x"]
        yield self.settled(a, b)
        assert len(carol.of("message")) == 1 and len(bob.of("message")) == 1
        # The sender's own node did not deliver it a second time from Redis.
        assert len(alice.of("message")) == 1

    @inlineCallbacks
    def test_a_node_subscribes_only_to_its_rooms_and_nicks(self):
        a, b = yield self.nodes("a", "b")
        a.client("alice", "#x")
        assert "room:#x" in a.link.subscribed() and "user:alice" in a.link.subscribed()
        assert "room:#x" not in b.link.subscribed()
        bob = b.client("bob", "#x")
        assert "room:#x" in b.link.subscribed()
        bob.send_json({"type": "part", "room": "#x"})
        assert "room:#x" not in b.link.subscribed()
        assert "user:bob" in b.link.subscribed()
        b.clock.advance(60)  # past --nick-interval
        bob.send_json({"type": "nick", "nick": "robert"})
        assert "user:bob" not in b.link.subscribed() and "user:robert" in b.link.subscribed()

    @inlineCallbacks
    def test_one_senders_messages_arrive_in_order_on_every_node(self):
        a, b, c = yield self.nodes("a", "b", "c")
        alice = a.client("alice", "#x")
        bob, carl = b.client("bob", "#x"), c.client("carl", "#x")
        yield self.settled(a, b, c)
        bob.take(), carl.take()
        for i in range(200):
            alice.send_json({"type": "message", "room": "#x", "text": f"m{i}"})
        want = [f"m{i}" for i in range(200)]
        assert not alice.of("error"), alice.of("error")[:3]
        for who in (bob, carl):
            yield self.until(lambda who=who: len(who.of("message")) >= 200, "200 messages")
            assert [m["text"] for m in who.of("message")] == want
            mids = [m["mid"] for m in who.of("message")]
            assert mids == sorted(mids) and len(set(mids)) == 200

    @inlineCallbacks
    def test_private_nick_change_and_quit_across_nodes(self):
        a, b = yield self.nodes("a", "b")
        alice = a.client("alice", "#x")
        bob = b.client("bob", "#x")
        yield self.settled(a, b)
        alice.take(), bob.take()
        alice.send_json({"type": "private", "to": "bob", "text": "psst", "id": 1})
        yield self.until(lambda: bob.of("private"), "bob gets the private message")
        assert bob.of("private")[0]["from"] == "alice"
        yield self.until(lambda: alice.of("ack"), "alice's ack")
        assert alice.of("ack")[0]["request"] == "private"
        alice.send_json({"type": "private", "to": "nobody", "text": "?", "id": 2})
        yield self.until(lambda: alice.of("error"), "an error for nobody")
        assert alice.of("error")[0]["code"] == "no_such_nick"
        b.publishes.clear()
        b.clock.advance(60)  # past --nick-interval
        bob.send_json({"type": "nick", "nick": "bobby"})
        yield self.until(lambda: alice.of("nick"), "alice sees the nick change")
        assert alice.of("nick")[0]["new"] == "bobby"
        bob.line.proto.transport.loseConnection()
        yield self.until(lambda: alice.of("quit"), "alice sees bob quit")
        assert alice.of("quit")[0]["nick"] == "bobby"
        # One publish each, on the one room they share (one room: no script).
        assert b.publishes.count("room:#x") == 2  # one for the nick, one for the quit
        yield self.settled(a, b)
        assert len(alice.of("nick")) == 1 and len(alice.of("quit")) == 1

    @inlineCallbacks
    def test_outage_local_chat_goes_on_and_nothing_acknowledged_is_lost(self):
        proxy = Proxy(REDIS_HOST, REDIS_PORT)
        self.addCleanup(proxy.close)
        a, b = yield self.nodes("a", "b", urls={"a": f"redis://127.0.0.1:{proxy.port}/0"})
        alice, amy = a.client("alice", "#x"), a.client("amy", "#x")
        bob = b.client("bob", "#x")
        alice.send_json({"type": "message", "room": "#x", "text": "before"})
        yield self.until(lambda: bob.of("message"), "the first message")
        yield self.settled(a, b)
        for c in (alice, amy, bob):
            c.take()
        proxy.cut()
        yield self.until(lambda: not a.link.up, "node a sees the cut")
        # Local chat on the cut node goes on.
        alice.send_json({"type": "message", "room": "#x", "text": "a1", "id": 1})
        assert [m["text"] for m in amy.of("message")] == ["a1"]
        # What needs the other nodes is refused, clearly.
        alice.send_json({"type": "private", "to": "bob", "text": "psst", "id": 2})
        yield self.until(lambda: alice.of("error"), "a refusal")
        assert alice.of("error")[0]["code"] == "cluster_unavailable"
        # The other node goes on too, and stores what it is sent.
        bob.send_json({"type": "message", "room": "#x", "text": "b1"})
        bob.send_json({"type": "message", "room": "#x", "text": "b2"})
        alice.send_json({"type": "message", "room": "#x", "text": "a2", "id": 3})
        proxy.restore()
        yield self.until(lambda: a.link.up, "node a back")
        yield self.until(lambda: len(bob.of("message")) >= 4, "bob gets a1 and a2")
        yield self.until(lambda: len(amy.of("message")) >= 4, "amy gets b1 and b2")
        yield self.settled(a, b)
        # Everything acknowledged, everywhere, once; a sender's order kept.
        texts = [m["text"] for m in bob.of("message")]
        assert sorted(texts) == ["a1", "a2", "b1", "b2"]
        assert texts.index("a1") < texts.index("a2") and texts.index("b1") < texts.index("b2")
        texts = [m["text"] for m in amy.of("message")]
        assert sorted(texts) == ["a1", "a2", "b1", "b2"]
        assert texts.index("b1") < texts.index("b2")
        # And live again afterwards.
        bob.send_json({"type": "message", "room": "#x", "text": "after"})
        yield self.until(lambda: "after" in [m["text"] for m in amy.of("message")],
                         "live after the outage")
        yield self.settled(a, b)
        assert [m["text"] for m in amy.of("message")].count("after") == 1

    @inlineCallbacks
    def test_a_message_committed_before_a_new_rooms_subscription_took_is_read_back(self):
        (b,) = yield self.nodes("b")
        bob = b.client("bob", "#new")  # the room opens here: SUBSCRIBE is on its way
        # Committed by another node in that window, and published to nobody here.
        self.store.append_message("#new", "#new", "alice", "in the gap", "message", START)
        yield self.until(lambda: bob.of("message"), "the message is read back")
        yield self.settled(b)
        got = bob.of("message")
        assert [(m["from"], m["text"]) for m in got] == [("alice", "in the gap")]
        assert not got[0].get("history")

    @inlineCallbacks
    def test_live_messages_wait_for_the_older_ones_being_read_back(self):
        store = self.store
        held = HeldHistory(store)
        b = Node(self, "b", store)
        a = Node(self, "a", held)
        yield self.until(lambda: a.link.up and b.link.up, "links up")
        bob = b.client("bob", "#x")
        yield self.settled(a, b)
        alice = a.client("alice", "#x")  # the room opens on a: its subscription is on its way
        store.append_message("#x", "#x", "carl", "older", "message", START)  # never published
        held.release()  # alice's join history
        yield self.until(lambda: held.held, "node a reads the room back")
        bob.send_json({"type": "message", "room": "#x", "text": "newer"})
        yield self.settled(a, b)
        assert alice.of("message") == []  # held behind the read-back
        held.release()
        yield self.until(lambda: len(alice.of("message")) >= 2, "both messages")
        assert [m["text"] for m in alice.of("message")] == ["older", "newer"]


class SilentLinkTests(NodesTestCase):
    """A link that goes silent (a black hole, not a closed connection)."""

    @inlineCallbacks
    def test_messages_published_into_a_black_hole_are_sent_again(self):
        proxy = Proxy(REDIS_HOST, REDIS_PORT)
        self.addCleanup(proxy.close)
        a, b = yield self.nodes("a", "b", urls={"a": f"redis://127.0.0.1:{proxy.port}/0"})
        alice = a.client("alice", "#x")
        bob = b.client("bob", "#x")
        yield self.settled(a, b)
        bob.take()
        proxy.black_hole()
        alice.send_json({"type": "message", "room": "#x", "text": "into the void"})
        # No byte moves and nothing is closed: the ping's deadline finds it.
        yield self.until(lambda: not a.link.up, "the silent link is found")
        proxy.forward()
        yield self.until(lambda: a.link.up, "the link is back")
        yield self.until(lambda: bob.of("message"), "the message arrives after all")
        yield self.settled(a, b)
        assert [m["text"] for m in bob.of("message")] == ["into the void"]


class HeldHistory:
    """A store whose history reads wait until the test releases them."""

    def __init__(self, store):
        self.store = store
        self.held = []

    def __getattr__(self, name):
        return getattr(self.store, name)

    def history(self, *args, **kw):
        d = Deferred()
        self.held.append((d, self.store.history(*args, **kw)))
        return d

    def release(self):
        for d, rows in self.held:
            rows.addCallback(d.callback)
        self.held = []


def test_a_message_both_in_a_joiners_history_and_arriving_live_is_shown_once():
    """With several nodes, a message committed below the join fence may still be
    on its way from another node when the joiner's history is read."""
    store = MemoryStore()
    store.open()
    held = HeldHistory(store)
    clock = Clock()
    clock.advance(START)
    service = ChatService(clock=clock, store=held, passwords=InlinePasswords())
    node = type("N", (), {"service": service, "dispatcher": Dispatcher(service)})
    alice = Client(LineClient(node, "10.0.0.1", 40001))
    bob = Client(LineClient(node, "10.0.0.2", 40002))
    for c, nick in ((alice, "alice"), (bob, "bob")):
        c.send("/json")
        c.line.raw()
        c.send_json({"type": "nick", "nick": nick})
    alice.send_json({"type": "join", "room": "#x"})
    held.release()
    # Another node committed id 1 and this node has seen a higher id already.
    store.append_message("#x", "#x", "carol", "from elsewhere", "message", START)
    service.saw_mid(2)
    bob.send_json({"type": "join", "room": "#x"})  # history read: it has id 1
    service.bus.publish_room("#x", Message("#x", "carol", "from elsewhere", 1, START))
    held.release()
    got = [e for e in bob.poll() if e["type"] == "message"]
    assert [(m["text"], m.get("history")) for m in got] == [("from elsewhere", True)]


class FakeLink:
    """Only what the bus needs of a link, always down: nothing leaves."""

    node_id = "n"
    up = False

    def subscribe(self, *args, **kw):
        pass

    def unsubscribe(self, *args):
        pass

    def add_listener(self, **kw):
        pass


def test_the_outbox_is_bounded_and_keeps_the_newest():
    from chatd.bus import LocalBus
    from chatd.nicks import Nicks
    from chatd.rooms import Rooms

    rooms, nicks = Rooms(), Nicks(24)
    bus = RedisBus(FakeLink(), LocalBus(rooms, nicks), rooms, nicks, set(), outbox=3)
    for i in range(5):
        bus.publish_all(Notice(f"n{i}"))
    held = [json.loads(payload)["v"] for _seq, _channel, payload in bus._outbox]  # noqa: SLF001
    assert held == [["n2"], ["n3"], ["n4"]]


pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def test_a_nodes_own_publications_come_back_and_are_dropped_unparsed_others_are_shown(
        monkeypatch):
    # Redis hands a node its own publications on the rooms it is subscribed to;
    # they were delivered when published, so each is dropped by its first bytes.
    from chatd import redisbus
    from chatd.bus import LocalBus
    from chatd.nicks import Nicks
    from chatd.rooms import Rooms

    def node():
        rooms, nicks = Rooms(), Nicks(24)
        local = LocalBus(rooms, nicks)
        shown = []
        local.publish_all = shown.append
        return RedisBus(FakeLink(), local, rooms, nicks, set()), shown

    (bus, shown), (other, _) = node(), node()
    bus.publish_all(Notice("mine"))  # the link is down: it waits in the outbox
    other.publish_all(Notice("theirs"))
    mine, theirs = bus._outbox[-1][2], other._outbox[-1][2]  # noqa: SLF001
    shown.clear()
    parsed = []
    loads = json.loads
    monkeypatch.setattr(redisbus.json, "loads", lambda data: parsed.append(data) or loads(data))
    bus._received(mine)  # noqa: SLF001
    assert (shown, parsed) == ([], [])
    bus._received(theirs)  # noqa: SLF001
    assert shown == [Notice("theirs")]
