"""The chatd.protobuf.v1 subprotocol, driven over a StringTransport with hand-made frames.

Same front end, same dispatcher, same limits as JSON WebSocket
(tests/test_websocket.py): only the frames differ.
"""

import json

import pytest
from conftest import HANDSHAKE, WSClient, closes_1009_over_max_frame
from fakes import BINARY, CLOSE, PING, PONG, TEXT, frame, parse_frames
from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransportWithDisconnection

from chatd import wire
from chatd.outbuf import GRACE
from chatd.pbcodec import decode_event, encode_request
from chatd.proto import chatd_pb2 as pb

PB = b"Sec-WebSocket-Protocol: chatd.protobuf.v1\r\n"


class PBClient(WSClient):
    """A WSClient speaking chatd.protobuf.v1: binary frames both ways."""

    def __init__(self, chat, factory, host="10.0.0.3", headers=PB):
        super().__init__(chat, factory, host, headers)

    def send(self, obj) -> None:
        self.proto.dataReceived(frame(encode_request(obj), BINARY))

    def events(self) -> list[dict]:
        out = []
        for opcode, payload in self.frames():
            assert opcode == BINARY, (opcode, payload)
            out.append(decode_event(payload))
        return out


def handshake(chat, factory, offer: bytes | None) -> bytes:
    proto = factory.buildProtocol(IPv4Address("TCP", "10.0.0.9", 50000))
    transport = StringTransportWithDisconnection(peerAddress=IPv4Address("TCP", "10.0.0.9", 50000))
    transport.protocol = proto
    proto.makeConnection(transport)
    extra = b"" if offer is None else b"Sec-WebSocket-Protocol: " + offer + b"\r\n"
    proto.dataReceived(HANDSHAKE[:-2] + extra + b"\r\n")
    return transport.value()


@pytest.fixture
def chat_factory(ws_factories):
    return ws_factories()


def connect_pb(chat, factory, **kw):
    return PBClient(chat, factory, **kw)


# -- negotiation ---------------------------------------------------------------------------
def answer(data: bytes):
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (x.partition(b":") for x in lines[1:])}
    return lines[0], headers, rest


def test_no_subprotocol_offered_is_json_and_none_named(chat_factory):
    status, headers, rest = answer(handshake(*chat_factory, None))
    assert status.startswith(b"HTTP/1.1 101")
    assert b"sec-websocket-protocol" not in headers
    [(op, hello)] = parse_frames(rest)
    assert op == TEXT and json.loads(hello)["type"] == "hello"


@pytest.mark.parametrize("offer,chosen,opcode", [
    (b"chatd.json.v1", b"chatd.json.v1", TEXT),
    (b"chatd.protobuf.v1", b"chatd.protobuf.v1", BINARY),
    (b"mqtt, chatd.protobuf.v1, chatd.json.v1", b"chatd.protobuf.v1", BINARY),
    (b"chatd.json.v1, chatd.protobuf.v1", b"chatd.json.v1", TEXT),
])
def test_the_first_supported_subprotocol_is_chosen_and_named(chat_factory, offer, chosen,
                                                              opcode):
    status, headers, rest = answer(handshake(*chat_factory, offer))
    assert status.startswith(b"HTTP/1.1 101")
    assert headers[b"sec-websocket-protocol"] == chosen
    [(op, hello)] = parse_frames(rest)
    assert op == opcode
    event = decode_event(hello) if op == BINARY else json.loads(hello)
    assert event["type"] == "hello"


def test_an_unsupported_subprotocol_list_is_refused_with_400_and_a_reason(chat_factory):
    chat, factory = chat_factory
    data = handshake(chat, factory, b"mqtt, chatd.json.v2")
    status, _, body = answer(data)
    assert status.startswith(b"HTTP/1.1 400")
    assert b"chatd.json.v1" in data and b"chatd.protobuf.v1" in data  # says what it speaks
    assert not chat.service.sessions


# -- the chat over protobuf ---------------------------------------------------------------
def test_requests_get_acks_and_errors_with_their_ids(chat_factory):
    chat, factory = chat_factory
    client = connect_pb(chat, factory)
    [hello] = client.events()
    assert hello["limits"]["max_frame"] == chat.service.limits.max_frame
    assert client.request({"type": "nick", "nick": "alice", "id": "1"}) == [
        {"type": "ack", "request": "nick", "id": "1", "nick": "alice"}]
    events = client.request({"type": "join", "room": "#r", "id": "j"})
    assert events[-1] == {"type": "ack", "request": "join", "id": "j", "room": "#r",
                          "nicks": ["alice"]}
    msg, ack = client.request({"type": "message", "text": "hi", "id": "3"})
    assert (msg["type"], msg["from"], msg["text"]) == ("message", "alice", "hi")
    assert (ack["request"], ack["id"], ack["mid"]) == ("message", "3", msg["mid"])
    [err] = client.request({"type": "join", "room": "bad", "id": "4"})
    assert err == {"type": "error", "code": "invalid_room", "id": "4", "request": "join",
                   "message": err["message"]}
    assert err["message"].startswith("a room is '#'")


def test_protobuf_json_and_line_users_share_a_room_and_each_format_is_encoded_once(
        chat_factory, monkeypatch):
    chat, factory = chat_factory
    calls = {"pb": 0, "ws": 0}

    def spy(name, fmt):
        def encode(event):
            calls[name] += event.type == "message"
            return fmt(event)
        return encode

    monkeypatch.setattr(wire, "PROTOBUF", spy("pb", wire.PROTOBUF))
    monkeypatch.setattr(type(factory).protocol, "wire_format",
                        staticmethod(spy("ws", wire.WEBSOCKET)))
    pbs = [connect_pb(chat, factory, host=f"10.0.2.{i}") for i in range(3)]
    for i, c in enumerate(pbs):
        c.request({"type": "nick", "nick": f"pb{i}"})
        c.request({"type": "join", "room": "#r"})
    js = WSClient(chat, factory, host="10.0.3.1")
    js.request({"type": "nick", "nick": "js"})
    js.request({"type": "join", "room": "#r"})
    tty = chat.line("tty", "#r")
    for c in pbs + [js]:
        c.frames()
    tty.raw()
    tty.send("one broadcast")
    assert calls == {"pb": 1, "ws": 1}
    assert len({c.transport.value() for c in pbs}) == 1  # the same bytes to every member
    [from_pb] = pbs[0].events()
    [from_js] = js.events()
    assert from_pb == from_js
    assert (from_pb["from"], from_pb["text"]) == ("tty", "one broadcast")
    pbs[1].send({"type": "message", "text": "from protobuf"})
    assert tty.lines()[-1] == "[#r] <pb1> from protobuf"
    assert js.events()[0]["text"] == "from protobuf"


def test_storm_notices_away_and_a_large_rooms_join_read_the_same_in_both_formats(ws_factories):
    chat, factory = ws_factories(coalesce_window=1.0, large_room=6)
    watch = connect_pb(chat, factory, host="10.0.4.1")
    watch.request({"type": "nick", "nick": "watch"})
    watch.request({"type": "join", "room": "#r"})
    js = WSClient(chat, factory, host="10.0.4.2")
    js.request({"type": "nick", "nick": "js"})
    js.request({"type": "join", "room": "#r"})
    chat.clock.advance(1)
    chat.clock.advance(1)  # the windows close: the next join is told at once
    watch.frames()
    js.frames()
    for nick in ("t1", "t2", "t3"):  # a storm: the first at once, then gathered
        chat.line(nick, "#r")
    chat.clock.advance(1)
    seen = watch.events()
    assert seen == js.events()
    assert [e["type"] for e in seen] == ["join", "presence"]
    assert {k: seen[1][k] for k in ("joined", "joins", "left", "parts")} == {
        "joined": ["t2", "t3"], "joins": 2, "left": [], "parts": 0}
    away, ack = watch.request({"type": "away", "text": "lunch", "id": "a"})
    assert ack == {"type": "ack", "request": "away", "id": "a", "away": True, "text": "lunch"}
    assert (away["type"], away["nick"], away["text"]) == ("away", "watch", "lunch")
    assert js.events() == [away]
    late = connect_pb(chat, factory, host="10.0.4.3")
    late.request({"type": "nick", "nick": "late"})
    [ack] = late.request({"type": "join", "room": "#r", "id": "j"})
    assert ack == {"type": "ack", "request": "join", "id": "j", "room": "#r",
                   "members": 6, "large": True}  # no nick list in a large room
    assert watch.events() == js.events() == []  # and no join notice
    chat.service.stopService()


def test_the_json_mode_switch_is_refused_as_on_json_websocket(chat_factory):
    chat, factory = chat_factory
    client = connect_pb(chat, factory)
    client.events()
    [err] = client.request({"type": "json", "id": "m"})
    assert (err["code"], err["id"]) == ("unknown_type", "m")


# -- bad input ---------------------------------------------------------------------------
@pytest.mark.parametrize("payload,code", [
    (b"\xff\xff\xff", "invalid_protobuf"),
    (b'{"type": "ping"}', "invalid_protobuf"),
    (pb.Request(id="8").SerializeToString() + b"\xfa\x03\x00", "unknown_type"),
    (pb.Request(id="8").SerializeToString(), "bad_request"),
])
def test_bad_binary_frames_get_errors_and_the_connection_stays(chat_factory, payload, code):
    chat, factory = chat_factory
    client = connect_pb(chat, factory)
    client.events()
    client.send_frame(payload, BINARY)
    [err] = client.events()
    assert (err["type"], err["code"]) == ("error", code)
    assert client.request({"type": "ping", "id": "1"}) == [
        {"type": "ack", "request": "ping", "id": "1"}]


def test_unknown_fields_in_a_known_request_are_ignored(chat_factory):
    chat, factory = chat_factory
    client = connect_pb(chat, factory)
    client.events()
    unknown = b"\xa0\x06\x01"  # field 100, varint 1: a field this server does not know
    client.send_frame(encode_request({"type": "ping", "id": "1"}) + unknown, BINARY)
    assert client.events() == [{"type": "ack", "request": "ping", "id": "1"}]


def test_a_text_frame_on_the_binary_protocol_is_refused(chat_factory):
    chat, factory = chat_factory
    client = connect_pb(chat, factory)
    client.events()
    client.send_frame(b'{"type": "ping", "id": 1}', TEXT)
    [err] = client.events()
    assert err["code"] == "text_frame"
    assert client.transport.connected


def test_a_binary_frame_on_json_is_still_binary_frame(chat_factory):
    chat, factory = chat_factory
    client = WSClient(chat, factory, headers=b"Sec-WebSocket-Protocol: chatd.json.v1\r\n")
    client.events()
    client.send_frame(encode_request({"type": "ping"}), BINARY)
    [err] = client.events()
    assert err["code"] == "binary_frame"


def test_a_frame_over_max_frame_closes_with_1009(ws_factories):
    chat, factory = ws_factories(max_frame=256)
    client = connect_pb(chat, factory)
    closes_1009_over_max_frame(chat, client)


# -- heartbeats, floods and the send-queue cap behave as for JSON ----------------------------
def test_heartbeat_pings_and_silence_is_a_binary_bye(ws_factories):
    chat, factory = ws_factories(ping_interval=30, ping_timeout=60)
    chat.service.startService()
    client = connect_pb(chat, factory)
    client.request({"type": "nick", "nick": "alice"})
    chat.clock.advance(30)
    [(op, ping)] = client.frames()
    assert op == PING
    client.send_frame(ping, PONG)
    chat.clock.advance(30)
    client.frames()
    assert client.session in chat.service.sessions
    chat.clock.advance(60)
    frames = client.frames()
    assert [op for op, _ in frames][-2:] == [BINARY, CLOSE]
    assert decode_event(frames[-2][1]) == {"type": "bye", "reason": "ping timeout"}
    chat.service.stopService()


def test_flood_is_refused_with_the_request_id(ws_factories):
    chat, factory = ws_factories(rate=1.0, burst=2, reconnect_burst=0)  # count tokens exactly
    client = connect_pb(chat, factory)
    client.events()
    for i in range(3):
        client.send({"type": "ping", "id": str(i)})
    events = client.events()
    assert [e["type"] for e in events] == ["ack", "ack", "error"]
    assert (events[2]["code"], events[2]["id"]) == ("flood", "2")


def test_a_protobuf_client_that_does_not_read_is_dropped_others_keep_receiving(ws_factories):
    chat, factory = ws_factories(send_queue=1000, burst=1000, rate=1000.0)
    client = connect_pb(chat, factory)
    client.request({"type": "nick", "nick": "slow"})
    client.request({"type": "join", "room": "#r"})
    fast = chat.line("fast", "#r")
    talker = chat.line("talker", "#r")
    fast.raw()
    client.proto.out.pauseProducing()
    talker.send(*[f"message {i}" for i in range(100)])
    chat.clock.advance(GRACE)
    assert client.transport.disconnected
    lines = fast.lines()
    assert len([x for x in lines if x.startswith("[#r]")]) == 100
    assert "* slow quit (send queue exceeded)" in lines
