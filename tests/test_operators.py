"""Server operators (chatd.operators): wall, kill, server bans, sessions; in memory."""

import pytest
from fakes import FakeSink, InlinePasswords
from twisted.internet.task import Clock

from chatd.errors import ChatError
from chatd.operators import front_end, parse_duration
from chatd.service import ChatService
from chatd.store.memory import MemoryStore

PASSWORD = "correct horse battery"


def operator(chat, nick="root", host="10.0.0.9", json_mode=True):
    """A client logged in as the registered server operator ``nick``."""
    chat.service.operators = frozenset({nick})
    c = chat.line(nick, host=host)
    c.send(f"/register {PASSWORD}")  # registering logs in
    if json_mode:
        c.send("/json")
    c.raw()
    return c


def gone(client) -> bool:
    return client.session is None or not client.session.attached


def ack(client, req):
    client.raw()
    client.send_json(req)
    answers = [e for e in client.json() if e["type"] in ("ack", "error")]
    assert len(answers) == 1, answers
    return answers[0]


@pytest.mark.parametrize("value, seconds", [
    ("0", 0), (0, 0), ("90", 90), ("10m", 600), ("2h", 7200), ("7d", 7 * 86400),
    ("1w", 7 * 86400), ("2H", 7200)])
def test_durations(value, seconds):
    assert parse_duration(value) == seconds


@pytest.mark.parametrize("value", ["", "-5", "10x", "1.5h", None, True, "99999d", [3]])
def test_bad_durations(value):
    with pytest.raises(ChatError) as e:
        parse_duration(value)
    assert e.value.code == "bad_request"


@pytest.mark.parametrize("req", [
    {"type": "wall", "text": "hi"}, {"type": "kill", "nick": "bob"},
    {"type": "gban", "target": "nick:bob", "duration": "0"},
    {"type": "ungban", "target": "nick:bob"}, {"type": "gbans"}, {"type": "sessions"}])
def test_non_operators_are_refused(chat, req, logged):
    chat.line("bob")
    # Named like an operator, but not logged in as the account: still refused.
    chat.service.operators = frozenset({"mallory"})
    c = chat.line("mallory", json_mode=True)
    answer = ack(c, req)
    assert (answer["type"], answer["code"]) == ("error", "not_server_operator")
    assert chat.service.sessions and c.open
    assert any(e.get("code") == "not_server_operator" for e in logged)


def test_operators_set_is_read_per_request(chat):
    c = operator(chat)
    assert ack(c, {"type": "gbans"})["type"] == "ack"
    chat.service.operators = frozenset()  # a reload took root out
    assert ack(c, {"type": "gbans"})["code"] == "not_server_operator"


def test_wall_reaches_every_front_end_and_unnamed_sessions(chat, ws, logged):
    c = operator(chat)
    bob = chat.line("bob", room="#a")
    nameless = chat.line()
    answer = ack(c, {"type": "wall", "text": "maintenance at noon"})
    assert answer["sent"] == 3
    assert bob.lines() == ["* [server notice from root] maintenance at noon"]
    assert nameless.lines() == ["* [server notice from root] maintenance at noon"]
    walls = [e for e in logged if e.get("action") == "wall"]
    assert walls and walls[0]["operator"] == "root"
    # The notice's text is a message: never in the log.
    assert not any("maintenance" in repr(e) for e in logged)


def test_wall_over_websocket(ws):
    chat, connect = ws()
    c = operator(chat)
    w = connect()
    w.send({"type": "nick", "nick": "wsuser"})
    w.events()
    ack(c, {"type": "wall", "text": "hello all"})
    assert {"type": "notice", "text": "[server notice from root] hello all"} in w.events()


def test_kill_drops_the_session_and_its_rooms_see_the_reason(chat, logged):
    c = operator(chat)
    bob = chat.line("bob", room="#a")
    alice = chat.line("alice", room="#a")
    answer = ack(c, {"type": "kill", "nick": "BOB", "reason": "flooding"})
    assert answer["nick"] == "bob"
    assert gone(bob)
    assert "* bob quit (killed by root: flooding)" in alice.lines()
    kills = [e for e in logged if e.get("action") == "kill"]
    assert kills[0]["target"] == "bob" and kills[0]["reason"] == "flooding"
    assert ack(c, {"type": "kill", "nick": "nobody"})["code"] == "no_such_nick"


def test_gban_nick_drops_now_and_refuses_the_nick_later(chat):
    c = operator(chat)
    bob = chat.line("bob")
    answer = ack(c, {"type": "gban", "target": "nick:Bob", "duration": "10m",
                     "reason": "spam"})
    assert answer == {"type": "ack", "request": "gban", "kind": "nick", "target": "bob",
                      "until": chat.clock.seconds() + 600, "dropped": 1}
    assert gone(bob)
    again = chat.line()
    again.send("/nick bob")
    assert again.lines() == ["! error banned_from_server: you are banned from this server "
                             "for now: spam"]
    # Expired: ignored.
    chat.clock.advance(601)
    again.send("/nick bob")
    assert again.lines() == ["* you are now bob"]


def test_gban_account_refuses_login(chat):
    c = operator(chat)
    bob = chat.line("bob")
    bob.send(f"/register {PASSWORD}")
    bob.send("/quit")
    ack(c, {"type": "gban", "target": "account:bob", "duration": "0"})
    later = chat.line("guest1")
    later.send(f"/login bob {PASSWORD}")
    assert later.lines()[-1].startswith("! error banned_from_server: you are banned from "
                                        "this server permanently")
    assert later.session.account is None


def test_gban_address_drops_matching_and_refuses_connects(chat):
    c = operator(chat, host="10.0.0.9")
    inside = chat.line("inside", host="192.0.2.77")
    outside = chat.line("outside", host="198.51.100.1")
    answer = ack(c, {"type": "gban", "target": "addr:192.0.2.0/24", "duration": "2h"})
    assert (answer["target"], answer["dropped"]) == ("192.0.2.0/24", 1)
    assert gone(inside) and not gone(outside)
    refused = chat.line(host="192.0.2.5", fresh=False)
    assert refused.lines() == ["! error banned_from_server: you are banned from this server "
                               "for now"]
    assert not refused.open
    assert chat.line(host="198.51.100.2", fresh=False).open


def test_gban_ipv6_range(chat):
    c = operator(chat)
    ack(c, {"type": "gban", "target": "addr:2001:db8::/32", "duration": "0"})
    assert not chat.line(host="2001:db8::1", fresh=False).open
    assert chat.line(host="2001:db9::1", fresh=False).open


@pytest.mark.parametrize("target", ["bob", "host:x", "addr:not-an-address", "nick:b@d"])
def test_bad_targets(chat, target):
    c = operator(chat)
    answer = ack(c, {"type": "gban", "target": target, "duration": "1h"})
    assert answer["type"] == "error" and answer["code"] in ("bad_request", "invalid_nick")


def test_ungban_and_list(chat):
    c = operator(chat)
    ack(c, {"type": "gban", "target": "nick:bob", "duration": "1h", "reason": "r"})
    ack(c, {"type": "gban", "target": "addr:10.1.0.0/16", "duration": "0"})
    bans = ack(c, {"type": "gbans"})["bans"]
    assert [(b["kind"], b["target"], b["by"]) for b in bans] == [
        ("addr", "10.1.0.0/16", "root"), ("nick", "bob", "root")]
    assert ack(c, {"type": "ungban", "target": "nick:BOB"})["target"] == "bob"
    assert ack(c, {"type": "ungban", "target": "nick:bob"})["code"] == "no_such_ban"
    assert [b["target"] for b in ack(c, {"type": "gbans"})["bans"]] == ["10.1.0.0/16"]
    assert chat.line("bob").session.nick == "bob"


def test_bans_are_stored_first_and_loaded_at_start(chat):
    c = operator(chat)
    ack(c, {"type": "gban", "target": "addr:203.0.113.0/24", "duration": "0"})
    ack(c, {"type": "gban", "target": "nick:gone", "duration": "1m"})
    db = chat.service.store.db
    # A new service on the same database: the ban holds after a restart; the
    # expired one is pruned from the store.
    clock = Clock()
    clock.advance(chat.clock.seconds() + 120)
    restarted = ChatService(clock=clock, store=MemoryStore(db), passwords=InlinePasswords())
    restarted.load()
    assert list(restarted.ops.bans) == [("addr", "203.0.113.0/24")]
    assert list(db.server_bans) == [("addr", "203.0.113.0/24")]
    with pytest.raises(ChatError) as e:
        restarted.connect(FakeSink(), "203.0.113.4")
    assert e.value.code == "banned_from_server"
    assert restarted.connect(FakeSink(), "203.0.114.4").attached


def test_a_ban_the_store_refuses_is_not_applied(chat):
    c = operator(chat)
    bob = chat.line("bob")
    chat.service.store.close()
    answer = ack(c, {"type": "gban", "target": "nick:bob", "duration": "0"})
    assert answer["code"] == "store_unavailable"
    assert not gone(bob) and not chat.service.ops.bans


def test_sessions_lists_who_is_where(chat, ws):
    c = operator(chat)
    chat.line("bob", room="#a", host="10.0.0.5")
    chat.line(host="10.0.0.6")
    chat.clock.advance(7)
    answer = ack(c, {"type": "sessions"})
    assert answer["total"] == 3
    by_nick = {s["nick"]: s for s in answer["sessions"]}
    assert by_nick["bob"] == {"nick": "bob", "address": "10.0.0.5", "front_end": "line",
                              "rooms": ["#a"], "idle": 7}
    assert by_nick[None]["address"] == "10.0.0.6"
    assert by_nick["root"]["idle"] == 0


def test_front_end_names():
    class ChatWebSocketProtocol:
        pass

    class LineProtocol:
        pass
    assert front_end(ChatWebSocketProtocol()) == "websocket"
    assert front_end(LineProtocol()) == "line"


def test_text_mode_commands_and_renderings(chat):
    c = operator(chat, json_mode=False)
    chat.line("bob", host="10.0.0.5")
    c.send("/sessions")
    lines = c.lines()
    assert lines[0] == "* 2 sessions"
    assert "* bob 10.0.0.5 line rooms: - idle 0s" in lines
    c.send("/gban nick:bob 0 be nice")
    assert c.lines() == ["* banned nick:bob permanently; 1 sessions dropped"]
    c.send("/gbans")
    assert c.lines() == ["* nick:bob permanently by root (be nice)"]
    c.send("/ungban nick:bob")
    assert c.lines() == ["* lifted the server ban on nick:bob"]
    c.send("/gbans")
    assert c.lines() == ["* no server bans"]
    c.send("/wall hi")
    assert c.lines() == ["* [server notice from root] hi", "* notice sent to 1 sessions"]
    c.send("/gban nick:bob")
    assert c.lines()[0].startswith("! error missing_argument: usage: /gban")
