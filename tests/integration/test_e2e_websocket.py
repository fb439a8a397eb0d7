"""The WebSocket front end at /ws end to end, with a real WebSocket client."""


def test_hello_carries_the_limits(daemon):
    c = daemon.ws()
    hello = c.expect({"type": "hello"})
    assert hello["server"] == "chatd"
    assert hello["limits"]["max_message"] == 2000 and hello["limits"]["ping_interval"] == 30
    c.close()


def test_conversation_in_a_room(daemon):
    alice = daemon.ws().login("alice")
    bob = daemon.ws().login("bob")
    ack = alice.request({"type": "join", "room": "#lobby", "id": 1})
    assert ack == {"type": "ack", "request": "join", "id": 1, "room": "#lobby",
                   "nicks": ["alice"]}
    ack = bob.request({"type": "join", "room": "#lobby", "id": "j"})
    assert ack["id"] == "j" and ack["nicks"] == ["alice", "bob"]
    joined = alice.expect({"type": "join", "nick": "bob"})
    assert joined["room"] == "#lobby" and isinstance(joined["ts"], float)

    ack = bob.request({"type": "message", "text": "hello all", "id": 2})
    assert ack["request"] == "message" and ack["id"] == 2
    for c in (alice, bob):
        msg = c.expect({"type": "message", "from": "bob"})
        assert msg["text"] == "hello all" and msg["room"] == "#lobby"
        assert msg["mid"] == ack["mid"] and msg["ts"] == ack["ts"]

    alice.request({"type": "action", "text": "waves"})
    assert bob.expect({"type": "action"})["text"] == "waves"

    who = alice.request({"type": "who", "room": "#lobby"})
    assert who["nicks"] == ["alice", "bob"]
    rooms = bob.request({"type": "rooms"})["rooms"]
    assert {"room": "#lobby", "members": 2} in rooms
    assert "/nick NAME" in " ".join(alice.request({"type": "help"})["lines"])
    assert alice.request({"type": "ping", "id": 99}) == {"type": "ack", "request": "ping",
                                                         "id": 99}

    ack = alice.request({"type": "part", "reason": "lunch"})
    assert ack["room"] == "#lobby"
    part = bob.expect({"type": "part"})
    assert part["nick"] == "alice" and part["reason"] == "lunch"

    bob.request({"type": "quit", "reason": "bye"})
    assert {"type": "bye", "reason": "bye"} in bob.expect_closed()
    assert bob.close_code == 1000
    alice.close()


def test_private_and_quit_with_reason(daemon):
    amy = daemon.ws().login("amy", "#wspm")
    ben = daemon.ws().login("ben", "#wspm")
    cal = daemon.ws().login("cal", "#wspm")
    ack = amy.request({"type": "private", "to": "ben", "text": "psst"})
    assert ack["to"] == "ben"
    pm = ben.expect({"type": "private"})
    assert pm["from"] == "amy" and pm["to"] == "ben" and pm["text"] == "psst"
    assert pm["mid"] == ack["mid"]
    amy.expect({"type": "private", "text": "psst"})

    cal.request({"type": "quit", "reason": "gone fishing"})
    for c in (amy, ben):
        assert c.expect({"type": "quit", "nick": "cal"})["reason"] == "gone fishing"
    # cal never saw the private message
    assert not [e for e in cal.seen if e.get("type") == "private"]
    amy.close()
    ben.close()


def test_errors_carry_the_request_id(daemon):
    c = daemon.ws().login("erin")
    err = c.request({"type": "message", "text": "hi", "id": 5})
    assert err == {"type": "error", "code": "not_in_room", "id": 5, "request": "message",
                   "message": err["message"]}
    assert "/join" in err["message"]
    err = c.request({"type": "teleport", "id": "x"})
    assert err["code"] == "unknown_type" and err["id"] == "x"
    err = c.request({"type": "join", "id": 3})
    assert err["code"] == "missing_argument" and "room" in err["message"]
    # still fine afterwards
    assert c.request({"type": "join", "room": "#ok", "id": 4})["type"] == "ack"
    c.close()
