"""The TCP line front end, fed bytes through dataReceived on a StringTransport."""

import json

import pytest


def test_greeting(chat):
    client = chat.line(fresh=False)
    [hello] = client.lines()
    assert hello.startswith("* Welcome to chatd ")
    assert "/nick NAME" in hello


def test_conversation(chat):
    alice = chat.line()
    bob = chat.line()
    alice.send("/nick alice", "/join #tea")
    assert alice.lines() == ["* you are now alice", "* alice joined #tea",
                             "* now talking in #tea; members: alice"]
    bob.send("/nick bob", "/join #tea")
    bob.raw()
    assert alice.lines() == ["* bob joined #tea"]

    alice.send("hello there")
    assert bob.lines() == ["[#tea] <alice> hello there"]
    assert alice.lines() == ["[#tea] <alice> hello there"]

    bob.send("/me waves")
    assert alice.lines() == ["[#tea] * bob waves"]
    bob.raw()

    bob.send("/msg alice psst, over here")
    assert alice.lines() == ["[pm bob -> alice] psst, over here"]
    assert bob.lines() == ["[pm bob -> alice] psst, over here"]

    alice.send("/who")
    assert alice.lines() == ["* #tea: 2 present: alice, bob"]
    alice.send("/rooms")
    assert alice.lines() == ["* rooms: #tea (2)"]

    bob.send("/part #tea see you")
    assert bob.lines() == ["* bob left #tea (see you)", "* you left #tea"]
    assert alice.lines() == ["* bob left #tea (see you)"]

    alice.send("/quit gone fishing")
    assert alice.lines() == ["* closing connection: gone fishing"]
    assert not alice.transport.connected
    bob.send("/rooms")
    assert bob.lines() == ["* no rooms yet; /join #name creates one"]  # nobody kept it


def test_quit_is_seen_by_room(chat):
    alice = chat.line("alice", "#r")
    bob = chat.line("bob", "#r")
    alice.raw()
    bob.send("/quit")
    assert bob.lines() == ["* closing connection: quit"]
    assert alice.lines() == ["* bob quit (quit)"]
    assert len(chat.service.sessions) + len(chat.service._closing) == 1


def test_help_lists_commands(chat):
    client = chat.line()
    client.send("/help")
    lines = client.lines()
    assert len(lines) > 8
    assert all(line.startswith("* /") or line.startswith("* a line") for line in lines)
    assert any(line.startswith("* /msg NICK text") for line in lines)


def test_crlf_and_lf_input_both_work_and_output_is_crlf(chat):
    alice = chat.line("alice", "#r")
    bob = chat.line("bob", "#r")
    alice.raw()
    bob.send("crlf line", eol=b"\r\n")
    bob.send("lf line", eol=b"\n")
    raw = alice.raw()
    assert raw == b"[#r] <bob> crlf line\r\n[#r] <bob> lf line\r\n"


def test_input_split_across_chunks(chat):
    alice = chat.line("alice", "#r")
    bob = chat.line("bob", "#r")
    alice.raw()
    for piece in (b"hel", b"lo\r", b"\nsecond\nthi", b"rd\n"):
        bob.proto.dataReceived(piece)
    assert alice.lines() == ["[#r] <bob> hello", "[#r] <bob> second", "[#r] <bob> third"]


def test_double_slash_sends_a_slash(chat):
    alice = chat.line("alice", "#r")
    bob = chat.line("bob", "#r")
    alice.raw()
    bob.send("//join is the command")
    assert alice.lines() == ["[#r] <bob> /join is the command"]


def test_blank_line_says_nothing(chat):
    client = chat.line("alice", "#r")
    client.send("", "   ", eol=b"\r\n")
    assert client.raw() == b""


def test_unknown_command(chat):
    client = chat.line()
    client.send("/frobnicate now")
    assert client.lines() == ["! error unknown_command: unknown command /frobnicate; "
                              "/help lists commands"]


@pytest.mark.parametrize("line,usage", [
    ("/nick", "/nick NAME"),
    ("/join", "/join #room"),
    ("/msg bob", "/msg NICK text"),
    ("/me", "/me text"),
])
def test_missing_arguments(chat, line, usage):
    client = chat.line("alice", "#r")
    client.send(line)
    assert client.lines() == [f"! error missing_argument: usage: {usage}"]


def test_errors_are_readable_lines(chat):
    client = chat.line()
    client.send("hello?")
    assert client.lines() == ["! error no_nick: choose a nick first with /nick NAME"]
    client.send("/nick alice", "hello?")
    assert client.lines()[-1] == "! error not_in_room: join a room first with /join #room"
    client.send("/msg ghost boo")
    assert client.lines() == ["! error no_such_nick: ghost is not online"]


def test_invalid_utf8_refused_and_connection_goes_on(chat):
    alice = chat.line("alice", "#r")
    bob = chat.line("bob", "#r")
    alice.raw()
    bob.proto.dataReceived(b"caf\xe9\r\nstill here\r\n")
    assert bob.lines()[0] == "! error invalid_utf8: input must be UTF-8; line ignored"
    assert alice.lines() == ["[#r] <bob> still here"]


def test_utf8_text_round_trips(chat):
    alice = chat.line("alice", "#r")
    bob = chat.line("bob", "#r")
    alice.raw()
    bob.send("naïve café ☕")
    assert alice.raw() == "[#r] <bob> naïve café ☕\r\n".encode()


# -- over-long lines ---------------------------------------------------------------
TOO_LONG = "! error line_too_long: lines are at most 64 bytes; line ignored"


@pytest.fixture
def short(make_chat):
    chat = make_chat(max_line=64)
    alice = chat.line("alice", "#r")
    bob = chat.line("bob", "#r")
    alice.raw()
    return chat, alice, bob


def test_long_line_in_one_chunk_then_next_line_works(short):
    chat, alice, bob = short
    bob.proto.dataReceived(b"x" * 100 + b"\r\nafter\r\n")
    assert bob.lines()[0] == TOO_LONG
    assert alice.lines() == ["[#r] <bob> after"]
    bob.send("and again")
    assert alice.lines() == ["[#r] <bob> and again"]


def test_long_line_in_many_chunks_then_next_line_works(short):
    chat, alice, bob = short
    for _ in range(5):
        bob.proto.dataReceived(b"y" * 40)
    bob.proto.dataReceived(b"yyy\r\nnext")
    bob.proto.dataReceived(b" line\r\n")
    assert bob.lines() == [TOO_LONG, "[#r] <bob> next line"]
    assert alice.lines() == ["[#r] <bob> next line"]


def test_line_at_the_limit_is_accepted(short):
    chat, alice, bob = short
    text = "z" * 64
    bob.proto.dataReceived(text.encode() + b"\n")
    assert alice.lines() == [f"[#r] <bob> {text}"]


def test_long_line_refused_once(short):
    chat, alice, bob = short
    bob.proto.dataReceived(b"w" * 1000)
    bob.proto.dataReceived(b"w" * 1000)
    bob.proto.dataReceived(b"\n")
    assert bob.lines() == [TOO_LONG]
    assert alice.raw() == b""
    assert bob.open


# -- JSON lines ------------------------------------------------------------------------
def test_json_mode(chat):
    client = chat.line()
    client.send("/json")
    assert client.json() == [{"type": "ack", "request": "json", "mode": "json"}]
    client.send_json({"type": "nick", "nick": "alice", "id": 1})
    client.send_json({"type": "join", "room": "#r", "id": "two"})
    events = client.json()
    assert events[0] == {"type": "ack", "request": "nick", "id": 1, "nick": "alice"}
    assert events[1]["type"] == "join"
    assert events[2] == {"type": "ack", "request": "join", "id": "two", "room": "#r",
                         "nicks": ["alice"]}
    client.send_json({"type": "message", "text": "hi", "id": 3})
    msg, ack = client.json()
    assert (msg["type"], msg["from"], msg["text"]) == ("message", "alice", "hi")
    assert ack == {"type": "ack", "request": "message", "id": 3, "room": "#r",
                   "mid": msg["mid"], "ts": msg["ts"]}


def test_json_request_in_json_mode_is_acked_with_its_id(chat):
    client = chat.line(json_mode=True)
    client.send_json({"type": "json", "id": "again"})
    assert client.json() == [{"type": "ack", "request": "json", "id": "again", "mode": "json"}]


def test_json_mode_output_lines_end_in_crlf(chat):
    client = chat.line(json_mode=True)
    client.send_json({"type": "ping", "id": 9})
    assert client.raw() == b'{"type":"ack","request":"ping","id":9}\r\n'


def test_json_errors_carry_the_request_id(chat):
    client = chat.line(json_mode=True)
    client.send_json({"type": "message", "text": "hi", "id": 5})
    assert client.json() == [{"type": "error", "code": "no_nick", "id": 5, "request": "message",
                              "message": "choose a nick first with /nick NAME"}]
    client.send_json({"type": "frob", "id": 6})
    [e] = client.json()
    assert (e["code"], e["id"], e["request"]) == ("unknown_type", 6, "frob")
    client.send_json({"type": "nick", "nick": 42, "id": 7})
    [e] = client.json()
    assert (e["code"], e["id"]) == ("bad_request", 7)


@pytest.mark.parametrize("line,code", [
    ("{not json", "invalid_json"),
    ('{"type": "nick"', "invalid_json"),
    ("[1, 2]", "bad_request"),
    ('"just a string"', "bad_request"),
    ("42", "bad_request"),
    ('{"type": "message", "text": "\\udc80"}', "invalid_text"),
    ('{"type": "nick", "nick": "a", "x": {"\\uDBFF": 1}}', "invalid_text"),
    ('{"id": 1}', "bad_request"),
])
def test_json_mode_bad_input(chat, line, code):
    client = chat.line(json_mode=True)
    client.send(line)
    [e] = client.json()
    assert e["type"] == "error" and e["code"] == code
    client.send_json({"type": "ping"})
    assert client.json() == [{"type": "ack", "request": "ping"}]


def test_text_and_json_users_see_each_other(chat):
    text = chat.line("alice", "#r")
    js = chat.line("bob", "#r", json_mode=True)
    assert text.lines() == ["* bob joined #r"]
    text.send("hi bob")
    text.raw()
    [msg] = js.json()
    assert (msg["type"], msg["room"], msg["from"], msg["text"]) == ("message", "#r", "alice",
                                                                    "hi bob")
    js.send_json({"type": "message", "text": "hi alice"})
    assert text.lines() == ["[#r] <bob> hi alice"]
    js.send_json({"type": "action", "text": "nods"})
    assert text.lines() == ["[#r] * bob nods"]


def test_switching_to_json_in_a_room_keeps_delivery_single(chat):
    alice = chat.line("alice", "#r")
    bob = chat.line("bob", "#r")
    alice.raw()
    bob.send("/json")
    bob.raw()
    alice.send("one")
    assert [e["text"] for e in bob.json()] == ["one"]


def test_json_switch_when_flooding_is_an_error_not_a_crash(make_chat):
    chat = make_chat(burst=1, rate=1.0, reconnect_burst=0)
    client = chat.line(fresh=False)
    client.raw()
    client.send("/rooms")  # takes the only token
    client.raw()
    client.send("/json")
    assert client.lines() == ["! error flood: too many requests; slow down"]
    assert client.open


# -- heartbeat -------------------------------------------------------------------------
def test_ping_line_and_any_line_answers(make_chat):
    chat = make_chat(ping_interval=30, ping_timeout=60)
    chat.service.startService()
    client = chat.line("alice")
    chat.clock.advance(30)
    assert client.lines() == ["PING :are you there? (any line answers)"]
    for _ in range(6):
        client.send("")  # even a blank line is a sign of life
        chat.clock.advance(30)
        client.raw()
    assert client.open
    chat.clock.advance(60)
    assert client.lines()[-1] == "* closing connection: ping timeout"
    assert not client.transport.connected
    chat.service.stopService()


def test_json_mode_ping_is_an_event(make_chat):
    chat = make_chat(ping_interval=30, ping_timeout=60)
    chat.service.startService()
    client = chat.line("alice", json_mode=True)
    chat.clock.advance(30)
    [ping] = client.json()
    assert ping == {"type": "ping", "ts": chat.clock.seconds()}
    client.send_json({"type": "pong"})
    assert client.raw() == b""  # a pong is itself an answer
    chat.service.stopService()


def test_connection_lost_frees_the_nick(chat):
    alice = chat.line("alice", "#r")
    alice.transport.loseConnection()
    bob = chat.line()
    bob.send("/nick alice")
    assert bob.lines() == ["* you are now alice"]
    assert len(chat.service.rooms) == 0


def test_json_line_is_valid_utf8_json(chat):
    alice = chat.line("alice", "#r", json_mode=True)
    bob = chat.line("bob", "#r")
    alice.raw()
    bob.send("☕ \"quoted\" \\ back")
    [line] = alice.lines()
    assert json.loads(line)["text"] == "☕ \"quoted\" \\ back"


def test_away_and_back_from_the_line_port_reach_an_irc_user(chat):
    from tests.irchelp import IrcChat
    irc = IrcChat(chat).client("ivy", "#tea", caps=("away-notify",))
    alice = chat.line("alice", "#tea")
    irc.raw()
    alice.send("/away at lunch")
    assert alice.lines() == ["* you are away: at lunch"]
    assert irc.commands() == [("AWAY", ("at lunch",))]
    alice.send("/away")
    assert alice.lines() == ["* you are back"]
    assert irc.commands() == [("AWAY", ())]
