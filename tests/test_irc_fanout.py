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

