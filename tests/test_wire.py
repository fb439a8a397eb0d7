"""Wire formats: the bytes each front end writes for an event."""

import json

from autobahn.websocket.protocol import PreparedMessage

from chatd import wire
from chatd.events import Message
from chatd.pbcodec import encode_event
from chatd.text import render


def history(mid, text="hi all"):
    return Message("#lobby", "bob", text, mid, 1732633000.0 + mid, history=True)


def test_history_messages_read_the_same_in_every_format_however_often_sent():
    # A reconnect storm sends the same stored messages to every member of a room.
    event = history(7)
    for _ in range(3):
        again = history(7)  # each join reads its own copy from the store
        assert wire.TEXT(again) == render(event).encode() + b"\r\n"
        assert json.loads(wire.JSONL(again)) == {
            "type": "message", "room": "#lobby", "from": "bob", "text": "hi all", "mid": 7,
            "ts": 1732633007.0, "history": True}
        assert wire.WEBSOCKET(again) == PreparedMessage(
            wire.encode_json(event), False, False, True).payloadHybi
        assert wire.PROTOBUF(again) == PreparedMessage(
            encode_event(event), True, False, True).payloadHybi
    assert b"[history]" in wire.TEXT(event)


def test_equal_looking_messages_that_differ_in_anything_are_encoded_apart():
    assert wire.JSONL(history(8, "one")) != wire.JSONL(history(8, "two"))
    assert wire.TEXT(history(9, "one")) != wire.TEXT(history(9, "two"))
    assert json.loads(wire.JSONL(history(10)))["mid"] == 10
    assert wire.PROTOBUF(history(11, "one")) != wire.PROTOBUF(history(11, "two"))
    live = Message("#lobby", "bob", "hi all", 9, 1732633009.0)
    assert b"history" not in wire.JSONL(live)
    assert b"[history]" not in wire.TEXT(live)


def test_the_history_payloads_kept_are_bounded():
    for mid in range(wire.HISTORY_CACHE + 50):
        for fmt in (wire.TEXT, wire.JSONL, wire.WEBSOCKET, wire.PROTOBUF):
            fmt(history(100000 + mid))
    assert wire.history_cached() == 4 * wire.HISTORY_CACHE
    # The oldest went first; re-encoding it is still right.
    assert json.loads(wire.JSONL(history(100000)))["mid"] == 100000
