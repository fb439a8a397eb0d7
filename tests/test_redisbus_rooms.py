"""chatd.redisbus: an event of several rooms (a nick change, a quit) goes on
each of those rooms' channels in one call; a node receives it only if it has
someone in one of them, and shows it once to each local member however many
of the rooms they share.

First with fake links joined by the test's switchboard (tests/test_redisbus_order.py),
then with three real links to Redis."""

import json
import socket

import pytest
from redishelp import REDIS_HOST, REDIS_PORT, _command
from test_redisbus import NodesTestCase
from test_redisbus_order import Node, Switchboard
from twisted.internet.defer import inlineCallbacks

from chatd.store.memory import MemoryStore


def join(client, room):
    client.send_json({"type": "join", "room": room})


def shown(client, kind) -> list:
    return [e for e in client.json() if e["type"] == kind]


def three_nodes():
    """alice (a) and bob (b) in #x and #y, bea (b) in #y only, carl (c) in #z."""
    store = MemoryStore()
    store.open()
    board = Switchboard()
    a, b, c = (Node(board, name, store) for name in "abc")
    alice, bob = a.client("alice", "#x"), b.client("bob", "#x")
    bea, carl = b.client("bea", "#y"), c.client("carl", "#z")
    join(alice, "#y")
    join(bob, "#y")
    board.deliver_all()
    for client in (alice, bob, bea, carl):
        client.raw()
    board.calls.clear()
    for node in (a, b, c):
        node.link.received.clear()
    return board, (a, b, c), (alice, bob, bea, carl)


def test_no_node_listens_to_a_channel_of_every_rooms_events():
    _, nodes, _ = three_nodes()
    for node in nodes:
        assert "rooms" not in node.link.handlers
    assert sorted(k for k in nodes[2].link.handlers if k.startswith("room:")) == ["room:#z"]


def test_a_nick_change_in_two_rooms_is_one_call_shown_once_and_not_sent_elsewhere():
    board, (a, b, c), (alice, bob, bea, carl) = three_nodes()
    a.clock.advance(60)  # past --nick-interval
    alice.send_json({"type": "nick", "nick": "alicia"})
    # One call, on both rooms' channels (not one per room, not a shared channel).
    [(sender, channels)] = board.calls
    assert sender == "a" and sorted(channels) == ["room:#x", "room:#y"]
    board.deliver_all()
    # Node b has it once per channel, and shows it once to each member.
    assert len(b.link.received) == 2
    assert [(e["old"], e["new"]) for e in shown(bob, "nick")] == [("alice", "alicia")]
    assert [(e["old"], e["new"]) for e in shown(bea, "nick")] == [("alice", "alicia")]
    # Node c, with nobody in #x or #y, receives nothing at all.
    assert c.link.received == [] and shown(carl, "nick") == []

    alice.send_json({"type": "quit"})
    [(sender, channels)] = board.calls[1:]
    assert sorted(channels) == ["room:#x", "room:#y"]
    board.deliver_all()
    assert len(b.link.received) == 4
    assert [e["nick"] for e in shown(bob, "quit")] == ["alicia"]
    assert [e["nick"] for e in shown(bea, "quit")] == ["alicia"]
    assert c.link.received == [] and carl.json() == []


def test_an_event_of_one_room_is_a_plain_publish_on_its_channel():
    board, (a, b, c), (alice, bob, bea, carl) = three_nodes()
    alice.send_json({"type": "part", "room": "#y"})
    board.deliver_all()
    bea.raw()
    board.calls.clear()
    a.clock.advance(60)
    alice.send_json({"type": "nick", "nick": "alicia"})
    assert board.calls == [("a", "room:#x")]
    board.deliver_all()
    assert len(shown(bob, "nick")) == 1 and shown(bea, "nick") == []


def test_held_while_the_link_is_down_and_sent_in_one_call_when_it_is_back():
    board, (a, b, c), (alice, bob, bea, carl) = three_nodes()
    a.link.up = False
    a.clock.advance(60)
    alice.send_json({"type": "nick", "nick": "alicia"})
    assert board.calls == []
    a.link.up = True
    a.bus._link_up()  # noqa: SLF001 (what the link's on_up calls)
    [(_, channels)] = board.calls
    assert sorted(channels) == ["room:#x", "room:#y"]
    # Sent again after all (it may have reached Redis before an outage): still once.
    again = list(board.published)
    board.deliver_all()
    board.published.extend(again)
    board.deliver_all()
    assert len(b.link.received) == 4
    assert len(shown(bob, "nick")) == 1 and len(shown(bea, "nick")) == 1


class RealRedisTests(NodesTestCase):
    """Three nodes with real links on one fresh prefix."""

    def pubsub(self, *args):
        with socket.create_connection((REDIS_HOST, REDIS_PORT), timeout=5) as s:
            return _command(s, "PUBSUB", *args)

    @staticmethod
    def pushes(node) -> list:
        """Every message node's pub/sub connection receives from now on (channel, data)."""
        got = []
        sub = node.link._sub  # noqa: SLF001 (what reaches this node, before any filter)
        push = sub.on_push
        sub.on_push = lambda channel, data: got.append((channel, data)) or push(channel, data)
        return got

    @inlineCallbacks
    def test_nick_change_and_quit_in_two_rooms_reach_only_the_nodes_concerned(self):
        a, b, c = yield self.nodes("a", "b", "c")
        alice = a.client("alice", "#x")
        alice.send_json({"type": "join", "room": "#y"})
        bob = b.client("bob", "#x")
        bob.send_json({"type": "join", "room": "#y"})
        carl = c.client("carl", "#z")
        yield self.settled(a, b, c)
        for client in (alice, bob, carl):
            client.take()
        p = self.prefix
        # Who listens: nodes a and b to #x and #y, c to neither; nobody to a
        # channel of every room's events.
        assert self.pubsub("NUMSUB", p + "room:#x", p + "room:#y", p + "room:#z",
                           p + "rooms") == [(p + "room:#x").encode(), 2,
                                            (p + "room:#y").encode(), 2,
                                            (p + "room:#z").encode(), 1, (p + "rooms").encode(), 0]
        on_b, on_c = self.pushes(b), self.pushes(c)
        a.clock.advance(60)  # past --nick-interval
        alice.send_json({"type": "nick", "nick": "alicia"})
        yield self.until(lambda: bob.of("nick"), "bob sees the nick change")
        alice.send_json({"type": "quit"})
        yield self.until(lambda: bob.of("quit"), "bob sees alicia quit")
        yield self.settled(a, b, c)
        assert [(e["old"], e["new"]) for e in bob.of("nick")] == [("alice", "alicia")]
        assert [e["nick"] for e in bob.of("quit")] == ["alicia"]
        # Both events came to b on both rooms' channels; shown once each.
        kinds = sorted((ch.decode()[len(p):], json.loads(data)["t"]) for ch, data in on_b)
        assert kinds == [("room:#x", "NickChange"), ("room:#x", "Quit"),
                         ("room:#y", "NickChange"), ("room:#y", "Quit")]
        # Node c received nothing at all, and showed nothing.
        assert on_c == [] and carl.take() == []
        # And c still hears what is its business (so the count above could see it).
        bob.send_json({"type": "join", "room": "#z"})
        yield self.until(lambda: carl.of("join"), "carl sees bob join #z")
        assert [ch.decode()[len(p):] for ch, _ in on_c] == ["room:#z"]


pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
