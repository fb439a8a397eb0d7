"""The WebSocket front end, driven over a StringTransport with hand-made frames.

Autobahn's timers run on the test's Clock (txaio's loop), so nothing waits for
real time.
"""

import json

import pytest
from conftest import closes_1009_over_max_frame
from fakes import BINARY, CLOSE, PING, PONG, TEXT, close_code

from chatd.outbuf import GRACE


def test_open_greets_with_hello(ws):
    chat, connect = ws()
    client = connect()
    [hello] = client.events()
    assert hello["type"] == "hello"
    assert hello["limits"]["max_frame"] == chat.service.limits.max_frame
    assert client.session in chat.service.sessions


def test_requests_with_ids_get_acks(ws):
    chat, connect = ws()
    client = connect()
    assert client.request({"type": "nick", "nick": "alice", "id": 1}) == [
        {"type": "ack", "request": "nick", "id": 1, "nick": "alice"}]
    events = client.request({"type": "join", "room": "#r", "id": "j"})
    assert events[-1] == {"type": "ack", "request": "join", "id": "j", "room": "#r",
                          "nicks": ["alice"]}
    msg, ack = client.request({"type": "message", "text": "hi", "id": 3})
    assert (msg["type"], msg["text"]) == ("message", "hi")
    assert (ack["request"], ack["id"], ack["mid"]) == ("message", 3, msg["mid"])
    [err] = client.request({"type": "join", "room": "bad", "id": 4})
    assert (err["type"], err["code"], err["id"]) == ("error", "invalid_room", 4)


def test_websocket_and_line_users_share_a_room(ws):
    chat, connect = ws()
    client = connect()
    client.request({"type": "nick", "nick": "web"})
    client.request({"type": "join", "room": "#r"})
    line = chat.line("tty", "#r")
    [join] = client.events()
    assert (join["type"], join["nick"]) == ("join", "tty")
    line.send("hello browser")
    line.raw()
    [msg] = client.events()
    assert (msg["from"], msg["text"]) == ("tty", "hello browser")
    client.send({"type": "message", "text": "hello terminal"})
    assert line.lines() == ["[#r] <web> hello terminal"]


def test_binary_frame_refused(ws):
    chat, connect = ws()
    client = connect()
    client.events()
    client.send_frame(b'{"type": "ping"}', BINARY)
    [err] = client.events()
    assert err["code"] == "binary_frame"
    assert client.request({"type": "ping", "id": 1}) == [
        {"type": "ack", "request": "ping", "id": 1}]


@pytest.mark.parametrize("payload,code", [
    (b"{nope", "invalid_json"),
    (b"[]", "bad_request"),
    (b'{"type": "dance", "id": 8}', "unknown_type"),
])
def test_bad_requests_get_errors(ws, payload, code):
    chat, connect = ws()
    client = connect()
    client.events()
    client.send_frame(payload)
    [err] = client.events()
    assert err["code"] == code
    assert client.transport.connected


def test_invalid_utf8_errors_then_closes(ws):
    chat, connect = ws()
    client = connect()
    client.request({"type": "nick", "nick": "alice"})
    client.send_frame(b'{"type": "message", "text": "caf\xe9"}')
    frames = client.frames()
    assert [op for op, _ in frames] == [TEXT, TEXT, CLOSE]
    assert json.loads(frames[0][1])["code"] == "invalid_utf8"
    assert json.loads(frames[1][1]) == {"type": "bye", "reason": "invalid UTF-8"}
    assert client.session not in chat.service.sessions
    assert "alice" not in chat.service.nicks
    client.send_frame(frames[2][1], CLOSE)  # the client answers the close
    assert not client.transport.connected
    assert len(chat.service.sessions) + len(chat.service._closing) == 0


def test_frame_over_max_frame_closes_with_1009(ws):
    chat, connect = ws(max_frame=256)
    client = connect()
    closes_1009_over_max_frame(chat, client)


def test_heartbeat_pings_and_a_pong_keeps_the_session(ws):
    chat, connect = ws(ping_interval=30, ping_timeout=60)
    chat.service.startService()
    client = connect()
    client.request({"type": "nick", "nick": "alice"})
    for _ in range(6):  # three minutes, answering every ping
        chat.clock.advance(30)
        frames = client.frames()
        assert [op for op, _ in frames] == [PING]
        client.send_frame(frames[0][1], PONG)
    assert client.session in chat.service.sessions
    chat.clock.advance(60)  # now silent
    ops = [op for op, _ in client.frames()]
    assert ops[-2:] == [TEXT, CLOSE]
    assert client.session not in chat.service.sessions
    chat.service.stopService()


def test_silent_websocket_dropped_and_room_told(ws):
    chat, connect = ws(ping_interval=30, ping_timeout=60)
    chat.service.startService()
    client = connect()
    client.request({"type": "nick", "nick": "ghost"})
    client.request({"type": "join", "room": "#r"})
    line = chat.line("tty", "#r")
    for _ in range(4):
        chat.clock.advance(15)
        line.send("/ping")
    assert "* ghost quit (ping timeout)" in line.lines()
    bye = [json.loads(p) for op, p in client.frames() if op == TEXT][-1]
    assert bye == {"type": "bye", "reason": "ping timeout"}
    chat.service.stopService()


def test_close_from_client_is_a_quit(ws):
    chat, connect = ws()
    client = connect()
    client.request({"type": "nick", "nick": "web"})
    client.request({"type": "join", "room": "#r"})
    line = chat.line("tty", "#r")
    client.send_frame((1000).to_bytes(2, "big") + b"see ya", CLOSE)
    assert line.lines() == ["* web quit (see ya)"]
    assert len(chat.service.sessions) + len(chat.service._closing) == 1


def test_slow_websocket_dropped_others_keep_receiving(ws):
    chat, connect = ws(send_queue=1000, burst=1000, rate=1000.0)
    client = connect()
    client.request({"type": "nick", "nick": "slow"})
    client.request({"type": "join", "room": "#r"})
    fast = chat.line("fast", "#r")
    talker = chat.line("talker", "#r")
    fast.raw()
    client.proto.out.pauseProducing()
    talker.send(*[f"message {i}" for i in range(100)])
    chat.clock.advance(GRACE)  # over the cap and still not reading: dropped
    assert client.transport.disconnected
    lines = fast.lines()
    assert len([x for x in lines if x.startswith("[#r]")]) == 100
    assert "* slow quit (send queue exceeded)" in lines


def test_quit_request_says_bye_and_closes(ws):
    chat, connect = ws()
    client = connect()
    client.request({"type": "nick", "nick": "web"})
    client.send({"type": "quit", "reason": "done", "id": 2})
    frames = client.frames()
    assert [op for op, _ in frames] == [TEXT, TEXT, CLOSE]
    assert json.loads(frames[0][1]) == {"type": "ack", "request": "quit", "id": 2,
                                        "reason": "done"}
    assert close_code(frames[2][1]) == 1000
    assert frames[2][1][2:] == b"done"


def test_peer_that_ignores_the_close_is_dropped_after_the_timeout(ws):
    chat, connect = ws(max_frame=256)
    client = connect()
    client.send({"type": "message", "text": "x" * 300})
    assert client.transport.connected
    chat.clock.advance(5)  # past closeHandshakeTimeout, on the fake clock
    assert not client.transport.connected
    assert len(chat.service.sessions) + len(chat.service._closing) == 0


def test_room_broadcast_encodes_once_per_front_end_format(ws, monkeypatch):
    from chatd import wire
    from chatd.protocols.line import LineProtocol
    from chatd.protocols.websocket import ChatWebSocketProtocol

    calls = {"ws": 0, "text": 0}

    def spy(name, fmt):
        def encode(event):
            if event.type == "message":
                calls[name] += 1
            return fmt(event)
        return staticmethod(encode)

    monkeypatch.setattr(ChatWebSocketProtocol, "wire_format", spy("ws", wire.WEBSOCKET))
    monkeypatch.setattr(LineProtocol, "wire_format", spy("text", wire.TEXT))
    chat, connect = ws()
    webs = [connect(host=f"10.0.1.{i}") for i in range(3)]
    for i, w in enumerate(webs):
        w.request({"type": "nick", "nick": f"web{i}"})
        w.request({"type": "join", "room": "#r"})
    lines = [chat.line(f"tty{i}", "#r") for i in range(3)]
    for w in webs:
        w.frames()
    for t in lines:
        t.raw()
    lines[0].send("one broadcast")
    assert calls == {"ws": 1, "text": 1}
    assert len({w.transport.value() for w in webs}) == 1
    assert len({t.transport.value() for t in lines}) == 1
    assert [json.loads(p)["text"] for _, p in webs[0].frames()] == ["one broadcast"]


def test_shutdown_waits_for_the_close_handshake(ws):
    chat, connect = ws()
    chat.service.startService()
    client = connect()
    client.frames()
    done = []
    chat.service.stopService().addBoth(done.append)
    frames = client.frames()
    assert json.loads(frames[0][1]) == {"type": "bye", "reason": "server shutting down"}
    assert frames[1][0] == CLOSE
    assert done == []
    client.send_frame(frames[1][1][:2], CLOSE)
    assert done == [None]


def test_a_trusted_proxy_names_the_client_so_per_address_limits_count_people(ws):
    chat, connect = ws(trusted_proxies=["127.0.0.1"], max_per_ip=1)
    a = connect(host="127.0.0.1", headers=b"X-Forwarded-For: 203.0.113.7\r\n")
    b = connect(host="127.0.0.1", headers=b"X-Forwarded-For: 198.51.100.1, 203.0.113.8\r\n")
    # Two people behind one proxy: both admitted, each under their own address.
    assert (a.session.host, b.session.host) == ("203.0.113.7", "203.0.113.8")
    c = connect(host="127.0.0.1", headers=b"X-Forwarded-For: 203.0.113.7\r\n")
    assert c.session is None
    assert json.loads(c.frames()[0][1])["code"] == "too_many_from_ip"


def test_forwarded_for_is_ignored_from_an_untrusted_peer_or_when_not_an_address(ws):
    chat, connect = ws(trusted_proxies=["127.0.0.1"])
    spoof = connect(host="10.9.9.9", headers=b"X-Forwarded-For: 203.0.113.7\r\n")
    assert spoof.session.host == "10.9.9.9"
    junk = connect(host="127.0.0.1", headers=b"X-Forwarded-For: 203.0.113.7, evil\r\n")
    assert junk.session.host == "127.0.0.1"
