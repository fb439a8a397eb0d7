"""Join and part storms (chatd.notices): coalesced notices and large rooms.

What members of a room see, on every front end, when many join or leave at
once; time moves only with the chat's Clock.
"""

import json
from dataclasses import replace

import pytest

from chatd import service as service_module
from chatd import text
from chatd.client import presence_change
from chatd.clientcli import render
from chatd.notices import LISTED

WINDOW = 1.0


def storm(make_chat, **limits):
    limits.setdefault("coalesce_window", WINDOW)
    chat = make_chat(**limits)
    return chat


def quiet(chat):
    """Let every open window close (Clock.advance runs what falls due, at the end time)."""
    for _ in range(3):
        chat.clock.advance(WINDOW)


def presence_calls(chat) -> list:
    return [c for c in chat.clock.getDelayedCalls()
            if getattr(c.func, "__self__", None) is chat.service.notices]


# -- coalescing --------------------------------------------------------------------
def test_a_quiet_room_announces_the_first_join_at_once(make_chat):
    chat = storm(make_chat)
    alice = chat.line("alice", "#r")
    quiet(chat)
    chat.line("bob", "#r")
    assert alice.lines() == ["* bob joined #r"]


def test_joins_within_the_window_come_as_one_notice_per_member(make_chat):
    chat = storm(make_chat)
    alice = chat.line("alice", "#r")
    js = chat.line("jay", "#r", json_mode=True)
    quiet(chat)
    alice.raw()
    js.raw()
    chat.line("bob", "#r")  # announced at once; opens the window
    for nick in ("carol", "dave", "erin", "frank", "gina"):
        chat.line(nick, "#r")
    assert alice.lines() == ["* bob joined #r"]
    assert [e["type"] for e in js.json()] == ["join"]
    chat.clock.advance(WINDOW - 0.01)
    assert alice.raw() == b"" and js.raw() == b""
    chat.clock.advance(0.01)
    assert alice.lines() == ["* carol, dave, erin and 2 others joined #r"]
    [event] = js.json()
    assert event == {"type": "presence", "room": "#r",
                     "joined": ["carol", "dave", "erin", "frank", "gina"], "joins": 5,
                     "left": [], "parts": 0, "ts": event["ts"]}
    assert event["ts"] == chat.clock.seconds()


def test_websocket_members_get_the_same_notice(ws):
    chat, connect = ws(coalesce_window=WINDOW)
    web = connect()
    web.request({"type": "nick", "nick": "web"})
    web.request({"type": "join", "room": "#r"})
    quiet(chat)
    web.events()
    chat.line("tty1", "#r")
    chat.line("tty2", "#r")
    chat.line("tty3", "#r")
    assert [(e["type"], e.get("nick")) for e in web.events()] == [("join", "tty1")]
    chat.clock.advance(WINDOW)
    [event] = web.events()
    assert (event["type"], event["joined"], event["joins"]) == (
        "presence", ["tty2", "tty3"], 2)


def test_a_window_that_gathered_nothing_closes(make_chat):
    chat = storm(make_chat)
    alice = chat.line("alice", "#r")
    quiet(chat)
    chat.line("bob", "#r")
    chat.line("carol", "#r")
    chat.clock.advance(WINDOW)  # carol's notice; the next window opens
    chat.clock.advance(WINDOW)  # nothing in it: closed
    alice.raw()
    assert presence_calls(chat) == []
    chat.line("dave", "#r")
    assert alice.lines() == ["* dave joined #r"]


def test_a_storm_keeps_coalescing_window_after_window(make_chat):
    chat = storm(make_chat)
    alice = chat.line("alice", "#r", json_mode=True)
    quiet(chat)
    alice.raw()
    chat.line("u0", "#r")
    seen = []
    for tick in range(1, 4):
        chat.line(f"u{tick}a", "#r")
        chat.line(f"u{tick}b", "#r")
        chat.clock.advance(WINDOW)
        seen += alice.json()
    assert [(e["type"], e.get("joined")) for e in seen] == [
        ("join", None), ("presence", ["u1a", "u1b"]), ("presence", ["u2a", "u2b"]),
        ("presence", ["u3a", "u3b"])]


def test_joined_and_left_within_one_window_is_not_shown(make_chat):
    chat = storm(make_chat)
    alice = chat.line("alice", "#r", json_mode=True)
    dave = chat.line("dave", "#r")
    quiet(chat)
    chat.line("bob", "#r")  # at once
    carol = chat.line("carol", "#r")
    carol.send("/part #r")  # came and went: neither
    dave.send("/part #r")
    dave.send("/join #r")  # went and came back: neither
    chat.line("erin", "#r")
    zed = chat.line("zed", "#r")
    zed.send("/quit")  # a quit nets out the same way
    chat.line("fay", "#r")
    alice.raw()
    chat.clock.advance(WINDOW)
    [event] = alice.json()
    assert (event["joined"], event["left"]) == (["erin", "fay"], [])


def test_parts_and_quits_are_gathered_too(make_chat):
    chat = storm(make_chat)
    alice = chat.line("alice", "#r")
    others = [chat.line(nick, "#r") for nick in ("bob", "carol", "dave")]
    quiet(chat)
    alice.raw()
    others[0].send("/part #r bye")  # at once, with its reason
    others[1].send("/part #r")
    others[2].send("/quit gone")
    assert alice.lines() == ["* bob left #r (bye)"]
    chat.clock.advance(WINDOW)
    assert alice.lines() == ["* carol and dave left #r"]


def test_a_window_with_one_change_sends_the_usual_event_later(make_chat):
    chat = storm(make_chat)
    alice = chat.line("alice", "#r")
    bob = chat.line("bob", "#r")
    carol = chat.line("carol", "#r")
    quiet(chat)
    alice.raw()
    bob.send("/part #r lunch")  # at once
    carol.send("/part #r tea")  # alone in the window
    assert alice.lines() == ["* bob left #r (lunch)"]
    chat.clock.advance(WINDOW)
    assert alice.lines() == ["* carol left #r (tea)"]


def test_a_quit_in_a_quiet_room_is_a_quit_at_once(make_chat):
    chat = storm(make_chat)
    alice = chat.line("alice", "#r")
    bob = chat.line("bob", "#r")
    quiet(chat)
    alice.raw()
    bob.send("/quit tired")
    assert alice.lines() == ["* bob quit (tired)"]


def test_a_notice_lists_a_bounded_number_of_nicks_and_counts_them_all(make_chat):
    chat = storm(make_chat)
    alice = chat.line("alice", "#r", json_mode=True)
    quiet(chat)
    chat.line("first", "#r")
    joiners = [f"n{i:03}" for i in range(LISTED + 10)]
    for i, nick in enumerate(joiners):
        chat.line(nick, "#r", host=f"10.0.{i // 50}.{i % 50 + 1}")
    alice.raw()
    chat.clock.advance(WINDOW)
    [event] = alice.json()
    assert (event["joined"], event["joins"]) == (joiners[:LISTED], LISTED + 10)
    assert text.text_of(event) == f"* n000, n001, n002 and {LISTED + 7} others joined #r"


def test_a_pending_join_follows_a_nick_change(make_chat):
    chat = storm(make_chat, nick_interval=0.001)
    alice = chat.line("alice", "#r", json_mode=True)
    quiet(chat)
    chat.line("bob", "#r")
    carol = chat.line("carol", "#r")
    chat.clock.advance(0.01)
    carol.send("/nick caroline")
    alice.raw()
    chat.clock.advance(WINDOW)
    [event] = alice.json()
    assert (event["type"], event["nick"]) == ("join", "caroline")


def test_a_kicked_pending_joiner_is_told_by_the_kick_alone(make_chat):
    chat = storm(make_chat)
    alice = chat.line("alice", "#r", json_mode=True)  # the room's first: its operator
    quiet(chat)
    chat.line("bob", "#r")
    chat.line("mal", "#r")
    alice.raw()
    alice.send_json({"type": "kick", "room": "#r", "nick": "mal"})
    assert [e["type"] for e in alice.json()] == ["kick", "ack"]
    chat.clock.advance(WINDOW)
    assert alice.raw() == b""  # no later "mal joined"


def test_coalescing_off_announces_every_join_alone(make_chat):
    chat = make_chat(coalesce_window=0)
    alice = chat.line("alice", "#r")
    for nick in ("bob", "carol", "dave"):
        chat.line(nick, "#r")
    assert alice.lines() == ["* bob joined #r", "* carol joined #r", "* dave joined #r"]
    assert presence_calls(chat) == []


def test_an_emptied_room_cancels_its_window(make_chat):
    chat = storm(make_chat)
    alice = chat.line("alice", "#r")
    bob = chat.line("bob", "#r")
    chat.line("carol", "#r").send("/part #r")
    assert presence_calls(chat)
    alice.send("/part #r")
    bob.send("/quit")
    assert presence_calls(chat) == []


def test_shutdown_cancels_every_window(make_chat):
    chat = storm(make_chat)
    for room in ("#a", "#b"):
        chat.line(f"x{room[1]}", room)
        chat.line(f"y{room[1]}", room)
    chat.service.startService()
    assert presence_calls(chat)
    chat.service.stopService()
    assert presence_calls(chat) == []


# -- large rooms ---------------------------------------------------------------------
def test_a_large_room_announces_no_joins_and_gives_the_count(make_chat):
    chat = make_chat(large_room=3)
    alice = chat.line("alice", "#big", json_mode=True)
    chat.line("bob", "#big")
    alice.raw()
    carol = chat.line("carol", fresh=False, json_mode=True)
    carol.raw()
    carol.send_json({"type": "join", "room": "#big", "id": 1})
    [ack] = [e for e in carol.json() if e["type"] == "ack"]
    assert ack == {"type": "ack", "request": "join", "id": 1, "room": "#big", "members": 3,
                   "large": True}
    assert alice.raw() == b""
    carol.send_json({"type": "who", "room": "#big", "id": 2})
    [who] = carol.json()
    assert who["nicks"] == ["alice", "bob", "carol"]


def test_a_large_room_reads_as_such_in_text_mode(make_chat):
    chat = make_chat(large_room=2)
    chat.line("alice", "#big")
    bob = chat.line("bob", fresh=False)
    bob.raw()
    bob.send("/join #big")
    assert bob.lines() == ["* now talking in #big; 2 members (a large room: joins and parts "
                           "are not announced; /who #big lists who is here)"]


def test_a_large_room_announces_no_parts_or_quits(make_chat):
    chat = make_chat(large_room=3)
    alice = chat.line("alice", "#big")
    bob = chat.line("bob", "#big")
    carol = chat.line("carol", "#big")
    alice.raw()
    carol.send("/part #big")  # 3 members when it left: not announced
    assert alice.raw() == b""
    bob.send("/quit")  # 2 members now: a small room again
    assert alice.lines() == ["* bob quit (quit)"]


def test_the_threshold_off_lists_everyone(make_chat):
    chat = make_chat(large_room=0)
    for nick in ("a1", "a2", "a3", "a4"):
        chat.line(nick, "#r")
    js = chat.line("a5", fresh=False, json_mode=True)
    js.raw()
    js.send_json({"type": "join", "room": "#r"})
    [ack] = [e for e in js.json() if e["type"] == "ack"]
    assert ack["nicks"] == ["a1", "a2", "a3", "a4", "a5"]
    assert "large" not in ack


def test_who_pages_a_large_room_in_nick_order(make_chat, monkeypatch):
    monkeypatch.setattr(service_module, "WHO_LISTED", 3)
    chat = make_chat()
    members = [chat.line(nick, "#r") for nick in ("m3", "m0", "m4", "m1", "m2")]
    members[0].raw()
    members[0].send("/who")
    assert members[0].lines() == ["* #r: 5 present; 3 here: m0, m1, m2",
                                  "* more: /who #r m2"]
    members[0].send("/who #r m2")
    assert members[0].lines() == ["* #r: 5 present; 2 here: m3, m4"]
    members[0].send("/json")
    members[0].raw()
    members[0].send_json({"type": "who", "room": "#r", "after": "M0", "id": 9})
    [who] = members[0].json()
    assert (who["nicks"], who["members"], who["more"]) == (["m1", "m2", "m3"], 5, True)


def test_who_of_a_small_room_lists_everyone_in_the_order_they_came(make_chat):
    chat = make_chat()
    members = [chat.line(nick, "#r") for nick in ("zed", "amy", "kim")]
    members[0].raw()
    members[0].send("/who")
    assert members[0].lines() == ["* #r: 3 present: zed, amy, kim"]


def test_a_window_open_when_the_room_turns_large_says_nothing(make_chat):
    chat = storm(make_chat, large_room=4)
    alice = chat.line("alice", "#r")
    quiet(chat)
    chat.line("bob", "#r")  # at once
    chat.line("carol", "#r")  # pending
    chat.line("dave", "#r")  # 4: large, not even pending
    alice.raw()
    chat.clock.advance(WINDOW)
    assert alice.raw() == b""


# -- reload --------------------------------------------------------------------------
def test_a_reload_retunes_the_window_and_the_threshold(make_chat):
    chat = storm(make_chat)
    alice = chat.line("alice", "#r")
    quiet(chat)
    chat.line("bob", "#r")
    alice.raw()
    limits = chat.service.limits
    chat.service.reconfigure(limits=replace(limits, coalesce_window=0.0, large_room=3))
    chat.clock.advance(WINDOW)
    chat.line("carol", "#r")  # 3: large now
    assert alice.raw() == b""
    chat.service.reconfigure(limits=replace(limits, coalesce_window=0.0, large_room=0))
    chat.line("dave", "#r")
    chat.line("erin", "#r")
    assert alice.lines() == ["* dave joined #r", "* erin joined #r"]


def test_the_options_take_zero_for_off():
    from chatd.limits import Limits
    assert Limits(coalesce_window=0, large_room=0).large_room == 0
    with pytest.raises(ValueError, match="large_room must be positive or 0"):
        Limits(large_room=-1)
    with pytest.raises(ValueError, match="rate must be positive"):
        Limits(rate=0)


# -- clients -------------------------------------------------------------------------
EVENT = {"type": "presence", "room": "#r", "joined": ["alice", "bob"], "joins": 43,
         "left": ["carol"], "parts": 1, "ts": 1.0}


def test_chatd_cli_follow_shows_a_notice_as_text_mode_does():
    assert render(json.loads(json.dumps(EVENT))) == (
        "* alice, bob and 41 others joined #r\r\n* carol left #r")


@pytest.mark.parametrize("event, expected", [
    (EVENT, ("#r", ["alice", "bob"], ["carol"], 43, 1)),
    ({"type": "join", "room": "#r", "nick": "bob", "ts": 1.0}, ("#r", ["bob"], [], 1, 0)),
    ({"type": "part", "room": "#r", "nick": "bob", "reason": "", "ts": 1.0},
     ("#r", [], ["bob"], 0, 1)),
    ({"type": "message", "room": "#r", "from": "bob", "text": "hi", "mid": 1, "ts": 1.0},
     None),
])
def test_the_client_reads_joins_and_parts_one_way(event, expected):
    change = presence_change(event)
    if expected is None:
        assert change is None
    else:
        assert (change.room, change.joined, change.left, change.joins, change.parts) == expected


def test_chatd_cli_who_says_when_the_list_is_cut_short(capsys):
    from types import SimpleNamespace

    from twisted.internet.defer import succeed
    from twisted.internet.task import Clock

    from chatd import clientcli

    class Client:
        def who(self, room):
            return succeed({"type": "ack", "request": "who", "room": room,
                            "nicks": ["a", "b"], "members": 700, "more": True})
    clientcli.who(Clock(), Client(), SimpleNamespace(room="#big", timeout=5))
    captured = capsys.readouterr()
    assert captured.out == "a\nb\n"
    assert captured.err == "chatd-cli: 700 present; only the first 2 are listed\n"


def test_sighup_reload_of_the_file_retunes_coalescing_and_the_threshold(tmp_path):
    from twisted.internet.task import Clock

    from chatd.reload import Reloader
    from chatd.service import ChatService
    from chatd.tap import Options

    path = tmp_path / "chatd.toml"
    path.write_text("coalesce-window = 2.0\nlarge-room = 100\n")
    options = Options()
    options.parseOptions(["--config", str(path)])
    chat = ChatService(options["limits"], clock=Clock())
    assert (chat.notices.limits.coalesce_window, chat.notices.limits.large_room) == (2.0, 100)
    path.write_text("coalesce-window = 0\nlarge-room = 0\n")
    assert Reloader(options, chat).reload()
    assert (chat.notices.limits.coalesce_window, chat.notices.limits.large_room) == (0.0, 0)
    assert not chat.notices.is_large(10_000)


def test_metrics_count_how_each_room_heard_of_a_change(make_chat):
    from chatd.dispatch import Dispatcher
    from chatd.metrics import Metrics
    from chatd.service import ChatService

    chat = make_chat()
    metrics = Metrics(chat.clock, process=False)
    chat.service = ChatService(replace(chat.service.limits, coalesce_window=WINDOW,
                                       large_room=4),
                               clock=chat.clock, metrics=metrics)
    chat.dispatcher = Dispatcher(chat.service)

    def counts():
        return [metrics.registry.get_sample_value("chatd_presence_changes_total",
                                                  {"how": how})
                for how in ("at_once", "gathered", "unannounced")]
    assert counts() == [0, 0, 0]
    chat.line("a", "#r")  # at once
    chat.line("b", "#r")
    chat.line("c", "#r")  # gathered
    chat.line("d", "#r")  # 4: a large room
    assert counts() == [1, 2, 1]
