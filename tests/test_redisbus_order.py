"""chatd.redisbus: a room's messages are delivered on every node in the order
of their ids, with no gaps, however the other nodes' publishes arrive.

Three chat services share one store, as a cluster shares PostgreSQL; their
links are fakes joined by a switchboard the test holds, so that it decides
when, and in which order, each node receives what the others published (two
nodes' publishes to one room can cross on the way to a third)."""

import json

from conftest import START, LineClient
from fakes import InlinePasswords
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock

from chatd.dispatch import Dispatcher
from chatd.limits import Limits
from chatd.redisbus import ORDER_WAIT, RedisBus
from chatd.service import ChatService
from chatd.store import StoreUnavailable
from chatd.store.memory import MemoryStore


class Switchboard:
    """Redis pub/sub as the test wants it: what is published waits here until
    the test hands it to a node."""

    def __init__(self):
        self.published = []  # (channel, payload), in publish order
        self.calls = []  # (node id, channel or tuple of channels): one per publish call
        self.links = []

    def link(self, node_id):
        link = SwitchedLink(self, node_id)
        self.links.append(link)
        return link

    def room_messages(self):
        """The room messages published so far, as (channel, payload, text)."""
        out = []
        for channel, payload in self.published:
            msg = json.loads(payload)
            if msg.get("t") == "Message":
                out.append((channel, payload, msg["v"][2]))
        return out

    def deliver_all(self):
        """Everything published so far, to every node, in order; then forgotten."""
        published, self.published = self.published, []
        for channel, payload in published:
            for link in self.links:
                link.receive(channel, payload)


class SwitchedLink:
    """Only what the bus needs of a RedisLink; always up."""

    up = True

    def __init__(self, board, node_id):
        self.board = board
        self.node_id = node_id
        self.handlers = {}
        self.received = []  # (channel, payload) handed to a subscription here

    def subscribe(self, channel, handler, on_ready=None):
        self.handlers[channel] = handler
        if on_ready is not None:
            on_ready()  # confirmed at once

    def unsubscribe(self, channel):
        self.handlers.pop(channel, None)

    def add_listener(self, on_up=None, on_down=None):
        pass

    def publish(self, channel, payload):
        self.board.calls.append((self.node_id, channel))
        self.board.published.append((channel, payload))
        return succeed(1)

    def publish_many(self, channels, payload):
        self.board.calls.append((self.node_id, tuple(channels)))
        self.board.published.extend((channel, payload) for channel in channels)
        return succeed(len(channels))

    def receive(self, channel, payload):
        handler = self.handlers.get(channel)
        if handler is not None:
            self.received.append((channel, payload))
            handler(payload)


class Node:
    def __init__(self, board, name, store):
        self.clock = Clock()
        self.clock.advance(START)
        self.link = board.link(name)

        def make_bus(service, local):
            self.bus = RedisBus(self.link, local, service.rooms, service.nicks,
                                service.sessions,
                                recover=lambda key, since: service.store.history(
                                    key, since=since, limit=500),
                                last_mid=lambda: service.last_mid, note_mid=service.saw_mid,
                                clock=self.clock)
            return self.bus
        self.service = ChatService(Limits(rate=1000, burst=1000), clock=self.clock, store=store,
                                   passwords=InlinePasswords(), make_bus=make_bus,
                                   server_name=name)
        self.dispatcher = Dispatcher(self.service)
        self._port = 40000

    def client(self, nick, room):
        self._port += 1
        c = LineClient(self, "10.0.0.1", self._port)
        c.send("/json")
        c.raw()  # the greeting, as text
        c.send_json({"type": "nick", "nick": nick})
        c.send_json({"type": "join", "room": room})
        c.raw()
        return c


def waits(node):
    """Whether a read-back of a gap is due on this node."""
    return [d for d in node.clock.getDelayedCalls() if d.func.__name__ == "_gap"]


def texts(client):
    return [e["text"] for e in client.json() if e["type"] == "message"]


def cluster():
    store = MemoryStore()
    store.open()
    board = Switchboard()
    a, b, c = (Node(board, name, store) for name in "abc")
    alice, bob, carol = a.client("alice", "#x"), b.client("bob", "#x"), c.client("carol", "#x")
    board.deliver_all()  # the joins
    for client in (alice, bob, carol):
        client.raw()
    return board, (a, b, c), (alice, bob, carol), store


def say(client, text):
    client.send_json({"type": "message", "room": "#x", "text": text})


def test_a_node_receiving_a_rooms_messages_crossed_delivers_them_in_order():
    board, (a, b, c), (alice, bob, carol), _ = cluster()
    say(alice, "five")  # committed first: the lower id
    say(bob, "six")  # committed next, from another node
    (ch5, five, _), (ch6, six, _) = board.room_messages()
    # Node C receives them crossed: six, then five.
    c.link.receive(ch6, six)
    assert texts(carol) == []  # six waits for five: a client shown six has seen five
    c.link.receive(ch5, five)
    assert texts(carol) == ["five", "six"]
    # Ids as the client sees them: a "since" resume from the last one misses nothing.
    c.clock.advance(ORDER_WAIT * 4)
    assert carol.json() == []  # nothing read back twice
    assert not waits(c)


def test_a_lost_publish_is_read_back_from_the_store_after_the_wait():
    board, (a, b, c), (alice, bob, carol), _ = cluster()
    say(alice, "lost on the way")
    say(bob, "after it")
    (_, _, _), (ch, after, _) = board.room_messages()
    c.link.receive(ch, after)  # the first one's publish never reaches node C
    c.clock.advance(ORDER_WAIT * 0.9)
    assert texts(carol) == []  # still waiting for it
    c.clock.advance(ORDER_WAIT * 0.2)
    got = [(e["text"], e["mid"]) for e in carol.json() if e["type"] == "message"]
    assert [t for t, _ in got] == ["lost on the way", "after it"]
    assert got[0][1] < got[1][1]
    # The lost one turning up late is not shown again; the room goes on in order.
    board.deliver_all()
    assert texts(carol) == []
    say(alice, "and on")
    board.deliver_all()
    assert texts(carol) == ["and on"]


def test_the_senders_own_node_shows_its_message_after_the_one_before_it():
    board, (a, b, c), (alice, bob, carol), _ = cluster()
    say(alice, "first")
    say(bob, "second")  # bob's node has not had alice's message yet
    assert texts(bob) == []  # not "second" before "first"
    (ch1, first, _), _ = board.room_messages()
    b.link.receive(ch1, first)
    assert texts(bob) == ["first", "second"]


def test_messages_in_order_are_delivered_at_once():
    board, (a, b, c), (alice, bob, carol), _ = cluster()
    for i in range(5):
        say(alice if i % 2 else bob, f"m{i}")
        board.deliver_all()
    assert texts(carol) == [f"m{i}" for i in range(5)]
    assert not waits(c)  # nothing waited


def test_waiting_messages_are_bounded_and_dropped_with_the_room():
    board, (a, b, c), (alice, bob, carol), store = cluster()
    c.bus.order_buffer = 3
    say(alice, "gap")
    for i in range(5):
        say(bob, f"w{i}")
    later = board.room_messages()[1:]
    for ch, payload, _ in later[:3]:
        c.link.receive(ch, payload)
    assert texts(carol) == []
    # The fourth finds the buffer full: the gap is read back at once.
    c.link.receive(*later[3][:2])
    assert texts(carol) == ["gap", "w0", "w1", "w2", "w3", "w4"]
    c.link.receive(*later[4][:2])
    assert texts(carol) == []  # read back already
    # A room with nobody left here keeps nothing waiting.
    say(alice, "gap again")
    say(bob, "waits")
    ch, payload, _ = board.room_messages()[-1]
    c.link.receive(ch, payload)
    assert texts(carol) == [] and waits(c)
    carol.send_json({"type": "part", "room": "#x"})
    assert not waits(c)


def test_with_the_store_down_the_messages_after_a_gap_are_shown_after_the_wait():
    board, (a, b, c), (alice, bob, carol), _ = cluster()
    say(alice, "lost")
    say(bob, "after")
    ch, after, _ = board.room_messages()[1]
    c.link.receive(ch, after)
    c.bus.recover = lambda key, since: fail(StoreUnavailable("the store is down"))
    c.clock.advance(ORDER_WAIT * 1.1)
    # Not held forever: shown, the lost one left to a client's "since" later.
    assert texts(carol) == ["after"]
    assert not waits(c)
    c.bus.recover = lambda key, since: c.service.store.history(key, since=since, limit=500)
    board.published.clear()  # the lost one never comes
    say(alice, "on again")
    board.deliver_all()
    assert texts(carol) == ["on again"]


def test_a_message_past_a_full_buffer_during_a_read_back_is_read_back_after_it():
    board, (a, b, c), (alice, bob, carol), store = cluster()
    c.bus.order_buffer = 2
    held = []

    def slow_recover(key, since):
        rows = store.history(key, since=since, limit=500)  # read now...
        if held:
            return rows
        d = Deferred()
        held.append(lambda: rows.addCallback(d.callback))  # ...answered later
        return d
    c.bus.recover = slow_recover
    say(alice, "gap")
    say(bob, "w0")
    c.link.receive(*board.room_messages()[1][:2])
    c.clock.advance(ORDER_WAIT * 1.1)  # the read-back starts, and hangs
    say(carol, "mine")  # waits behind w0
    say(carol, "mine2")  # the buffer is full: not kept; committed after the read
    assert texts(carol) == []
    held[0]()
    assert texts(carol) == ["gap", "w0", "mine", "mine2"]
    assert not waits(c)
