"""chatd.protobuf.v1 through the real daemon, with a real WebSocket client library
(websocket-client) speaking binary frames, beside a JSON WebSocket client and a
telnet user in one room."""

import pytest
import websocket

from chatd.proto import chatd_pb2 as pb

from .clients import PBClient, pump

DAEMON_OPTIONS = ["--rate", "200", "--burst", "200", "--nick-interval", "0.2"]


def test_protobuf_json_and_telnet_users_see_the_same_room(daemon):
    tom = daemon.line().login("tom", "#pb")
    wes = daemon.ws().login("wes", "#pb")
    pat = daemon.pb().login("pat", "#pb")
    assert pat.ws.getsubprotocol() == "chatd.protobuf.v1"
    tom.expect("* pat joined #pb")
    assert wes.expect({"type": "join", "nick": "pat"})["room"] == "#pb"

    # messages: the same event, whichever format carries it
    tom.send("from telnet")
    wes.request({"type": "message", "text": "from json"})
    ack = pat.request({"type": "message", "text": "from protobuf", "id": "m1"})
    assert (ack["type"], ack["request"], ack["id"]) == ("ack", "message", "m1")
    for text in ("from telnet", "from json", "from protobuf"):
        seen_pb = pat.expect({"type": "message", "text": text})
        seen_js = wes.expect({"type": "message", "text": text})
        assert seen_pb == seen_js
    tom.expect("[#pb] <wes> from json")
    tom.expect("[#pb] <pat> from protobuf")
    assert seen_pb["mid"] == ack["mid"]

    # actions
    pat.request({"type": "action", "text": "waves"})
    tom.expect("* pat waves")
    assert wes.expect({"type": "action", "from": "pat"})["text"] == "waves"

    # nick changes
    pat.ws.settimeout(5)
    daemon.wait_for(lambda: pat.request({"type": "nick", "nick": "patty"})["type"] == "ack",
                    "the nick change to be accepted")
    tom.expect("* pat is now known as patty")
    change = wes.expect({"type": "nick", "new": "patty"})
    assert change == pat.expect({"type": "nick", "new": "patty"})

    # private messages both ways
    tom.send("/msg patty to protobuf")
    got = pat.expect({"type": "private"})
    assert (got["from"], got["to"], got["text"]) == ("tom", "patty", "to protobuf")
    pat.request({"type": "private", "to": "wes", "text": "to json"})
    assert wes.expect({"type": "private"})["from"] == "patty"
    pat.request({"type": "private", "to": "tom", "text": "to telnet"})
    tom.expect("[pm patty -> tom] to telnet")

    # errors, with the request's id and type, in the binary format
    err = pat.request({"type": "private", "to": "nobody", "text": "x", "id": "e1"})
    assert (err["type"], err["code"], err["id"], err["request"]) == (
        "error", "no_such_nick", "e1", "private")
    assert pat.request({"type": "join", "room": "no-hash", "id": "e2"})["code"] == "invalid_room"

    # parts and quits
    wes.request({"type": "part", "reason": "brb"})
    tom.expect("* wes left #pb")
    part = pat.expect({"type": "part", "nick": "wes"})
    assert part["reason"] == "brb"
    tom.send("/quit night")
    assert pat.expect({"type": "quit", "nick": "tom"})["reason"] == "night"
    tom.expect_closed()

    # quit from protobuf: ack, then bye, then the close frame
    pat.send_json({"type": "quit", "reason": "done", "id": "q"})
    assert pat.expect({"type": "ack", "request": "quit"})["id"] == "q"
    assert pat.expect({"type": "bye"})["reason"] == "done"
    pat.expect_closed()
    assert pat.close_code == 1000


def test_since_recovery_over_protobuf(daemon):
    pat = daemon.pb().login("pat2", "#pbsince")
    mids = [pat.request({"type": "message", "room": "#pbsince", "text": f"p{i}"})["mid"]
            for i in range(6)]
    pat.close()
    again = daemon.pb().login("pat3")
    again.send_json({"type": "join", "room": "#pbsince", "since": mids[2], "id": "j"})
    ack = again.expect({"type": "ack", "request": "join"})
    history = [e for e in again.backlog if e.get("history")]
    assert [e["text"] for e in history] == ["p3", "p4", "p5"]
    assert [e["mid"] for e in history] == mids[3:]
    assert ack["id"] == "j" and "more" not in ack
    again.send_json({"type": "history", "room": "#pbsince", "since": mids[4], "id": "h"})
    ack = again.expect({"type": "ack", "request": "history"})
    assert (ack["count"], ack["more"]) == (1, False)
    assert [e["text"] for e in again.backlog if e.get("history")][-1] == "p5"
    again.close()


def test_bad_input_on_the_binary_subprotocol(daemon):
    refuses_bad_binary_input(daemon.pb().login("badpb"))


def refuses_bad_binary_input(pat) -> None:
    """Not a message, a text frame, an unknown field, an oversized frame (over
    the default --max-frame): each gets its error or close code (also over wss,
    tests/integration/test_tls.py)."""
    pat.ws.send_binary(b"\xff\xff\xff")
    assert pat.expect({"type": "error"})["code"] == "invalid_protobuf"
    pat.ws.send(b'{"type": "ping"}')  # a text frame
    assert pat.expect({"type": "error"})["code"] == "text_frame"
    pat.ws.send_binary(pb.Request(id="u").SerializeToString() + b"\xfa\x03\x00")
    err = pat.expect({"type": "error"})
    assert (err["code"], err["id"]) == ("unknown_type", "u")
    assert pat.request({"type": "ping", "id": "alive"})["type"] == "ack"  # still open
    pat.ws.send_binary(b"\x00" * 20000)  # over --max-frame (16384)
    pat.expect_closed()
    assert pat.close_code == 1009


def test_the_handshake_negotiates_or_refuses(daemon):
    plain = daemon.ws()
    assert plain.ws.getsubprotocol() is None  # offered none: JSON, and none named
    assert plain.expect({"type": "hello"})["server"]
    listed = daemon.ws(subprotocols=["x-unknown", "chatd.json.v1", "chatd.protobuf.v1"])
    assert listed.ws.getsubprotocol() == "chatd.json.v1"
    assert listed.expect({"type": "hello"})
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        PBClient(daemon.ws_port, subprotocols=["mqtt", "chatd.protobuf.v2"])
    assert refused.value.status_code == 400


def test_heartbeats_on_protobuf_keep_who_answers_and_drop_who_does_not(start_daemon):
    d = start_daemon("--ping-interval", "1", "--ping-timeout", "2.5")
    keeper = d.pb().login("pbkeeper", "#pbhb")
    sleeper = d.pb().login("pbsleeper", "#pbhb")  # never reads: its pongs never go out
    pump(keeper,
         until=lambda: keeper.pings and any(
             e.get("type") == "quit" and e.get("nick") == "pbsleeper" for e in keeper.backlog),
         what="pbsleeper's quit and a ping answered by pbkeeper", timeout=8)
    assert keeper.expect({"type": "quit", "nick": "pbsleeper"})["reason"] == "ping timeout"
    assert {"type": "bye", "reason": "ping timeout"} in sleeper.expect_closed()
    assert (sleeper.close_code, sleeper.close_reason) == (1000, "ping timeout")
    assert keeper.request({"type": "who"})["nicks"] == ["pbkeeper"]


def test_away_reaches_protobuf_and_json_members_alike(daemon):
    wes = daemon.ws().login("wes", "#aw")
    pat = daemon.pb().login("pat", "#aw")
    wes.request({"type": "away", "text": "lunch"})
    seen_pb = pat.expect({"type": "away", "nick": "wes"})
    assert seen_pb == wes.expect({"type": "away", "nick": "wes"})
    assert seen_pb["text"] == "lunch"
    ack = pat.request({"type": "away", "text": "brb", "id": "a1"})
    assert ack == {"type": "ack", "request": "away", "id": "a1", "away": True, "text": "brb"}
    assert wes.expect({"type": "away", "nick": "pat"})["text"] == "brb"
    assert pat.request({"type": "away", "id": "a2"})["away"] is False
    assert wes.expect({"type": "away", "nick": "pat"})["text"] == ""
