"""Bad input: each a clear error to that client alone, while the room carries on."""

import websocket

# Small limits so the tests can hit them; a generous request budget so the
# errors below are not drowned in flood refusals (flooding has its own module).
DAEMON_OPTIONS = ["--max-line", "512", "--max-frame", "1024", "--max-message", "100",
                  "--rate", "50", "--burst", "100"]


def still_talking(victim, bystander, room, victim_nick, bystander_nick, sign):
    """Both ends still hear each other, and the bystander never saw an error."""
    bystander.send(f"still here {sign}")
    victim.expect(f"[{room}] <{bystander_nick}> still here {sign}")
    victim.send(f"me too {sign}")
    bystander.expect(f"[{room}] <{victim_nick}> me too {sign}")
    assert not [line for line in bystander.seen if "error" in line], bystander.seen


def test_text_mode_errors(daemon):
    calm = daemon.line().login("calm", "#lim")
    rude = daemon.line().login("rude", "#lim")
    cases = [
        (b"x" * 600 + b"\r\n", "! error line_too_long: lines are at most 512 bytes; line ignored"),
        (b"oops \xff\xfe\r\n", "! error invalid_utf8: input must be UTF-8; line ignored"),
        (b"/frobnicate now\r\n", "! error unknown_command: unknown command /frobnicate; "
                                 "/help lists commands"),
        (b"/msg\r\n", "! error missing_argument: usage: /msg NICK text"),
        (b"/msg calm\n", "! error missing_argument: usage: /msg NICK text"),
        (b"/join\r\n", "! error missing_argument: usage: /join #room"),
        (b"/nick 9lives\r\n", "! error invalid_nick: a nick is 1-24 letters"),
        (b"/nick CALM\r\n", "! error nick_taken: CALM is already taken"),
        (b"/nick rude2\r\n", "! error nick_too_fast: wait 5 seconds between nick changes"),
        (b"/join lobby\r\n", "! error invalid_room: a room is '#'"),
        (b"/join #" + b"r" * 60 + b"\r\n", "! error invalid_room"),
        (b"y" * 101 + b"\r\n", "! error message_too_long: a message is at most 100 characters"),
        (b"/me\r\n", "! error missing_argument: usage: /me text"),
        (b"ring \x07 ring\r\n", "! error invalid_text: control characters"),
        (b"/part #elsewhere\r\n", "! error not_in_room: you are not in #elsewhere"),
    ]
    for i, (data, error) in enumerate(cases):
        rude.send_raw(data)
        assert rude.expect("! error").startswith(error), (data, rude.seen[-1])
        still_talking(rude, calm, "#lim", "rude", "calm", i)
    # A long line split over several reads, then a good line in the same packet.
    rude.send_raw(b"z" * 400)
    rude.send_raw(b"z" * 400 + b"\nafter the long one\n")
    rude.expect("! error line_too_long")
    calm.expect("[#lim] <rude> after the long one")
    assert not [line for line in calm.seen if "zzz" in line]


def test_speaking_before_a_nick_or_outside_a_room(daemon):
    anon = daemon.line()
    anon.expect("Welcome")
    anon.send("hello?")
    assert anon.expect("! error") == "! error no_nick: choose a nick first with /nick NAME"
    anon.send("/join #lim2")
    assert anon.expect("! error").startswith("! error no_nick")
    anon.send("/nick lonely")
    anon.expect("you are now lonely")
    anon.send("anyone?")
    assert anon.expect("! error") == "! error not_in_room: join a room first with /join #room"
    anon.send("/who")
    assert anon.expect("! error").startswith("! error not_in_room")


def test_json_lines_errors(daemon):
    calm = daemon.line().login("calm3", "#limj")
    bot = daemon.line().login("bot3", "#limj").json_mode()
    bot.send_raw(b'{"type": "message", "text": \n')
    assert bot.expect({"type": "error"})["code"] == "invalid_json"
    bot.send_raw(b"[1, 2]\n")
    assert bot.expect({"type": "error"})["code"] == "bad_request"
    bot.send_raw(b'{"type": "message", "text": "\xff"}\n')
    assert bot.expect({"type": "error"})["code"] == "invalid_utf8"
    assert bot.request({"type": "dance", "id": 1}) == {
        "type": "error", "code": "unknown_type", "message": 'unknown request type "dance"',
        "id": 1, "request": "dance"}
    assert bot.request({"id": 2})["code"] == "bad_request"
    assert bot.request({"type": "message", "text": 5, "id": 2})["code"] == "bad_request"
    # Half a surrogate pair decodes to a string nothing can encode again: refused
    # at the door, so it never reaches the store or anyone's screen.
    bot.send_raw(b'{"type": "message", "text": "\\udc80", "id": 21}\n')
    assert bot.expect({"type": "error", "id": 21})["code"] == "invalid_text"
    bot.send_raw(b'{"type": "quit", "reason": "\\ud800", "id": 22}\n')
    assert bot.expect({"type": "error", "id": 22})["code"] == "invalid_text"
    assert bot.request({"type": "join", "id": 3})["code"] == "missing_argument"
    assert bot.request({"type": "join", "room": 5, "id": 4})["code"] == "bad_request"
    assert bot.request({"type": "message", "text": "   ", "id": 5})["code"] == "empty_message"
    assert bot.request({"type": "message", "id": 6})["code"] == "empty_message"
    assert bot.request({"type": "message", "text": "x" * 101, "id": 7})["code"] == \
        "message_too_long"
    assert bot.request({"type": "private", "to": "nobody", "text": "x", "id": 8})["code"] == \
        "no_such_nick"
    assert bot.request({"type": "message", "text": "fine", "id": 9})["type"] == "ack"
    calm.expect("[#limj] <bot3> fine")
    assert not [line for line in calm.seen if "error" in line]
    assert daemon.health()["store"] == "ok"


def test_websocket_errors(daemon):
    calm = daemon.line().login("calm4", "#limw")
    web = daemon.ws().login("web4", "#limw")
    calm.expect("* web4 joined #limw")
    web.send_text("{not json")
    assert web.expect({"type": "error"})["code"] == "invalid_json"
    web.send_text(b"\x00\x01", websocket.ABNF.OPCODE_BINARY)
    assert web.expect({"type": "error"})["code"] == "binary_frame"
    assert web.request({"type": "fly"})["code"] == "unknown_type"
    assert web.request({"type": "nick"})["code"] == "missing_argument"
    assert web.request({"type": "nick", "nick": "calm4"})["code"] == "nick_taken"
    assert web.request({"type": "join", "room": "bad room"})["code"] == "invalid_room"
    assert web.request({"type": "message", "text": ""})["code"] == "empty_message"
    # A frame just under the limit is an ordinary (if long) request.
    assert web.request({"type": "message", "text": "x" * 101, "pad": "p" * 800})["code"] == \
        "message_too_long"
    assert web.request({"type": "message", "text": "ok"})["type"] == "ack"
    calm.expect("[#limw] <web4> ok")

    # Invalid UTF-8 in a text frame: an error, then the connection is failed.
    bad = daemon.ws().login("bad4", "#limw")
    bad.send_text(b'{"type": "message", "text": "\xff"}')
    assert bad.expect({"type": "error"})["code"] == "invalid_utf8"
    bad.expect_closed()
    calm.expect("* bad4 quit (invalid UTF-8)")

    # An over-long frame closes with 1009 (message too big).
    big = daemon.ws().login("big4", "#limw")
    big.send_text('{"type": "message", "text": "' + "x" * 2000 + '"}')
    big.expect_closed()
    assert big.close_code == 1009
    calm.expect("* big4 quit")

    calm.send("carry on")
    web.expect({"type": "message", "text": "carry on"})
    assert not [line for line in calm.seen if "error" in line]
