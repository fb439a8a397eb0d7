"""Join storms against the real daemon: one coalesced notice per member, and a
large room that announces nothing and tells a joiner the count."""

# Long enough that every join below lands in the window the first one opens.
WINDOW = "3"


def test_a_burst_of_joins_is_one_notice_on_every_front_end(start_daemon):
    daemon = start_daemon("--coalesce-window", WINDOW)
    web = daemon.ws().login("web", "#storm")  # the first join: at once, opens the window
    tty = daemon.line().login("tty", "#storm")
    script = daemon.line().login("bot", "#storm").json_mode()
    joiners = [daemon.line().login(f"j{i}", "#storm") for i in range(4)]
    everyone = ["tty", "bot"] + [f"j{i}" for i in range(4)]
    event = web.expect({"type": "presence"}, timeout=10)
    assert (event["room"], event["joined"], event["joins"], event["left"]) == (
        "#storm", everyone, 6, [])
    assert script.expect({"type": "presence"}, timeout=10)["joined"] == everyone
    assert tty.expect("joined #storm", timeout=10) == (
        "* tty, bot, j0 and 3 others joined #storm")
    # One notice, not one per joiner: what came before it was web's own join.
    assert [(e["type"], e.get("nick")) for e in web.drain()
            if e.get("type") in ("join", "presence")] == [("join", "web")]
    for c in (web, tty, script, *joiners):
        c.close()


def test_a_large_room_tells_a_joiner_the_count_and_no_one_else(start_daemon):
    daemon = start_daemon("--large-room", "3")
    first = daemon.line().login("first", "#big").json_mode()
    second = daemon.line().login("second", "#big")
    first.expect({"type": "join", "nick": "second"})
    third = daemon.ws().login("third")
    ack = third.request({"type": "join", "room": "#big", "id": "j"})
    assert (ack.get("nicks"), ack["members"], ack["large"]) == (None, 3, True)
    who = third.request({"type": "who", "room": "#big", "id": "w"})
    assert who["nicks"] == ["first", "second", "third"]
    second.send("/part #big")
    second.expect("you left #big")
    first.send_json({"type": "ping", "id": "p"})  # anything announced came before this
    first.expect({"type": "ack", "request": "ping"})
    assert not [e for e in first.backlog
                if isinstance(e, dict) and e.get("type") in ("join", "part", "presence")]
    for c in (first, second, third):
        c.close()
