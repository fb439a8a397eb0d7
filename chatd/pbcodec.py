"""Protocol Buffers encoding (chatd/proto/chatd.proto) of events and requests.

The binary twin of ``wire.encode_json`` and ``jsonreq.parse_json_request``:
an event becomes one ``chatd.v1.Event`` message, and a ``chatd.v1.Request``
becomes the very request dict the JSON path builds, so both formats go
through the one dispatcher.  The reverse directions (a request dict to bytes,
event bytes to the event's JSON dict) are what clients use (chatd.client),
and what the tests use to show that both formats carry the same thing.
"""

from google.protobuf.message import DecodeError
from google.protobuf.unknown_fields import UnknownFieldSet

from chatd.errors import ChatError
from chatd.proto import chatd_pb2 as pb

Event = pb.Event
Request = pb.Request
_Ack = pb.Ack
_Error = pb.Error
_CODE_VALUE = pb.Error.Code.Value
_CODE_NAME = pb.Error.Code.Name

# Fields that JSON shows as null rather than leaving out.
_NULLABLE = {"chatd.v1.SessionsAck.SessionEntry": frozenset({"nick"})}
# Lists JSON leaves out when there are none (a repeated field cannot tell none from
# empty, and these are never sent empty): a large room's JoinAck has no "nicks".
_ABSENT_WHEN_EMPTY = {"chatd.v1.JoinAck": frozenset({"nicks"})}


def _snake(name: str) -> str:
    return "".join("_" + c.lower() if c.isupper() else c for c in name).lstrip("_")


# chatd.acks record class name -> the Ack oneof field that carries it ("NickAck" -> "nick_ack").
ACK_FIELDS = {f.message_type.name: f.name for f in _Ack.DESCRIPTOR.oneofs_by_name["data"].fields}


def _id(rid):
    """The binary protocol's ids are strings; a JSON-path id (a number) is shown as text."""
    return rid if rid is None or isinstance(rid, str) else str(rid)


def _code(code: str) -> int:
    try:
        return _CODE_VALUE(code)
    except ValueError:  # metrics.ERROR_CODES and the schema test keep this from happening
        return 0


# -- events -------------------------------------------------------------------------------
def event_message(event) -> pb.Event:
    """The ``chatd.v1.Event`` for one event of chatd.events."""
    kind = event.type
    if kind == "ack":
        data = event.data
        fields = {"request": event.request, "id": _id(event.id)}
        if data is not None:
            fields[ACK_FIELDS[type(data).__name__]] = data.to_dict()
        return Event(ack=_Ack(**fields))
    if kind == "error":
        return Event(error=_Error(code=_code(event.code), message=event.message,
                                  id=_id(event.id), request=event.request))
    d = event.to_dict()
    del d["type"]
    return Event(**{kind: d})


def encode_event(event) -> bytes:
    return event_message(event).SerializeToString()


def _plan(descriptor) -> tuple:
    """What JSON shows for the fields a message leaves unset (a plain scalar's zero
    value, null for the nullable ones; absent optional fields stay out), and which
    fields are lists (each decoded message gets lists of its own; an empty one left
    out where JSON leaves it out)."""
    defaults = {}
    nullable = _NULLABLE.get(descriptor.full_name, ())
    absent = _ABSENT_WHEN_EMPTY.get(descriptor.full_name, ())
    for fd in descriptor.fields:
        if fd.name in nullable:
            defaults[fd.name] = None
        elif not fd.has_presence and not fd.is_repeated:
            defaults[fd.name] = fd.default_value
    return defaults, tuple(fd.name for fd in descriptor.fields
                           if fd.is_repeated and fd.name not in absent)


_PLANS = {}  # descriptor -> _plan(descriptor)


def _fields(msg) -> dict:
    """A message's fields as JSON would have them: absent optional ones left out."""
    descriptor = msg.DESCRIPTOR
    plan = _PLANS.get(descriptor)
    if plan is None:
        plan = _PLANS[descriptor] = _plan(descriptor)
    d = dict(plan[0])
    for name in plan[1]:
        d[name] = []
    for fd, value in msg.ListFields():  # only the fields that are set, listed in C
        if fd.message_type is not None:
            value = [_fields(v) for v in value] if fd.is_repeated else _fields(value)
        elif fd.is_repeated:
            value = list(value)
        d[fd.name] = value
    return d


def decode_event(data: bytes) -> dict:
    """Event bytes to the dict the JSON protocol sends for the same event; ValueError
    for bytes that are not an ``Event`` or an event type newer than this code."""
    try:
        msg = Event.FromString(data)
    except DecodeError:
        raise ValueError("not a chatd.v1.Event message") from None
    kind = msg.WhichOneof("event")
    if kind is None:
        raise ValueError("an event of a type this client does not know")
    body = getattr(msg, kind)
    if kind == "ack":
        d = {"type": "ack", "request": body.request}
        if body.HasField("id"):
            d["id"] = body.id
        which = body.WhichOneof("data")
        if which is not None:
            d.update(_fields(getattr(body, which)))
        return d
    if kind == "error":
        try:
            code = _CODE_NAME(body.code)
        except ValueError:  # a code newer than this client
            code = "other"
        d = {"type": "error", "code": code, "message": body.message}
        if body.HasField("id"):
            d["id"] = body.id
        if body.HasField("request"):
            d["request"] = body.request
        return d
    d = {"type": kind}
    d.update(_fields(body))
    return d


# -- requests ---------------------------------------------------------------------------
def encode_request(req: dict) -> bytes:
    """A JSON-shaped request dict to ``chatd.v1.Request`` bytes (what a client sends)."""
    body = {k: v for k, v in req.items() if k not in ("type", "id") and v is not None}
    if req.get("type") == "gban" and isinstance(body.get("duration"), int):
        body["duration"] = str(body["duration"])
    try:
        msg = Request(id=_id(req.get("id")), **{req["type"]: body})
    except (KeyError, ValueError, TypeError) as e:
        raise ValueError(f"not a chatd request: {e}") from None
    return msg.SerializeToString()


def decode_request(data: bytes) -> dict:
    """One binary frame to the request dict the JSON path would build, or a ChatError.

    Unknown fields of a known request are ignored, as protobuf does and as the
    JSON protocol ignores unknown members; a request type this server does not
    know is ``unknown_type``, as in JSON.
    """
    try:
        msg = Request.FromString(data)
    except DecodeError:
        raise ChatError("invalid_protobuf", "not a valid chatd.v1.Request message") from None
    rid = msg.id if msg.HasField("id") else None
    kind = msg.WhichOneof("request")
    if kind is None:
        unknown = sorted({f.field_number for f in UnknownFieldSet(msg)})
        if unknown:
            raise ChatError("unknown_type",
                            f"unknown request type (field number {unknown[0]})", rid)
        raise ChatError("bad_request", "a request needs a type (one of Request's fields)", rid)
    req = _fields(getattr(msg, kind))
    req["type"] = kind
    if rid is not None:
        req["id"] = rid
    return req
