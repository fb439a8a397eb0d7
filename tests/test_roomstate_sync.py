"""Room state across nodes (chatd.roomstate ``changed``/``apply_remote``): each
node's changes applied on the others, in any order, merging; a ban made on
one node kicks the members it matches on another.  Two services share a
memory database (as two nodes share PostgreSQL) and a fake state channel that
passes each change through JSON, as Redis would."""

import json

import pytest
from fakes import FakeSink
from twisted.internet.task import Clock

from chatd.events import Kick
from chatd.limits import Limits
from chatd.roomstate import RoomStates
from chatd.service import ChatService
from chatd.store.memory import MemoryDatabase, MemoryStore


class StateChannel:
    """What the service needs of a cluster bus's state channel; changes are held
    until ``flush()`` so a test chooses when (and in which order) they arrive."""

    def __init__(self):
        self.nodes = []
        self.queue = []

    def bus_for(self, service, local):
        channel = self

        class Bus:
            def __getattr__(self, name):
                return getattr(local, name)

            def on_state(self, kind, handler):
                channel.nodes.append((self, kind, handler))

            def publish_state(self, kind, data):
                channel.queue.append((self, kind, json.dumps(data)))
        return Bus()

    def flush(self, reverse=False):
        queue, self.queue = self.queue, []
        for origin, kind, data in reversed(queue) if reverse else queue:
            for node, k, handler in self.nodes:
                if node is not origin and k == kind:
                    handler(json.loads(data))


@pytest.fixture
def nodes():
    channel, db, clock = StateChannel(), MemoryDatabase(), Clock()
    made = [ChatService(Limits(), clock=clock, store=MemoryStore(db),
                        make_bus=channel.bus_for) for _ in range(2)]
    for chat in made:
        chat.load()
    return channel, made


def member(chat, nick, room=None):
    sink = FakeSink(service=chat)
    session = chat.connect(sink, "10.0.0.1")
    sink.session = session
    chat.set_nick(session, nick)
    if room is not None:
        chat.join(session, room)
    sink.take()
    return sink, session


@pytest.mark.parametrize("reverse", [False, True])
def test_changes_on_two_nodes_at_once_are_all_applied_on_both(nodes, reverse):
    channel, (a, b) = nodes
    _, on_a = member(a, "alice", "#r")  # first in: operator (a guest: by session)
    _, on_b = member(b, "bob", "#r")
    channel.flush()
    # Both nodes change the same room before hearing of the other's change.
    a.mod.ban(on_a, a.rooms.get("#r"), "mallory")
    b.room_states.set_entry("#r", "#r", "ops", "carol", True, "bob")
    b.room_states.set_fields("#r", "#r", topic="set on b")
    channel.flush(reverse)
    for chat in (a, b):
        state = chat.room_states.get("#r")
        assert (state.bans, state.ops, state.topic) == ({"mallory"}, {"carol"}, "set on b")


def test_a_ban_made_on_one_node_kicks_its_match_on_the_other(nodes):
    channel, (a, b) = nodes
    alice_sink, alice = member(a, "alice", "#r")
    mallory_sink, mallory = member(b, "mallory", "#r")
    channel.flush()
    a.mod.ban(alice, a.rooms.get("#r"), "mallory")
    channel.flush()
    kicks = [e for e in mallory_sink.take() if isinstance(e, Kick)]
    assert [(k.nick, k.by, k.reason) for k in kicks] == [("mallory", "alice", "banned")]
    assert "#r" not in mallory.rooms


def test_keep_unkeep_and_invites_reach_the_other_node(nodes):
    channel, (a, b) = nodes
    a.room_states.create("#k", "#K", 5.0, None)
    a.room_states.keep("#k", "#K", "alice")
    a.room_states.invite("#k", "dave")
    channel.flush()
    assert b.room_states.is_kept("#k") and b.room_states.get("#k").owner == "alice"
    assert "alice" in b.room_states.get("#k").ops
    assert b.room_states.is_invited("#k", "dave")
    a.room_states.unkeep("#k")
    channel.flush()
    assert not b.room_states.is_kept("#k")


@pytest.mark.parametrize("change", [
    {"change": "fields", "key": "#r", "fields": {"ops": ["x"]}},
    {"change": "entry", "key": "#r", "list": "owners", "entry": "x", "present": True},
    {"change": "explode", "key": "#r"},
    {"key": "#r"},
])
def test_a_malformed_change_changes_nothing(change):
    states = RoomStates(store=None)
    with pytest.raises((ValueError, KeyError)):
        states.apply_remote(change)
    assert states.get("#r") is None


def test_a_malformed_change_from_the_bus_is_logged_and_ignored(nodes, logged):
    channel, (a, b) = nodes
    channel.queue.append((object(), "room_state", json.dumps({"change": "explode", "key": "#r"})))
    channel.flush()
    assert b.room_states.get("#r") is None
    warnings = [e for e in logged if "malformed room change" in e.get("log_format", "")]
    assert len(warnings) == 2  # one per node
