"""The TCP line front end end to end: a telnet-style user and a JSON-lines script."""


def test_greeting_says_how_to_start(daemon):
    c = daemon.line()
    greeting = c.read()
    assert greeting.startswith("* Welcome to chatd")
    assert "/nick NAME" in greeting and "/help" in greeting
    assert c.raw_lines[0].endswith(b"\r\n")
    c.close()


def test_conversation_in_a_room(daemon):
    alice = daemon.line().login("alice", "#lobby")
    bob = daemon.line()
    bob.expect("Welcome")
    # bob types like a Unix nc user (LF only), alice like telnet (CRLF).
    bob.send("/nick bob", end=b"\n")
    bob.expect("you are now bob")
    bob.send("/join #lobby", end=b"\n")
    assert bob.expect("now talking in #lobby") == "* now talking in #lobby; members: alice, bob"
    alice.expect("* bob joined #lobby")

    bob.send("hello all", end=b"\n")
    alice.send("hi bob")
    for c in (alice, bob):
        c.expect("[#lobby] <bob> hello all")
        c.expect("[#lobby] <alice> hi bob")

    alice.send("/me waves")
    bob.expect("[#lobby] * alice waves")

    alice.send("/who #lobby")
    assert alice.expect("present") == "* #lobby: 2 present: alice, bob"
    bob.send("/rooms")
    assert "#lobby (2)" in bob.expect("* rooms:")

    alice.send("/help")
    alice.expect("/nick NAME")
    alice.expect("/quit [reason]")

    alice.send("/part")
    alice.expect("* you left #lobby")
    bob.expect("* alice left #lobby")
    bob.send("/who")
    assert bob.expect("present") == "* #lobby: 1 present: bob"

    for c in (alice, bob):
        assert c.raw_lines and all(raw.endswith(b"\r\n") for raw in c.raw_lines)
        c.close()


def test_private_message_reaches_only_its_target(daemon):
    amy = daemon.line().login("amy", "#pm")
    ben = daemon.line().login("ben", "#pm")
    cal = daemon.line().login("cal", "#pm")
    amy.send("/msg ben psst, ben")
    assert ben.expect("[pm") == "[pm amy -> ben] psst, ben"
    amy.expect("[pm amy -> ben] psst, ben")
    amy.send("public now")
    cal.expect("[#pm] <amy> public now")
    assert not [line for line in cal.seen if "psst" in line]
    for c in (amy, ben, cal):
        c.close()


def test_quit_with_reason_is_seen_by_the_room(daemon):
    dan = daemon.line().login("dan", "#bye")
    eve = daemon.line().login("eve", "#bye")
    eve.send("/quit bye")
    tail = eve.expect_closed()
    assert any("closing connection: bye" in line for line in tail), tail
    dan.expect("* eve quit (bye)")
    dan.send("/who")
    assert dan.expect("present") == "* #bye: 1 present: dan"
    dan.close()


def test_json_mode_speaks_the_websocket_schema(daemon):
    human = daemon.line().login("hugh", "#json")
    bot = daemon.line().login("bot").json_mode()
    ack = bot.request({"type": "join", "room": "#json", "id": 1})
    assert ack == {"type": "ack", "request": "join", "id": 1, "room": "#json",
                   "nicks": ["hugh", "bot"]}
    human.expect("* bot joined #json")

    ack = bot.request({"type": "message", "text": "beep", "id": "m1"})
    assert ack["request"] == "message" and ack["room"] == "#json"
    event = bot.expect({"type": "message", "text": "beep"})
    assert event["from"] == "bot" and event["mid"] == ack["mid"] and event["ts"] == ack["ts"]
    human.expect("[#json] <bot> beep")

    human.send("hello bot")
    event = bot.expect({"type": "message", "from": "hugh"})
    assert event["room"] == "#json" and event["text"] == "hello bot"
    assert isinstance(event["mid"], int) and isinstance(event["ts"], float)

    err = bot.request({"type": "join", "room": "nope", "id": 7})
    assert err["type"] == "error" and err["code"] == "invalid_room" and err["request"] == "join"
    # JSON lines also end in CRLF, and input may end in CRLF.
    bot.send_json({"type": "who", "id": 8}, end=b"\r\n")
    assert bot.expect({"id": 8})["nicks"] == ["hugh", "bot"]
    assert all(raw.endswith(b"\r\n") for raw in bot.raw_lines)
    for c in (human, bot):
        c.close()
