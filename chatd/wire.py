"""Wire formats: how an event becomes the payload a front end writes.

A wire format is a function ``event -> payload``.  The service encodes a
broadcast once per format present in the room and hands the same payload to
every member using that format, so fan-out never re-encodes.

History is sent to one session at a time (each join reads its own copy of the
room's last messages), so after a restart every member of a room would encode
the same 50 stored messages again (in the reconnect storm of
docs/performance.rst, a fifth of the server's busy samples).  Each format keeps
the payloads of the last ``HISTORY_CACHE`` (8,192) history messages it encoded, keyed
by the (immutable, hashable) event itself, so equal events get the bytes
encoded the first time.  Only history events are kept: a live message is
encoded once per room anyway.
"""

import json

from autobahn.websocket.protocol import PreparedMessage

from chatd.events import Message
from chatd.pbcodec import encode_event
from chatd.text import render

HISTORY_CACHE = 8192  # history payloads each format keeps: about 5 MB when full (measured)

_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def encode_json(event) -> bytes:
    return _dumps(event.to_dict()).encode("utf-8")


def _history_cached(encode):
    """``encode``, remembering what it made of the last ``HISTORY_CACHE`` history events."""
    cache = {}

    def encode_history(event) -> bytes:
        payload = cache.get(event)
        if payload is None:
            if len(cache) >= HISTORY_CACHE:
                del cache[next(iter(cache))]  # the oldest: dicts keep insertion order
            payload = cache[event] = encode(event)
        return payload

    encode_history.cache = cache
    return encode_history


def _text_line(event) -> bytes:
    text = render(event)
    if not text:
        return b""
    return text.encode("utf-8") + b"\r\n"


def _json_line(event) -> bytes:
    return encode_json(event) + b"\r\n"


def _ws_frame(event) -> bytes:
    return PreparedMessage(encode_json(event), False, False, True).payloadHybi


_text_history = _history_cached(_text_line)
_json_history = _history_cached(_json_line)
_ws_history = _history_cached(_ws_frame)


def history_cached() -> int:
    """How many history payloads the formats hold now (at most 4 x ``HISTORY_CACHE``)."""
    return sum(len(f.cache) for f in (_text_history, _json_history, _ws_history, _pb_history))


def text_line(event) -> bytes:
    """Readable CRLF-terminated line(s); empty bytes when there is nothing to say."""
    if type(event) is Message and event.history:
        return _text_history(event)
    return _text_line(event)


def json_line(event) -> bytes:
    if type(event) is Message and event.history:
        return _json_history(event)
    return _json_line(event)


def ws_frame(event) -> bytes:
    """A complete unmasked WebSocket text frame, framed once for all members."""
    if type(event) is Message and event.history:
        return _ws_history(event)
    return _ws_frame(event)


def _pb_frame(event) -> bytes:
    return PreparedMessage(encode_event(event), True, False, True).payloadHybi


_pb_history = _history_cached(_pb_frame)


def pb_frame(event) -> bytes:
    """A complete unmasked WebSocket binary frame holding one ``chatd.v1.Event``
    (the ``chatd.protobuf.v1`` subprotocol), framed once for all members."""
    if type(event) is Message and event.history:
        return _pb_history(event)
    return _pb_frame(event)


TEXT = text_line
JSONL = json_line
WEBSOCKET = ws_frame
PROTOBUF = pb_frame
