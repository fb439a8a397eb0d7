"""Wire formats: how an event becomes the payload a front end writes.

A wire format is a function ``event -> payload``.  The service encodes a
broadcast once per format present in the room and hands the same payload to
every member using that format, so fan-out never re-encodes.
"""

import json

from autobahn.websocket.protocol import PreparedMessage

from chatd.pbcodec import encode_event
from chatd.text import render

_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def encode_json(event) -> bytes:
    return _dumps(event.to_dict()).encode("utf-8")


def text_line(event) -> bytes:
    """Readable CRLF-terminated line(s); empty bytes when there is nothing to say."""
    text = render(event)
    if not text:
        return b""
    return text.encode("utf-8") + b"\r\n"


def json_line(event) -> bytes:
    return encode_json(event) + b"\r\n"


def ws_frame(event) -> bytes:
    """A complete unmasked WebSocket text frame, framed once for all members."""
    return PreparedMessage(encode_json(event), False, False, True).payloadHybi


def pb_frame(event) -> bytes:
    """A complete unmasked WebSocket binary frame holding one ``chatd.v1.Event``
    (the ``chatd.protobuf.v1`` subprotocol), framed once for all members."""
    return PreparedMessage(encode_event(event), True, False, True).payloadHybi


TEXT = text_line
JSONL = json_line
WEBSOCKET = ws_frame
PROTOBUF = pb_frame
