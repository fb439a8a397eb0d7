"""Join and part storms (chatd.notices) as IRC clients see them: a JOIN or PART per
nick a window names, so the client's member list follows, and the rest counted."""


from chatd import notices
from tests.irchelp import IrcChat

WINDOW = 1.0


def quiet(chat):
    for _ in range(3):
        chat.clock.advance(WINDOW)


def test_a_window_of_joins_and_parts_reaches_irc_as_join_and_part_lines(make_chat):
    chat = make_chat(coalesce_window=WINDOW)
    irc = IrcChat(chat)
    alice = irc.client("alice", "#r")
    gone = chat.line("gone", "#r")
    quiet(chat)
    alice.raw()
    chat.line("bob", "#r")  # at once; opens the window
    assert alice.commands() == [("JOIN", ("#r",))]
    chat.line("carol", "#r")
    chat.line("dave", "#r")
    chat.service.part(gone.session, "#r")
    assert alice.raw() == b""  # gathered
    chat.clock.advance(WINDOW)
    got = alice.parsed()
    assert [(m.command, m.params, m.source.split("!")[0]) for m in got] == [
        ("JOIN", ("#r",), "carol"), ("JOIN", ("#r",), "dave"), ("PART", ("#r",), "gone")]


def test_nicks_a_window_only_counts_come_as_one_notice(make_chat, monkeypatch):
    monkeypatch.setattr(notices, "LISTED", 2)
    chat = make_chat(coalesce_window=WINDOW)
    irc = IrcChat(chat)
    alice = irc.client("alice", "#r")
    quiet(chat)
    chat.line("bob", "#r")
    alice.raw()
    for nick in ("carol", "dave", "erin", "frank"):
        chat.line(nick, "#r")
    chat.clock.advance(WINDOW)
    got = alice.commands()
    assert got[:2] == [("JOIN", ("#r",)), ("JOIN", ("#r",))]
    assert got[2] == ("NOTICE", ("#r", "2 more joined (/NAMES lists everyone)"))
    assert len(got) == 3


def test_an_irc_joiner_of_a_large_room_still_gets_names(make_chat):
    chat = make_chat(large_room=2)
    irc = IrcChat(chat)
    chat.line("bob", "#big")
    chat.line("carol", "#big")
    alice = irc.client("alice")
    alice.send("JOIN #big")
    names = [p for c, p in alice.commands() if c == "353"]
    assert names and set(names[0][-1].split()) == {"alice", "@bob", "carol"}


