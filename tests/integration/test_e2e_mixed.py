"""Every front end in one room: telnet user, WebSocket user, JSON-lines script."""

# Room for a burst of 100 messages from one sender in the ordering test.
# Nick changes are rate limited from the first nick on; keep the wait short.
DAEMON_OPTIONS = ["--rate", "200", "--burst", "200", "--nick-interval", "0.2"]


def trio(daemon, room, tag=""):
    tom = daemon.line().login("tom" + tag, room)
    wes = daemon.ws().login("wes" + tag, room)
    jay = daemon.line().login("jay" + tag).json_mode()
    assert jay.request({"type": "join", "room": room, "id": 1})["type"] == "ack"
    tom.expect(f"* wes{tag} joined")
    tom.expect(f"* jay{tag} joined")
    wes.expect({"type": "join", "nick": "jay" + tag})
    return tom, wes, jay


def test_front_ends_see_each_other(daemon):
    tom, wes, jay = trio(daemon, "#mix")

    tom.send("from telnet")
    wes.request({"type": "message", "text": "from websocket"})
    jay.request({"type": "message", "text": "from script", "id": 2})
    for text in ("from telnet", "from websocket", "from script"):
        assert wes.expect({"type": "message", "text": text})["room"] == "#mix"
        assert jay.expect({"type": "message", "text": text})["room"] == "#mix"
    tom.expect("[#mix] <wes> from websocket")
    tom.expect("[#mix] <jay> from script")

    # nick change, seen everywhere
    daemon.wait_for(
        lambda: wes.request({"type": "nick", "nick": "wesley"})["type"] == "ack",
        "the nick change to be accepted")
    tom.expect("* wes is now known as wesley")
    nick = jay.expect({"type": "nick"})
    assert (nick["old"], nick["new"]) == ("wes", "wesley") and isinstance(nick["ts"], float)
    wes.expect({"type": "nick", "new": "wesley"})

    # private messages across front ends
    tom.send("/msg wesley to ws")
    assert wes.expect({"type": "private"})["text"] == "to ws"
    wes.request({"type": "private", "to": "jay", "text": "to script"})
    assert jay.expect({"type": "private"})["from"] == "wesley"
    jay.request({"type": "private", "to": "tom", "text": "to telnet", "id": 3})
    tom.expect("[pm jay -> tom] to telnet")

    # parts and quits
    jay.request({"type": "part", "id": 4})
    tom.expect("* jay left #mix")
    wes.expect({"type": "part", "nick": "jay"})
    tom.send("/quit off to bed")
    quit_ = wes.expect({"type": "quit", "nick": "tom"})
    assert quit_["reason"] == "off to bed"
    tom.expect_closed()
    # jay left the room, so it does not hear about tom
    jay.request({"type": "ping", "id": 5})
    assert not [e for e in jay.drain() if e.get("type") == "quit"]
    wes.close()
    jay.close()


def test_private_to_offline_nick_is_a_clear_error(daemon):
    ann = daemon.line().login("ann")
    ann.send("/msg nobody hello?")
    assert ann.expect("! error") == "! error no_such_nick: nobody is not online"
    ws = daemon.ws().login("wally")
    err = ws.request({"type": "private", "to": "ann2", "text": "x", "id": 1})
    assert err["code"] == "no_such_nick" and err["id"] == 1
    ann.close()
    ws.close()


def test_one_senders_burst_arrives_in_order_everywhere(daemon):
    tom, wes, jay = trio(daemon, "#order", "2")
    count = 100
    for i in range(count):
        jay.send_json({"type": "message", "text": f"n{i}"})
    for c in (wes, jay):
        got = []
        while len(got) < count:
            got.append(c.expect({"type": "message", "from": "jay2"}))
        assert [e["text"] for e in got] == [f"n{i}" for i in range(count)]
        mids = [e["mid"] for e in got]
        assert mids == sorted(mids) and len(set(mids)) == count
        assert all(isinstance(e["ts"], float) for e in got)
        assert [e["ts"] for e in got] == sorted(e["ts"] for e in got)
    lines = [tom.expect("<jay2> n") for _ in range(count)]
    assert lines == [f"[#order] <jay2> n{i}" for i in range(count)]
    assert not [e for e in jay.drain() if e.get("type") == "error"]
