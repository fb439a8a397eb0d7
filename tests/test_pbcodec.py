"""Both formats carry the same thing: every event and every request, property-based.

An event encoded as protobuf and decoded again is the dict its JSON encoding
reads back as; a request sent as protobuf decodes into the very dict the JSON
path builds from the same request.
"""

import dataclasses
import inspect
import json
import types
import typing
from pathlib import Path

import pytest
from google.protobuf.descriptor import FieldDescriptor
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_proto_schema import json_event_types, oneof

from chatd import acks, events, wire
from chatd.errors import ChatError
from chatd.jsonreq import parse_json_request
from chatd.pbcodec import decode_event, decode_request, encode_event, encode_request
from chatd.proto import chatd_pb2 as pb

MAX_INT = 2**63 - 1
text = st.text(st.characters(exclude_categories=("Cs",)), max_size=40)
ints = st.integers(0, MAX_INT)
floats = st.floats(allow_nan=False, allow_infinity=False)

# List fields whose items are records (everything else is a list of strings).
RECORDS = {
    (acks.RoomsAck, "rooms"): st.fixed_dictionaries({"room": text, "members": ints}),
    (acks.GbansAck, "bans"): st.fixed_dictionaries({
        "kind": text, "target": text, "until": floats, "by": text, "reason": text,
        "created": floats}),
    (acks.SessionsAck, "sessions"): st.fixed_dictionaries({
        "nick": st.none() | text, "address": text, "front_end": text,
        "rooms": st.lists(text, max_size=3), "idle": floats}),
}
LIMITS = st.fixed_dictionaries({
    "max_line": ints, "max_frame": ints, "max_message": ints, "max_nick": ints,
    "rate": floats, "burst": ints, "ping_interval": floats, "ping_timeout": floats})


def for_type(cls, name, hint):
    if (cls, name) in RECORDS:
        return st.lists(RECORDS[cls, name], max_size=3)
    if isinstance(hint, types.UnionType):  # X | None
        [inner] = [a for a in typing.get_args(hint) if a is not type(None)]
        if inner is list:
            # A list JSON leaves out when None (JoinAck.nicks in a large room) is a
            # repeated field, which cannot tell none from empty: the server never
            # sends an empty one there (the joiner is listed).
            return st.none() | st.lists(text, min_size=1, max_size=5)
        return st.none() | for_type(cls, name, inner)
    return {str: text, int: ints, float: floats, bool: st.booleans(), dict: LIMITS,
            list: st.lists(text, max_size=5),
            tuple: st.lists(text, max_size=5).map(tuple)}[hint]


def record(cls):
    hints = typing.get_type_hints(cls)
    return st.builds(cls, **{f.name: for_type(cls, f.name, hints[f.name])
                             for f in dataclasses.fields(cls)})


ACK_RECORDS = [cls for _, cls in inspect.getmembers(acks, inspect.isclass)
               if issubclass(cls, acks.AckData) and cls is not acks.AckData]
EVENT_TYPES = sorted(json_event_types())
ids = st.none() | text


def event_strategies() -> dict:
    """One strategy per JSON event type, and per ack record ("ack:NickAck")."""
    out = {}
    for _, cls in inspect.getmembers(events, inspect.isclass):
        if (cls.__module__ == events.__name__ and dataclasses.is_dataclass(cls)
                and isinstance(getattr(cls, "type", None), str)
                and cls not in (events.Ack, events.Error)):
            out[cls.type] = record(cls)
    for kind in ("message", "action"):
        out[kind] = st.builds(events.Message, text, text, text, ints, floats, st.just(kind),
                              st.booleans())
    for what in ("ban", "unban", "op", "deop", "mode"):
        out[what] = st.builds(events.RoomChange, text, st.just(what), text, text,
                              st.booleans(), st.booleans(), floats)
    out["ack"] = st.builds(events.Ack, text, ids, st.none())
    for cls in ACK_RECORDS:
        out["ack:" + cls.__name__] = st.builds(events.Ack, text, ids, record(cls))
    out["error"] = st.builds(events.Error, st.sampled_from(sorted(pb.Error.Code.keys())[1:]),
                             text, ids, st.none() | text)
    return out


STRATEGIES = event_strategies()


def test_there_is_a_strategy_for_every_event_type_and_ack_record():
    assert {k for k in STRATEGIES if ":" not in k} == set(EVENT_TYPES)
    assert {k.split(":")[1] for k in STRATEGIES if ":" in k} == {c.__name__ for c in ACK_RECORDS}


@pytest.mark.parametrize("name", sorted(STRATEGIES))
@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow,
                                                  HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_every_event_reads_the_same_in_both_formats(name, data):
    event = data.draw(STRATEGIES[name])
    assert decode_event(encode_event(event)) == json.loads(wire.encode_json(event))


def test_a_large_rooms_join_ack_has_no_nick_list_in_either_format():
    large = events.Ack("join", "1", acks.JoinAck("#big", None, members=5000, large=True))
    small = events.Ack("join", "2", acks.JoinAck("#r", ["ann", "bob"]))
    assert decode_event(encode_event(large)) == {
        "type": "ack", "request": "join", "id": "1", "room": "#big", "members": 5000,
        "large": True} == json.loads(wire.encode_json(large))
    assert decode_event(encode_event(small))["nicks"] == ["ann", "bob"]


def test_a_presence_notice_lists_its_nicks_in_both_formats():
    event = events.Presence("#big", ("ann", "bob"), 7, ("cy",), 1, 2.5)
    assert decode_event(encode_event(event)) == {
        "type": "presence", "room": "#big", "joined": ["ann", "bob"], "joins": 7,
        "left": ["cy"], "parts": 1, "ts": 2.5} == json.loads(wire.encode_json(event))


# -- requests --------------------------------------------------------------------------
def request_strategy():
    """A request of every type, with any subset of its fields, valued by field type."""
    by_type = {FieldDescriptor.TYPE_STRING: text, FieldDescriptor.TYPE_BOOL: st.booleans(),
               FieldDescriptor.TYPE_INT64: st.integers(-(2**63), MAX_INT)}
    options = []
    for kind, desc in oneof(pb.Request, "request").items():
        fields = {f.name: by_type[f.type] for f in desc.fields}
        options.append(st.fixed_dictionaries(
            {"type": st.just(kind)},
            optional={"id": text, **fields}))
    return st.one_of(options)


@settings(max_examples=600)
@given(request_strategy())
def test_every_request_decodes_to_what_the_json_path_builds(req):
    assert decode_request(encode_request(req)) == parse_json_request(json.dumps(req))


def test_unknown_fields_of_a_known_request_are_ignored():
    known = pb.Request(id="1", join=pb.Request.Join(room="#r")).SerializeToString()
    extra = b"\xa0\x06\x01"  # field 100 (unknown), varint 1
    assert decode_request(known + extra) == {"type": "join", "room": "#r", "id": "1"}


def test_an_unknown_request_type_is_unknown_type_with_its_id():
    frame = pb.Request(id="7").SerializeToString() + b"\xfa\x03\x00"  # field 63, empty message
    with pytest.raises(ChatError) as e:
        decode_request(frame)
    assert (e.value.code, e.value.rid) == ("unknown_type", "7")


def test_a_request_without_a_type_is_a_bad_request():
    with pytest.raises(ChatError) as e:
        decode_request(pb.Request(id="x").SerializeToString())
    assert (e.value.code, e.value.rid) == ("bad_request", "x")


@pytest.mark.parametrize("frame", [
    b"\xff\xff\xff",  # a tag with no field
    b"\x12\x05\x12\x03\xff\xfe\xfd",  # message.text that is not UTF-8
    b"\x12\x40\x12",  # a length past the end
    b'{"type": "ping"}',  # JSON in a binary frame
])
def test_bytes_that_are_not_a_request_are_invalid_protobuf(frame):
    with pytest.raises(ChatError) as e:
        decode_request(frame)
    assert e.value.code == "invalid_protobuf"


def test_an_error_code_newer_than_the_client_reads_as_other():
    newer = pb.Event(error=pb.Error(code=999, message="from a newer server")).SerializeToString()
    assert decode_event(newer) == {"type": "error", "code": "other",
                                   "message": "from a newer server"}


def test_an_event_type_newer_than_the_client_is_refused_plainly():
    with pytest.raises(ValueError, match="does not know"):
        decode_event(b"\xfa\x03\x00")  # field 63: no such event here


def test_bytes_that_are_not_an_event_are_a_value_error():
    with pytest.raises(ValueError, match="not a chatd.v1.Event"):
        decode_event(b"\xff\xff\xff")


def test_the_examples_in_the_protocol_document_are_right():
    from chatd.events import Join
    doc = (Path(__file__).resolve().parent.parent / "docs" / "protocol.rst").read_text()
    request = encode_request({"type": "join", "room": "#r", "id": "1"}).hex(" ")
    event = encode_event(Join("#r", "bob", 1.5)).hex(" ")
    flat = " ".join(doc.split())
    assert f"``{request}``" in flat and f"``{event}``" in flat
