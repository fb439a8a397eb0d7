"""A room's broadcast to IRC members costs what it costs for line members: one
encoding per variant, then the prepared bytes written straight to each member's
output queue; the sender without echo-message is left out by the room."""

import pytest
from irchelp import IrcChat


@pytest.fixture
def irc(chat):
    return IrcChat(chat)


def test_room_members_on_irc_are_reached_through_their_queue_write(chat, irc):
    alice = irc.client("alice", "#tea")
    bob = irc.client("bob", "#tea", caps=("echo-message",))
    room = chat.service.rooms.get("#tea")
    for client in (alice, bob):
        writes = room.outlets[client.session.fmt]
        # The queue's own write, as for a line member: no per-member IRC checks.
        assert writes[client.session] == client.proto.out.write
    # Outside rooms (private messages, away) the IRC connection still sorts payloads.
    assert alice.session.write == alice.proto.irc.write


def test_the_sender_is_left_out_unless_it_asked_for_echo_message(chat, irc):
    alice = irc.client("alice", "#tea")
    bob = irc.client("bob", "#tea", caps=("echo-message",))
    carol = irc.client("carol", "#tea")  # the same variant as alice
    telnet = chat.line("dave", "#tea")
    for client in (alice, bob, carol):
        client.raw()
    alice.send("PRIVMSG #tea :from alice")
    assert alice.lines() == []
    assert bob.lines() == carol.lines() == [":alice!alice@chatd PRIVMSG #tea :from alice"]
    assert telnet.lines() == ["[#tea] <alice> from alice"]
    bob.send("PRIVMSG #tea :from bob")
    assert bob.lines() == alice.lines() == [":bob!bob@chatd PRIVMSG #tea :from bob"]
    assert telnet.lines() == ["[#tea] <bob> from bob"]
    telnet.send("from dave")
    assert telnet.lines() == ["[#tea] <dave> from dave"]  # the line port shows senders theirs
    assert alice.lines() == bob.lines() == [":dave!dave@chatd PRIVMSG #tea :from dave"]


def test_echo_message_requested_later_in_the_room_takes_effect(chat, irc):
    alice = irc.client("alice", "#tea")
    bob = irc.client("bob", "#tea")
    alice.send("CAP REQ :echo-message")
    alice.raw()
    bob.raw()
    alice.send("PRIVMSG #tea :now echoed")
    assert alice.lines() == bob.lines() == [":alice!alice@chatd PRIVMSG #tea :now echoed"]
    room = chat.service.rooms.get("#tea")
    assert room.outlets[alice.session.fmt][alice.session] == alice.proto.out.write



def test_every_room_event_renders_to_plain_bytes_for_every_variant():
    """Room members are the queue's write: what a room broadcasts must be bytes
    (not a payload an IRC connection would have to finish)."""
    from itertools import combinations

    from chatd import events as ev
    from chatd.irc.render import Formats

    room_events = [
        ev.Message("#tea", "alice", "hi", 1, 1.0), ev.Message("#tea", "alice", "w", 2, 1.0,
                                                              "action"),
        ev.Join("#tea", "alice", 1.0), ev.Part("#tea", "alice", "", 1.0),
        ev.Topic("#tea", "t", "alice", 1.0), ev.Kick("#tea", "bob", "alice", "", 1.0),
        ev.RoomChange("#tea", "ban", "alice", "bob"), ev.RoomChange("#tea", "mode", "alice"),
    ]
    caps = ("server-time", "message-tags", "account-tag", "echo-message", "away-notify")
    formats = Formats("chatd")
    for n in range(len(caps) + 1):
        for chosen in combinations(caps, n):
            fmt = formats.get(frozenset(chosen))
            for event in room_events:
                payload = fmt(event)
                assert type(payload) is bytes and payload.endswith(b"\r\n"), (chosen, event)
